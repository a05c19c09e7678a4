"""Benign false positives of each model component, on every sample photo that ships in packages.

    python -m training.false_positives [--min_confidence 50] [--random_crops 0] [--every_photo]
        [--format text]

No image with moderated content can be had offline, so what can be measured is the benign
side: how often each component, on its own, would put a label on an image that has none. The
benign set is every camera photo of the sample data of scikit-image, scikit-learn and matplotlib
(the recipe's ``photo_sources``), each seen whole and in fixed views a user's uploads resemble:
its four quadrants, centre crops of 60 % and 35 % of each side, and the whole photo at half and
a quarter of its size. ``--random_crops N`` adds N seeded random crops per photo (15-90 % of
each side, aspect ratio jittered), a harder set in which close-ups of textures dominate.

Each view goes through a PNG file and the job's own decoder (``transforms.images.decode_image``,
so at most 512 px), then the model. A component's false positive is an image on which that
component's signals alone reach a label at ``--min_confidence``; the whole model's is an image
whose response has any label. Content types are counted apart (a photo typed Animated or
Illustrated).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from model.confidence import add_confidence_argument, check_confidence
from pipeline.logs import configure_logging
from training.cli import add_components_argument, add_format_argument
from training.content_types_data import FIXED_VIEWS, SCALED_VIEWS
from training.scoring import batches
from transforms.images import MIN_SIDE as _MIN_SIDE

__all__ = ["BenignView", "ComponentFigures", "benign_views", "measure", "main"]


@dataclass(frozen=True)
class BenignView:
    name: str  # "<photo>/<view>"
    image: np.ndarray  # decoded as the job decodes it


@dataclass
class ComponentFigures:
    images: int = 0
    flagged: list[tuple[str, str, float]] = field(default_factory=list)  # (view, label, conf)
    highest: tuple[float, str] = (0.0, "")  # best label confidence and its view

    def add(self, view: str, labels: Sequence[dict]) -> None:
        self.images += 1
        if labels:
            top = labels[0]
            self.flagged.append((view, str(top["Name"]), float(top["Confidence"])))

    def consider(self, confidence: float, view: str) -> None:
        if confidence > self.highest[0]:
            self.highest = (confidence, view)

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "false_positives": len(self.flagged),
            "rate": len(self.flagged) / self.images if self.images else None,
            "highest_confidence": round(self.highest[0], 1),
            "highest_on": self.highest[1],
            "flagged": [
                {"image": view, "label": name, "confidence": confidence}
                for view, name, confidence in self.flagged
            ],
        }


def _decoded(image: np.ndarray) -> np.ndarray:
    from transforms.images import decode_image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "PNG")
    return decode_image(buffer.getvalue())


def _crop(image: np.ndarray, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    height, width = image.shape[:2]
    y0, x0 = int(top * height), int(left * width)
    y1 = max(y0 + _MIN_SIDE, int(bottom * height))
    x1 = max(x0 + _MIN_SIDE, int(right * width))
    return image[y0:y1, x0:x1]


def _views(image: np.ndarray, random_crops: int, rng: np.random.Generator) -> Iterator:
    yield "whole", image
    height, width = image.shape[:2]
    if min(height, width) < _MIN_SIDE:  # too small for the job already: no views of it
        return
    for name, box in FIXED_VIEWS.items():
        yield name, _crop(image, *box)
    for scale in SCALED_VIEWS.values():
        size = (round(width * scale), round(height * scale))
        yield f"scale-{scale}", np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    for index in range(random_crops):
        side = rng.uniform(0.15, 0.9)
        crop_height = max(_MIN_SIDE, int(height * side))
        crop_width = min(width, max(_MIN_SIDE, int(width * side * rng.uniform(0.75, 1.33))))
        y = int(rng.integers(0, height - crop_height + 1))
        x = int(rng.integers(0, width - crop_width + 1))
        yield f"random-{index}", image[y : y + crop_height, x : x + crop_width]


def benign_views(
    random_crops: int = 0, seed: int = 0, every_photo: bool = False
) -> Iterator[BenignView]:
    """Every view of every sample photo, decoded as the job decodes it; ``every_photo`` adds the
    content-types recipe's other photos (PyWavelets, mahotas, scikit-image's micrograph)."""
    from training.content_types_sources import photo, photo_sources

    rng = np.random.default_rng(seed)
    for _source, names in photo_sources(every=every_photo):
        for name in names:
            for view, image in _views(photo(name), random_crops, rng):
                if min(image.shape[:2]) >= _MIN_SIDE:  # smaller ones the job refuses
                    yield BenignView(f"{name}/{view}", _decoded(image))


def measure(
    model, views: Iterator[BenignView], min_confidence: float, batch_size: int = 16
) -> dict[str, ComponentFigures]:
    """Figures per component (and ``model`` for whole responses, ``content types``)."""
    from model.label_map import label_evidence, labels_from_evidence

    figures: dict[str, ComponentFigures] = {}
    for batch in batches(views, batch_size):
        analyses = model.analyse([view.image for view in batch])
        responses = model.respond(analyses, min_confidence)
        for view, analysis, response in zip(batch, analyses, responses, strict=True):
            by_component: dict[str, dict[str, float]] = {}
            for signal, score in analysis.signals.items():
                by_component.setdefault(signal.partition("/")[0], {})[signal] = score
            for component, signals in sorted(by_component.items()):
                evidence = label_evidence(signals)
                entry = figures.setdefault(component, ComponentFigures())
                entry.add(view.name, labels_from_evidence(evidence, min_confidence))
                entry.consider(max(evidence.values(), default=0.0), view.name)
            whole = figures.setdefault("model", ComponentFigures())
            whole.add(view.name, response["ModerationLabels"])
            labels = response["ModerationLabels"]
            whole.consider(max((float(x["Confidence"]) for x in labels), default=0.0), view.name)
            types = figures.setdefault("content types", ComponentFigures())
            types.add(view.name, response["ContentTypes"])
            for kind, probability in (analysis.content_types or {}).items():
                types.consider(100.0 * probability, f"{view.name} ({kind})")
    return figures


def render_text(figures: dict[str, ComponentFigures], min_confidence: float) -> str:
    lines = [
        f"Benign images with a label at MinConfidence {min_confidence:g}, per component:",
        "",
        f"{'component':<16} {'images':>6} {'flagged':>7} {'rate':>7}  highest (on)",
    ]
    for name, entry in figures.items():
        rate = len(entry.flagged) / entry.images if entry.images else 0.0
        lines.append(
            f"{name:<16} {entry.images:>6} {len(entry.flagged):>7} {rate:>7.2%}  "
            f"{entry.highest[0]:.1f} ({entry.highest[1] or '-'})"
        )
    for name, entry in figures.items():
        for view, label, confidence in entry.flagged:
            lines.append(f"  {name}: {view} -> {label} {confidence:.1f}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.false_positives",
        description="Counts, per model component, the benign sample photos (whole, cropped and "
        "scaled) on which that component alone would put a moderation label.",
    )
    add_confidence_argument(parser, help="Labels below this confidence (0-100) do not count.")
    add_format_argument(parser, "a table")
    add_components_argument(parser)
    parser.add_argument(
        "--random_crops",
        type=int,
        default=0,
        help="Seeded random crops added per photo (15-90 %% of each side, at least 80 px). "
        "Default: 0.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random crops.")
    parser.add_argument(
        "--every_photo",
        action="store_true",
        help="Also the content-types recipe's other photos (PyWavelets, mahotas, scikit-image's "
        "micrograph; the train extra installs them).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from model.moderation_model import load_moderation_model

    args = build_parser().parse_args(argv)
    configure_logging()
    check_confidence(args.min_confidence)
    if not 0 <= args.random_crops <= 1000:
        raise SystemExit("--random_crops must be between 0 and 1000")
    model = load_moderation_model(args.components)
    views = benign_views(args.random_crops, args.seed, args.every_photo)
    figures = measure(model, views, args.min_confidence)
    if args.format == "json":
        document = {name: entry.as_dict() for name, entry in figures.items()}
        json.dump(
            {"min_confidence": args.min_confidence, "components": document}, sys.stdout, indent=2
        )
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(figures, args.min_confidence))
    return 0


if __name__ == "__main__":
    sys.exit(main())

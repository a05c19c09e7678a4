"""Drawings made from the recipe's photos: cartoons (cel shading), pencil sketches, paintings.

The photos are few, and they are the only images of their subjects (a cat, a cup, a rocket):
a head may then learn that a subject is a photo's, and call a photo of another subject a
drawing. The same subjects drawn in other styles teach it that the style, not the subject,
makes a drawing. Each ``make_*`` takes a crop of one photo first (as the photo class does), then
redraws it: a drawing is kept in the split of the photo it comes from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from training.content_types_drawing import make_photo_crop

__all__ = ["STYLES", "make_stylised"]

Maker = Callable[[np.random.Generator], np.ndarray]
_SIDE = 256


def _outlines(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Where the ink lines of ``image`` go: Canny edges, thickened a little."""
    from skimage.feature import canny

    grey = np.asarray(ImageOps.grayscale(image), np.float32) / 255.0
    edges = canny(grey, sigma=float(rng.uniform(1.8, 3.0)))
    lines = Image.fromarray(edges.astype(np.uint8) * 255)
    if rng.random() < 0.6:
        lines = lines.filter(ImageFilter.MaxFilter(3))
    return np.asarray(lines) > 0


def _cartoon(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Cel shading: smoothed, a few flat colours, dark outlines."""
    smooth = image
    for _ in range(2):
        smooth = smooth.filter(ImageFilter.MedianFilter(7))
    colours = int(rng.integers(4, 12))
    flat = smooth.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).convert("RGB")
    pixels = np.asarray(flat).copy()
    if rng.random() < 0.85:
        pixels[_outlines(image, rng)] = int(rng.integers(0, 50))
    return pixels


def _pencil(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A pencil sketch: the grey image divided by its blurred negative (a colour dodge)."""
    grey = np.asarray(ImageOps.grayscale(image), np.float32)
    negative = Image.fromarray((255 - grey).astype(np.uint8))
    blurred = np.asarray(negative.filter(ImageFilter.GaussianBlur(rng.uniform(3, 9))), np.float32)
    sketch = np.clip(grey * 255.0 / (256.0 - blurred), 0, 255)
    sketch = 255 - (255 - sketch) * rng.uniform(0.7, 1.3)  # harder or softer lead
    pixels = np.repeat(np.clip(sketch, 0, 255)[:, :, None], 3, axis=2)
    if rng.random() < 0.4:  # coloured pencil: a wash of the photo's colours over the lines
        wash = np.asarray(image.filter(ImageFilter.GaussianBlur(4)), np.float32)
        pixels = pixels * (1 - 0.35) + wash * 0.35 * (pixels / 255.0)
    return pixels.round().astype(np.uint8)


def _painting(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Broad strokes: a mode filter (each pixel takes its neighbourhood's commonest colour),
    fewer colours, and a canvas grain."""
    painted = image
    for _ in range(3):
        painted = painted.filter(ImageFilter.ModeFilter(int(rng.integers(7, 12))))
    painted = painted.quantize(colors=int(rng.integers(8, 24))).convert("RGB")
    painted = painted.filter(ImageFilter.SMOOTH_MORE)
    pixels = np.asarray(painted, np.float32)
    weave = np.indices(pixels.shape[:2]).sum(axis=0) % 4 < 2
    pixels = pixels + np.where(weave, 1.0, -1.0)[:, :, None] * rng.uniform(4, 10)
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


# Style -> (class, redraw): cel shading is a cartoon's look, sketches and paintings are drawn.
STYLES: dict[str, tuple[str, Callable[[Image.Image, np.random.Generator], np.ndarray]]] = {
    "cartoon": ("Animated", _cartoon),
    "pencil": ("Illustrated", _pencil),
    "painting": ("Illustrated", _painting),
}


def make_stylised(names: tuple[str, ...], style: str) -> Maker:
    """``rng -> pixels``: a crop of one of the photos ``names``, redrawn in ``style``."""
    crop = make_photo_crop(names, smallest=0.5)  # a detail redrawn is a blur, not a drawing
    redraw = STYLES[style][1]

    def make(rng: np.random.Generator) -> np.ndarray:
        image = Image.fromarray(crop(rng))
        image = image.resize((_SIDE, round(_SIDE * image.size[1] / image.size[0])))
        return redraw(image, rng)

    return make

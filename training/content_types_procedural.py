"""Drawings the content-types recipe makes itself: cartoons, pixel art, clip art, sketches,
charts, diagrams, word art.

Packaged art is game sprites and emoji, two styles: a head trained on them alone learns those
styles rather than "not a photo". These generators draw what else a drawing can look like, with
Pillow only: flat colours and outlines, pixel grids scaled up, pencil strokes on paper, plotted
data, nodes and links, font glyphs and lettering. Each ``make_*`` returns ``rng -> RGB uint8
pixels`` (square, ``CANVAS`` wide), every choice drawn from ``rng``, so an image is fixed by the
generator that gets it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "CANVAS",
    "GENERATORS",
    "font",
    "make_cartoon",
    "make_chart",
    "make_clipart",
    "make_diagram",
    "make_glyphs",
    "make_pixel_art",
    "make_sketch",
    "make_wordart",
    "random_colour",
]

CANVAS = 256
Maker = Callable[[np.random.Generator], np.ndarray]
Colour = tuple[int, int, int]

# Symbols of DejaVu Sans drawn as clip art: weather, cards, chess, music, tools, signs.
_GLYPHS = "☀☁☂☃★☆☎☕☘☠☢☣☮☯☹☺☻♔♕♖♗♘♙♚♛♜♝♞♟♠♣♥♦♨♩♪♫♬⚐⚑⚒⚓⚔⚖⚙⚛⚠⚡⚽⚾⛄⛅✂✈✉✋✌✍✎✏✒✓✔✖✚✜✝✠✡✤✦✧✩✪✬✰✱✲✵✶✷✸✹✺✻✼✽✾✿❀❁❂❃❄❅❆❇❈❉❊❋❍❤❥❦❧➔➜➤➥➨"  # noqa: E501
_FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


@functools.lru_cache(maxsize=64)
def font(size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    """A DejaVu face of matplotlib's (the train extra installs it) at ``size`` px."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return ImageFont.truetype(str(folder / _FONT_FILES[index % len(_FONT_FILES)]), size)


def random_colour(rng: np.random.Generator, saturated: bool = True) -> Colour:
    """A colour from random HSV: saturated and bright for flat fills, else anything."""
    hue = rng.random()
    saturation = rng.uniform(0.5, 1.0) if saturated else rng.random()
    value = rng.uniform(0.6, 1.0) if saturated else rng.random()
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = (
        value * (1 - saturation),
        value * (1 - f * saturation),
        value * (1 - (1 - f) * saturation),
    )
    rgb = [
        (value, t, p),
        (q, value, p),
        (p, value, t),
        (p, q, value),
        (t, p, value),
        (value, p, q),
    ][i]
    return tuple(int(round(255 * c)) for c in rgb)


def _dark(rng: np.random.Generator) -> Colour:
    """An outline colour: near black, or a dark shade."""
    if rng.random() < 0.7:
        return (int(rng.integers(0, 40)),) * 3
    return tuple(int(c * 0.3) for c in random_colour(rng))


def _point(rng: np.random.Generator, margin: int = 0) -> tuple[int, int]:
    return int(rng.integers(margin, CANVAS - margin)), int(rng.integers(margin, CANVAS - margin))


def _box(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int, int]:
    """A box of sides in ``[low, high)`` somewhere on the canvas."""
    width, height = int(rng.integers(low, high)), int(rng.integers(low, high))
    x = int(rng.integers(0, max(1, CANVAS - width)))
    y = int(rng.integers(0, max(1, CANVAS - height)))
    return x, y, x + width, y + height


def _plain_background(rng: np.random.Generator) -> Image.Image:
    """White (half the time), a pale tint or a saturated colour."""
    kind = rng.random()
    if kind < 0.5:
        return Image.new("RGB", (CANVAS, CANVAS), (255, 255, 255))
    colour = random_colour(rng)
    if kind < 0.8:
        colour = tuple(int(255 - (255 - c) * 0.25) for c in colour)
    return Image.new("RGB", (CANVAS, CANVAS), colour)


def _vertical_gradient(top: Colour, bottom: Colour, height: int = CANVAS) -> Image.Image:
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = np.array(top)[None, None, :] * (1 - ramp) + np.array(bottom)[None, None, :] * ramp
    return Image.fromarray(np.broadcast_to(pixels, (height, CANVAS, 3)).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Flat shapes, the vocabulary of clip art and cartoons


def _star(centre: tuple[float, float], outer: float, points: int, turn: float) -> list[tuple]:
    inner = outer * 0.45
    corners = []
    for i in range(points * 2):
        radius = outer if i % 2 == 0 else inner
        angle = turn + math.pi * i / points
        corners.append((centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle)))
    return corners


def _heart(centre: tuple[float, float], size: float) -> list[tuple]:
    corners = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        corners.append((centre[0] + x * size / 32, centre[1] - y * size / 32))
    return corners


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, fill: Colour, outline, width: int):
    """One flat shape (ellipse, box, rounded box, polygon, star or heart) somewhere."""
    outline = outline if width else None
    box = _box(rng, 30, 150)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    size = (box[2] - box[0]) / 2
    kind = int(rng.integers(6))
    if kind == 0:
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif kind == 1:
        draw.rectangle(box, fill=fill, outline=outline, width=width)
    elif kind == 2:
        radius = int(min(box[2] - box[0], box[3] - box[1]) * rng.uniform(0.1, 0.4))
        draw.rounded_rectangle(box, radius, fill=fill, outline=outline, width=width)
    elif kind == 3:
        sides = int(rng.integers(3, 8))
        draw.regular_polygon(
            (*centre, size), sides, float(rng.uniform(0, 360)), fill, outline, width
        )
    elif kind == 4:
        corners = _star(centre, size, int(rng.integers(4, 9)), float(rng.uniform(0, math.pi)))
        draw.polygon(corners, fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_heart(centre, size * 1.6), fill=fill, outline=outline, width=width)


def make_clipart() -> Maker:
    """Flat shapes, filled with bright colours, outlined or not, some with a drop shadow."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _plain_background(rng)
        outlined = rng.random() < 0.6
        shadow = int(rng.integers(3, 9)) if rng.random() < 0.3 else 0
        for _ in range(int(rng.integers(2, 7))):
            layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
            width = int(rng.integers(2, 7)) if outlined else 0
            _shape(ImageDraw.Draw(layer), rng, random_colour(rng), _dark(rng), width)
            mask = layer.getchannel("A")
            if shadow:
                canvas.paste((80, 80, 80), (shadow, shadow), mask)
            canvas.paste(layer, (0, 0), mask)
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Cartoons: characters with eyes on a simple landscape


def _sky_and_ground(rng: np.random.Generator) -> tuple[Image.Image, int]:
    top, bottom = random_colour(rng), random_colour(rng)
    if rng.random() < 0.6:  # mostly sky blue
        top, bottom = (
            (int(rng.integers(40, 120)), int(rng.integers(120, 200)), 255),
            (
                200,
                230,
                255,
            ),
        )
    canvas = _vertical_gradient(top, bottom)
    draw = ImageDraw.Draw(canvas)
    horizon = int(rng.integers(150, 215))
    outline, width = _dark(rng), int(rng.integers(2, 5))
    if rng.random() < 0.6:  # a sun with rays
        cx, cy, r = int(rng.integers(30, 226)), int(rng.integers(20, 80)), int(rng.integers(12, 30))
        for i in range(12):
            angle = 2 * math.pi * i / 12
            start = (cx + (r + 4) * math.cos(angle), cy + (r + 4) * math.sin(angle))
            end = (cx + (r + 14) * math.cos(angle), cy + (r + 14) * math.sin(angle))
            draw.line([start, end], fill=(255, 200, 0), width=3)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), (255, 220, 40), outline, width)
    for _ in range(int(rng.integers(0, 3))):  # clouds: overlapping white puffs
        cx, cy = int(rng.integers(20, 236)), int(rng.integers(20, 100))
        for _ in range(3):
            dx, r = int(rng.integers(-22, 22)), int(rng.integers(10, 20))
            draw.ellipse((cx + dx - r, cy - r, cx + dx + r, cy + r), (255, 255, 255), outline, 2)
    ground = random_colour(rng)
    for _ in range(int(rng.integers(1, 3))):  # rolling hills
        cx, r = int(rng.integers(-40, 296)), int(rng.integers(80, 200))
        draw.ellipse((cx - r, horizon - r // 3, cx + r, horizon + r), ground, outline, width)
    draw.rectangle((0, horizon + 10, CANVAS, CANVAS), ground)
    return canvas, horizon


def _character(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, ground: int):
    """A blob with big eyes, a mouth, stick limbs and sometimes a hat."""
    outline, width = _dark(rng), int(rng.integers(2, 6))
    body_w, body_h = int(rng.integers(36, 90)), int(rng.integers(40, 100))
    top = ground - body_h - int(rng.integers(10, 30))
    body = (x, top, x + body_w, top + body_h)
    leg = int(rng.integers(3, 7))
    for side in (0.3, 0.7):
        foot_x = x + body_w * side
        draw.line([(foot_x, body[3] - 4), (foot_x, ground)], fill=outline, width=leg)
        draw.ellipse((foot_x - 8, ground - 5, foot_x + 8, ground + 5), fill=outline)
    for side, sign in ((x, -1), (x + body_w, 1)):
        hand = (side + sign * int(rng.integers(10, 25)), top + body_h * rng.uniform(0.2, 0.8))
        draw.line([(side, top + body_h / 2), hand], fill=outline, width=leg)
    fill = random_colour(rng)
    if rng.random() < 0.5:
        draw.ellipse(body, fill, outline, width)
    else:
        draw.rounded_rectangle(body, int(body_w * 0.3), fill, outline, width)
    eye = max(6, body_w // 5)
    for ex in (x + body_w * 0.32, x + body_w * 0.68):
        ey = top + body_h * 0.35
        draw.ellipse(
            (ex - eye, ey - eye * 1.2, ex + eye, ey + eye * 1.2), (255, 255, 255), outline, 2
        )
        pupil = eye * rng.uniform(0.35, 0.6)
        look = rng.uniform(-0.4, 0.4) * eye
        draw.ellipse((ex + look - pupil, ey - pupil, ex + look + pupil, ey + pupil), (0, 0, 0))
    mouth_y = top + body_h * 0.62
    mouth = (x + body_w * 0.3, mouth_y - 8, x + body_w * 0.7, mouth_y + 10)
    draw.arc(mouth, 10, 170, fill=outline, width=max(2, width - 1))
    if rng.random() < 0.35:  # a hat
        brim = (x - 4, top - 4)
        peak = (x + body_w / 2, top - int(rng.integers(20, 45)))
        draw.polygon([brim, (x + body_w + 4, top - 4), peak], random_colour(rng), outline, width)


def make_cartoon() -> Maker:
    """A cartoon frame: sky, sun, clouds, hills and one to three characters."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas, horizon = _sky_and_ground(rng)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            _character(draw, rng, int(rng.integers(0, 180)), horizon + int(rng.integers(15, 40)))
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Pixel art: small sprites on a grid, scaled up without smoothing


def _pixel_sprite(rng: np.random.Generator) -> Image.Image:
    """A left-right symmetric sprite (a space invader, a creature) with a dark outline, RGBA."""
    side = int(rng.integers(7, 17))
    half = (side + 1) // 2
    palette = [random_colour(rng) for _ in range(int(rng.integers(2, 5)))]
    cells = rng.random((side, half)) < rng.uniform(0.3, 0.55)
    grid = np.zeros((side + 2, side + 2), dtype=np.int16)
    # Colour by bands of rows, as a sprite has a head, a body and feet, not noise.
    bands = rng.integers(1, len(palette) + 1, side // 2 + 1)
    colours = np.repeat(bands, 2)[:side, None] * np.ones((1, half), dtype=np.int64)
    left = np.where(cells, colours, 0)
    grid[1:-1, 1:-1] = np.concatenate([left, left[:, ::-1][:, side % 2 :]], axis=1)
    filled = grid > 0
    edge = np.zeros_like(filled)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        edge |= np.roll(filled, (dy, dx), axis=(0, 1))
    rgba = np.zeros((*grid.shape, 4), np.uint8)
    rgba[edge & ~filled] = (*_dark(rng), 255)
    for index, colour in enumerate(palette, start=1):
        rgba[grid == index] = (*colour, 255)
    return Image.fromarray(rgba, "RGBA")


def _pixel_background(rng: np.random.Generator, cell: int) -> Image.Image:
    """A flat colour, a checkerboard of two shades, or brick-like rows, at the sprite's scale."""
    base = random_colour(rng, saturated=rng.random() < 0.5)
    canvas = Image.new("RGB", (CANVAS, CANVAS), base)
    draw = ImageDraw.Draw(canvas)
    kind = rng.random()
    shade = tuple(max(0, c - int(rng.integers(20, 60))) for c in base)
    step = cell * int(rng.integers(2, 6))
    if kind < 0.35:
        for y in range(0, CANVAS, step):
            for x in range(0, CANVAS, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), shade)
    elif kind < 0.65:
        for row, y in enumerate(range(0, CANVAS, step)):
            draw.line([(0, y), (CANVAS, y)], fill=shade, width=cell)
            for x in range((row % 2) * step // 2, CANVAS, step):
                draw.line([(x, y), (x, y + step)], fill=shade, width=cell)
    return canvas


def make_pixel_art() -> Maker:
    """A few pixel-art sprites on a pixel-art background, all on one coarse grid."""

    def make(rng: np.random.Generator) -> np.ndarray:
        cell = int(rng.integers(3, 9))
        canvas = _pixel_background(rng, cell)
        for _ in range(int(rng.integers(1, 6))):
            sprite = _pixel_sprite(rng)
            scale = cell * int(rng.integers(1, 3))
            sprite = sprite.resize(
                (sprite.size[0] * scale, sprite.size[1] * scale), Image.Resampling.NEAREST
            )
            x = int(rng.integers(0, max(1, CANVAS - sprite.size[0])))
            y = int(rng.integers(0, max(1, CANVAS - sprite.size[1])))
            canvas.paste(sprite, (x - x % cell, y - y % cell), sprite)
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Sketches: pencil lines on paper


def _curve(rng: np.random.Generator, start: tuple[int, int], steps: int) -> list[tuple]:
    """A smooth wandering line: a random walk of the heading."""
    x, y = start
    heading = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        x += 4 * math.cos(heading)
        y += 4 * math.sin(heading)
        points.append((x, y))
    return points


def _paper(rng: np.random.Generator) -> Image.Image:
    tone = np.array([int(rng.integers(225, 256)), int(rng.integers(220, 252)), 0])
    tone[2] = int(rng.integers(200, tone[1] + 1))
    grain = rng.normal(0, rng.uniform(0, 5), (CANVAS, CANVAS, 1))
    return Image.fromarray(np.clip(tone[None, None, :] + grain, 0, 255).astype(np.uint8))


def make_sketch() -> Maker:
    """Pencil or ink strokes on paper: outlines of simple things, scribbles and hatching."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _paper(rng)
        layer = Image.new("L", (CANVAS, CANVAS), 0)
        draw = ImageDraw.Draw(layer)
        strength = int(rng.integers(120, 256))
        width = int(rng.integers(1, 4))
        for _ in range(int(rng.integers(2, 6))):
            box = _box(rng, 40, 160)
            kind = int(rng.integers(3))
            if kind == 0:
                draw.ellipse(box, outline=strength, width=width)
            elif kind == 1:  # a house: a box and a roof
                roof = (
                    (box[0] - 8, box[1]),
                    ((box[0] + box[2]) / 2, box[1] - 40),
                    (box[2] + 8, box[1]),
                )
                draw.rectangle(box, outline=strength, width=width)
                draw.line([*roof], fill=strength, width=width)
            else:
                draw.line(_curve(rng, _point(rng, 30), int(rng.integers(20, 80))), strength, width)
        if rng.random() < 0.6:  # hatching in one box
            x0, y0, x1, y1 = _box(rng, 40, 120)
            gap = int(rng.integers(4, 10))
            for offset in range(-(y1 - y0), x1 - x0, gap):
                draw.line([(x0 + offset, y1), (x0 + offset + (y1 - y0), y0)], strength // 2, 1)
        if rng.random() < 0.5:
            layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
        ink = np.array(_dark(rng), np.float32)
        alpha = np.asarray(layer, np.float32)[:, :, None] / 255.0
        pixels = np.asarray(canvas, np.float32) * (1 - alpha) + ink * alpha
        return pixels.round().astype(np.uint8)

    return make


# ---------------------------------------------------------------------------------------------
# Charts: the plots of a report, drawn by hand


def _axes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple) -> None:
    x0, y0, x1, y1 = box
    ink = _dark(rng)
    if rng.random() < 0.5:  # grid lines
        for i in range(1, 5):
            y = y0 + (y1 - y0) * i / 5
            draw.line([(x0, y), (x1, y)], fill=(215, 215, 215), width=1)
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=ink, width=2)
    small = font(int(rng.integers(9, 14)), int(rng.integers(4)))
    for i in range(5):
        y = y1 - (y1 - y0) * i / 4
        draw.text((x0 - 4, y), str(i * int(rng.integers(1, 50))), fill=ink, font=small, anchor="rm")
    if rng.random() < 0.7:
        title = font(int(rng.integers(12, 20)), int(rng.integers(4)))
        words = ["Sales", "Growth", "Results", "Rate", "Score", "Total", "Usage", "Trend"]
        text = " ".join(str(w) for w in rng.choice(words, int(rng.integers(1, 3)), replace=False))
        draw.text(((x0 + x1) / 2, 12), text, fill=ink, font=title, anchor="mt")


def _bars(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple) -> None:
    x0, y0, x1, y1 = box
    count = int(rng.integers(3, 10))
    colours = [random_colour(rng) for _ in range(int(rng.integers(1, 4)))]
    slot = (x1 - x0) / count
    for i in range(count):
        height = (y1 - y0) * rng.uniform(0.1, 0.95)
        left = x0 + slot * i + slot * 0.15
        draw.rectangle((left, y1 - height, left + slot * 0.7, y1 - 1), colours[i % len(colours)])


def _lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple) -> None:
    x0, y0, x1, y1 = box
    for _ in range(int(rng.integers(1, 4))):
        values = np.cumsum(rng.normal(0, 1, int(rng.integers(6, 30))))
        values = (values - values.min()) / (np.ptp(values) + 1e-9)
        xs = np.linspace(x0 + 4, x1 - 4, len(values))
        points = [(float(x), float(y1 - 4 - v * (y1 - y0 - 8))) for x, v in zip(xs, values)]
        colour = random_colour(rng)
        draw.line(points, fill=colour, width=int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            for px, py in points:
                draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)


def _scatter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple) -> None:
    x0, y0, x1, y1 = box
    for _ in range(int(rng.integers(1, 4))):
        colour, r = random_colour(rng), int(rng.integers(2, 6))
        centre = rng.uniform(0.2, 0.8, 2)
        for dx, dy in rng.normal(0, 0.15, (int(rng.integers(15, 60)), 2)):
            px = x0 + (x1 - x0) * float(np.clip(centre[0] + dx, 0.02, 0.98))
            py = y0 + (y1 - y0) * float(np.clip(centre[1] + dy, 0.02, 0.98))
            draw.ellipse((px - r, py - r, px + r, py + r), fill=colour)


def _pie(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    shares = rng.dirichlet(np.ones(int(rng.integers(2, 7))))
    box = _box(rng, 140, 220)
    side = min(box[2] - box[0], box[3] - box[1])
    box = (box[0], box[1], box[0] + side, box[1] + side)
    start = float(rng.uniform(0, 360))
    outline = (255, 255, 255) if rng.random() < 0.5 else None
    for share in shares:
        end = start + 360 * float(share)
        draw.pieslice(box, start, end, fill=random_colour(rng), outline=outline, width=2)
        start = end


def make_chart() -> Maker:
    """A bar, line, scatter or pie chart with axes, labels and a title."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = (
            _plain_background(rng) if rng.random() < 0.3 else Image.new("RGB", (256, 256), "white")
        )
        draw = ImageDraw.Draw(canvas)
        kind = int(rng.integers(4))
        if kind == 3:
            _pie(draw, rng)
            return np.asarray(canvas)
        box = (
            int(rng.integers(28, 50)),
            int(rng.integers(28, 50)),
            244,
            int(rng.integers(200, 236)),
        )
        _axes(draw, rng, box)
        (_bars, _lines, _scatter)[kind](draw, rng, box)
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Glyphs: the symbols of a font, as clip art


@functools.lru_cache(maxsize=1)
def _drawable_glyphs() -> str:
    """The symbols of ``_GLYPHS`` that both faces used have (others would draw as a box)."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    faces = [FT2Font(str(folder / name)) for name in _FONT_FILES[:2]]
    return "".join(g for g in _GLYPHS if all(face.get_char_index(ord(g)) for face in faces))


def make_glyphs() -> Maker:
    """One big symbol, or a few, in flat colours, outlined or not."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = _plain_background(rng)
        draw = ImageDraw.Draw(canvas)
        count = 1 if rng.random() < 0.5 else int(rng.integers(2, 6))
        for _ in range(count):
            size = int(rng.integers(150, 230)) if count == 1 else int(rng.integers(50, 120))
            glyphs = _drawable_glyphs()
            glyph = glyphs[int(rng.integers(len(glyphs)))]
            stroke = int(rng.integers(0, 5)) if rng.random() < 0.5 else 0
            position = (128, 128) if count == 1 else _point(rng, 30)
            draw.text(
                position,
                glyph,
                fill=random_colour(rng),
                font=font(size, int(rng.integers(2))),
                anchor="mm",
                stroke_width=stroke,
                stroke_fill=_dark(rng),
            )
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Diagrams: nodes and links, as in a graph drawing or a flowchart


def _arrow_head(draw: ImageDraw.ImageDraw, start: tuple, end: tuple, colour: Colour, size: int):
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    left = (end[0] - size * math.cos(angle - 0.4), end[1] - size * math.sin(angle - 0.4))
    right = (end[0] - size * math.cos(angle + 0.4), end[1] - size * math.sin(angle + 0.4))
    draw.polygon([end, left, right], fill=colour)


def make_diagram() -> Maker:
    """Nodes (dots, circles or labelled boxes) joined by lines or arrows, on a plain page."""

    def make(rng: np.random.Generator) -> np.ndarray:
        canvas = Image.new("RGB", (CANVAS, CANVAS), (255, 255, 255))
        if rng.random() < 0.3:
            canvas = _plain_background(rng)
        draw = ImageDraw.Draw(canvas)
        count = int(rng.integers(3, 12))
        nodes = [_point(rng, 24) for _ in range(count)]
        ink, node_colour = _dark(rng), random_colour(rng)
        arrows, boxes = rng.random() < 0.5, rng.random() < 0.35
        radius = int(rng.integers(4, 16))
        small = font(int(rng.integers(9, 14)), int(rng.integers(4)))
        for _ in range(int(rng.integers(count, 2 * count + 1))):
            a, b = (nodes[int(i)] for i in rng.choice(count, 2, replace=False))
            colour = ink if rng.random() < 0.7 else random_colour(rng)
            draw.line([a, b], fill=colour, width=int(rng.integers(1, 4)))
            if arrows:
                _arrow_head(draw, a, b, colour, 8)
            if rng.random() < 0.2:  # an edge weight
                middle = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
                draw.text(middle, f"{rng.uniform(0, 10):.1f}", fill=ink, font=small, anchor="mm")
        for i, (x, y) in enumerate(nodes):
            if boxes:
                box = (x - 24, y - 10, x + 24, y + 10)
                draw.rounded_rectangle(box, 4, fill=(255, 255, 255), outline=ink, width=2)
                draw.text((x, y), f"step {i}", fill=ink, font=small, anchor="mm")
            else:
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), node_colour, ink, 1)
                if rng.random() < 0.4:
                    draw.text((x, y - radius - 6), str(i), fill=ink, font=small, anchor="mm")
        return np.asarray(canvas)

    return make


# ---------------------------------------------------------------------------------------------
# Word art: a name in big letters, as a logo or a banner

_WORDS = ("Danger!", "Sale", "Welcome", "Hello", "Super", "Fun Zone", "Cafe", "Power", "Boom",
          "Party", "Go!", "Studio", "Best", "Pixel", "Happy", "Shop")  # fmt: skip


def make_wordart() -> Maker:
    """A word in big bold letters, outlined or shadowed, on a banner, a badge or a gradient."""

    def make(rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.5:
            canvas = _vertical_gradient(random_colour(rng), random_colour(rng))
        else:
            canvas = _plain_background(rng)
        draw = ImageDraw.Draw(canvas)
        if rng.random() < 0.5:  # a banner or a badge behind the word
            _shape(draw, rng, random_colour(rng), _dark(rng), int(rng.integers(0, 5)))
        word = str(_WORDS[int(rng.integers(len(_WORDS)))])
        size = int(rng.integers(36, 72))
        face = font(size, 1 if rng.random() < 0.7 else int(rng.integers(4)))
        position = (128 + int(rng.integers(-30, 31)), 128 + int(rng.integers(-60, 61)))
        if rng.random() < 0.5:  # a drop shadow
            offset = int(rng.integers(2, 7))
            shadow = (position[0] + offset, position[1] + offset)
            draw.text(shadow, word, fill=_dark(rng), font=face, anchor="mm")
        stroke = int(rng.integers(0, 6))
        draw.text(position, word, fill=random_colour(rng), font=face, anchor="mm",
                  stroke_width=stroke, stroke_fill=_dark(rng))  # fmt: skip
        return np.asarray(canvas)

    return make


# Kind -> (class, generator): what the recipe draws, and how many of each.
GENERATORS: dict[str, tuple[str, Callable[[], Maker]]] = {
    "cartoon": ("Animated", make_cartoon),
    "pixel-art": ("Animated", make_pixel_art),
    "clipart": ("Illustrated", make_clipart),
    "sketch": ("Illustrated", make_sketch),
    "chart": ("Illustrated", make_chart),
    "glyphs": ("Illustrated", make_glyphs),
    "diagram": ("Illustrated", make_diagram),
    "wordart": ("Illustrated", make_wordart),
}

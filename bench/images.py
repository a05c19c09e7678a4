"""Distinct benchmark images: crops, scales and JPEG qualities of the scikit-image sample photos."""

from __future__ import annotations

import os
import random

from PIL import Image

__all__ = ["make_benchmark_images"]

_SOURCES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "page.png",
    "brick.png",
)


def make_benchmark_images(folder: str, count: int, seed: int = 7) -> list[str]:
    """Writes ``count`` distinct JPEGs (150 to 1200 px sides) into ``folder``; returns paths."""
    import skimage.data

    data = os.path.dirname(skimage.data.__file__)
    sources = [Image.open(os.path.join(data, name)).convert("RGB") for name in _SOURCES]
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index in range(count):
        image = sources[index % len(sources)]
        width, height = image.size
        left = rng.randint(0, width // 4)
        top = rng.randint(0, height // 4)
        crop = image.crop(
            (left, top, rng.randint(3 * width // 4, width), rng.randint(3 * height // 4, height))
        )
        scale = rng.uniform(0.5, 2.0)
        side = max(crop.size) * scale
        if side > 1200:
            scale *= 1200 / side
        size = (max(150, int(crop.width * scale)), max(150, int(crop.height * scale)))
        variant = crop.resize(size, Image.Resampling.BILINEAR)
        path = os.path.join(folder, f"image-{index:05d}.jpg")
        variant.save(path, "JPEG", quality=rng.randint(60, 95))
        paths.append(path)
    return paths

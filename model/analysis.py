"""What the base model saw in one image: what adapters read, and what responses are built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageAnalysis"]


@dataclass
class ImageAnalysis:
    """The base model's view of one image: component signals ("<component>/<output>" -> score
    in [0, 1]), content-type probabilities, and the backbone's embedding (None without one)."""

    signals: dict[str, float]
    content_types: dict[str, float]
    embedding: np.ndarray | None

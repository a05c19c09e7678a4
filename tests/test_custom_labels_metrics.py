"""Custom Labels metrics on hand-made cases: matching boxes, average precision, assumed
thresholds, the evaluation and AWS's summary file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from model.custom_labels_model import (
    CLASSIFICATION,
    MULTI_LABEL,
    OBJECT_DETECTION,
    Box,
    CustomLabelsSpec,
    Prediction,
)
from training.custom_labels_data import LabelledImage
from training.custom_labels_metrics import (
    DEFAULT_THRESHOLD,
    RankedOutcomes,
    assumed_thresholds,
    average_precision,
    best_threshold,
    evaluate,
    evaluate_analyses,
    evaluation_summary,
    match_detections,
    ranked_outcomes,
)

BOX = Box(0.1, 0.1, 0.4, 0.4)
OTHER = Box(0.6, 0.6, 0.3, 0.3)


def _outcomes(confidences, true_positive, truths) -> RankedOutcomes:
    return RankedOutcomes(np.array(confidences, float), np.array(true_positive, bool), truths)


def _image(labels, boxes=(), number=1) -> LabelledImage:
    return LabelledImage(f"img{number}.jpg", number, "test.manifest", frozenset(labels), boxes)


# Matching.


def test_a_duplicate_box_is_a_false_positive():
    predictions = [Prediction("cat", 60.0, BOX), Prediction("cat", 90.0, BOX)]
    assert match_detections(predictions, [BOX]) == [False, True]


def test_matching_needs_iou_of_a_half():
    half = Box(0.1, 0.1, 0.4, 0.2)  # IoU 0.5 with BOX
    less = Box(0.1, 0.1, 0.4, 0.19)
    assert match_detections([Prediction("cat", 50.0, half)], [BOX]) == [True]
    assert match_detections([Prediction("cat", 50.0, less)], [BOX]) == [False]


def test_the_most_confident_prediction_matches_first_with_the_best_overlap():
    near_both = Box(0.1, 0.1, 0.4, 0.42)
    second = Box(0.1, 0.13, 0.4, 0.4)
    truths = [Box(0.1, 0.15, 0.4, 0.4), BOX]
    predictions = [Prediction("cat", 40.0, second), Prediction("cat", 80.0, near_both)]
    # The confident one takes BOX (IoU 0.95 against 0.82); the other gets the first truth.
    assert match_detections(predictions, truths) == [True, True]
    assert match_detections(predictions[1:], truths[1:]) == [True]
    assert match_detections([], truths) == []


def test_detection_outcomes_are_per_label():
    images = [_image({"cat", "car"}, (("cat", BOX), ("car", OTHER)))]
    analyses = [[Prediction("car", 70.0, BOX), Prediction("cat", 65.0, BOX)]]
    cat = ranked_outcomes(OBJECT_DETECTION, "cat", analyses, images)
    car = ranked_outcomes(OBJECT_DETECTION, "car", analyses, images)
    assert cat.true_positive.tolist() == [True] and cat.truths == 1
    assert car.true_positive.tolist() == [False] and car.truths == 1


# Average precision.


def test_average_precision_all_point_interpolated():
    # Precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3; the third truth is never found.
    outcomes = _outcomes([90, 80, 70], [True, False, True], 3)
    assert average_precision(outcomes) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert average_precision(_outcomes([9, 8], [True, True], 2)) == pytest.approx(1.0)
    assert average_precision(_outcomes([9, 8], [False, True], 1)) == pytest.approx(0.5)
    assert average_precision(_outcomes([], [], 2)) == 0.0
    assert average_precision(_outcomes([5], [True], 0)) == 0.0


def test_average_precision_interpolates_precision_from_the_right():
    # Precision 0.5 at recall 0.5, then 2/3 at recall 1: the first point counts at 2/3.
    outcomes = _outcomes([9, 8, 7], [False, True, True], 2)
    assert average_precision(outcomes) == pytest.approx(2 / 3)


def test_tied_confidences_are_one_operating_point():
    # One truth and two boxes at 50: precision 1/2 whichever of the two is listed first.
    tied = _outcomes([50, 50], [True, False], 1)
    assert average_precision(tied) == pytest.approx(0.5)
    assert average_precision(_outcomes([50, 50], [False, True], 1)) == pytest.approx(0.5)


# Assumed thresholds.


def test_best_threshold_maximises_f1_and_sits_between_confidences():
    # Accepting the top two: F1 = 1.
    assert best_threshold(_outcomes([90, 80, 30, 20], [True, True, False, False], 2)) == (
        pytest.approx(55.0),
        pytest.approx(1.0),
    )
    # F1 at each cut: 1/2, 4/5, 2/3, 6/7: everything, down to the lowest.
    threshold, f1 = best_threshold(_outcomes([90, 80, 30, 20], [True, True, False, True], 3))
    assert threshold == pytest.approx(20.0) and f1 == pytest.approx(6 / 7)


def test_best_threshold_without_evidence_is_the_default():
    assert best_threshold(_outcomes([90, 80], [False, False], 2)) == (DEFAULT_THRESHOLD, 0.0)
    assert best_threshold(_outcomes([], [], 0)) == (DEFAULT_THRESHOLD, 0.0)


def test_best_threshold_does_not_split_a_tie():
    threshold, f1 = best_threshold(_outcomes([90, 60, 60, 10], [True, True, False, False], 2))
    # Cutting inside the tie at 60 is impossible: 90 alone (F1 2/3) or down to 60 (F1 0.8).
    assert threshold == pytest.approx(35.0) and f1 == pytest.approx(0.8)


def test_assumed_thresholds_for_a_classifier():
    images = [_image({"a"}, number=1), _image({"b"}, number=2), _image({"a"}, number=3)]
    analyses = [
        [Prediction("a", 80.0), Prediction("b", 20.0)],
        [Prediction("b", 60.0), Prediction("a", 40.0)],
        [Prediction("a", 55.0), Prediction("b", 45.0)],
    ]
    thresholds = assumed_thresholds(CLASSIFICATION, ["a", "b"], analyses, images)
    assert thresholds == {"a": pytest.approx(47.5), "b": pytest.approx(52.5)}


# Evaluation.


def test_classification_evaluation_with_confusion_matrix():
    images = [_image({"a"}, number=i) for i in range(3)] + [_image({"b"}, number=9)]
    analyses = [
        [Prediction("a", 90.0), Prediction("b", 10.0)],
        [Prediction("a", 70.0), Prediction("b", 30.0)],
        [Prediction("b", 60.0), Prediction("a", 40.0)],  # an "a" taken for "b"
        [Prediction("b", 80.0), Prediction("a", 20.0)],
    ]
    evaluation = evaluate_analyses(
        CLASSIFICATION, ["a", "b"], {"a": 50.0, "b": 50.0}, analyses, images
    )
    a, b = evaluation["Labels"]
    assert (a["Label"], a["NumberOfTestingImages"], a["Threshold"]) == ("a", 3, 50.0)
    assert (a["Precision"], a["Recall"]) == (1.0, pytest.approx(2 / 3))
    assert (b["Precision"], b["Recall"], b["F1Score"]) == (0.5, 1.0, pytest.approx(2 / 3))
    # Micro: 3 true positives, 1 false positive, 1 false negative.
    assert evaluation["Precision"] == pytest.approx(0.75)
    assert evaluation["Recall"] == pytest.approx(0.75)
    matrix = {
        (e["GroundTruthLabel"], e["PredictedLabel"]): e["Value"]
        for e in evaluation["ConfusionMatrix"]
    }
    assert matrix == {
        ("a", "a"): pytest.approx(2 / 3),
        ("a", "b"): pytest.approx(1 / 3),
        ("b", "a"): 0.0,
        ("b", "b"): 1.0,
    }
    assert "AveragePrecision" not in evaluation
    at_zero = evaluate_analyses(
        CLASSIFICATION, ["a", "b"], {"a": 50.0, "b": 50.0}, analyses, images, min_confidence=0
    )
    assert at_zero["Recall"] == 1.0 and at_zero["Labels"][0]["Threshold"] == 0.0


def test_multi_label_evaluation_has_no_confusion_matrix():
    images = [_image({"a", "b"}), _image(set(), number=2)]
    analyses = [
        [Prediction("a", 90.0), Prediction("b", 80.0)],
        [Prediction("a", 10.0), Prediction("b", 70.0)],
    ]
    evaluation = evaluate_analyses(MULTI_LABEL, ["a", "b"], {"a": 50, "b": 50}, analyses, images)
    assert "ConfusionMatrix" not in evaluation
    assert evaluation["Labels"][1]["Precision"] == 0.5


def test_detection_evaluation_with_map_and_average_recall():
    shifted = Box(0.15, 0.1, 0.4, 0.4)  # IoU 0.78 with BOX
    images = [
        _image({"cat"}, (("cat", BOX),), number=1),
        _image({"cat", "car"}, (("cat", OTHER), ("car", BOX)), number=2),
    ]
    analyses = [
        [Prediction("cat", 90.0, shifted), Prediction("car", 30.0, OTHER)],
        [Prediction("car", 80.0, BOX), Prediction("cat", 20.0, OTHER)],
    ]
    thresholds = {"car": 50.0, "cat": 50.0}
    evaluation = evaluate_analyses(OBJECT_DETECTION, ["car", "cat"], thresholds, analyses, images)
    car, cat = evaluation["Labels"]
    assert (car["Precision"], car["Recall"], car["AveragePrecision"]) == (1.0, 1.0, 1.0)
    assert (cat["Precision"], cat["Recall"]) == (1.0, 0.5)  # the 20 % cat is below 50
    assert cat["AveragePrecision"] == pytest.approx(1.0)  # both found, in order
    assert evaluation["AveragePrecision"] == pytest.approx(1.0)
    # Car: exact at every IoU; cat: one exact box, one at IoU 0.78 (found at 0.5-0.75).
    # Of the ten IoU thresholds 0.5, 0.55 ... 0.95, six find both cats and four one.
    assert evaluation["AverageRecall"] == pytest.approx((1.0 + (6 * 1.0 + 4 * 0.5) / 10) / 2)
    assert (evaluation["Precision"], evaluation["Recall"]) == (1.0, pytest.approx(2 / 3))
    assert "ConfusionMatrix" not in evaluation


class _FakeModel:
    spec = CustomLabelsSpec(CLASSIFICATION, ("a", "b"), {"a": 50.0, "b": 50.0}, "bb", None, 320)

    def __init__(self):
        self.seen = []

    def analyse(self, images):
        self.seen.extend(images)
        return [[Prediction("a", 70.0), Prediction("b", 30.0)] for _ in images]


def test_evaluate_loads_each_image_and_analyses_it():
    images = [_image({"a"}, number=i) for i in range(20)]
    model = _FakeModel()
    evaluation = evaluate(model, images, lambda ref: ref.upper())
    assert model.seen == [image.source_ref.upper() for image in images]
    assert evaluation["Labels"][0]["Recall"] == 1.0


# The summary file.


def _detection_evaluation():
    return {
        "Labels": [
            {"Label": "car", "NumberOfTestingImages": 4, "Precision": 0.5, "Recall": 0.5,
             "F1Score": 0.5, "Threshold": 42.0, "AveragePrecision": 0.4},
            {"Label": "cat", "NumberOfTestingImages": 5, "Precision": 1.0, "Recall": 0.8,
             "F1Score": 0.8889, "Threshold": 61.5, "AveragePrecision": 0.9},
        ],
        "Precision": 0.7, "Recall": 0.6, "F1Score": 0.646,
        "AveragePrecision": 0.65, "AverageRecall": 0.55,
    }  # fmt: skip


def test_summary_has_aws_shape():
    end = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    summary = evaluation_summary(
        _detection_evaluation(),
        project_version_arn="arn:aws:rekognition:us-east-1:1:project/p/version/v/1",
        labels=["car", "cat"],
        training_images=12,
        testing_images=6,
        end_time=end,
    )
    assert summary["Version"] == 1
    assert summary["EvaluationDetails"] == {
        "ProjectVersionArn": "arn:aws:rekognition:us-east-1:1:project/p/version/v/1",
        "EvaluationEndTimestamp": "2024-05-06T05:08:09.123456",
        "Labels": ["car", "cat"],
        "NumberOfTrainingImages": 12,
        "NumberOfTestingImages": 6,
    }
    assert summary["AggregatedEvaluationResults"]["Metrics"] == {
        "Precision": 0.7,
        "Recall": 0.6,
        "F1Score": 0.646,
        "AveragePrecision": 0.65,
        "AverageRecall": 0.55,
    }
    cat, car = summary["LabelEvaluationResults"]  # best F1 first
    assert cat == {
        "Label": "cat",
        "NumberOfTestingImages": 5,
        "Metrics": {"Threshold": 0.615, "Precision": 1.0, "Recall": 0.8, "F1Score": 0.8889},
    }
    assert car["Metrics"]["Threshold"] == pytest.approx(0.42)


def test_classification_summary_carries_the_confusion_matrix():
    evaluation = _detection_evaluation()
    del evaluation["AveragePrecision"], evaluation["AverageRecall"]
    evaluation["ConfusionMatrix"] = [
        {"GroundTruthLabel": "car", "PredictedLabel": "car", "Value": 1.0}
    ]
    summary = evaluation_summary(
        evaluation,
        project_version_arn=None,
        labels=["car", "cat"],
        training_images=1,
        testing_images=1,
        end_time=datetime(2024, 1, 1, tzinfo=UTC),
    )
    metrics = summary["AggregatedEvaluationResults"]["Metrics"]
    assert set(metrics) == {"Precision", "Recall", "F1Score", "ConfusionMatrix"}
    assert summary["EvaluationDetails"]["EvaluationEndTimestamp"] == "2024-01-01T00:00:00"

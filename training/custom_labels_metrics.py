"""How well a Custom Labels model does on a test set, as Rekognition Custom Labels reports it.

Every label is scored on its own. For classifiers each test image is one ranked outcome per
label (the label's confidence; a true positive when the image has the label). For detectors
each predicted box is one outcome: a true positive when its label matches a ground-truth box of
that label, not yet matched, with IoU >= 0.5; boxes are matched greedily, most confident first,
each to the unmatched ground-truth box it overlaps most. A label's assumed threshold is the
confidence that maximises its F1 score on the test set; precision, recall and F1 are given at
each label's threshold, and micro-averaged over labels. Detectors also get each label's average
precision at IoU 0.5 (all-point interpolated, as VOC 2010+ and COCO compute it) and its mean over
labels (mAP@0.5), and the average recall over IoU 0.5-0.95 (COCO's AR, up to 100 boxes per
image); classifiers get the confusion matrix of ground truth against the most confident label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from model.custom_labels_model import (
    CLASSIFICATION,
    KINDS,
    OBJECT_DETECTION,
    Box,
    CustomLabelsModel,
    Prediction,
    box_iou,
)
from training.custom_labels_data import LabelledImage

__all__ = [
    "DEFAULT_THRESHOLD",
    "MATCH_IOU",
    "RankedOutcomes",
    "assumed_thresholds",
    "average_precision",
    "best_threshold",
    "evaluate",
    "evaluate_analyses",
    "evaluation_summary",
    "match_detections",
    "ranked_outcomes",
]

MATCH_IOU = 0.5
DEFAULT_THRESHOLD = 50.0  # a label without test examples to choose its threshold on
_RECALL_IOUS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
_BATCH_SIZE = 16


class RankedOutcomes(NamedTuple):
    """One label's outcomes on a test set, most confident first."""

    confidences: np.ndarray  # (N,) 0-100, descending
    true_positive: np.ndarray  # (N,) bool
    truths: int  # ground-truth instances of the label (images, or boxes for detectors)

    def counts_at(self, threshold: float) -> tuple[int, int, int]:
        """True positives, false positives and false negatives at ``threshold``."""
        accepted = self.confidences >= threshold
        true_positives = int(np.count_nonzero(self.true_positive & accepted))
        false_positives = int(np.count_nonzero(accepted)) - true_positives
        return true_positives, false_positives, self.truths - true_positives


def match_detections(
    predictions: Sequence[Prediction], truths: Sequence[Box], iou_threshold: float = MATCH_IOU
) -> list[bool]:
    """For boxes of one label in one image: whether each prediction is a true positive.

    Predictions are taken most confident first (ties in the given order); each matches the
    unmatched ground-truth box it overlaps most, if that IoU is at least ``iou_threshold``.
    The result is in the order of ``predictions``.
    """
    order = sorted(range(len(predictions)), key=lambda i: (-predictions[i].confidence, i))
    matched = [False] * len(truths)
    outcome = [False] * len(predictions)
    for index in order:
        box = predictions[index].box
        if box is None:
            raise ValueError(f"prediction of {predictions[index].label!r} has no box")
        best, best_iou = -1, iou_threshold
        for truth_index, truth in enumerate(truths):
            if matched[truth_index]:
                continue
            iou = box_iou(box, truth)
            if iou >= best_iou and (best < 0 or iou > best_iou):
                best, best_iou = truth_index, iou
        if best >= 0:
            matched[best] = True
            outcome[index] = True
    return outcome


def _ranked(confidences: list[float], true_positive: list[bool], truths: int) -> RankedOutcomes:
    scores = np.asarray(confidences, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    return RankedOutcomes(scores[order], np.asarray(true_positive, dtype=bool)[order], truths)


def ranked_outcomes(
    kind: str,
    label: str,
    analyses: Sequence[Sequence[Prediction]],
    images: Sequence[LabelledImage],
    iou_threshold: float = MATCH_IOU,
) -> RankedOutcomes:
    """``label``'s outcomes over a test set: ``analyses[i]`` are the model's predictions for
    ``images[i]`` (``CustomLabelsModel.analyse``)."""
    confidences: list[float] = []
    true_positive: list[bool] = []
    truths = 0
    for predictions, image in zip(analyses, images, strict=True):
        if kind == OBJECT_DETECTION:
            mine = [p for p in predictions if p.label == label]
            boxes = [box for name, box in image.boxes if name == label]
            truths += len(boxes)
            confidences.extend(p.confidence for p in mine)
            true_positive.extend(match_detections(mine, boxes, iou_threshold))
        else:
            present = label in image.labels
            truths += present
            scores = [p.confidence for p in predictions if p.label == label]
            confidences.append(max(scores, default=0.0))
            true_positive.append(present)
    return _ranked(confidences, true_positive, truths)


def average_precision(outcomes: RankedOutcomes) -> float:
    """Area under the precision-recall curve, precision made monotone from the right and taken
    at every point where recall changes (all-point interpolation); 0 without ground truth."""
    if outcomes.truths == 0 or len(outcomes.confidences) == 0:
        return 0.0
    true_positives = np.cumsum(outcomes.true_positive)
    precision = true_positives / np.arange(1, len(true_positives) + 1)
    recall = true_positives / outcomes.truths
    # Tied confidences are one operating point: only the last of each run is reachable.
    scores = outcomes.confidences
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    precision, recall = precision[ends], recall[ends]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    previous_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous_recall) * envelope))


def best_threshold(outcomes: RankedOutcomes) -> tuple[float, float]:
    """``(threshold, F1)``: the confidence that maximises F1 when everything at or above it is
    accepted, and that F1. The threshold is taken halfway between the lowest confidence
    accepted and the next one below it (the same F1 on this set, and less brittle on the next);
    the highest such threshold wins a tie. Without ground truth or a true positive:
    ``DEFAULT_THRESHOLD`` and 0."""
    scores = outcomes.confidences
    if outcomes.truths == 0 or not outcomes.true_positive.any():
        return DEFAULT_THRESHOLD, 0.0
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    true_positives = np.cumsum(outcomes.true_positive)[ends]
    f1 = 2.0 * true_positives / (ends + 1 + outcomes.truths)
    best = int(np.argmax(f1))
    cut = ends[best]
    lowest_accepted = float(scores[cut])
    if cut + 1 < len(scores):
        threshold = (lowest_accepted + float(scores[cut + 1])) / 2.0
    else:
        threshold = lowest_accepted
    return threshold, float(f1[best])


def assumed_thresholds(
    kind: str,
    labels: Sequence[str],
    analyses: Sequence[Sequence[Prediction]],
    images: Sequence[LabelledImage],
) -> dict[str, float]:
    """Each label's assumed threshold (0-100) on a test set: ``best_threshold``."""
    return {
        label: best_threshold(ranked_outcomes(kind, label, analyses, images))[0] for label in labels
    }


def _ratios(true_positives: int, false_positives: int, false_negatives: int):
    predicted = true_positives + false_positives
    actual = true_positives + false_negatives
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _confusion_matrix(
    labels: Sequence[str],
    analyses: Sequence[Sequence[Prediction]],
    images: Sequence[LabelledImage],
) -> list[dict[str, Any]]:
    """Per ground-truth label, the share of its images whose most confident label is each."""
    counts = {truth: dict.fromkeys(labels, 0) for truth in labels}
    for predictions, image in zip(analyses, images, strict=True):
        if not predictions:
            continue
        top = max(predictions, key=lambda p: p.confidence).label
        for truth in image.labels:
            if truth in counts and top in counts[truth]:
                counts[truth][top] += 1
    matrix = []
    for truth in labels:
        total = sum(counts[truth].values())
        for predicted in labels:
            value = counts[truth][predicted] / total if total else 0.0
            matrix.append({"GroundTruthLabel": truth, "PredictedLabel": predicted, "Value": value})
    return matrix


def evaluate_analyses(
    kind: str,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    analyses: Sequence[Sequence[Prediction]],
    images: Sequence[LabelledImage],
    *,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """``evaluate`` for predictions already made: ``analyses[i]`` for ``images[i]``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    rows = []
    totals = np.zeros(3, dtype=np.int64)
    precisions, recalls = [], []
    for label in labels:
        outcomes = ranked_outcomes(kind, label, analyses, images)
        threshold = float(thresholds[label] if min_confidence is None else min_confidence)
        counts = outcomes.counts_at(threshold)
        totals += counts
        precision, recall, f1 = _ratios(*counts)
        row = {
            "Label": label,
            "NumberOfTestingImages": sum(label in image.labels for image in images),
            "Precision": precision,
            "Recall": recall,
            "F1Score": f1,
            "Threshold": threshold,
            "AveragePrecision": average_precision(outcomes),
            "TruePositives": counts[0],
            "FalsePositives": counts[1],
            "FalseNegatives": counts[2],
        }
        rows.append(row)
        if kind == OBJECT_DETECTION and outcomes.truths:
            precisions.append(row["AveragePrecision"])
            recalls.append(
                np.mean(
                    [
                        ranked_outcomes(kind, label, analyses, images, iou).true_positive.sum()
                        / outcomes.truths
                        for iou in _RECALL_IOUS
                    ]
                )
            )
    precision, recall, f1 = _ratios(*(int(count) for count in totals))
    evaluation: dict[str, Any] = {
        "Labels": rows,
        "Precision": precision,
        "Recall": recall,
        "F1Score": f1,
    }
    if kind == OBJECT_DETECTION:
        evaluation["AveragePrecision"] = float(np.mean(precisions)) if precisions else 0.0
        evaluation["AverageRecall"] = float(np.mean(recalls)) if recalls else 0.0
    if kind == CLASSIFICATION:
        evaluation["ConfusionMatrix"] = _confusion_matrix(labels, analyses, images)
    return evaluation


def evaluate(
    model: CustomLabelsModel,
    images: Sequence[LabelledImage],
    load_image: Callable[[str], np.ndarray],
    *,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """The model's metrics on ``images`` (each read with ``load_image(source_ref)``), at each
    label's assumed threshold, or at ``min_confidence`` (0-100) for every label when given.

    ``{"Labels": [{"Label", "NumberOfTestingImages", "Precision", "Recall", "F1Score",
    "Threshold" (0-100), "AveragePrecision", "TruePositives", "FalsePositives",
    "FalseNegatives"}], "Precision", "Recall", "F1Score"}`` (micro averages), plus
    ``"AveragePrecision"`` (mAP@0.5) and ``"AverageRecall"`` for detectors, and
    ``"ConfusionMatrix"`` for single-label classifiers.
    """
    analyses: list[list[Prediction]] = []
    for start in range(0, len(images), _BATCH_SIZE):
        chunk = images[start : start + _BATCH_SIZE]
        analyses.extend(model.analyse([load_image(image.source_ref) for image in chunk]))
    spec = model.spec
    return evaluate_analyses(
        spec.kind, spec.labels, spec.thresholds, analyses, images, min_confidence=min_confidence
    )


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat()


def evaluation_summary(
    evaluation: Mapping[str, Any],
    *,
    project_version_arn: str | None,
    labels: Sequence[str],
    training_images: int,
    testing_images: int,
    end_time: datetime,
) -> dict[str, Any]:
    """The training results summary file (``EvaluationSummary-<project>-<version>.json``) for
    an ``evaluate`` result, in the shape Rekognition Custom Labels writes it. Thresholds are
    ratios (0-1) there; labels are sorted by F1 score, best first."""
    metrics: dict[str, Any] = {
        name: float(evaluation[name]) for name in ("Precision", "Recall", "F1Score")
    }
    for name in ("AveragePrecision", "AverageRecall"):
        if name in evaluation:
            metrics[name] = float(evaluation[name])
    if "ConfusionMatrix" in evaluation:
        metrics["ConfusionMatrix"] = [dict(entry) for entry in evaluation["ConfusionMatrix"]]
    rows = sorted(evaluation["Labels"], key=lambda row: (-row["F1Score"], row["Label"]))
    return {
        "Version": 1,
        "EvaluationDetails": {
            "ProjectVersionArn": project_version_arn,
            "EvaluationEndTimestamp": _timestamp(end_time),
            "Labels": list(labels),
            "NumberOfTrainingImages": int(training_images),
            "NumberOfTestingImages": int(testing_images),
        },
        "AggregatedEvaluationResults": {"Metrics": metrics},
        "LabelEvaluationResults": [
            {
                "Label": row["Label"],
                "NumberOfTestingImages": int(row["NumberOfTestingImages"]),
                "Metrics": {
                    "Threshold": float(row["Threshold"]) / 100.0,
                    "Precision": float(row["Precision"]),
                    "Recall": float(row["Recall"]),
                    "F1Score": float(row["F1Score"]),
                },
            }
            for row in rows
        ],
    }

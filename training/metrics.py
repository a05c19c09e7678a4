"""Counting an evaluation: per-label support, predictions, TP/FP/FN, precision, recall and F1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from model.confidence import DEFAULT_MIN_CONFIDENCE
from model.taxonomy import CONTENT_TYPES, TAXONOMY, ancestors
from training.ground_truth import GroundTruthLine

__all__ = ["Evaluation", "LabelCounts", "expand_labels"]


def expand_labels(names: Iterable[str], custom=None) -> set[str]:
    """The names with every ancestor added ("Pills" -> Pills, Products, Drugs & Tobacco);
    ``custom``: an adapter's own labels (name -> TaxonomyLabel)."""
    return {name_or_parent for name in names for name_or_parent in ancestors(name, custom)}


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _metrics(support: int, predicted: int, true_positives: int) -> dict[str, Any]:
    false_positives = predicted - true_positives
    false_negatives = support - true_positives
    return {
        "support": support,
        "predicted": predicted,
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
        "precision": _ratio(true_positives, predicted),
        "recall": _ratio(true_positives, support),
        # The harmonic mean of precision and recall written with counts, so that it is defined
        # (as 0) when the model never predicts a label that the ground truth has.
        "f1": _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives),
    }


class LabelCounts:
    """Per-name support, predicted and true-positive counts over a set of images."""

    def __init__(self, order: Sequence[str]):
        self._order = list(order)  # the rows' order: names outside it follow, sorted
        self.support: dict[str, int] = {}
        self.predicted: dict[str, int] = {}
        self.true_positives: dict[str, int] = {}

    def add(self, truth: set[str], predicted: set[str]) -> None:
        """One image: the names its ground truth has and the names the model returned."""
        for counter, names in (
            (self.support, truth),
            (self.predicted, predicted),
            (self.true_positives, truth & predicted),
        ):
            for name in names:
                counter[name] = counter.get(name, 0) + 1

    def names(self) -> list[str]:
        seen = set(self.support) | set(self.predicted)
        known = [name for name in self._order if name in seen]
        return known + sorted(seen - set(self._order))

    def row(self, name: str) -> dict[str, Any]:
        """One name's counts and ratios (all zero, ratios null, for a name never seen)."""
        return {
            "name": name,
            **_metrics(
                self.support.get(name, 0),
                self.predicted.get(name, 0),
                self.true_positives.get(name, 0),
            ),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(name) for name in self.names()]

    def micro_average(self) -> dict[str, Any]:
        return _metrics(
            sum(self.support.values()),
            sum(self.predicted.values()),
            sum(self.true_positives.values()),
        )


class Evaluation:
    """Accumulates (ground truth, model response) pairs and failures; ``report()`` sums them up."""

    def __init__(
        self, min_confidence: float = DEFAULT_MIN_CONFIDENCE, model_version: str | None = None
    ):
        self.min_confidence = min_confidence
        self.model_version = model_version
        self.images = 0
        self.labels = LabelCounts(list(TAXONOMY))
        self.content_types = LabelCounts(CONTENT_TYPES)
        self.content_types_scored = False
        self.false_positives: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def _kept(self, entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [e for e in entries if e["Confidence"] >= self.min_confidence]

    def add(self, line: GroundTruthLine, response: Mapping[str, Any]) -> None:
        """One image that the model ran on; ``response`` is its DetectModerationLabels response."""
        self.images += 1
        truth = expand_labels(line.labels)
        labels = self._kept(response.get("ModerationLabels", ()))
        self.labels.add(truth, {label["Name"] for label in labels})

        # Until some line has "ContentTypes" it is unknown whether they will be scored, so every
        # image is counted and the report leaves them out if none had the key.
        self.content_types_scored |= line.content_types is not None
        truth_types = set(line.content_types or ())
        types = self._kept(response.get("ContentTypes", ()))
        self.content_types.add(truth_types, {t["Name"] for t in types})

        wrong_labels = [_entry(label) for label in labels if label["Name"] not in truth]
        wrong_types = [_entry(t) for t in types if t["Name"] not in truth_types]
        if wrong_labels or wrong_types:
            self.false_positives.append(
                {
                    "line_number": line.line_number,
                    "source-ref": line.source_ref,
                    "ground_truth": list(line.labels),
                    "labels": wrong_labels,
                    "content_types": wrong_types,
                }
            )

    def add_error(self, line: GroundTruthLine, code: str, message: str) -> None:
        """One image that could not be evaluated: it is reported, not counted in the metrics."""
        self.errors.append(
            {
                "line_number": line.line_number,
                "source-ref": line.source_ref,
                "code": code,
                "message": message,
            }
        )

    def report(self) -> dict[str, Any]:
        label_rows = self.labels.rows()
        for row in label_rows:
            entry = TAXONOMY.get(row["name"])
            row["level"] = entry.level if entry else None
            row["parent"] = entry.parent if entry else None
        report: dict[str, Any] = {
            "min_confidence": self.min_confidence,
            "model_version": self.model_version,
            "images": self.images,
            "failed_images": len(self.errors),
            "labels": [_with_name_first(row) for row in label_rows],
            "micro_average": self.labels.micro_average(),
        }
        if self.content_types_scored:
            report["content_types"] = self.content_types.rows()
        report["false_positives"] = self._false_positive_report()
        report["errors"] = list(self.errors)
        return report

    def _false_positive_report(self) -> list[dict[str, Any]]:
        entries = []
        for entry in self.false_positives:
            entry = dict(entry)
            if not self.content_types_scored:
                entry.pop("content_types")
                if not entry["labels"]:
                    continue
            entries.append(entry)
        return entries


def _entry(prediction: Mapping[str, Any]) -> dict[str, Any]:
    return {"Name": prediction["Name"], "Confidence": prediction["Confidence"]}


def _with_name_first(row: dict[str, Any]) -> dict[str, Any]:
    head = {key: row[key] for key in ("name", "level", "parent")}
    return head | {key: value for key, value in row.items() if key not in head}

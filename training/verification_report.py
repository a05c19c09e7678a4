"""A job's predictions and a reviewer's verdicts -> the ground truth and TP/FP/FN per label."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from model.confidence import DEFAULT_MIN_CONFIDENCE
from model.taxonomy import TAXONOMY, TaxonomyLabel, ancestors
from training.custom_labels import declare_custom_labels
from training.ground_truth import ground_truth_line
from training.json_lines import LineProblem, source_ref_of
from training.label_selection import (
    MIN_FALSE_NEGATIVES,
    MIN_FALSE_POSITIVES,
    MIN_TEST_IMAGES,
    meets_training_minimum,
)
from training.verification_lines import line_document, line_verdicts, numbered, predicted_names

__all__ = ["GroundTruthEntry", "InputError", "VerificationReport", "build_ground_truth"]

RESULTS = "results"
VERIFICATIONS = "verifications"


class InputError(NamedTuple):
    """One bad input line: which file, which physical line, what is wrong."""

    file: str  # "results" or "verifications"
    line_number: int
    message: str
    source_ref: str | None = None

    def __str__(self) -> str:
        return f"{self.file} line {self.line_number}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": self.file, "line_number": self.line_number}
        if self.source_ref is not None:
            entry["source-ref"] = self.source_ref
        entry["message"] = self.message
        return entry


class GroundTruthEntry(NamedTuple):
    """One image of the ground truth: its deepest present labels (ancestors implied)."""

    source_ref: str
    labels: tuple[str, ...]


@dataclass
class VerificationReport:
    """What ``build_ground_truth`` found: the ground truth, per-label counts, totals, errors."""

    confidence_threshold: float
    custom_labels: dict[str, TaxonomyLabel]
    ground_truth: list[GroundTruthEntry] = field(default_factory=list)
    result_lines: int = 0
    verification_lines: int = 0
    images: int = 0  # distinct source-refs of the results
    images_reviewed: int = 0
    errors: list[InputError] = field(default_factory=list)
    true_positives: dict[str, int] = field(default_factory=dict)
    false_positives: dict[str, int] = field(default_factory=dict)
    false_negatives: dict[str, int] = field(default_factory=dict)
    verified: set[str] = field(default_factory=set)  # every label predicted or verified

    @property
    def ok(self) -> bool:
        """No bad line: the ground truth may be written."""
        return not self.errors

    @property
    def images_not_reviewed(self) -> int:
        return self.images - self.images_reviewed

    def label(self, name: str) -> TaxonomyLabel:
        return TAXONOMY.get(name) or self.custom_labels[name]

    def _order(self) -> dict[str, tuple[int, ...]]:
        # Depth first, as the taxonomy is listed; custom labels after their taxonomy siblings.
        index = {name: i for i, name in enumerate([*TAXONOMY, *self.custom_labels])}
        return {
            name: tuple(index[n] for n in reversed(ancestors(name, self.custom_labels)))
            for name in self.verified
        }

    def rows(self) -> list[dict[str, Any]]:
        """Per label (taxonomy order): TP, FP, FN and whether AWS's training minimum is met."""
        order = self._order()
        rows = []
        for name in sorted(self.verified, key=order.__getitem__):
            entry = self.label(name)
            false_positives = self.false_positives.get(name, 0)
            false_negatives = self.false_negatives.get(name, 0)
            rows.append(
                {
                    "name": name,
                    "level": entry.level,
                    "parent": entry.parent,
                    "custom": name in self.custom_labels,
                    "true_positives": self.true_positives.get(name, 0),
                    "false_positives": false_positives,
                    "false_negatives": false_negatives,
                    "meets_training_minimum": meets_training_minimum(
                        false_positives, false_negatives
                    ),
                }
            )
        return rows

    def ground_truth_jsonl(self) -> bytes:
        """The ground-truth manifest, one line per reviewed image."""
        return b"".join(
            ground_truth_line(entry.source_ref, entry.labels, self.custom_labels).encode("utf-8")
            + b"\n"
            for entry in self.ground_truth
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence_threshold": self.confidence_threshold,
            "custom_labels": [
                {"name": e.name, "parent": e.parent, "level": e.level}
                for e in self.custom_labels.values()
            ],
            "result_lines": self.result_lines,
            "verification_lines": self.verification_lines,
            "images": self.images,
            "images_reviewed": self.images_reviewed,
            "images_not_reviewed": self.images_not_reviewed,
            "labels": self.rows(),
            "training_minimum": {
                "false_positives": MIN_FALSE_POSITIVES,
                "false_negatives": MIN_FALSE_NEGATIVES,
            },
            "test_set_minimum_images": MIN_TEST_IMAGES,
            "errors": [error.to_dict() for error in self.errors],
        }


def _count(counter: dict[str, int], names: Iterable[str]) -> None:
    for name in names:
        counter[name] = counter.get(name, 0) + 1


def build_ground_truth(
    results_lines: Iterable[Any],
    verification_lines: Iterable[Any],
    *,
    confidence_threshold: float = DEFAULT_MIN_CONFIDENCE,
    custom_labels: Mapping[str, str | TaxonomyLabel] | None = None,
) -> VerificationReport:
    """The ground truth and counts for a job's results and a reviewer's verifications.

    Each line is a parsed object, its JSON text (str or bytes), None for a line too long to
    read, or ``(line_number, line)``; lines without a number are numbered from 1.
    ``custom_labels`` maps a custom label to its parent ("" for level 1); a bad declaration
    raises ValueError. Bad lines do not raise: they are listed in ``errors`` and left out.
    """
    custom = declare_custom_labels(custom_labels or {})
    known = {**TAXONOMY, **custom}

    def expand(names: Iterable[str]) -> set[str]:
        return {a for name in names for a in ancestors(name, custom)}

    report = VerificationReport(float(confidence_threshold), custom)

    predictions: dict[str, set[str]] = {}
    broken: dict[str, int] = {}  # source-ref -> a results line of it that is bad
    for number, raw in numbered(results_lines):
        report.result_lines += 1
        source_ref = None
        try:
            document = line_document(raw)
            source_ref = source_ref_of(document)
            names = predicted_names(document, report.confidence_threshold, known)
        except LineProblem as problem:
            report.errors.append(InputError(RESULTS, number, str(problem), source_ref))
            if source_ref is not None:
                broken.setdefault(source_ref, number)
            continue
        predictions.setdefault(source_ref, set()).update(expand(names))
    report.images = len(predictions.keys() | broken.keys())

    reviewed: dict[str, int] = {}  # source-ref -> its verification line
    for number, raw in numbered(verification_lines):
        report.verification_lines += 1
        source_ref = None
        try:
            document = line_document(raw)
            source_ref = source_ref_of(document)
            verdicts, problems = line_verdicts(document, known)
            if source_ref in reviewed:
                problems.append(f"{source_ref} was already verified on line {reviewed[source_ref]}")
            elif source_ref in broken:
                problems.append(f"its results line {broken[source_ref]} is bad (see above)")
            elif source_ref not in predictions:
                problems.append(f"{source_ref} is not in the results")
            if problems:
                raise LineProblem("; ".join(problems))
            reviewed[source_ref] = number
            predicted = predictions[source_ref]
            absent = {name for name, verdict in verdicts.items() if not verdict}
            said_present = {name for name, verdict in verdicts.items() if verdict}
            kept = predicted - absent  # a prediction left unmarked is confirmed
            present = expand(said_present | kept)
            contradictions = [
                f"{name!r} is marked absent but {below!r} below it is "
                + ("marked present" if below in said_present else "predicted and not marked")
                + f"; mark {below!r} false too, or {name!r} true"
                for name in sorted(absent & present)
                for below in sorted(said_present | kept)
                if below != name and name in ancestors(below, custom)
            ]
            if contradictions:
                raise LineProblem("; ".join(contradictions))
        except LineProblem as problem:
            report.errors.append(InputError(VERIFICATIONS, number, str(problem), source_ref))
            continue

        report.images_reviewed += 1
        _count(report.true_positives, predicted & present)
        _count(report.false_positives, predicted - present)
        _count(report.false_negatives, present - predicted)
        report.verified |= predicted | present | absent
        parents = {known[name].parent for name in present}
        report.ground_truth.append(
            GroundTruthEntry(source_ref, tuple(name for name in present if name not in parents))
        )

    order = {name: i for i, name in enumerate(known)}
    report.ground_truth = [
        entry._replace(labels=tuple(sorted(entry.labels, key=order.__getitem__)))
        for entry in report.ground_truth
    ]
    return report

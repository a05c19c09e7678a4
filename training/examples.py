"""The training examples of an adapter: ground-truth lines read, split and run by the base model."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.label_map import label_confidences, label_evidence
from model.taxonomy import TAXONOMY, TaxonomyLabel, custom_label
from storage.settings import S3Settings
from training.ground_truth import GroundTruthLine, ManifestProblem, read_ground_truth
from transforms.records import ImageProblem

__all__ = [
    "TEST_SHARE",
    "Example",
    "TrainingProblem",
    "analyse",
    "auto_split",
    "custom_labels",
    "predicted_labels",
    "read_examples",
]

_LOGGER = logging.getLogger(__name__)

TEST_SHARE = 0.2  # --auto_split: 80/20, as AWS's AutoCreate
_MAX_LISTED_FAILURES = 5


class TrainingProblem(ValueError):
    """Training cannot go on; the message says what to fix (it becomes the StatusMessage)."""


@dataclass
class Example:
    """One ground-truth line and what the base model saw in its image."""

    manifest: str
    line: GroundTruthLine
    truth: frozenset[str] = frozenset()
    analysis: Any = None
    evidence: dict[str, float] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"line {self.line.line_number} of {self.manifest} ({self.line.source_ref})"


def read_examples(
    manifests: Sequence[str], parents: dict[str, str], s3: S3Settings | None = None
) -> list[Example]:
    """Every line of ``manifests``; custom labels' parents are collected into ``parents``."""
    examples = []
    for manifest in manifests:
        try:
            lines = list(read_ground_truth(manifest, parents, s3))
        except ManifestProblem as exc:
            raise TrainingProblem(f"The manifest {manifest} is not usable: {exc}") from None
        if not lines:
            raise TrainingProblem(f"The manifest {manifest} has no lines.")
        examples.extend(Example(manifest, line) for line in lines)
    return examples


def custom_labels(parents: Mapping[str, str]) -> dict[str, TaxonomyLabel]:
    """The adapter's own labels, each placed under its parent (parents first)."""
    custom: dict[str, TaxonomyLabel] = {}
    pending = dict(parents)
    while pending:
        ready = [n for n, p in pending.items() if not p or p in TAXONOMY or p in custom]
        if not ready:
            names = ", ".join(sorted(pending))
            raise TrainingProblem(
                f"The ParentName of {names} is neither a taxonomy label nor another label of "
                "the manifest; use a taxonomy label (or none, for a new level-1 label)."
            )
        for name in ready:
            try:
                custom[name] = custom_label(name, pending.pop(name), custom)
            except ValueError as exc:
                raise TrainingProblem(f"Custom label {name!r}: {exc}.") from None
    return custom


def auto_split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """80/20 by a hash of each line, so the split is the same on every run."""
    train, test = [], []
    for example in examples:
        key = f"{example.manifest}\n{example.line.line_number}\n{example.line.source_ref}"
        share = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if share < TEST_SHARE else train).append(example)
    return train, test


def analyse(examples: Sequence[Example], model, load_image, batch_size: int = 16) -> None:
    """Fills each example's analysis and base evidence; any image that fails fails training."""
    failures: list[str] = []
    done = 0
    last_report = time.monotonic()
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        images, loaded = [], []
        for example in batch:
            try:
                images.append(load_image(example.line.source_ref))
                loaded.append(example)
            except ImageProblem as problem:
                failures.append(f"{example.where}: {problem.message}")
            except Exception as exc:
                failures.append(f"{example.where}: {type(exc).__name__}: {exc}")
        for example, analysis in zip(loaded, model.analyse(images) if images else []):
            example.analysis = analysis
            example.evidence = label_evidence(analysis.signals)
        done += len(batch)
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            _LOGGER.info("Base model: %d of %d images", done, len(examples))
    if failures:
        listed = "; ".join(failures[:_MAX_LISTED_FAILURES])
        more = len(failures) - _MAX_LISTED_FAILURES
        raise TrainingProblem(
            f"{len(failures)} of {len(examples)} images could not be read: {listed}"
            + (f"; and {more} more" if more > 0 else "")
            + ". Fix the source-refs or remove these lines, then create the version again."
        )


def predicted_labels(example: Example, threshold: float, custom, evidence=None) -> set[str]:
    """The labels that the base model (or an adapter's ``evidence``) gives ``example``."""
    confidence = label_confidences(example.evidence if evidence is None else evidence, custom)
    return {name for name, value in confidence.items() if round(value, 4) >= threshold}

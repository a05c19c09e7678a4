"""Trains an adapter from ground-truth manifests and compares it with the base model.

Usage (the API server runs this for CreateProjectVersion; it can be run by hand too)::

    python -m training.train_adapter --training_manifest s3://b/train.jsonl
        (--testing_manifest s3://b/test.jsonl | --auto_split)
        --output s3://b/adapters/Project/Version/1 [--project_version_arn ARN]
        [--confidence_threshold 50] [--kms_key_id KEY] [--components auto] [--backbone URI]
        [--s3_endpoint_url URL ...] [--result_file result.json]

Steps:

1. Read every manifest line (the Custom Moderation ground-truth format; labels outside the
   taxonomy are the adapter's own and carry their ``ParentName``). With ``--auto_split`` a fixed
   20 % of the training lines (chosen by a hash of the line) is the test set.
2. Run the base model over every image: its embedding and its confidence for every label.
3. Count, per label, the base model's verified false positives and false negatives on the
   training images at ``--confidence_threshold``. A label is adapted when it has at least 20
   false positives or 50 false negatives (AWS's minimum), and images with and without it.
4. Fit the adapter (``model.adapter``): a logistic regression per adapted label over the
   standardised embedding and the base model's confidences, in TensorFlow.
5. Evaluate base model and adapter on the test set (at least 20 images), per adapted label.
6. Write ``adapter.weights.h5``, ``adapter.json`` and ``evaluation-summary.json`` to
   ``--output`` (SSE-KMS with ``--kms_key_id``).

The outcome goes to ``--result_file`` (and standard output) as JSON, with ``Status``
``TRAINING_COMPLETED`` or ``TRAINING_FAILED`` and a ``StatusMessage`` that says what to fix;
the exit status is 0 for both. A non-zero exit status means the trainer itself broke.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.adapter import Adapter, AdapterSpec, build_adapter_model, features
from model.confidence import DEFAULT_MIN_CONFIDENCE, add_confidence_argument, check_confidence
from model.label_map import label_confidences, label_evidence
from model.taxonomy import TAXONOMY, TaxonomyLabel, custom_label, label
from pipeline.logs import configure_logging
from storage.outputs import OutputStore, join
from storage.settings import S3Settings, add_s3_arguments, s3_settings_from_arguments
from training.evaluate import (
    GroundTruthLine,
    LabelCounts,
    ManifestProblem,
    expand_labels,
    image_loader,
    read_ground_truth,
)
from transforms.images import ImageProblem

__all__ = [
    "EVALUATION_SUMMARY_FILE",
    "MIN_FALSE_NEGATIVES",
    "MIN_FALSE_POSITIVES",
    "MIN_TEST_IMAGES",
    "TrainingProblem",
    "main",
    "meets_training_minimum",
    "train",
]

_LOGGER = logging.getLogger(__name__)

# AWS's minimum of verified examples per label to improve, and of test images.
MIN_FALSE_POSITIVES = 20
MIN_FALSE_NEGATIVES = 50
MIN_TEST_IMAGES = 20
TEST_SHARE = 0.2  # --auto_split: 80/20, as AWS's AutoCreate
EVALUATION_SUMMARY_FILE = "evaluation-summary.json"
_SUMMARY_FORMAT = "beam-moderation-adapter-evaluation/1"
_EPOCHS = 150
_SEED = 0
_MAX_LISTED_FAILURES = 5


def meets_training_minimum(false_positives: int, false_negatives: int) -> bool:
    """AWS's rule: a label can be trained with enough verified FPs or enough verified FNs."""
    return false_positives >= MIN_FALSE_POSITIVES or false_negatives >= MIN_FALSE_NEGATIVES


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


# --- Reading the ground truth -------------------------------------------------------------


def read_examples(manifests: Sequence[str], parents: dict[str, str]) -> list[Example]:
    """Every line of ``manifests``; custom labels' parents are collected into ``parents``."""
    examples = []
    for manifest in manifests:
        try:
            lines = list(read_ground_truth(manifest, parents))
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


# --- The base model over the images -------------------------------------------------------


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


def _predicted(example: Example, threshold: float, custom, evidence=None) -> set[str]:
    confidence = label_confidences(example.evidence if evidence is None else evidence, custom)
    return {name for name, value in confidence.items() if round(value, 4) >= threshold}


# --- Which labels to adapt ----------------------------------------------------------------


def label_counts(
    examples: Sequence[Example], threshold: float, custom
) -> dict[str, dict[str, int]]:
    """Per label seen in the ground truth or the base predictions: the base model's verified
    true positives, false positives and false negatives, and images with the label."""
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        predicted = _predicted(example, threshold, custom)
        for name in example.truth | predicted:
            row = counts.setdefault(
                name,
                {"Positives": 0, "TruePositives": 0, "FalsePositives": 0, "FalseNegatives": 0},
            )
            present, said = name in example.truth, name in predicted
            row["Positives"] += present
            row["TruePositives"] += present and said
            row["FalsePositives"] += said and not present
            row["FalseNegatives"] += present and not said
    return counts


def choose_labels(
    counts: Mapping[str, Mapping[str, int]], images: int, custom=None
) -> tuple[list[str], list[dict[str, Any]]]:
    """(labels to adapt, the others with why not), in taxonomy order then by name."""
    order = {name: i for i, name in enumerate(TAXONOMY)}
    adapted, skipped = [], []
    for name in sorted(counts, key=lambda n: (order.get(n, len(order)), n)):
        row = counts[name]
        if not meets_training_minimum(row["FalsePositives"], row["FalseNegatives"]):
            why = (
                f"{row['FalsePositives']} false positives and {row['FalseNegatives']} false "
                f"negatives; at least {MIN_FALSE_POSITIVES} false positives or "
                f"{MIN_FALSE_NEGATIVES} false negatives are needed"
            )
        elif row["Positives"] in (0, images):
            why = "every training image has the same answer for it; add images of both kinds"
        else:
            adapted.append(name)
            continue
        skipped.append({"Name": name, **row, "Reason": why})
    # A parent whose counts are those of an adapted child follows that child: adapting both
    # would learn the same thing twice.
    for name in list(adapted):
        child = next(
            (
                c
                for c in adapted
                if c != name and label(c, custom).parent == name and counts[c] == counts[name]
            ),
            None,
        )
        if child is not None:
            adapted.remove(name)
            skipped.append({"Name": name, **counts[name], "Reason": f"follows {child}"})
    return adapted, skipped


# --- Fitting and evaluating ---------------------------------------------------------------


def fit(examples: Sequence[Example], labels: Sequence[str], custom, spec: AdapterSpec) -> Adapter:
    """A Keras adapter for ``labels``, fitted on ``examples`` (deterministic for equal input)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(_SEED)
    x = features([e.analysis for e in examples], labels, [e.evidence for e in examples], custom)
    y = np.array([[name in e.truth for name in labels] for e in examples], dtype=np.float32)
    model = build_adapter_model(x.shape[1], len(labels))
    model.get_layer("standardise").adapt(x)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=1e-2),
        loss=tf.keras.losses.BinaryCrossentropy(),
    )
    model.fit(x, y, epochs=_EPOCHS, batch_size=32, shuffle=True, verbose=0)
    return Adapter(spec, model)


def _api_names(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Precision": row["precision"],
        "Recall": row["recall"],
        "F1Score": row["f1"],
        "TruePositives": row["true_positives"],
        "FalsePositives": row["false_positives"],
        "FalseNegatives": row["false_negatives"],
        "Support": row["support"],
    }


def compare(examples: Sequence[Example], adapter: Adapter, threshold: float) -> dict[str, Any]:
    """Base model against base model + adapter on ``examples``, per adapted label."""
    custom = adapter.custom_labels
    covered = set(adapter.labels)
    base, adapted = LabelCounts(adapter.labels), LabelCounts(adapter.labels)
    new_evidence = adapter.adapt([e.analysis for e in examples], [e.evidence for e in examples])
    for example, evidence in zip(examples, new_evidence, strict=True):
        truth = example.truth & covered
        base.add(truth, _predicted(example, threshold, custom) & covered)
        adapted.add(truth, _predicted(example, threshold, custom, evidence) & covered)
    labels = []
    for name in adapter.labels:
        entry = label(name, custom)
        labels.append(
            {
                "Name": name,
                "ParentName": entry.parent,
                "TaxonomyLevel": entry.level,
                "Custom": name not in TAXONOMY,
                "BaseModel": _api_names(base.row(name)),
                "Adapter": _api_names(adapted.row(name)),
            }
        )
    return {
        "Labels": labels,
        "Overall": {
            "BaseModel": _api_names(base.micro_average()),
            "Adapter": _api_names(adapted.micro_average()),
        },
    }


# --- The whole run ------------------------------------------------------------------------


@dataclass
class TrainingRequest:
    training_manifests: Sequence[str]
    testing_manifests: Sequence[str] = ()
    auto_split: bool = False
    output: str = ""
    project_version_arn: str | None = None
    confidence_threshold: float = DEFAULT_MIN_CONFIDENCE
    kms_key_id: str | None = None
    components: str = "auto"
    backbone: str | None = None
    s3: S3Settings = field(default_factory=S3Settings)


def train(request: TrainingRequest, model=None) -> dict[str, Any]:
    """Trains, evaluates and writes the adapter; returns the result document.

    Raises TrainingProblem for anything the caller must fix.
    """
    from model.backbone import NO_BACKBONE, Backbone
    from model.moderation_model import load_moderation_model

    started = time.monotonic()
    if request.backbone == NO_BACKBONE:
        raise TrainingProblem("Adapters need the backbone's embedding; --backbone=none has none.")
    threshold = request.confidence_threshold
    parents: dict[str, str] = {}
    training = read_examples(request.training_manifests, parents)
    if request.auto_split:
        training, testing = auto_split(training)
    else:
        testing = read_examples(request.testing_manifests, parents)
    custom = custom_labels(parents)
    for example in (*training, *testing):
        example.truth = frozenset(expand_labels(example.line.labels, custom))
    if len(testing) < MIN_TEST_IMAGES:
        raise TrainingProblem(
            f"The test set has {len(testing)} images; at least {MIN_TEST_IMAGES} are needed. "
            "Add lines to the testing manifest (or to the training manifest with AutoCreate)."
        )

    if model is None:
        model = load_moderation_model(request.components, backbone=request.backbone, s3=request.s3)
    _LOGGER.info(
        "Running %s over %d training and %d test images",
        model.version,
        len(training),
        len(testing),
    )
    analyse([*training, *testing], model, image_loader(request.s3, 16))

    counts = label_counts(training, threshold, custom)
    labels, skipped = choose_labels(counts, len(training), custom)
    if not labels:
        detail = "; ".join(f"{row['Name']}: {row['Reason']}" for row in skipped) or (
            "the ground truth names no label and the base model predicts none"
        )
        raise TrainingProblem(
            f"No label has enough verified examples to train on ({detail}). Verify more "
            "predictions of the labels to improve."
        )
    embedding_size = int(training[0].analysis.embedding.shape[0])
    spec = AdapterSpec(
        labels=tuple(labels),
        custom_labels={name: custom[name] for name in custom},
        embedding_size=embedding_size,
        base_model_version=model.version,
        backbone_version=Backbone.version_for(request.backbone),
        confidence_threshold=threshold,
        project_version_arn=request.project_version_arn,
        training={
            "TrainingImages": len(training),
            "TestingImages": len(testing),
            "Counts": {name: counts[name] for name in labels},
        },
    )
    adapter = fit(training, labels, custom, spec)
    evaluation = compare(testing, adapter, threshold)
    summary = {
        "Format": _SUMMARY_FORMAT,
        "ProjectVersionArn": request.project_version_arn,
        "BaseModelVersion": model.version,
        "ConfidenceThreshold": threshold,
        "TrainingImages": len(training),
        "TestingImages": len(testing),
        "TrainingCounts": {name: counts[name] for name in labels},
        "NotAdapted": skipped,
        **evaluation,
    }
    store = OutputStore(request.s3, kms_key_id=request.kms_key_id)
    summary_path = join(request.output, EVALUATION_SUMMARY_FILE)
    store.write_bytes(summary_path, json.dumps(summary, indent=2).encode())
    adapter.save(request.output, store)  # adapter.json last: its presence means complete
    f1 = evaluation["Overall"]["Adapter"]["F1Score"] or 0.0
    message = f"Adapted {len(labels)} label(s): {', '.join(labels)}."
    left = [row["Name"] for row in skipped if not row["Reason"].startswith("follows")]
    if left:
        message += f" Left to the base model (too few verified examples): {', '.join(left)}."
    result: dict[str, Any] = {
        "Status": "TRAINING_COMPLETED",
        "StatusMessage": message,
        "F1Score": round(float(f1), 6),
        "Adapter": request.output.rstrip("/") + "/",
        "BaseModelVersion": model.version,
        "BackboneVersion": spec.backbone_version,
        "Labels": list(labels),
        "TrainingSeconds": round(time.monotonic() - started, 1),
    }
    if summary_path.startswith("s3://"):
        bucket, _, key = summary_path[len("s3://") :].partition("/")
        result["Summary"] = {"Bucket": bucket, "Name": key}
    else:
        result["Summary"] = {"Path": summary_path}
    return result


# --- Command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from model.backbone import DEFAULT_BACKBONE
    from model.moderation_model import COMPONENT_CHOICES

    parser = argparse.ArgumentParser(
        prog="python -m training.train_adapter",
        description="Trains an adapter (Custom Moderation) from ground-truth manifests, "
        "evaluates it against the base model on a test set, and writes the adapter and its "
        "evaluation summary.",
        epilog=f"Needs, per label to improve, at least {MIN_FALSE_POSITIVES} verified false "
        f"positives or {MIN_FALSE_NEGATIVES} verified false negatives of the base model, and "
        f"{MIN_TEST_IMAGES} test images. Exit status 0 when a result was written (completed or "
        "failed, see its Status), 2 for bad arguments.",
    )
    parser.add_argument(
        "--training_manifest",
        action="append",
        required=True,
        help="Ground-truth manifest (s3://, gs:// or local) to train on; repeat for several.",
    )
    parser.add_argument(
        "--testing_manifest",
        action="append",
        default=[],
        help="Ground-truth manifest to evaluate on; repeat for several. Or --auto_split.",
    )
    parser.add_argument(
        "--auto_split",
        action="store_true",
        help="Test on 20%% of the training lines instead of a testing manifest.",
    )
    parser.add_argument(
        "--output", required=True, help="Folder (s3://, gs:// or local) for the adapter."
    )
    parser.add_argument("--project_version_arn", default=None, help="The version's ARN.")
    add_confidence_argument(
        parser,
        "--confidence_threshold",
        help="Confidence (0-100) at which a label counts as predicted.",
    )
    parser.add_argument("--kms_key_id", default=None, help="KMS key for the outputs (SSE-KMS).")
    parser.add_argument(
        "--components",
        choices=COMPONENT_CHOICES,
        default="auto",
        help="Base model components, as the pipeline's. Default: auto.",
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"Base model backbone, as the pipeline's. Default: {DEFAULT_BACKBONE}.",
    )
    parser.add_argument(
        "--result_file", default=None, help="Also write the result JSON to this local file."
    )
    add_s3_arguments(parser)
    return parser


def _request(args: argparse.Namespace) -> TrainingRequest:
    if args.auto_split == bool(args.testing_manifest):
        raise ValueError("give --testing_manifest or --auto_split (one of the two)")
    check_confidence(args.confidence_threshold, "--confidence_threshold")
    return TrainingRequest(
        training_manifests=args.training_manifest,
        testing_manifests=args.testing_manifest,
        auto_split=args.auto_split,
        output=args.output,
        project_version_arn=args.project_version_arn,
        confidence_threshold=args.confidence_threshold,
        kms_key_id=args.kms_key_id,
        components=args.components,
        backbone=args.backbone,
        s3=s3_settings_from_arguments(args),
    )


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        request = _request(args)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        result = train(request)
    except TrainingProblem as exc:
        result = {"Status": "TRAINING_FAILED", "StatusMessage": str(exc)}
    except ValueError as exc:  # the model could not load, e.g. a bad --backbone
        result = {"Status": "TRAINING_FAILED", "StatusMessage": f"{exc}"}
    document = json.dumps(result, indent=2)
    if args.result_file:
        with open(args.result_file, "w", encoding="utf-8") as stream:
            stream.write(document)
    print(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One Custom Labels training run: read and validate the manifests, split, fit, evaluate, and
write the model, its evaluation summary and the output and validation manifests."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from model.custom_labels_model import CLASSIFICATION, MODEL_FOLDER, MULTI_LABEL, OBJECT_DETECTION
from storage.outputs import OutputStore, join
from storage.reading import split_s3_uri, split_versioned_uri
from storage.settings import S3Settings
from training.custom_labels_data import ImageReader, auto_split
from training.custom_labels_manifest import (
    ManifestEntry,
    check_images,
    dataset_kind,
    drop_duplicates,
    keep_labels,
    label_entries,
    manifest_text,
    output_line,
    read_entries,
    summary_statistics,
    validation_line,
)
from training.examples import TrainingProblem

__all__ = [
    "EVALUATION_SUMMARY_FILE",
    "MANIFEST_SUMMARY_FILE",
    "MAX_INVALID_SHARE",
    "MAX_LABELS",
    "MIN_LABEL_OVERLAP",
    "MIN_TEST_IMAGES",
    "DatasetProblem",
    "TrainingRequest",
    "location",
    "summary_file_name",
    "train",
]

_LOGGER = logging.getLogger(__name__)

EVALUATION_SUMMARY_FILE = "evaluation-summary.json"  # without a version ARN to name it
MANIFEST_SUMMARY_FILE = "manifest-summary.json"
OUTPUT_MANIFESTS = {"training": "training.manifest", "testing": "testing.manifest"}
VALIDATION_MANIFESTS = {
    "training": "training-validation.manifest",
    "testing": "testing-validation.manifest",
}
# AWS's rules (md-create-manifest-file-validation-rules.md, limits.md).
MAX_INVALID_SHARE = 0.2
MIN_LABELS = {OBJECT_DETECTION: 1}  # classification kinds: 2
MAX_LABELS = 250
MIN_LABEL_OVERLAP = 0.5
# Each label's assumed threshold is chosen on the test set: fewer images than this say little.
MIN_TEST_IMAGES = 20
_LISTED = 5
_KIND_NAMES = {
    CLASSIFICATION: "an image classification",
    MULTI_LABEL: "a multi-label classification",
    OBJECT_DETECTION: "an object detection",
}
_VERSION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:rekognition:[a-z0-9-]*:\d*:project/([^/]+)/version/([^/]+)/\d+$"
)


@dataclass
class TrainingRequest:
    """What to train, as the flags of ``python -m training.train_custom_labels`` give it."""

    training_manifests: Sequence[str]
    testing_manifests: Sequence[str] = ()
    auto_split: bool = False
    output: str = ""
    project_version_arn: str | None = None
    kms_key_id: str | None = None
    seed: int = 0
    allowed_source_prefixes: Sequence[str] | None = None  # None: images may be anywhere
    s3: S3Settings = field(default_factory=S3Settings)


class DatasetProblem(TrainingProblem):
    """The manifests were read but cannot be trained on; ``data_results`` are the
    TrainingDataResult / TestingDataResult (and ManifestSummary) written for them."""

    def __init__(self, message: str, data_results: Mapping[str, Any]):
        super().__init__(message)
        self.data_results = dict(data_results)


def summary_file_name(project_version_arn: str | None) -> str:
    """``EvaluationSummary-<Project>-<Version>.json`` as AWS names it, from the version's ARN
    (``evaluation-summary.json`` without one)."""
    match = _VERSION_ARN.match(project_version_arn or "")
    if not match:
        return EVALUATION_SUMMARY_FILE
    return f"EvaluationSummary-{match.group(1)}-{match.group(2)}.json"


def location(uri: str) -> dict[str, Any]:
    """Where a file is, as the API says it: ``{"S3Object": {"Bucket", "Name"[, "Version"]}}``
    for ``s3://`` (a ``?versionId=`` included), ``{"Path": uri}`` otherwise."""
    base, version = split_versioned_uri(uri)
    if not base.startswith("s3://"):
        return {"Path": uri}
    bucket, key = split_s3_uri(base)
    s3_object = {"Bucket": bucket, "Name": key}
    if version:
        s3_object["Version"] = version
    return {"S3Object": s3_object}


def _assets(uris: Sequence[str]) -> dict[str, Any]:
    return {"Assets": [{"GroundTruthManifest": location(uri)} for uri in uris]}


def _listed(entries: Sequence[ManifestEntry]) -> str:
    shown = "; ".join(f"{entry.where}: {entry.reason}" for entry in entries[:_LISTED])
    more = len(entries) - _LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def _invalid_rows(entries: Sequence[ManifestEntry], dataset: str) -> str | None:
    invalid = [entry for entry in entries if entry.invalid]
    if not entries or len(invalid) <= MAX_INVALID_SHARE * len(entries):
        return None
    return (
        f"ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: {len(invalid)} of the {len(entries)} lines "
        f"of the {dataset} manifests cannot be used (at most {MAX_INVALID_SHARE:.0%} may be "
        f"invalid): {_listed(invalid)}. Fix or remove these lines; "
        f"{VALIDATION_MANIFESTS[dataset]} gives each line's errors."
    )


def _unusable(training: Sequence[ManifestEntry]) -> str:
    unused = [entry for entry in training if not entry.used]
    return (
        f"ERROR_MANIFEST_TOO_FEW_LABELS: none of the {len(training)} lines of the training "
        f"manifests can be used: {_listed(unused)}. Give each image a label attribute and its "
        "-metadata in SageMaker Ground Truth format (image-classification, "
        "image-classification-multilabel or object-detection)."
    )


def _label_count_problem(kind: str, dataset: str, labels: set[str]) -> str | None:
    least = MIN_LABELS.get(kind, 2)
    if len(labels) < least:
        return (
            f"ERROR_MANIFEST_TOO_FEW_LABELS: the {dataset} dataset has {len(labels)} label(s)"
            + (f" ({', '.join(sorted(labels))})" if labels else "")
            + f"; a {kind} model needs at least {least}. Add images of other labels to the "
            f"{dataset} manifest."
        )
    if len(labels) > MAX_LABELS:
        return (
            f"ERROR_MANIFEST_TOO_MANY_LABELS: the {dataset} dataset has {len(labels)} labels; "
            f"at most {MAX_LABELS} are allowed. Remove labels from its manifest."
        )
    return None


def _overlap_problem(training_labels: set[str], testing_labels: set[str]) -> str | None:
    common = training_labels & testing_labels
    if not training_labels or len(common) >= MIN_LABEL_OVERLAP * len(training_labels):
        return None
    return (
        f"ERROR_INSUFFICIENT_LABEL_OVERLAP: the testing dataset has {len(common)} of the "
        f"{len(training_labels)} training labels (at least {MIN_LABEL_OVERLAP:.0%} are needed); "
        f"missing: {', '.join(sorted(training_labels - testing_labels))}. Add test images of "
        "the training labels."
    )


def _too_few_tests(images: int, repeated: int, auto: bool) -> str:
    return (
        f"ERROR_TOO_FEW_TESTING_IMAGES: the testing dataset has {images} usable images; at "
        f"least {MIN_TEST_IMAGES} are needed to choose each label's threshold and measure the "
        "model"
        + (f" ({repeated} test lines repeat training images)" if repeated else "")
        + ". Add lines to the "
        + ("training manifest (20% of it is tested on)." if auto else "testing manifest.")
    )


def _drop_training_images(training: Sequence[ManifestEntry], testing: Sequence[ManifestEntry]):
    in_training = {e.image.source_ref: e for e in training if e.used}
    repeated = 0
    for entry in testing:
        first = in_training.get(entry.image.source_ref) if entry.used else None
        if first is not None:
            entry.drop(
                "ERROR_IMAGE_IN_TRAINING_DATASET",
                f"The image is also in the training dataset ({first.where}); test images must "
                "not be trained on.",
            )
            repeated += 1
    return repeated


class _Writer:
    """Writes the run's files under the output folder."""

    def __init__(self, request: TrainingRequest):
        self.output = request.output
        self.store = OutputStore(request.s3, kms_key_id=request.kms_key_id)

    def path(self, name: str) -> str:
        return join(self.output, name)

    def write(self, name: str, data: bytes) -> str:
        path = self.path(name)
        self.store.write_bytes(path, data)
        return path


def _write_validation(
    writer: _Writer,
    request: TrainingRequest,
    datasets: Mapping[str, Sequence[ManifestEntry]],
    kind: str | None,
    errors: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The validation manifests and the manifest summary; returns the data results."""
    results: dict[str, Any] = {}
    statistics = {}
    inputs = {"training": request.training_manifests, "testing": request.testing_manifests}
    for dataset, entries in datasets.items():
        path = writer.write(
            VALIDATION_MANIFESTS[dataset],
            manifest_text(validation_line(entry, dataset) for entry in entries),
        )
        statistics[dataset] = summary_statistics(
            entries,
            kind,
            [_error(message) for message in errors.get(dataset, ())],
        )
        data_input = _assets(inputs[dataset])
        if dataset == "testing":
            data_input["AutoCreate"] = request.auto_split
        results[dataset] = {"Input": data_input, "Validation": _assets([path])}
    summary = {
        "statistics": statistics,
        "errors": [_error(message) for message in errors.get("both", ())],
    }
    summary_path = writer.write(MANIFEST_SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    return {
        "TrainingDataResult": results["training"],
        "TestingDataResult": results["testing"],
        "ManifestSummary": location(summary_path),
    }


def _error(message: str) -> dict[str, str]:
    code, _, text = message.partition(": ")
    return {"code": code, "message": text}


@dataclass
class _Datasets:
    """The manifests' lines as validated: the training and testing lines, the dataset's kind,
    and the problems that stop training (per dataset, and "both" for those of the pair)."""

    kind: str | None
    training: list[ManifestEntry]
    testing: list[ManifestEntry]
    errors: dict[str, list[str]]

    def images(self, dataset: str) -> list:
        return [entry.image for entry in getattr(self, dataset) if entry.used]

    def labels(self, dataset: str) -> set[str]:
        return {label for image in self.images(dataset) for label in image.labels}


def _validate(request: TrainingRequest, reader: ImageReader) -> _Datasets:
    _LOGGER.info("Reading the training manifests %s", ", ".join(request.training_manifests))
    training = read_entries(request.training_manifests, "training", request.s3)
    testing: list[ManifestEntry] = []
    if not request.auto_split:
        _LOGGER.info("Reading the testing manifests %s", ", ".join(request.testing_manifests))
        testing = read_entries(request.testing_manifests, "testing", request.s3)
    kind = dataset_kind([*training, *testing])
    data = _Datasets(kind, training, testing, {"training": [], "testing": [], "both": []})
    if kind is not None:
        label_entries([*training, *testing], kind)
        drop_duplicates(training, "training")
        drop_duplicates(testing, "testing")
        _LOGGER.info("Checking the images of %d lines", sum(e.used for e in (*training, *testing)))
        check_images([*training, *testing], reader.check, kind=kind)
    for dataset, entries in (("training", training), ("testing", testing)):
        problem = _invalid_rows(entries, dataset)
        if problem:
            data.errors[dataset].append(problem)
    repeated = _drop_training_images(training, testing)
    if request.auto_split:
        used = [entry for entry in training if entry.used]
        _, held_out = auto_split([entry.image for entry in used])
        held = {id(image) for image in held_out}
        data.testing = [entry for entry in used if id(entry.image) in held]
        data.training = [e for e in training if not (e.used and id(e.image) in held)]
    training_labels = data.labels("training")
    if kind is None or not training_labels:
        data.errors["training"].append(_unusable(data.training))
        return data
    problem = _label_count_problem(kind, "training", training_labels)
    if problem:
        data.errors["training"].append(problem)
    overlap = _overlap_problem(training_labels, data.labels("testing"))
    if overlap:
        data.errors["both"].append(overlap)
    removed = keep_labels(data.testing, training_labels, kind, known_to="the training dataset")
    if removed:
        _LOGGER.info("Test labels that training lacks, left out: %s", dict(removed))
    test_images = len(data.images("testing"))
    if test_images < MIN_TEST_IMAGES:
        data.errors["testing"].append(_too_few_tests(test_images, repeated, request.auto_split))
    elif not overlap:
        problem = _label_count_problem(kind, "testing", data.labels("testing"))
        if problem:
            data.errors["testing"].append(problem)
    return data


def train(
    request: TrainingRequest,
    *,
    reader: ImageReader | None = None,
    fit: Callable[..., tuple[Any, dict]] | None = None,
) -> dict[str, Any]:
    """Trains, evaluates and writes a Custom Labels model; returns the result document.

    ``reader`` reads the images (``ImageReader(request.s3)`` by default); ``fit`` is
    ``training.custom_labels_fit.fit_model`` unless given. Raises ``TrainingProblem`` for
    anything the caller must fix: a ``DatasetProblem`` once the manifests were read, with the
    data results written for them.
    """
    started = time.monotonic()
    reader = reader or ImageReader(request.s3, allowed_prefixes=request.allowed_source_prefixes)
    data = _validate(request, reader)
    writer = _Writer(request)
    datasets = {"training": data.training, "testing": data.testing}
    data_results = _write_validation(writer, request, datasets, data.kind, data.errors)
    messages = [message for values in data.errors.values() for message in values]
    if messages:
        raise DatasetProblem(" Also: ".join(messages), data_results)
    for dataset, entries in datasets.items():
        path = writer.write(
            OUTPUT_MANIFESTS[dataset],
            manifest_text(output_line(entry) for entry in entries if entry.used),
        )
        result_key = "TrainingDataResult" if dataset == "training" else "TestingDataResult"
        data_results[result_key]["Output"] = _assets([path])
    return _fit_and_write(request, writer, data, reader, fit, data_results, started)


def _fit_and_write(
    request: TrainingRequest,
    writer: _Writer,
    data: _Datasets,
    reader: ImageReader,
    fit: Callable[..., tuple[Any, dict]] | None,
    data_results: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    from training.custom_labels_metrics import evaluation_summary

    kind = data.kind
    labels = sorted(data.labels("training"))
    training_images, testing_images = data.images("training"), data.images("testing")
    if fit is None:
        from training.custom_labels_fit import fit_model as fit
    _LOGGER.info(
        "Training a %s model of %d labels on %d images, testing on %d",
        kind,
        len(labels),
        len(training_images),
        len(testing_images),
    )
    try:
        model, evaluation = fit(
            kind,
            labels,
            training_images,
            testing_images,
            reader.load,
            project_version_arn=request.project_version_arn,
            seed=request.seed,
        )
    except TrainingProblem as exc:
        raise DatasetProblem(str(exc), data_results) from exc
    summary = evaluation_summary(
        evaluation,
        project_version_arn=request.project_version_arn,
        labels=labels,
        training_images=len(training_images),
        testing_images=len(testing_images),
        end_time=datetime.now(timezone.utc),
    )
    summary_path = writer.write(
        summary_file_name(request.project_version_arn), json.dumps(summary, indent=2).encode()
    )
    model_folder = writer.path(MODEL_FOLDER)
    model.save(model_folder, writer.store)  # its model file last: its presence means complete
    f1 = float(evaluation.get("F1Score") or 0.0)
    _LOGGER.info("Trained %s: F1 %.3f on %d test images", model.version, f1, len(testing_images))
    summary_location = location(summary_path)
    return {
        "Status": "TRAINING_COMPLETED",
        "StatusMessage": (
            f"Trained {_KIND_NAMES.get(kind, kind)} model of {len(labels)} labels "
            f"({', '.join(labels)}) on {len(training_images)} images; F1 {f1:.3f} on "
            f"{len(testing_images)} test images."
        ),
        "F1Score": round(f1, 6),
        "Summary": summary_location.get("S3Object", summary_location),
        "Model": model_folder.rstrip("/") + "/",
        "ModelVersion": model.version,
        "BackboneVersion": model.spec.backbone_version,
        "Kind": kind,
        "Labels": labels,
        "TrainingSeconds": round(time.monotonic() - started, 1),
        **data_results,
    }

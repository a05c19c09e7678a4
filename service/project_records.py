"""Projects and their versions as records: their ARNs, statuses and outputs.

A project is a Custom Moderation project (``Feature=CONTENT_MODERATION``), whose versions are
adapters of the base model, or a Custom Labels project (``Feature=CUSTOM_LABELS``), whose
versions are image classifiers or object detectors of their own. A Custom Labels version, once
trained, is served on demand: StartProjectVersion takes it through STARTING to RUNNING,
StopProjectVersion through STOPPING to STOPPED (FAILED: it could not be started).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTENT_MODERATION",
    "CUSTOM_LABELS",
    "DEPRECATED",
    "EXPIRED",
    "FAILED",
    "RUNNING",
    "SERVING_STATUSES",
    "STARTABLE_STATUSES",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "TRAINING_COMPLETED",
    "TRAINING_FAILED",
    "TRAINING_IN_PROGRESS",
    "ModelNotRunning",
    "ProjectNotFound",
    "ProjectRecord",
    "ResourceInUse",
    "VersionNotFound",
    "WrongFeature",
    "VersionRecord",
    "arn_of_project",
    "arn_of_version",
    "output_uri",
    "version_folder",
]

_LOGGER = logging.getLogger(__name__)

CONTENT_MODERATION = "CONTENT_MODERATION"
CUSTOM_LABELS = "CUSTOM_LABELS"

TRAINING_IN_PROGRESS = "TRAINING_IN_PROGRESS"
TRAINING_COMPLETED = "TRAINING_COMPLETED"
TRAINING_FAILED = "TRAINING_FAILED"
DEPRECATED = "DEPRECATED"
EXPIRED = "EXPIRED"
# A Custom Labels model's serving.
STARTING = "STARTING"
RUNNING = "RUNNING"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
FAILED = "FAILED"
# The statuses of a model that holds (or is taking or giving back) inference units.
SERVING_STATUSES = (STARTING, RUNNING, STOPPING)
# The statuses StartProjectVersion starts a model from (FAILED: a start that failed).
STARTABLE_STATUSES = (TRAINING_COMPLETED, STOPPED, FAILED)


class ProjectNotFound(LookupError):
    """No project has this ARN."""


class VersionNotFound(LookupError):
    """No project version has this ARN."""


class ResourceInUse(RuntimeError):
    """The name is taken, or the resource is still needed (versions left, training going on, a
    model running), or it is not in a status the operation applies to."""


class WrongFeature(ValueError):
    """The operation does not apply to this project's feature (an adapter's ARN where a Custom
    Labels model is needed, or the other way round)."""


class ModelNotRunning(RuntimeError):
    """The Custom Labels model exists but is not RUNNING: it cannot answer yet."""


def _epoch_ms(created: float) -> int:
    return int(round(created * 1000))


def arn_of_project(region: str, account_id: str, name: str, created: float) -> str:
    return f"arn:aws:rekognition:{region}:{account_id}:project/{name}/{_epoch_ms(created)}"


def arn_of_version(region: str, account_id: str, project: str, name: str, created: float) -> str:
    return (
        f"arn:aws:rekognition:{region}:{account_id}:project/{project}/version/{name}/"
        f"{_epoch_ms(created)}"
    )


def _from_row(record_type: type, row: sqlite3.Row, json_columns: tuple[str, ...]):
    """The record of a table row whose columns are named as the record's fields (JSON columns
    may be NULL)."""
    values = {field.name: row[field.name] for field in dataclasses.fields(record_type)}
    for name in json_columns:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return record_type(**values)


@dataclass(frozen=True)
class ProjectRecord:
    """A project: the versions of one adapter (``Feature=CONTENT_MODERATION``) or of one Custom
    Labels model (``Feature=CUSTOM_LABELS``)."""

    arn: str
    name: str
    created: float
    feature: str
    auto_update: str | None
    status: str
    tags: dict[str, str]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ProjectRecord:
        return _from_row(cls, row, ("tags",))

    def to_api(self) -> dict[str, Any]:
        """The project as DescribeProjects lists it."""
        project: dict[str, Any] = {
            "ProjectArn": self.arn,
            "CreationTimestamp": self.created,
            "Status": self.status,
            "Feature": self.feature,
        }
        if self.auto_update:
            project["AutoUpdate"] = self.auto_update
        return project


@dataclass(frozen=True)
class VersionRecord:
    """One version: one training, from its CreateProjectVersion request to TRAINING_COMPLETED
    (with its F1 score, evaluation summary and trained artifact) or TRAINING_FAILED (with what to
    fix). ``status`` and ``status_message`` are as reported: for a trained adapter, they tell
    whether it is DEPRECATED or EXPIRED against the server's base model; a Custom Labels model
    goes on to its serving statuses (STARTING, RUNNING, STOPPING, STOPPED, FAILED) with the
    inference units it was started with.

    ``feature`` is the project's. An adapter's artifact is ``adapter_uri``; a Custom Labels
    model's is ``model_uri`` (a ``model.custom_labels_model.CustomLabelsModel`` folder) with its
    ``model_kind`` and ``labels``. ``data_results`` holds what the training wrote of its data:
    ``{"TrainingDataResult": {"Output", "Validation"}, "TestingDataResult": {...}}``."""

    arn: str
    project_arn: str
    version_name: str
    created: float
    status: str
    request: dict[str, Any]
    status_message: str | None = None
    training_end: float | None = None
    billable_secs: int | None = None
    f1: float | None = None
    summary_bucket: str | None = None
    summary_name: str | None = None
    adapter_uri: str | None = None
    base_model_version: str | None = None
    backbone_version: str | None = None
    feature: str = CONTENT_MODERATION
    model_uri: str | None = None
    model_kind: str | None = None
    labels: list[str] | None = None
    data_results: dict[str, Any] | None = None
    min_inference_units: int | None = None
    max_inference_units: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> VersionRecord:
        return _from_row(cls, row, ("request", "labels", "data_results"))

    @property
    def custom_labels(self) -> bool:
        """Whether this is a Custom Labels model (else a Custom Moderation adapter)."""
        return self.feature == CUSTOM_LABELS

    @property
    def project_name(self) -> str:
        return self.project_arn.rsplit("/", 2)[-2]

    def to_api(self) -> dict[str, Any]:
        """The version as DescribeProjectVersions lists it."""
        request = self.request
        version: dict[str, Any] = {
            "ProjectVersionArn": self.arn,
            "CreationTimestamp": self.created,
            "Status": self.status,
        }
        if self.status_message:
            version["StatusMessage"] = self.status_message
        if self.billable_secs is not None:
            version["BillableTrainingTimeInSeconds"] = self.billable_secs
        if self.training_end is not None:
            version["TrainingEndTimestamp"] = self.training_end
        if self.custom_labels and self.status in SERVING_STATUSES:
            version["MinInferenceUnits"] = self.min_inference_units
            version["MaxInferenceUnits"] = self.max_inference_units
        version["OutputConfig"] = request["OutputConfig"]
        results = self.data_results or {}
        for key, name in (
            ("TrainingData", "TrainingDataResult"),
            ("TestingData", "TestingDataResult"),
        ):
            if key in request:
                version[name] = {"Input": request[key], **results.get(name, {})}
        if self.f1 is not None:
            evaluation: dict[str, Any] = {"F1Score": self.f1}
            if self.summary_bucket and self.summary_name:
                evaluation["Summary"] = {
                    "S3Object": {"Bucket": self.summary_bucket, "Name": self.summary_name}
                }
            version["EvaluationResult"] = evaluation
        for name in ("KmsKeyId", "VersionDescription"):
            if name in request:
                version[name] = request[name]
        version["Feature"] = self.feature
        if self.base_model_version and not self.custom_labels:
            version["BaseModelVersion"] = self.base_model_version
        if "FeatureConfig" in request:
            version["FeatureConfig"] = request["FeatureConfig"]
        return version


def version_folder(
    output_config: Mapping[str, Any], project_name: str, version_name: str
) -> tuple[str, str]:
    """``(bucket, key)`` of the folder a version's trainings write under:
    ``<S3KeyPrefix>/<Project>/<Version>`` (each training then adds its creation time)."""
    prefix = output_config.get("S3KeyPrefix", "").strip("/")
    key = f"{prefix}/" if prefix else ""
    return output_config["S3Bucket"], f"{key}{project_name}/{version_name}"


def output_uri(version: VersionRecord) -> str:
    """Where a version's training writes: ``s3://<S3Bucket>/<S3KeyPrefix>/<Project>/<Version>/<ms>``."""
    bucket, folder = version_folder(
        version.request["OutputConfig"], version.project_name, version.version_name
    )
    return f"s3://{bucket}/{folder}/{_epoch_ms(version.created)}"

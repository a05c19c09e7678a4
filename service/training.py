"""Trains project versions: one process per version, watched: ``python -m
training.train_adapter`` for a Custom Moderation adapter, ``python -m
training.train_custom_labels`` for a Custom Labels model.

Like a job (``service.jobs``), a training runs in a process of its own that dies with the
server, with S3 credentials in its environment. It reports through a result file: JSON with
``Status`` TRAINING_COMPLETED (F1 score, evaluation summary, and the adapter artifact with its
base model and backbone versions, or the Custom Labels model folder with its kind, labels and
what it wrote of its data) or TRAINING_FAILED (what to fix). A process that ends without writing
one crashed: the version fails with its last error line. Trainings beyond
``max_active_trainings`` wait their turn, still TRAINING_IN_PROGRESS.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from service.jobs import JobSettings, allowed_source_prefixes
from service.project_records import (
    CONTENT_MODERATION,
    CUSTOM_LABELS,
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    VersionRecord,
    output_uri,
)
from service.projects import ProjectRegistry
from service.workers import Workers, crash_reason
from storage.environment import s3_flags
from storage.reading import versioned_uri

__all__ = ["RESTART_MESSAGE", "TrainingRunner"]

_LOGGER = logging.getLogger(__name__)
RESTART_MESSAGE = "The server stopped while this version was training; create the version again."
# What a completed training's result must hold, by the project's feature.
_COMPLETED_FIELDS = {
    CONTENT_MODERATION: ("F1Score", "Summary", "Adapter", "BaseModelVersion", "BackboneVersion"),
    CUSTOM_LABELS: ("F1Score", "Summary", "Model", "Kind", "Labels"),
}
_DATA_RESULTS = ("TrainingDataResult", "TestingDataResult")


def _manifests(data: dict[str, Any] | None) -> list[str]:
    assets = (data or {}).get("Assets") or []
    locations = [asset["GroundTruthManifest"]["S3Object"] for asset in assets]
    # At its Version when one is given, as preflight checked it.
    return [
        versioned_uri(f"s3://{location['Bucket']}/{location['Name']}", location.get("Version"))
        for location in locations
    ]


def _data_results(result: dict[str, Any]) -> dict[str, Any]:
    """The Output and Validation manifests a Custom Labels training reports of its data."""
    kept = {}
    for name in _DATA_RESULTS:
        data = result.get(name)
        if isinstance(data, dict):
            parts = {
                key: data[key]
                for key in ("Output", "Validation")
                if isinstance(data.get(key), dict)
            }
            if parts:
                kept[name] = parts
    return kept


class TrainingRunner:
    """Starts and watches trainings, reporting each outcome to the project registry.

    The model settings (components, backbone), S3 and the Python interpreter are the jobs'
    (``JobSettings``): an adapter is trained on the base model the server runs; a Custom Labels
    model on the backbone its training command chooses.
    """

    def __init__(
        self, projects: ProjectRegistry, settings: JobSettings, *, max_active_trainings: int = 1
    ):
        if max_active_trainings < 1:
            raise ValueError(
                f"--max_active_trainings must be at least 1, not {max_active_trainings}"
            )
        self.projects = projects
        self.settings = settings
        self._slots = threading.Semaphore(max_active_trainings)
        self._stopping = threading.Event()
        self._workers = Workers(_LOGGER)

    def recover(self) -> list[str]:
        """At server start: every version still training lost its process with the previous
        server, so each is marked TRAINING_FAILED. Returns their ARNs."""
        return self.projects.fail_unfinished_trainings(RESTART_MESSAGE)

    def submit(self, version: VersionRecord) -> None:
        """Trains the version in the background."""
        name = f"training-{version.version_name[:16]}"
        self._workers.watch(version.arn, name, lambda: self._run(version))

    def wait(self, arn: str, timeout: float | None = None) -> None:
        """Waits for a submitted version's training to end and its outcome to be recorded."""
        self._workers.wait(arn, timeout)

    def stop(self) -> None:
        """Kills the trainings under way and starts no more (the server is closing): the killed
        ones end TRAINING_FAILED, those still waiting are failed by the next ``recover``."""
        self._stopping.set()
        self._workers.kill_all()

    def command(self, version: VersionRecord, result_file: str) -> list[str]:
        """The training process's command line, by the version's feature."""
        request = version.request
        settings = self.settings
        module = (
            "training.train_custom_labels" if version.custom_labels else "training.train_adapter"
        )
        command = [settings.python, "-m", module]
        command += [f"--training_manifest={uri}" for uri in _manifests(request["TrainingData"])]
        testing = request["TestingData"]
        if testing.get("AutoCreate"):
            command.append("--auto_split")
        else:
            command += [f"--testing_manifest={uri}" for uri in _manifests(testing)]
        command += [f"--output={output_uri(version)}", f"--project_version_arn={version.arn}"]
        # Images come from the allowed S3 locations only, as a job's do.
        command.append(
            f"--allowed_source_prefixes={allowed_source_prefixes(settings.allowed_locations)}"
        )
        adapter = not version.custom_labels
        threshold = request.get("FeatureConfig", {}).get("ContentModeration", {})
        if adapter and "ConfidenceThreshold" in threshold:
            command.append(f"--confidence_threshold={threshold['ConfidenceThreshold']}")
        if request.get("KmsKeyId"):
            command.append(f"--kms_key_id={request['KmsKeyId']}")
        if adapter:  # an adapter is trained on the base model the server runs
            command += self._base_model_flags()
        command += s3_flags(settings.s3)
        command.append(f"--result_file={result_file}")
        return command

    def _base_model_flags(self) -> list[str]:
        from model.moderation_model import zero_shot_flags

        settings = self.settings
        flags = [f"--components={settings.components}"]
        if settings.backbone:
            flags.append(f"--backbone={settings.backbone}")
        return flags + zero_shot_flags(settings.zero_shot_model, settings.zero_shot_prompts)

    def _run(self, version: VersionRecord) -> None:
        with self._slots:
            if self._stopping.is_set():
                return
            folder = tempfile.mkdtemp(prefix="training-")
            try:
                self._train(version, os.path.join(folder, "result.json"))
            except Exception as exc:
                _LOGGER.exception("Training %s could not be run", version.arn)
                self._fail(version, f"The training could not be run: {exc}", 0)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

    def _train(self, version: VersionRecord, result_file: str) -> None:
        started = time.monotonic()
        try:
            self._workers.start(version.arn, self.command(version, result_file), self.settings.s3)
        except OSError as exc:
            self._fail(version, f"The training could not start: {exc}", 0)
            return
        label = f"training {version.version_name}"
        returncode, last_lines = self._workers.finish(version.arn, label)
        billable_secs = int(round(time.monotonic() - started))
        if self._stopping.is_set() and returncode != 0:
            self._fail(version, RESTART_MESSAGE, billable_secs)
            return
        result = _read_result(result_file) if returncode == 0 else None
        if result is None:
            if returncode == 0:
                message = "The training process ended without writing a readable result."
            else:
                message = crash_reason("The training process", returncode, last_lines)
            self._fail(version, message, billable_secs)
            return
        self._record(version, result, billable_secs)

    def _record(self, version: VersionRecord, result: dict[str, Any], billable_secs: int) -> None:
        status = result.get("Status")
        message = str(result.get("StatusMessage") or "")
        data_results = _data_results(result) if version.custom_labels else None
        if status == TRAINING_FAILED:
            self._fail(version, message or "The training failed.", billable_secs, data_results)
            return
        required = _COMPLETED_FIELDS[version.feature]
        missing = [name for name in required if result.get(name) in (None, "", {}, [])]
        if status != TRAINING_COMPLETED or missing:
            self._fail(
                version,
                f"The training process wrote an unusable result (Status {status!r}, missing "
                f"{', '.join(missing) or 'nothing'}).",
                billable_secs,
            )
            return
        summary = result["Summary"]
        evaluation = {
            "billable_secs": billable_secs,
            "f1": float(result["F1Score"]),
            "summary_bucket": summary["Bucket"],
            "summary_name": summary["Name"],
        }
        if version.custom_labels:
            self.projects.mark_model_trained(
                version.arn,
                status_message=message or "The model is trained.",
                model_uri=result["Model"],
                model_kind=result["Kind"],
                labels=[str(label) for label in result["Labels"]],
                backbone_version=result.get("BackboneVersion"),
                data_results=data_results,
                **evaluation,
            )
        else:
            self.projects.mark_trained(
                version.arn,
                status_message=message or "The adapter is trained.",
                adapter_uri=result["Adapter"],
                base_model_version=result["BaseModelVersion"],
                backbone_version=result["BackboneVersion"],
                **evaluation,
            )
        _LOGGER.info("Trained %s: F1 %.3f", version.arn, float(result["F1Score"]))

    def _fail(
        self,
        version: VersionRecord,
        message: str,
        billable_secs: int,
        data_results: dict[str, Any] | None = None,
    ) -> None:
        _LOGGER.warning("Training %s failed: %s", version.arn, message)
        self.projects.mark_training_failed(
            version.arn, message, billable_secs=billable_secs, data_results=data_results
        )


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None

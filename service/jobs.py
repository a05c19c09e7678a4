"""Runs registered jobs and watches each to the end, where the configuration says:

- locally or on a portable job endpoint (Flink, Spark): one ``python -m pipeline.run`` process
  per job, with the runner flags of ``JobSettings.pipeline_args``. On a portable runner that
  process is the job's launcher: it submits the pipeline to the job endpoint and waits for it.
- on Dataflow (``JobSettings.dataflow``): launched from the Flex Template through Dataflow's
  API (``service.dataflow``), then polled until it ends.

A local job runs in a process of its own, so that a crash, a runaway allocation or a kill takes
down the job and never the server. The process dies with the server (Linux's parent-death
signal), so a restarted server can fail every job it finds unfinished: none of them can still
be writing. Credentials reach the process through its environment, never its command line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from model.confidence import DEFAULT_MIN_CONFIDENCE
from service.adapters import AdapterNotReady, ResolvedAdapter
from service.dataflow import (
    SUCCEEDED_STATE,
    DataflowClient,
    DataflowError,
    DataflowSettings,
    dataflow_job_name,
)
from service.preflight import DEFAULT_MAX_MANIFEST_BYTES, PreflightProblem, check_job_resources
from service.project_records import VersionNotFound
from service.projects import ProjectRegistry
from service.registry import JobRecord, JobRegistry
from service.workers import Workers, crash_reason
from storage.environment import s3_flags
from storage.settings import S3Settings
from transforms.output import RESULTS_FILE, SUMMARY_FILE

__all__ = ["JobRunner", "JobSettings", "allowed_source_prefixes", "output_prefix"]

_LOGGER = logging.getLogger(__name__)


def output_prefix(job: JobRecord) -> str:
    """The key prefix of a job's outputs: ``<S3KeyPrefix>/<JobId>``."""
    prefix = job.request["OutputConfig"].get("S3KeyPrefix", "").strip("/")
    return f"{prefix}/{job.job_id}" if prefix else job.job_id


def allowed_source_prefixes(allowed_locations: Collection[str] | None) -> str:
    """``--allowed_source_prefixes`` of the processes the server starts: the ``s3://`` prefixes
    of its allowed locations (``s3://``, any bucket, when it has none), never the server's disk."""
    if allowed_locations is None:
        return "s3://"
    return ",".join(
        f"s3://{entry}" if "/" in entry else f"s3://{entry}/" for entry in allowed_locations
    )


@dataclass(frozen=True)
class JobSettings:
    """How jobs run: the model, Beam's runner flags, S3, and what jobs may touch."""

    def model_version(self) -> str:
        """The ``ModerationModelVersion`` of the base model jobs run."""
        from model.moderation_model import moderation_model_version

        return moderation_model_version(
            self.components,
            self.backbone,
            zero_shot_model=self.zero_shot_model,
            zero_shot_prompts=self.zero_shot_prompts,
            s3=self.s3,
        )

    s3: S3Settings = field(default_factory=S3Settings)
    components: str = "auto"
    backbone: str | None = None
    zero_shot_model: str | None = None
    zero_shot_prompts: str | None = None
    pipeline_args: Sequence[str] = ("--runner=DirectRunner",)
    allowed_locations: Collection[str] | None = None
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
    python: str = sys.executable
    # Set: jobs are launched on Dataflow from the Flex Template instead of run here.
    dataflow: DataflowSettings | None = None


class JobRunner:
    """Checks, starts and watches jobs, reporting each step to the registry."""

    def __init__(
        self,
        registry: JobRegistry,
        settings: JobSettings,
        *,
        s3_client,
        kms_client,
        projects: ProjectRegistry | None = None,
        dataflow_client: DataflowClient | None = None,
    ):
        self.registry = registry
        self.settings = settings
        self.projects = projects
        if settings.dataflow is not None and dataflow_client is None:
            dataflow_client = DataflowClient(settings.dataflow)
        self._dataflow = dataflow_client
        self._s3_client = s3_client
        self._kms_client = kms_client
        self._workers = Workers(_LOGGER)
        # Called with the job's record once it has SUCCEEDED (the console indexes its results).
        self.on_succeeded: list[Callable[[JobRecord], None]] = []

    def recover(self) -> list[str]:
        """At server start: every unfinished job lost its watcher (and its process) with the
        previous server, so each is marked FAILED."""
        return self.registry.fail_orphans(is_alive=lambda _pid: False)

    def submit(self, job: JobRecord) -> None:
        """Checks the job's resources, then runs it in the background."""
        problem = self._adapter_problem(job) or check_job_resources(
            job.request,
            self._s3_client,
            self._kms_client,
            allowed_locations=self.settings.allowed_locations,
            max_manifest_bytes=self.settings.max_manifest_bytes,
        )
        if problem:
            self.registry.mark_failed(job.job_id, problem.code, problem.message)
            return
        self.registry.mark_queued(job.job_id)
        self._workers.watch(job.job_id, f"job-{job.job_id[:8]}", lambda: self._run(job))

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Waits for a submitted job's process to end and its outcome to be recorded."""
        self._workers.wait(job_id, timeout)

    def process_id(self, job_id: str) -> int | None:
        return self._workers.process_id(job_id)

    def progress(self, job_id: str) -> tuple[int, int] | None:
        """``(manifest lines done, lines in all)`` of a job running here, as it last reported."""
        return self._workers.progress(job_id)

    def command(self, job: JobRecord) -> list[str]:
        """The local process that runs (or, on a portable runner, launches) the job."""
        return [
            self.settings.python,
            "-m",
            "pipeline.run",
            *self.job_flags(job),
            *s3_flags(self.settings.s3),
            *self.settings.pipeline_args,
        ]

    def template_parameters(self, job: JobRecord) -> dict[str, str]:
        """The job's flags as Flex Template parameters (the names of templates/metadata.json)."""
        return dict(flag[2:].split("=", 1) for flag in self.job_flags(job))

    def job_flags(self, job: JobRecord) -> list[str]:
        """The job's own ``pipeline.run`` flags (``--name=value``), whatever the runner."""
        request = job.request
        manifest = request["Input"]["S3Object"]
        bucket = request["OutputConfig"]["S3Bucket"]
        settings = self.settings
        config = request["OperationsConfig"].get("DetectModerationLabels", {})
        command = [
            f"--manifest=s3://{manifest['Bucket']}/{manifest['Name']}",
            f"--output=s3://{bucket}/{output_prefix(job)}",
            f"--min_confidence={config.get('MinConfidence', DEFAULT_MIN_CONFIDENCE)}",
            f"--components={settings.components}",
            "--progress_interval_secs=5",
            # Through the API, images come from S3 only (never the server's own disk), and only
            # from the allowed locations.
            "--source_schemes=s3",
        ]
        if manifest.get("Version"):  # the version preflight checked, not whatever is latest
            command.append(f"--manifest_version={manifest['Version']}")
        if settings.allowed_locations is not None:
            command.append(
                f"--allowed_source_prefixes={allowed_source_prefixes(settings.allowed_locations)}"
            )
        if settings.backbone:
            command.append(f"--backbone={settings.backbone}")
        from model.moderation_model import zero_shot_flags

        command += zero_shot_flags(settings.zero_shot_model, settings.zero_shot_prompts)
        adapter = self._adapter(job)
        if adapter is not None and not adapter.expired:
            # An expired adapter reads an embedding the server's backbone no longer makes: the
            # job runs on the base model alone, as Rekognition ignores an expired adapter.
            command += [f"--adapter={adapter.adapter_uri}", f"--project_version={adapter.arn}"]
        if request.get("KmsKeyId"):
            command.append(f"--output_kms_key_id={request['KmsKeyId']}")
        return command

    def _adapter(self, job: JobRecord) -> ResolvedAdapter | None:
        """The adapter the job asks for (``ProjectVersion``), or None if it asks for none.

        Raises VersionNotFound or AdapterNotReady if it cannot be applied.
        """
        config = job.request["OperationsConfig"].get("DetectModerationLabels", {})
        arn = config.get("ProjectVersion")
        if not arn:
            return None
        if self.projects is None:
            raise VersionNotFound(f"This server keeps no adapters; {arn} does not exist.")
        return self.projects.resolve_adapter(arn)

    def _adapter_problem(self, job: JobRecord) -> PreflightProblem | None:
        try:
            self._adapter(job)
        except VersionNotFound as exc:
            return PreflightProblem("RESOURCE_NOT_FOUND", str(exc))
        except AdapterNotReady as exc:
            return PreflightProblem("RESOURCE_NOT_READY", str(exc))
        return None

    def _run(self, job: JobRecord) -> None:
        # The adapter may have been deleted since the job was checked.
        problem = self._adapter_problem(job)
        if problem:
            self.registry.mark_failed(job.job_id, problem.code, problem.message)
            return
        if self._dataflow is not None:
            self._run_on_dataflow(job)
            return
        try:
            process = self._workers.start(job.job_id, self.command(job), self.settings.s3)
        except OSError as exc:
            self.registry.mark_failed(
                job.job_id, "INTERNAL_ERROR", f"The job could not start: {exc}"
            )
            return
        self.registry.mark_in_progress(job.job_id, worker_pid=process.pid)
        returncode, last_lines = self._workers.finish(job.job_id, f"job {job.job_id}")
        self._record_outcome(job, returncode, last_lines)

    def _run_on_dataflow(self, job: JobRecord) -> None:
        name = dataflow_job_name(job.job_id)
        try:
            dataflow_id = self._dataflow.launch(name, self.template_parameters(job))
        except DataflowError as exc:
            self.registry.mark_failed(
                job.job_id, "INTERNAL_ERROR", f"Dataflow did not launch the job: {exc}"
            )
            return
        _LOGGER.info("Job %s runs on Dataflow as %s (%s)", job.job_id, dataflow_id, name)
        self.registry.mark_in_progress(job.job_id)
        try:
            state = self._dataflow.wait(dataflow_id).get("currentState")
        except DataflowError as exc:
            self.registry.mark_failed(job.job_id, "INTERNAL_ERROR", str(exc))
            return
        if state == SUCCEEDED_STATE:
            self._mark_succeeded(job)
            return
        try:
            errors = [m for m in self._dataflow.error_messages(dataflow_id) if m]
        except DataflowError:
            errors = []
        reason = f"Dataflow job {dataflow_id} ended in {state}."
        if errors:
            reason += f" {errors[-1]}"
        _LOGGER.warning("Job %s failed: %s", job.job_id, reason)
        self.registry.mark_failed(job.job_id, "INTERNAL_ERROR", reason)

    def _mark_succeeded(self, job: JobRecord) -> None:
        prefix = output_prefix(job)
        self.registry.mark_succeeded(
            job.job_id,
            results_key=f"{prefix}/{RESULTS_FILE}",
            summary_key=f"{prefix}/{SUMMARY_FILE}",
            model_version=self.settings.model_version(),
        )
        record = self.registry.get(job.job_id)
        for listener in self.on_succeeded:
            try:
                listener(record)
            except Exception:  # the job has succeeded whatever a listener does
                _LOGGER.exception("After job %s succeeded", job.job_id)

    def _record_outcome(self, job: JobRecord, returncode: int, last_lines: list[str]) -> None:
        if returncode == 0:
            self._mark_succeeded(job)
            return
        message = crash_reason("The job's process", returncode, last_lines)
        _LOGGER.warning("Job %s failed: %s", job.job_id, message)
        self.registry.mark_failed(job.job_id, "INTERNAL_ERROR", message)

"""Scheduled batch runs: start a moderation job for every new manifest under an S3 prefix.

Usage (from cron, Cloud Scheduler or any timer; see docs/scheduling.md)::

    python -m scheduler.schedule --manifests s3://in-bucket/manifests/ \\
        --output s3://out-bucket/results [--endpoint_url http://127.0.0.1:8642] \\
        [--suffix .jsonl] [--state s3://out-bucket/schedule-state.json | PATH] \\
        [--min_confidence 50] [--project_version ARN] [--job_name_prefix scheduled] \\
        [--dry_run] [--format text|json] [--s3_endpoint_url URL ...]

Each run lists the objects under ``--manifests`` (every page), keeps those whose key ends with
``--suffix``, and starts one job for each manifest version it has not started before. A
manifest version is ``(bucket, key, ETag)``: re-uploading a manifest with other content gives it
a new ETag and so a new job; an unchanged one is skipped; a deleted one is left alone.

Exactly once, in two layers:

- With ``--endpoint_url``, jobs start through the Rekognition API (StartMediaAnalysisJob). The
  ``ClientRequestToken`` is the SHA-256 of the manifest's bucket, key, ETag (and VersionId, in a
  versioned bucket) and the output location, so a rerun, a second scheduler racing this one, or
  a run after the state was lost asks for the same token with the same parameters, and the API
  answers with the JobId it started the first time.
- The state (``--state``, default ``<output>/schedule-state.json``) records each started version
  with its job id and time, so a rerun skips it without calling the API. On S3 it is written
  with a conditional put (``If-Match`` / ``If-None-Match``), merging with a concurrent writer's
  records; it is a cache of what the API already guarantees.

Without ``--endpoint_url`` the job runs here, one ``python -m pipeline.run`` process after the
other, writing to ``<output>/<manifest name>-<ETag[:12]>``; a version whose output already holds
``manifest-summary.json`` is done and skipped, even when the state was lost.

Exit status: 0 when nothing failed; 1 when some manifest could not be started or run (the others
still were; the failed ones are tried again on the next run) or the listing or the state failed;
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from model.confidence import add_confidence_argument, check_confidence
from pipeline.logs import configure_logging
from storage.environment import worker_environment
from storage.outputs import join
from storage.settings import S3Settings, add_s3_arguments, s3_settings_from_arguments
from transforms.output import SUMMARY_FILE

__all__ = [
    "ManifestVersion",
    "Outcome",
    "ScheduleState",
    "build_parser",
    "client_request_token",
    "list_manifests",
    "main",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_STATE_NAME = "schedule-state.json"
STATE_FORMAT_VERSION = 1
# Environment variables holding the key pair the API server knows (its --access_keys_file or
# BEAM_MODERATION_ACCESS_KEYS), so that it need not be the AWS key pair that reads S3.
API_KEY_ID_ENV = "BEAM_MODERATION_API_ACCESS_KEY_ID"
API_SECRET_ENV = "BEAM_MODERATION_API_SECRET_ACCESS_KEY"

_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9_.\-]+")
_JOB_NAME_PREFIX = re.compile(r"[a-zA-Z0-9_.\-]{1,40}")
_BUCKET = re.compile(r"[0-9A-Za-z.\-_]{3,255}")
_MAX_JOB_NAME = 64
_STATE_WRITE_ATTEMPTS = 5
_OUTPUT_LINES_KEPT = 20

# Actions, in the order the summary counts them.
STARTED, SKIPPED, FAILED, WOULD_START = "started", "skipped", "failed", "would_start"
ACTIONS = (STARTED, SKIPPED, FAILED, WOULD_START)


class UsageError(ValueError):
    """The command cannot run as given (exit status 2); the message names the flag to fix."""


class ScheduleError(RuntimeError):
    """The listing or the state failed (exit status 1)."""


# --- Manifests ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ManifestVersion:
    """One version of a manifest: ``(bucket, key, ETag)``, plus its VersionId when versioned."""

    bucket: str
    key: str
    etag: str  # without S3's quotes
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _etag(value: str) -> str:
    return value.strip().strip('"')


def split_s3_uri(uri: str, flag: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as ``(bucket, prefix)``; UsageError naming ``flag`` otherwise."""
    if not uri.startswith("s3://"):
        raise UsageError(f"{flag} must be an s3:// URI (s3://bucket/prefix), not {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(f"{flag} {uri!r} does not start with a valid bucket name")
    return bucket, prefix


def list_manifests(
    s3_client, bucket: str, prefix: str, suffix: str, *, page_size: int = 1000
) -> list[ManifestVersion]:
    """The objects under ``prefix`` whose key ends with ``suffix``, in key order, every page read.

    "Folder" markers (keys ending in ``/``) are never manifests.
    """
    found = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for entry in page.get("Contents", ()):
            key = entry["Key"]
            if key.endswith("/") or not key.endswith(suffix):
                continue
            found.append(ManifestVersion(bucket, key, _etag(entry["ETag"])))
    return sorted(found, key=lambda manifest: manifest.key)


def current_version(s3_client, manifest: ManifestVersion) -> ManifestVersion | None:
    """The manifest as it is now (HEAD): its current ETag and, in a versioned bucket, VersionId.

    None when it was deleted since the listing. The ETag can differ from the listing's when it
    was overwritten meanwhile: the job is then for the newer version, which is what it reads.
    """
    from botocore.exceptions import ClientError

    try:
        head = s3_client.head_object(Bucket=manifest.bucket, Key=manifest.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    version_id = head.get("VersionId")
    # "null" is the version of an object written while versioning was off or suspended.
    if version_id in ("", "null"):
        version_id = None
    return ManifestVersion(manifest.bucket, manifest.key, _etag(head["ETag"]), version_id)


def client_request_token(manifest: ManifestVersion, output_bucket: str, output_prefix: str) -> str:
    """The StartMediaAnalysisJob ``ClientRequestToken`` of this manifest version and output.

    64 hex characters (the API's limit and pattern ``^[a-zA-Z0-9-_]+$``): the same manifest
    version sent to the same output always gets the same token, so the API answers with the job
    it started the first time.
    """
    parts = (
        "beam-moderation-schedule/1",
        manifest.bucket,
        manifest.key,
        manifest.etag,
        manifest.version_id or "",
        output_bucket,
        output_prefix,
    )
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _relative_name(manifest: ManifestVersion, prefix: str, suffix: str) -> str:
    """The manifest's key under the listed prefix, without the suffix: ``daily/batch``."""
    name = manifest.key[len(prefix) :] if manifest.key.startswith(prefix) else manifest.key
    name = name.lstrip("/")
    if suffix and name.endswith(suffix) and len(name) > len(suffix):
        name = name[: -len(suffix)]
    return name


def job_name(job_name_prefix: str, name: str, etag: str) -> str:
    """``<prefix>-<name>-<ETag[:8]>``, in JobName's characters and at most 64 of them."""
    tail = f"-{_NAME_CHARACTERS.sub('-', etag)[:8]}"
    head = f"{job_name_prefix}-"
    room = _MAX_JOB_NAME - len(head) - len(tail)
    middle = _NAME_CHARACTERS.sub("-", name).strip("-")[:room] or "manifest"
    return head + middle + tail


def local_output(output: str, name: str, etag: str) -> str:
    """Where a local run writes: ``<output>/<name>-<ETag[:12]>``."""
    return join(output, f"{name}-{_NAME_CHARACTERS.sub('-', etag)[:12]}")


# --- State ----------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ScheduleState:
    """Which manifest versions were started: a small JSON document on S3 or on local disk.

    ``{"version": 1, "started": {"s3://bucket/key": {"<ETag>": {"job_id": ..., "output": ...,
    "started_at": "2026-01-01T00:00:00Z"}}}}``

    Saving merges with what another scheduler wrote meanwhile: on S3 through a conditional put
    (``If-Match`` the ETag read, or ``If-None-Match: *`` for a new file), re-read and retried on
    a conflict; a store that does not implement conditional writes gets a plain put.
    """

    def __init__(self, location: str, s3_client=None):
        self.location = location
        self._s3 = s3_client
        self._started: dict[str, dict[str, dict[str, Any]]] = {}
        self._added: dict[tuple[str, str], dict[str, Any]] = {}
        self._etag: str | None = None  # of the S3 object read, None when there was none

    @property
    def on_s3(self) -> bool:
        return self.location.startswith("s3://")

    # Reading.

    def load(self) -> ScheduleState:
        text = self._read()
        self._started = self._parse(text) if text is not None else {}
        for (uri, etag), record in self._added.items():
            self._started.setdefault(uri, {})[etag] = record
        return self

    def _read(self) -> str | None:
        if self.on_s3:
            from botocore.exceptions import ClientError

            bucket, key = split_s3_uri(self.location, "--state")
            try:
                answer = self._s3.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    self._etag = None
                    return None
                raise ScheduleError(f"--state {self.location} cannot be read: {exc}") from exc
            self._etag = answer["ETag"]
            return answer["Body"].read().decode("utf-8")
        try:
            with open(self.location, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScheduleError(f"--state {self.location} cannot be read: {exc}") from exc

    def _parse(self, text: str) -> dict[str, dict[str, dict[str, Any]]]:
        problem = (
            f"--state {self.location} is not a schedule state file; fix it, point --state "
            "elsewhere, or delete it (the API's ClientRequestToken keeps jobs exactly-once "
            "without it)"
        )
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{problem}: {exc}") from exc
        if (
            not isinstance(document, dict)
            or document.get("version") != STATE_FORMAT_VERSION
            or not isinstance(document.get("started"), dict)
        ):
            raise UsageError(f'{problem}: expected {{"version": 1, "started": {{...}}}}')
        started = document["started"]
        if not all(
            isinstance(versions, dict) and all(isinstance(r, dict) for r in versions.values())
            for versions in started.values()
        ):
            raise UsageError(f"{problem}: every manifest must map ETags to records")
        return started

    def get(self, manifest: ManifestVersion) -> dict[str, Any] | None:
        return self._started.get(manifest.uri, {}).get(manifest.etag)

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._started.values())

    # Writing.

    def record(self, manifest: ManifestVersion, job_id: str, output: str | None) -> dict:
        record = {"job_id": job_id, "output": output, "started_at": _now()}
        if manifest.version_id:
            record["version_id"] = manifest.version_id
        self._added[(manifest.uri, manifest.etag)] = record
        self._started.setdefault(manifest.uri, {})[manifest.etag] = record
        return record

    def _document(self) -> bytes:
        document = {"version": STATE_FORMAT_VERSION, "started": self._started}
        return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")

    def save(self) -> None:
        """Writes the records, merged with any written meanwhile; ScheduleError if it cannot."""
        if not self._added:
            return
        if self.on_s3:
            self._save_s3()
        else:
            self._save_local()

    def _save_s3(self) -> None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(self.location, "--state")
        conditional = True
        for _ in range(_STATE_WRITE_ATTEMPTS):
            condition = {}
            if conditional:
                condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
            try:
                answer = self._s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=self._document(),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                    409,
                    412,
                ):
                    self.load()  # another scheduler wrote it: merge with its records, retry
                    continue
                if conditional and (code == "NotImplemented" or status == 501):
                    _LOGGER.warning(
                        "The store has no conditional writes; writing %s unconditionally",
                        self.location,
                    )
                    conditional = False
                    continue
                raise ScheduleError(f"--state {self.location} cannot be written: {exc}") from exc
            self._etag = answer.get("ETag")
            self._added.clear()
            return
        raise ScheduleError(
            f"--state {self.location} kept changing under this run ({_STATE_WRITE_ATTEMPTS} "
            "conflicting writes): are many schedulers sharing it?"
        )

    def _save_local(self) -> None:
        self.load()  # merge with what another run wrote meanwhile
        folder = os.path.dirname(os.path.abspath(self.location))
        try:
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".schedule-state-", dir=folder)
            try:
                with os.fdopen(handle, "wb") as f:
                    f.write(self._document())
                os.replace(temporary, self.location)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise ScheduleError(f"--state {self.location} cannot be written: {exc}") from exc
        self._added.clear()


# --- Outcomes -------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What this run did with one manifest version."""

    manifest: ManifestVersion
    action: str  # one of ACTIONS
    job_id: str | None = None
    output: str | None = None
    reason: str | None = None
    client_request_token: str | None = None
    started_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest.uri,
            "bucket": self.manifest.bucket,
            "key": self.manifest.key,
            "etag": self.manifest.etag,
            "version_id": self.manifest.version_id,
            "action": self.action,
            "job_id": self.job_id,
            "output": self.output,
            "started_at": self.started_at,
            "client_request_token": self.client_request_token,
            "reason": self.reason,
        }

    def line(self) -> str:
        head = f"{self.manifest.uri} (ETag {self.manifest.etag[:12]})"
        if self.action == STARTED:
            where = f", output {self.output}" if self.output else ""
            return f"{head}: started {self.job_id}{where}"
        if self.action == SKIPPED:
            return f"{head}: skipped ({self.reason})"
        if self.action == WOULD_START:
            where = f" to {self.output}" if self.output else ""
            return f"{head}: would start{where} (dry run)"
        return f"{head}: failed: {self.reason}"


def summarize(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = collections.Counter(outcome.action for outcome in outcomes)
    return {**{action: counts.get(action, 0) for action in ACTIONS}, "total": len(outcomes)}


# --- Command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.schedule",
        description="Starts one moderation job for every new manifest (or new version of a "
        "manifest) under an S3 prefix, exactly once per (bucket, key, ETag), and reports what "
        "it started. Run it from cron or any scheduler; see docs/scheduling.md.",
        epilog="With --endpoint_url, jobs start through the Rekognition API "
        "(StartMediaAnalysisJob) with a ClientRequestToken derived from the manifest's bucket, "
        "key, ETag and the output, so a rerun or a lost state never starts a second job for "
        f"one version. The API's key pair comes from {API_KEY_ID_ENV} and {API_SECRET_ENV}, "
        "else --api_profile, else the usual AWS environment. Without --endpoint_url, each job "
        "runs here (python -m pipeline.run) into <output>/<name>-<ETag[:12]>. Exit status: 0 "
        "nothing failed, 1 some manifest failed to start (the others were started) or the "
        "listing or state failed, 2 bad arguments.",
    )
    parser.add_argument(
        "--manifests",
        required=True,
        help="Required. s3://bucket/prefix/ listed for manifests (every page).",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="Required. Where results go. With --endpoint_url: s3://bucket/prefix, the job's "
        "OutputConfig (results under <prefix>/<JobId>/). Without: an s3://, gs:// or local "
        "folder receiving <name>-<ETag[:12]>/ per manifest version.",
    )
    parser.add_argument(
        "--suffix",
        default=".jsonl",
        help="Only keys ending with this are manifests; '' takes every object. Default: .jsonl.",
    )
    parser.add_argument(
        "--state",
        default=None,
        help="s3://bucket/key or local path of the JSON record of started manifest versions. "
        f"Default: <output>/{DEFAULT_STATE_NAME} (a local file next to local outputs).",
    )
    parser.add_argument(
        "--endpoint_url",
        default=None,
        help="The Rekognition API to start jobs through, e.g. http://127.0.0.1:8642 "
        "(python -m service.server). Default: none, run each job here.",
    )
    parser.add_argument(
        "--api_region",
        default=None,
        help="Region the API requests are signed for. Default: AWS_REGION / AWS_DEFAULT_REGION, "
        "else us-east-1.",
    )
    parser.add_argument(
        "--api_profile",
        default=None,
        help="AWS profile (~/.aws/credentials) holding the API's key pair. Default: "
        f"{API_KEY_ID_ENV} / {API_SECRET_ENV}, else the usual AWS environment.",
    )
    add_confidence_argument(parser)
    parser.add_argument(
        "--project_version",
        default=None,
        help="Adapter (Custom Moderation) ARN applied to every job; needs --endpoint_url "
        "(locally, pass --job_args='--adapter=FOLDER'). Default: none.",
    )
    parser.add_argument(
        "--job_name_prefix",
        default="scheduled",
        help="JobName is <prefix>-<manifest name>-<ETag[:8]>, at most 64 characters; the prefix "
        "takes 1-40 of a-z A-Z 0-9 _ . -. Default: scheduled.",
    )
    parser.add_argument(
        "--job_args",
        default="",
        help="Extra flags for each local python -m pipeline.run (no --endpoint_url), e.g. "
        "'--components=open_nsfw --runner=DirectRunner'. Default: none.",
    )
    parser.add_argument(
        "--dry_run",
        action="store_true",
        help="List what would start; start nothing and write no state.",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one line per manifest and a summary; json: one JSON document. Default: text.",
    )
    add_s3_arguments(parser)
    return parser


@dataclasses.dataclass
class _Plan:
    """The checked arguments."""

    args: argparse.Namespace
    bucket: str
    prefix: str
    output_bucket: str | None
    output_prefix: str | None
    state_location: str
    s3: S3Settings
    job_args: list[str]


def _check(args: argparse.Namespace) -> _Plan:
    bucket, prefix = split_s3_uri(args.manifests, "--manifests")
    try:
        check_confidence(args.min_confidence)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not _JOB_NAME_PREFIX.fullmatch(args.job_name_prefix):
        raise UsageError(
            f"--job_name_prefix must be 1-40 of a-z A-Z 0-9 _ . -, not {args.job_name_prefix!r}"
        )
    output = args.output.rstrip("/") or args.output
    if not output:
        raise UsageError("--output must name where the results go")
    output_bucket = output_prefix = None
    try:
        job_args = shlex.split(args.job_args)
    except ValueError as exc:
        raise UsageError(f"--job_args cannot be split into flags: {exc}") from exc
    if args.endpoint_url:
        if not re.match(r"https?://[^/\s]+", args.endpoint_url):
            raise UsageError(
                "--endpoint_url must be http://host:port or https://host, "
                f"not {args.endpoint_url!r}"
            )
        output_bucket, output_prefix = split_s3_uri(output, "--output")
        output_prefix = output_prefix.strip("/")
        if len(output_prefix) > 800 or re.search(r"\s", output_prefix):
            raise UsageError(
                "--output's key prefix must be at most 800 characters without spaces "
                "(OutputConfig.S3KeyPrefix)"
            )
        if job_args:
            raise UsageError(
                "--job_args applies to local runs only; with --endpoint_url the server's own "
                "--job_args and --components choose how jobs run"
            )
    else:
        if args.project_version:
            raise UsageError(
                "--project_version needs --endpoint_url (an adapter ARN is resolved by the API "
                "server); to run locally with an adapter pass --job_args='--adapter=FOLDER'"
            )
        if "://" in output and not output.startswith(("s3://", "gs://")):
            raise UsageError(f"--output must be s3://, gs:// or a local folder, not {output!r}")
    # Outputs written under the listed prefix would be listed as manifests on the next run
    # (results.jsonl ends with .jsonl), and each would start a job of its own.
    listed = f"s3://{bucket}/{prefix}"
    written = output + "/"
    if written.startswith(listed) or listed.startswith(written):
        raise UsageError(
            f"--output {args.output} overlaps --manifests {args.manifests}: results would be "
            "listed as new manifests; write them elsewhere"
        )
    state = args.state or join(output, DEFAULT_STATE_NAME)
    if "://" in state and not state.startswith("s3://"):
        raise UsageError(f"--state must be s3://bucket/key or a local path, not {state!r}")
    if state.startswith("s3://"):
        state_bucket, state_key = split_s3_uri(state, "--state")
        if not state_key or state_key.endswith("/"):
            raise UsageError(f"--state {state} must name an object, not a folder")
        if (
            state_bucket == bucket
            and state_key.startswith(prefix)
            and state_key.endswith(args.suffix)
        ):
            raise UsageError(f"--state {state} would be listed as a manifest; put it elsewhere")
    s3 = s3_settings_from_arguments(args, set_filesystems=not args.endpoint_url)
    return _Plan(
        args=args,
        bucket=bucket,
        prefix=prefix,
        output_bucket=output_bucket,
        output_prefix=output_prefix,
        state_location=state,
        s3=s3,
        job_args=job_args,
    )


def _rekognition_client(args: argparse.Namespace):
    import boto3
    from botocore.config import Config

    region = (
        args.api_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    key_id, secret = os.environ.get(API_KEY_ID_ENV), os.environ.get(API_SECRET_ENV)
    if bool(key_id) != bool(secret):
        raise UsageError(f"set both {API_KEY_ID_ENV} and {API_SECRET_ENV}, or neither")
    if key_id:
        session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret)
    else:
        session = boto3.Session(profile_name=args.api_profile)
    return session.client(
        "rekognition",
        endpoint_url=args.endpoint_url,
        region_name=region,
        config=Config(retries={"mode": "standard"}),
    )


# --- Running --------------------------------------------------------------------------------


_MISMATCH_HINT = (
    "this manifest version was started before for this output with other settings "
    "(--min_confidence, --project_version or --job_name_prefix changed since) and the state has "
    "no record of that job (see ListMediaAnalysisJobs); restore the state or the old settings, "
    "or re-upload the manifest to process it again"
)


def _start_through_api(plan: _Plan, client, manifest: ManifestVersion, name: str) -> Outcome:
    from botocore.exceptions import ClientError

    args = plan.args
    token = client_request_token(manifest, plan.output_bucket, plan.output_prefix)
    operations: dict[str, Any] = {"MinConfidence": args.min_confidence}
    if args.project_version:
        operations["ProjectVersion"] = args.project_version
    s3_object = {"Bucket": manifest.bucket, "Name": manifest.key}
    if manifest.version_id:
        s3_object["Version"] = manifest.version_id
    output_config = {"S3Bucket": plan.output_bucket}
    if plan.output_prefix:
        output_config["S3KeyPrefix"] = plan.output_prefix
    outcome = Outcome(manifest, FAILED, client_request_token=token)
    try:
        answer = client.start_media_analysis_job(
            ClientRequestToken=token,
            JobName=job_name(args.job_name_prefix, name, manifest.etag),
            OperationsConfig={"DetectModerationLabels": operations},
            Input={"S3Object": s3_object},
            OutputConfig=output_config,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(exc))
        outcome.reason = f"{code}: {message}"
        if code == "IdempotentParameterMismatchException":
            outcome.reason += f" ({_MISMATCH_HINT})"
        elif code in ("LimitExceededException", "ThrottlingException", "InternalServerError"):
            outcome.reason += " (tried again on the next run)"
        return outcome
    job_id = answer["JobId"]
    prefix = f"{plan.output_prefix}/{job_id}" if plan.output_prefix else job_id
    outcome.action, outcome.job_id = STARTED, job_id
    outcome.output = f"s3://{plan.output_bucket}/{prefix}"
    return outcome


def local_command(plan: _Plan, manifest: ManifestVersion, output: str) -> list[str]:
    """The ``python -m pipeline.run`` command of one local run (credentials excluded)."""
    command = [
        sys.executable,
        "-m",
        "pipeline.run",
        f"--manifest={manifest.uri}",
        f"--output={output}",
        f"--min_confidence={plan.args.min_confidence}",
    ]
    for flag, value in (
        ("s3_endpoint_url", plan.s3.endpoint_url),
        ("s3_region_name", plan.s3.region_name),
        ("s3_verify", plan.s3.verify),
    ):
        if value is not None:
            command.append(f"--{flag}={value}")
    if plan.s3.disable_ssl:
        command.append("--s3_disable_ssl")
    return command + plan.job_args


def _run_locally(plan: _Plan, manifest: ManifestVersion, output: str) -> Outcome:
    outcome = Outcome(manifest, FAILED, job_id=os.path.basename(output.rstrip("/")), output=output)
    command = local_command(plan, manifest, output)
    _LOGGER.info("Running %s", shlex.join(command))
    last_lines: collections.deque[str] = collections.deque(maxlen=_OUTPUT_LINES_KEPT)
    try:
        process = subprocess.Popen(
            command,
            env=worker_environment(plan.s3),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        outcome.reason = f"python -m pipeline.run could not start: {exc}"
        return outcome
    with process:
        for line in process.stdout:
            # The job's own log and report go to stderr, keeping stdout for this report.
            sys.stderr.write(line)
            last_lines.append(line.rstrip())
    if process.returncode != 0:
        errors = [line for line in last_lines if "error" in line.lower()]
        detail = (errors or list(last_lines) or [""])[-1]
        outcome.reason = f"python -m pipeline.run exited with status {process.returncode}: " + (
            detail or "no output"
        )
        return outcome
    outcome.action = STARTED
    return outcome


def _already_done(output: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(join(output, SUMMARY_FILE))


class _Run:
    """One run's decisions: skip, start or fail, manifest by manifest, recording each start."""

    def __init__(self, plan: _Plan, s3_client, api_client, state: ScheduleState):
        self.plan = plan
        self.args = plan.args
        self.local = not plan.args.endpoint_url
        self.s3_client = s3_client
        self.api_client = api_client
        self.state = state
        self.errors: list[str] = []
        self._unreachable: str | None = None  # why the API cannot be asked, once it failed so

    def one(self, listed: ManifestVersion) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        args, plan = self.args, self.plan
        name = _relative_name(listed, plan.prefix, args.suffix)
        record = self.state.get(listed)
        if record is not None:
            return Outcome(
                listed,
                SKIPPED,
                job_id=record.get("job_id"),
                output=record.get("output"),
                started_at=record.get("started_at"),
                reason=f"already started as {record.get('job_id')} at {record.get('started_at')}",
            )
        output = local_output(args.output, name, listed.etag) if self.local else None
        if self.local:
            marker = join(output, SUMMARY_FILE)
            try:
                done = _already_done(output)
            except Exception as exc:  # any filesystem's error
                return Outcome(
                    listed, FAILED, output=output, reason=f"cannot check {marker}: {exc}"
                )
            if done:
                job = os.path.basename(output)
                if not args.dry_run:
                    self.state.record(listed, job, output)
                return Outcome(
                    listed,
                    SKIPPED,
                    job_id=job,
                    output=output,
                    reason=f"already done: {marker} exists",
                )
        if args.dry_run:
            token = (
                None
                if self.local
                else client_request_token(listed, plan.output_bucket, plan.output_prefix)
            )
            return Outcome(listed, WOULD_START, output=output, client_request_token=token)
        if self._unreachable:
            return Outcome(listed, FAILED, reason=self._unreachable)
        try:
            manifest = current_version(self.s3_client, listed)
        except (ClientError, BotoCoreError) as exc:
            return Outcome(listed, FAILED, reason=f"cannot read the manifest: {exc}")
        if manifest is None:
            return Outcome(listed, SKIPPED, reason="deleted since it was listed; nothing to do")
        if self.local:
            outcome = _run_locally(plan, manifest, output)
        else:
            try:
                outcome = _start_through_api(plan, self.api_client, manifest, name)
            except BotoCoreError as exc:
                self._unreachable = f"the API at {args.endpoint_url} cannot be reached: {exc}"
                return Outcome(manifest, FAILED, reason=self._unreachable)
        if outcome.action == STARTED:
            record = self.state.record(manifest, outcome.job_id, outcome.output)
            outcome.started_at = record["started_at"]
            if self.local:
                self.save()  # a local run takes minutes: keep each one recorded at once
        return outcome

    def save(self) -> None:
        """Saves the state; a failure is reported, not raised: the jobs were started."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.state.save()
        except (ScheduleError, ValueError, ClientError, BotoCoreError) as exc:
            then = (
                f"finished runs are still skipped by their {SUMMARY_FILE}"
                if self.local
                else "the next run asks the API again, which answers with the same jobs"
            )
            message = f"the state could not be saved ({exc}); {then}"
            if message not in self.errors:
                self.errors.append(message)


def schedule(plan: _Plan, *, s3_client=None, api_client=None) -> tuple[list[Outcome], list[str]]:
    """Lists, decides and starts: ``(one outcome per manifest, run-level errors)``.

    Raises UsageError or ScheduleError when nothing can be done (the listing or the state
    cannot be read).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    args = plan.args
    s3_client = s3_client or plan.s3.client()
    try:
        manifests = list_manifests(s3_client, plan.bucket, plan.prefix, args.suffix)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise UsageError(
                f"--manifests {args.manifests}: bucket {plan.bucket!r} does not exist"
            ) from None
        raise ScheduleError(f"--manifests {args.manifests} cannot be listed: {exc}") from exc
    except BotoCoreError as exc:
        raise ScheduleError(f"--manifests {args.manifests} cannot be listed: {exc}") from exc
    state = ScheduleState(plan.state_location, s3_client)
    try:
        state.load()
    except (ClientError, BotoCoreError) as exc:
        raise ScheduleError(f"--state {plan.state_location} cannot be read: {exc}") from exc
    if args.endpoint_url and not args.dry_run and api_client is None:
        api_client = _rekognition_client(args)

    run = _Run(plan, s3_client, api_client, state)
    outcomes: list[Outcome] = []
    try:
        for listed in manifests:
            outcomes.append(run.one(listed))
    finally:
        if not args.dry_run:
            run.save()
    return outcomes, run.errors


def format_text(report: dict[str, Any], outcomes: Sequence[Outcome]) -> str:
    lines = [outcome.line() for outcome in outcomes]
    counts = report["summary"]
    parts = [f"{counts[STARTED]} started", f"{counts[SKIPPED]} skipped"]
    if report["dry_run"]:
        parts.append(f"{counts[WOULD_START]} would start (dry run)")
    parts.append(f"{counts[FAILED]} failed")
    suffix = f" ending in {report['suffix']}" if report["suffix"] else ""
    lines.append(
        f"Summary: {', '.join(parts)} of {counts['total']} manifests under "
        f"{report['manifests_prefix']}{suffix}."
    )
    lines.extend(f"error: {error}" for error in report["errors"])
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scheduler.schedule``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own message for a bad flag
        return exit_.code if isinstance(exit_.code, int) else 2
    configure_logging()
    try:
        plan = _check(args)
        outcomes, errors = schedule(plan)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ScheduleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {
        "manifests_prefix": args.manifests,
        "suffix": args.suffix,
        "output": args.output,
        "mode": "api" if args.endpoint_url else "local",
        "endpoint_url": args.endpoint_url,
        "state": plan.state_location,
        "dry_run": args.dry_run,
        "manifests": [outcome.to_json() for outcome in outcomes],
        "summary": summarize(outcomes),
        "errors": errors,
    }
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report, outcomes), end="")
    failed = report["summary"][FAILED] > 0 or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The scheduler's plan: its arguments checked against each other before anything is listed."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex

from model.confidence import check_confidence
from scheduler.errors import UsageError
from scheduler.manifests import split_s3_uri
from scheduler.state import DEFAULT_STATE_NAME
from storage.outputs import join
from storage.settings import S3Settings, s3_settings_from_arguments

__all__ = ["Plan", "check_arguments"]

_JOB_NAME_PREFIX = re.compile(r"[a-zA-Z0-9_.\-]{1,40}")


@dataclasses.dataclass
class Plan:
    """The checked arguments."""

    args: argparse.Namespace
    bucket: str
    prefix: str
    output_bucket: str | None
    output_prefix: str | None
    state_location: str
    s3: S3Settings
    job_args: list[str]


def check_arguments(args: argparse.Namespace) -> Plan:
    """The plan of ``args``; UsageError naming the flag to fix when they do not fit together."""
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
    return Plan(
        args=args,
        bucket=bucket,
        prefix=prefix,
        output_bucket=output_bucket,
        output_prefix=output_prefix,
        state_location=state,
        s3=s3,
        job_args=job_args,
    )

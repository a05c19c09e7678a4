"""The command line: its flags, the report it prints, and ``main`` (``python -m scheduler``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from model.confidence import add_confidence_argument
from pipeline.logs import configure_logging
from scheduler.dispatch import schedule
from scheduler.errors import ScheduleError, UsageError
from scheduler.outcomes import FAILED, SKIPPED, STARTED, WOULD_START, Outcome, summarize
from scheduler.plan import check_arguments
from scheduler.state import DEFAULT_STATE_NAME
from scheduler.submission import API_KEY_ID_ENV, API_SECRET_ENV
from storage.settings import add_s3_arguments

__all__ = ["build_parser", "format_text", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's flags (``--help`` prints them)."""
    parser = argparse.ArgumentParser(
        prog="python -m scheduler",
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


def format_text(report: dict[str, Any], outcomes: Sequence[Outcome]) -> str:
    """The text report: one line per manifest version, the summary, then the run's errors."""
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
    """``python -m scheduler``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own message for a bad flag
        return exit_.code if isinstance(exit_.code, int) else 2
    configure_logging()
    try:
        plan = check_arguments(args)
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

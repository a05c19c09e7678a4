"""Local runs: a manifest version's job run on this machine as ``python -m pipeline.run``."""

from __future__ import annotations

import collections
import logging
import os
import shlex
import subprocess
import sys

from scheduler.manifests import ManifestVersion
from scheduler.outcomes import FAILED, STARTED, Outcome
from scheduler.plan import Plan
from storage.environment import worker_environment
from storage.outputs import join
from transforms.output import SUMMARY_FILE

__all__ = ["already_done", "local_command", "run_locally"]

_LOGGER = logging.getLogger(__name__)

_OUTPUT_LINES_KEPT = 20


def local_command(plan: Plan, manifest: ManifestVersion, output: str) -> list[str]:
    """The ``python -m pipeline.run`` command of one local run (credentials excluded)."""
    command = [
        sys.executable,
        "-m",
        "pipeline.run",
        f"--manifest={manifest.uri}",
        f"--output={output}",
        f"--min_confidence={plan.args.min_confidence}",
    ]
    if manifest.version_id:  # the version planned, even if a newer one lands meanwhile
        command.append(f"--manifest_version={manifest.version_id}")
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


def run_locally(plan: Plan, manifest: ManifestVersion, output: str) -> Outcome:
    """Runs the job of ``manifest`` into ``output`` and waits for it; its output goes to stderr."""
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


def already_done(output: str) -> bool:
    """Whether a run into ``output`` finished: its summary file exists."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(join(output, SUMMARY_FILE))

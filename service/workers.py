"""What every worker process of the server shares: it dies with the server, it gets S3 through
flags and credentials through its environment, and a crash is told by its last error line.

Jobs (``service.jobs``) and adapter trainings (``service.training``) each run in a process of
their own, so that a crash, a runaway allocation or a kill takes down that one piece of work and
never the server.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Sequence

from transforms.storage import S3Settings

__all__ = ["crash_reason", "die_with_parent", "s3_flags", "worker_environment"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGKILL the child when the server process ends.

    A restarted server can then fail every piece of work it finds unfinished: none of it can still
    be writing.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def worker_environment(s3: S3Settings) -> dict[str, str]:
    """The server's environment plus the S3 credentials: secrets never go on a command line."""
    environment = dict(os.environ)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
        ("AWS_SESSION_TOKEN", s3.session_token),
    ):
        if value:
            environment[name] = value
    return environment


def s3_flags(s3: S3Settings) -> list[str]:
    """The ``--s3_*`` flags (no credentials) that point a worker at the server's S3."""
    flags = []
    for flag, value in (
        ("s3_endpoint_url", s3.endpoint_url),
        ("s3_region_name", s3.region_name),
    ):
        if value:
            flags.append(f"--{flag}={value}")
    if s3.disable_ssl:
        flags.append("--s3_disable_ssl")
    return flags


def crash_reason(what: str, returncode: int, last_lines: Sequence[str]) -> str:
    """Why a worker ended badly: its exit status or signal, then its last error line."""
    if returncode < 0:
        reason = f"{what} was killed by signal {-returncode}."
    else:
        reason = f"{what} exited with status {returncode}."
    errors = [line for line in last_lines if "error" in line.lower()]
    detail = (errors or list(last_lines) or [""])[-1]
    return f"{reason} {detail}".strip()

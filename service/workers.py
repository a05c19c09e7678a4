"""What every worker process of the server shares: it dies with the server, and a crash is told
by its last error line (its S3 flags and environment come from ``storage.environment``).

Jobs (``service.jobs``) and adapter trainings (``service.training``) each run in a process of
their own, so that a crash, a runaway allocation or a kill takes down that one piece of work and
never the server.
"""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Sequence

__all__ = ["crash_reason", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGKILL the child when the server process ends.

    A restarted server can then fail every piece of work it finds unfinished: none of it can still
    be writing.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def crash_reason(what: str, returncode: int, last_lines: Sequence[str]) -> str:
    """Why a worker ended badly: its exit status or signal, then its last error line."""
    if returncode < 0:
        reason = f"{what} was killed by signal {-returncode}."
    else:
        reason = f"{what} exited with status {returncode}."
    errors = [line for line in last_lines if "error" in line.lower()]
    detail = (errors or list(last_lines) or [""])[-1]
    return f"{reason} {detail}".strip()

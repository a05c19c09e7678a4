"""The server's worker processes and the threads that watch them (``Workers``): each process dies
with the server, and a crash is told by its last error line (its S3 flags and environment come
from ``storage.environment``).

Jobs (``service.jobs``) and adapter trainings (``service.training``) each run in a process of
their own, so that a crash, a runaway allocation or a kill takes down that one piece of work and
never the server.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

from storage.environment import worker_environment
from storage.settings import S3Settings

__all__ = ["Workers", "crash_reason", "die_with_parent"]

_LOGGER = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STDERR_LINES_KEPT = 20
# What pipeline.run logs as it goes (transforms.moderation.ReportProgress).
_PROGRESS = re.compile(r"Progress: (\d+) of (\d+) manifest lines done")


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


class Workers:
    """The pieces of work under way, by key (a job id, a version ARN): the thread that watches
    each, and its worker process while it runs. Stderr lines are logged at DEBUG on ``logger``."""

    def __init__(self, logger: logging.Logger = _LOGGER) -> None:
        self._logger = logger
        self._watchers: dict[str, threading.Thread] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._progress: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def watch(self, key: str, name: str, target: Callable[[], None]) -> None:
        """Runs ``target`` in a daemon thread called ``name``, the one ``wait(key)`` waits for;
        the thread is forgotten when it ends, so a long-lived server keeps none of them."""

        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    if self._watchers.get(key) is threading.current_thread():
                        del self._watchers[key]

        watcher = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._watchers[key] = watcher
        watcher.start()

    def wait(self, key: str, timeout: float | None = None) -> None:
        """Waits for the watcher of ``key`` to end (at once if there is none)."""
        with self._lock:
            watcher = self._watchers.get(key)
        if watcher is not None:
            watcher.join(timeout)

    def start(self, key: str, command: Sequence[str], s3: S3Settings) -> subprocess.Popen:
        """Starts the worker process of ``key``, with S3 credentials in its environment and its
        stderr piped; OSError if it cannot start."""
        process = subprocess.Popen(
            list(command),
            env=worker_environment(s3),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=die_with_parent,
        )
        with self._lock:
            self._processes[key] = process
        return process

    def finish(self, key: str, label: str) -> tuple[int, list[str]]:
        """Follows the started process of ``key`` to its end: its exit status and last stderr
        lines (each line logged as ``<label>: <line>``)."""
        with self._lock:
            process = self._processes[key]
        try:
            last_lines: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
            for line in process.stderr:
                last_lines.append(line.rstrip())
                self._logger.debug("%s: %s", label, line.rstrip())
                progress = _PROGRESS.search(line)
                if progress:
                    with self._lock:
                        self._progress[key] = (int(progress[1]), int(progress[2]))
            return process.wait(), list(last_lines)
        finally:
            with self._lock:
                self._processes.pop(key, None)
                self._progress.pop(key, None)

    def progress(self, key: str) -> tuple[int, int] | None:
        """``(lines done, lines in all)`` as the running process of ``key`` last reported it."""
        with self._lock:
            return self._progress.get(key)

    def process_id(self, key: str) -> int | None:
        """The pid of the running process of ``key``, or None."""
        with self._lock:
            process = self._processes.get(key)
        return process.pid if process else None

    def kill_all(self) -> None:
        """Kills every worker process still running."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            process.kill()

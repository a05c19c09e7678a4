"""The server's background upkeep of human loops, every few seconds (``--review_sweep_secs``).

Each sweep frees the task slots of claims past their time limit, fails the loops past their
flow's TaskAvailabilityLifetimeInSeconds (``Expired``), and writes the ``output.json`` of every
Completed loop that has none yet (``service.review.output``), so that output is written even when
the server stopped between a loop's last answer and its output. A failed write is logged and
tried again at the next sweep.
"""

from __future__ import annotations

import logging
import threading

from service.review.loops import HumanLoopStore
from service.review.output import write_output
from storage.settings import S3Settings

__all__ = ["DEFAULT_SWEEP_SECS", "ReviewSweeper"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_SWEEP_SECS = 5.0


class ReviewSweeper:
    """Sweeps ``loops`` every ``interval`` seconds in a daemon thread, from ``start`` to
    ``stop``; ``sweep`` runs one sweep now."""

    def __init__(
        self,
        loops: HumanLoopStore,
        s3_settings: S3Settings | None = None,
        *,
        interval: float = DEFAULT_SWEEP_SECS,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"--review_sweep_secs must be positive, not {interval}")
        self.loops = loops
        self.s3_settings = s3_settings
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sweeping = threading.Lock()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="review-sweeper", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Ends the thread, after the sweep in progress (if any)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def sweep(self) -> list[str]:
        """One sweep; returns the URIs of the outputs it wrote."""
        with self._sweeping:
            released = self.loops.release_expired_claims()
            if released:
                _LOGGER.info("Released %d expired review claim(s)", released)
            for loop in self.loops.expire():
                _LOGGER.info("Human loop %s expired unfinished", loop.name)
            written = []
            for loop in self.loops.completed_without_output():
                try:
                    uri = write_output(loop, None, self.s3_settings)
                except Exception:
                    _LOGGER.exception(
                        "Writing the output of human loop %s failed; trying again later", loop.name
                    )
                    continue
                self.loops.set_output(loop.name, uri)
                written.append(uri)
                _LOGGER.info("Wrote the output of human loop %s to %s", loop.name, uri)
            return written

    def _run(self) -> None:
        # The first sweep at once: it writes what a previous server left unwritten.
        while True:
            try:
                self.sweep()
            except Exception:
                _LOGGER.exception("A review sweep failed")
            if self._stop.wait(self.interval):
                return

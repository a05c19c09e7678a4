"""The two ways a scheduled run fails as a whole, each with its own exit status."""

from __future__ import annotations

__all__ = ["ScheduleError", "UsageError"]


class UsageError(ValueError):
    """The command cannot run as given (exit status 2); the message names the flag to fix."""


class ScheduleError(RuntimeError):
    """The listing or the state failed (exit status 1)."""

"""One line, one outcome: an unexpected exception on a line becomes that line's error entry.

Steps that handle one line at a time run under Beam's ``with_exception_handling``; what lands on
their dead-letter output is turned here into an ``INTERNAL_ERROR`` naming the exception's class
and message (never its traceback), so that one hostile line among millions costs only itself.
"""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam

from transforms.records import ErrorCode, ManifestError, ManifestLine

__all__ = ["MAX_MESSAGE_CHARS", "ErrorsFromDeadLetters", "internal_error"]

# An exception's text may quote the whole line (64 KiB); the summary gets its start.
MAX_MESSAGE_CHARS = 1000


def internal_error(
    line_number: int, stage: str, exc_repr: str, source_ref: str | None = None
) -> ManifestError:
    """The error entry of a line whose ``stage`` raised; ``exc_repr`` is ``repr(exception)``,
    which carries the class and the message."""
    message = f"Unexpected error while {stage}: {exc_repr}"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "\u2026"
    return ManifestError(line_number, ErrorCode.INTERNAL_ERROR, message, source_ref)


class ErrorsFromDeadLetters(beam.PTransform):
    """Dead letters ``(element, (type, repr, traceback))`` -> ``ManifestError``s.

    ``line_of(element)`` finds the element's manifest line: a ``ManifestLine``, or the line
    number alone where the line is not parsed yet.
    """

    def __init__(self, stage: str, line_of: Callable[[object], ManifestLine | int]):
        super().__init__()
        self._stage = stage
        self._line_of = line_of

    def expand(self, dead_letters):
        stage, line_of = self._stage, self._line_of

        def to_error(dead_letter) -> ManifestError:
            element, (_type, exc_repr, _traceback) = dead_letter
            line = line_of(element)
            if isinstance(line, ManifestLine):
                return internal_error(line.line_number, stage, exc_repr, line.source_ref)
            return internal_error(line, stage, exc_repr)

        return dead_letters | "ToErrors" >> beam.Map(to_error)

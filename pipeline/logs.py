"""One logging set-up for every command: the project's INFO lines and everyone's warnings."""

from __future__ import annotations

import logging

__all__ = ["PROJECT_PACKAGES", "configure_logging"]

# Every top-level package of the project, whose INFO lines a command shows.
PROJECT_PACKAGES = (
    "storage",
    "model",
    "transforms",
    "pipeline",
    "training",
    "scheduler",
    "service",
)


class _DropKnownNoise(logging.Filter):
    """Beam's warnings that say nothing to a user: memory cannot be measured without torch, and
    its own dead-letter wrapper declares one output tag of a step and not the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Resource module is not available")
            or "requested in with_outputs() but not declared in type hints" in message
        )


class _ProjectHandler(logging.StreamHandler):
    """The handler ``configure_logging`` puts on the root logger (once, however often called)."""


def _is_basic_format(handler: logging.Handler) -> bool:
    return getattr(handler.formatter, "_fmt", None) == logging.BASIC_FORMAT


def configure_logging(level: int = logging.INFO) -> None:
    """Logs to stderr through the root logger: the project's packages at ``level``, other
    libraries (Beam, TensorFlow, botocore) at their own levels, WARNING by default."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # The handler that logging.basicConfig() adds (a module-level logging.warning() call
        # while Beam is imported does that) would print every line a second time.
        if type(handler) is logging.StreamHandler and _is_basic_format(handler):
            root.removeHandler(handler)
    if not any(isinstance(handler, _ProjectHandler) for handler in root.handlers):
        handler = _ProjectHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler.addFilter(_DropKnownNoise())
        root.addHandler(handler)
    for name in PROJECT_PACKAGES:
        logging.getLogger(name).setLevel(level)

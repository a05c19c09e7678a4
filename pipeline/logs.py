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
    """Beam warns that memory cannot be measured when torch is missing; it is not our concern."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Resource module is not available")


class _ProjectHandler(logging.StreamHandler):
    """The handler ``configure_logging`` puts on the root logger (once, however often called)."""


def configure_logging(level: int = logging.INFO) -> None:
    """Logs to stderr through the root logger: the project's packages at ``level``, other
    libraries (Beam, TensorFlow, botocore) at their own levels, WARNING by default."""
    root = logging.getLogger()
    if not any(isinstance(handler, _ProjectHandler) for handler in root.handlers):
        handler = _ProjectHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler.addFilter(_DropKnownNoise())
        root.addHandler(handler)
    for name in PROJECT_PACKAGES:
        logging.getLogger(name).setLevel(level)

"""Where a training may read images from: ``--allowed_source_prefixes``, as a job's.

The server runs trainings with the prefixes of its allowed locations, so that a manifest line
cannot make it read an image elsewhere (another bucket, the server's own disk).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from transforms.records import ErrorCode, ImageProblem

__all__ = ["add_allowed_sources_argument", "allowed_prefixes", "check_source_allowed"]


def add_allowed_sources_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed_source_prefixes",
        default=None,
        help="Comma-separated URI prefixes (e.g. s3://bucket/images/) that the manifests' "
        "source-refs must start with; other lines are left out as images that cannot be read. "
        "Default: any.",
    )


def allowed_prefixes(value: str | None) -> tuple[str, ...] | None:
    """The prefixes of ``--allowed_source_prefixes`` (None: any source)."""
    if value is None:
        return None
    return tuple(prefix.strip() for prefix in value.split(",") if prefix.strip())


def check_source_allowed(source_ref: str, prefixes: Sequence[str] | None) -> None:
    """ImageProblem (ACCESS_DENIED) unless ``source_ref`` starts with one of ``prefixes``."""
    if prefixes is not None and not source_ref.startswith(tuple(prefixes)):
        raise ImageProblem(
            ErrorCode.ACCESS_DENIED,
            "This training may not read images there; allowed: "
            + (", ".join(prefixes) or "none")
            + ".",
        )

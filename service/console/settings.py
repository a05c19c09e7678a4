"""What the console is configured with (``python -m service.server`` flags of the console group)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass

from service.preflight import is_allowed

__all__ = ["ConsoleSettings", "console_settings"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console writes, its caches and limits, and how its sessions behave."""

    storage_bucket: str
    storage_prefix: str  # without a trailing slash; "" for the bucket's root
    cache_dir: str
    cache_bytes: int = 256 * 1024 * 1024
    session_seconds: float = 12 * 3600
    secure_cookies: bool = False
    max_upload_images: int = 100
    max_upload_bytes: int = 15 * 1024 * 1024

    def key(self, *parts: str) -> str:
        """The S3 key of ``parts`` under the console's prefix."""
        return "/".join(part.strip("/") for part in (self.storage_prefix, *parts) if part)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.storage_bucket}/{self.key(*parts)}"


def console_settings(
    args: argparse.Namespace, allowed: Collection[str] | None
) -> ConsoleSettings | None:
    """The console's settings from the server's flags; None with ``--no_console``, or when
    ``--console_storage`` is missing where it cannot be derived (every bucket allowed).

    ValueError when ``--console_storage`` lies outside ``--allowed_locations``.
    """
    if args.no_console:
        return None
    storage = args.console_storage
    if storage is None:
        if not allowed:
            _LOGGER.warning(
                "No console: with --allowed_locations='*' give --console_storage=BUCKET/PREFIX, "
                "where the console keeps uploads, job outputs and adapters"
            )
            return None
        storage = next(iter(allowed)).rstrip("/") + "/console"
    storage = storage.removeprefix("s3://").strip("/")
    bucket, _, prefix = storage.partition("/")
    if not bucket:
        raise ValueError(f"--console_storage {args.console_storage!r} names no bucket")
    if not is_allowed(bucket, f"{prefix}/" if prefix else "", allowed):
        raise ValueError(
            f"--console_storage s3://{storage} is outside --allowed_locations: the console could "
            "not read back what it writes there"
        )
    cache_dir = args.console_cache_dir or os.path.join(
        os.path.dirname(os.path.abspath(args.registry)), "thumbnails"
    )
    return ConsoleSettings(
        storage_bucket=bucket,
        storage_prefix=prefix,
        cache_dir=cache_dir,
        cache_bytes=args.console_cache_mb * 1024 * 1024,
        session_seconds=args.console_session_hours * 3600,
        secure_cookies=args.behind_tls,
        max_upload_images=args.max_upload_images,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )

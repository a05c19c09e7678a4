"""How a process started for a job or a training reaches S3: flags for the endpoint, the
environment for the credentials (secrets never go on a command line)."""

from __future__ import annotations

import os

from storage.settings import S3Settings

__all__ = ["s3_flags", "worker_environment"]


def worker_environment(s3: S3Settings) -> dict[str, str]:
    """This process's environment plus the S3 credentials."""
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
    """The ``--s3_*`` flags (no credentials) that point a worker at the same S3."""
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

"""Manifest versions on S3: listing them, reading their current ETag, and the names they give."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from scheduler.errors import UsageError
from storage.outputs import join

__all__ = [
    "ManifestVersion",
    "current_version",
    "job_name",
    "list_manifests",
    "local_output",
    "relative_name",
    "split_s3_uri",
]

_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9_.\-]+")
_BUCKET = re.compile(r"[0-9A-Za-z.\-_]{3,255}")
_MAX_JOB_NAME = 64


@dataclasses.dataclass(frozen=True)
class ManifestVersion:
    """One version of a manifest: ``(bucket, key, ETag)``, plus its VersionId when versioned."""

    bucket: str
    key: str
    etag: str  # without S3's quotes
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _etag(value: str) -> str:
    return value.strip().strip('"')


def split_s3_uri(uri: str, flag: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as ``(bucket, prefix)``; UsageError naming ``flag`` otherwise."""
    if not uri.startswith("s3://"):
        raise UsageError(f"{flag} must be an s3:// URI (s3://bucket/prefix), not {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(f"{flag} {uri!r} does not start with a valid bucket name")
    return bucket, prefix


def list_manifests(
    s3_client: Any, bucket: str, prefix: str, suffix: str, *, page_size: int = 1000
) -> list[ManifestVersion]:
    """The objects under ``prefix`` whose key ends with ``suffix``, in key order, every page read.

    "Folder" markers (keys ending in ``/``) are never manifests.
    """
    found = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for entry in page.get("Contents", ()):
            key = entry["Key"]
            if key.endswith("/") or not key.endswith(suffix):
                continue
            found.append(ManifestVersion(bucket, key, _etag(entry["ETag"])))
    return sorted(found, key=lambda manifest: manifest.key)


def current_version(s3_client: Any, manifest: ManifestVersion) -> ManifestVersion | None:
    """The manifest as it is now (HEAD): its current ETag and, in a versioned bucket, VersionId.

    None when it was deleted since the listing. The ETag can differ from the listing's when it
    was overwritten meanwhile: the job is then for the newer version, which is what it reads.
    """
    from botocore.exceptions import ClientError

    try:
        head = s3_client.head_object(Bucket=manifest.bucket, Key=manifest.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    version_id = head.get("VersionId")
    # "null" is the version of an object written while versioning was off or suspended.
    if version_id in ("", "null"):
        version_id = None
    return ManifestVersion(manifest.bucket, manifest.key, _etag(head["ETag"]), version_id)


def relative_name(manifest: ManifestVersion, prefix: str, suffix: str) -> str:
    """The manifest's key under the listed prefix, without the suffix: ``daily/batch``."""
    name = manifest.key[len(prefix) :] if manifest.key.startswith(prefix) else manifest.key
    name = name.lstrip("/")
    if suffix and name.endswith(suffix) and len(name) > len(suffix):
        name = name[: -len(suffix)]
    return name


def job_name(job_name_prefix: str, name: str, etag: str) -> str:
    """``<prefix>-<name>-<ETag[:8]>``, in JobName's characters and at most 64 of them."""
    tail = f"-{_NAME_CHARACTERS.sub('-', etag)[:8]}"
    head = f"{job_name_prefix}-"
    room = _MAX_JOB_NAME - len(head) - len(tail)
    middle = _NAME_CHARACTERS.sub("-", name).strip("-")[:room] or "manifest"
    return head + middle + tail


def local_output(output: str, name: str, etag: str) -> str:
    """Where a local run writes: ``<output>/<name>-<ETag[:12]>``."""
    return join(output, f"{name}-{_NAME_CHARACTERS.sub('-', etag)[:12]}")

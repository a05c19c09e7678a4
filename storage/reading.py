"""Opening a file or object for reading, at a given S3 object version where one is asked for."""

from __future__ import annotations

import io
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from storage.settings import S3Settings

__all__ = [
    "VERSION_QUERY",
    "exists",
    "open_for_reading",
    "split_s3_uri",
    "split_versioned_uri",
    "versioned_uri",
]

_BUFFER_BYTES = 1 << 20

# ``s3://bucket/key?versionId=ID`` names one version of an object, where a command takes several
# files in one flag (adapter training's manifests).
VERSION_QUERY = "?versionId="


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def versioned_uri(uri: str, version: str | None) -> str:
    """``uri`` naming that S3 object ``version`` (``uri`` itself without one)."""
    return f"{uri}{VERSION_QUERY}{version}" if version else uri


def split_versioned_uri(uri: str) -> tuple[str, str | None]:
    """``s3://bucket/key?versionId=ID`` -> ``(s3://bucket/key, ID)``; others -> ``(uri, None)``."""
    if uri.startswith("s3://") and VERSION_QUERY in uri:
        base, _, version = uri.rpartition(VERSION_QUERY)
        return base, version or None
    return uri, None


def exists(path: str, *, version: str | None = None, s3: S3Settings | None = None) -> bool:
    """Whether ``path`` (at S3 object ``version``, when given) can be found."""
    if version is None:
        if s3 is not None:
            s3.ensure_filesystems()
        return FileSystems.exists(path)
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(path)
    try:
        (s3 or S3Settings()).client().head_object(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion"):
            return False
        raise
    return True


class _Body(io.RawIOBase):
    """A boto3 response body as a raw stream, so that ``io.BufferedReader`` can give it an
    efficient ``readline`` (botocore's own reads a byte at a time)."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def open_for_reading(
    path: str, *, version: str | None = None, s3: S3Settings | None = None
) -> BinaryIO:
    """A binary stream of ``path`` (local, ``s3://``, ``gs://``); with ``version``, that S3
    object version (Beam's FileSystems read only the latest one). ``s3``: the settings to read
    ``s3://`` with where Beam's FileSystems have none."""
    if version is None:
        if s3 is not None:
            s3.ensure_filesystems()
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if not path.startswith("s3://"):
        raise ValueError(f"an object version applies to s3:// objects only, not {path}")
    bucket, key = split_s3_uri(path)
    response = (s3 or S3Settings()).client().get_object(Bucket=bucket, Key=key, VersionId=version)
    return io.BufferedReader(_Body(response["Body"]), _BUFFER_BYTES)

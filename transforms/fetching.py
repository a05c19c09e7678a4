"""Reading an image's bytes from S3, GCS or local disk, checking that all of them arrived.

``s3://`` objects are read with a shared boto3 client (Beam's own S3 filesystem builds a new
client for every file it opens, which costs more than the download); ``gs://`` and local paths
go through Beam's FileSystems. Storage errors come in many types: each becomes an
``ImageProblem`` with the error code it means, never an exception that stops the job.
"""

from __future__ import annotations

import errno
import http.client
import io
import time
from collections.abc import Callable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from storage.reading import split_s3_uri
from transforms.records import ErrorCode, ImageProblem

__all__ = ["MAX_IMAGE_BYTES", "READ_ATTEMPTS", "ShortRead", "fetch_image_bytes"]

MAX_IMAGE_BYTES = 15 * 1024 * 1024  # Rekognition's limit for images in S3


class ShortRead(Exception):
    """Fewer bytes arrived than the store said the object holds (a connection cut mid-body)."""

    def __init__(self, received: int, expected: int):
        super().__init__(f"short read: {received} of {expected} bytes arrived")


def fetch_image_bytes(path: str, max_bytes: int = MAX_IMAGE_BYTES, s3_client=None) -> bytes:
    """The bytes of ``path``, refusing objects over ``max_bytes`` before downloading them.

    ``s3_client`` (boto3) reads ``s3://`` paths; without one they go through Beam's FileSystems.
    Where the store says how large the object is, fewer bytes than that is a short read: the
    read is tried again (``READ_ATTEMPTS`` times in all, with backoff) before it becomes
    IMAGE_READ_FAILED, so that a dropped connection never passes for a truncated image.
    """
    if s3_client is not None and path.startswith("s3://"):
        read = lambda: _read_s3_object(s3_client, path, max_bytes)  # noqa: E731
    else:
        read = lambda: _read_file(path, max_bytes)  # noqa: E731
    try:
        data = _with_retries(read)
    except ImageProblem:
        raise
    except Exception as exc:  # storage errors come in many types: classify, never crash
        raise _storage_problem(path, exc) from exc
    if len(data) > max_bytes:
        raise ImageProblem(ErrorCode.IMAGE_TOO_LARGE, _too_large(None, max_bytes))
    return data


# A short read or a connection lost mid-body is tried again; status errors (503 SlowDown, 500)
# are retried by boto3 itself before they reach here, and a missing object is not retried.
READ_ATTEMPTS = 4
_BACKOFF_SECS = 0.2


def _with_retries(read: Callable[[], bytes]) -> bytes:
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return read()
        except Exception as exc:
            if not _is_interrupted_read(exc):
                raise
            if attempt == READ_ATTEMPTS:
                raise ImageProblem(
                    ErrorCode.IMAGE_READ_FAILED,
                    f"The image could not be read in {READ_ATTEMPTS} tries: "
                    f"{type(exc).__name__}: {exc}",
                ) from exc
            time.sleep(_BACKOFF_SECS * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _is_interrupted_read(exc: Exception) -> bool:
    from botocore.exceptions import (
        ConnectionClosedError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import ProtocolError

    return isinstance(
        exc,
        ShortRead
        | ConnectionClosedError
        | IncompleteReadError
        | ReadTimeoutError
        | ResponseStreamingError
        | ProtocolError
        | ConnectionError
        | http.client.IncompleteRead,
    )


def _read_s3_object(client, path: str, max_bytes: int) -> bytes:
    bucket, key = split_s3_uri(path)
    response = client.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    try:
        size = response.get("ContentLength")
        if size is not None and size > max_bytes:  # known before the body is read
            raise ImageProblem(ErrorCode.IMAGE_TOO_LARGE, _too_large(size, max_bytes))
        data = body.read(max_bytes + 1)
    finally:
        body.close()
    # botocore checks the length only when a read is unbounded: compare here.
    if size is not None and len(data) < size:
        raise ShortRead(len(data), size)
    return data


def _read_file(path: str, max_bytes: int) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        size = _size_of(stream)
        if size is not None and size > max_bytes:
            raise ImageProblem(ErrorCode.IMAGE_TOO_LARGE, _too_large(size, max_bytes))
        data = stream.read(max_bytes + 1)
    if size is not None and len(data) < size:
        raise ShortRead(len(data), size)
    return data


def _size_of(stream) -> int | None:
    try:
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        return size
    except (OSError, ValueError, AttributeError):
        return None


def _too_large(size: int | None, max_bytes: int) -> str:
    actual = f"{size} bytes" if size is not None else "larger"
    return f"The image is {actual}; the limit is {max_bytes} bytes ({max_bytes // 2**20} MB)."


def _storage_problem(path: str, exc: Exception) -> ImageProblem:
    status = getattr(exc, "code", None)
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        status = {"NoSuchKey": 404, "NoSuchBucket": 404, "AccessDenied": 403}.get(code, code)
        status = int(status) if str(status).isdigit() else status
    text = str(exc)
    if (
        isinstance(exc, FileNotFoundError)
        or getattr(exc, "errno", None) == errno.ENOENT
        or status == 404
    ):
        return ImageProblem(ErrorCode.IMAGE_NOT_FOUND, f"The image does not exist: {path}")
    if (
        isinstance(exc, PermissionError)
        or status == 403
        or "AccessDenied" in text
        or "Forbidden" in text
    ):
        return ImageProblem(ErrorCode.ACCESS_DENIED, f"Access to the image was denied: {path}")
    if isinstance(exc, IsADirectoryError):
        return ImageProblem(ErrorCode.IMAGE_NOT_FOUND, f"The path is a directory: {path}")
    return ImageProblem(
        ErrorCode.IMAGE_READ_FAILED, f"The image could not be read: {type(exc).__name__}: {text}"
    )

"""Writing output files to S3, GCS or local disk so that a file appears whole or not at all.

Reads go through Beam's FileSystems everywhere. Writes to ``s3://`` go through s3fs instead,
because Beam's S3 filesystem cannot write a 0-byte object (an empty results file must work) nor
set server-side encryption; local writes go to a temporary name renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

from storage.settings import S3Settings

__all__ = ["OutputStore", "join"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_s3(path: str) -> bool:
    return path.startswith("s3://")


def _is_local(path: str) -> bool:
    return "://" not in path


class OutputStore:
    """Writes and removes output files; picklable, so DoFns can carry one."""

    def __init__(self, s3: S3Settings | None = None, *, kms_key_id: str | None = None):
        self._s3_settings = s3 or S3Settings()
        # Objects written to S3 are encrypted with this KMS key (SSE-KMS) when it is set.
        self._kms_key_id = kms_key_id
        self._s3fs = None

    def __getstate__(self):
        return {
            "_s3_settings": self._s3_settings,
            "_kms_key_id": self._kms_key_id,
            "_s3fs": None,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        # Unpickled on a worker: its FileSystems read the temporary parts this store writes.
        self._s3_settings.ensure_filesystems()

    @property
    def s3(self):
        if self._s3fs is None:
            import s3fs

            settings = self._s3_settings
            client_kwargs = {}
            if settings.endpoint_url:
                client_kwargs["endpoint_url"] = settings.endpoint_url
            if settings.region_name:
                client_kwargs["region_name"] = settings.region_name
            if settings.verify is not None:
                client_kwargs["verify"] = settings.verify
            encryption = (
                {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms_key_id}
                if self._kms_key_id
                else None
            )
            self._s3fs = s3fs.S3FileSystem(
                s3_additional_kwargs=encryption,
                key=settings.access_key_id,
                secret=settings.secret_access_key,
                token=settings.session_token,
                use_ssl=not settings.disable_ssl,
                client_kwargs=client_kwargs,
                skip_instance_cache=True,
            )
        return self._s3fs

    @contextlib.contextmanager
    def open_write(self, path: str) -> Iterator[BinaryIO]:
        """A binary file for ``path`` that becomes visible only when the block ends cleanly."""
        if _is_s3(path):
            # An S3 object appears only when its upload completes. fsspec's files commit what
            # they hold whenever they close, even when the block raised: discard the upload
            # then (aborting a multipart one), or a partial object would replace the old one.
            stream = self.s3.open(path, "wb")
            try:
                yield stream
            except BaseException:
                with contextlib.suppress(Exception):  # the block's own error is the one to see
                    stream.discard()
                stream.closed = True  # so that nothing commits it later, when it is collected
                raise
            stream.close()
        elif _is_local(path):
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".writing-")
            try:
                with os.fdopen(handle, "wb") as stream:
                    yield stream
                os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates files private
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(temporary)
                raise
        else:
            # GCS and other object stores commit an upload whenever its stream closes, even after
            # an error (and when it is collected): write under another name, then rename.
            temporary = join(os.path.dirname(path.rstrip("/")), f".writing-{uuid.uuid4().hex}")
            stream = FileSystems.create(temporary)
            try:
                yield stream
                stream.close()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.close()
                    FileSystems.delete([temporary])
                raise
            FileSystems.rename([temporary], [path])

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.open_write(path) as stream:
            stream.write(data)

    def delete_file(self, path: str) -> None:
        """Removes one file or object; a missing one is fine, any other failure raises."""
        if _is_s3(path):
            try:
                self.s3.rm_file(path)
            except FileNotFoundError:
                pass
        elif _is_local(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        elif FileSystems.exists(path):
            FileSystems.delete([path])

    def delete_tree(self, path: str) -> None:
        """Removes a folder or prefix and everything under it; a missing one is fine."""
        if _is_s3(path):
            if self.s3.exists(path):
                self.s3.rm(path, recursive=True)
        elif _is_local(path):
            shutil.rmtree(path, ignore_errors=True)
        elif FileSystems.exists(path):
            FileSystems.delete([path])


def join(folder: str, name: str) -> str:
    """``folder/name`` for local paths and URIs alike."""
    return folder.rstrip("/") + "/" + name if not _is_local(folder) else os.path.join(folder, name)

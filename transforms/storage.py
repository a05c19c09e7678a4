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
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

__all__ = ["S3Settings", "OutputStore", "add_s3_arguments", "s3_settings_from_arguments"]


class S3Settings(NamedTuple):
    """Connection settings for S3, taken from Beam's own ``--s3_*`` options (or the environment)."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region_name: str | None = None
    verify: bool | str | None = None
    disable_ssl: bool = False

    @classmethod
    def from_options(cls, options: PipelineOptions) -> S3Settings:
        s3 = options.view_as(S3Options)
        return cls(
            endpoint_url=s3.s3_endpoint_url,
            access_key_id=s3.s3_access_key_id,
            secret_access_key=s3.s3_secret_access_key,
            session_token=s3.s3_session_token,
            region_name=s3.s3_region_name,
            verify=s3.s3_verify,
            disable_ssl=bool(s3.s3_disable_ssl),
        )

    def pipeline_options(self) -> PipelineOptions:
        """Beam's ``--s3_*`` options with these settings."""
        flags = {
            "s3_endpoint_url": self.endpoint_url,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            "s3_session_token": self.session_token,
            "s3_region_name": self.region_name,
            "s3_verify": self.verify,
            "s3_disable_ssl": self.disable_ssl or None,
        }
        return PipelineOptions([], **{k: v for k, v in flags.items() if v is not None})

    def ensure_filesystems(self) -> None:
        """Gives Beam's FileSystems these settings if the worker has set none.

        A worker that Beam's boot program starts (Dataflow, a cluster's SDK container) sets
        FileSystems' options from the pipeline's; one that ``worker_pool_main`` starts by itself
        does not, and ``s3://`` paths then fail with "Must provide one of client or options".
        """
        if getattr(FileSystems, "_pipeline_options", None) is None:
            FileSystems.set_options(self.pipeline_options())

    def client(self, max_pool_connections: int = 10):
        """A boto3 S3 client with these settings; thread-safe, so one serves many threads."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=self.region_name,
            verify=self.verify,
            use_ssl=not self.disable_ssl,
            config=Config(
                max_pool_connections=max_pool_connections,
                retries={"mode": "standard"},
                # Checksums of whole images cost CPU on every read; TLS already protects them.
                response_checksum_validation="when_required",
            ),
        )


def add_s3_arguments(parser) -> None:
    """Beam's own ``--s3_*`` flags on a command's argparse parser, so that its ``s3://`` files are
    read and written as the pipeline's are."""
    S3Options._add_argparse_args(
        parser.add_argument_group(
            "S3 (Beam's S3Options; unset ones come from the usual AWS environment)"
        )
    )


def s3_settings_from_arguments(args, *, set_filesystems: bool = True) -> S3Settings:
    """The S3 settings of parsed ``add_s3_arguments`` flags; with ``set_filesystems``, Beam's
    FileSystems (which read ``s3://`` manifests) use them too."""
    flags = {name: value for name, value in vars(args).items() if name.startswith("s3_")}
    options = PipelineOptions([], **{k: v for k, v in flags.items() if v is not None})
    if set_filesystems:
        FileSystems.set_options(options)
    return S3Settings.from_options(options)


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
            # An S3 object appears only when its upload completes; on error s3fs aborts it.
            with self.s3.open(path, "wb") as stream:
                yield stream
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
            # GCS and other object stores commit an upload when the stream closes.
            with FileSystems.create(path) as stream:
                yield stream

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.open_write(path) as stream:
            stream.write(data)

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

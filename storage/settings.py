"""S3 connection settings from Beam's own ``--s3_*`` flags, and those flags on any command."""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

__all__ = ["S3Settings", "add_s3_arguments", "s3_settings_from_arguments"]


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

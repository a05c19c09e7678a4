"""The Rekognition-compatible API server: ``python -m service.server --port 8642 ...``.

Point the real clients at it with ``--endpoint-url`` / ``endpoint_url``:
StartMediaAnalysisJob, GetMediaAnalysisJob, ListMediaAnalysisJobs and DetectModerationLabels,
and the Custom Moderation project API (CreateProject, DescribeProjects, DeleteProject,
CreateProjectVersion, DescribeProjectVersions, DeleteProjectVersion) that trains adapters,
signed with SigV4 by one of the configured key pairs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.logs import configure_logging
from service.flags import (
    access_keys,
    allowed_locations,
    dataflow_settings,
    flag_parser,
    runner_flags,
)

__all__ = ["build_server", "main"]

_LOGGER = logging.getLogger(__name__)


def build_server(argv: Sequence[str]):
    """The HTTP server for these flags (not yet serving), with its API."""
    import boto3

    from model.backbone import Backbone
    from model.moderation_model import load_moderation_model, moderation_model_version
    from service.api import RekognitionApi
    from service.jobs import JobRunner, JobSettings
    from service.projects import ProjectRegistry
    from service.registry import JobRegistry
    from service.training import TrainingRunner
    from storage.settings import S3Settings

    args = flag_parser().parse_args(argv)
    keys = access_keys(args)
    allowed = allowed_locations(args)
    s3_settings = S3Settings(endpoint_url=args.s3_endpoint_url, region_name=args.s3_region_name)
    registry = JobRegistry(args.registry, max_active_jobs=args.max_active_jobs)
    settings = JobSettings(
        s3=s3_settings,
        components=args.components,
        backbone=args.backbone,
        pipeline_args=runner_flags(args),
        allowed_locations=allowed,
        dataflow=dataflow_settings(args),
    )
    kms = boto3.client("kms", endpoint_url=args.kms_endpoint_url, region_name=args.s3_region_name)
    s3_client = s3_settings.client()
    projects = ProjectRegistry(
        args.registry,
        region=args.region,
        account_id=args.account_id,
        # What adapters are judged against: DEPRECATED if trained on another base model,
        # EXPIRED if trained on another backbone.
        base_model_version=moderation_model_version(args.components, args.backbone),
        backbone_version=Backbone.version_for(args.backbone),
    )
    runner = JobRunner(registry, settings, s3_client=s3_client, kms_client=kms, projects=projects)
    trainer = TrainingRunner(projects, settings, max_active_trainings=args.max_active_trainings)
    failed = runner.recover()
    if failed:
        _LOGGER.warning("Marked %d unfinished job(s) of the previous server FAILED", len(failed))
    failed = trainer.recover()
    if failed:
        _LOGGER.warning(
            "Marked %d unfinished training(s) of the previous server TRAINING_FAILED", len(failed)
        )
    registry.purge()
    api = RekognitionApi(
        access_keys=keys,
        runner=runner,
        trainer=trainer,
        s3_client=s3_client,
        load_model=lambda: load_moderation_model(
            args.components, backbone=args.backbone, s3=s3_settings
        ),
        allowed_locations=allowed,
    )
    max_body = args.max_body_bytes

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body:
                # Read the body away (without keeping it) so the client gets the answer, not a
                # broken connection halfway through its upload.
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                self._send(
                    413,
                    {"Content-Type": "application/x-amz-json-1.1"},
                    json.dumps(
                        {
                            "__type": "SerializationException",
                            "Message": f"The request body is over {max_body} bytes.",
                            "Code": "SerializationException",
                        }
                    ).encode(),
                )
                self.close_connection = True
                return
            body = self.rfile.read(length)
            path, _, query = self.path.partition("?")
            status, headers, payload = api.handle("POST", path, query, dict(self.headers), body)
            self._send(status, headers, payload)

        def do_GET(self):  # noqa: N802
            status, headers, payload = api.handle("GET", self.path, "", dict(self.headers), b"")
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict, payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", os.urandom(16).hex())
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            _LOGGER.debug("%s - %s", self.address_string(), format % args)

    server = _ApiServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.api = api
    return server


class _ApiServer(ThreadingHTTPServer):
    api = None

    def server_close(self) -> None:
        # Trainings would die with the process anyway; a server closed inside a longer-lived
        # process (tests, an embedding application) must not leave them running.
        if self.api is not None:
            self.api.trainer.stop()
        super().server_close()


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        server = build_server(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    _LOGGER.info("Serving the Rekognition API on http://%s:%s", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as __main__: main() runs from service.server, so that its log
    # lines are the service package's (INFO) rather than __main__'s (WARNING and up only).
    from service.server import main as _main

    sys.exit(_main())

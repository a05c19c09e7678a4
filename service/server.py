"""The Rekognition-compatible API server: ``python -m service.server --port 8642 ...``.

Point the real clients at it with ``--endpoint-url`` / ``endpoint_url``:
StartMediaAnalysisJob, GetMediaAnalysisJob, ListMediaAnalysisJobs and DetectModerationLabels,
and the Custom Moderation project API (CreateProject, DescribeProjects, DeleteProject,
CreateProjectVersion, DescribeProjectVersions, DeleteProjectVersion) that trains adapters,
signed with SigV4 by one of the configured key pairs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.logs import configure_logging
from service.dataflow import DATAFLOW_API

__all__ = ["build_server", "main"]

_LOGGER = logging.getLogger(__name__)

# A 5 MB image travels as about 6.7 MB of base64.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

SUBMIT_TO = ("local", "portable", "dataflow")


def _parser() -> argparse.ArgumentParser:
    from model.backbone import DEFAULT_BACKBONE
    from service.projects import DEFAULT_ACCOUNT_ID, DEFAULT_REGION

    parser = argparse.ArgumentParser(
        prog="python -m service.server",
        description="Serves the Rekognition bulk-analysis, DetectModerationLabels and Custom "
        "Moderation (adapter) API.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on. Default: 127.0.0.1."
    )
    parser.add_argument(
        "--port", type=int, default=8642, help="Port; 0 picks a free one. Default: 8642."
    )
    parser.add_argument(
        "--registry",
        default=os.path.join(
            os.path.expanduser("~"), ".local", "share", "beam-moderation", "jobs.sqlite"
        ),
        help="SQLite file of the job and project registries. "
        "Default: ~/.local/share/beam-moderation/jobs.sqlite.",
    )
    parser.add_argument(
        "--region",
        default=DEFAULT_REGION,
        help=f"Region named in project and adapter ARNs. Default: {DEFAULT_REGION}.",
    )
    parser.add_argument(
        "--account_id",
        default=DEFAULT_ACCOUNT_ID,
        help="12-digit account id named in project and adapter ARNs. "
        f"Default: {DEFAULT_ACCOUNT_ID}.",
    )
    parser.add_argument(
        "--access_keys_file",
        default=None,
        help='JSON file {"access_keys": [{"access_key_id": ..., "secret_access_key": ...}]} of the '
        "key pairs clients sign with. Default: the BEAM_MODERATION_ACCESS_KEYS environment "
        "variable (ID:SECRET,ID2:SECRET2).",
    )
    parser.add_argument(
        "--allowed_locations",
        required=True,
        help="Comma-separated bucket or bucket/prefix entries that jobs and requests may read and "
        "write; '*' allows every bucket. Required.",
    )
    parser.add_argument(
        "--max_active_jobs", type=int, default=4, help="Jobs queued or running at once. Default: 4."
    )
    parser.add_argument(
        "--max_active_trainings",
        type=int,
        default=1,
        help="Adapter trainings running at once; more wait their turn (TRAINING_IN_PROGRESS). "
        "Default: 1.",
    )
    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"Largest request body. Default: {DEFAULT_MAX_BODY_BYTES}.",
    )
    parser.add_argument(
        "--components", default="auto", help="Model components, as for pipeline.run. Default: auto."
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"Backbone, as for pipeline.run. Default: {DEFAULT_BACKBONE}.",
    )
    parser.add_argument(
        "--submit_to",
        choices=SUBMIT_TO,
        default="local",
        help="Where jobs run: local (a pipeline.run process per job on this machine, with the "
        "runner flags of --job_args; DirectRunner unless they name another), portable (the "
        "Beam job endpoint of a Flink or Spark cluster, --job_endpoint), or dataflow (launched "
        "from the Flex Template through Dataflow's API, --dataflow_*). Default: local.",
    )
    parser.add_argument(
        "--job_args",
        default="",
        help="Extra Beam flags for every local or portable job, e.g. '--direct_num_workers=2 "
        "--direct_running_mode=multi_processing', or for a portable endpoint "
        "'--environment_type=EXTERNAL --environment_config=localhost:50000'. Default: none.",
    )
    parser.add_argument(
        "--job_endpoint",
        default=None,
        help="With --submit_to=portable: the job service, host:port (a Flink or Spark job "
        "server). Required there.",
    )
    parser.add_argument(
        "--dataflow_project", default=None, help="With --submit_to=dataflow: the GCP project."
    )
    parser.add_argument(
        "--dataflow_region", default=None, help="With --submit_to=dataflow: the region."
    )
    parser.add_argument(
        "--dataflow_template",
        default=None,
        help="With --submit_to=dataflow: gs:// path of the Flex Template spec that "
        "'gcloud dataflow flex-template build' wrote.",
    )
    parser.add_argument(
        "--dataflow_environment",
        default="{}",
        help="With --submit_to=dataflow: the launch's runtime environment as JSON, e.g. "
        '\'{"maxWorkers": 50, "machineType": "n1-standard-8", "serviceAccountEmail": "..."}\'. '
        "Default: Dataflow's defaults.",
    )
    parser.add_argument(
        "--dataflow_api",
        default=DATAFLOW_API,
        help=f"Dataflow's API root. Default: {DATAFLOW_API}.",
    )
    parser.add_argument(
        "--s3_endpoint_url", default=None, help="S3 endpoint for jobs and images. Default: AWS."
    )
    parser.add_argument(
        "--s3_region_name", default=None, help="S3 region. Default: the AWS environment's."
    )
    parser.add_argument(
        "--kms_endpoint_url", default=None, help="KMS endpoint for KmsKeyId checks. Default: AWS."
    )
    return parser


def _runner_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The Beam flags of local and portable jobs."""
    extra = shlex.split(args.job_args)
    if args.submit_to == "portable":
        if not args.job_endpoint:
            raise SystemExit("error: --submit_to=portable needs --job_endpoint=HOST:PORT")
        return ("--runner=PortableRunner", f"--job_endpoint={args.job_endpoint}", *extra)
    if any(flag.startswith("--runner") for flag in extra):
        return tuple(extra)
    return ("--runner=DirectRunner", *extra)


def _dataflow_settings(args: argparse.Namespace):
    from service.dataflow import DataflowSettings

    if args.submit_to != "dataflow":
        return None
    missing = [
        f"--{name}"
        for name in ("dataflow_project", "dataflow_region", "dataflow_template")
        if not getattr(args, name)
    ]
    if missing:
        raise SystemExit(f"error: --submit_to=dataflow needs {', '.join(missing)}")
    if not args.dataflow_template.startswith("gs://"):
        raise SystemExit("error: --dataflow_template must be a gs:// path")
    try:
        environment = json.loads(args.dataflow_environment)
    except ValueError as exc:
        raise SystemExit(f"error: --dataflow_environment is not JSON: {exc}") from None
    if not isinstance(environment, dict):
        raise SystemExit("error: --dataflow_environment must be a JSON object")
    return DataflowSettings(
        project=args.dataflow_project,
        region=args.dataflow_region,
        template=args.dataflow_template,
        api_root=args.dataflow_api,
        environment=environment,
    )


def build_server(argv: Sequence[str]):
    """The HTTP server for these flags (not yet serving), with its API."""
    import boto3

    from model.backbone import Backbone
    from model.moderation_model import load_moderation_model, moderation_model_version
    from service.api import RekognitionApi
    from service.auth import AccessKeys
    from service.jobs import JobRunner, JobSettings
    from service.projects import ProjectRegistry
    from service.registry import JobRegistry
    from service.training import TrainingRunner
    from storage.settings import S3Settings

    args = _parser().parse_args(argv)
    keys = (
        AccessKeys.from_file(args.access_keys_file)
        if args.access_keys_file
        else AccessKeys.from_environment()
    )
    allowed = (
        None
        if args.allowed_locations.strip() == "*"
        else [entry.strip() for entry in args.allowed_locations.split(",") if entry.strip()]
    )
    s3_settings = S3Settings(endpoint_url=args.s3_endpoint_url, region_name=args.s3_region_name)
    registry = JobRegistry(args.registry, max_active_jobs=args.max_active_jobs)
    settings = JobSettings(
        s3=s3_settings,
        components=args.components,
        backbone=args.backbone,
        pipeline_args=_runner_flags(args),
        allowed_locations=allowed,
        dataflow=_dataflow_settings(args),
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
    print(f"Serving the Rekognition API on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

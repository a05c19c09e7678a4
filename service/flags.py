"""The API server's flags (``python -m service.server --help``) and the settings they make."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex

from service.dataflow import DATAFLOW_API

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "SUBMIT_TO",
    "access_keys",
    "allowed_locations",
    "dataflow_settings",
    "detect_batching",
    "flag_parser",
    "runner_flags",
]

_LOGGER = logging.getLogger(__name__)

# A 5 MB image travels as about 6.7 MB of base64.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

SUBMIT_TO = ("local", "portable", "dataflow")


def flag_parser() -> argparse.ArgumentParser:
    """Every flag of the server."""
    from model.backbone import DEFAULT_BACKBONE
    from model.moderation_model import add_zero_shot_arguments
    from service.projects import DEFAULT_ACCOUNT_ID, DEFAULT_REGION

    parser = argparse.ArgumentParser(
        prog="python -m service.server",
        description="Serves the Rekognition bulk-analysis, DetectModerationLabels, Custom "
        "Moderation (adapter) and Custom Labels (DetectCustomLabels) API.",
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
        help="Trainings (adapters and Custom Labels models) running at once; more wait their "
        "turn (TRAINING_IN_PROGRESS). "
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
    add_zero_shot_arguments(parser)
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
    parser.add_argument(
        "--max_open_human_loops",
        type=int,
        default=1000,
        help="Human loops in progress at once; more are refused (HumanLoopQuotaExceededException, "
        "ServiceQuotaExceededException). Default: 1000.",
    )
    parser.add_argument(
        "--review_sweep_secs",
        type=float,
        default=5.0,
        help="How often expired review claims are released, loops past their task lifetime "
        "failed, and completed loops' output.json written. Default: 5.",
    )
    _add_detect_flags(parser)
    console = parser.add_argument_group(
        "console", "The web console at /console/ (sign in with one of the access key pairs)."
    )
    console.add_argument(
        "--no_console", action="store_true", help="Serve the API only, no console."
    )
    console.add_argument(
        "--console_storage",
        default=None,
        help="bucket/prefix (within --allowed_locations) where the console keeps what it "
        "writes: uploaded images and their manifests, job outputs, verified ground truth, "
        "adapters. Default: <first allowed location>/console.",
    )
    console.add_argument(
        "--console_cache_dir",
        default=None,
        help="Folder of the thumbnail cache. Default: thumbnails/ beside --registry.",
    )
    console.add_argument(
        "--console_cache_mb",
        type=int,
        default=256,
        help="Size bound of the thumbnail cache, in MB; the least recently used go first. "
        "Default: 256.",
    )
    console.add_argument(
        "--console_session_hours",
        type=float,
        default=12.0,
        help="How long a console sign-in lasts. Default: 12.",
    )
    console.add_argument(
        "--behind_tls",
        action="store_true",
        help="The server is reached over HTTPS (a TLS proxy in front): console cookies are "
        "marked Secure.",
    )
    console.add_argument(
        "--max_upload_images",
        type=int,
        default=100,
        help="Images one upload may hold. Default: 100.",
    )
    console.add_argument(
        "--max_upload_mb",
        type=float,
        default=15.0,
        help="Largest uploaded image, in MB (Rekognition's limit for an image in S3). Default: 15.",
    )
    console.add_argument(
        "--review_teams_file",
        default=None,
        help='JSON file {"teams": {"<team name or WorkteamArn>": ["<access key id>", ...]}}: who '
        "may review a flow definition's human loops in the console (the team of its "
        "WorkteamArn, by the ARN or its last path segment). Default: every console user reviews "
        "every flow.",
    )
    return parser


def _add_detect_flags(parser: argparse.ArgumentParser) -> None:
    from service.inference_queue import (
        DEFAULT_MAX_BATCH_SIZE,
        DEFAULT_MAX_QUEUED,
        DEFAULT_MAX_WAIT_SECS,
    )

    detect = parser.add_argument_group(
        "DetectModerationLabels and DetectCustomLabels",
        "Concurrent requests share one model, which runs them in batches on its own thread. "
        "For a Custom Labels model, one inference unit = one model replica on its own thread, "
        "batching up to --detect_batch_size images; each unit has a queue of its own.",
    )
    detect.add_argument(
        "--detect_batch_size",
        type=_bounded(int, 1, 256),
        default=DEFAULT_MAX_BATCH_SIZE,
        help="Most requests the model analyses in one batch (1 to 256; 1: one at a time), as "
        f"pipeline.run's --inference_batch_size. Default: {DEFAULT_MAX_BATCH_SIZE}.",
    )
    detect.add_argument(
        "--detect_batch_wait_ms",
        type=_bounded(float, 0, 1000),
        default=DEFAULT_MAX_WAIT_SECS * 1000,
        help="How long the first request of a batch waits for more to join it, in milliseconds "
        "(0 to 1000; 0: a batch is what is waiting when the model is free). "
        f"Default: {DEFAULT_MAX_WAIT_SECS * 1000:g}.",
    )
    detect.add_argument(
        "--detect_queue_size",
        type=_bounded(int, 1, 100_000),
        default=DEFAULT_MAX_QUEUED,
        help="Requests that may wait for the model beyond the batch it runs (1 to 100000); more "
        "are answered ThrottlingException at once, which clients retry after backing off. "
        f"Default: {DEFAULT_MAX_QUEUED}.",
    )


def _bounded(kind: type, low: float, high: float):
    """An argparse type: ``kind`` of the text, refused outside [low, high]."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not in {low:g} to {high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def detect_batching(args: argparse.Namespace):
    """The batching of DetectModerationLabels that the --detect_* flags ask for."""
    from service.inference_queue import BatchingSettings

    return BatchingSettings(
        max_batch_size=args.detect_batch_size,
        max_wait_secs=args.detect_batch_wait_ms / 1000,
        max_queued=args.detect_queue_size,
    )


def runner_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The Beam flags of local and portable jobs."""
    extra = shlex.split(args.job_args)
    if args.submit_to == "portable":
        if not args.job_endpoint:
            raise SystemExit("error: --submit_to=portable needs --job_endpoint=HOST:PORT")
        return ("--runner=PortableRunner", f"--job_endpoint={args.job_endpoint}", *extra)
    if any(flag.startswith("--runner") for flag in extra):
        return tuple(extra)
    return ("--runner=DirectRunner", *extra)


def dataflow_settings(args: argparse.Namespace):
    """The Dataflow launch settings of --submit_to=dataflow (None for other runners)."""
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


def access_keys(args: argparse.Namespace):
    """The key pairs clients sign with: --access_keys_file, else BEAM_MODERATION_ACCESS_KEYS."""
    from service.auth import AccessKeys

    if args.access_keys_file:
        return AccessKeys.from_file(args.access_keys_file)
    return AccessKeys.from_environment()


def allowed_locations(args: argparse.Namespace) -> list[str] | None:
    """The bucket and bucket/prefix entries of --allowed_locations; None for '*' (every bucket)."""
    if args.allowed_locations.strip() == "*":
        return None
    return [entry.strip() for entry in args.allowed_locations.split(",") if entry.strip()]

"""The Rekognition-compatible API server: ``python -m service.server --port 8642 ...``.

Point the real clients at it with ``--endpoint-url`` / ``endpoint_url``:
StartMediaAnalysisJob, GetMediaAnalysisJob, ListMediaAnalysisJobs and DetectModerationLabels,
the project API (CreateProject, DescribeProjects, DeleteProject, CreateProjectVersion,
DescribeProjectVersions, DeleteProjectVersion) that trains Custom Moderation adapters and
Custom Labels models, the Custom Labels model operations (StartProjectVersion,
StopProjectVersion, DetectCustomLabels), and SageMaker's flow definitions of human review
(CreateFlowDefinition, DescribeFlowDefinition, ListFlowDefinitions, DeleteFlowDefinition),
signed with SigV4 by one of the configured key pairs.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Sequence

from pipeline.logs import configure_logging
from service.app import build_app
from service.console.settings import console_settings
from service.flags import (
    access_keys,
    allowed_locations,
    dataflow_settings,
    detect_batching,
    flag_parser,
    runner_flags,
)

__all__ = ["build_server", "main"]

_LOGGER = logging.getLogger(__name__)


def build_server(argv: Sequence[str]):
    """The server for these flags (bound, not yet serving), with its API."""
    import boto3

    from model.backbone import Backbone
    from model.moderation_model import check_zero_shot_arguments, load_moderation_model
    from service.api import RekognitionApi
    from service.jobs import JobRunner, JobSettings
    from service.projects import ProjectRegistry
    from service.registry import JobRegistry
    from service.review.bulk import start_job_loops
    from service.review.flows import FlowDefinitionStore
    from service.review.loops import HumanLoopStore
    from service.review.sweeper import ReviewSweeper
    from service.serving import ModelServing
    from service.training import TrainingRunner
    from storage.settings import S3Settings

    args = flag_parser().parse_args(argv)
    keys = access_keys(args)
    allowed = allowed_locations(args)
    s3_settings = S3Settings(endpoint_url=args.s3_endpoint_url, region_name=args.s3_region_name)
    registry = JobRegistry(args.registry, max_active_jobs=args.max_active_jobs)
    try:
        check_zero_shot_arguments(args.zero_shot_model, args.zero_shot_prompts)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    settings = JobSettings(
        s3=s3_settings,
        components=args.components,
        backbone=args.backbone,
        zero_shot_model=args.zero_shot_model,
        zero_shot_prompts=args.zero_shot_prompts,
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
        base_model_version=settings.model_version(),
        backbone_version=Backbone.version_for(args.backbone),
    )
    flows = FlowDefinitionStore(args.registry, region=args.region, account_id=args.account_id)
    loops = HumanLoopStore(
        args.registry,
        region=args.region,
        account_id=args.account_id,
        max_open_loops=args.max_open_human_loops,
    )
    sweeper = ReviewSweeper(loops, s3_settings, interval=args.review_sweep_secs)
    runner = JobRunner(registry, settings, s3_client=s3_client, kms_client=kms, projects=projects)
    # A job started with a flow definition attached: its human loops once it has succeeded.
    runner.on_succeeded.append(lambda job: start_job_loops(job, flows, loops, s3_client))
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
    batching = detect_batching(args)
    # Custom Labels models: one inference unit = one model replica on its own thread, batching
    # up to --detect_batch_size images. Those the previous server ran start again.
    serving = ModelServing(projects, s3_settings, batching)
    restarted = serving.recover()
    if restarted:
        _LOGGER.info("Starting %d Custom Labels model(s) the previous server ran", len(restarted))
    api = RekognitionApi(
        access_keys=keys,
        runner=runner,
        trainer=trainer,
        s3_client=s3_client,
        load_model=lambda: load_moderation_model(
            args.components,
            backbone=args.backbone,
            zero_shot_model=args.zero_shot_model,
            zero_shot_prompts=args.zero_shot_prompts,
            s3=s3_settings,
        ),
        detect_batching=batching,
        allowed_locations=allowed,
        flows=flows,
        loops=loops,
        serving=serving,
    )
    console = None
    settings = console_settings(args, allowed)
    if settings is not None:
        from service.console.app import build_console

        console = build_console(api, settings)
    app = build_app(api, max_body_bytes=args.max_body_bytes, console=console)
    server = ApiServer(
        app, args.host, args.port, api=api, console=console is not None, sweeper=sweeper
    )
    sweeper.start()
    api.model.start()  # loads in the background; the first requests wait for it
    return server


class ApiServer:
    """The application served by uvicorn on a socket bound at once (port 0 picks a free one),
    with the calls of ``socketserver``'s servers: ``serve_forever`` (blocks), ``shutdown`` (from
    another thread), ``server_close``, ``server_address``."""

    def __init__(self, app, host: str, port: int, *, api=None, console: bool = False, sweeper=None):
        import uvicorn

        self.api = api
        # The human loops' upkeep (service.review.sweeper), stopped with the server.
        self.sweeper = sweeper
        self.console = console
        self._socket = _listening_socket(host, port)
        self.server_address = self._socket.getsockname()
        config = uvicorn.Config(
            app,
            log_config=None,  # the process's own logging (pipeline.logs) applies
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stops serving and waits until ``serve_forever`` has returned."""
        self._server.should_exit = True
        self._stopped.wait(30)

    def server_close(self) -> None:
        # Trainings would die with the process anyway; a server closed inside a longer-lived
        # process (tests, an embedding application) must not leave them running.
        if self.api is not None:
            self.api.trainer.stop()
            self.api.model.stop()
            # The registry keeps RUNNING models RUNNING: the next server starts them again.
            self.api.serving.close()
        if self.sweeper is not None:
            self.sweeper.stop()
        self._socket.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound and listening. Its protocol is named (IPPROTO_TCP), unlike
    ``socket.create_server``'s 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    accepted sockets whose protocol says TCP, and with it on, every response after a
    connection's first waited about 40 ms for the client's delayed ACK of its headers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        server = build_server(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    _LOGGER.info("Serving the Rekognition API on http://%s:%s", host, port)
    if server.console:
        _LOGGER.info(
            "The console is at http://%s:%s/console/ (sign in with an access key pair)", host, port
        )
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

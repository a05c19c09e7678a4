"""Entry point: ``python -m pipeline.run --manifest=... --output=... [Beam options]``."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from model.handler import ModerationModelHandler
from pipeline.graph import build_pipeline, default_model_handler
from pipeline.logs import configure_logging
from pipeline.options import (
    ModerationOptions,
    min_confidence,
    moderation_parser,
    validate_options,
)
from storage.outputs import join
from storage.reading import exists
from storage.settings import S3Settings
from transforms.output import RESULTS_FILE, SUMMARY_FILE

__all__ = ["execute", "main", "prepare", "report", "run"]

_LOGGER = logging.getLogger(__name__)

# Runners that run every stage in this process (DirectRunner's in-memory and multi-threading
# modes): the model loaded here is the one the stage runs.
_IN_PROCESS_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "FnApiRunner")
_IN_PROCESS_MODES = ("in_memory", "multi_threading")


def _check_locations(options: ModerationOptions, s3: S3Settings) -> None:
    """Fails early, naming the flag, when the manifest or the output cannot work."""
    manifest, version = options.manifest, options.manifest_version
    missing = (
        f"--manifest {manifest} has no version {version} that can be read"
        if version
        else f"--manifest {manifest} does not exist"
    )
    try:
        found = exists(manifest, version=version, s3=s3)
    except Exception as exc:
        detail = (
            f"{missing} ({exc})" if version else f"--manifest {manifest} cannot be checked: {exc}"
        )
        raise ValueError(detail) from exc
    if not found:
        raise ValueError(missing)
    output = options.output
    if output.startswith("s3://"):
        bucket = output[len("s3://") :].split("/", 1)[0]
        try:
            s3.client().head_bucket(Bucket=bucket)
        except Exception as exc:
            raise ValueError(
                f"--output {output}: bucket {bucket!r} does not exist or cannot be reached ({exc})"
            ) from exc
    elif "://" not in output:
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--output {output} cannot be created: {exc}") from exc
        if not os.access(output, os.W_OK):
            raise ValueError(f"--output {output} is not writable")


def prepare(argv: list[str] | None = None) -> ModerationOptions:
    """The job's options, checked: ValueError names the flag or location that cannot work,
    before anything runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = ModerationOptions(argv)
    moderation = options.view_as(ModerationOptions)
    validate_options(moderation)
    FileSystems.set_options(options)
    s3 = S3Settings.from_options(options)
    _check_locations(moderation, s3)
    if moderation.custom_labels_model:
        moderation.custom_labels_model = _custom_labels_folder(moderation, s3)
    return options


def _custom_labels_folder(moderation: ModerationOptions, s3: S3Settings) -> str:
    """The folder of the job's Custom Labels model (its ARN resolved), checked to hold one."""
    from model.custom_labels_model import MODEL_FILE
    from pipeline.custom_labels import resolve_custom_labels_model

    folder = resolve_custom_labels_model(
        moderation.custom_labels_model, moderation.rekognition_endpoint_url
    )
    try:
        found = exists(join(folder, MODEL_FILE), s3=s3)
    except Exception as exc:
        raise ValueError(f"--custom_labels_model {folder} cannot be checked: {exc}") from exc
    if not found:
        raise ValueError(
            f"--custom_labels_model {folder} holds no Custom Labels model (no {MODEL_FILE})"
        )
    return folder


def execute(options: ModerationOptions, *, model_handler=None) -> dict:
    """Runs a prepared job to completion; returns the published summary's statistics and
    paths. Any exception here is a failure while running."""
    moderation = options.view_as(ModerationOptions)
    started = time.monotonic()
    _LOGGER.info("Moderating the images of %s", moderation.manifest)
    preloading = _start_loading_model(options) if model_handler is None else None
    try:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, moderation, model_handler)
    finally:
        if preloading is not None:
            preloading.stop_loading()  # a model that no stage took up is not kept
    elapsed = time.monotonic() - started

    summary_path = join(moderation.output, SUMMARY_FILE)
    with FileSystems.open(summary_path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        summary = json.load(f)
    return {
        "results": join(moderation.output, RESULTS_FILE),
        "summary": summary_path,
        "statistics": summary["statistics"],
        "error_codes": _count_codes(summary["errors"]),
        "elapsed_secs": elapsed,
    }


def _runs_in_this_process(options: ModerationOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    name = runner if isinstance(runner, str) else type(runner).__name__
    mode = options.view_as(DirectOptions).direct_running_mode or "in_memory"
    return name in _IN_PROCESS_RUNNERS and mode in _IN_PROCESS_MODES


def _start_loading_model(options: ModerationOptions) -> ModerationModelHandler | None:
    """The job's model handler, its model already loading, where the stage that runs it runs
    in this process; None elsewhere, and where the model is served from a process of its own
    (``--share_model``)."""
    moderation = options.view_as(ModerationOptions)
    if not _runs_in_this_process(options) or moderation.share_model or moderation.model_copies:
        return None
    if moderation.custom_labels_model:
        return None  # a Custom Labels model loads when its stage starts
    handler = default_model_handler(moderation)
    handler.start_loading()
    return handler


def run(argv: list[str] | None = None, *, model_handler=None) -> dict:
    """Checks and runs the job to completion; returns the published summary's statistics and
    paths."""
    return execute(prepare(argv), model_handler=model_handler)


def _count_codes(errors: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        counts[error["code"]] = counts.get(error["code"], 0) + 1
    return dict(sorted(counts.items()))


def report(outcome: dict) -> str:
    stats = outcome["statistics"]
    valid = stats["valid-json-lines"]
    lines = [
        f"Analysed {valid} of {stats['total-json-lines']} manifest lines "
        f"({stats['invalid-json-lines']} invalid) in {outcome['elapsed_secs']:.1f} s "
        f"({valid / max(outcome['elapsed_secs'], 1e-9):.1f} images/s).",
    ]
    for code, count in outcome["error_codes"].items():
        lines.append(f"  {count:6d} x {code}")
    lines.append(f"Results: {outcome['results']}")
    lines.append(f"Summary: {outcome['summary']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        moderation_parser().print_help()
        return 0
    configure_logging()
    # 2: a flag or location to fix, found before anything ran; 1: a failure while running.
    try:
        options = prepare(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = execute(options)
    except Exception as exc:
        _LOGGER.exception("The job failed")
        print(
            f"error: the job failed and published no summary: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(report(outcome))
    moderation = options.view_as(ModerationOptions)
    if moderation.flow_definition_arn:
        try:
            loops = start_review(moderation, outcome["results"])
        except Exception as exc:
            _LOGGER.exception("Starting the human loops failed")
            print(
                f"error: the results are complete, but starting their human loops failed: "
                f"{type(exc).__name__}: {exc}. Run the job again to retry: each loop starts once.",
                file=sys.stderr,
            )
            return 1
        print(f"Human loops: {loops} in {moderation.flow_definition_arn}")
    return 0


def start_review(moderation: ModerationOptions, results: str) -> int:
    """Starts the human loops of a succeeded job's results (``--flow_definition_arn``)."""
    from pipeline.human_review import start_bulk_loops

    with FileSystems.open(results, compression_type=CompressionTypes.UNCOMPRESSED) as lines:
        return start_bulk_loops(
            lines,
            flow_arn=moderation.flow_definition_arn,
            # The same output is the same job: a rerun names its loops the same.
            job_key=moderation.output.rstrip("/"),
            min_confidence=min_confidence(moderation),
            endpoint_url=moderation.review_endpoint_url,
        )


if __name__ == "__main__":
    sys.exit(main())

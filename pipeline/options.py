"""Command-line options of the bulk moderation job."""

from __future__ import annotations

import argparse
import re

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from model.backbone import DEFAULT_BACKBONE, NO_BACKBONE
from model.confidence import DEFAULT_MIN_CONFIDENCE, check_confidence
from model.moderation_model import (
    COMPONENT_CHOICES,
    add_zero_shot_arguments,
    check_zero_shot_arguments,
)
from transforms.manifest import SUPPORTED_SCHEMES

__all__ = [
    "ModerationOptions",
    "is_project_version_arn",
    "min_confidence",
    "validate_options",
    "worker_processes_per_machine",
]


def _add_moderation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        default=None,
        help='Required. JSON Lines manifest, one {"source-ref": "s3://bucket/key.jpg"} per line; '
        "an s3:// or gs:// URI or a local path.",
    )
    parser.add_argument(
        "--manifest_version",
        default=None,
        help="S3 object version of an s3:// --manifest to read (a versioned bucket's VersionId). "
        "Default: the latest version.",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="Required. Folder or prefix (s3://, gs:// or local) that receives results.jsonl "
        "and manifest-summary.json.",
    )
    parser.add_argument(
        "--output_kms_key_id",
        default=None,
        help="KMS key (id, ARN or alias) that encrypts the outputs written to s3:// (SSE-KMS). "
        "Default: none (the bucket's own default encryption applies).",
    )
    parser.add_argument(
        "--min_confidence",
        type=float,
        default=None,
        help="Only labels with at least this confidence (0-100) are returned. Default: "
        f"{DEFAULT_MIN_CONFIDENCE:g}; with --custom_labels_model, each label's assumed threshold "
        "(the one its training chose on the test set).",
    )
    parser.add_argument(
        "--components",
        default="auto",
        help="Model components to run: auto (open_nsfw, the gore classifier, and NudeNet when "
        "installed), or one of open_nsfw, open_nsfw+gore, open_nsfw+nudenet, "
        "open_nsfw+nudenet+gore. Default: auto.",
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help="TensorFlow image backbone: the embedded efficientnet-lite0, or your own TF2 "
        "SavedModel (local folder, gs:// or s3:// URI) or TF Hub handle taking (N, 224, 224, 3) "
        "RGB in [0, 1] and returning ImageNet-1k scores and/or an embedding. A custom backbone "
        "runs without the content-types head; 'none' runs open_nsfw/NudeNet alone (nudity "
        f"labels only, no content types). Default: {DEFAULT_BACKBONE}.",
    )
    add_zero_shot_arguments(parser)
    parser.add_argument(
        "--adapter",
        default=None,
        help="Adapter (Custom Moderation) to apply after the base model: the folder (local, "
        "s3:// or gs://) holding adapter.json and adapter.weights.h5, as training.train_adapter "
        "writes it. Needs the default or a custom backbone (not 'none'). Default: none.",
    )
    parser.add_argument(
        "--project_version",
        default=None,
        help="The adapter's ProjectVersion ARN that each result echoes. Default: the ARN "
        "recorded in the adapter, if any.",
    )
    parser.add_argument(
        "--custom_labels_model",
        default=None,
        help="Run a Custom Labels model instead of the moderation model: its ProjectVersion ARN "
        "(resolved through the Rekognition API at --rekognition_endpoint_url) or the model "
        "folder (local, s3:// or gs://) training.train_custom_labels wrote. Each results line "
        'then carries a DetectCustomLabels response under "detect-custom-labels". Default: '
        "none.",
    )
    parser.add_argument(
        "--rekognition_endpoint_url",
        default=None,
        help="With a --custom_labels_model ARN: the Rekognition API that knows it (this "
        "project's API server, e.g. http://127.0.0.1:8642), signed with the AWS environment's "
        "credentials. Default: the AWS environment's (AWS_ENDPOINT_URL_REKOGNITION, else AWS).",
    )
    parser.add_argument(
        "--source_schemes",
        default=",".join(SUPPORTED_SCHEMES),
        help="Comma-separated kinds of source-ref to accept: s3, gs, local. "
        f"Default: {','.join(SUPPORTED_SCHEMES)}.",
    )
    parser.add_argument(
        "--allowed_source_prefixes",
        default=None,
        help="Comma-separated URI prefixes (e.g. s3://bucket/images/) that source-refs must start "
        "with; other lines fail with ACCESS_DENIED. Default: any.",
    )
    parser.add_argument(
        "--fetch_concurrency",
        type=int,
        default=16,
        help="Images fetched and decoded at once per worker. Default: 16.",
    )
    parser.add_argument(
        "--inference_batch_size",
        type=int,
        default=16,
        help="Largest batch of images per model call. Default: 16.",
    )
    parser.add_argument(
        "--inference_threads",
        type=int,
        default=0,
        help="CPU threads per model component (ONNX Runtime and TensorFlow) in each worker "
        "process; 0 gives each worker process its share of the machine's cores (cores divided "
        "by the worker processes per machine: --direct_num_workers in multi_processing mode, "
        "--sdk_worker_parallelism on portable runners, one per core on Dataflow unless "
        "--experiments=no_use_multiple_sdk_containers), so that they never oversubscribe the "
        "cores. Default: 0.",
    )
    parser.add_argument(
        "--share_model",
        action="store_true",
        default=False,
        help="Load the model once per machine and let its worker processes share it (Beam's "
        "large_model / MultiProcessShared) instead of one copy per process: for GPU workers, or "
        "when memory is short. Default: one copy per process.",
    )
    parser.add_argument(
        "--model_copies",
        type=int,
        default=None,
        help="With --share_model: how many copies of the model each machine holds (for "
        "example one per GPU). Implies --share_model. Default: 1.",
    )
    parser.add_argument(
        "--flow_definition_arn",
        default=None,
        help="Human review (this project's extension of A2I to bulk jobs): once the job has "
        "succeeded, every results line that meets this flow definition's activation conditions "
        "becomes a human loop, started through the A2I runtime API at --review_endpoint_url. "
        "Running the job again starts each loop once. Default: none.",
    )
    parser.add_argument(
        "--review_endpoint_url",
        default=None,
        help="With --flow_definition_arn: the SageMaker and A2I runtime endpoint (this "
        "project's API server, e.g. http://127.0.0.1:8642), signed with the AWS environment's "
        "credentials. Default: AWS's.",
    )
    parser.add_argument(
        "--progress_interval_secs",
        type=float,
        default=10.0,
        help="Seconds between progress lines; negative turns them off. Default: 10.",
    )


class ModerationOptions(PipelineOptions):
    """The job's own flags, beside Beam's (``--runner``, ``--s3_endpoint_url``, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _add_moderation_arguments(parser)


def moderation_parser() -> argparse.ArgumentParser:
    """A parser of the job's own flags only, for ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.run",
        description="Bulk image moderation: runs the moderation model over every image of a "
        "manifest and writes results.jsonl and manifest-summary.json.",
        epilog="Beam's own options are accepted too, for example --runner=DirectRunner "
        "(default), --direct_num_workers, and for S3 --s3_endpoint_url, --s3_access_key_id, "
        "--s3_secret_access_key, --s3_region_name (else the usual AWS environment is used).",
    )
    _add_moderation_arguments(parser)
    return parser


def validate_options(options: ModerationOptions) -> None:
    """Raises ValueError naming the flag whose value cannot work."""
    if not options.manifest:
        raise ValueError("--manifest is required: the JSON Lines file listing the images")
    if not options.output:
        raise ValueError("--output is required: where results.jsonl and manifest-summary.json go")
    if options.manifest_version and not options.manifest.startswith("s3://"):
        raise ValueError("--manifest_version applies to an s3:// --manifest only")
    if options.output_kms_key_id and not options.output.startswith("s3://"):
        raise ValueError("--output_kms_key_id applies to s3:// outputs only")
    if options.min_confidence is not None:
        check_confidence(options.min_confidence)
    _check_custom_labels_options(options)
    if options.review_endpoint_url and not options.flow_definition_arn:
        raise ValueError("--review_endpoint_url applies with --flow_definition_arn only")
    if options.flow_definition_arn and ":flow-definition/" not in options.flow_definition_arn:
        raise ValueError(
            "--flow_definition_arn must be a flow definition's ARN, "
            "arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME"
        )
    if options.components not in COMPONENT_CHOICES:
        raise ValueError(
            f"--components must be one of {', '.join(COMPONENT_CHOICES)}, "
            f"not {options.components!r}"
        )
    if not (options.backbone or "").strip():
        raise ValueError(
            f"--backbone must be {DEFAULT_BACKBONE} or a SavedModel URI / TF Hub handle"
        )
    if options.adapter and options.backbone == NO_BACKBONE:
        raise ValueError("--adapter needs the backbone's embedding; drop --backbone=none")
    check_zero_shot_arguments(options.zero_shot_model, options.zero_shot_prompts)
    if options.project_version and not options.adapter:
        raise ValueError("--project_version needs --adapter (the adapter's folder)")
    schemes = source_schemes(options)
    unknown = sorted(set(schemes) - set(SUPPORTED_SCHEMES))
    if not schemes or unknown:
        raise ValueError(
            f"--source_schemes must list some of {', '.join(SUPPORTED_SCHEMES)}, "
            f"not {options.source_schemes!r}"
        )
    if options.model_copies is not None and not 1 <= options.model_copies <= 64:
        raise ValueError(f"--model_copies must be between 1 and 64, not {options.model_copies}")
    for flag, low, high in (
        ("fetch_concurrency", 1, 256),
        ("inference_batch_size", 1, 1024),
        ("inference_threads", 0, 1024),
    ):
        value = getattr(options, flag)
        if not low <= value <= high:
            raise ValueError(f"--{flag} must be between {low} and {high}, not {value}")


def _check_custom_labels_options(options: ModerationOptions) -> None:
    if options.rekognition_endpoint_url and not is_project_version_arn(
        options.custom_labels_model or ""
    ):
        raise ValueError("--rekognition_endpoint_url applies with a --custom_labels_model ARN only")
    if not options.custom_labels_model:
        return
    if options.custom_labels_model.startswith("arn:") and not is_project_version_arn(
        options.custom_labels_model
    ):
        raise ValueError(
            "--custom_labels_model must be a model folder or a ProjectVersion ARN, "
            "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/EPOCH, not "
            f"{options.custom_labels_model!r}"
        )
    for flag in ("adapter", "project_version", "zero_shot_model", "flow_definition_arn"):
        if getattr(options, flag):
            raise ValueError(
                f"--{flag} applies to the moderation model; --custom_labels_model runs a "
                "Custom Labels model instead: drop one of them"
            )
    if options.backbone != DEFAULT_BACKBONE:
        raise ValueError(
            f"--custom_labels_model runs on the backbone it was trained on ({DEFAULT_BACKBONE}); "
            "drop --backbone"
        )


def is_project_version_arn(value: str) -> bool:
    """Whether ``value`` has the shape of a Rekognition ProjectVersion ARN."""
    return _PROJECT_VERSION_ARN.fullmatch(value) is not None


def min_confidence(options: ModerationOptions) -> float | None:
    """The job's minimum confidence: ``--min_confidence``, else 50 for the moderation model
    and None (each label's assumed threshold) for a Custom Labels model."""
    if options.min_confidence is not None:
        return options.min_confidence
    return None if options.custom_labels_model else DEFAULT_MIN_CONFIDENCE


# botocore's Rekognition model: the ProjectVersionArn pattern.
_PROJECT_VERSION_ARN = re.compile(
    r"arn:[a-z\d-]+:rekognition:[a-z\d-]+:\d{12}:project/[a-zA-Z0-9_.\-]{1,255}"
    r"/version/[a-zA-Z0-9_.\-]{1,255}/[0-9]+"
)

_DIRECT_RUNNERS = (
    "DirectRunner",
    "FnApiRunner",
    "SwitchingDirectRunner",
    "BundleBasedDirectRunner",
)


def worker_processes_per_machine(options: PipelineOptions) -> int | None:
    """How many worker processes (or threads, each running the model) share one machine, from
    the runner's own options; None when the runner starts one per core."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    name = runner if isinstance(runner, str) else type(runner).__name__
    if name in _DIRECT_RUNNERS:
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode in ("multi_processing", "multi_threading"):
            return direct.direct_num_workers or None  # 0: one per core
        return 1
    if name == "DataflowRunner":
        experiments = options.view_as(DebugOptions).experiments or []
        # Dataflow starts one Python SDK process per vCPU unless told otherwise.
        return 1 if "no_use_multiple_sdk_containers" in experiments else None
    parallelism = options.view_as(PortableOptions).sdk_worker_parallelism
    return int(parallelism or 0) or None


def allowed_source_prefixes(options: ModerationOptions) -> list[str] | None:
    if options.allowed_source_prefixes is None:
        return None
    return [p.strip() for p in options.allowed_source_prefixes.split(",") if p.strip()]


def source_schemes(options: ModerationOptions) -> list[str]:
    return [s.strip() for s in (options.source_schemes or "").split(",") if s.strip()]

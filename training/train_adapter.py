"""Trains an adapter from ground-truth manifests and compares it with the base model.

Usage (the API server runs this for CreateProjectVersion; it can be run by hand too)::

    python -m training.train_adapter --training_manifest s3://b/train.jsonl
        (--testing_manifest s3://b/test.jsonl | --auto_split)
        --output s3://b/adapters/Project/Version/1 [--project_version_arn ARN]
        [--confidence_threshold 50] [--kms_key_id KEY] [--components auto] [--backbone URI]
        [--s3_endpoint_url URL ...] [--result_file result.json]

Steps:

1. Read every manifest line (the Custom Moderation ground-truth format; labels outside the
   taxonomy are the adapter's own and carry their ``ParentName``). With ``--auto_split`` a fixed
   20 % of the training lines (chosen by a hash of the line) is the test set.
2. Run the base model over every image: its embedding and its confidence for every label.
3. Count, per label, the base model's verified false positives and false negatives on the
   training images at ``--confidence_threshold``. A label is adapted when it has at least 20
   false positives or 50 false negatives (AWS's minimum), and images with and without it.
4. Fit the adapter (``model.adapter``): a logistic regression per adapted label over the
   standardised embedding and the base model's confidences, in TensorFlow.
5. Evaluate base model and adapter on the test set (at least 20 images), per adapted label.
6. Write ``adapter.weights.h5``, ``adapter.json`` and ``evaluation-summary.json`` to
   ``--output`` (SSE-KMS with ``--kms_key_id``).

The outcome goes to ``--result_file`` (and standard output) as JSON, with ``Status``
``TRAINING_COMPLETED`` or ``TRAINING_FAILED`` and a ``StatusMessage`` that says what to fix;
the exit status is 0 for both. A non-zero exit status means the trainer itself broke.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from model.confidence import add_confidence_argument, check_confidence
from storage.settings import add_s3_arguments, s3_settings_from_arguments
from training.adapter_training import TrainingRequest, train
from training.cli import run_training_command
from training.label_selection import MIN_FALSE_NEGATIVES, MIN_FALSE_POSITIVES, MIN_TEST_IMAGES
from training.sources import add_allowed_sources_argument, allowed_prefixes

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from model.backbone import DEFAULT_BACKBONE
    from model.moderation_model import COMPONENT_CHOICES, add_zero_shot_arguments

    parser = argparse.ArgumentParser(
        prog="python -m training.train_adapter",
        description="Trains an adapter (Custom Moderation) from ground-truth manifests, "
        "evaluates it against the base model on a test set, and writes the adapter and its "
        "evaluation summary.",
        epilog=f"Needs, per label to improve, at least {MIN_FALSE_POSITIVES} verified false "
        f"positives or {MIN_FALSE_NEGATIVES} verified false negatives of the base model, and "
        f"{MIN_TEST_IMAGES} test images. Exit status 0 when a result was written (completed or "
        "failed, see its Status), 2 for bad arguments.",
    )
    parser.add_argument(
        "--training_manifest",
        action="append",
        required=True,
        help="Ground-truth manifest (s3://, gs:// or local) to train on; repeat for several. "
        "s3://bucket/key?versionId=ID reads that version of the object.",
    )
    parser.add_argument(
        "--testing_manifest",
        action="append",
        default=[],
        help="Ground-truth manifest to evaluate on (as --training_manifest); repeat for several. "
        "Or --auto_split.",
    )
    parser.add_argument(
        "--auto_split",
        action="store_true",
        help="Test on 20%% of the training lines instead of a testing manifest.",
    )
    parser.add_argument(
        "--output", required=True, help="Folder (s3://, gs:// or local) for the adapter."
    )
    parser.add_argument("--project_version_arn", default=None, help="The version's ARN.")
    add_confidence_argument(
        parser,
        "--confidence_threshold",
        help="Confidence (0-100) at which a label counts as predicted.",
    )
    parser.add_argument("--kms_key_id", default=None, help="KMS key for the outputs (SSE-KMS).")
    parser.add_argument(
        "--components",
        choices=COMPONENT_CHOICES,
        default="auto",
        help="Base model components, as the pipeline's. Default: auto.",
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"Base model backbone, as the pipeline's. Default: {DEFAULT_BACKBONE}.",
    )
    add_zero_shot_arguments(parser)
    parser.add_argument(
        "--result_file", default=None, help="Also write the result JSON to this local file."
    )
    add_allowed_sources_argument(parser)
    add_s3_arguments(parser)
    return parser


def _request(args: argparse.Namespace) -> TrainingRequest:
    if args.auto_split == bool(args.testing_manifest):
        raise ValueError("give --testing_manifest or --auto_split (one of the two)")
    check_confidence(args.confidence_threshold, "--confidence_threshold")
    from model.moderation_model import check_zero_shot_arguments

    check_zero_shot_arguments(args.zero_shot_model, args.zero_shot_prompts)
    return TrainingRequest(
        training_manifests=args.training_manifest,
        testing_manifests=args.testing_manifest,
        auto_split=args.auto_split,
        output=args.output,
        project_version_arn=args.project_version_arn,
        confidence_threshold=args.confidence_threshold,
        kms_key_id=args.kms_key_id,
        components=args.components,
        backbone=args.backbone,
        zero_shot_model=args.zero_shot_model,
        zero_shot_prompts=args.zero_shot_prompts,
        allowed_source_prefixes=allowed_prefixes(args.allowed_source_prefixes),
        s3=s3_settings_from_arguments(args),
    )


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m training.train_adapter``; returns the exit status (0 or 2)."""
    return run_training_command(build_parser(), argv, _request, train)


if __name__ == "__main__":
    sys.exit(main())

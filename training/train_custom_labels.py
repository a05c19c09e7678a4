"""Trains a Custom Labels model (image classification, multi-label classification or object
detection) from SageMaker Ground Truth manifests, as Amazon Rekognition Custom Labels does.

Usage (the API server runs this for CreateProjectVersion; it can be run by hand too)::

    python -m training.train_custom_labels --training_manifest s3://b/train.manifest
        (--testing_manifest s3://b/test.manifest | --auto_split)
        --output s3://b/output/Project/Version/1 [--project_version_arn ARN]
        [--kms_key_id KEY] [--s3_endpoint_url URL ...] [--result_file result.json]

Steps:

1. Read every manifest line and check it as AWS does: a line with no valid label attribute, an
   invalid source-ref, an image that is missing or outside AWS's limits (JPEG or PNG, 64-4096
   px a side, at most 15 MB, aspect ratio at most 20:1), more than 50 boxes, ... is dropped;
   a bad box inside a line is dropped alone. Each line's fate goes to the validation manifests.
2. The kind of model follows from the lines: bounding boxes (``groundtruth/object-detection``)
   train a detector; image-level labels train a classifier, multi-label when an image has
   several labels (or a ``groundtruth/image-classification-multilabel`` attribute). Mixing
   boxes and image-level labels fails.
3. With ``--auto_split`` a fixed 20 % of the training images (chosen by a hash of the
   source-ref) is the test set.
4. Fail, saying what to fix, when more than 20 % of a dataset's lines are invalid, when a
   classification dataset has fewer than 2 labels (a detection dataset fewer than 1) or more
   than 250, when fewer than half the training labels are in the test set, or when the test
   set has fewer than 20 images.
5. Fit the model on the backbone (``training.custom_labels_fit``), choose each label's assumed
   threshold on the test set, and write under ``--output``: ``model/``, the evaluation summary
   ``EvaluationSummary-<Project>-<Version>.json``, ``training.manifest`` and
   ``testing.manifest`` (the lines used), ``training-validation.manifest`` and
   ``testing-validation.manifest`` (every line, with its errors) and ``manifest-summary.json``,
   all with SSE-KMS under ``--kms_key_id``.

The outcome goes to ``--result_file`` (and standard output) as JSON, with ``Status``
``TRAINING_COMPLETED`` or ``TRAINING_FAILED`` and a ``StatusMessage`` that says what to fix;
the exit status is 0 for both, 2 for bad flags. Any other exit status means the trainer itself
broke.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from storage.settings import add_s3_arguments, s3_settings_from_arguments
from training.cli import run_training_command
from training.custom_labels_manifest import MAX_BOXES_PER_IMAGE, MAX_MANIFEST_LINES
from training.custom_labels_training import (
    MAX_INVALID_SHARE,
    MAX_LABELS,
    MIN_TEST_IMAGES,
    TrainingRequest,
    train,
)
from training.sources import add_allowed_sources_argument, allowed_prefixes

__all__ = ["build_parser", "main"]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_custom_labels",
        description="Trains an Amazon Rekognition Custom Labels model (image classification, "
        "multi-label classification or object detection, as the manifests' label attributes "
        "say) from SageMaker Ground Truth manifests; evaluates it on a test set and writes the "
        "model, its evaluation summary and the output and validation manifests.",
        epilog=f"AWS's rules: at most {MAX_MANIFEST_LINES} lines a manifest, "
        f"{MAX_BOXES_PER_IMAGE} boxes an image, {MAX_LABELS} labels; classification needs 2 "
        "labels, detection 1; a line that breaks a rule is dropped (the validation manifests "
        f"say why) and more than {MAX_INVALID_SHARE:.0%} of such lines fail the training. The "
        f"test set needs {MIN_TEST_IMAGES} images. Exit status 0 when a result was written "
        "(completed or failed, see its Status), 2 for bad arguments.",
    )
    parser.add_argument(
        "--training_manifest",
        action="append",
        required=True,
        help="Required. SageMaker Ground Truth manifest (s3://, gs:// or local) to train on; "
        "repeat for several. s3://bucket/key?versionId=ID reads that version of the object.",
    )
    parser.add_argument(
        "--testing_manifest",
        action="append",
        default=[],
        help="Manifest to test on (as --training_manifest); repeat for several. Give this or "
        "--auto_split.",
    )
    parser.add_argument(
        "--auto_split",
        action="store_true",
        help="Test on 20%% of the training images (by a hash of each source-ref) instead of a "
        "testing manifest. Default: off.",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="Required. Folder (s3://, gs:// or local) for the model and the files of the run.",
    )
    parser.add_argument(
        "--project_version_arn",
        default=None,
        help="The version's ARN (arn:aws:rekognition:REGION:ACCOUNT:project/P/version/V/MS); "
        "names the evaluation summary EvaluationSummary-P-V.json. Default: none "
        "(evaluation-summary.json).",
    )
    parser.add_argument(
        "--kms_key_id",
        default=None,
        help="KMS key for the files written to S3 (SSE-KMS). Default: none.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the training's randomness. Default: 0."
    )
    parser.add_argument(
        "--result_file",
        default=None,
        help="Also write the result JSON to this local file. Default: standard output only.",
    )
    add_allowed_sources_argument(parser)
    add_s3_arguments(parser)
    return parser


def _request(args: argparse.Namespace) -> TrainingRequest:
    if args.auto_split == bool(args.testing_manifest):
        raise ValueError("give --testing_manifest or --auto_split (one of the two)")
    return TrainingRequest(
        training_manifests=args.training_manifest,
        testing_manifests=args.testing_manifest,
        auto_split=args.auto_split,
        output=args.output,
        project_version_arn=args.project_version_arn,
        kms_key_id=args.kms_key_id,
        seed=args.seed,
        allowed_source_prefixes=allowed_prefixes(args.allowed_source_prefixes),
        s3=s3_settings_from_arguments(args),
    )


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m training.train_custom_labels``; returns the exit status (0 or 2)."""
    return run_training_command(build_parser(), argv, _request, train)


if __name__ == "__main__":
    sys.exit(main())

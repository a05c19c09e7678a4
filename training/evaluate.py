"""Precision, recall and F1 of the moderation model against a ground-truth manifest.

Usage::

    python -m training.evaluate --manifest ground_truth.jsonl [--min_confidence 50]
        [--format text|json] [--components auto] [--backbone URI] [--s3_endpoint_url URL ...]

The manifest is the Custom Moderation (adapter) ground-truth format, one JSON object per line::

    {"source-ref": "s3://b/1.jpg",
     "content-moderation-groundtruth": {"ModerationLabels": [{"Name": "Alcohol"}]}}

An image with no unsafe content has ``"ModerationLabels": []``. ``source-ref`` is an ``s3://`` or
``gs://`` URI or a local path; a relative path is taken from the manifest's folder. Blank lines
are skipped; line numbers are the file's physical lines.

Extension (ours, not AWS's): ``content-moderation-groundtruth`` may also hold
``"ContentTypes": [{"Name": "Animated"}]`` (names: ``Animated``, ``Illustrated``). Content types
are scored only when at least one line has that key; a line without it then means "no content
type".

How the numbers are counted:

- A ground-truth label implies its ancestors: "Pills" also means "Products" and "Drugs &
  Tobacco". Predictions already carry their parents and are taken as the model returns them.
- A prediction counts when its confidence is at least ``--min_confidence`` (content types too).
- Per label: support (images whose expanded ground truth has it), predicted, true positives,
  false positives, false negatives, precision = TP / predicted, recall = TP / support and
  F1 = 2 TP / (2 TP + FP + FN). A ratio whose denominator is zero is null (``-`` in text),
  never 0 or 1. Rows cover every label in the ground truth or the predictions.
- The micro average sums TP, FP and FN over those rows (so a level-3 label counts at each
  level, as it does in the rows).
- Images that fail to load or to run are listed under errors and left out of the metrics.

Exit status: 0 when the evaluation ran (even with images that failed to load); 2 for bad
arguments or a bad manifest (the message names the line); 1 when the model cannot run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model.confidence import add_confidence_argument, check_confidence
from pipeline.logs import configure_logging
from storage.settings import S3Settings, add_s3_arguments, s3_settings_from_arguments
from training.cli import add_components_argument, add_format_argument, exit_status, print_report
from training.evaluation_text import format_text
from training.ground_truth import GROUND_TRUTH_KEY, ManifestProblem, read_ground_truth
from training.metrics import Evaluation
from training.scoring import evaluate, image_loader

__all__ = ["build_parser", "main"]

_LOGGER = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    # The model is imported only where it is needed: the metrics work without it.
    from model.backbone import DEFAULT_BACKBONE
    from model.moderation_model import add_zero_shot_arguments

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Runs the moderation model over the images of a ground-truth manifest and "
        "reports, per label, support, predictions, TP/FP/FN, precision, recall and F1, a micro "
        "average, the images with false positives, and the images that failed to load.",
        epilog='Manifest lines: {"source-ref": "s3://b/1.jpg", "' + GROUND_TRUTH_KEY + '": '
        '{"ModerationLabels": [{"Name": "Alcohol"}]}}; "ModerationLabels": [] for a safe image. '
        "source-ref may be s3://, gs:// or a local path (relative to the manifest's folder). "
        'Our extension: "ContentTypes": [{"Name": "Animated"}] (Animated, Illustrated) beside '
        "ModerationLabels; content types are scored only when some line has that key, and a "
        "line without it then means none. A ground-truth label implies its parents. Exit "
        "status: 0 done, 2 bad arguments or manifest, 1 the model could not run.",
    )
    parser.add_argument(
        "--manifest",
        required=True,
        help="Required. Ground-truth JSON Lines manifest: an s3:// or gs:// URI or a local path.",
    )
    add_confidence_argument(parser, help="Predictions below this confidence (0-100) are ignored.")
    add_format_argument(parser, "aligned tables")
    add_components_argument(parser)
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help="Image backbone, as the pipeline's --backbone: the embedded efficientnet-lite0, a "
        "TF2 SavedModel (local folder, gs:// or s3:// URI) or a TF Hub handle; 'none' runs "
        f"open_nsfw/NudeNet alone. Default: {DEFAULT_BACKBONE}.",
    )
    add_zero_shot_arguments(parser)
    parser.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="Images per model call. Default: 16.",
    )
    parser.add_argument(
        "--fetch_concurrency",
        type=int,
        default=16,
        help="Images fetched and decoded at once. Default: 16.",
    )
    # Beam's own S3 flags, so that s3:// manifests and images are read as the pipeline reads them.
    add_s3_arguments(parser)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    check_confidence(args.min_confidence)
    from model.moderation_model import check_zero_shot_arguments

    check_zero_shot_arguments(args.zero_shot_model, args.zero_shot_prompts)
    for flag in ("batch_size", "fetch_concurrency"):
        value = getattr(args, flag)
        if not 1 <= value <= 1024:
            raise ValueError(f"--{flag} must be between 1 and 1024, not {value}")


def _load_model(args: argparse.Namespace, s3: S3Settings):
    from model.moderation_model import load_moderation_model

    return load_moderation_model(
        args.components,
        backbone=args.backbone,
        zero_shot_model=args.zero_shot_model,
        zero_shot_prompts=args.zero_shot_prompts,
        s3=s3,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.evaluate``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own message for a bad flag
        return exit_status(exit_)
    configure_logging()

    s3 = s3_settings_from_arguments(args)
    try:
        _check_arguments(args)
        # A first pass checks every line, so that a bad line fails before any model runs.
        count = sum(1 for _ in read_ground_truth(args.manifest, s3=s3))
        if not count:
            raise ManifestProblem(f"--manifest {args.manifest} has no lines")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        model = _load_model(args, s3)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        _LOGGER.exception("The model could not be loaded")
        print(f"error: the model could not be loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    _LOGGER.info("Evaluating %s on %d images of %s", model.version, count, args.manifest)
    evaluation = Evaluation(args.min_confidence, model.version)
    try:
        evaluate(
            read_ground_truth(args.manifest, s3=s3),
            model,
            evaluation,
            batch_size=args.batch_size,
            load_image=image_loader(s3, args.fetch_concurrency),
            concurrency=args.fetch_concurrency,
        )
    except ManifestProblem as exc:  # the file changed since the first pass
        print(f"error: {exc}", file=sys.stderr)
        return 2

    report = {"manifest": args.manifest, **evaluation.report()}
    print_report(report, args.format, format_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

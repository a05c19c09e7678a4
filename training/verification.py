"""Verified predictions of a bulk job -> an adapter ground-truth manifest, with TP/FP/FN per label.

Usage::

    python -m training.verification --results results.jsonl --verifications verifications.jsonl
        --output groundtruth.jsonl [--confidence_threshold 50] [--custom_label NAME=PARENT ...]
        [--format text|json] [--s3_endpoint_url URL ...]

This is the "verify predictions" step of Rekognition Custom Moderation, offline. A reviewer
looks at the job's predictions and writes one JSON line per image reviewed::

    {"source-ref": "s3://bucket/images/1.jpg",
     "labels": {"Alcohol": true, "Explicit Nudity": false, "Hand Gestures": true}}

- ``true`` = present, ``false`` = absent. A predicted label (a ``results.jsonl`` label whose
  Confidence is at least ``--confidence_threshold``) that ``labels`` does not name is confirmed
  present, as a box left checked in the console. ``"labels": {}`` confirms every prediction.
- A label named ``true`` that was not predicted is a label the model missed (added).
- A present label implies its ancestors ("Pills" also means "Products" and "Drugs & Tobacco");
  an absent label does not make its children absent: marking a label absent while a label
  below it stays present is an error on that line.
- Names are taxonomy names (``model/taxonomy.py``) or custom labels declared with
  ``--custom_label NAME=PARENT`` (PARENT a taxonomy label, or ``NAME=`` for a custom level-1
  label; the level is the parent's plus one and at most 3).
- Images of the results that no verification names are not reviewed: they are left out of the
  ground truth and counted. Results lines that share a source-ref are one image (their
  predictions are merged). A verification for a source-ref that is not in the results, a
  second verification of one image, and any malformed line are errors.

The ground truth holds one line per reviewed image, in the order of the verifications, with
the deepest present labels only (their ancestors are implied); custom labels carry their
``ParentName``; an image with nothing unsafe has ``"ModerationLabels": []``.

Counts, per label predicted or verified (ancestors included): TP = predicted and verified
present, FP = predicted and verified absent, FN = not predicted and verified present. AWS's
minimum to train an adapter on a label is 20 verified false positives or 50 verified false
negatives, and an adapter also needs a test set of at least 20 images.

Exit status: 0 ground truth written; 2 bad arguments or bad input lines (every bad line is
reported with its file and line number, and nothing is written); 1 the output could not be
written. The output is written whole or not at all (a temporary name renamed into place, one
upload for ``s3://``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model.confidence import add_confidence_argument, check_confidence
from pipeline.logs import configure_logging
from storage.outputs import OutputStore
from storage.settings import add_s3_arguments, s3_settings_from_arguments
from training.cli import add_format_argument, exit_status, print_report
from training.custom_labels import declare_custom_labels, parse_custom_label
from training.json_lines import read_lines
from training.verification_report import build_ground_truth
from training.verification_text import bad_lines, format_text

__all__ = ["build_parser", "main"]

_LOGGER = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.verification",
        description="Turns a bulk job's results.jsonl and a reviewer's verifications of its "
        "predictions into an adapter ground-truth manifest, and reports per label the verified "
        "true positives, false positives and false negatives.",
        epilog='Verification lines: {"source-ref": "s3://b/1.jpg", "labels": {"Alcohol": true, '
        '"Explicit Nudity": false}}; true = present, false = absent. A predicted label that the '
        "line does not name is confirmed present; a label marked true that was not predicted "
        "was missed by the model; a present label implies its parents. Images not verified are "
        "left out. Exit status: 0 written, 2 bad arguments or bad lines (nothing written), 1 "
        "the output could not be written.",
    )
    parser.add_argument(
        "--results",
        required=True,
        help="Required. The job's results.jsonl: an s3:// or gs:// URI or a local path.",
    )
    parser.add_argument(
        "--verifications",
        required=True,
        help="Required. The reviewer's JSON Lines file, one reviewed image per line.",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="Required. Where to write the ground-truth manifest (s3://, gs:// or local); "
        "written whole or not at all.",
    )
    add_confidence_argument(
        parser,
        "--confidence_threshold",
        help="A results label counts as predicted when its Confidence is at least this (0-100).",
    )
    parser.add_argument(
        "--custom_label",
        action="append",
        default=[],
        metavar="NAME=PARENT",
        help="Declares a label outside the taxonomy, under PARENT (a taxonomy label of level 1 "
        'or 2), or at level 1 with "NAME=". Repeat for several. Default: none.',
    )
    add_format_argument(parser, "a table for a terminal")
    # Beam's own S3 flags, so that s3:// files are read as the pipeline reads them.
    add_s3_arguments(parser)
    return parser


def _check_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The declared custom labels ``{name: parent}``; ValueError names a bad flag."""
    threshold = args.confidence_threshold
    check_confidence(threshold, "--confidence_threshold")
    if args.output in (args.results, args.verifications):
        raise ValueError("--output must not be one of the input files")
    custom: dict[str, str] = {}
    for spec in args.custom_label:
        name, parent = parse_custom_label(spec)
        if name in custom and custom[name] != parent:
            raise ValueError(
                f"--custom_label {name} is declared twice, under {custom[name]!r} and {parent!r}"
            )
        custom[name] = parent
    declare_custom_labels(custom)  # fails here, before any file is read
    return custom


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.verification``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own message for a bad flag
        return exit_status(exit_)
    configure_logging()

    s3 = s3_settings_from_arguments(args)
    try:
        custom = _check_arguments(args)
        verifications = list(read_lines(args.verifications, "--verifications"))
        if not verifications:
            raise ValueError(f"--verifications {args.verifications} has no lines")
        verification = build_ground_truth(
            read_lines(args.results, "--results"),
            verifications,
            confidence_threshold=args.confidence_threshold,
            custom_labels=custom,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    status = 0
    if verification.ok:
        try:
            OutputStore(s3).write_bytes(args.output, verification.ground_truth_jsonl())
        except Exception as exc:
            _LOGGER.exception("The ground truth could not be written")
            print(f"error: {args.output} could not be written: {exc}", file=sys.stderr)
            status = 1
    else:
        for error in verification.errors:
            print(f"error: {error}", file=sys.stderr)
        print(
            f"error: {bad_lines(len(verification.errors))}; {args.output} was not written",
            file=sys.stderr,
        )
        status = 2

    report = {
        "results": args.results,
        "verifications": args.verifications,
        "output": args.output,
        "written": status == 0,
        **verification.to_dict(),
    }
    print_report(report, args.format, format_text, ensure_ascii=False)
    return status


if __name__ == "__main__":
    sys.exit(main())

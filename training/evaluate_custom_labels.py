"""Precision, recall and F1 per label of a trained Custom Labels model on a SageMaker Ground
Truth manifest (and AP@0.5 / mAP@0.5 for an object detector).

Usage::

    python -m training.evaluate_custom_labels --model s3://b/output/P/V/1/model/
        --manifest s3://b/test.manifest [--min_confidence 50] [--format text|json]
        [--s3_endpoint_url URL ...]

The manifest's lines are read and checked as training reads them (``python -m
training.train_custom_labels``): lines that cannot be used, and lines whose labels the model
does not know, are listed and left out. A detector is measured on bounding boxes
(``groundtruth/object-detection``), a classifier on image-level labels.

How the numbers are counted (``training.custom_labels_metrics``): a label counts as predicted
when its confidence is at least ``--min_confidence``, or without it the label's assumed
threshold (chosen in training). A detection is a true positive when it matches an unmatched
ground-truth box of its label with IoU >= 0.5, most confident first. The overall precision,
recall and F1 are micro averages over the labels.

Exit status: 0 when the evaluation ran; 2 for bad arguments, a model that cannot be read, or a
manifest that cannot be used (the message names the line); 1 when the model failed to run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from model.confidence import check_confidence
from model.custom_labels_model import CLASSIFICATION, OBJECT_DETECTION
from pipeline.logs import configure_logging
from storage.settings import add_s3_arguments, s3_settings_from_arguments
from training.cli import add_format_argument, exit_status, print_report
from training.custom_labels_data import ImageReader
from training.custom_labels_manifest import (
    ManifestEntry,
    check_images,
    dataset_kind,
    drop_duplicates,
    keep_labels,
    label_entries,
    read_entries,
)
from training.examples import TrainingProblem

__all__ = ["build_parser", "format_text", "main", "read_evaluation_set"]

_LOGGER = logging.getLogger(__name__)
_LISTED_DROPPED = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate_custom_labels",
        description="Runs a trained Custom Labels model over the images of a SageMaker Ground "
        "Truth manifest and reports, per label, the test images, precision, recall, F1 and the "
        "threshold used (for a detector also AP at IoU 0.5), the micro averages (and mAP@0.5), "
        "and the lines that were left out and why.",
        epilog="Exit status: 0 done; 2 bad arguments, model or manifest; 1 the model could not "
        "run.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="Required. The model folder (local, s3:// or gs://), e.g. the model/ folder that "
        "python -m training.train_custom_labels writes.",
    )
    parser.add_argument(
        "--manifest",
        required=True,
        help="Required. SageMaker Ground Truth manifest (local, s3://, gs://; "
        "s3://bucket/key?versionId=ID for one version) to measure the model on.",
    )
    parser.add_argument(
        "--min_confidence",
        type=float,
        default=None,
        help="Confidence (0-100) at which a label counts as predicted. Default: each label's "
        "assumed threshold, chosen in training.",
    )
    add_format_argument(parser, "aligned tables")
    add_s3_arguments(parser)
    return parser


def read_evaluation_set(
    manifest: str, model, reader: ImageReader, s3=None
) -> tuple[list[ManifestEntry], dict[str, int]]:
    """The manifest's lines as ``model`` can be measured on them, and the labels left out
    (unknown to the model) with how many images named each. ``TrainingProblem`` when the
    manifest cannot be used at all."""
    kind = model.spec.kind
    entries = read_entries([manifest], "evaluation", s3)
    found = dataset_kind(entries)
    if found is not None and (found == OBJECT_DETECTION) != (kind == OBJECT_DETECTION):
        given, wanted = "bounding boxes", "image-level labels"
        if kind == OBJECT_DETECTION:
            given, wanted = wanted, given
        raise TrainingProblem(
            f"The manifest {manifest} has {given} but the model is a {kind} model; give a "
            f"manifest with {wanted}."
        )
    label_entries(entries, kind)
    if kind == CLASSIFICATION:
        for entry in entries:
            if entry.used and len(entry.image.labels) > 1:
                entry.drop(
                    "ERROR_TOO_MANY_LABELS",
                    "The image has several labels; a CLASSIFICATION model gives one.",
                )
    drop_duplicates(entries, "evaluation")
    check_images(entries, reader.check, kind=kind)
    removed = keep_labels(entries, model.spec.labels, kind, known_to="the model")
    if not any(entry.used for entry in entries):
        shown = "; ".join(f"{e.where}: {e.reason}" for e in entries[:5])
        raise TrainingProblem(f"No line of {manifest} can be used: {shown}.")
    return entries, dict(sorted(removed.items()))


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def format_text(report: Mapping[str, Any]) -> str:
    """The report as aligned tables."""
    detection = report["Kind"] == OBJECT_DETECTION
    headers = ["Label", "Images", "Precision", "Recall", "F1", "Threshold"]
    if detection:
        headers.append("AP@0.5")
    rows = []
    for label in report["Labels"]:
        row = [
            str(label["Label"]),
            str(label.get("NumberOfTestingImages", "")),
            _ratio(label.get("Precision")),
            _ratio(label.get("Recall")),
            _ratio(label.get("F1Score")),
            "-" if label.get("Threshold") is None else f"{float(label['Threshold']):.1f}",
        ]
        if detection:
            row.append(_ratio(label.get("AveragePrecision")))
        rows.append(row)
    overall = ["(micro)", str(report["Images"]), _ratio(report.get("Precision"))]
    overall += [_ratio(report.get("Recall")), _ratio(report.get("F1Score")), ""]
    if detection:
        overall.append(_ratio(report.get("AveragePrecision")))
    rows.append(overall)
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [
        f"Model: {report['Model']} ({report['ModelVersion']}, {report['Kind']})",
        f"Manifest: {report['Manifest']}: {report['Images']} images of {report['Lines']} lines",
        "Confidence: "
        + (
            "each label's assumed threshold"
            if report["MinConfidence"] is None
            else f"at least {report['MinConfidence']:g}"
        ),
        "",
        line(headers),
        line(["-" * width for width in widths]),
        *(line(row) for row in rows),
    ]
    if detection and report.get("AveragePrecision") is not None:
        out.append(f"mAP@0.5: {_ratio(report['AveragePrecision'])}")
    if report["LabelsNotInModel"]:
        named = ", ".join(f"{k} ({v})" for k, v in report["LabelsNotInModel"].items())
        out += ["", f"Labels the model does not know (images), left out: {named}"]
    if report["LeftOut"]:
        out += ["", f"Lines left out ({report['LinesLeftOut']}):"]
        out += [f"  line {row['Line']}: {row['Reason']}" for row in report["LeftOut"]]
        if report["LinesLeftOut"] > len(report["LeftOut"]):
            out.append(f"  ... and {report['LinesLeftOut'] - len(report['LeftOut'])} more")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.evaluate_custom_labels``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.min_confidence is not None:
            check_confidence(args.min_confidence)
    except SystemExit as exit_:
        return exit_status(exit_)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    s3 = s3_settings_from_arguments(args)
    from model.custom_labels_model import CustomLabelsModel

    try:
        model = CustomLabelsModel.load(args.model, s3)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reader = ImageReader(s3)
    try:
        entries, unknown = read_evaluation_set(args.manifest, model, reader, s3)
    except TrainingProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = [entry.image for entry in entries if entry.used]
    _LOGGER.info("Evaluating %s on %d images of %s", model.version, len(images), args.manifest)
    from training.custom_labels_metrics import evaluate

    try:
        evaluation = evaluate(model, images, reader.load, min_confidence=args.min_confidence)
    except Exception as exc:
        _LOGGER.exception("The model failed")
        print(f"error: the model failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    left_out = [entry for entry in entries if not entry.used]
    report = {
        "Model": args.model,
        "ModelVersion": model.version,
        "Kind": model.spec.kind,
        "Manifest": args.manifest,
        "MinConfidence": args.min_confidence,
        "Lines": len(entries),
        "Images": len(images),
        **evaluation,
        "LabelsNotInModel": unknown,
        "LinesLeftOut": len(left_out),
        "LeftOut": [
            {"Line": entry.line_number, "Reason": entry.reason}
            for entry in left_out[:_LISTED_DROPPED]
        ],
    }
    print_report(report, args.format, format_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

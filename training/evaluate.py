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
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from model.confidence import DEFAULT_MIN_CONFIDENCE, add_confidence_argument, check_confidence
from model.taxonomy import CONTENT_TYPES, TAXONOMY, ancestors
from pipeline.logs import configure_logging
from storage.settings import S3Settings, add_s3_arguments, s3_settings_from_arguments
from transforms.images import ImageProblem, decode_image, fetch_image_bytes
from transforms.manifest import MAX_LINE_BYTES, read_manifest_lines
from transforms.records import ErrorCode

__all__ = [
    "GROUND_TRUTH_KEY",
    "Evaluation",
    "GroundTruthLine",
    "LabelCounts",
    "ManifestProblem",
    "build_parser",
    "evaluate",
    "expand_labels",
    "format_text",
    "image_loader",
    "main",
    "parse_ground_truth_line",
    "read_ground_truth",
]

_LOGGER = logging.getLogger(__name__)

GROUND_TRUTH_KEY = "content-moderation-groundtruth"
_PROGRESS_INTERVAL_SECS = 10.0


class ManifestProblem(ValueError):
    """The ground-truth manifest cannot be evaluated; the message names the line."""


class GroundTruthLine(NamedTuple):
    """One line of the ground-truth manifest, as written (labels not yet expanded)."""

    line_number: int
    source_ref: str
    labels: tuple[str, ...]
    content_types: tuple[str, ...] | None  # None: the line has no "ContentTypes" key


# --- Reading the manifest -------------------------------------------------------------------


def _names(
    number: int,
    holder: Mapping[str, Any],
    key: str,
    known: Iterable[str],
    custom: dict[str, str] | None = None,
) -> list[str]:
    """The entries' names; with ``custom``, names outside ``known`` are an adapter's own labels,
    each with its ``ParentName`` ("" or absent: level 1), collected into ``custom``."""
    entries = holder[key]
    where = f"line {number}: {GROUND_TRUTH_KEY}.{key}"
    if not isinstance(entries, list):
        raise ManifestProblem(f"{where} must be a list, not {type(entries).__name__}")
    known = set(known)
    names = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
            raise ManifestProblem(f'{where}: each entry must be an object with a "Name" string')
        name = entry["Name"]
        if name not in known:
            if custom is None:
                raise ManifestProblem(f"line {number}: unknown {key} name {name!r}")
            parent = entry.get("ParentName") or ""
            if not isinstance(parent, str):
                raise ManifestProblem(f"line {number}: the ParentName of {name!r} is not a string")
            if custom.setdefault(name, parent) != parent:
                raise ManifestProblem(
                    f"line {number}: custom label {name!r} has ParentName {parent!r} here but "
                    f"{custom[name]!r} before; a label has one parent"
                )
        names.append(name)
    return names


def parse_ground_truth_line(
    number: int, raw: bytes | str | None, custom_labels: dict[str, str] | None = None
) -> GroundTruthLine:
    """One manifest line -> ``GroundTruthLine``; ``ManifestProblem`` names the line and the fault.

    ``raw`` is None for a line too long to read (as ``read_manifest_lines`` reports it). Labels
    outside the taxonomy are refused, unless ``custom_labels`` is given: then they are an
    adapter's own labels and their parents are collected there (``{name: ParentName}``).
    """
    if raw is None:
        raise ManifestProblem(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # json.loads would guess UTF-16 or UTF-32 too
        except UnicodeDecodeError as exc:
            raise ManifestProblem(f"line {number}: not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestProblem(f"line {number}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestProblem(f"line {number}: a JSON {type(document).__name__}, not an object")
    source_ref = document.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.strip():
        raise ManifestProblem(f'line {number}: "source-ref" is missing or not a non-empty string')
    truth = document.get(GROUND_TRUTH_KEY)
    if not isinstance(truth, dict):
        raise ManifestProblem(f'line {number}: "{GROUND_TRUTH_KEY}" is missing or not an object')
    if "ModerationLabels" not in truth:
        raise ManifestProblem(f'line {number}: "{GROUND_TRUTH_KEY}" has no "ModerationLabels"')
    labels = _names(number, truth, "ModerationLabels", TAXONOMY, custom_labels)
    content_types = (
        _names(number, truth, "ContentTypes", CONTENT_TYPES) if "ContentTypes" in truth else None
    )
    return GroundTruthLine(
        number,
        source_ref,
        tuple(labels),
        None if content_types is None else tuple(content_types),
    )


def read_ground_truth(
    path: str, custom_labels: dict[str, str] | None = None
) -> Iterator[GroundTruthLine]:
    """Streams the manifest's lines, relative local ``source-ref`` resolved against its folder
    (``custom_labels``: as for ``parse_ground_truth_line``)."""
    try:
        exists = FileSystems.exists(path)
    except Exception as exc:
        raise ManifestProblem(f"--manifest {path} cannot be checked: {exc}") from exc
    if not exists:
        raise ManifestProblem(f"--manifest {path} does not exist")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        for number, raw in read_manifest_lines(stream):
            line = parse_ground_truth_line(number, raw, custom_labels)
            yield line._replace(source_ref=_resolve(line.source_ref, path))


def _resolve(source_ref: str, manifest: str) -> str:
    if "://" in source_ref or os.path.isabs(source_ref):
        return source_ref
    if "://" in manifest:
        return manifest.rsplit("/", 1)[0] + "/" + source_ref
    return os.path.join(os.path.dirname(os.path.abspath(manifest)), source_ref)


# --- Counting (pure) ------------------------------------------------------------------------


def expand_labels(names: Iterable[str], custom=None) -> set[str]:
    """The names with every ancestor added ("Pills" -> Pills, Products, Drugs & Tobacco);
    ``custom``: an adapter's own labels (name -> TaxonomyLabel)."""
    return {name_or_parent for name in names for name_or_parent in ancestors(name, custom)}


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _metrics(support: int, predicted: int, true_positives: int) -> dict[str, Any]:
    false_positives = predicted - true_positives
    false_negatives = support - true_positives
    return {
        "support": support,
        "predicted": predicted,
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
        "precision": _ratio(true_positives, predicted),
        "recall": _ratio(true_positives, support),
        # The harmonic mean of precision and recall written with counts, so that it is defined
        # (as 0) when the model never predicts a label that the ground truth has.
        "f1": _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives),
    }


class LabelCounts:
    """Per-name support, predicted and true-positive counts over a set of images."""

    def __init__(self, order: Sequence[str]):
        self._order = list(order)  # the rows' order: names outside it follow, sorted
        self.support: dict[str, int] = {}
        self.predicted: dict[str, int] = {}
        self.true_positives: dict[str, int] = {}

    def add(self, truth: set[str], predicted: set[str]) -> None:
        """One image: the names its ground truth has and the names the model returned."""
        for counter, names in (
            (self.support, truth),
            (self.predicted, predicted),
            (self.true_positives, truth & predicted),
        ):
            for name in names:
                counter[name] = counter.get(name, 0) + 1

    def names(self) -> list[str]:
        seen = set(self.support) | set(self.predicted)
        known = [name for name in self._order if name in seen]
        return known + sorted(seen - set(self._order))

    def row(self, name: str) -> dict[str, Any]:
        """One name's counts and ratios (all zero, ratios null, for a name never seen)."""
        return {
            "name": name,
            **_metrics(
                self.support.get(name, 0),
                self.predicted.get(name, 0),
                self.true_positives.get(name, 0),
            ),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(name) for name in self.names()]

    def micro_average(self) -> dict[str, Any]:
        return _metrics(
            sum(self.support.values()),
            sum(self.predicted.values()),
            sum(self.true_positives.values()),
        )


class Evaluation:
    """Accumulates (ground truth, model response) pairs and failures; ``report()`` sums them up."""

    def __init__(
        self, min_confidence: float = DEFAULT_MIN_CONFIDENCE, model_version: str | None = None
    ):
        self.min_confidence = min_confidence
        self.model_version = model_version
        self.images = 0
        self.labels = LabelCounts(list(TAXONOMY))
        self.content_types = LabelCounts(CONTENT_TYPES)
        self.content_types_scored = False
        self.false_positives: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def _kept(self, entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [e for e in entries if e["Confidence"] >= self.min_confidence]

    def add(self, line: GroundTruthLine, response: Mapping[str, Any]) -> None:
        """One image that the model ran on; ``response`` is its DetectModerationLabels response."""
        self.images += 1
        truth = expand_labels(line.labels)
        labels = self._kept(response.get("ModerationLabels", ()))
        self.labels.add(truth, {label["Name"] for label in labels})

        # Until some line has "ContentTypes" it is unknown whether they will be scored, so every
        # image is counted and the report leaves them out if none had the key.
        self.content_types_scored |= line.content_types is not None
        truth_types = set(line.content_types or ())
        types = self._kept(response.get("ContentTypes", ()))
        self.content_types.add(truth_types, {t["Name"] for t in types})

        wrong_labels = [_entry(label) for label in labels if label["Name"] not in truth]
        wrong_types = [_entry(t) for t in types if t["Name"] not in truth_types]
        if wrong_labels or wrong_types:
            self.false_positives.append(
                {
                    "line_number": line.line_number,
                    "source-ref": line.source_ref,
                    "ground_truth": list(line.labels),
                    "labels": wrong_labels,
                    "content_types": wrong_types,
                }
            )

    def add_error(self, line: GroundTruthLine, code: str, message: str) -> None:
        """One image that could not be evaluated: it is reported, not counted in the metrics."""
        self.errors.append(
            {
                "line_number": line.line_number,
                "source-ref": line.source_ref,
                "code": code,
                "message": message,
            }
        )

    def report(self) -> dict[str, Any]:
        label_rows = self.labels.rows()
        for row in label_rows:
            entry = TAXONOMY.get(row["name"])
            row["level"] = entry.level if entry else None
            row["parent"] = entry.parent if entry else None
        report: dict[str, Any] = {
            "min_confidence": self.min_confidence,
            "model_version": self.model_version,
            "images": self.images,
            "failed_images": len(self.errors),
            "labels": [_with_name_first(row) for row in label_rows],
            "micro_average": self.labels.micro_average(),
        }
        if self.content_types_scored:
            report["content_types"] = self.content_types.rows()
        report["false_positives"] = self._false_positive_report()
        report["errors"] = list(self.errors)
        return report

    def _false_positive_report(self) -> list[dict[str, Any]]:
        entries = []
        for entry in self.false_positives:
            entry = dict(entry)
            if not self.content_types_scored:
                entry.pop("content_types")
                if not entry["labels"]:
                    continue
            entries.append(entry)
        return entries


def _entry(prediction: Mapping[str, Any]) -> dict[str, Any]:
    return {"Name": prediction["Name"], "Confidence": prediction["Confidence"]}


def _with_name_first(row: dict[str, Any]) -> dict[str, Any]:
    head = {key: row[key] for key in ("name", "level", "parent")}
    return head | {key: value for key, value in row.items() if key not in head}


# --- Running the model ----------------------------------------------------------------------


def _batches(lines: Iterable[GroundTruthLine], size: int) -> Iterator[list[GroundTruthLine]]:
    batch: list[GroundTruthLine] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    lines: Iterable[GroundTruthLine],
    model,
    evaluation: Evaluation,
    *,
    batch_size: int = 16,
    load_image: Callable[[str], np.ndarray],
    concurrency: int = 16,
) -> Evaluation:
    """Runs ``model`` over the images of ``lines`` in batches and feeds ``evaluation``.

    Loads of the next batch run while the model works on the current one, so at most two
    batches of images are held at once.
    """

    def load(line: GroundTruthLine) -> np.ndarray:
        try:
            return load_image(line.source_ref)
        except ImageProblem:
            raise
        except Exception as exc:  # one bad image costs its line, never the evaluation
            raise ImageProblem(
                ErrorCode.IMAGE_READ_FAILED,
                f"The image could not be loaded: {type(exc).__name__}: {exc}",
            ) from exc

    total = 0
    last_progress = time.monotonic()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="evaluate-load") as pool:
        pending: list[tuple[GroundTruthLine, Future]] = []
        for batch in _batches(lines, batch_size):
            submitted = [(line, pool.submit(load, line)) for line in batch]
            _run_batch(pending, model, evaluation)
            pending = submitted
            total += len(batch)
            if time.monotonic() - last_progress >= _PROGRESS_INTERVAL_SECS:
                last_progress = time.monotonic()
                _LOGGER.info("Loaded %d images so far", total)
        _run_batch(pending, model, evaluation)
    return evaluation


def _run_batch(
    pending: Sequence[tuple[GroundTruthLine, Future]], model, evaluation: Evaluation
) -> None:
    loaded: list[GroundTruthLine] = []
    images: list[np.ndarray] = []
    for line, future in pending:
        try:
            images.append(future.result())
        except ImageProblem as problem:
            evaluation.add_error(line, problem.code, problem.message)
            continue
        loaded.append(line)
    if not images:
        return
    try:
        responses = model.predict(images, evaluation.min_confidence)
    except Exception as exc:  # a failed batch is reported image by image, never dropped
        _LOGGER.exception("The model failed on a batch of %d images", len(images))
        for line in loaded:
            evaluation.add_error(
                line, ErrorCode.INFERENCE_FAILED, f"The model failed: {type(exc).__name__}: {exc}"
            )
        return
    for line, response in zip(loaded, responses):
        evaluation.add(line, response)


def image_loader(s3: S3Settings, concurrency: int) -> Callable[[str], np.ndarray]:
    """``path -> RGB image``; ``s3://`` paths share one boto3 client, built on first use."""
    lock = threading.Lock()
    clients: list[Any] = []

    def s3_client():
        with lock:
            if not clients:
                clients.append(s3.client(concurrency))
            return clients[0]

    def load(path: str) -> np.ndarray:
        client = s3_client() if path.startswith("s3://") else None
        return decode_image(fetch_image_bytes(path, s3_client=client))

    return load


# --- Text report ----------------------------------------------------------------------------


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_COLUMNS = (
    ("Support", "support"),
    ("Predicted", "predicted"),
    ("TP", "true_positives"),
    ("FP", "false_positives"),
    ("FN", "false_negatives"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "f1"),
)


def _table(title: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    cells = [
        [name]
        + [
            _number(row[key]) if key in ("precision", "recall", "f1") else str(row[key])
            for _, key in _COLUMNS
        ]
        for name, row in rows
    ]
    header = [title] + [heading for heading, _ in _COLUMNS]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))
        return "  ".join([first, *rest]).rstrip()

    return [line(header)] + [line(row) for row in cells]


def format_text(report: Mapping[str, Any]) -> str:
    """The report as aligned tables for a terminal."""
    lines = []
    if report.get("manifest"):
        lines.append(f"Manifest:       {report['manifest']}")
    lines += [
        f"Model:          {report['model_version']}",
        f"MinConfidence:  {report['min_confidence']:g}",
        f"Images:         {report['images']} evaluated, "
        f"{report['failed_images']} failed (not counted below)",
        "",
    ]
    if report["labels"]:
        rows = [("  " * ((row["level"] or 1) - 1) + row["name"], row) for row in report["labels"]]
        rows.append(("Micro average", report["micro_average"]))
        lines += _table("Label", rows)
    else:
        lines.append("No moderation label in the ground truth or the predictions.")
    if "content_types" in report:
        lines.append("")
        if report["content_types"]:
            lines += _table("Content type", [(row["name"], row) for row in report["content_types"]])
        else:
            lines.append("No content type in the ground truth or the predictions.")

    false_positives = report["false_positives"]
    lines += ["", f"Images with false positives: {len(false_positives)}"]
    for entry in false_positives:
        found = entry["labels"] + entry.get("content_types", [])
        names = ", ".join(f"{p['Name']} ({p['Confidence']:.1f})" for p in found)
        truth = ", ".join(entry["ground_truth"]) or "none"
        lines.append(f"  line {entry['line_number']}: {entry['source-ref']}")
        lines.append(f"    predicted {names}; ground truth: {truth}")

    errors = report["errors"]
    lines += ["", f"Images that failed: {len(errors)}"]
    for error in errors:
        lines.append(f"  line {error['line_number']}: {error['source-ref']}")
        lines.append(f"    {error['code']}: {error['message']}")
    return "\n".join(lines) + "\n"


# --- Command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # The model is imported only where it is needed: the metrics above work without it.
    from model.backbone import DEFAULT_BACKBONE
    from model.moderation_model import COMPONENT_CHOICES

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
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: aligned tables; json: one JSON document. Default: text.",
    )
    parser.add_argument(
        "--components",
        choices=COMPONENT_CHOICES,
        default="auto",
        help="Model components to run (as the pipeline's --components). Default: auto.",
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help="Image backbone, as the pipeline's --backbone: the embedded efficientnet-lite0, a "
        "TF2 SavedModel (local folder, gs:// or s3:// URI) or a TF Hub handle; 'none' runs "
        f"open_nsfw/NudeNet alone. Default: {DEFAULT_BACKBONE}.",
    )
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
    for flag in ("batch_size", "fetch_concurrency"):
        value = getattr(args, flag)
        if not 1 <= value <= 1024:
            raise ValueError(f"--{flag} must be between 1 and 1024, not {value}")


def _load_model(components: str, backbone: str | None, s3: S3Settings):
    from model.moderation_model import load_moderation_model

    return load_moderation_model(components, backbone=backbone, s3=s3)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.evaluate``; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own message for a bad flag
        return exit_.code if isinstance(exit_.code, int) else 2
    configure_logging()

    s3 = s3_settings_from_arguments(args)
    try:
        _check_arguments(args)
        # A first pass checks every line, so that a bad line fails before any model runs.
        count = sum(1 for _ in read_ground_truth(args.manifest))
        if not count:
            raise ManifestProblem(f"--manifest {args.manifest} has no lines")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        model = _load_model(args.components, args.backbone, s3)
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
            read_ground_truth(args.manifest),
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
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

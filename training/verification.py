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
import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from model.confidence import DEFAULT_MIN_CONFIDENCE, add_confidence_argument, check_confidence
from model.taxonomy import TAXONOMY, TaxonomyLabel, ancestors, custom_label
from pipeline.logs import configure_logging
from storage.outputs import OutputStore
from storage.settings import add_s3_arguments, s3_settings_from_arguments
from training.evaluate import GROUND_TRUTH_KEY
from training.train_adapter import (
    MIN_FALSE_NEGATIVES,
    MIN_FALSE_POSITIVES,
    MIN_TEST_IMAGES,
    meets_training_minimum,
)
from transforms.manifest import MAX_LINE_BYTES, read_manifest_lines

__all__ = [
    "RESULTS_KEY",
    "GroundTruthEntry",
    "InputError",
    "VerificationReport",
    "build_ground_truth",
    "build_parser",
    "declare_custom_labels",
    "format_text",
    "ground_truth_line",
    "main",
    "parse_custom_label",
    "read_lines",
]

_LOGGER = logging.getLogger(__name__)

RESULTS_KEY = "detect-moderation-labels"

RESULTS = "results"
VERIFICATIONS = "verifications"

# A line as the builder takes it: a parsed object, its JSON text, or None for a line too long.
RawLine = Mapping[str, Any] | str | bytes | None


class InputError(NamedTuple):
    """One bad input line: which file, which physical line, what is wrong."""

    file: str  # "results" or "verifications"
    line_number: int
    message: str
    source_ref: str | None = None

    def __str__(self) -> str:
        return f"{self.file} line {self.line_number}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": self.file, "line_number": self.line_number}
        if self.source_ref is not None:
            entry["source-ref"] = self.source_ref
        entry["message"] = self.message
        return entry


class GroundTruthEntry(NamedTuple):
    """One image of the ground truth: its deepest present labels (ancestors implied)."""

    source_ref: str
    labels: tuple[str, ...]


class _LineProblem(ValueError):
    pass


# --- Custom labels ----------------------------------------------------------------------------


def parse_custom_label(spec: str) -> tuple[str, str]:
    """``"NAME=PARENT"`` -> ``(NAME, PARENT)``; ``"NAME="`` declares a level-1 label."""
    name, equals, parent = spec.partition("=")
    if not equals:
        raise ValueError(
            f"--custom_label {spec!r} must be NAME=PARENT (NAME= for a custom level-1 label)"
        )
    return name.strip(), parent.strip()


def declare_custom_labels(
    custom_labels: Mapping[str, str | TaxonomyLabel],
) -> dict[str, TaxonomyLabel]:
    """``{name: parent}`` -> ``{name: TaxonomyLabel}``; ValueError names a bad declaration.

    A parent is a taxonomy label of level 1 or 2 (the custom label's level is the parent's plus
    one, at most 3), or "" for a custom level-1 label. A custom label is not a parent: the
    ground truth names a custom label with its ``ParentName``, and a manifest must say where
    each of its labels belongs without a label that no line names.
    """
    declared: dict[str, TaxonomyLabel] = {}
    for name, value in custom_labels.items():
        parent = value.parent if isinstance(value, TaxonomyLabel) else value
        try:
            declared[name] = custom_label(name, parent)
        except ValueError as exc:
            raise ValueError(f"--custom_label {name}={parent}: {exc}") from None
    return declared


# --- Parsing lines ----------------------------------------------------------------------------


def _numbered(lines: Iterable[Any]) -> Iterator[tuple[int, RawLine]]:
    for position, item in enumerate(lines, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int):
            yield item
        else:
            yield position, item


def _document(raw: RawLine) -> Mapping[str, Any]:
    if raw is None:
        raise _LineProblem(f"longer than {MAX_LINE_BYTES} bytes")
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # json.loads would guess UTF-16 or UTF-32 too
        except UnicodeDecodeError as exc:
            raise _LineProblem(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _LineProblem(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _LineProblem(f"a JSON {type(document).__name__}, not an object")
    return document


def _source_ref(document: Mapping[str, Any]) -> str:
    source_ref = document.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.strip():
        raise _LineProblem('"source-ref" is missing or not a non-empty string')
    return source_ref


def _unknown_label(name: str) -> str:
    return (
        f"unknown label {name!r}: use a name of the moderation taxonomy (model/taxonomy.py) or "
        f'declare a custom label with --custom_label "{name}=PARENT" (PARENT a taxonomy label, '
        f'or empty for a custom level-1 label: --custom_label "{name}=")'
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _predicted(
    document: Mapping[str, Any], threshold: float, known: Mapping[str, TaxonomyLabel]
) -> list[str]:
    response = document.get(RESULTS_KEY)
    if not isinstance(response, dict):
        raise _LineProblem(f'"{RESULTS_KEY}" is missing or not an object')
    entries = response.get("ModerationLabels")
    if not isinstance(entries, list):
        raise _LineProblem(f'"{RESULTS_KEY}.ModerationLabels" is missing or not a list')
    names = []
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Name"), str)
            or not _is_number(entry.get("Confidence"))
        ):
            raise _LineProblem(
                f'each of "{RESULTS_KEY}.ModerationLabels" must be an object with a "Name" '
                'string and a "Confidence" number'
            )
        if entry["Name"] not in known:
            raise _LineProblem(_unknown_label(entry["Name"]))
        if entry["Confidence"] >= threshold:
            names.append(entry["Name"])
    return names


def _verdicts(
    document: Mapping[str, Any], known: Mapping[str, TaxonomyLabel]
) -> tuple[dict[str, bool], list[str]]:
    """The line's ``labels`` and the problems with them (every one, not just the first)."""
    labels = document.get("labels")
    if not isinstance(labels, dict):
        kind = "missing" if labels is None else f"a JSON {type(labels).__name__}"
        raise _LineProblem(f'"labels" must be an object such as {{"Alcohol": true}}, not {kind}')
    problems = []
    for name, verdict in labels.items():
        if name not in known:
            problems.append(_unknown_label(name))
        elif not isinstance(verdict, bool):
            problems.append(
                f"label {name!r} must be true (present) or false (absent), not {verdict!r}"
            )
    return labels, problems


# --- Building the ground truth (pure) -------------------------------------------------------


@dataclass
class VerificationReport:
    """What ``build_ground_truth`` found: the ground truth, per-label counts, totals, errors."""

    confidence_threshold: float
    custom_labels: dict[str, TaxonomyLabel]
    ground_truth: list[GroundTruthEntry] = field(default_factory=list)
    result_lines: int = 0
    verification_lines: int = 0
    images: int = 0  # distinct source-refs of the results
    images_reviewed: int = 0
    errors: list[InputError] = field(default_factory=list)
    true_positives: dict[str, int] = field(default_factory=dict)
    false_positives: dict[str, int] = field(default_factory=dict)
    false_negatives: dict[str, int] = field(default_factory=dict)
    verified: set[str] = field(default_factory=set)  # every label predicted or verified

    @property
    def ok(self) -> bool:
        """No bad line: the ground truth may be written."""
        return not self.errors

    @property
    def images_not_reviewed(self) -> int:
        return self.images - self.images_reviewed

    def label(self, name: str) -> TaxonomyLabel:
        return TAXONOMY.get(name) or self.custom_labels[name]

    def _order(self) -> dict[str, tuple[int, ...]]:
        # Depth first, as the taxonomy is listed; custom labels after their taxonomy siblings.
        index = {name: i for i, name in enumerate([*TAXONOMY, *self.custom_labels])}
        return {
            name: tuple(index[n] for n in reversed(ancestors(name, self.custom_labels)))
            for name in self.verified
        }

    def rows(self) -> list[dict[str, Any]]:
        """Per label (taxonomy order): TP, FP, FN and whether AWS's training minimum is met."""
        order = self._order()
        rows = []
        for name in sorted(self.verified, key=order.__getitem__):
            entry = self.label(name)
            false_positives = self.false_positives.get(name, 0)
            false_negatives = self.false_negatives.get(name, 0)
            rows.append(
                {
                    "name": name,
                    "level": entry.level,
                    "parent": entry.parent,
                    "custom": name in self.custom_labels,
                    "true_positives": self.true_positives.get(name, 0),
                    "false_positives": false_positives,
                    "false_negatives": false_negatives,
                    "meets_training_minimum": meets_training_minimum(
                        false_positives, false_negatives
                    ),
                }
            )
        return rows

    def ground_truth_jsonl(self) -> bytes:
        """The ground-truth manifest, one line per reviewed image."""
        return b"".join(
            ground_truth_line(entry.source_ref, entry.labels, self.custom_labels).encode("utf-8")
            + b"\n"
            for entry in self.ground_truth
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence_threshold": self.confidence_threshold,
            "custom_labels": [
                {"name": e.name, "parent": e.parent, "level": e.level}
                for e in self.custom_labels.values()
            ],
            "result_lines": self.result_lines,
            "verification_lines": self.verification_lines,
            "images": self.images,
            "images_reviewed": self.images_reviewed,
            "images_not_reviewed": self.images_not_reviewed,
            "labels": self.rows(),
            "training_minimum": {
                "false_positives": MIN_FALSE_POSITIVES,
                "false_negatives": MIN_FALSE_NEGATIVES,
            },
            "test_set_minimum_images": MIN_TEST_IMAGES,
            "errors": [error.to_dict() for error in self.errors],
        }


def _count(counter: dict[str, int], names: Iterable[str]) -> None:
    for name in names:
        counter[name] = counter.get(name, 0) + 1


def build_ground_truth(
    results_lines: Iterable[Any],
    verification_lines: Iterable[Any],
    *,
    confidence_threshold: float = DEFAULT_MIN_CONFIDENCE,
    custom_labels: Mapping[str, str | TaxonomyLabel] | None = None,
) -> VerificationReport:
    """The ground truth and counts for a job's results and a reviewer's verifications.

    Each line is a parsed object, its JSON text (str or bytes), None for a line too long to
    read, or ``(line_number, line)``; lines without a number are numbered from 1.
    ``custom_labels`` maps a custom label to its parent ("" for level 1); a bad declaration
    raises ValueError. Bad lines do not raise: they are listed in ``errors`` and left out.
    """
    custom = declare_custom_labels(custom_labels or {})
    known = {**TAXONOMY, **custom}

    def expand(names: Iterable[str]) -> set[str]:
        return {a for name in names for a in ancestors(name, custom)}

    report = VerificationReport(float(confidence_threshold), custom)

    predictions: dict[str, set[str]] = {}
    broken: dict[str, int] = {}  # source-ref -> a results line of it that is bad
    for number, raw in _numbered(results_lines):
        report.result_lines += 1
        source_ref = None
        try:
            document = _document(raw)
            source_ref = _source_ref(document)
            names = _predicted(document, report.confidence_threshold, known)
        except _LineProblem as problem:
            report.errors.append(InputError(RESULTS, number, str(problem), source_ref))
            if source_ref is not None:
                broken.setdefault(source_ref, number)
            continue
        predictions.setdefault(source_ref, set()).update(expand(names))
    report.images = len(predictions.keys() | broken.keys())

    reviewed: dict[str, int] = {}  # source-ref -> its verification line
    for number, raw in _numbered(verification_lines):
        report.verification_lines += 1
        source_ref = None
        try:
            document = _document(raw)
            source_ref = _source_ref(document)
            verdicts, problems = _verdicts(document, known)
            if source_ref in reviewed:
                problems.append(f"{source_ref} was already verified on line {reviewed[source_ref]}")
            elif source_ref in broken:
                problems.append(f"its results line {broken[source_ref]} is bad (see above)")
            elif source_ref not in predictions:
                problems.append(f"{source_ref} is not in the results")
            if problems:
                raise _LineProblem("; ".join(problems))
            reviewed[source_ref] = number
            predicted = predictions[source_ref]
            absent = {name for name, verdict in verdicts.items() if not verdict}
            said_present = {name for name, verdict in verdicts.items() if verdict}
            kept = predicted - absent  # a prediction left unmarked is confirmed
            present = expand(said_present | kept)
            contradictions = [
                f"{name!r} is marked absent but {below!r} below it is "
                + ("marked present" if below in said_present else "predicted and not marked")
                + f"; mark {below!r} false too, or {name!r} true"
                for name in sorted(absent & present)
                for below in sorted(said_present | kept)
                if below != name and name in ancestors(below, custom)
            ]
            if contradictions:
                raise _LineProblem("; ".join(contradictions))
        except _LineProblem as problem:
            report.errors.append(InputError(VERIFICATIONS, number, str(problem), source_ref))
            continue

        report.images_reviewed += 1
        _count(report.true_positives, predicted & present)
        _count(report.false_positives, predicted - present)
        _count(report.false_negatives, present - predicted)
        report.verified |= predicted | present | absent
        parents = {known[name].parent for name in present}
        report.ground_truth.append(
            GroundTruthEntry(source_ref, tuple(name for name in present if name not in parents))
        )

    order = {name: i for i, name in enumerate(known)}
    report.ground_truth = [
        entry._replace(labels=tuple(sorted(entry.labels, key=order.__getitem__)))
        for entry in report.ground_truth
    ]
    return report


def ground_truth_line(
    source_ref: str,
    labels: Iterable[str],
    custom_labels: Mapping[str, TaxonomyLabel] | None = None,
) -> str:
    """One line of an adapter ground-truth manifest (no newline), labels as given.

    A custom label (a key of ``custom_labels``, as ``declare_custom_labels`` returns them)
    carries its ``ParentName``; a taxonomy label is its name alone. No label: a clean image.
    """
    custom = custom_labels or {}
    entries = []
    for name in labels:
        if name in TAXONOMY:
            entries.append({"Name": name})
        elif name in custom:
            entries.append({"Name": name, "ParentName": custom[name].parent})
        else:
            raise ValueError(_unknown_label(name))
    document = {"source-ref": source_ref, GROUND_TRUTH_KEY: {"ModerationLabels": entries}}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --- Reading files --------------------------------------------------------------------------


def read_lines(path: str, flag: str) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw)`` for the non-blank lines of a local, ``s3://`` or ``gs://`` file."""
    try:
        exists = FileSystems.exists(path)
    except Exception as exc:
        raise ValueError(f"{flag} {path} cannot be checked: {exc}") from exc
    if not exists:
        raise ValueError(f"{flag} {path} does not exist")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        yield from read_manifest_lines(stream)


# --- Text report ----------------------------------------------------------------------------


def _bad_lines(count: int) -> str:
    return f"{count} bad line" + ("" if count == 1 else "s")


def format_text(report: Mapping[str, Any]) -> str:
    """The report (``VerificationReport.to_dict()`` plus paths) as text for a terminal."""
    minimum = report["training_minimum"]
    lines = []
    for key, title in (("results", "Results"), ("verifications", "Verifications")):
        if report.get(key):
            lines.append(f"{title + ':':<22}{report[key]}")
    if report.get("output"):
        written = "written" if report.get("written") else "NOT written"
        lines.append(f"{'Ground truth:':<22}{report['output']} ({written})")
    lines += [
        f"{'Confidence threshold:':<22}{report['confidence_threshold']:g}",
        f"{'Images:':<22}{report['images_reviewed']} reviewed, {report['images_not_reviewed']} "
        "not reviewed (left out of the ground truth)",
        f"{'Errors:':<22}{_bad_lines(len(report['errors']))}",
    ]
    if report["custom_labels"]:
        declared = ", ".join(
            f"{c['name']} (level {c['level']}, under {c['parent'] or 'nothing'})"
            for c in report["custom_labels"]
        )
        lines.append(f"{'Custom labels:':<22}{declared}")
    lines.append("")

    if report["labels"]:
        header = ["Label", "TP", "FP", "FN", "Meets training minimum"]
        cells = [
            [
                "  " * (row["level"] - 1) + row["name"] + (" (custom)" if row["custom"] else ""),
                str(row["true_positives"]),
                str(row["false_positives"]),
                str(row["false_negatives"]),
                "yes" if row["meets_training_minimum"] else "no",
            ]
            for row in report["labels"]
        ]
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            numbers = (cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4]))
            lines.append("  ".join([row[0].ljust(widths[0]), *numbers, row[4]]).rstrip())
    else:
        lines.append("No label was predicted or verified.")
    lines += [
        "",
        f"Training minimum (AWS), per label to improve: {minimum['false_positives']} verified "
        f"false positives or {minimum['false_negatives']} verified false negatives.",
        f"An adapter also needs a test set of at least {report['test_set_minimum_images']} images.",
    ]
    return "\n".join(lines) + "\n"


# --- Command line ---------------------------------------------------------------------------


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
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a table for a terminal; json: one JSON document. Default: text.",
    )
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
        return exit_.code if isinstance(exit_.code, int) else 2
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
            f"error: {_bad_lines(len(verification.errors))}; {args.output} was not written",
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
    if args.format == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_text(report), end="")
    return status


if __name__ == "__main__":
    sys.exit(main())

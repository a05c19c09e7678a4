"""The evaluation report (``Evaluation.report()``) as aligned tables for a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_text"]


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

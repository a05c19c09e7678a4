"""The verification report (``VerificationReport.to_dict()``) as text for a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["bad_lines", "format_text"]


def bad_lines(count: int) -> str:
    """ "1 bad line", "2 bad lines"."""
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
        f"{'Errors:':<22}{bad_lines(len(report['errors']))}",
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

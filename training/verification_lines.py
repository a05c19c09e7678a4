"""The lines verification reads: a job's results (predictions) and a reviewer's verdicts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from model.taxonomy import TaxonomyLabel
from training.custom_labels import unknown_label
from training.json_lines import LineProblem, json_object

__all__ = [
    "RESULTS_KEY",
    "RawLine",
    "line_document",
    "line_verdicts",
    "numbered",
    "predicted_names",
]

RESULTS_KEY = "detect-moderation-labels"

# A line as the builder takes it: a parsed object, its JSON text, or None for a line too long.
RawLine = Mapping[str, Any] | str | bytes | None


def numbered(lines: Iterable[Any]) -> Iterator[tuple[int, RawLine]]:
    """``(line_number, line)``: as given where the item is such a pair, else numbered from 1."""
    for position, item in enumerate(lines, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int):
            yield item
        else:
            yield position, item


def line_document(raw: RawLine) -> Mapping[str, Any]:
    """The line's JSON object (a parsed one as it is); ``LineProblem`` says what is wrong."""
    if isinstance(raw, Mapping):
        return raw
    return json_object(raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def predicted_names(
    document: Mapping[str, Any], threshold: float, known: Mapping[str, TaxonomyLabel]
) -> list[str]:
    """The names of a results line's labels whose Confidence is at least ``threshold``."""
    response = document.get(RESULTS_KEY)
    if not isinstance(response, dict):
        raise LineProblem(f'"{RESULTS_KEY}" is missing or not an object')
    entries = response.get("ModerationLabels")
    if not isinstance(entries, list):
        raise LineProblem(f'"{RESULTS_KEY}.ModerationLabels" is missing or not a list')
    names = []
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Name"), str)
            or not _is_number(entry.get("Confidence"))
        ):
            raise LineProblem(
                f'each of "{RESULTS_KEY}.ModerationLabels" must be an object with a "Name" '
                'string and a "Confidence" number'
            )
        if entry["Name"] not in known:
            raise LineProblem(unknown_label(entry["Name"]))
        if entry["Confidence"] >= threshold:
            names.append(entry["Name"])
    return names


def line_verdicts(
    document: Mapping[str, Any], known: Mapping[str, TaxonomyLabel]
) -> tuple[dict[str, bool], list[str]]:
    """The line's ``labels`` and the problems with them (every one, not just the first)."""
    labels = document.get("labels")
    if not isinstance(labels, dict):
        kind = "missing" if labels is None else f"a JSON {type(labels).__name__}"
        raise LineProblem(f'"labels" must be an object such as {{"Alcohol": true}}, not {kind}')
    problems = []
    for name, verdict in labels.items():
        if name not in known:
            problems.append(unknown_label(name))
        elif not isinstance(verdict, bool):
            problems.append(
                f"label {name!r} must be true (present) or false (absent), not {verdict!r}"
            )
    return labels, problems

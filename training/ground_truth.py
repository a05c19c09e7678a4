"""The Custom Moderation (adapter) ground-truth manifest: its lines read, checked and written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from model.taxonomy import CONTENT_TYPES, TAXONOMY, TaxonomyLabel
from storage.reading import split_versioned_uri
from storage.settings import S3Settings
from training.custom_labels import unknown_label
from training.json_lines import LineProblem, json_object, read_lines, source_ref_of

__all__ = [
    "GROUND_TRUTH_KEY",
    "GroundTruthLine",
    "ManifestProblem",
    "ground_truth_line",
    "parse_ground_truth_line",
    "read_ground_truth",
]

GROUND_TRUTH_KEY = "content-moderation-groundtruth"


class ManifestProblem(ValueError):
    """The ground-truth manifest cannot be evaluated; the message names the line."""


class GroundTruthLine(NamedTuple):
    """One line of the ground-truth manifest, as written (labels not yet expanded)."""

    line_number: int
    source_ref: str
    labels: tuple[str, ...]
    content_types: tuple[str, ...] | None  # None: the line has no "ContentTypes" key


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
    try:
        document = json_object(raw)
        source_ref = source_ref_of(document)
    except LineProblem as problem:
        raise ManifestProblem(f"line {number}: {problem}") from None
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
    path: str, custom_labels: dict[str, str] | None = None, s3: S3Settings | None = None
) -> Iterator[GroundTruthLine]:
    """Streams the manifest's lines, relative local ``source-ref`` resolved against its folder
    (``custom_labels``: as for ``parse_ground_truth_line``; ``s3``: what reads an
    ``s3://bucket/key?versionId=ID`` manifest)."""
    for number, raw in read_lines(path, "--manifest", ManifestProblem, s3):
        line = parse_ground_truth_line(number, raw, custom_labels)
        # Relative to the manifest's folder, whatever its version id holds (it may hold a /).
        yield line._replace(source_ref=_resolve(line.source_ref, split_versioned_uri(path)[0]))


def _resolve(source_ref: str, manifest: str) -> str:
    if "://" in source_ref or os.path.isabs(source_ref):
        return source_ref
    if "://" in manifest:
        return manifest.rsplit("/", 1)[0] + "/" + source_ref
    return os.path.join(os.path.dirname(os.path.abspath(manifest)), source_ref)


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
            raise ValueError(unknown_label(name))
    document = {"source-ref": source_ref, GROUND_TRUTH_KEY: {"ModerationLabels": entries}}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))

"""The JSON Lines files the tools read: each non-blank line one JSON object with a source-ref."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from storage.reading import exists, open_for_reading, split_versioned_uri
from storage.settings import S3Settings
from transforms.manifest import MAX_LINE_BYTES, read_manifest_lines

__all__ = ["LineProblem", "json_object", "read_lines", "source_ref_of"]


class LineProblem(ValueError):
    """One line cannot be used; the message says why (the caller names the file and line)."""


def read_lines(
    path: str,
    flag: str,
    problem: type[ValueError] = ValueError,
    s3: S3Settings | None = None,
) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw)`` for the non-blank lines of a local, ``s3://`` or ``gs://`` file
    (``s3://bucket/key?versionId=ID``: that version); a file that is missing or cannot be
    checked raises ``problem``, naming ``flag``."""
    uri, version = split_versioned_uri(path)
    try:
        found = exists(uri, version=version, s3=s3)
    except Exception as exc:
        raise problem(f"{flag} {path} cannot be checked: {exc}") from exc
    if not found:
        raise problem(f"{flag} {path} does not exist")
    with open_for_reading(uri, version=version, s3=s3) as stream:
        yield from read_manifest_lines(stream)


def json_object(raw: bytes | str | None) -> dict[str, Any]:
    """One line's JSON object; ``raw`` is None for a line too long to read (as
    ``read_manifest_lines`` reports it). ``LineProblem`` says what is wrong."""
    if raw is None:
        raise LineProblem(f"longer than {MAX_LINE_BYTES} bytes")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # json.loads would guess UTF-16 or UTF-32 too
        except UnicodeDecodeError as exc:
            raise LineProblem(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LineProblem(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LineProblem(f"a JSON {type(document).__name__}, not an object")
    return document


def source_ref_of(document: Mapping[str, Any]) -> str:
    """The line's ``source-ref``: a non-empty string, else ``LineProblem``."""
    ref = document.get("source-ref")
    if not isinstance(ref, str) or not ref.strip():
        raise LineProblem('"source-ref" is missing or not a non-empty string')
    return ref

"""Reading a JSON Lines manifest with line numbers, and splitting valid lines from invalid ones.

How lines are counted (documented in the README):
- ``line-numer`` is the 1-based physical line number in the file, as an editor shows it.
- Lines that are empty or only whitespace are skipped: they are not manifest lines, so they count
  neither as valid nor as invalid (they still advance the line number).
- A UTF-8 byte order mark at the start of the file and a CR before the LF are ignored.
- A line longer than ``MAX_LINE_BYTES`` (line ending included) is not parsed: it becomes a
  LINE_TOO_LONG error, and only its first bytes are ever held in memory.
- Only ``source-ref`` is turned into a value the job carries: numbers elsewhere on the line stay
  text (a 5,000-digit number is no error), and a ``source-ref`` that cannot be written as UTF-8
  (a lone surrogate escape such as ``"\\udcff"``) is INVALID_SOURCE_REF.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import apache_beam as beam
from apache_beam.metrics import Metrics

from storage.reading import open_for_reading
from storage.settings import S3Settings
from transforms.records import ErrorCode, ManifestError, ManifestLine

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_SOURCE_REF_CHARS",
    "SUPPORTED_SCHEMES",
    "read_manifest_lines",
    "ReadManifest",
    "ValidateManifestLine",
]

MAX_LINE_BYTES = 64 * 1024
MAX_SOURCE_REF_CHARS = 2048
SUPPORTED_SCHEMES = ("s3", "gs", "local")

_BOM = b"\xef\xbb\xbf"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# \Z, not $ (which also matches before a final newline); ASCII, or a case-insensitive match
# would take the KELVIN SIGN for "k" and the long s for "s".
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]\Z", re.IGNORECASE | re.ASCII)
_SKIP_CHUNK = 1 << 20


def read_manifest_lines(
    stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, raw_line)`` for every non-blank line; ``raw_line`` is None when too long.

    Memory is bounded by ``max_line_bytes`` whatever the file holds.
    """
    number = 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if number == 1 and raw.startswith(_BOM):
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                # The BOM is not part of the line: read as many bytes more, or a line that fits
                # would be cut in two (its end numbered as a line of its own).
                raw += stream.readline(len(_BOM))
            raw = raw[len(_BOM) :]
        if len(raw) > max_line_bytes:  # the line ending counts
            if not raw.endswith(b"\n"):
                skip = min(_SKIP_CHUNK, max_line_bytes + 1)
                while True:  # drop the rest of the line without holding it
                    rest = stream.readline(skip)
                    if not rest or rest.endswith(b"\n"):
                        break
            yield number, None
            continue
        if raw.strip():
            yield number, raw


class _ReadManifestFile(beam.DoFn):
    def __init__(self, max_line_bytes: int, s3: S3Settings | None, version: str | None = None):
        self._max_line_bytes = max_line_bytes
        self._s3 = s3 or S3Settings()
        self._version = version
        self._lines = Metrics.counter("manifest", "num_manifest_lines")

    def setup(self):
        self._s3.ensure_filesystems()

    def process(self, path: str) -> Iterable[tuple[int, bytes | None]]:
        with open_for_reading(path, version=self._version, s3=self._s3) as stream:
            for line in read_manifest_lines(stream, self._max_line_bytes):
                self._lines.inc()
                yield line


class ReadManifest(beam.PTransform):
    """The manifest file -> ``(line_number, raw_line)``, spread out for parallel processing.

    The file is read sequentially (line numbers need it); the reshuffle lets the runner spread
    the lines over workers instead of fusing the whole job into the reading step.
    """

    def __init__(
        self,
        path: str,
        max_line_bytes: int = MAX_LINE_BYTES,
        *,
        spread: bool = True,
        s3: S3Settings | None = None,
        version: str | None = None,
    ):
        """``spread=False`` leaves the reshuffle to the caller (who may count the lines before
        it, so that the count is known before the lines are processed). ``s3``: the settings
        that ``s3://`` manifests are read with where the worker has none. ``version``: the S3
        object version to read (default: the latest)."""
        super().__init__()
        self._path = path
        self._version = version
        self._max_line_bytes = max_line_bytes
        self._spread = spread
        self._s3 = s3

    def expand(self, pbegin):
        lines = (
            pbegin
            | "ManifestPath" >> beam.Create([self._path])
            | "ReadLines"
            >> beam.ParDo(_ReadManifestFile(self._max_line_bytes, self._s3, self._version))
        )
        return lines | "SpreadLines" >> beam.Reshuffle() if self._spread else lines


class _Number(str):
    """A JSON number kept as its text: converting it could only fail (Python refuses integers
    of over 4,300 digits) or cost time, and no number on a line is ever used."""


def _parse_json(text: str):
    return json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "string"


class ValidateManifestLine(beam.DoFn):
    """``(line_number, raw_line)`` -> ``ManifestLine``, or ``ManifestError`` on ``TAG_INVALID``."""

    TAG_INVALID = "invalid"

    def __init__(
        self,
        *,
        schemes: Iterable[str] = SUPPORTED_SCHEMES,
        max_line_bytes: int = MAX_LINE_BYTES,
        allowed_prefixes: Iterable[str] | None = None,
    ):
        unknown = set(schemes) - set(SUPPORTED_SCHEMES)
        if unknown:
            raise ValueError(f"unsupported schemes {sorted(unknown)}; use {SUPPORTED_SCHEMES}")
        self._schemes = frozenset(schemes)
        # When set, only images under one of these URI prefixes may be read.
        self._allowed_prefixes = None if allowed_prefixes is None else tuple(allowed_prefixes)
        self._max_line_bytes = max_line_bytes
        self._invalid = Metrics.counter("manifest", "num_invalid_lines")

    def process(self, element: tuple[int, bytes | None]) -> Iterable[ManifestLine]:
        number, raw = element
        outcome = self.parse(number, raw)
        if isinstance(outcome, ManifestError):
            self._invalid.inc()
            yield beam.pvalue.TaggedOutput(self.TAG_INVALID, outcome)
        else:
            yield outcome

    def parse(self, number: int, raw: bytes | None) -> ManifestLine | ManifestError:
        def error(code: str, message: str, source_ref: str | None = None) -> ManifestError:
            return ManifestError(number, code, message, source_ref)

        if raw is None:
            return error(
                ErrorCode.LINE_TOO_LONG,
                f"The line is longer than {self._max_line_bytes} bytes and was not parsed.",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return error(
                ErrorCode.INVALID_ENCODING,
                f"The line is not valid UTF-8 (byte {exc.start}).",
            )
        try:
            document = _parse_json(text)
        except json.JSONDecodeError as exc:
            return error(ErrorCode.INVALID_JSON, f"The line is not valid JSON: {exc}.")
        except RecursionError:
            return error(ErrorCode.INVALID_JSON, "The line nests JSON too deeply.")
        if not isinstance(document, dict):
            return error(
                ErrorCode.NOT_A_JSON_OBJECT,
                f"The line is a JSON {_json_type(document)}, not an object with a source-ref.",
            )
        if "source-ref" not in document:
            return error(ErrorCode.MISSING_SOURCE_REF, 'The line has no "source-ref" key.')
        source_ref = document["source-ref"]
        if not isinstance(source_ref, str) or isinstance(source_ref, _Number):
            return error(
                ErrorCode.INVALID_SOURCE_REF,
                f'"source-ref" must be a string, not {_json_type(source_ref)}.',
            )
        try:
            source_ref.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Nothing could write it (nor Beam's coders carry it): the error shows it escaped.
            return error(
                ErrorCode.INVALID_SOURCE_REF,
                f'"source-ref" holds a lone surrogate ({source_ref[exc.start]!a}), which is not '
                "a character: check the escapes of the line.",
                source_ref=source_ref.encode("utf-8", "backslashreplace").decode("utf-8"),
            )
        problem = self._source_ref_problem(source_ref)
        if problem:
            return error(*problem, source_ref=source_ref)
        if self._allowed_prefixes is not None and not source_ref.startswith(self._allowed_prefixes):
            return error(
                ErrorCode.ACCESS_DENIED,
                "This job may not read images there; allowed: "
                + (", ".join(self._allowed_prefixes) or "none")
                + ".",
                source_ref=source_ref,
            )
        return ManifestLine(number, source_ref)

    def _source_ref_problem(self, source_ref: str) -> tuple[str, str] | None:
        if not source_ref.strip():
            return ErrorCode.INVALID_SOURCE_REF, '"source-ref" is empty.'
        if len(source_ref) > MAX_SOURCE_REF_CHARS:
            return (
                ErrorCode.INVALID_SOURCE_REF,
                f'"source-ref" is longer than {MAX_SOURCE_REF_CHARS} characters.',
            )
        if "\x00" in source_ref:
            return ErrorCode.INVALID_SOURCE_REF, '"source-ref" contains a NUL character.'
        match = _SCHEME.match(source_ref)
        # Schemes are matched as written: Beam's filesystems know "s3", not "S3".
        scheme = match.group(1) if match else "local"
        if scheme not in self._schemes:
            allowed = ", ".join(
                "absolute local paths" if s == "local" else f"{s}://" for s in sorted(self._schemes)
            )
            if scheme == "local":
                return ErrorCode.UNSUPPORTED_SCHEME, f"Local paths are not allowed; use {allowed}."
            return (
                ErrorCode.UNSUPPORTED_SCHEME,
                f"Scheme {scheme}:// is not supported; use {allowed}.",
            )
        if scheme == "local":
            if not source_ref.startswith("/"):
                return ErrorCode.INVALID_SOURCE_REF, "A local path must be absolute."
            return None
        bucket, _, key = source_ref[match.end() :].partition("/")
        if not _BUCKET.match(bucket):
            return ErrorCode.INVALID_SOURCE_REF, f"{bucket!r} is not a valid bucket name."
        if not key or key.endswith("/"):
            return (
                ErrorCode.INVALID_SOURCE_REF,
                '"source-ref" must name an object, not a bucket or folder.',
            )
        return None

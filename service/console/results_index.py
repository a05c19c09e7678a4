"""A finished job's results, indexed once in SQLite so that the console pages any job fast.

A bulk job writes ``results.jsonl`` (one JSON object per analysed image: its ``source-ref`` and
the DetectModerationLabels response) and ``manifest-summary.json`` (counts, and one error entry
per line that was not analysed). The console must page, filter and step through a job of
100,000 lines about as fast as one of 100, so it never reads those files per request: it reads
them from S3 once (``index_job``) into tables of the server's registry file, and pages there.

Tables, beside the registry's own in the same file:

- ``console_result_jobs``: which generation of rows is a job's index;
- ``console_result_generations``: one per build of an index, with its counts, label and
  content-type names, and the summary's statistics;
- ``console_result_lines``: one row per readable line: its position, source-ref, the line as
  it was, and what the filters ask of it (whether it has a label, its lowest and highest label
  confidence, a bit per content type), all in one index, in line order;
- ``console_result_labels``: one row per (line, label name) for every label of the line *and
  its ancestors* (see below), with the highest confidence among the line's labels at or below
  that name;
- ``console_result_errors``: the summary's error entries, in line order.

Building an index writes a new generation in batches, each its own short transaction (the file
is the registry's: its write lock is never held for the whole read of a large object), and only
when every line is in does one transaction make it the job's index and retire the old one;
readers read within one snapshot, so they see the old index or the new one, never half of one.
Retired generations (and those of a build that died, once stale) are then deleted in batches.
Memory does not grow with the number of lines: lines are read, parsed and written a batch at a
time.

Filters (``ResultFilters``), all of them together (AND); items are always in line order:

- ``label``: the image has that label, or any label below it in the taxonomy: "Drugs & Tobacco"
  finds an image whose only label is "Pills" (Pills -> Products -> Drugs & Tobacco). What is
  above a taxonomy label is the taxonomy's to say (``model.taxonomy.ancestors``), whatever the
  line's ``ParentName``; a label that is not in the taxonomy (an adapter's custom label) is
  indexed under its own name and, through its ``ParentName`` (and that label's, when the line
  has it), under the labels above it.
- ``min_confidence`` / ``max_confidence`` (inclusive, 0-100): with ``label``, the confidence of
  that label in the image (the highest among its labels at or below it) lies in the range;
  without ``label``, at least one of the image's labels has a confidence in the range. A
  label without a numeric confidence is in no range.
- ``content_type``: the image has that content type ("Animated", "Illustrated"), at any
  confidence.
- ``no_labels``: the image has no moderation label. With ``label`` or a confidence range it
  matches nothing; with ``content_type`` it gives the unlabelled images of that type.

A line of ``results.jsonl`` that is not a JSON object with a string ``source-ref`` is skipped
and counted (``statistics()["unreadable-result-lines"]``); blank lines are skipped uncounted.
An item's ``position`` is its line number in the file, from 1, so skipped lines leave gaps.
Asked about a job that is not indexed, the readers answer as for an empty index (no items,
zero counts, ``None`` for ``item`` and ``statistics``).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

from model.taxonomy import TAXONOMY, ancestors
from service.registry import JobRecord
from service.store import SqliteStore

__all__ = [
    "NO_FILTERS",
    "ResultFilters",
    "ResultItem",
    "ResultsIndex",
    "ResultsPage",
    "index_job",
]

_LOGGER = logging.getLogger(__name__)

# Lines written per transaction while an index is built, and rows deleted per transaction when
# an old one is removed.
BATCH_LINES = 2000
PURGE_BATCH = 20_000
# A build that has written nothing for this long is taken for dead; its rows may be removed.
STALE_BUILD_SECS = 3600
# Source-refs per statement in documents(): well under SQLite's variable limit.
_IN_CHUNK = 500
# Bytes read from S3 at a time.
_READ_CHUNK = 1 << 16
# How deep a chain of custom labels (ParentName to ParentName) is followed.
_MAX_CUSTOM_DEPTH = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_result_jobs (
    job_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS console_result_generations (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,  -- building | current | retired
    touched REAL NOT NULL,
    indexed_at REAL,
    line_count INTEGER NOT NULL DEFAULT 0,
    image_count INTEGER NOT NULL DEFAULT 0,
    unreadable_lines INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    label_names TEXT NOT NULL DEFAULT '[]',
    content_types TEXT NOT NULL DEFAULT '[]',  -- in the order of their bits in type_mask
    statistics TEXT
);
CREATE INDEX IF NOT EXISTS console_result_generations_by_job
    ON console_result_generations (job_id, state);
-- low and top: the lowest and highest confidence among the line's labels; middle: 1 when
-- another lies between them; type_mask: a bit per content type of the line.
CREATE TABLE IF NOT EXISTS console_result_lines (
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    source_ref TEXT NOT NULL,
    labelled INTEGER NOT NULL,
    low REAL,
    top REAL,
    middle INTEGER NOT NULL,
    type_mask INTEGER NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_result_lines_by_position
    ON console_result_lines (generation, position, labelled, top, low, middle, type_mask);
CREATE INDEX IF NOT EXISTS console_result_lines_by_ref
    ON console_result_lines (generation, source_ref);
-- confidence: the highest among the line's labels at or below the name; own: the highest of
-- the labels of that very name (NULL for an ancestor only); type_mask: the line's.
CREATE TABLE IF NOT EXISTS console_result_labels (
    generation INTEGER NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    confidence REAL,
    own REAL,
    type_mask INTEGER NOT NULL,
    PRIMARY KEY (generation, name, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS console_result_labels_by_line
    ON console_result_labels (generation, position, own) WHERE own IS NOT NULL;
CREATE TABLE IF NOT EXISTS console_result_errors (
    generation INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (generation, seq)
) WITHOUT ROWID;
"""

# Each table of rows, with the key that deletes a batch of one generation's rows.
_ROW_TABLES = {
    "console_result_lines": "rowid",
    "console_result_labels": "name, position",
    "console_result_errors": "seq",
}
# Content types get a bit each in a 63-bit mask; a job with more (none has) loses the rest.
_MAX_CONTENT_TYPES = 63

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("", "0", "false", "off", "no")


def _confidence_bound(value: float | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"the {what} confidence must be a number, not {value!r}")
    if not (0 <= value <= 100):  # NaN fails too
        raise ValueError(f"the {what} confidence must be from 0 to 100, not {value:g}")


def _parse_confidence(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the {what} confidence must be a number, not {text!r}") from None
    if not math.isfinite(value) or not (0 <= value <= 100):
        raise ValueError(f"the {what} confidence must be from 0 to 100, not {text!r}")
    return value


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class ResultFilters:
    """Which items of a job to show; every filter given must hold (see the module's docstring).

    An empty ``label`` or ``content_type`` is no filter. ValueError says what is wrong with a
    confidence outside 0-100 or a minimum above the maximum.
    """

    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    content_type: str | None = None
    no_labels: bool = False

    def __post_init__(self) -> None:
        _confidence_bound(self.min_confidence, "minimum")
        _confidence_bound(self.max_confidence, "maximum")
        low, high = self.min_confidence, self.max_confidence
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"the minimum confidence ({_format_number(low)}) is above the maximum "
                f"({_format_number(high)})"
            )

    def is_empty(self) -> bool:
        return not (
            self.label
            or self.content_type
            or self.no_labels
            or self.min_confidence is not None
            or self.max_confidence is not None
        )

    def to_query(self) -> dict[str, str]:
        """The filters given, as URL query parameters: ``label``, ``min``, ``max``, ``type``,
        ``none=1``."""
        query: dict[str, str] = {}
        if self.label:
            query["label"] = self.label
        if self.min_confidence is not None:
            query["min"] = _format_number(self.min_confidence)
        if self.max_confidence is not None:
            query["max"] = _format_number(self.max_confidence)
        if self.content_type:
            query["type"] = self.content_type
        if self.no_labels:
            query["none"] = "1"
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ResultFilters:
        """The filters of URL query parameters (the inverse of ``to_query``); other parameters
        are ignored, empty ones are no filter. ValueError's message can be shown to the user."""
        none = query.get("none", "").strip().lower()
        if none not in _TRUE + _FALSE:
            raise ValueError(f"'none' must be 1 or 0, not {query.get('none')!r}")
        return cls(
            label=query.get("label") or None,
            min_confidence=_parse_confidence(query.get("min", ""), "minimum"),
            max_confidence=_parse_confidence(query.get("max", ""), "maximum"),
            content_type=query.get("type") or None,
            no_labels=none in _TRUE,
        )


NO_FILTERS = ResultFilters()


@dataclass(frozen=True)
class ResultItem:
    """One line of ``results.jsonl``."""

    position: int  # the line number in results.jsonl, from 1
    source_ref: str
    labels: list[dict]  # the ModerationLabels as in the line
    content_types: list[dict]  # the ContentTypes as in the line
    document: dict  # the whole parsed line


@dataclass(frozen=True)
class ResultsPage:
    """A page of a job's items, and how many items match in all."""

    items: list[ResultItem]
    total: int  # items matching the filters
    offset: int
    limit: int


# Reading a line.


def _response(document: Mapping[str, Any]) -> Mapping[str, Any]:
    response = document.get("detect-moderation-labels")
    return response if isinstance(response, dict) else {}


def _entries(response: Mapping[str, Any], key: str) -> list:
    entries = response.get(key)
    return entries if isinstance(entries, list) else []


def _named(entries: list) -> list[dict]:
    if not entries:
        return entries
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("Name"), str)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@cache
def _taxonomy_chain(name: str) -> tuple[str, ...]:
    return tuple(ancestors(name))


def _chain(name: str, parents: Mapping[str, str]) -> Iterator[str]:
    """``name`` and every label above it: the taxonomy's, or for a custom label its
    ``ParentName`` (as the line gives it) and what is above that."""
    for _ in range(_MAX_CUSTOM_DEPTH):
        if name in TAXONOMY:
            yield from _taxonomy_chain(name)
            return
        yield name
        parent = parents.get(name)
        if not parent or parent == name:
            return
        name = parent


def _label_rows(labels: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """Every label name a line is found under, with the highest confidence among its labels at
    or below that name, and the highest of the labels of that very name (None if none)."""
    parents: dict[str, str] = {}
    for entry in labels:
        parent = entry.get("ParentName")
        if entry["Name"] not in TAXONOMY and isinstance(parent, str):
            parents.setdefault(entry["Name"], parent)
    best: dict[str, float | None] = {}
    own: dict[str, float | None] = {}
    for entry in labels:
        confidence = _number(entry.get("Confidence"))
        _keep_highest(own, entry["Name"], confidence)
        for name in dict.fromkeys(_chain(entry["Name"], parents)):
            _keep_highest(best, name, confidence)
    return {name: (confidence, own.get(name)) for name, confidence in best.items()}


def _keep_highest(best: dict[str, float | None], name: str, confidence: float | None) -> None:
    if name not in best:
        best[name] = confidence
    elif confidence is not None:
        known = best[name]
        if known is None or confidence > known:
            best[name] = confidence


_BLANK: tuple[str, dict] = ("", {})


def _read_line(raw: bytes | str) -> tuple[str, dict] | None:
    """``(text, document)`` of a readable line, ``_BLANK`` for a blank one, else None."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None
    text = raw.strip()
    if not text:
        return _BLANK
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("source-ref"), str):
        return None
    return text, document


def _item(position: int, source_ref: str, text: str) -> ResultItem:
    document = json.loads(text)
    response = _response(document)
    return ResultItem(
        position=position,
        source_ref=source_ref,
        labels=_entries(response, "ModerationLabels"),
        content_types=_entries(response, "ContentTypes"),
        document=document,
    )


def _error_order(numbered: tuple[int, dict]) -> tuple[float, int]:
    seq, entry = numbered
    line = entry.get("line-numer")
    return (line if isinstance(line, int) and not isinstance(line, bool) else math.inf), seq


class _Matching:
    """The SQL that selects the positions matching some filters in one generation of rows.

    With a label, it reads that label's rows (one per line found under it); without, the
    lines' index, whose entries carry each line's lowest and highest confidence and content
    types: either way a count reads at most one narrow index entry per line.
    """

    def __init__(self, current: Mapping[str, Any], filters: ResultFilters):
        self.conditions: list[str] = []
        self.params: list[Any] = [current["generation"]]
        low, high = filters.min_confidence, filters.max_confidence
        ranged = low is not None or high is not None
        self.empty = filters.no_labels and bool(filters.label or ranged)
        if filters.label:
            self.source = "console_result_labels m WHERE m.generation = ? AND m.name = ?"
            self.params.append(filters.label)
            if low is not None:
                self._where("m.confidence >= ?", low)
            if high is not None:
                self._where("m.confidence <= ?", high)
        else:
            self.source = "console_result_lines m WHERE m.generation = ?"
            if filters.no_labels:
                self._where("m.labelled = 0")
            if low is not None and high is not None:
                # Some label lies in the range: the lowest or the highest does, or, when they
                # lie either side of it, one of those between them.
                self._where(
                    "m.top >= ? AND m.low <= ? AND (m.top <= ? OR m.low >= ? OR (m.middle AND"
                    " EXISTS (SELECT 1 FROM console_result_labels x"
                    " WHERE x.generation = m.generation AND x.position = m.position"
                    " AND x.own >= ? AND x.own <= ?)))",
                    low,
                    high,
                    high,
                    low,
                    low,
                    high,
                )
            elif low is not None:
                self._where("m.top >= ?", low)
            elif high is not None:
                self._where("m.low <= ?", high)
        if filters.content_type:
            types = json.loads(current["content_types"])
            if filters.content_type in types:
                self._where("(m.type_mask & ?) != 0", 1 << types.index(filters.content_type))
            else:
                self.empty = True

    def _where(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def select(self, extra: str = "", extra_params: tuple = (), order: str = "") -> tuple:
        conditions = self.conditions + ([extra] if extra else [])
        where = "".join(f" AND {c}" for c in conditions)
        sql = f"SELECT m.position AS position FROM {self.source}{where}"
        if order:
            sql += f" ORDER BY m.position {order}"
        return sql, (*self.params, *extra_params)


class ResultsIndex(SqliteStore):
    """Jobs' results and summaries, indexed for the console."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time):
        super().__init__(path, _SCHEMA, clock=clock)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with super()._connection() as db:
            if not getattr(self._local, "relaxed", False):
                # The index can always be built again from S3: a commit need not wait for the
                # disk (WAL keeps the file consistent; a power cut may lose the last commits).
                db.execute("PRAGMA synchronous=NORMAL")
                self._local.relaxed = True
            yield db

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query in it sees the same index."""
        with self._connection() as db:
            if db.in_transaction:
                yield db
                return
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    @staticmethod
    def _current(db: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        return db.execute(
            "SELECT g.* FROM console_result_jobs j JOIN console_result_generations g"
            " ON g.generation = j.generation WHERE j.job_id = ?",
            (job_id,),
        ).fetchone()

    # Building and removing.

    def is_indexed(self, job_id: str) -> bool:
        with self._connection() as db:
            row = db.execute(
                "SELECT 1 FROM console_result_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return row is not None

    def index(
        self,
        job_id: str,
        results_lines: Iterable[bytes | str],
        summary: Mapping[str, Any] | None,
    ) -> int:
        """Indexes a job's ``results.jsonl`` lines (bytes or text, as read) and its
        ``manifest-summary.json`` (None: none), replacing any earlier index of the job once the
        new one is complete. Returns the number of lines indexed; unreadable lines are skipped
        and counted.

        RuntimeError: the job was forgotten while its index was being built.
        """
        self._purge_job(job_id)
        with self._transaction() as db:
            generation = db.execute(
                "INSERT INTO console_result_generations (job_id, state, touched)"
                " VALUES (?, 'building', ?)",
                (job_id, self._clock()),
            ).lastrowid
        try:
            indexed = self._build(job_id, generation, results_lines, summary)
        except BaseException:
            with suppress(Exception):  # the build's own error is the one to raise
                self._retire(generation)
                self._purge_job(job_id)
            raise
        self._purge_job(job_id)
        return indexed

    def _build(
        self,
        job_id: str,
        generation: int,
        results_lines: Iterable[bytes | str],
        summary: Mapping[str, Any] | None,
    ) -> int:
        label_names: set[str] = set()
        type_bits: dict[str, int] = {}
        lines: list[tuple] = []
        labels: list[tuple] = []
        indexed = unreadable = 0
        for position, raw in enumerate(results_lines, start=1):
            read = _read_line(raw)
            if read is _BLANK:
                continue
            if read is None:
                unreadable += 1
                continue
            text, document = read
            response = _response(document)
            type_mask = 0
            for entry in _named(_entries(response, "ContentTypes")):
                bit = type_bits.get(entry["Name"])
                if bit is None and len(type_bits) < _MAX_CONTENT_TYPES:
                    bit = type_bits[entry["Name"]] = 1 << len(type_bits)
                type_mask |= bit or 0
            named = _named(_entries(response, "ModerationLabels"))
            low = top = None
            middle = False
            if named:
                confidences = [
                    c for c in (_number(e.get("Confidence")) for e in named) if c is not None
                ]
                if confidences:
                    low, top = min(confidences), max(confidences)
                    middle = any(low < c < top for c in confidences)
                for name, (confidence, own) in _label_rows(named).items():
                    labels.append((generation, name, position, confidence, own, type_mask))
                    label_names.add(name)
            lines.append(
                (
                    generation,
                    position,
                    document["source-ref"],
                    int(bool(named)),
                    low,
                    top,
                    int(middle),
                    type_mask,
                    text,
                )
            )
            indexed += 1
            if len(lines) >= BATCH_LINES:
                self._write_batch(generation, lines, labels)
                lines, labels = [], []
        self._write_batch(generation, lines, labels)

        statistics: dict[str, Any] | None = None
        errors: list[tuple[int, dict]] = []
        if summary is not None:
            stats = summary.get("statistics")
            statistics = dict(stats) if isinstance(stats, Mapping) else {}
            entries = summary.get("errors")
            if isinstance(entries, list):
                errors = sorted(
                    ((seq, e) for seq, e in enumerate(entries) if isinstance(e, dict)),
                    key=_error_order,
                )
        for start in range(0, len(errors), BATCH_LINES):
            rows = [
                (generation, start + n, json.dumps(entry, ensure_ascii=False))
                for n, (_, entry) in enumerate(errors[start : start + BATCH_LINES])
            ]
            self._write_batch(generation, [], [], rows)

        with self._transaction() as db:
            self._check_building(db, generation)
            (images,) = db.execute(
                "SELECT COUNT(DISTINCT source_ref) FROM console_result_lines WHERE generation = ?",
                (generation,),
            ).fetchone()
            db.execute(
                "UPDATE console_result_generations SET state = 'retired'"
                " WHERE job_id = ? AND state = 'current'",
                (job_id,),
            )
            db.execute(
                "UPDATE console_result_generations SET state = 'current', touched = ?,"
                " indexed_at = ?, line_count = ?, image_count = ?, unreadable_lines = ?,"
                " error_count = ?, label_names = ?, content_types = ?, statistics = ?"
                " WHERE generation = ?",
                (
                    self._clock(),
                    self._clock(),
                    indexed,
                    images,
                    unreadable,
                    len(errors),
                    json.dumps(sorted(label_names)),
                    json.dumps(list(type_bits)),
                    None if statistics is None else json.dumps(statistics),
                    generation,
                ),
            )
            db.execute(
                "INSERT INTO console_result_jobs (job_id, generation) VALUES (?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET generation = excluded.generation",
                (job_id, generation),
            )
        return indexed

    @staticmethod
    def _check_building(db: sqlite3.Connection, generation: int) -> None:
        row = db.execute(
            "SELECT state FROM console_result_generations WHERE generation = ?", (generation,)
        ).fetchone()
        if row is None or row["state"] != "building":
            raise RuntimeError("the job's results were forgotten while they were being indexed")

    def _write_batch(
        self,
        generation: int,
        lines: list[tuple],
        labels: list[tuple],
        errors: Sequence[tuple] = (),
    ) -> None:
        with self._transaction() as db:
            self._check_building(db, generation)
            db.execute(
                "UPDATE console_result_generations SET touched = ? WHERE generation = ?",
                (self._clock(), generation),
            )
            db.executemany(
                "INSERT INTO console_result_lines (generation, position, source_ref, labelled,"
                " low, top, middle, type_mask, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                lines,
            )
            db.executemany(
                "INSERT INTO console_result_labels"
                " (generation, name, position, confidence, own, type_mask)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                labels,
            )
            db.executemany(
                "INSERT INTO console_result_errors (generation, seq, entry) VALUES (?, ?, ?)",
                errors,
            )

    def _retire(self, generation: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE console_result_generations SET state = 'retired'"
                " WHERE generation = ? AND state = 'building'",
                (generation,),
            )

    def forget(self, job_id: str) -> None:
        """Removes the job's index (and stops a build of it in progress)."""
        with self._transaction() as db:
            db.execute("DELETE FROM console_result_jobs WHERE job_id = ?", (job_id,))
            db.execute(
                "UPDATE console_result_generations SET state = 'retired' WHERE job_id = ?",
                (job_id,),
            )
        self._purge_job(job_id)

    def _purge_job(self, job_id: str) -> None:
        """Deletes the rows of the job's retired generations, and of builds gone stale."""
        with self._transaction() as db:
            db.execute(
                "UPDATE console_result_generations SET state = 'retired'"
                " WHERE job_id = ? AND state = 'building' AND touched < ?",
                (job_id, self._clock() - STALE_BUILD_SECS),
            )
            doomed = [
                row["generation"]
                for row in db.execute(
                    "SELECT generation FROM console_result_generations"
                    " WHERE job_id = ? AND state = 'retired'",
                    (job_id,),
                )
            ]
        for generation in doomed:
            for table, key in _ROW_TABLES.items():
                while True:
                    with self._transaction() as db:
                        deleted = db.execute(
                            f"DELETE FROM {table} WHERE generation = ? AND ({key}) IN"
                            f" (SELECT {key} FROM {table} WHERE generation = ? LIMIT ?)",
                            (generation, generation, PURGE_BATCH),
                        ).rowcount
                    if deleted < PURGE_BATCH:
                        break
            with self._transaction() as db:
                db.execute(
                    "DELETE FROM console_result_generations WHERE generation = ?", (generation,)
                )

    # Reading.

    def page(
        self,
        job_id: str,
        filters: ResultFilters = NO_FILTERS,
        *,
        offset: int = 0,
        limit: int = 48,
    ) -> ResultsPage:
        """The items matching ``filters``, in line order, from ``offset``; and how many match."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit cannot be negative")
        filters = NO_FILTERS if filters is None else filters
        with self._snapshot() as db:
            current = self._current(db, job_id)
            if current is None:
                return ResultsPage([], 0, offset, limit)
            generation = current["generation"]
            matching = _Matching(current, filters)
            if matching.empty:
                return ResultsPage([], 0, offset, limit)
            if filters.is_empty():
                total = current["line_count"]
            else:
                sql, params = matching.select()
                (total,) = db.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()
            sql, params = matching.select(order="ASC")
            rows = db.execute(
                f"SELECT l.position, l.source_ref, l.document FROM ({sql} LIMIT ? OFFSET ?) p"
                " CROSS JOIN console_result_lines l"
                " ON l.generation = ? AND l.position = p.position"
                " ORDER BY l.position",
                (*params, limit, offset, generation),
            ).fetchall()
        items = [_item(row["position"], row["source_ref"], row["document"]) for row in rows]
        return ResultsPage(items, total, offset, limit)

    def item(self, job_id: str, position: int) -> ResultItem | None:
        """The line at ``position`` (from 1), or None."""
        with self._snapshot() as db:
            row = db.execute(
                "SELECT l.position, l.source_ref, l.document FROM console_result_jobs j"
                " JOIN console_result_lines l ON l.generation = j.generation"
                " WHERE j.job_id = ? AND l.position = ?",
                (job_id, position),
            ).fetchone()
        return None if row is None else _item(row["position"], row["source_ref"], row["document"])

    def neighbours(
        self, job_id: str, position: int, filters: ResultFilters = NO_FILTERS
    ) -> tuple[int | None, int | None]:
        """The positions of the matching items just before and just after ``position`` (which
        need not match), for stepping through them one at a time."""
        filters = NO_FILTERS if filters is None else filters
        with self._snapshot() as db:
            current = self._current(db, job_id)
            if current is None:
                return None, None
            matching = _Matching(current, filters)
            if matching.empty:
                return None, None
            found: list[int | None] = []
            for condition, order in (("m.position < ?", "DESC"), ("m.position > ?", "ASC")):
                sql, params = matching.select(condition, (position,), order)
                row = db.execute(f"{sql} LIMIT 1", params).fetchone()
                found.append(None if row is None else row[0])
        return found[0], found[1]

    def documents(self, job_id: str, source_refs: Collection[str]) -> list[tuple[int, dict]]:
        """``(line number, parsed line)`` of every line with one of ``source_refs``, in line
        order."""
        refs = list(dict.fromkeys(source_refs))
        found: list[tuple[int, str]] = []
        with self._snapshot() as db:
            current = self._current(db, job_id)
            if current is None:
                return []
            for start in range(0, len(refs), _IN_CHUNK):
                chunk = refs[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.extend(
                    (row[0], row[1])
                    for row in db.execute(
                        "SELECT position, document FROM console_result_lines"
                        f" WHERE generation = ? AND source_ref IN ({marks})",
                        (current["generation"], *chunk),
                    )
                )
        found.sort(key=lambda pair: pair[0])
        return [(position, json.loads(text)) for position, text in found]

    def _summary_field(self, job_id: str, field: str) -> Any:
        with self._connection() as db:
            current = self._current(db, job_id)
        return None if current is None else current[field]

    def image_count(self, job_id: str) -> int:
        """How many distinct source-refs the job's lines have."""
        return self._summary_field(job_id, "image_count") or 0

    def line_count(self, job_id: str) -> int:
        """How many lines are indexed (unreadable ones not counted)."""
        return self._summary_field(job_id, "line_count") or 0

    def label_names(self, job_id: str) -> list[str]:
        """Every label name the job's items are found under (ancestors included): taxonomy
        labels in taxonomy order, then any others, sorted."""
        names = set(json.loads(self._summary_field(job_id, "label_names") or "[]"))
        known = [name for name in TAXONOMY if name in names]
        return known + sorted(names.difference(TAXONOMY))

    def content_type_names(self, job_id: str) -> list[str]:
        """Every content type of the job's items, sorted."""
        return sorted(json.loads(self._summary_field(job_id, "content_types") or "[]"))

    def errors(self, job_id: str, *, offset: int = 0, limit: int = 100) -> tuple[list[dict], int]:
        """The summary's error entries (as they were), in line order, from ``offset``; and how
        many there are."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit cannot be negative")
        with self._snapshot() as db:
            current = self._current(db, job_id)
            if current is None:
                return [], 0
            rows = db.execute(
                "SELECT entry FROM console_result_errors WHERE generation = ?"
                " ORDER BY seq LIMIT ? OFFSET ?",
                (current["generation"], limit, offset),
            ).fetchall()
        return [json.loads(row[0]) for row in rows], current["error_count"]

    def statistics(self, job_id: str) -> dict[str, Any] | None:
        """The summary's ``statistics`` (empty without a summary) and
        ``unreadable-result-lines``; None when the job is not indexed."""
        with self._connection() as db:
            current = self._current(db, job_id)
        if current is None:
            return None
        statistics = json.loads(current["statistics"] or "{}")
        statistics["unreadable-result-lines"] = current["unreadable_lines"]
        return statistics


def _missing(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404", "NotFound")


def index_job(index: ResultsIndex, job: JobRecord, s3_client: Any) -> int:
    """Reads a SUCCEEDED job's results and summary from S3 and indexes them; returns the number
    of lines indexed. A missing summary indexes with none.

    ValueError: the job has no results (yet).
    """
    from botocore.exceptions import ClientError

    if job.status != "SUCCEEDED" or not job.results_key:
        raise ValueError(f"job {job.job_id} has no results to index (it is {job.status})")
    bucket = job.request["OutputConfig"]["S3Bucket"]
    summary: dict[str, Any] | None = None
    if job.summary_key:
        try:
            body = s3_client.get_object(Bucket=bucket, Key=job.summary_key)["Body"]
        except ClientError as error:
            if not _missing(error):
                raise
        else:
            with body:
                raw = body.read()
            try:
                summary = json.loads(raw)
            except ValueError:
                _LOGGER.warning("job %s: manifest-summary.json is not JSON", job.job_id)
            if not isinstance(summary, dict):
                summary = None
    body = s3_client.get_object(Bucket=bucket, Key=job.results_key)["Body"]
    with body:
        return index.index(job.job_id, body.iter_lines(chunk_size=_READ_CHUNK), summary)

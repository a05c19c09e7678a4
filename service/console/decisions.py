"""Reviewers' verdicts on a job's predictions, kept in the registry as each one is made.

In the console a reviewer marks each image's predicted labels present or absent and adds the
labels the model missed. Every decision is saved when it is made, so nothing is lost when a
browser closes; several reviewers may work on one job at once, so each save is a
compare-and-set on the image's revision: a reviewer who saved on top of a decision they had not
seen gets ``StaleDecision`` (with what is stored now) instead of silently overwriting it. Every
write is also appended to a history that says who decided what, and when.

A decision's ``labels`` are those of a verification line of ``python -m training.verification``
(true = present, false = absent, a predicted label not named is confirmed present), and the
export and the statistics go through ``training.verification_report.build_ground_truth``: the
command line and the console share one implementation of the counting and of the manifest.

Revisions only grow: withdrawing a decision (back to "not reviewed") is a change too, so a
reviewer who read revision 1 cannot overwrite a decision that was withdrawn and made again
since. A reviewer who sees an image not reviewed passes ``expected_revision=0``.

The tables (prefixed ``console_verification_``) live in the server's SQLite file beside the
job and project registries; like them they are safe to share between threads and processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from model.taxonomy import TAXONOMY
from service.store import SqliteStore
from training.custom_labels import declare_custom_labels
from training.label_selection import MIN_FALSE_NEGATIVES, MIN_FALSE_POSITIVES
from training.verification_lines import line_verdicts
from training.verification_report import VerificationReport, build_ground_truth

__all__ = [
    "Decision",
    "InvalidDecision",
    "StaleDecision",
    "VerificationStore",
    "can_train",
    "check_decision",
    "training_readiness",
    "verification_report",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_verification_decisions (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    labels TEXT,
    reviewer TEXT NOT NULL,
    decided_at REAL NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (job_id, source_ref)
);
CREATE INDEX IF NOT EXISTS console_verification_decisions_by_job
    ON console_verification_decisions (job_id, id);
CREATE TABLE IF NOT EXISTS console_verification_history (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    labels TEXT,
    reviewer TEXT NOT NULL,
    decided_at REAL NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (job_id, source_ref, revision)
);
CREATE TABLE IF NOT EXISTS console_verification_custom_labels (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    parent TEXT NOT NULL,
    UNIQUE (job_id, name)
);
"""

# Source-refs per SELECT ... IN (...): well under SQLite's limit on bound parameters.
_IN_CHUNK = 500
# Decisions read per query while iterating a job's decisions.
_PAGE = 1000


class InvalidDecision(ValueError):
    """A decision or declaration the console refuses; the message is for the reviewer."""


@dataclass(frozen=True)
class Decision:
    """A reviewer's verdicts on one image of a job, as stored now."""

    job_id: str
    source_ref: str
    labels: dict[str, bool]  # as a verification line's "labels"
    reviewer: str
    decided_at: float  # epoch seconds
    revision: int  # 1 for the first decision on the image, +1 each change (withdrawals too)

    def to_line(self) -> dict[str, Any]:
        """The verification line of ``python -m training.verification``."""
        return {"source-ref": self.source_ref, "labels": dict(self.labels)}

    def to_json(self) -> dict[str, Any]:
        """What the browser gets."""
        return {
            "sourceRef": self.source_ref,
            "labels": dict(self.labels),
            "reviewer": self.reviewer,
            "decidedAt": self.decided_at,
            "revision": self.revision,
        }

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Decision:
        return cls(
            job_id=row["job_id"],
            source_ref=row["source_ref"],
            labels=json.loads(row["labels"]),
            reviewer=row["reviewer"],
            decided_at=row["decided_at"],
            revision=row["revision"],
        )


class StaleDecision(Exception):
    """Someone else saved a decision for this image since the caller read it."""

    def __init__(self, current: Decision | None, source_ref: str = ""):
        self.current = current  # what is stored now (None: the image is not reviewed now)
        self.source_ref = current.source_ref if current is not None else source_ref
        super().__init__(current, self.source_ref)

    def __str__(self) -> str:
        if self.current is None:
            return (
                f"{self.source_ref} is not reviewed any more: another reviewer withdrew its "
                "decision since you read it"
            )
        return (
            f"{self.source_ref} was decided by {self.current.reviewer} (revision "
            f"{self.current.revision}) since you read it; look at their decision and save again"
        )

    def __reduce__(self):  # pickled as constructed, across processes
        return (type(self), (self.current, self.source_ref))


def _live(row: sqlite3.Row | None) -> Decision | None:
    """The decision a row holds; None for no row, or a withdrawn decision."""
    if row is None or row["labels"] is None:
        return None
    return Decision._from_row(row)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidDecision(f"{what} must be a non-empty string, not {value!r}")
    return value


def _revision(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidDecision(
            f"expected_revision must be the revision you read (0: not reviewed), not {value!r}"
        )
    return value


class VerificationStore(SqliteStore):
    """Decisions, their history and the custom labels declared, per job, in SQLite."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time):
        super().__init__(path, _SCHEMA, clock=clock)

    # Decisions.

    def decide(
        self,
        job_id: str,
        source_ref: str,
        labels: Mapping[str, bool],
        *,
        reviewer: str,
        expected_revision: int,
    ) -> Decision:
        """Saves ``labels`` as the decision on the image; ``expected_revision`` is the revision
        the reviewer saw (0: not reviewed). StaleDecision if another was saved since;
        InvalidDecision for a label neither of the taxonomy nor declared for the job, or a
        verdict that is not a bool (``check_decision`` also checks them against the image's
        predictions)."""
        _text(job_id, "job_id")
        _text(source_ref, "source_ref")
        _text(reviewer, "reviewer")
        expected_revision = _revision(expected_revision)
        if not isinstance(labels, Mapping):
            raise InvalidDecision(
                f'"labels" must be an object such as {{"Alcohol": true}}, not '
                f"{type(labels).__name__}"
            )
        verdicts = dict(labels)
        with self._transaction() as db:
            known = {**TAXONOMY, **self._declared(db, job_id)}
            _, problems = line_verdicts({"labels": verdicts}, known)
            if problems:
                raise InvalidDecision("; ".join(problems))
            revision = self._compare(db, job_id, source_ref, expected_revision) + 1
            decision = Decision(job_id, source_ref, verdicts, reviewer, self._clock(), revision)
            self._write(db, decision, json.dumps(verdicts, ensure_ascii=False))
        return decision

    def withdraw(
        self, job_id: str, source_ref: str, *, reviewer: str, expected_revision: int
    ) -> None:
        """Takes the image's decision back: it is not reviewed any more. StaleDecision if
        another was saved since the reviewer read ``expected_revision``; InvalidDecision if the
        image is not reviewed. Recorded in the history with labels None."""
        _text(job_id, "job_id")
        _text(source_ref, "source_ref")
        _text(reviewer, "reviewer")
        expected_revision = _revision(expected_revision)
        with self._transaction() as db:
            stored = self._compare(db, job_id, source_ref, expected_revision)
            if expected_revision == 0:
                raise InvalidDecision(f"{source_ref} is not reviewed: there is nothing to undo")
            decision = Decision(job_id, source_ref, {}, reviewer, self._clock(), stored + 1)
            self._write(db, decision, None)

    def _compare(
        self, db: sqlite3.Connection, job_id: str, source_ref: str, expected_revision: int
    ) -> int:
        """The revision stored now (withdrawals included); StaleDecision unless the reviewer
        saw the decision stored now (``expected_revision``, 0 for none)."""
        row = db.execute(
            "SELECT * FROM console_verification_decisions WHERE job_id = ? AND source_ref = ?",
            (job_id, source_ref),
        ).fetchone()
        current = _live(row)
        if (current.revision if current is not None else 0) != expected_revision:
            raise StaleDecision(current, source_ref)
        return row["revision"] if row is not None else 0

    @staticmethod
    def _write(db: sqlite3.Connection, decision: Decision, labels: str | None) -> None:
        values = (
            decision.job_id,
            decision.source_ref,
            labels,
            decision.reviewer,
            decision.decided_at,
            decision.revision,
        )
        # The row keeps its id: the image keeps its place in the order first decided.
        db.execute(
            "INSERT INTO console_verification_decisions "
            "(job_id, source_ref, labels, reviewer, decided_at, revision) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, source_ref) DO UPDATE SET "
            "labels = excluded.labels, reviewer = excluded.reviewer, "
            "decided_at = excluded.decided_at, revision = excluded.revision",
            values,
        )
        db.execute(
            "INSERT INTO console_verification_history "
            "(job_id, source_ref, labels, reviewer, decided_at, revision) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            values,
        )

    def get(self, job_id: str, source_refs: Collection[str]) -> dict[str, Decision]:
        """The decisions on these images, by source-ref; an image not reviewed is left out."""
        refs = sorted(set(source_refs))
        found: dict[str, Decision] = {}
        with self._connection() as db:
            for start in range(0, len(refs), _IN_CHUNK):
                chunk = refs[start : start + _IN_CHUNK]
                rows = db.execute(
                    "SELECT * FROM console_verification_decisions WHERE job_id = ? AND "
                    f"labels IS NOT NULL AND source_ref IN ({', '.join('?' for _ in chunk)})",
                    (job_id, *chunk),
                ).fetchall()
                found.update((row["source_ref"], Decision._from_row(row)) for row in rows)
        return found

    def decision(self, job_id: str, source_ref: str) -> Decision | None:
        """The decision on the image; None if it is not reviewed."""
        with self._connection() as db:
            row = db.execute(
                "SELECT * FROM console_verification_decisions WHERE job_id = ? AND source_ref = ?",
                (job_id, source_ref),
            ).fetchone()
        return _live(row)

    def count(self, job_id: str) -> int:
        """How many images of the job are reviewed."""
        with self._connection() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM console_verification_decisions "
                "WHERE job_id = ? AND labels IS NOT NULL",
                (job_id,),
            ).fetchone()
        return count

    def decisions(self, job_id: str) -> Iterator[Decision]:
        """The job's decisions in the order the images were first decided (a decision changed,
        or withdrawn and made again, keeps its place). Read a page at a time."""
        after = 0
        while True:
            with self._connection() as db:
                rows = db.execute(
                    "SELECT * FROM console_verification_decisions "
                    "WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                    (job_id, after, _PAGE),
                ).fetchall()
            for row in rows:
                decision = _live(row)
                if decision is not None:
                    yield decision
            if len(rows) < _PAGE:
                return
            after = rows[-1]["id"]

    def history(self, job_id: str, source_ref: str) -> list[dict[str, Any]]:
        """Every write on the image, oldest first, as ``Decision.to_json`` spells it; a
        withdrawal has ``"labels": None``."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM console_verification_history WHERE job_id = ? AND source_ref = ? "
                "ORDER BY revision",
                (job_id, source_ref),
            ).fetchall()
        return [
            {
                "sourceRef": row["source_ref"],
                "labels": None if row["labels"] is None else json.loads(row["labels"]),
                "reviewer": row["reviewer"],
                "decidedAt": row["decided_at"],
                "revision": row["revision"],
            }
            for row in rows
        ]

    # Custom labels.

    @staticmethod
    def _declared(db: sqlite3.Connection, job_id: str) -> dict[str, str]:
        rows = db.execute(
            "SELECT name, parent FROM console_verification_custom_labels WHERE job_id = ? "
            "ORDER BY id",
            (job_id,),
        ).fetchall()
        return {row["name"]: row["parent"] for row in rows}

    def custom_labels(self, job_id: str) -> dict[str, str]:
        """The job's custom labels, name -> parent ("" for level 1), in declaration order."""
        with self._connection() as db:
            return self._declared(db, job_id)

    def declare_custom_label(self, job_id: str, name: str, parent: str) -> None:
        """Declares a label outside the taxonomy for the job, under ``parent`` (a taxonomy
        label of level 1 or 2, or "" for level 1). Declaring it again under the same parent
        does nothing; under another, or a bad declaration, is InvalidDecision."""
        _text(job_id, "job_id")
        if not isinstance(name, str) or not name.strip():
            raise InvalidDecision("a custom label needs a name")
        if not isinstance(parent, str):
            raise InvalidDecision(f"the parent of {name.strip()!r} must be a label name or empty")
        name, parent = name.strip(), parent.strip()
        with self._transaction() as db:
            declared = self._declared(db, job_id)
            if name in declared:
                if declared[name] == parent:
                    return
                where = f"under {declared[name]!r}" if declared[name] else "at level 1"
                raise InvalidDecision(
                    f"custom label {name!r} is already declared {where}; a label has one parent"
                )
            try:
                declare_custom_labels({**declared, name: parent})
            except ValueError as exc:
                message = str(exc)
                prefix = f"--custom_label {name}={parent}: "
                raise InvalidDecision(message.removeprefix(prefix)) from None
            db.execute(
                "INSERT INTO console_verification_custom_labels (job_id, name, parent) "
                "VALUES (?, ?, ?)",
                (job_id, name, parent),
            )

    def forget(self, job_id: str) -> None:
        """Deletes the job's decisions, their history and its custom labels."""
        with self._transaction() as db:
            for table in ("decisions", "history", "custom_labels"):
                db.execute(f"DELETE FROM console_verification_{table} WHERE job_id = ?", (job_id,))


# What the builder makes of decisions.


def check_decision(
    document: Mapping[str, Any],
    labels: Mapping[str, bool],
    *,
    confidence_threshold: float,
    custom_labels: Mapping[str, str],
) -> None:
    """InvalidDecision, with the builder's message, if ``build_ground_truth`` would refuse
    these verdicts on the image whose results line is ``document`` (an unknown label, a verdict
    that is not a bool, a label marked absent while one below it stays present, ...)."""
    line = {
        "source-ref": document.get("source-ref"),
        "labels": dict(labels) if isinstance(labels, Mapping) else labels,
    }
    report = build_ground_truth(
        [document],
        [line],
        confidence_threshold=confidence_threshold,
        custom_labels=custom_labels,
    )
    broken = [error.message for error in report.errors if error.file == "results"]
    if broken:
        raise InvalidDecision(
            f"the results of {line['source-ref']} cannot be read: {'; '.join(broken)}"
        )
    if report.errors:
        # InputError.message is the text after "verifications line 1: ".
        raise InvalidDecision("; ".join(error.message for error in report.errors))


def verification_report(
    documents: Iterable[tuple[int, Mapping[str, Any]]],
    decisions: Iterable[Decision],
    *,
    confidence_threshold: float,
    custom_labels: Mapping[str, str],
) -> VerificationReport:
    """``build_ground_truth`` over the results lines of the reviewed images (``(line number,
    parsed line)``, from the job's results) and the decisions as verification lines, in order.

    The report's ``images`` counts the results lines given, so ``images_not_reviewed`` is
    whatever of those has no decision, not the job's whole count.
    """
    return build_ground_truth(
        documents,
        [decision.to_line() for decision in decisions],
        confidence_threshold=confidence_threshold,
        custom_labels=custom_labels,
    )


def _more(count: int, what: str) -> str:
    return f"{count} more {what}" + ("" if count == 1 else "s")


def training_readiness(report: VerificationReport) -> list[dict[str, Any]]:
    """Per label of ``report.rows()``: its counts, whether AWS's training minimum is met and,
    if not, what is ``"missing"`` ("6 more false positives or 50 more false negatives")."""
    readiness = []
    for row in report.rows():
        missing = ""
        if not row["meets_training_minimum"]:
            missing = (
                _more(MIN_FALSE_POSITIVES - row["false_positives"], "false positive")
                + " or "
                + _more(MIN_FALSE_NEGATIVES - row["false_negatives"], "false negative")
            )
        readiness.append(
            {
                "name": row["name"],
                "parent": row["parent"],
                "level": row["level"],
                "custom": row["custom"],
                "true_positives": row["true_positives"],
                "false_positives": row["false_positives"],
                "false_negatives": row["false_negatives"],
                "meets_training_minimum": row["meets_training_minimum"],
                "missing": missing,
            }
        )
    return readiness


def can_train(report: VerificationReport) -> tuple[bool, str]:
    """Whether an adapter can be trained on the verified ground truth, and a sentence why
    (or why not)."""
    if report.errors:
        count, error = len(report.errors), report.errors[0]
        what = error.message  # a decision's line number means nothing in the console
        if error.file != "verifications":
            what = str(error)
        elif error.source_ref and error.source_ref not in what:
            what = f"{error.source_ref}: {what}"
        return False, f"{count} decision{'' if count == 1 else 's'} cannot be exported: {what}"
    if not report.images_reviewed:
        return False, "No image has been verified yet."
    ready = [row["name"] for row in report.rows() if row["meets_training_minimum"]]
    if not ready:
        return False, (
            f"No label has {MIN_FALSE_POSITIVES} verified false positives or "
            f"{MIN_FALSE_NEGATIVES} false negatives yet."
        )
    labels = "label meets" if len(ready) == 1 else "labels meet"
    return True, f"{len(ready)} {labels} the training minimum: {', '.join(ready)}."

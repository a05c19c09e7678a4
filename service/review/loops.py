"""Human loops: one review of one data object by ``TaskCount`` reviewers, as A2I keeps them.

A loop is created by DetectModerationLabels when its flow definition's activation conditions are
met, or by the A2I runtime's StartHumanLoop. It is ``InProgress`` until as many reviewers as the
flow's ``TaskCount`` have answered (``Completed``), it is stopped (``Stopped``), or it outlives
the flow's ``TaskAvailabilityLifetimeInSeconds`` unanswered (``Failed``, ``Expired``).

Reviewers work on task slots: a reviewer *claims* a slot of a loop (``claim``), which keeps it
for the flow's ``TaskTimeLimitInSeconds``, and answers before the claim runs out (``answer``);
an abandoned claim frees its slot when it expires. A reviewer answers a loop at most once.

Everything a loop needs from its flow (task count, lifetime, time limit, output path, KMS key)
is copied onto its row when it is created, so that deleting the flow breaks none of its loops.
The tables live in the registry's SQLite file, prefixed ``review_loop_``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from service.store import SqliteStore, listing_scope

__all__ = [
    "DEFAULT_MAX_OPEN_LOOPS",
    "EXPIRED_FAILURE_CODE",
    "STATUSES",
    "Claim",
    "HumanLoop",
    "HumanLoopStore",
    "LoopExists",
    "LoopInProgress",
    "LoopNotFound",
    "LoopNotOpen",
    "LoopQuotaExceeded",
    "arn_of_loop",
    "a2i_time",
]

STATUSES = ("InProgress", "Completed", "Stopping", "Stopped", "Failed")
IN_PROGRESS, COMPLETED, STOPPING, STOPPED, FAILED = STATUSES

DEFAULT_MAX_OPEN_LOOPS = 1000

# DescribeHumanLoop's FailureCode for a loop nobody finished in time (one of ValidationError,
# Expired, InternalError, as A2I's API reference lists them).
EXPIRED_FAILURE_CODE = "Expired"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_loop_loops (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    flow_definition_arn TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    completed REAL,
    failure_reason TEXT,
    failure_code TEXT,
    input_content TEXT NOT NULL,
    request_source TEXT,
    data_attributes TEXT,
    task_count INTEGER NOT NULL,
    availability_lifetime_secs INTEGER NOT NULL,
    time_limit_secs INTEGER NOT NULL,
    output_path TEXT NOT NULL,
    kms_key_id TEXT,
    output_uri TEXT
);
CREATE INDEX IF NOT EXISTS review_loop_loops_by_flow
    ON review_loop_loops (flow_definition_arn, created, name);
CREATE INDEX IF NOT EXISTS review_loop_loops_by_status ON review_loop_loops (status, created);
CREATE TABLE IF NOT EXISTS review_loop_claims (
    loop_name TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (loop_name, reviewer)
);
CREATE TABLE IF NOT EXISTS review_loop_answers (
    loop_name TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    accepted REAL NOT NULL,
    submitted REAL NOT NULL,
    answer TEXT NOT NULL,
    PRIMARY KEY (loop_name, reviewer)
);
"""


class LoopNotFound(LookupError):
    """No human loop has this name (or it was deleted)."""


class LoopExists(ValueError):
    """A human loop of this name exists already."""


class LoopInProgress(ValueError):
    """The loop is still InProgress: only Completed, Failed and Stopped loops can be deleted."""


class LoopNotOpen(ValueError):
    """The loop takes no claim or answer from this reviewer: it is not InProgress (or has
    expired), its task slots are all taken, the reviewer answered it already, or the reviewer's
    claim has run out."""


class LoopQuotaExceeded(RuntimeError):
    """Too many loops are InProgress; carries the members of Rekognition's
    ``HumanLoopQuotaExceededException``."""

    def __init__(
        self,
        message: str,
        *,
        resource_type: str = "HumanLoop",
        quota_code: str = "max_open_human_loops",
        service_code: str = "sagemaker",
    ) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.quota_code = quota_code
        self.service_code = service_code


def arn_of_loop(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account_id}:human-loop/{name}"


def a2i_time(epoch: float) -> str:
    """A time as A2I's output data writes it: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class HumanLoop:
    """One human loop as stored, with the answers given so far."""

    name: str
    arn: str
    flow_definition_arn: str
    status: str
    created: float
    completed: float | None
    failure_reason: str | None
    failure_code: str | None
    # What A2I keeps as inputContent: for a loop of DetectModerationLabels, the request and
    # response and the activation results; for StartHumanLoop, the InputContent as given.
    input_content: dict[str, Any]
    task_count: int
    # Each {"acceptanceTime", "answerContent", "submissionTime", "timeSpentInSeconds",
    # "workerId"}, as in A2I's output data; in the order given.
    answers: list[dict[str, Any]] = field(default_factory=list)
    output_uri: str | None = None
    flow_name: str = ""
    # awsManagedHumanLoopRequestSource of a built-in task type's loop; None for StartHumanLoop.
    request_source: str | None = None
    data_attributes: dict[str, Any] | None = None
    availability_lifetime_secs: int = 0
    time_limit_secs: int = 0
    output_path: str = ""
    kms_key_id: str | None = None

    @property
    def expires_at(self) -> float:
        """When the loop fails unless it is finished: creation plus the task lifetime."""
        return self.created + self.availability_lifetime_secs

    def to_api(self) -> dict[str, Any]:
        """The DescribeHumanLoop response."""
        answer: dict[str, Any] = {"CreationTime": self.created}
        if self.status == FAILED:
            answer["FailureReason"] = self.failure_reason or ""
            answer["FailureCode"] = self.failure_code or ""
        answer.update(
            HumanLoopStatus=self.status,
            HumanLoopName=self.name,
            HumanLoopArn=self.arn,
            FlowDefinitionArn=self.flow_definition_arn,
        )
        if self.output_uri:
            answer["HumanLoopOutput"] = {"OutputS3Uri": self.output_uri}
        return answer

    def summary(self) -> dict[str, Any]:
        """The loop's entry in ListHumanLoops."""
        entry: dict[str, Any] = {
            "HumanLoopName": self.name,
            "HumanLoopStatus": self.status,
            "CreationTime": self.created,
        }
        if self.status == FAILED and self.failure_reason:
            entry["FailureReason"] = self.failure_reason[:1024]
        entry["FlowDefinitionArn"] = self.flow_definition_arn
        return entry

    @classmethod
    def from_row(cls, row: sqlite3.Row, answers: list[dict[str, Any]]) -> HumanLoop:
        return cls(
            name=row["name"],
            arn=row["arn"],
            flow_definition_arn=row["flow_definition_arn"],
            status=row["status"],
            created=row["created"],
            completed=row["completed"],
            failure_reason=row["failure_reason"],
            failure_code=row["failure_code"],
            input_content=json.loads(row["input_content"]),
            task_count=row["task_count"],
            answers=answers,
            output_uri=row["output_uri"],
            flow_name=row["flow_name"],
            request_source=row["request_source"],
            data_attributes=json.loads(row["data_attributes"]) if row["data_attributes"] else None,
            availability_lifetime_secs=row["availability_lifetime_secs"],
            time_limit_secs=row["time_limit_secs"],
            output_path=row["output_path"],
            kms_key_id=row["kms_key_id"],
        )


@dataclass(frozen=True)
class Claim:
    """A reviewer's hold on one task slot of a loop, until ``expires_at``."""

    loop_name: str
    reviewer: str
    claimed_at: float
    expires_at: float


class HumanLoopStore(SqliteStore):
    """Human loops, their claims and answers, in the registry's SQLite file; safe to share
    between threads and processes. ``max_open_loops`` bounds the loops InProgress at once."""

    def __init__(
        self,
        path: str,
        *,
        region: str,
        account_id: str,
        max_open_loops: int = DEFAULT_MAX_OPEN_LOOPS,
        clock: Callable[[], float] = time.time,
    ):
        if max_open_loops < 1:
            raise ValueError(f"--max_open_human_loops must be at least 1, not {max_open_loops}")
        super().__init__(path, _SCHEMA, clock=clock)
        self.region = region
        self.account_id = account_id
        self.max_open_loops = max_open_loops

    # Loops.

    def create(
        self,
        name: str,
        flow,
        input_content: Mapping[str, Any],
        *,
        request_source: str | None = None,
        data_attributes: Mapping[str, Any] | None = None,
    ) -> HumanLoop:
        """Starts a loop of ``flow`` (a ``FlowDefinition``) on ``input_content``.

        LoopExists if the name is taken (by a loop in any status); LoopQuotaExceeded if
        ``max_open_loops`` loops are InProgress already.
        """
        created = round(self._clock(), 3)
        content = json.dumps(dict(input_content), sort_keys=True)
        attributes = json.dumps(dict(data_attributes), sort_keys=True) if data_attributes else None
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM review_loop_loops WHERE name = ?", (name,)).fetchone():
                raise LoopExists(f"A human loop named {name} already exists.")
            (open_loops,) = db.execute(
                "SELECT COUNT(*) FROM review_loop_loops WHERE status = ?", (IN_PROGRESS,)
            ).fetchone()
            if open_loops >= self.max_open_loops:
                raise LoopQuotaExceeded(
                    f"{open_loops} human loops are in progress, the most this server allows "
                    f"(--max_open_human_loops={self.max_open_loops}); wait for some to finish, "
                    "or stop some."
                )
            db.execute(
                "INSERT INTO review_loop_loops (name, arn, flow_definition_arn, flow_name, status, "
                "created, input_content, request_source, data_attributes, task_count, "
                "availability_lifetime_secs, time_limit_secs, output_path, kms_key_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    arn_of_loop(self.region, self.account_id, name),
                    flow.arn,
                    flow.name,
                    IN_PROGRESS,
                    created,
                    content,
                    request_source,
                    attributes,
                    int(flow.task_count),
                    int(flow.availability_lifetime_secs),
                    int(flow.time_limit_secs),
                    flow.output_path,
                    flow.kms_key_id or None,
                ),
            )
        return self.get(name)

    def get(self, name: str) -> HumanLoop:
        with self._connection() as db:
            row = db.execute("SELECT * FROM review_loop_loops WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise LoopNotFound(f"No human loop is named {name}.")
            return HumanLoop.from_row(row, self._answers(db, [name])[name])

    def list(
        self,
        flow_definition_arn: str,
        *,
        created_after: float | None = None,
        created_before: float | None = None,
        sort_order: str = "Ascending",
        max_results: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[HumanLoop], str | None]:
        """The loops of one flow definition created in (after, before), in creation order
        (``sort_order`` Ascending or Descending), and the token of the next page."""
        descending = sort_order == "Descending"
        conditions, args = ["flow_definition_arn = ?"], [flow_definition_arn]
        if created_after is not None:
            conditions.append("created > ?")
            args.append(created_after)
        if created_before is not None:
            conditions.append("created < ?")
            args.append(created_before)
        scope = listing_scope(
            "human-loops",
            flow=flow_definition_arn,
            after=created_after,
            before=created_before,
            order=sort_order,
        )
        if next_token:
            created, name = self._read_token(next_token, max_results, scope)
            step = "<" if descending else ">"
            conditions.append(f"((created {step} ?) OR (created = ? AND name {step} ?))")
            args.extend((created, created, name))
        direction = "DESC" if descending else "ASC"
        query = (
            f"SELECT * FROM review_loop_loops WHERE {' AND '.join(conditions)} "
            f"ORDER BY created {direction}, name {direction} LIMIT ?"
        )
        with self._connection() as db:
            rows = db.execute(query, (*args, max_results + 1)).fetchall()
            token = None
            if len(rows) > max_results:
                rows = rows[:max_results]
                token = self._issue_token(
                    (rows[-1]["created"], rows[-1]["name"]), max_results, scope
                )
            answers = self._answers(db, [row["name"] for row in rows])
        return [HumanLoop.from_row(row, answers[row["name"]]) for row in rows], token

    def has_loops(self, flow_definition_arn: str) -> bool:
        """Whether any loop (in any status) belongs to this flow definition."""
        with self._connection() as db:
            row = db.execute(
                "SELECT 1 FROM review_loop_loops WHERE flow_definition_arn = ? LIMIT 1",
                (flow_definition_arn,),
            ).fetchone()
        return row is not None

    def stop(self, name: str) -> None:
        """Stops an InProgress loop (its claims are dropped; answers given stay). Stopping a
        loop already stopped does nothing; LoopNotOpen for a Completed or Failed one."""
        now = round(self._clock(), 3)
        with self._transaction() as db:
            status = self._status(db, name)
            if status in (STOPPING, STOPPED):
                return
            if status != IN_PROGRESS:
                raise LoopNotOpen(f"The human loop {name} is {status}; only InProgress loops stop.")
            db.execute(
                "UPDATE review_loop_loops SET status = ?, completed = ? WHERE name = ?",
                (STOPPED, now, name),
            )
            db.execute("DELETE FROM review_loop_claims WHERE loop_name = ?", (name,))

    def delete(self, name: str) -> None:
        """Deletes a Completed, Failed or Stopped loop, with its answers (its output in S3
        stays); LoopInProgress while it is InProgress."""
        with self._transaction() as db:
            status = self._status(db, name)
            if status in (IN_PROGRESS, STOPPING):
                raise LoopInProgress(
                    f"The human loop {name} is {status}: stop it (StopHumanLoop) before deleting "
                    "it."
                )
            for table, column in (
                ("review_loop_loops", "name"),
                ("review_loop_claims", "loop_name"),
                ("review_loop_answers", "loop_name"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

    # Reviewers.

    def open_loops(
        self, reviewer: str, *, flow_arns: Collection[str] | None = None, limit: int = 100
    ) -> list[HumanLoop]:
        """The loops ``reviewer`` may work on now, oldest first: InProgress and not expired, not
        answered by them, and either claimed by them or with a task slot free (task count less
        answers less others' live claims). ``flow_arns`` keeps those of these flows only."""
        now = self._clock()
        conditions = [
            "l.status = ?",
            "l.created + l.availability_lifetime_secs > ?",
            "NOT EXISTS (SELECT 1 FROM review_loop_answers a "
            "WHERE a.loop_name = l.name AND a.reviewer = ?)",
            "(EXISTS (SELECT 1 FROM review_loop_claims c WHERE c.loop_name = l.name "
            "AND c.reviewer = ? AND c.expires_at > ?) "
            "OR (SELECT COUNT(*) FROM review_loop_answers a WHERE a.loop_name = l.name) "
            "+ (SELECT COUNT(*) FROM review_loop_claims c WHERE c.loop_name = l.name "
            "AND c.expires_at > ?) < l.task_count)",
        ]
        args: list[Any] = [IN_PROGRESS, now, reviewer, reviewer, now, now]
        if flow_arns is not None:
            flow_arns = sorted(set(flow_arns))
            if not flow_arns:
                return []
            conditions.append(f"l.flow_definition_arn IN ({', '.join('?' for _ in flow_arns)})")
            args.extend(flow_arns)
        query = (
            f"SELECT l.* FROM review_loop_loops l WHERE {' AND '.join(conditions)} "
            "ORDER BY l.created, l.name LIMIT ?"
        )
        with self._connection() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
            answers = self._answers(db, [row["name"] for row in rows])
        return [HumanLoop.from_row(row, answers[row["name"]]) for row in rows]

    def claim(self, name: str, reviewer: str, *, time_limit_secs: int | None = None) -> Claim:
        """A task slot of the loop for ``reviewer``, for ``time_limit_secs`` (default: the flow's
        TaskTimeLimitInSeconds). A reviewer claiming again while their claim lives gets that
        claim back. LoopNotFound; LoopNotOpen if the loop is not InProgress or has expired, the
        reviewer answered it already, or its task slots are all answered or claimed."""
        now = round(self._clock(), 3)
        with self._transaction() as db:
            row = self._row(db, name)
            self._check_open(row, now)
            answered = db.execute(
                "SELECT 1 FROM review_loop_answers WHERE loop_name = ? AND reviewer = ?",
                (name, reviewer),
            ).fetchone()
            if answered:
                raise LoopNotOpen(f"{reviewer} has answered the human loop {name} already.")
            live = db.execute(
                "SELECT * FROM review_loop_claims WHERE loop_name = ? AND reviewer = ? "
                "AND expires_at > ?",
                (name, reviewer, now),
            ).fetchone()
            if live is not None:
                return Claim(name, reviewer, live["claimed_at"], live["expires_at"])
            if self._taken_slots(db, name, now) >= row["task_count"]:
                raise LoopNotOpen(
                    f"Every task of the human loop {name} is answered or claimed by another "
                    "reviewer."
                )
            limit = row["time_limit_secs"] if time_limit_secs is None else time_limit_secs
            claim = Claim(name, reviewer, now, round(now + limit, 3))
            db.execute(
                "INSERT OR REPLACE INTO review_loop_claims VALUES (?, ?, ?, ?)",
                (name, reviewer, claim.claimed_at, claim.expires_at),
            )
        return claim

    def release_expired_claims(self) -> int:
        """Drops the claims whose time limit has passed, freeing their task slots; returns how
        many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM review_loop_claims WHERE expires_at <= ?", (self._clock(),)
            )
        return cursor.rowcount

    def answer(self, name: str, reviewer: str, answer_content: Mapping[str, Any]) -> HumanLoop:
        """Records ``reviewer``'s answer (their claim must still live); with the last of the
        flow's TaskCount answers the loop is Completed. The caller (or the sweeper) then writes
        its output. LoopNotOpen without a live claim, or when the loop is not InProgress."""
        if not isinstance(answer_content, Mapping):
            raise TypeError("answer_content must be a JSON object")
        now = round(self._clock(), 3)
        with self._transaction() as db:
            row = self._row(db, name)
            self._check_open(row, now)
            claim = db.execute(
                "SELECT * FROM review_loop_claims WHERE loop_name = ? AND reviewer = ? "
                "AND expires_at > ?",
                (name, reviewer, now),
            ).fetchone()
            if claim is None:
                raise LoopNotOpen(
                    f"{reviewer} holds no live claim on the human loop {name}: claim a task "
                    "first (a claim lasts the flow's TaskTimeLimitInSeconds)."
                )
            db.execute(
                "INSERT INTO review_loop_answers VALUES (?, ?, ?, ?, ?)",
                (name, reviewer, claim["claimed_at"], now, json.dumps(dict(answer_content))),
            )
            db.execute(
                "DELETE FROM review_loop_claims WHERE loop_name = ? AND reviewer = ?",
                (name, reviewer),
            )
            (answers,) = db.execute(
                "SELECT COUNT(*) FROM review_loop_answers WHERE loop_name = ?", (name,)
            ).fetchone()
            if answers >= row["task_count"]:
                db.execute(
                    "UPDATE review_loop_loops SET status = ?, completed = ? WHERE name = ?",
                    (COMPLETED, now, name),
                )
                db.execute("DELETE FROM review_loop_claims WHERE loop_name = ?", (name,))
        return self.get(name)

    def claims(self, name: str) -> list[Claim]:
        """The live claims on a loop."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM review_loop_claims WHERE loop_name = ? AND expires_at > ? "
                "ORDER BY claimed_at",
                (name, self._clock()),
            ).fetchall()
        return [
            Claim(r["loop_name"], r["reviewer"], r["claimed_at"], r["expires_at"]) for r in rows
        ]

    # The sweeper's work.

    def expire(self) -> list[HumanLoop]:
        """Fails every InProgress loop older than its TaskAvailabilityLifetimeInSeconds (code
        ``Expired``), dropping its claims; returns them."""
        now = round(self._clock(), 3)
        with self._transaction() as db:
            rows = db.execute(
                "SELECT name, availability_lifetime_secs, task_count FROM review_loop_loops "
                "WHERE status = ? AND created + availability_lifetime_secs <= ?",
                (IN_PROGRESS, now),
            ).fetchall()
            for row in rows:
                (answers,) = db.execute(
                    "SELECT COUNT(*) FROM review_loop_answers WHERE loop_name = ?", (row["name"],)
                ).fetchone()
                reason = (
                    f"The human loop expired: {answers} of its {row['task_count']} task(s) were "
                    f"answered within the flow definition's TaskAvailabilityLifetimeInSeconds "
                    f"({row['availability_lifetime_secs']} seconds)."
                )
                db.execute(
                    "UPDATE review_loop_loops SET status = ?, completed = ?, failure_reason = ?, "
                    "failure_code = ? WHERE name = ?",
                    (FAILED, now, reason, EXPIRED_FAILURE_CODE, row["name"]),
                )
                db.execute("DELETE FROM review_loop_claims WHERE loop_name = ?", (row["name"],))
        return [self.get(row["name"]) for row in rows]

    def completed_without_output(self) -> list[HumanLoop]:
        """Completed loops whose output.json is not written yet, oldest first."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM review_loop_loops WHERE status = ? AND output_uri IS NULL "
                "ORDER BY completed, name",
                (COMPLETED,),
            ).fetchall()
            answers = self._answers(db, [row["name"] for row in rows])
        return [HumanLoop.from_row(row, answers[row["name"]]) for row in rows]

    def set_output(self, name: str, uri: str) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE review_loop_loops SET output_uri = ? WHERE name = ?", (uri, name)
            )
            if cursor.rowcount == 0:
                raise LoopNotFound(f"No human loop is named {name}.")

    # Internals.

    def _row(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM review_loop_loops WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LoopNotFound(f"No human loop is named {name}.")
        return row

    def _status(self, db: sqlite3.Connection, name: str) -> str:
        return self._row(db, name)["status"]

    @staticmethod
    def _check_open(row: sqlite3.Row, now: float) -> None:
        if row["status"] != IN_PROGRESS:
            raise LoopNotOpen(f"The human loop {row['name']} is {row['status']}.")
        if row["created"] + row["availability_lifetime_secs"] <= now:
            raise LoopNotOpen(f"The human loop {row['name']} has expired.")

    @staticmethod
    def _taken_slots(db: sqlite3.Connection, name: str, now: float) -> int:
        (answers,) = db.execute(
            "SELECT COUNT(*) FROM review_loop_answers WHERE loop_name = ?", (name,)
        ).fetchone()
        (claims,) = db.execute(
            "SELECT COUNT(*) FROM review_loop_claims WHERE loop_name = ? AND expires_at > ?",
            (name, now),
        ).fetchone()
        return answers + claims

    @staticmethod
    def _answers(db: sqlite3.Connection, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        names = list(names)
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        if not names:
            return found
        rows = db.execute(
            "SELECT * FROM review_loop_answers "
            f"WHERE loop_name IN ({', '.join('?' for _ in names)}) ORDER BY submitted, reviewer",
            names,
        ).fetchall()
        for row in rows:
            found[row["loop_name"]].append(
                {
                    "acceptanceTime": a2i_time(row["accepted"]),
                    "answerContent": json.loads(row["answer"]),
                    "submissionTime": a2i_time(row["submitted"]),
                    "timeSpentInSeconds": round(row["submitted"] - row["accepted"], 3),
                    "workerId": row["reviewer"],
                }
            )
        return found

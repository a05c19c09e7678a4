"""The job registry: bulk analysis jobs with Rekognition's start/get/list semantics, in SQLite.

One row per job: what was asked (the StartMediaAnalysisJob parameters), where it stands
(``CREATED -> QUEUED -> IN_PROGRESS -> SUCCEEDED | FAILED``), and what it produced. SQLite in
WAL mode lets any number of readers go on while one writer commits, across threads and
processes. ``JobRegistry`` itself does not run jobs: whoever runs one reports through
``mark_queued``, ``mark_in_progress``, ``mark_succeeded`` and ``mark_failed``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.store import InvalidPaginationToken, SqliteStore

__all__ = [
    "ACTIVE_STATUSES",
    "FAILURE_CODES",
    "RETENTION_SECS",
    "IdempotentParameterMismatch",
    "InvalidPaginationToken",
    "JobLimitExceeded",
    "JobNotFound",
    "JobRecord",
    "JobRegistry",
]

ACTIVE_STATUSES = ("CREATED", "QUEUED", "IN_PROGRESS")
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
FAILURE_CODES = (
    "INTERNAL_ERROR",
    "INVALID_S3_OBJECT",
    "INVALID_MANIFEST",
    "INVALID_OUTPUT_CONFIG",
    "INVALID_KMS_KEY",
    "ACCESS_DENIED",
    "RESOURCE_NOT_FOUND",
    "RESOURCE_NOT_READY",
    "THROTTLED",
)
# Rekognition keeps job details for one year.
RETENTION_SECS = 365 * 24 * 3600
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    client_request_token TEXT UNIQUE,
    request_digest TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    failure_message TEXT,
    created REAL NOT NULL,
    completed REAL,
    results_key TEXT,
    summary_key TEXT,
    model_version TEXT,
    worker_pid INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_creation ON jobs (created DESC, job_id DESC);
"""


class JobNotFound(LookupError):
    """No job has this id (or it is older than the retention period)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job has the id {job_id}.")
        self.job_id = job_id


class IdempotentParameterMismatch(ValueError):
    """The ClientRequestToken was used before with other parameters."""


class JobLimitExceeded(RuntimeError):
    """As many jobs as allowed are already queued or running."""


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    request: dict[str, Any]
    status: str
    created: float
    failure_code: str | None = None
    failure_message: str | None = None
    completed: float | None = None
    results_key: str | None = None
    summary_key: str | None = None
    model_version: str | None = None
    worker_pid: int | None = None

    def to_api(self) -> dict[str, Any]:
        """The job as GetMediaAnalysisJob returns it (and ListMediaAnalysisJobs lists it)."""
        request = self.request
        job: dict[str, Any] = {"JobId": self.job_id}
        if "JobName" in request:
            job["JobName"] = request["JobName"]
        job["OperationsConfig"] = request["OperationsConfig"]
        job["Status"] = self.status
        if self.failure_code:
            job["FailureDetails"] = {"Code": self.failure_code, "Message": self.failure_message}
        job["CreationTimestamp"] = self.created
        if self.completed is not None:
            job["CompletionTimestamp"] = self.completed
        job["Input"] = request["Input"]
        job["OutputConfig"] = request["OutputConfig"]
        if "KmsKeyId" in request:
            job["KmsKeyId"] = request["KmsKeyId"]
        bucket = request["OutputConfig"]["S3Bucket"]
        if self.results_key:
            job["Results"] = {"S3Object": {"Bucket": bucket, "Name": self.results_key}}
            if self.model_version:
                job["Results"]["ModelVersions"] = {"Moderation": self.model_version}
        if self.summary_key:
            job["ManifestSummary"] = {"S3Object": {"Bucket": bucket, "Name": self.summary_key}}
        return job


def _digest(request: Mapping[str, Any]) -> str:
    # The token itself is not part of "the same parameters".
    relevant = {k: v for k, v in request.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


class JobRegistry(SqliteStore):
    """Jobs in one SQLite file; safe to share between threads, and between processes."""

    def __init__(
        self,
        path: str,
        *,
        max_active_jobs: int = 4,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(path, _SCHEMA, clock=clock)
        self.max_active_jobs = max_active_jobs

    # Start, get, list.

    def start(self, request: Mapping[str, Any]) -> tuple[JobRecord, bool]:
        """Registers a job for a StartMediaAnalysisJob request: ``(job, created now)``.

        The same ClientRequestToken with the same parameters returns the job it started
        before; with other parameters it raises IdempotentParameterMismatch.
        """
        request = dict(request)
        token = request.get("ClientRequestToken")
        digest = _digest(request)
        with self._transaction() as db:
            if token:
                row = db.execute(
                    "SELECT * FROM jobs WHERE client_request_token = ?", (token,)
                ).fetchone()
                if row is not None:
                    existing = self._record(row)
                    if _digest(existing.request) != digest:
                        raise IdempotentParameterMismatch(
                            "ClientRequestToken was already used with different parameters"
                        )
                    return existing, False
            (active,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN (?, ?, ?)", ACTIVE_STATUSES
            ).fetchone()
            if active >= self.max_active_jobs:
                raise JobLimitExceeded(
                    f"{active} jobs are already queued or running; the limit is "
                    f"{self.max_active_jobs}"
                )
            record = JobRecord(
                job_id=secrets.token_hex(32),
                request=request,
                status="CREATED",
                created=round(self._clock(), 3),
            )
            db.execute(
                "INSERT INTO jobs (job_id, client_request_token, request_digest, request, "
                "status, created) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.job_id,
                    token,
                    digest,
                    json.dumps(request, sort_keys=True),
                    record.status,
                    record.created,
                ),
            )
        return record, True

    def get(self, job_id: str) -> JobRecord:
        with self._connection() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            return self._record(row)

    def list(
        self, max_results: int = 100, next_token: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Jobs, newest first, and the token of the next page (None on the last page)."""
        after = self._read_token(next_token, max_results) if next_token else None
        query = "SELECT * FROM jobs"
        args: tuple = ()
        if after is not None:
            query += " WHERE (created < ?) OR (created = ? AND job_id < ?)"
            args = (after[0], after[0], after[1])
        query += " ORDER BY created DESC, job_id DESC LIMIT ?"
        with self._connection() as db:
            rows = db.execute(query, (*args, max_results + 1)).fetchall()
            records = [self._record(row) for row in rows[:max_results]]
        token = None
        if len(rows) > max_results:
            last = records[-1]
            token = self._issue_token((last.created, last.job_id), max_results)
        return records, token

    # Progress reports from whoever runs the job.

    def mark_queued(self, job_id: str) -> None:
        self._move(job_id, "QUEUED", from_statuses=("CREATED",))

    def mark_in_progress(self, job_id: str, worker_pid: int | None = None) -> None:
        self._move(
            job_id, "IN_PROGRESS", from_statuses=("CREATED", "QUEUED"), worker_pid=worker_pid
        )

    def mark_succeeded(
        self, job_id: str, *, results_key: str, summary_key: str, model_version: str
    ) -> None:
        self._move(
            job_id,
            "SUCCEEDED",
            from_statuses=ACTIVE_STATUSES,
            completed=round(self._clock(), 3),
            results_key=results_key,
            summary_key=summary_key,
            model_version=model_version,
        )

    def mark_failed(self, job_id: str, code: str, message: str) -> None:
        if code not in FAILURE_CODES:
            raise ValueError(f"unknown failure code {code!r}; expected one of {FAILURE_CODES}")
        self._move(
            job_id,
            "FAILED",
            from_statuses=ACTIVE_STATUSES,
            completed=round(self._clock(), 3),
            failure_code=code,
            failure_message=message[:1000],
        )

    def fail_orphans(self, is_alive: Callable[[int], bool]) -> list[str]:
        """Marks FAILED every unfinished job whose process is gone (after a server restart)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT job_id, worker_pid FROM jobs WHERE status IN (?, ?, ?)", ACTIVE_STATUSES
            ).fetchall()
        orphans = [job_id for job_id, pid in rows if pid is None or not is_alive(pid)]
        for job_id in orphans:
            self.mark_failed(
                job_id,
                "INTERNAL_ERROR",
                "The job stopped without a result: the server restarted while it was running. "
                "Start it again.",
            )
        return orphans

    def purge(self) -> int:
        """Deletes jobs created more than the retention period ago; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE created < ?", (self._clock() - RETENTION_SECS,)
            )
            return cursor.rowcount

    # Internals.

    def _move(self, job_id: str, status: str, *, from_statuses, **columns) -> None:
        assignments = ", ".join(f"{name} = ?" for name in ("status", *columns))
        placeholders = ", ".join("?" for _ in from_statuses)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {assignments} WHERE job_id = ? AND status IN ({placeholders})",
                (status, *columns.values(), job_id, *from_statuses),
            )
            if cursor.rowcount == 0:
                row = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                if row is None:
                    raise JobNotFound(job_id)
                raise ValueError(f"job {job_id} is {row[0]}; it cannot become {status}")

    @staticmethod
    def _record(values: sqlite3.Row) -> JobRecord:
        return JobRecord(
            job_id=values["job_id"],
            request=json.loads(values["request"]),
            status=values["status"],
            created=values["created"],
            failure_code=values["failure_code"],
            failure_message=values["failure_message"],
            completed=values["completed"],
            results_key=values["results_key"],
            summary_key=values["summary_key"],
            model_version=values["model_version"],
            worker_pid=values["worker_pid"],
        )

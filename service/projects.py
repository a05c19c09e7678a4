"""The project registry: Custom Moderation and Custom Labels projects and their versions, in
SQLite.

The tables live in the job registry's SQLite file; a file made before Custom Labels existed gains
the new columns when it is opened. ``ProjectRegistry`` itself trains and serves nothing: whoever
trains a version reports through ``mark_trained`` (an adapter), ``mark_model_trained`` (a Custom
Labels model) and ``mark_training_failed``; adapters are reported against the server's base model
(``service.adapters``). A Custom Labels model's serving moves through ``begin_start``,
``mark_running`` or ``mark_start_failed``, ``begin_stop`` and ``mark_stopped``.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from service.adapters import ResolvedAdapter, reported, usable_adapter
from service.project_records import (
    CONTENT_MODERATION,
    CUSTOM_LABELS,
    FAILED,
    RUNNING,
    SERVING_STATUSES,
    STARTABLE_STATUSES,
    STARTING,
    STOPPED,
    STOPPING,
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    TRAINING_IN_PROGRESS,
    ProjectNotFound,
    ProjectRecord,
    ResourceInUse,
    VersionNotFound,
    VersionRecord,
    WrongFeature,
    arn_of_project,
    arn_of_version,
)
from service.store import SqliteStore, listing_scope

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "ProjectRegistry", "check_arn_scope"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "000000000000"

_IN_PROGRESS_MESSAGES = {
    CONTENT_MODERATION: "The adapter is being trained.",
    CUSTOM_LABELS: "The model is being trained.",
}
RESTART_SERVING_MESSAGE = "The server restarted; the model is starting again."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    feature TEXT NOT NULL,
    auto_update TEXT,
    status TEXT NOT NULL,
    tags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_by_creation ON projects (created DESC, arn DESC);
CREATE TABLE IF NOT EXISTS project_versions (
    arn TEXT PRIMARY KEY,
    project_arn TEXT NOT NULL,
    version_name TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    request TEXT NOT NULL,
    training_end REAL,
    billable_secs INTEGER,
    f1 REAL,
    summary_bucket TEXT,
    summary_name TEXT,
    adapter_uri TEXT,
    base_model_version TEXT,
    backbone_version TEXT,
    UNIQUE (project_arn, version_name)
);
CREATE INDEX IF NOT EXISTS versions_by_creation
    ON project_versions (project_arn, created DESC, arn DESC);
"""

# Columns added since the first schema: a file made by an earlier server gains them when opened
# (ALTER TABLE), its rows taking these defaults.
_ADDED_VERSION_COLUMNS = {
    "feature": f"TEXT NOT NULL DEFAULT '{CONTENT_MODERATION}'",
    "model_uri": "TEXT",
    "model_kind": "TEXT",
    "labels": "TEXT",
    "data_results": "TEXT",
    "min_inference_units": "INTEGER",
    "max_inference_units": "INTEGER",
}

_REGION = re.compile(r"[a-z\d-]+")
_ACCOUNT_ID = re.compile(r"\d{12}")


def check_arn_scope(region: str, account_id: str) -> None:
    """ValueError naming the flag unless ``region`` and ``account_id`` can stand in an ARN."""
    if not _REGION.fullmatch(region):
        raise ValueError(f"--region must be lowercase letters, digits and '-', not {region!r}")
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"--account_id must be 12 digits, not {account_id!r}")


class ProjectRegistry(SqliteStore):
    """Projects and versions in one SQLite file; safe to share between threads and processes.

    ``base_model_version`` and ``backbone_version`` are those of the model the server runs now
    (None: unknown, and trained adapters are reported as trained).
    """

    def __init__(
        self,
        path: str,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        base_model_version: str | None = None,
        backbone_version: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        check_arn_scope(region, account_id)
        super().__init__(path, _SCHEMA, clock=clock)
        self._add_missing_columns()
        self.region = region
        self.account_id = account_id
        self.base_model_version = base_model_version
        self.backbone_version = backbone_version

    # Projects.

    def create_project(
        self,
        name: str,
        *,
        feature: str = CONTENT_MODERATION,
        auto_update: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ProjectRecord:
        """Registers a project; ResourceInUse if the name is taken."""
        created = round(self._clock(), 3)
        record = ProjectRecord(
            arn=arn_of_project(self.region, self.account_id, name, created),
            name=name,
            created=created,
            feature=feature,
            auto_update=auto_update,
            status="CREATED",
            tags=dict(tags or {}),
        )
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise ResourceInUse(f"A project named {name} already exists.")
            db.execute(
                "INSERT INTO projects (arn, name, created, feature, auto_update, status, tags) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.arn,
                    name,
                    created,
                    feature,
                    auto_update,
                    record.status,
                    json.dumps(record.tags, sort_keys=True),
                ),
            )
        return record

    def get_project(self, arn: str) -> ProjectRecord:
        with self._connection() as db:
            row = db.execute("SELECT * FROM projects WHERE arn = ?", (arn,)).fetchone()
        if row is None:
            raise ProjectNotFound(f"No project has the ARN {arn}.")
        return ProjectRecord.from_row(row)

    def list_projects(
        self,
        max_results: int = 100,
        next_token: str | None = None,
        *,
        names: Iterable[str] | None = None,
        features: Iterable[str] | None = None,
    ) -> tuple[list[ProjectRecord], str | None]:
        """Projects, newest first, with these names and features (None: any), and the token of
        the next page (None on the last page)."""
        names = sorted(set(names)) if names is not None else None
        features = sorted(set(features)) if features is not None else None
        conditions, args = [], []
        for column, values in (("name", names), ("feature", features)):
            if values is not None:
                conditions.append(f"{column} IN ({', '.join('?' for _ in values)})")
                args.extend(values)
        rows, token = self._page(
            "projects",
            conditions,
            args,
            max_results,
            next_token,
            listing_scope("projects", names=names, features=features),
        )
        return [ProjectRecord.from_row(row) for row in rows], token

    def delete_project(self, arn: str) -> None:
        """Deletes a project that has no versions left; ResourceInUse if it has some."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM projects WHERE arn = ?", (arn,)).fetchone() is None:
                raise ProjectNotFound(f"No project has the ARN {arn}.")
            (count,) = db.execute(
                "SELECT COUNT(*) FROM project_versions WHERE project_arn = ?", (arn,)
            ).fetchone()
            if count:
                raise ResourceInUse(
                    f"The project {arn} still has {count} version(s): delete them first with "
                    "DeleteProjectVersion."
                )
            db.execute("DELETE FROM projects WHERE arn = ?", (arn,))

    # Versions.

    def create_version(self, project_arn: str, request: Mapping[str, Any]) -> VersionRecord:
        """Registers a version, TRAINING_IN_PROGRESS, for a CreateProjectVersion request.

        ProjectNotFound if the project does not exist; ResourceInUse if the project already has
        a version of that name.
        """
        request = dict(request)
        name = request["VersionName"]
        created = round(self._clock(), 3)
        with self._transaction() as db:
            project = db.execute("SELECT name, feature FROM projects WHERE arn = ?", (project_arn,))
            row = project.fetchone()
            if row is None:
                raise ProjectNotFound(f"No project has the ARN {project_arn}.")
            taken = db.execute(
                "SELECT 1 FROM project_versions WHERE project_arn = ? AND version_name = ?",
                (project_arn, name),
            ).fetchone()
            if taken:
                raise ResourceInUse(
                    f"The project {row['name']} already has a version named {name}: pick another "
                    "VersionName, or delete that version first."
                )
            feature = row["feature"]
            record = VersionRecord(
                arn=arn_of_version(self.region, self.account_id, row["name"], name, created),
                project_arn=project_arn,
                version_name=name,
                created=created,
                status=TRAINING_IN_PROGRESS,
                request=request,
                status_message=_IN_PROGRESS_MESSAGES[feature],
                # A Custom Labels model is no adaptation of the base model.
                base_model_version=None if feature == CUSTOM_LABELS else self.base_model_version,
                feature=feature,
            )
            db.execute(
                "INSERT INTO project_versions (arn, project_arn, version_name, created, status, "
                "status_message, request, base_model_version, feature) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.arn,
                    project_arn,
                    name,
                    created,
                    record.status,
                    record.status_message,
                    json.dumps(request, sort_keys=True),
                    record.base_model_version,
                    feature,
                ),
            )
        return record

    def get_version(self, arn: str) -> VersionRecord:
        """The version as reported (DEPRECATED or EXPIRED where its base model is gone)."""
        with self._connection() as db:
            row = db.execute("SELECT * FROM project_versions WHERE arn = ?", (arn,)).fetchone()
        if row is None:
            raise VersionNotFound(f"No project version has the ARN {arn}.")
        return self._reported(VersionRecord.from_row(row))

    def list_versions(
        self,
        project_arn: str,
        max_results: int = 100,
        next_token: str | None = None,
        *,
        names: Iterable[str] | None = None,
    ) -> tuple[list[VersionRecord], str | None]:
        """A project's versions, newest first (only those named, if ``names``), as reported, and
        the token of the next page; ProjectNotFound if the project does not exist."""
        self.get_project(project_arn)
        names = sorted(set(names)) if names is not None else None
        conditions, args = ["project_arn = ?"], [project_arn]
        if names is not None:
            conditions.append(f"version_name IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        rows, token = self._page(
            "project_versions",
            conditions,
            args,
            max_results,
            next_token,
            listing_scope("versions", project=project_arn, names=names),
        )
        return [self._reported(VersionRecord.from_row(row)) for row in rows], token

    def delete_version(self, arn: str) -> None:
        """Deletes a version that is neither training nor serving; ResourceInUse while it is."""
        with self._transaction() as db:
            row = db.execute("SELECT status FROM project_versions WHERE arn = ?", (arn,)).fetchone()
            if row is None:
                raise VersionNotFound(f"No project version has the ARN {arn}.")
            if row["status"] == TRAINING_IN_PROGRESS:
                raise ResourceInUse(
                    f"The project version {arn} is still training: wait until its training ends "
                    "(TRAINING_COMPLETED or TRAINING_FAILED), then delete it."
                )
            if row["status"] in SERVING_STATUSES:
                raise ResourceInUse(
                    f"The model {arn} is {row['status']}: stop it with StopProjectVersion and "
                    "wait for STOPPED, then delete it."
                )
            db.execute("DELETE FROM project_versions WHERE arn = ?", (arn,))

    def resolve_adapter(self, arn: str) -> ResolvedAdapter:
        """The adapter a ``ProjectVersion`` ARN names, ready to apply (or EXPIRED, to ignore).

        VersionNotFound if no version has the ARN; WrongFeature if it is a Custom Labels model;
        AdapterNotReady if it is training or its training failed.
        """
        version = self.get_version(arn)
        if version.custom_labels:
            raise WrongFeature(
                f"{arn} is a Custom Labels model, not a Custom Moderation adapter: "
                "DetectCustomLabels runs it."
            )
        return usable_adapter(version)

    def get_model(self, arn: str) -> VersionRecord:
        """The Custom Labels version ``arn``; VersionNotFound, or WrongFeature for an adapter."""
        version = self.get_version(arn)
        if not version.custom_labels:
            raise WrongFeature(
                f"{arn} is a Custom Moderation adapter: it runs inside DetectModerationLabels and "
                "jobs (as their ProjectVersion), never on inference units of its own."
            )
        return version

    # The serving of Custom Labels models.

    def begin_start(self, arn: str, min_units: int, max_units: int) -> VersionRecord:
        """Marks a trained (or stopped, or failed to start) model STARTING on these inference
        units; ResourceInUse from any other status, WrongFeature for an adapter."""
        self.get_model(arn)
        message = f"The model is starting on {min_units} inference unit(s)."
        with self._transaction() as db:
            row = db.execute("SELECT status FROM project_versions WHERE arn = ?", (arn,)).fetchone()
            if row is None:
                raise VersionNotFound(f"No project version has the ARN {arn}.")
            if row["status"] not in STARTABLE_STATUSES:
                raise ResourceInUse(
                    f"The model {arn} is {row['status']}: only a model that is "
                    f"{', '.join(STARTABLE_STATUSES)} can be started."
                )
            db.execute(
                "UPDATE project_versions SET status = ?, status_message = ?, "
                "min_inference_units = ?, max_inference_units = ? WHERE arn = ?",
                (STARTING, message, min_units, max_units, arn),
            )
        return self.get_version(arn)

    def mark_running(self, arn: str, units: int) -> bool:
        """STARTING -> RUNNING; False if the model is no longer STARTING (stopped meanwhile)."""
        message = f"The model is running on {units} inference unit(s)."
        return self._serving_move(arn, (STARTING,), RUNNING, message)

    def mark_start_failed(self, arn: str, message: str) -> bool:
        """STARTING -> FAILED with what went wrong; False if no longer STARTING."""
        return self._serving_move(arn, (STARTING,), FAILED, message[:1000])

    def begin_stop(self, arn: str) -> VersionRecord:
        """Marks a RUNNING (or STARTING) model STOPPING; ResourceInUse from any other status,
        WrongFeature for an adapter."""
        self.get_model(arn)
        if not self._serving_move(arn, (RUNNING, STARTING), STOPPING, "The model is stopping."):
            status = self.get_version(arn).status
            raise ResourceInUse(
                f"The model {arn} is {status}: only a RUNNING or STARTING model can be stopped."
            )
        return self.get_version(arn)

    def mark_stopped(self, arn: str) -> bool:
        """STOPPING -> STOPPED; False if it was not STOPPING."""
        return self._serving_move(arn, (STOPPING,), STOPPED, "The model is stopped.")

    def models_to_serve(self) -> list[VersionRecord]:
        """At server start: the models the previous server served (RUNNING or STARTING), marked
        STARTING again and returned; those it was stopping are marked STOPPED."""
        with self._transaction() as db:
            db.execute(
                "UPDATE project_versions SET status = ?, status_message = ? WHERE status = ?",
                (STOPPED, "The model is stopped.", STOPPING),
            )
            db.execute(
                "UPDATE project_versions SET status = ?, status_message = ? WHERE status IN (?, ?)",
                (STARTING, RESTART_SERVING_MESSAGE, RUNNING, STARTING),
            )
            rows = db.execute(
                "SELECT * FROM project_versions WHERE status = ? ORDER BY created", (STARTING,)
            ).fetchall()
        return [VersionRecord.from_row(row) for row in rows]

    # Reports from whoever trains a version.

    def mark_trained(
        self,
        arn: str,
        *,
        status_message: str,
        billable_secs: int,
        f1: float,
        summary_bucket: str,
        summary_name: str,
        adapter_uri: str,
        base_model_version: str,
        backbone_version: str,
    ) -> None:
        self._finish(
            arn,
            TRAINING_COMPLETED,
            status_message=status_message,
            billable_secs=billable_secs,
            f1=f1,
            summary_bucket=summary_bucket,
            summary_name=summary_name,
            adapter_uri=adapter_uri,
            base_model_version=base_model_version,
            backbone_version=backbone_version,
        )

    def mark_model_trained(
        self,
        arn: str,
        *,
        status_message: str,
        billable_secs: int,
        f1: float,
        summary_bucket: str,
        summary_name: str,
        model_uri: str,
        model_kind: str,
        labels: list[str],
        backbone_version: str | None = None,
        data_results: Mapping[str, Any] | None = None,
    ) -> None:
        """A Custom Labels model trained: its evaluation, model folder, kind and labels."""
        self._finish(
            arn,
            TRAINING_COMPLETED,
            status_message=status_message,
            billable_secs=billable_secs,
            f1=f1,
            summary_bucket=summary_bucket,
            summary_name=summary_name,
            model_uri=model_uri,
            model_kind=model_kind,
            labels=json.dumps(list(labels)),
            backbone_version=backbone_version,
            data_results=json.dumps(dict(data_results or {}), sort_keys=True),
        )

    def mark_training_failed(
        self,
        arn: str,
        message: str,
        *,
        billable_secs: int = 0,
        data_results: Mapping[str, Any] | None = None,
    ) -> None:
        """The training failed, with what to fix (and, when the manifests were read, what the
        training wrote of its data)."""
        columns: dict[str, Any] = {"status_message": message[:1000], "billable_secs": billable_secs}
        if data_results:
            columns["data_results"] = json.dumps(dict(data_results), sort_keys=True)
        self._finish(arn, TRAINING_FAILED, **columns)

    def fail_unfinished_trainings(self, message: str) -> list[str]:
        """Marks TRAINING_FAILED every version still TRAINING_IN_PROGRESS (after a restart:
        its training process died with the previous server); returns their ARNs."""
        with self._transaction() as db:
            arns = [
                row["arn"]
                for row in db.execute(
                    "SELECT arn FROM project_versions WHERE status = ?", (TRAINING_IN_PROGRESS,)
                )
            ]
            db.execute(
                "UPDATE project_versions SET status = ?, status_message = ?, training_end = ?, "
                "billable_secs = COALESCE(billable_secs, 0) WHERE status = ?",
                (TRAINING_FAILED, message, round(self._clock(), 3), TRAINING_IN_PROGRESS),
            )
        return arns

    # Internals.

    def _add_missing_columns(self) -> None:
        with self._transaction() as db:
            present = {row["name"] for row in db.execute("PRAGMA table_info(project_versions)")}
            for name, definition in _ADDED_VERSION_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE project_versions ADD COLUMN {name} {definition}")

    def _serving_move(self, arn: str, sources: tuple[str, ...], status: str, message: str) -> bool:
        marks = ", ".join("?" for _ in sources)
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE project_versions SET status = ?, status_message = ? "
                f"WHERE arn = ? AND feature = ? AND status IN ({marks})",
                (status, message, arn, CUSTOM_LABELS, *sources),
            )
        return cursor.rowcount > 0

    def _finish(self, arn: str, status: str, **columns: Any) -> None:
        columns["training_end"] = round(self._clock(), 3)
        assignments = ", ".join(f"{name} = ?" for name in ("status", *columns))
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE project_versions SET {assignments} WHERE arn = ? AND status = ?",
                (status, *columns.values(), arn, TRAINING_IN_PROGRESS),
            )
            if cursor.rowcount == 0:
                row = db.execute(
                    "SELECT status FROM project_versions WHERE arn = ?", (arn,)
                ).fetchone()
                if row is None:
                    raise VersionNotFound(arn)
                raise ValueError(f"version {arn} is {row[0]}; it cannot become {status}")

    def _page(
        self,
        table: str,
        conditions: list[str],
        args: list[Any],
        max_results: int,
        next_token: str | None,
        scope: str,
    ) -> tuple[list[sqlite3.Row], str | None]:
        conditions, args = list(conditions), list(args)
        if next_token:
            created, arn = self._read_token(next_token, max_results, scope)
            conditions.append("((created < ?) OR (created = ? AND arn < ?))")
            args.extend((created, created, arn))
        query = f"SELECT * FROM {table}"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY created DESC, arn DESC LIMIT ?"
        with self._connection() as db:
            rows = db.execute(query, (*args, max_results + 1)).fetchall()
        token = None
        if len(rows) > max_results:
            last = rows[max_results - 1]
            token = self._issue_token((last["created"], last["arn"]), max_results, scope)
        return rows[:max_results], token

    def _reported(self, version: VersionRecord) -> VersionRecord:
        if version.custom_labels:
            # A Custom Labels model carries its own backbone: the server's does not age it.
            return version
        return reported(version, self.base_model_version, self.backbone_version)

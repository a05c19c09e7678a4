"""Flow definitions (human review workflows) in the server's SQLite file.

A flow definition is what SageMaker's CreateFlowDefinition registers for A2I: the request source
(here only ``AWS/Rekognition/DetectModerationLabels/Image/V3``), the activation conditions
(``model.human_review``), the work team and the task it is given, and the S3 path the
reviews are written under. ``FlowDefinitionStore`` keeps them in ``review_flow_`` tables beside the
jobs and projects, under ARNs built from the server's ``--region`` and ``--account_id``
(``arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME``, as in A2I's output data; names are
lower case by the model's pattern). A definition is Active once created; deleting it removes it
at once, and its name may be used again.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from model.human_review import parse_activation_conditions
from service.projects import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, check_arn_scope
from service.store import SqliteStore, listing_scope

__all__ = [
    "ACTIVE",
    "DEFAULT_AVAILABILITY_LIFETIME_SECS",
    "DEFAULT_TIME_LIMIT_SECS",
    "MAX_AVAILABILITY_LIFETIME_SECS",
    "REKOGNITION_SOURCE",
    "FlowDefinition",
    "FlowDefinitionStore",
    "FlowInUse",
    "FlowNotFound",
    "InvalidFlowDefinition",
    "arn_of_flow",
    "split_s3_uri",
]

REKOGNITION_SOURCE = "AWS/Rekognition/DetectModerationLabels/Image/V3"
ACTIVE = "Active"

# HumanLoopConfig: "the amount of time that a worker has to complete a task. The default value is
# 3,600 seconds" (SageMaker API reference); a task stays available at most 10 days, which is also
# the lifetime when none is given.
DEFAULT_TIME_LIMIT_SECS = 3600
MAX_AVAILABILITY_LIFETIME_SECS = 864_000
DEFAULT_AVAILABILITY_LIFETIME_SECS = MAX_AVAILABILITY_LIFETIME_SECS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_flow_definitions (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    conditions TEXT
);
CREATE INDEX IF NOT EXISTS review_flow_definitions_by_creation
    ON review_flow_definitions (created, arn);
"""

_S3_URI = re.compile(r"s3://([^/]+)/?(.*)", re.DOTALL)
_SORT_ORDERS = ("Ascending", "Descending")


class FlowNotFound(LookupError):
    """No flow definition has this name or ARN (never created, or deleted)."""


class FlowInUse(ValueError):
    """A flow definition of this name exists already (SageMaker: ResourceInUse)."""


class InvalidFlowDefinition(ValueError):
    """A CreateFlowDefinition request the model allows but this server cannot serve; the
    message says what to change."""


def arn_of_flow(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account_id}:flow-definition/{name}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key prefix)`` of ``s3://bucket/prefix`` (the prefix without its slashes at the
    ends); InvalidFlowDefinition for anything else."""
    match = _S3_URI.fullmatch(uri)
    if match is None:
        raise InvalidFlowDefinition(
            f"OutputConfig.S3OutputPath must be an s3://bucket/prefix URI, not {uri!r}."
        )
    return match.group(1), match.group(2).strip("/")


@dataclass(frozen=True)
class FlowDefinition:
    """One flow definition as registered: its CreateFlowDefinition request, validated, and the
    parts of it a human loop needs."""

    name: str
    arn: str
    created: float
    status: str
    request: dict
    conditions: dict | None
    workteam_arn: str
    task_title: str
    task_description: str
    task_count: int
    availability_lifetime_secs: int
    time_limit_secs: int
    output_path: str
    kms_key_id: str | None

    @classmethod
    def from_request(
        cls,
        name: str,
        arn: str,
        created: float,
        status: str,
        request: Mapping[str, Any],
        conditions: dict | None,
    ) -> FlowDefinition:
        request = dict(request)
        loop = request["HumanLoopConfig"]
        output = request["OutputConfig"]
        return cls(
            name=name,
            arn=arn,
            created=created,
            status=status,
            request=request,
            conditions=conditions,
            workteam_arn=loop["WorkteamArn"],
            task_title=loop["TaskTitle"],
            task_description=loop["TaskDescription"],
            task_count=loop["TaskCount"],
            availability_lifetime_secs=loop.get(
                "TaskAvailabilityLifetimeInSeconds", DEFAULT_AVAILABILITY_LIFETIME_SECS
            ),
            time_limit_secs=loop.get("TaskTimeLimitInSeconds", DEFAULT_TIME_LIMIT_SECS),
            output_path=output["S3OutputPath"],
            kms_key_id=output.get("KmsKeyId"),
        )

    @property
    def human_task_ui_arn(self) -> str:
        return self.request["HumanLoopConfig"]["HumanTaskUiArn"]

    @property
    def output_location(self) -> tuple[str, str]:
        """``(bucket, key prefix)`` of ``output_path``."""
        return split_s3_uri(self.output_path)

    def to_api(self) -> dict[str, Any]:
        """The flow definition as DescribeFlowDefinition answers it."""
        request = self.request
        answer: dict[str, Any] = {
            "FlowDefinitionArn": self.arn,
            "FlowDefinitionName": self.name,
            "FlowDefinitionStatus": self.status,
            "CreationTime": self.created,
        }
        for key in ("HumanLoopRequestSource", "HumanLoopActivationConfig", "HumanLoopConfig"):
            if key in request:
                answer[key] = request[key]
        answer["OutputConfig"] = request["OutputConfig"]
        answer["RoleArn"] = request["RoleArn"]
        return answer

    def summary(self) -> dict[str, Any]:
        """The flow definition as ListFlowDefinitions lists it."""
        return {
            "FlowDefinitionName": self.name,
            "FlowDefinitionArn": self.arn,
            "FlowDefinitionStatus": self.status,
            "CreationTime": self.created,
        }


def _checked_request(params: Mapping[str, Any]) -> tuple[dict, dict | None]:
    """The request and its parsed activation conditions; InvalidFlowDefinition or
    InvalidConditions (both ValueErrors) for what this server does not serve."""
    request = dict(params)
    source = request.get("HumanLoopRequestSource", {}).get("AwsManagedHumanLoopRequestSource")
    if source != REKOGNITION_SOURCE:
        given = "none" if source is None else source
        raise InvalidFlowDefinition(
            "HumanLoopRequestSource.AwsManagedHumanLoopRequestSource must be "
            f"{REKOGNITION_SOURCE}: this server reviews DetectModerationLabels answers only "
            f"(given: {given})."
        )
    loop = request.get("HumanLoopConfig")
    if not loop:
        raise InvalidFlowDefinition(
            "HumanLoopConfig is required: the WorkteamArn, HumanTaskUiArn, TaskTitle, "
            "TaskDescription and TaskCount of the reviews."
        )
    lifetime = loop.get("TaskAvailabilityLifetimeInSeconds")
    if lifetime is not None and lifetime > MAX_AVAILABILITY_LIFETIME_SECS:
        raise InvalidFlowDefinition(
            "HumanLoopConfig.TaskAvailabilityLifetimeInSeconds must be at most "
            f"{MAX_AVAILABILITY_LIFETIME_SECS} (10 days), not {lifetime}."
        )
    split_s3_uri(request["OutputConfig"]["S3OutputPath"])
    activation = request.get("HumanLoopActivationConfig")
    text = None
    if activation is not None:
        text = activation["HumanLoopActivationConditionsConfig"]["HumanLoopActivationConditions"]
    return request, parse_activation_conditions(text)


class FlowDefinitionStore(SqliteStore):
    """Flow definitions in one SQLite file; safe to share between threads and processes."""

    def __init__(
        self,
        path: str,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Callable[[], float] = time.time,
    ):
        check_arn_scope(region, account_id)
        super().__init__(path, _SCHEMA, clock=clock)
        self.region = region
        self.account_id = account_id

    def create(self, params: Mapping[str, Any]) -> FlowDefinition:
        """Registers the flow definition of a CreateFlowDefinition request (already validated
        against the model), Active at once.

        FlowInUse if the name is taken; InvalidFlowDefinition or InvalidConditions (ValueErrors)
        for a request this server cannot serve.
        """
        request, conditions = _checked_request(params)
        name = request["FlowDefinitionName"]
        flow = FlowDefinition.from_request(
            name=name,
            arn=arn_of_flow(self.region, self.account_id, name),
            created=round(self._clock(), 3),
            status=ACTIVE,
            request=request,
            conditions=conditions,
        )
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM review_flow_definitions WHERE name = ?", (name,)
            ).fetchone():
                raise FlowInUse(
                    f"A flow definition named {name} already exists: pick another "
                    "FlowDefinitionName, or delete that one first."
                )
            db.execute(
                "INSERT INTO review_flow_definitions (name, arn, created, status, request, "
                "conditions) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    flow.arn,
                    flow.created,
                    flow.status,
                    json.dumps(request, sort_keys=True),
                    None if conditions is None else json.dumps(conditions),
                ),
            )
        return flow

    def get(self, name_or_arn: str) -> FlowDefinition:
        """The flow definition of this name or ARN; FlowNotFound if there is none."""
        column = "arn" if name_or_arn.startswith("arn:") else "name"
        with self._connection() as db:
            row = db.execute(
                f"SELECT * FROM review_flow_definitions WHERE {column} = ?", (name_or_arn,)
            ).fetchone()
        if row is None:
            what = "has the ARN" if column == "arn" else "is named"
            raise FlowNotFound(f"No flow definition {what} {name_or_arn}.")
        return _from_row(row)

    def list(
        self,
        *,
        created_after: float | None = None,
        created_before: float | None = None,
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> tuple[list[FlowDefinition], str | None]:
        """Flow definitions created at or after ``created_after`` and before ``created_before``
        (None: no bound), oldest or newest first, and the token of the next page (None on the
        last). InvalidPaginationToken for a token of another listing."""
        if sort_order not in _SORT_ORDERS:
            raise ValueError(f"sort_order must be Ascending or Descending, not {sort_order!r}")
        conditions, args = [], []
        if created_after is not None:
            conditions.append("created >= ?")
            args.append(float(created_after))
        if created_before is not None:
            conditions.append("created < ?")
            args.append(float(created_before))
        scope = listing_scope(
            "flow-definitions", after=created_after, before=created_before, order=sort_order
        )
        ascending = sort_order == "Ascending"
        if next_token:
            created, arn = self._read_token(next_token, max_results, scope)
            beyond = ">" if ascending else "<"
            conditions.append(f"((created {beyond} ?) OR (created = ? AND arn {beyond} ?))")
            args.extend((created, created, arn))
        query = "SELECT * FROM review_flow_definitions"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        direction = "ASC" if ascending else "DESC"
        query += f" ORDER BY created {direction}, arn {direction} LIMIT ?"
        with self._connection() as db:
            rows = db.execute(query, (*args, max_results + 1)).fetchall()
        token = None
        if len(rows) > max_results:
            last = rows[max_results - 1]
            token = self._issue_token((last["created"], last["arn"]), max_results, scope)
        return [_from_row(row) for row in rows[:max_results]], token

    def delete(self, name: str) -> None:
        """Deletes the flow definition of this name; FlowNotFound if there is none."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM review_flow_definitions WHERE name = ?", (name,))
            if cursor.rowcount == 0:
                raise FlowNotFound(f"No flow definition is named {name}.")


def _from_row(row: sqlite3.Row) -> FlowDefinition:
    conditions = row["conditions"]
    return FlowDefinition.from_request(
        name=row["name"],
        arn=row["arn"],
        created=row["created"],
        status=row["status"],
        request=json.loads(row["request"]),
        conditions=None if conditions is None else json.loads(conditions),
    )

"""A completed human loop's ``output.json``, where and as Amazon A2I writes it.

A2I's "Output data" page (SageMaker Developer Guide, ``a2i-output-data``) gives the key,
``S3OutputPath/<flow definition name>/YYYY/MM/DD/hh/mm/ss/<human loop name>/output.json``, where
the date and time are the loop's *creation* time (UTC, to the second, as the CloudWatch event
example of the same guide shows: created ``17:37:36.740``, written under ``.../17/37/36/``), and
the document: ``awsManagedHumanLoopRequestSource`` (built-in task types only, e.g.
``AWS/Rekognition/DetectModerationLabels/Image/V3``), ``flowDefinitionArn``, ``humanAnswers``
(each reviewer's ``answerContent`` with ``acceptanceTime``, ``submissionTime``,
``timeSpentInSeconds`` and ``workerId``), ``humanLoopName`` and ``inputContent``. Its examples
have their keys sorted, and so does this file.

The object is written with the flow's ``KmsKeyId`` (SSE-KMS) when it has one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from service.review.loops import HumanLoop
from storage.outputs import OutputStore
from storage.settings import S3Settings

__all__ = ["output_document", "output_uri", "write_output"]


def output_uri(loop: HumanLoop, flow_or_fields: Any = None) -> str:
    """Where the loop's output goes: under the flow's S3OutputPath, by flow name, creation time
    and loop name."""
    output_path, flow_name, _ = _fields(loop, flow_or_fields)
    created = datetime.fromtimestamp(loop.created, tz=timezone.utc)
    return (
        f"{output_path.rstrip('/')}/{flow_name}/{created.strftime('%Y/%m/%d/%H/%M/%S')}/"
        f"{loop.name}/output.json"
    )


def output_document(loop: HumanLoop) -> dict[str, Any]:
    """The content of ``output.json``."""
    document: dict[str, Any] = {}
    if loop.request_source:
        document["awsManagedHumanLoopRequestSource"] = loop.request_source
    document.update(
        flowDefinitionArn=loop.flow_definition_arn,
        humanAnswers=list(loop.answers),
        humanLoopName=loop.name,
        inputContent=loop.input_content,
    )
    return document


def write_output(
    loop: HumanLoop, flow_or_fields: Any = None, s3_settings: S3Settings | None = None
) -> str:
    """Writes the loop's ``output.json`` and returns its ``s3://`` URI.

    ``flow_or_fields`` is the loop's ``FlowDefinition``, or a mapping of ``output_path``,
    ``name`` and ``kms_key_id``, or None: then the values copied onto the loop when it was
    created are used (the flow may be gone by now).
    """
    _, _, kms_key_id = _fields(loop, flow_or_fields)
    uri = output_uri(loop, flow_or_fields)
    data = json.dumps(output_document(loop), sort_keys=True, indent=4).encode("utf-8")
    OutputStore(s3_settings, kms_key_id=kms_key_id or None).write_bytes(uri, data)
    return uri


def _fields(loop: HumanLoop, flow_or_fields: Any) -> tuple[str, str, str | None]:
    if flow_or_fields is None:
        return loop.output_path, loop.flow_name, loop.kms_key_id
    if isinstance(flow_or_fields, Mapping):
        return (
            flow_or_fields.get("output_path", loop.output_path),
            flow_or_fields.get("name", loop.flow_name),
            flow_or_fields.get("kms_key_id", loop.kms_key_id),
        )
    return flow_or_fields.output_path, flow_or_fields.name, flow_or_fields.kms_key_id

"""A bulk job's human review: the results lines that meet a flow definition's activation
conditions become human loops, one per line, after the job has succeeded.

AWS does not run A2I on bulk analysis; this project does, as an extension. ``bulk_loops`` picks
the lines (the same conditions as DetectModerationLabels, ``model.human_review``) and names each
loop after the job and the line, so that running the step twice starts each loop once. Two
callers: ``python -m pipeline.run --flow_definition_arn=ARN`` starts them through the A2I runtime
API (``start_bulk_loops``: this project's server, or any endpoint that speaks it), and the server
starts them itself for a job started with a flow definition attached (``service.jobs``).

A Sampling condition draws on the flow definition's ARN and the line's source-ref, which stands
for the image here: the same image through the same flow is sampled the same way every run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from model.human_review import evaluate, input_content, parse_activation_conditions, sampling_key
from storage.reading import split_s3_uri, split_versioned_uri
from transforms.output import MODERATION_RESULTS_KEY

__all__ = ["BulkLoop", "bulk_loop_name", "bulk_loops", "start_bulk_loops"]

_LOGGER = logging.getLogger(__name__)

RESULTS_KEY = MODERATION_RESULTS_KEY


@dataclass(frozen=True)
class BulkLoop:
    """One human loop to start: its name, the results line it comes from, what it keeps."""

    name: str
    line_number: int
    source_ref: str
    input_content: dict[str, Any]


def bulk_loop_name(job_key: str, line_number: int) -> str:
    """``bulk-<16 hex of the job>-<line>``: a valid HumanLoopName (lower case, digits, hyphens,
    at most 63 characters), the same for the same job and line every time."""
    digest = hashlib.sha256(job_key.encode("utf-8")).hexdigest()[:16]
    return f"bulk-{digest}-{line_number}"


def _image(source_ref: str) -> dict[str, Any]:
    """The request's ``Image`` for a source-ref: its S3 object (and version) where it is one."""
    if source_ref.startswith("s3://"):
        uri, version = split_versioned_uri(source_ref)
        bucket, key = split_s3_uri(uri)
        location = {"Bucket": bucket, "Name": key}
        if version:
            location["Version"] = version
        return {"S3Object": location}
    return {"SourceRef": source_ref}


def bulk_loops(
    results_lines: Iterable[bytes | str],
    *,
    flow_arn: str,
    conditions: dict | None,
    job_key: str,
    min_confidence: float,
) -> Iterator[BulkLoop]:
    """The loops of a job's ``results.jsonl`` lines (streamed: memory does not grow with the
    job): one per line whose answer meets ``conditions`` (None: every line)."""
    for number, raw in enumerate(results_lines, start=1):
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        document = json.loads(text)
        source_ref = document["source-ref"]
        response = document[RESULTS_KEY]
        activation = evaluate(
            conditions, response, sampling_key=sampling_key(flow_arn, source_ref.encode("utf-8"))
        )
        if not activation.activated:
            continue
        params = {"Image": _image(source_ref), "MinConfidence": min_confidence}
        content = input_content(
            params, response, activation.evaluation_results, activation.selected_labels
        )
        yield BulkLoop(bulk_loop_name(job_key, number), number, source_ref, content)


def flow_conditions(description: dict[str, Any]) -> dict | None:
    """The parsed activation conditions of a DescribeFlowDefinition answer (None: none)."""
    config = description.get("HumanLoopActivationConfig") or {}
    text = (config.get("HumanLoopActivationConditionsConfig") or {}).get(
        "HumanLoopActivationConditions"
    )
    return parse_activation_conditions(text)


def start_bulk_loops(
    results_lines: Iterable[bytes | str],
    *,
    flow_arn: str,
    job_key: str,
    min_confidence: float,
    endpoint_url: str | None = None,
    region_name: str | None = None,
) -> int:
    """Starts the job's loops through the A2I runtime API (StartHumanLoop), reading the flow
    definition's conditions with SageMaker's DescribeFlowDefinition first; returns how many
    loops the job has. A loop started before (same name) is left as it is."""
    import boto3.session

    # A session of its own reads the environment's credentials now, not those a default
    # session of the same process resolved before.
    session = boto3.session.Session()
    # An endpoint of this project's server needs some region to sign with.
    clients = {
        "endpoint_url": endpoint_url,
        "region_name": region_name or session.region_name or "us-east-1",
    }
    sagemaker = session.client("sagemaker", **clients)
    runtime = session.client("sagemaker-a2i-runtime", **clients)
    name = flow_arn.rsplit("/", 1)[-1]
    conditions = flow_conditions(sagemaker.describe_flow_definition(FlowDefinitionName=name))
    count = 0
    for loop in bulk_loops(
        results_lines,
        flow_arn=flow_arn,
        conditions=conditions,
        job_key=job_key,
        min_confidence=min_confidence,
    ):
        try:
            runtime.start_human_loop(
                HumanLoopName=loop.name,
                FlowDefinitionArn=flow_arn,
                HumanLoopInput={"InputContent": json.dumps(loop.input_content)},
            )
        except runtime.exceptions.ConflictException:
            pass  # started by an earlier run of this step
        count += 1
    _LOGGER.info("The job has %d human loop(s) in %s", count, flow_arn)
    return count

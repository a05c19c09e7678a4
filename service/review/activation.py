"""Human review from DetectModerationLabels: its ``HumanLoopConfig``, as Rekognition serves it.

With a ``HumanLoopConfig`` (``HumanLoopName``, ``FlowDefinitionArn``, optional
``DataAttributes.ContentClassifiers``), the answer is evaluated against the flow definition's
activation conditions (``service.review.conditions``); when they are met a human loop of that
name starts (``service.review.loops``) and the answer's ``HumanLoopActivationOutput`` names it
(``HumanLoopArn``, ``HumanLoopActivationReasons``); either way it carries the conditions'
results, a JSON string, in ``HumanLoopActivationConditionsEvaluationResults``. Rekognition's
reference: "If there is no HumanLoopArn, the input did not trigger human review."

The loop keeps what A2I keeps as a Rekognition loop's ``inputContent`` (its "Output data"
page): ``aiServiceRequest`` (the request, with the image as given: its S3 object, or its bytes in
base64), ``aiServiceResponse`` (the answer), ``humanTaskActivationConditionResults`` and
``selectedAiServiceResponse`` (the labels the conditions picked), with the request's and the
answer's keys in camelCase as A2I writes them.

Errors, as DetectModerationLabels declares them: a flow definition that does not exist (never
created, or deleted) is ``ResourceNotFoundException``; a ``HumanLoopName`` already used is
``InvalidParameterException``; too many loops in progress is ``HumanLoopQuotaExceededException``
with its ``ResourceType``, ``QuotaCode`` and ``ServiceCode``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from service.errors import RequestError
from service.review.conditions import evaluate
from service.review.flows import REKOGNITION_SOURCE, FlowDefinition, FlowNotFound
from service.review.loops import LoopExists, LoopQuotaExceeded

__all__ = ["human_loop_activation", "input_content", "resolve_flow", "sampling_key"]


def resolve_flow(flows, config: Mapping[str, Any]) -> FlowDefinition:
    """The flow definition a ``HumanLoopConfig`` names; ResourceNotFoundException if there is
    none, InvalidParameterException when the server keeps no flow definitions."""
    if flows is None:
        raise RequestError(
            "InvalidParameterException", "This server does not run human review (HumanLoopConfig)."
        )
    arn = config["FlowDefinitionArn"]
    try:
        flow = flows.get(arn)
    except FlowNotFound:
        raise RequestError(
            "ResourceNotFoundException",
            f"The flow definition {arn} of HumanLoopConfig does not exist: create it with "
            "SageMaker's CreateFlowDefinition, or name another.",
        ) from None
    return flow


def sampling_key(flow_arn: str, image: bytes) -> bytes:
    """What decides a Sampling condition for this request: the image's SHA-256 and the flow
    definition's ARN (the same image through the same flow is always sampled the same way)."""
    return hashlib.sha256(
        flow_arn.encode("utf-8") + b"\n" + hashlib.sha256(image).digest()
    ).digest()


def human_loop_activation(
    loops,
    flow: FlowDefinition,
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    image: bytes,
) -> dict[str, Any]:
    """The ``HumanLoopActivationOutput`` of one DetectModerationLabels answer, starting the
    human loop when the flow's conditions are met."""
    config = params["HumanLoopConfig"]
    activation = evaluate(flow.conditions, response, sampling_key=sampling_key(flow.arn, image))
    results = json.dumps(activation.evaluation_results, separators=(",", ":"))
    if not activation.activated:
        return {"HumanLoopActivationConditionsEvaluationResults": results}
    content = input_content(
        params, response, activation.evaluation_results, activation.selected_labels
    )
    try:
        loop = loops.create(
            config["HumanLoopName"],
            flow,
            content,
            request_source=REKOGNITION_SOURCE,
            data_attributes=config.get("DataAttributes"),
        )
    except LoopExists:
        raise RequestError(
            "InvalidParameterException",
            f"A human loop named {config['HumanLoopName']} already exists: HumanLoopName must be "
            "unique (deleted loops free their names).",
        ) from None
    except LoopQuotaExceeded as exc:
        raise RequestError(
            "HumanLoopQuotaExceededException",
            str(exc),
            fields={
                "ResourceType": exc.resource_type,
                "QuotaCode": exc.quota_code,
                "ServiceCode": exc.service_code,
            },
        ) from None
    return {
        "HumanLoopArn": loop.arn,
        "HumanLoopActivationReasons": list(activation.reasons),
        "HumanLoopActivationConditionsEvaluationResults": results,
    }


def input_content(
    params: Mapping[str, Any],
    response: Mapping[str, Any],
    evaluation_results: Mapping[str, Any],
    selected_labels: list[Mapping[str, Any]],
) -> dict[str, Any]:
    """A Rekognition loop's ``inputContent``, as A2I's output data shows it."""
    request = {key: value for key, value in params.items() if value is not None}
    image = dict(request.get("Image") or {})
    if isinstance(image.get("Bytes"), bytes | bytearray):
        image["Bytes"] = base64.b64encode(image["Bytes"]).decode("ascii")
    request["Image"] = image
    answer = {key: value for key, value in response.items() if key != "HumanLoopActivationOutput"}
    selected: dict[str, Any] = {"ModerationLabels": list(selected_labels)}
    if "ModerationModelVersion" in response:
        selected["ModerationModelVersion"] = response["ModerationModelVersion"]
    return {
        "aiServiceRequest": _camel(request),
        "aiServiceResponse": _camel(answer),
        "humanTaskActivationConditionResults": dict(evaluation_results),
        "selectedAiServiceResponse": _camel(selected),
    }


def _camel(value: Any) -> Any:
    """Keys in A2I's camelCase (``ModerationLabels`` -> ``moderationLabels``), all the way down."""
    if isinstance(value, Mapping):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(item) for item in value]
    return value

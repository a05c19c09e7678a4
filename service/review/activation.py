"""Human review from DetectModerationLabels: its ``HumanLoopConfig``, as Rekognition serves it.

With a ``HumanLoopConfig`` (``HumanLoopName``, ``FlowDefinitionArn``, optional
``DataAttributes.ContentClassifiers``), the answer is evaluated against the flow definition's
activation conditions (``model.human_review``); when they are met a human loop of that
name starts (``service.review.loops``) and the answer's ``HumanLoopActivationOutput`` names it
(``HumanLoopArn``, ``HumanLoopActivationReasons``); either way it carries the conditions'
results, a JSON string, in ``HumanLoopActivationConditionsEvaluationResults``. Rekognition's
reference: "If there is no HumanLoopArn, the input did not trigger human review."

The loop keeps what A2I keeps as a Rekognition loop's ``inputContent``
(``model.human_review.input_content``).

Errors, as DetectModerationLabels declares them: a flow definition that does not exist (never
created, or deleted) is ``ResourceNotFoundException``; a ``HumanLoopName`` already used is
``InvalidParameterException``; too many loops in progress is ``HumanLoopQuotaExceededException``
with its ``ResourceType``, ``QuotaCode`` and ``ServiceCode``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from model.human_review import evaluate, input_content, sampling_key
from service.errors import RequestError
from service.review.flows import REKOGNITION_SOURCE, FlowDefinition, FlowNotFound
from service.review.loops import LoopExists, LoopQuotaExceeded

__all__ = ["human_loop_activation", "resolve_flow"]


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

"""SageMaker's flow definition operations, as the real ``boto3.client("sagemaker")`` calls them.

CreateFlowDefinition, DescribeFlowDefinition, ListFlowDefinitions and DeleteFlowDefinition come
over AWS JSON 1.1 like the Rekognition API (``X-Amz-Target: SageMaker.<Operation>``, SigV4 with
the service name ``sagemaker``); ``service.api`` routes them here. Requests are checked against
botocore's SageMaker model, whose constraint violations SageMaker answers as
``ValidationException``; errors carry the codes the model names (``ResourceNotFound``,
``ResourceInUse``).

Reviews are written under ``<S3OutputPath>/<FlowDefinitionName>/``, which must lie within
``--allowed_locations`` as every other output of the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from model.human_review import InvalidConditions
from service.errors import RequestError
from service.preflight import is_allowed
from service.review.flows import (
    FlowDefinitionStore,
    FlowInUse,
    FlowNotFound,
    InvalidFlowDefinition,
    split_s3_uri,
)
from service.store import InvalidPaginationToken, page_answer
from service.validation import (
    UNKNOWN_OPERATION,
    VALIDATION_ERROR,
    service_model,
    validate_parameters,
)

__all__ = [
    "SAGEMAKER_ERROR_CODES",
    "SAGEMAKER_OPERATIONS",
    "SAGEMAKER_SIGNING_NAME",
    "SAGEMAKER_TARGET_PREFIX",
    "SageMakerOperations",
]

_LOGGER = logging.getLogger(__name__)

SAGEMAKER_TARGET_PREFIX = "SageMaker."
SAGEMAKER_SIGNING_NAME = "sagemaker"


class SageMakerOperations:
    """The flow definition operations of ``service.api.RekognitionApi``, over its
    ``FlowDefinitionStore`` (None: none are served)."""

    flows: FlowDefinitionStore | None
    allowed_locations: Collection[str] | None

    def call_sagemaker(
        self, operation: str, params: bytes | Mapping[str, Any], *, target: str | None = None
    ) -> dict[str, Any]:
        """One operation of ``SAGEMAKER_OPERATIONS`` for a caller already authenticated:
        validated against botocore's SageMaker model, dispatched, errors as SageMaker's
        (``RequestError``). UnknownOperationException, naming ``target`` (the X-Amz-Target as
        sent) or else the operation, for one not served."""
        if self.flows is None or operation not in SAGEMAKER_OPERATIONS:
            requested = operation if target is None else target
            raise RequestError(
                UNKNOWN_OPERATION, f"An unknown operation was requested: {requested!r}"
            )
        params = validate_parameters(
            operation, params, model=service_model("sagemaker"), invalid_code=VALIDATION_ERROR
        )
        try:
            return SAGEMAKER_OPERATIONS[operation](self, params)
        except _MAPPED_ERRORS as exc:
            code = next(
                SAGEMAKER_ERROR_CODES[kind]
                for kind in type(exc).__mro__
                if kind in SAGEMAKER_ERROR_CODES
            )
            raise RequestError(code, str(exc)) from None

    def create_flow_definition(self, params: dict) -> dict:
        name = params["FlowDefinitionName"]
        bucket, prefix = split_s3_uri(params["OutputConfig"]["S3OutputPath"])
        folder = f"{prefix}/{name}" if prefix else name
        if not is_allowed(bucket, folder + "/", self.allowed_locations):
            raise RequestError(
                "AccessDeniedException",
                f"This server may not write under s3://{bucket}/{folder}/ (the reviews of this "
                "flow definition): pick an S3OutputPath within --allowed_locations.",
            )
        flow = self.flows.create(params)
        _LOGGER.info("Created the flow definition %s", flow.arn)
        return {"FlowDefinitionArn": flow.arn}

    def describe_flow_definition(self, params: dict) -> dict:
        return self.flows.get(params["FlowDefinitionName"]).to_api()

    def list_flow_definitions(self, params: dict) -> dict:
        flows, token = self.flows.list(
            created_after=params.get("CreationTimeAfter"),
            created_before=params.get("CreationTimeBefore"),
            sort_order=params.get("SortOrder", "Descending"),
            max_results=params.get("MaxResults", 10),
            next_token=params.get("NextToken"),
        )
        return page_answer("FlowDefinitionSummaries", [flow.summary() for flow in flows], token)

    def delete_flow_definition(self, params: dict) -> dict:
        self.flows.delete(params["FlowDefinitionName"])
        _LOGGER.info("Deleted the flow definition %s", params["FlowDefinitionName"])
        return {}


SAGEMAKER_OPERATIONS: Mapping[str, Callable[[SageMakerOperations, dict], dict]] = {
    "CreateFlowDefinition": SageMakerOperations.create_flow_definition,
    "DescribeFlowDefinition": SageMakerOperations.describe_flow_definition,
    "ListFlowDefinitions": SageMakerOperations.list_flow_definitions,
    "DeleteFlowDefinition": SageMakerOperations.delete_flow_definition,
}

# What the flow definition store raises, as a SageMaker client sees it (the sagemaker model's
# error shapes, or ValidationException for what it has none for).
SAGEMAKER_ERROR_CODES: Mapping[type[Exception], str] = {
    FlowNotFound: "ResourceNotFound",
    FlowInUse: "ResourceInUse",
    InvalidFlowDefinition: VALIDATION_ERROR,
    InvalidConditions: VALIDATION_ERROR,
    InvalidPaginationToken: VALIDATION_ERROR,
}
_MAPPED_ERRORS = tuple(SAGEMAKER_ERROR_CODES)

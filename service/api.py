"""The Rekognition API over AWS JSON 1.1: authenticate, validate, dispatch, answer.

``RekognitionApi.handle`` takes a request as it arrived (method, path, query, headers, body) and
returns ``(status, headers, body)``; the HTTP server around it (``service.server``) only moves
bytes. Every error is answered the way Rekognition answers it, with its ``__type``.

``OPERATIONS`` is the one table of what is served: bulk analysis jobs (``service.job_operations``),
one image (``service.image_operations``), Custom Moderation adapters through the project API
(``service.project_operations``), whose ARNs jobs and DetectModerationLabels take as
``ProjectVersion``, and Custom Labels models trained through the same project API, started,
stopped and run by DetectCustomLabels (``service.custom_labels_operations``). ``ERROR_CODES``
is the one table of the AWS error code each exception of the registries answers with.

Requests whose X-Amz-Target is ``SageMaker.*`` are SageMaker's flow definition operations of human
review (``service.review.sagemaker_api``), signed for the service ``sagemaker``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from service.adapters import AdapterNotReady, LoadedAdapters
from service.auth import AccessKeys, verify_sigv4
from service.custom_labels_operations import CustomLabelsOperations
from service.errors import RequestError
from service.image_operations import ImageOperations, SharedModel
from service.inference_queue import BatchingSettings
from service.job_operations import JobOperations
from service.jobs import JobRunner
from service.project_operations import ProjectOperations
from service.project_records import (
    ModelNotRunning,
    ProjectNotFound,
    ResourceInUse,
    VersionNotFound,
    WrongFeature,
)
from service.registry import IdempotentParameterMismatch, JobLimitExceeded, JobNotFound
from service.review.bulk import FLOW_HEADER, FLOW_KEY
from service.review.sagemaker_api import (
    SAGEMAKER_SIGNING_NAME,
    SAGEMAKER_TARGET_PREFIX,
    SageMakerOperations,
)
from service.serving import ModelServing
from service.store import InvalidPaginationToken
from service.training import TrainingRunner
from service.validation import UNKNOWN_OPERATION, validate_parameters

__all__ = ["ERROR_CODES", "OPERATIONS", "RekognitionApi", "validate_request"]

_LOGGER = logging.getLogger(__name__)

_TARGET_PREFIX = "RekognitionService."
_CONTENT_TYPE = "application/x-amz-json-1.1"


class RekognitionApi(
    JobOperations,
    ProjectOperations,
    CustomLabelsOperations,
    ImageOperations,
    SageMakerOperations,
):
    """The operations this server answers, over its registries, job and training runners, one
    base model (with the adapters last used) and the Custom Labels models it serves
    (``serving``; default: on the S3 of the jobs, batched as ``detect_batching``); SageMaker's
    flow definition operations over ``flows`` (a ``service.review.flows.FlowDefinitionStore``;
    None: not served)."""

    def __init__(
        self,
        *,
        access_keys: AccessKeys,
        runner: JobRunner,
        trainer: TrainingRunner,
        s3_client,
        load_model: Callable[[], Any],
        detect_batching: BatchingSettings | None = None,
        allowed_locations=None,
        flows=None,
        loops=None,
        serving: ModelServing | None = None,
    ):
        self.access_keys = access_keys
        self.runner = runner
        self.registry = runner.registry
        self.trainer = trainer
        self.projects = trainer.projects
        self.s3_client = s3_client
        self.model = SharedModel(load_model, detect_batching)
        self.adapters = LoadedAdapters(self.projects, runner.settings.s3)
        if serving is None:
            serving = ModelServing(self.projects, runner.settings.s3, detect_batching)
        self.serving = serving
        self.allowed_locations = allowed_locations
        self.flows = flows
        # Human loops (service.review.loops.HumanLoopStore; None: human review not served).
        self.loops = loops

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            if method != "POST" or path != "/":
                raise RequestError(UNKNOWN_OPERATION, "Send POST / with an X-Amz-Target.")
            lower = {name.lower(): value for name, value in headers.items()}
            target = lower.get("x-amz-target", "")
            sagemaker = target.startswith(SAGEMAKER_TARGET_PREFIX)
            service = SAGEMAKER_SIGNING_NAME if sagemaker else "rekognition"
            verify_sigv4(method, path, query, headers, body, self.access_keys, service=service)
            if sagemaker:
                operation = target[len(SAGEMAKER_TARGET_PREFIX) :]
                answer = self.call_sagemaker(operation, body, target=target)
            else:
                prefix = _TARGET_PREFIX
                operation = target[len(prefix) :] if target.startswith(prefix) else ""
                flow = lower.get(FLOW_HEADER, "").strip()
                extensions = {FLOW_KEY: flow} if flow and operation in _FLOW_OPERATIONS else None
                answer = self.call(operation, body, target=target, extensions=extensions)
            return 200, {"Content-Type": _CONTENT_TYPE}, json.dumps(answer).encode()
        except RequestError as exc:
            return (
                exc.http_status,
                {"Content-Type": _CONTENT_TYPE},
                json.dumps(exc.to_body()).encode(),
            )
        except Exception:
            _LOGGER.exception("Internal error")
            error = RequestError("InternalServerError", "Internal server error.", 500)
            return 500, {"Content-Type": _CONTENT_TYPE}, json.dumps(error.to_body()).encode()

    def call(
        self,
        operation: str,
        params: bytes | Mapping[str, Any],
        *,
        target: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One operation of ``OPERATIONS`` for a caller already authenticated (a signed request,
        or a console session): validated against the botocore model and dispatched exactly as a
        request of a client would be; errors are the client's (``RequestError``).

        ``extensions``: this project's parameters beyond Rekognition's, added after validation
        (a StartMediaAnalysisJob's human review flow, ``service.review.bulk.FLOW_KEY``)."""
        params = validate_request(operation, params, target=target)
        if extensions:
            params.update(extensions)
        try:
            return OPERATIONS[operation](self, params)
        except _MAPPED_ERRORS as exc:
            raise RequestError(_error_code(exc), str(exc)) from None


# The operations that take a human review flow definition as this project's extension.
_FLOW_OPERATIONS = ("StartMediaAnalysisJob",)

# The operations served, each by its method: the API dispatches on this table, and requests are
# validated against the botocore model of the operations it names.
OPERATIONS: Mapping[str, Callable[[RekognitionApi, dict], dict]] = {
    "StartMediaAnalysisJob": RekognitionApi.start_media_analysis_job,
    "GetMediaAnalysisJob": RekognitionApi.get_media_analysis_job,
    "ListMediaAnalysisJobs": RekognitionApi.list_media_analysis_jobs,
    "DetectModerationLabels": RekognitionApi.detect_moderation_labels,
    "CreateProject": RekognitionApi.create_project,
    "DescribeProjects": RekognitionApi.describe_projects,
    "DeleteProject": RekognitionApi.delete_project,
    "CreateProjectVersion": RekognitionApi.create_project_version,
    "DescribeProjectVersions": RekognitionApi.describe_project_versions,
    "DeleteProjectVersion": RekognitionApi.delete_project_version,
    "StartProjectVersion": RekognitionApi.start_project_version,
    "StopProjectVersion": RekognitionApi.stop_project_version,
    "DetectCustomLabels": RekognitionApi.detect_custom_labels,
}

# What the registries raise, as the client sees it: this code, the exception's text as message.
ERROR_CODES: Mapping[type[Exception], str] = {
    JobNotFound: "ResourceNotFoundException",
    ProjectNotFound: "ResourceNotFoundException",
    VersionNotFound: "ResourceNotFoundException",
    ResourceInUse: "ResourceInUseException",
    AdapterNotReady: "ResourceNotReadyException",
    ModelNotRunning: "ResourceNotReadyException",
    WrongFeature: "InvalidParameterException",
    IdempotentParameterMismatch: "IdempotentParameterMismatchException",
    JobLimitExceeded: "LimitExceededException",
    InvalidPaginationToken: "InvalidPaginationTokenException",
}
_MAPPED_ERRORS = tuple(ERROR_CODES)


def _error_code(exc: Exception) -> str:
    return next(ERROR_CODES[kind] for kind in type(exc).__mro__ if kind in ERROR_CODES)


def validate_request(
    operation: str, body: bytes | Mapping[str, Any], *, target: str | None = None
) -> dict[str, Any]:
    """The cleaned parameters of a request for ``operation``, one of ``OPERATIONS``, checked
    against its botocore model (``service.validation``).

    RequestError as ``validate_parameters`` raises it; UnknownOperationException for an operation
    not served, naming ``target`` (the X-Amz-Target as sent) or else the operation.
    """
    if operation not in OPERATIONS:
        requested = operation if target is None else target
        raise RequestError(UNKNOWN_OPERATION, f"An unknown operation was requested: {requested!r}")
    return validate_parameters(operation, body)

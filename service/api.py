"""The Rekognition API over AWS JSON 1.1: authenticate, validate, dispatch, answer.

``RekognitionApi.handle`` takes a request as it arrived (method, path, query, headers, body) and
returns ``(status, headers, body)``; the HTTP server around it (``service.server``) only moves
bytes. Every error is answered the way Rekognition answers it, with its ``__type``.

Operations: bulk analysis jobs (Start/Get/ListMediaAnalysisJobs), one image
(DetectModerationLabels), and Custom Moderation adapters through the project API
(Create/Describe/DeleteProject, Create/Describe/DeleteProjectVersion, ``Feature=CONTENT_MODERATION``
only), whose ARNs jobs and DetectModerationLabels take as ``ProjectVersion``.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from model.confidence import DEFAULT_MIN_CONFIDENCE
from service.auth import AccessKeys, verify_sigv4
from service.jobs import JobRunner
from service.preflight import is_allowed
from service.projects import (
    CONTENT_MODERATION,
    AdapterNotReady,
    ProjectNotFound,
    ResolvedAdapter,
    ResourceInUse,
    VersionNotFound,
    version_folder,
)
from service.registry import (
    IdempotentParameterMismatch,
    JobLimitExceeded,
    JobNotFound,
)
from service.store import InvalidPaginationToken
from service.training import TrainingRunner
from service.validation import RequestError, validate_request
from transforms.images import MAX_IMAGE_BYTES, ImageProblem, decode_image
from transforms.records import ErrorCode

__all__ = ["ADAPTER_CACHE_SIZE", "MAX_INLINE_IMAGE_BYTES", "RekognitionApi"]

_LOGGER = logging.getLogger(__name__)

_TARGET_PREFIX = "RekognitionService."
_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024  # Image.Bytes
# Adapters kept loaded for DetectModerationLabels, the least recently used dropped first.
ADAPTER_CACHE_SIZE = 8
_ASSETS_SHAPE = "[{GroundTruthManifest={S3Object={Bucket=...,Name=...}}}]"
_MANIFEST_SHAPE = f"{{Assets={_ASSETS_SHAPE}}}"


def _error(code: str, message: str, status: int = 400) -> RequestError:
    return RequestError(code, message, status)


class RekognitionApi:
    """The operations this server answers, over its registries, job and training runners, and
    one base model (with the adapters last used)."""

    def __init__(
        self,
        *,
        access_keys: AccessKeys,
        runner: JobRunner,
        trainer: TrainingRunner,
        s3_client,
        load_model: Callable[[], Any],
        allowed_locations=None,
    ):
        self.access_keys = access_keys
        self.runner = runner
        self.registry = runner.registry
        self.trainer = trainer
        self.projects = trainer.projects
        self._s3 = s3_client
        self._load_model = load_model
        self._model = None
        self._model_lock = threading.Lock()
        self._adapters: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._adapters_lock = threading.Lock()
        self._allowed = allowed_locations
        self._operations: dict[str, Callable[[dict], dict]] = {
            "StartMediaAnalysisJob": self.start_media_analysis_job,
            "GetMediaAnalysisJob": self.get_media_analysis_job,
            "ListMediaAnalysisJobs": self.list_media_analysis_jobs,
            "DetectModerationLabels": self.detect_moderation_labels,
            "CreateProject": self.create_project,
            "DescribeProjects": self.describe_projects,
            "DeleteProject": self.delete_project,
            "CreateProjectVersion": self.create_project_version,
            "DescribeProjectVersions": self.describe_project_versions,
            "DeleteProjectVersion": self.delete_project_version,
        }

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            if method != "POST" or path != "/":
                raise _error("UnknownOperationException", "Send POST / with an X-Amz-Target.")
            verify_sigv4(method, path, query, headers, body, self.access_keys)
            lower = {name.lower(): value for name, value in headers.items()}
            target = lower.get("x-amz-target", "")
            operation = target[len(_TARGET_PREFIX) :] if target.startswith(_TARGET_PREFIX) else ""
            if operation not in self._operations:
                raise _error(
                    "UnknownOperationException", f"An unknown operation was requested: {target!r}"
                )
            params = validate_request(operation, body)
            answer = self._operations[operation](params)
            return 200, {"Content-Type": _CONTENT_TYPE}, json.dumps(answer).encode()
        except RequestError as exc:
            return (
                exc.http_status,
                {"Content-Type": _CONTENT_TYPE},
                json.dumps(exc.to_body()).encode(),
            )
        except Exception:
            _LOGGER.exception("Internal error")
            error = _error("InternalServerError", "Internal server error.", 500)
            return 500, {"Content-Type": _CONTENT_TYPE}, json.dumps(error.to_body()).encode()

    # Bulk analysis jobs.

    def start_media_analysis_job(self, params: dict) -> dict:
        adapter_arn = (
            params["OperationsConfig"].get("DetectModerationLabels", {}).get("ProjectVersion")
        )
        if adapter_arn:
            self._resolve_adapter(adapter_arn)
        try:
            job, created = self.registry.start(params)
        except IdempotentParameterMismatch as exc:
            raise _error("IdempotentParameterMismatchException", str(exc)) from None
        except JobLimitExceeded as exc:
            raise _error("LimitExceededException", str(exc)) from None
        if created:
            self.runner.submit(job)
        return {"JobId": job.job_id}

    def get_media_analysis_job(self, params: dict) -> dict:
        try:
            return self.registry.get(params["JobId"]).to_api()
        except JobNotFound:
            raise _error(
                "ResourceNotFoundException", f"No job has the id {params['JobId']}."
            ) from None

    def list_media_analysis_jobs(self, params: dict) -> dict:
        try:
            jobs, token = self.registry.list(params.get("MaxResults", 100), params.get("NextToken"))
        except InvalidPaginationToken as exc:
            raise _error("InvalidPaginationTokenException", str(exc)) from None
        answer: dict[str, Any] = {"MediaAnalysisJobs": [job.to_api() for job in jobs]}
        if token:
            answer["NextToken"] = token
        return answer

    # Custom Moderation projects and adapter versions.

    def create_project(self, params: dict) -> dict:
        feature = params.get("Feature", "CUSTOM_LABELS")
        if feature != CONTENT_MODERATION:
            raise _error(
                "InvalidParameterException",
                f"This server serves Custom Moderation adapters only, not Feature={feature} "
                "(the default when Feature is omitted): pass Feature=CONTENT_MODERATION.",
            )
        if "AutoUpdate" not in params:
            raise _error(
                "InvalidParameterException",
                "AutoUpdate is required with Feature=CONTENT_MODERATION: pass ENABLED or DISABLED.",
            )
        try:
            project = self.projects.create_project(
                params["ProjectName"],
                feature=feature,
                auto_update=params["AutoUpdate"],
                tags=params.get("Tags"),
            )
        except ResourceInUse as exc:
            raise _error("ResourceInUseException", str(exc)) from None
        return {"ProjectArn": project.arn}

    def describe_projects(self, params: dict) -> dict:
        try:
            projects, token = self.projects.list_projects(
                params.get("MaxResults", 100),
                params.get("NextToken"),
                names=params.get("ProjectNames"),
                # As in Rekognition: without Features, only Custom Labels projects are listed.
                features=params.get("Features", ["CUSTOM_LABELS"]),
            )
        except InvalidPaginationToken as exc:
            raise _error("InvalidPaginationTokenException", str(exc)) from None
        answer: dict[str, Any] = {"ProjectDescriptions": [p.to_api() for p in projects]}
        if token:
            answer["NextToken"] = token
        return answer

    def delete_project(self, params: dict) -> dict:
        try:
            self.projects.delete_project(params["ProjectArn"])
        except ProjectNotFound as exc:
            raise _error("ResourceNotFoundException", str(exc)) from None
        except ResourceInUse as exc:
            raise _error("ResourceInUseException", str(exc)) from None
        return {"Status": "DELETING"}

    def create_project_version(self, params: dict) -> dict:
        _check_training_data(params)
        try:
            project = self.projects.get_project(params["ProjectArn"])
        except ProjectNotFound as exc:
            raise _error("ResourceNotFoundException", str(exc)) from None
        if project.feature != CONTENT_MODERATION:
            raise _error(
                "InvalidParameterException",
                f"The project {project.name} is not a Custom Moderation project.",
            )
        for data in (params["TrainingData"], params["TestingData"]):
            for asset in data.get("Assets", []):
                location = asset["GroundTruthManifest"]["S3Object"]
                if not is_allowed(location["Bucket"], location["Name"], self._allowed):
                    raise _error(
                        "AccessDeniedException",
                        f"This server may not read s3://{location['Bucket']}/{location['Name']}.",
                    )
        # Training writes under <S3KeyPrefix>/<project>/<version>/<ms>: that folder must be allowed.
        bucket, folder = version_folder(params["OutputConfig"], project.name, params["VersionName"])
        if not is_allowed(bucket, folder + "/", self._allowed):
            raise _error(
                "AccessDeniedException", f"This server may not write under s3://{bucket}/{folder}/."
            )
        try:
            version = self.projects.create_version(project.arn, params)
        except ProjectNotFound as exc:
            raise _error("ResourceNotFoundException", str(exc)) from None
        except ResourceInUse as exc:
            raise _error("ResourceInUseException", str(exc)) from None
        self.trainer.submit(version)
        return {"ProjectVersionArn": version.arn}

    def describe_project_versions(self, params: dict) -> dict:
        try:
            versions, token = self.projects.list_versions(
                params["ProjectArn"],
                params.get("MaxResults", 100),
                params.get("NextToken"),
                names=params.get("VersionNames"),
            )
        except ProjectNotFound as exc:
            raise _error("ResourceNotFoundException", str(exc)) from None
        except InvalidPaginationToken as exc:
            raise _error("InvalidPaginationTokenException", str(exc)) from None
        answer: dict[str, Any] = {"ProjectVersionDescriptions": [v.to_api() for v in versions]}
        if token:
            answer["NextToken"] = token
        return answer

    def delete_project_version(self, params: dict) -> dict:
        arn = params["ProjectVersionArn"]
        try:
            self.projects.delete_version(arn)
        except VersionNotFound as exc:
            raise _error("ResourceNotFoundException", str(exc)) from None
        except ResourceInUse as exc:
            raise _error("ResourceInUseException", str(exc)) from None
        with self._adapters_lock:
            self._adapters.pop(arn, None)
        return {"Status": "DELETING"}

    # One image.

    def detect_moderation_labels(self, params: dict) -> dict:
        resolved = None
        if params.get("ProjectVersion"):
            resolved = self._resolve_adapter(params["ProjectVersion"])
        data = self._image_bytes(params["Image"])
        try:
            image = decode_image(data)
        except ImageProblem as exc:
            if exc.code in (ErrorCode.UNSUPPORTED_IMAGE_FORMAT, ErrorCode.INVALID_IMAGE):
                raise _error("InvalidImageFormatException", exc.message) from None
            if exc.code == ErrorCode.DECOMPRESSION_BOMB:
                raise _error("ImageTooLargeException", exc.message) from None
            raise _error("InvalidParameterException", exc.message) from None
        model = self._shared_model()
        min_confidence = params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
        # An expired adapter is ignored, as Rekognition ignores one: the base model answers alone
        # and the response names no ProjectVersion.
        adapter = self._loaded_adapter(resolved) if resolved and not resolved.expired else None
        with self._model_lock:
            if adapter is None:
                (response,) = model.predict([image], min_confidence)
            else:
                (response,) = model.predict([image], min_confidence, adapter=adapter)
        if adapter is not None:
            response["ProjectVersion"] = resolved.arn
        return response

    def _image_bytes(self, image: Mapping[str, Any]) -> bytes:
        if ("Bytes" in image) == ("S3Object" in image):
            raise _error(
                "InvalidParameterException", "Image must have exactly one of Bytes or S3Object."
            )
        if "Bytes" in image:
            data = image["Bytes"]
            if len(data) > MAX_INLINE_IMAGE_BYTES:
                raise _error(
                    "ImageTooLargeException",
                    f"Image.Bytes is {len(data)} bytes; the limit is {MAX_INLINE_IMAGE_BYTES}.",
                )
            return data
        location = image["S3Object"]
        bucket, name = location.get("Bucket"), location.get("Name")
        if not bucket or not name:
            raise _error("InvalidS3ObjectException", "S3Object needs a Bucket and a Name.")
        if not is_allowed(bucket, name, self._allowed):
            raise _error("AccessDeniedException", f"This server may not read s3://{bucket}/{name}.")
        from botocore.exceptions import ClientError

        arguments = {"Bucket": bucket, "Key": name}
        if location.get("Version"):
            arguments["VersionId"] = location["Version"]
        try:
            head = self._s3.head_object(**arguments)
            if int(head.get("ContentLength", 0)) > MAX_IMAGE_BYTES:
                raise _error(
                    "ImageTooLargeException",
                    f"s3://{bucket}/{name} is over the {MAX_IMAGE_BYTES}-byte limit.",
                )
            return self._s3.get_object(**arguments)["Body"].read()
        except ClientError as exc:
            raise _error(
                "InvalidS3ObjectException",
                f"Unable to get object metadata from S3. Check object key, region and/or access "
                f"permissions. (s3://{bucket}/{name}: {exc.response['Error'].get('Code')})",
            ) from None

    def _resolve_adapter(self, arn: str) -> ResolvedAdapter:
        try:
            return self.projects.resolve_adapter(arn)
        except VersionNotFound:
            raise _error(
                "ResourceNotFoundException", f"The adapter {arn} does not exist."
            ) from None
        except AdapterNotReady as exc:
            raise _error("ResourceNotReadyException", str(exc)) from None

    def _loaded_adapter(self, resolved: ResolvedAdapter):
        from model.adapter import Adapter

        with self._adapters_lock:
            adapter = self._adapters.get(resolved.arn)
            if adapter is not None:
                self._adapters.move_to_end(resolved.arn)
                return adapter
            try:
                adapter = Adapter.load(resolved.adapter_uri, s3=self.runner.settings.s3)
            except Exception as exc:
                _LOGGER.exception("Unable to load the adapter %s", resolved.arn)
                raise _error(
                    "ResourceNotReadyException",
                    f"The adapter {resolved.arn} could not be loaded from "
                    f"{resolved.adapter_uri}: {exc}",
                ) from None
            self._adapters[resolved.arn] = adapter
            while len(self._adapters) > ADAPTER_CACHE_SIZE:
                self._adapters.popitem(last=False)
            return adapter

    def _shared_model(self):
        with self._model_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model


def _check_training_data(params: Mapping[str, Any]) -> None:
    """CreateProjectVersion's data rules for adapters: training manifests, and test manifests or
    an automatic split of the training data (never both, never neither)."""
    if not params["OutputConfig"].get("S3Bucket"):
        raise _error(
            "InvalidParameterException",
            "OutputConfig.S3Bucket is required: the bucket the adapter and its evaluation are "
            "written to.",
        )
    training = params.get("TrainingData")
    if not training or not training.get("Assets"):
        raise _error(
            "InvalidParameterException",
            f"TrainingData is required: pass TrainingData={_MANIFEST_SHAPE} with the ground-truth "
            "manifest of the images to train on.",
        )
    testing = params.get("TestingData")
    if testing is None:
        raise _error(
            "InvalidParameterException",
            "With TrainingData, pass TestingData too: TestingData={AutoCreate=true} to test on 20% "
            f"of the training data, or TestingData={_MANIFEST_SHAPE} with a test manifest.",
        )
    has_assets, auto_create = bool(testing.get("Assets")), bool(testing.get("AutoCreate"))
    if has_assets and auto_create:
        raise _error(
            "InvalidParameterException",
            "TestingData takes Assets or AutoCreate=true, not both: pass one of them.",
        )
    if not has_assets and not auto_create:
        raise _error(
            "InvalidParameterException",
            f"TestingData needs Assets={_ASSETS_SHAPE} (a test manifest) or AutoCreate=true.",
        )
    for name, data in (("TrainingData", training), ("TestingData", testing)):
        for asset in data.get("Assets", []):
            location = asset.get("GroundTruthManifest", {}).get("S3Object", {})
            if not location.get("Bucket") or not location.get("Name"):
                raise _error(
                    "InvalidParameterException",
                    f"Each {name} asset needs GroundTruthManifest.S3Object with a Bucket and a "
                    "Name.",
                )

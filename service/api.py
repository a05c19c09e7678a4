"""The Rekognition API over AWS JSON 1.1: authenticate, validate, dispatch, answer.

``RekognitionApi.handle`` takes a request as it arrived (method, path, query, headers, body) and
returns ``(status, headers, body)``; the HTTP server around it (``pipeline.server``) only moves
bytes. Every error is answered the way Rekognition answers it, with its ``__type``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from service.auth import AccessKeys, verify_sigv4
from service.jobs import JobRunner
from service.preflight import is_allowed
from service.registry import (
    IdempotentParameterMismatch,
    InvalidPaginationToken,
    JobLimitExceeded,
    JobNotFound,
)
from service.validation import RequestError, validate_request
from transforms.images import MAX_IMAGE_BYTES, ImageProblem, decode_image
from transforms.records import ErrorCode

__all__ = ["MAX_INLINE_IMAGE_BYTES", "RekognitionApi"]

_LOGGER = logging.getLogger(__name__)

_TARGET_PREFIX = "RekognitionService."
_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024  # Image.Bytes


def _error(code: str, message: str, status: int = 400) -> RequestError:
    return RequestError(code, message, status)


class RekognitionApi:
    """The operations this server answers, over one registry, job runner and model."""

    def __init__(
        self,
        *,
        access_keys: AccessKeys,
        runner: JobRunner,
        s3_client,
        load_model: Callable[[], Any],
        allowed_locations=None,
    ):
        self.access_keys = access_keys
        self.runner = runner
        self.registry = runner.registry
        self._s3 = s3_client
        self._load_model = load_model
        self._model = None
        self._model_lock = threading.Lock()
        self._allowed = allowed_locations
        self._operations: dict[str, Callable[[dict], dict]] = {
            "StartMediaAnalysisJob": self.start_media_analysis_job,
            "GetMediaAnalysisJob": self.get_media_analysis_job,
            "ListMediaAnalysisJobs": self.list_media_analysis_jobs,
            "DetectModerationLabels": self.detect_moderation_labels,
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

    # One image.

    def detect_moderation_labels(self, params: dict) -> dict:
        if params.get("ProjectVersion"):
            raise _error(
                "ResourceNotFoundException",
                f"The adapter {params['ProjectVersion']} does not exist.",
            )
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
        with self._model_lock:
            (response,) = model.predict([image], params.get("MinConfidence", 50.0))
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

    def _shared_model(self):
        with self._model_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

"""DetectModerationLabels: one image, inline or in S3, through the base model and an adapter,
and, with a ``HumanLoopConfig``, human review of the answer (``service.review.activation``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from model.confidence import DEFAULT_MIN_CONFIDENCE
from service.adapters import LoadedAdapters
from service.errors import RequestError
from service.inference_queue import BatchingSettings, InferenceQueue, QueueFull, QueueStopped
from service.preflight import is_allowed
from service.review.activation import human_loop_activation, resolve_flow
from transforms.fetching import MAX_IMAGE_BYTES
from transforms.images import decode_image
from transforms.records import ErrorCode, ImageProblem

__all__ = [
    "MAX_INLINE_IMAGE_BYTES",
    "THROTTLING_HTTP_STATUS",
    "ImageOperations",
    "SharedModel",
    "decode_request_image",
    "queue_refusals",
]

_LOGGER = logging.getLogger(__name__)

MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024  # Image.Bytes

# ThrottlingException is a fault in botocore's model of Rekognition, answered with a 5xx.
THROTTLING_HTTP_STATUS = 500


class SharedModel(InferenceQueue):
    """The base model every request shares, behind ``InferenceQueue``: concurrent requests run
    in batches on the model's own thread, loaded once (at server start, or on first use).

    Its refusals are the client's errors: a full queue is a ThrottlingException, which clients
    retry after backing off, and a stopping server an InternalServerError."""

    def __init__(self, load: Callable[[], Any], batching: BatchingSettings | None = None) -> None:
        super().__init__(load, batching, name="detect-moderation-labels")

    def check_room(self) -> None:
        with queue_refusals():
            super().check_room()

    def predict(self, image, min_confidence: float, adapter=None) -> dict[str, Any]:
        """The DetectModerationLabels response for one decoded image."""
        with queue_refusals():
            future = self.submit(image, min_confidence, adapter)
            return future.result()


@contextlib.contextmanager
def queue_refusals() -> Iterator[None]:
    """An ``InferenceQueue``'s refusals as the client's errors: a full queue is a
    ThrottlingException (HTTP 500, which clients retry after backing off), a stopping queue an
    InternalServerError."""
    try:
        yield
    except QueueFull as exc:
        raise RequestError(
            "ThrottlingException", f"Slow down: {exc} Try again.", THROTTLING_HTTP_STATUS
        ) from None
    except QueueStopped as exc:
        raise RequestError("InternalServerError", str(exc), 500) from None


class ImageOperations:
    """DetectModerationLabels of ``service.api.RekognitionApi``, over its shared model, adapters
    and S3 client."""

    model: SharedModel
    adapters: LoadedAdapters
    s3_client: Any
    allowed_locations: Collection[str] | None
    # Human review: the flow definitions and the human loops (None: not served).
    flows: Any = None
    loops: Any = None

    def detect_moderation_labels(self, params: dict) -> dict:
        flow = None
        if params.get("HumanLoopConfig"):
            flow = resolve_flow(
                self.flows if self.loops is not None else None, params["HumanLoopConfig"]
            )
        resolved = None
        if params.get("ProjectVersion"):
            resolved = self.adapters.resolve(params["ProjectVersion"])
        # A request the queue would refuse is refused before its image is read and decoded.
        self.model.check_room()
        data = self._image_bytes(params["Image"])
        image = decode_request_image(data)
        min_confidence = params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
        # An expired adapter is ignored, as Rekognition ignores one: the base model answers alone
        # and the response names no ProjectVersion.
        adapter = self.adapters.load(resolved) if resolved and not resolved.expired else None
        response = self.model.predict(image, min_confidence, adapter=adapter)
        if adapter is not None:
            response["ProjectVersion"] = resolved.arn
        if flow is not None:
            response["HumanLoopActivationOutput"] = human_loop_activation(
                self.loops, flow, params, response, data
            )
        return response

    def _image_bytes(
        self, image: Mapping[str, Any], max_inline_bytes: int = MAX_INLINE_IMAGE_BYTES
    ) -> bytes:
        """The bytes of a request's ``Image``: inline (at most ``max_inline_bytes``), or its S3
        object within the allowed locations."""
        if ("Bytes" in image) == ("S3Object" in image):
            raise RequestError(
                "InvalidParameterException", "Image must have exactly one of Bytes or S3Object."
            )
        if "Bytes" in image:
            data = image["Bytes"]
            if len(data) > max_inline_bytes:
                raise RequestError(
                    "ImageTooLargeException",
                    f"Image.Bytes is {len(data)} bytes; the limit is {max_inline_bytes}.",
                )
            return data
        location = image["S3Object"]
        bucket, name = location.get("Bucket"), location.get("Name")
        if not bucket or not name:
            raise RequestError("InvalidS3ObjectException", "S3Object needs a Bucket and a Name.")
        if not is_allowed(bucket, name, self.allowed_locations):
            raise RequestError(
                "AccessDeniedException", f"This server may not read s3://{bucket}/{name}."
            )
        from botocore.exceptions import ClientError

        arguments = {"Bucket": bucket, "Key": name}
        if location.get("Version"):
            arguments["VersionId"] = location["Version"]
        try:
            head = self.s3_client.head_object(**arguments)
            if int(head.get("ContentLength", 0)) > MAX_IMAGE_BYTES:
                raise RequestError(
                    "ImageTooLargeException",
                    f"s3://{bucket}/{name} is over the {MAX_IMAGE_BYTES}-byte limit.",
                )
            return self.s3_client.get_object(**arguments)["Body"].read()
        except ClientError as exc:
            raise RequestError(
                "InvalidS3ObjectException",
                f"Unable to get object metadata from S3. Check object key, region and/or access "
                f"permissions. (s3://{bucket}/{name}: {exc.response['Error'].get('Code')})",
            ) from None


def decode_request_image(data: bytes):
    """A request's image decoded (RGB), or the client's error: InvalidImageFormatException for
    bytes that are no supported image, ImageTooLargeException for a decompression bomb."""
    try:
        return decode_image(data)
    except ImageProblem as exc:
        if exc.code in (ErrorCode.UNSUPPORTED_IMAGE_FORMAT, ErrorCode.INVALID_IMAGE):
            raise RequestError("InvalidImageFormatException", exc.message) from None
        if exc.code == ErrorCode.DECOMPRESSION_BOMB:
            raise RequestError("ImageTooLargeException", exc.message) from None
        raise RequestError("InvalidParameterException", exc.message) from None

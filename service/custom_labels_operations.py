"""The Custom Labels model operations: StartProjectVersion, StopProjectVersion and
DetectCustomLabels.

A trained Custom Labels version answers DetectCustomLabels only while it is RUNNING on its
inference units (``service.serving``): one inference unit = one model replica on its own
thread, batching up to --detect_batch_size images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from service.errors import RequestError
from service.image_operations import decode_request_image, queue_refusals
from service.inference_queue import QueueStopped
from service.project_records import ModelNotRunning
from service.projects import ProjectRegistry
from service.serving import ModelServing

__all__ = ["MAX_CUSTOM_LABELS_IMAGE_BYTES", "CustomLabelsOperations"]

_LOGGER = logging.getLogger(__name__)

# DetectCustomLabels' limit on Image.Bytes (an image in S3 may be larger).
MAX_CUSTOM_LABELS_IMAGE_BYTES = 4 * 1024 * 1024


class CustomLabelsOperations:
    """The model operations of ``service.api.RekognitionApi``, over its project registry and
    the models it serves. Registry errors (VersionNotFound, WrongFeature, ResourceInUse,
    ModelNotRunning) reach the client through the API's table of error codes."""

    projects: ProjectRegistry
    serving: ModelServing
    # Reads a request's Image (``service.image_operations.ImageOperations``).
    _image_bytes: Callable[..., bytes]

    def start_project_version(self, params: dict) -> dict:
        min_units = params["MinInferenceUnits"]
        max_units = params.get("MaxInferenceUnits", min_units)
        if max_units < min_units:
            raise RequestError(
                "InvalidParameterException",
                f"MaxInferenceUnits ({max_units}) must not be less than MinInferenceUnits "
                f"({min_units}).",
            )
        version = self.projects.begin_start(params["ProjectVersionArn"], min_units, max_units)
        self.serving.start(version)
        return {"Status": version.status}

    def stop_project_version(self, params: dict) -> dict:
        version = self.projects.begin_stop(params["ProjectVersionArn"])
        self.serving.stop(version.arn)
        return {"Status": version.status}

    def detect_custom_labels(self, params: dict) -> dict:
        arn = params["ProjectVersionArn"]
        replica = self.serving.replica(arn)
        if replica is None:
            version = self.projects.get_model(arn)
            raise ModelNotRunning(
                f"The model {arn} is {version.status}, not RUNNING: start it with "
                "StartProjectVersion and wait for RUNNING (the project_version_running waiter)."
            )
        # QueueFull is a ThrottlingException; a replica that stopped under the request means the
        # model is being stopped.
        with queue_refusals():
            try:
                # A request the queue would refuse is refused before its image is read, decoded.
                replica.check_room()
                data = self._image_bytes(params["Image"], MAX_CUSTOM_LABELS_IMAGE_BYTES)
                image = decode_request_image(data)
                response: dict[str, Any] = replica.predict(image, params.get("MinConfidence"))
            except QueueStopped:
                raise ModelNotRunning(f"The model {arn} is stopping.") from None
        if "MaxResults" in params:
            response = {
                **response,
                "CustomLabels": response["CustomLabels"][: params["MaxResults"]],
            }
        return response

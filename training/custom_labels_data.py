"""A Custom Labels dataset as read from SageMaker Ground Truth manifests: its labelled images,
how they are checked against Amazon Rekognition Custom Labels' image limits and decoded, and the
80/20 split of a training set."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps

from model.custom_labels_model import Box
from storage.settings import S3Settings
from training.sources import check_source_allowed
from transforms.fetching import fetch_image_bytes
from transforms.images import open_image, to_rgb
from transforms.records import ErrorCode, ImageProblem

__all__ = [
    "IMAGE_FORMATS",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_SIDE",
    "MIN_IMAGE_SIDE",
    "TEST_SHARE",
    "TRAINING_MAX_SIDE",
    "ImageReader",
    "ImageSize",
    "LabelledImage",
    "auto_split",
    "split_share",
]

# AWS's limits for the images of a Custom Labels dataset (limits.md).
IMAGE_FORMATS = ("JPEG", "PNG")
MIN_IMAGE_SIDE = 64
MAX_IMAGE_SIDE = 4096
MAX_ASPECT_RATIO = 20.0
MAX_IMAGE_BYTES = 15 * 1024 * 1024
# Images are decoded for training with their longer side at most this (AWS resizes training
# images whose longer side is over 1280 px to 1280).
TRAINING_MAX_SIDE = 1280
TEST_SHARE = 0.2  # --auto_split: 80/20, as AWS's AutoCreate


@dataclass(frozen=True)
class LabelledImage:
    """One manifest line that can be trained or tested on.

    ``labels`` are the image-level labels (for a detection dataset: the labels of its boxes);
    ``boxes`` are a detection dataset's objects, each a label and its box.
    """

    source_ref: str
    line_number: int
    manifest: str
    labels: frozenset[str]
    boxes: tuple[tuple[str, Box], ...] = ()

    @property
    def where(self) -> str:
        """``line N of MANIFEST``, as messages name a line."""
        return f"line {self.line_number} of {self.manifest}"


class ImageSize(NamedTuple):
    """An image's width and height in pixels, upright (after its EXIF orientation)."""

    width: int
    height: int


_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_ORIENTATION_TAG = 0x0112


class ImageReader:
    """Reads a dataset's images (local paths, ``s3://``, ``gs://``): ``check`` holds an image to
    AWS's limits without decoding it, ``load`` decodes it for training.

    Both raise ``ImageProblem`` saying what is wrong. ``s3://`` images share one boto3 client.
    """

    def __init__(
        self,
        s3: S3Settings | None = None,
        *,
        max_side: int = TRAINING_MAX_SIDE,
        allowed_prefixes: Sequence[str] | None = None,
    ):
        """``allowed_prefixes``: the only places images may be read from (None: anywhere)."""
        self._s3 = s3 or S3Settings()
        self._max_side = max_side
        self._allowed = allowed_prefixes
        self._lock = threading.Lock()
        self._client: Any = None

    def _s3_client(self):
        with self._lock:
            if self._client is None:
                self._client = self._s3.client(32)
            return self._client

    def read_bytes(self, source_ref: str) -> bytes:
        """The image file's bytes (at most ``MAX_IMAGE_BYTES``)."""
        check_source_allowed(source_ref, self._allowed)
        client = self._s3_client() if source_ref.startswith("s3://") else None
        return fetch_image_bytes(source_ref, MAX_IMAGE_BYTES, s3_client=client)

    def check(self, source_ref: str) -> ImageSize:
        """The image's upright size, once it is found to be a JPEG or PNG within AWS's limits."""
        return _checked(self.read_bytes(source_ref))[1]

    def load(self, source_ref: str) -> np.ndarray:
        """The image as upright RGB (uint8, HxWx3), its longer side at most ``max_side``."""
        image, _ = _checked(self.read_bytes(source_ref))
        try:
            if image.format == "JPEG":
                image.draft("RGB", (self._max_side, self._max_side))  # downscale while decoding
            image.load()
            image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
            if max(image.size) > self._max_side:
                image.thumbnail((self._max_side, self._max_side), Image.Resampling.BILINEAR)
        except Exception as exc:
            raise ImageProblem(
                ErrorCode.INVALID_IMAGE, f"The image is truncated or corrupt: {exc}"
            ) from exc
        return np.asarray(image)


def _checked(data: bytes) -> tuple[Image.Image, ImageSize]:
    image, _ = open_image(data)
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE or max(width, height) > MAX_IMAGE_SIDE:
        raise ImageProblem(
            ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE,
            f"The image is {width}x{height} px; each side must be {MIN_IMAGE_SIDE} to "
            f"{MAX_IMAGE_SIDE} px.",
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageProblem(
            ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE,
            f"The image is {width}x{height} px; its aspect ratio may be at most "
            f"{MAX_ASPECT_RATIO:g}:1.",
        )
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block: the image is taken as stored
        orientation = None
    if orientation in _ROTATED:
        width, height = height, width
    return image, ImageSize(width, height)


def split_share(source_ref: str) -> float:
    """Where ``source_ref`` falls in [0, 1]: below ``TEST_SHARE`` it is a test image."""
    return int(hashlib.sha256(source_ref.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF


def auto_split(
    images: Sequence[LabelledImage],
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """80/20 by a hash of each image's source-ref, so the split is the same on every run.

    Every label keeps at least one training image: where all of a label's images fell in the
    test share, the one of them nearest to the training share (the highest hash) moves there.
    """
    testing = [image for image in images if split_share(image.source_ref) < TEST_SHARE]
    held = {id(image) for image in testing}
    training_labels = {label for image in images if id(image) not in held for label in image.labels}
    for label in sorted({label for image in testing for label in image.labels}):
        if label in training_labels:
            continue
        candidates = [image for image in testing if label in image.labels]
        moved = max(candidates, key=lambda image: split_share(image.source_ref))
        held.discard(id(moved))
        testing.remove(moved)
        training_labels.update(moved.labels)
    training = [image for image in images if id(image) not in held]
    return training, testing

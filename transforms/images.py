"""Decoding the images that manifest lines reference, and ``LoadImages``, which fetches
(``transforms.fetching``) and decodes them.

Loads run many at a time on a thread pool, so that storage latency overlaps with itself and
with inference. Every failure of one image becomes a ``ManifestError`` for its line; nothing
here stops the job.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue
from PIL import Image, ImageOps, UnidentifiedImageError

from storage.settings import S3Settings
from transforms.fetching import fetch_image_bytes
from transforms.isolation import internal_error
from transforms.memory import HeapTrimmer
from transforms.records import ErrorCode, ImageProblem, ManifestError, ManifestLine

__all__ = [
    "ACCEPTED_FORMATS",
    "DECODE_MAX_SIDE",
    "DECODE_MIN_SIDE",
    "MAX_SIDE",
    "MIN_SIDE",
    "LoadImages",
    "decode_image",
    "open_image",
    "to_rgb",
]

_LOGGER = logging.getLogger(__name__)

MIN_SIDE = 80
MAX_SIDE = 10_000
ACCEPTED_FORMATS = ("JPEG", "PNG")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
# Every model component works at 320 px or less, so full resolution would cost memory and time
# for nothing: JPEGs decode at the smallest DCT scale that keeps both sides at least
# DECODE_MIN_SIDE, and every image is then reduced to at most DECODE_MAX_SIDE.
DECODE_MIN_SIDE = 320
DECODE_MAX_SIDE = 512

# A 10,000 x 10,000 image is within the limits; Pillow refuses images over twice this.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
# Full-resolution decodes above this many pixels (not JPEG, which decodes at reduced scale)
# take turns, so that concurrent fetches cannot hold several huge bitmaps at once.
_LARGE_DECODE_PIXELS = 4096 * 4096
_LARGE_DECODES = threading.Semaphore(1)


def open_image(data: bytes) -> tuple[Image.Image, str]:
    """JPEG or PNG bytes opened (the header read, no pixels decoded) and their format, "JPEG"
    or "PNG"; ImageProblem for anything else, a bomb, or a header that cannot be read."""
    try:
        # Between one and two times MAX_IMAGE_PIXELS Pillow only warns; the side check below
        # refuses those images anyway.
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageProblem(
            ErrorCode.DECOMPRESSION_BOMB, f"Refused as a decompression bomb: {exc}"
        ) from None
    except UnidentifiedImageError:
        if data.startswith(_SIGNATURES):  # a JPEG or PNG whose header Pillow cannot read
            raise ImageProblem(
                ErrorCode.INVALID_IMAGE, "The image header is truncated or corrupt."
            ) from None
        raise ImageProblem(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT, "The data is not a JPEG or PNG image."
        ) from None
    except Exception as exc:
        raise ImageProblem(ErrorCode.INVALID_IMAGE, f"The image header is corrupt: {exc}") from exc
    # A multi-picture JPEG (what some cameras write) is a JPEG whose first picture is analysed.
    image_format = "JPEG" if image.format == "MPO" else image.format
    if image_format not in ACCEPTED_FORMATS:
        raise ImageProblem(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"{image.format} images are not supported; use JPEG or PNG.",
        )
    return image, image_format


def decode_image(data: bytes, max_side: int = DECODE_MAX_SIDE) -> np.ndarray:
    """JPEG or PNG bytes -> upright RGB array (uint8, HxWx3), longest side at most ``max_side``."""
    image, image_format = open_image(data)
    width, height = image.size
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ImageProblem(
            ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE,
            f"The image is {width}x{height} px; each side must be {MIN_SIDE} to {MAX_SIDE} px.",
        )
    try:
        if image_format == "JPEG":
            image.draft("RGB", (DECODE_MIN_SIDE, DECODE_MIN_SIDE))  # downscale while decoding
            image.load()
        elif width * height > _LARGE_DECODE_PIXELS:
            with _LARGE_DECODES:
                image.load()
                image = _reduced(image, max_side)
        else:
            image.load()
        image = _upright(image)
        image = _reduced(to_rgb(image), max_side)
    except Exception as exc:
        raise ImageProblem(
            ErrorCode.INVALID_IMAGE, f"The image is truncated or corrupt: {exc}"
        ) from exc
    return np.asarray(image)


def _reduced(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) > max_side:
        image = image.copy() if image.readonly else image
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def _upright(image: Image.Image) -> Image.Image:
    try:
        # In place: without an orientation to undo, a copy would cost a bitmap for nothing.
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # a broken EXIF block should not cost the image
        pass
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB: 16/32-bit greyscale scaled to 8 bits, transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit greyscale
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


class _FetchAndDecode(beam.DoFn):
    """ManifestLine -> (ManifestLine, image), ``concurrency`` loads at a time.

    Up to twice that many lines are in flight, so that while the model works on one batch
    the loads for the next are already done or under way.
    """

    TAG_INVALID = "invalid"

    def __init__(self, concurrency: int, s3: S3Settings):
        self._concurrency = concurrency
        self._s3_settings = s3
        self._loaded = Metrics.counter("images", "num_images_loaded")
        self._failed = Metrics.counter("images", "num_images_failed")
        self._bytes = Metrics.distribution("images", "decoded_image_bytes")

    def setup(self):
        self._s3_settings.ensure_filesystems()
        self._heap = HeapTrimmer()
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="load-image")
        self._s3_client = None
        self._s3_client_lock = threading.Lock()

    def _load(self, line: ManifestLine) -> np.ndarray:
        try:
            client = self._s3() if line.source_ref.startswith("s3://") else None
            return decode_image(fetch_image_bytes(line.source_ref, s3_client=client))
        except ImageProblem:
            raise
        except Exception as exc:  # a bug must cost one line, not the job
            _LOGGER.exception("Unexpected failure loading %s", line.source_ref)
            error = internal_error(line.line_number, "loading the image", repr(exc))
            raise ImageProblem(error.code, error.message) from exc

    def _s3(self):
        with self._s3_client_lock:  # built on first use: jobs without s3:// images need none
            if self._s3_client is None:
                try:
                    self._s3_client = self._s3_settings.client(self._concurrency)
                except Exception as exc:
                    raise ImageProblem(
                        ErrorCode.IMAGE_READ_FAILED, f"No S3 client could be made: {exc}"
                    ) from exc
            return self._s3_client

    def start_bundle(self):
        self._pending: collections.deque[tuple[ManifestLine, Future, WindowedValue]] = (
            collections.deque()
        )

    def process(
        self,
        line: ManifestLine,
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
    ) -> Iterable[WindowedValue]:
        # Results leave in input order, possibly after later inputs arrive, so each one keeps
        # the window and timestamp of the line it came from.
        self._pending.append(
            (line, self._pool.submit(self._load, line), WindowedValue(None, timestamp, [window]))
        )
        yield from self._emit(keep=2 * self._concurrency)
        self._heap.maybe_trim()

    def finish_bundle(self) -> Iterable[WindowedValue]:
        yield from self._emit(keep=0)

    def _emit(self, keep: int) -> Iterable[WindowedValue]:
        while self._pending and (len(self._pending) > keep or self._pending[0][1].done()):
            line, future, windowing = self._pending.popleft()
            try:
                image = future.result()
            except ImageProblem as problem:
                self._failed.inc()
                error = ManifestError(
                    line.line_number, problem.code, problem.message, line.source_ref
                )
                yield beam.pvalue.TaggedOutput(self.TAG_INVALID, windowing.with_value(error))
                continue
            self._loaded.inc()
            self._bytes.update(image.nbytes)
            yield windowing.with_value((line, image))

    def teardown(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


class LoadImages(beam.PTransform):
    """ManifestLine -> ``(ManifestLine, RGB image)``; failures on the ``invalid`` output."""

    TAG_INVALID = _FetchAndDecode.TAG_INVALID

    def __init__(self, concurrency: int = 16, s3: S3Settings | None = None):
        super().__init__()
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        self._s3 = s3 or S3Settings()

    def expand(self, lines):
        return lines | "FetchAndDecode" >> beam.ParDo(
            _FetchAndDecode(self._concurrency, self._s3)
        ).with_outputs(self.TAG_INVALID, main="images")

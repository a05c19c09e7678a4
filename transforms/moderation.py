"""Running the moderation model over decoded images with RunInference, and reporting progress."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from transforms.records import ErrorCode, ManifestError

__all__ = ["ModerateImages", "ReportProgress"]

_LOGGER = logging.getLogger(__name__)


def _failed_batch_errors(failure) -> Iterable[ManifestError]:
    batch, (exc_type, exc_repr, _traceback) = failure
    message = f"Inference failed for the batch holding this image: {exc_repr}"
    for line, _image in batch:
        yield ManifestError(line.line_number, ErrorCode.INFERENCE_FAILED, message, line.source_ref)


class ModerateImages(beam.PTransform):
    """``(ManifestLine, image)`` -> ``results``: ``(ManifestLine, response)``, and ``invalid``.

    ``model_handler`` takes unkeyed images (``model.handler.ModerationModelHandler``); it is
    keyed here so that each response stays with its manifest line. A batch that fails is not
    retried forever nor dropped: each of its lines becomes an INFERENCE_FAILED error.
    """

    def __init__(self, model_handler: ModelHandler):
        super().__init__()
        self._model_handler = model_handler

    def expand(self, images):
        predictions, dead_letters = (
            images
            | "RunInference"
            >> RunInference(KeyedModelHandler(self._model_handler)).with_exception_handling()
        )
        results = predictions | "ToResponses" >> beam.MapTuple(
            lambda line, prediction: (line, prediction.inference)
        )
        failures = dead_letters.failed_inferences | "FailedBatchesToErrors" >> beam.FlatMap(
            _failed_batch_errors
        )
        return {"results": results, "invalid": failures}


class ReportProgress(beam.DoFn):
    """Passes elements through and logs "N of TOTAL manifest lines done" every few seconds.

    Several instances built with the same ``run_id`` (one per branch of the graph) share one
    count per worker process. On a multi-worker runner each worker reports its own share.
    """

    _state: dict[str, list[float]] = {}
    _lock = threading.Lock()

    def __init__(self, run_id: str, interval_secs: float = 10.0):
        self._run_id = run_id
        self._interval = interval_secs

    def process(self, element, total: int):
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(self._run_id, [0, now, now])  # done, start, last log
            state[0] += 1
            done, started, last = state
            report = self._interval >= 0 and (now - last >= self._interval or done == total)
            if report:
                state[2] = now
        if report:
            elapsed = now - started
            # A rate over a blink (a small manifest done in one batch) would mean nothing.
            rate = f", {done / elapsed:.1f} lines/s" if elapsed >= 1.0 else ""
            _LOGGER.info(
                "Progress: %d of %d manifest lines done (%.0f%%)%s",
                done,
                total,
                100.0 * done / max(total, 1),
                rate,
            )
        yield element

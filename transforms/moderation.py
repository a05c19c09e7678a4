"""Running the moderation model over decoded images with RunInference, and reporting progress."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import apache_beam as beam
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    KeyModelMapping,
    ModelHandler,
    RunInference,
)

from model.handler import AdapterInput
from transforms.records import ErrorCode, ManifestError, ManifestLine

__all__ = ["ModerateImages", "ReportProgress"]

_LOGGER = logging.getLogger(__name__)


def _failed_batch_errors(
    failure, line_of: Callable = lambda line, _image: line
) -> Iterable[ManifestError]:
    """One INFERENCE_FAILED error per element of a failed batch; ``line_of(key, example)``
    finds the element's manifest line (the key, unless the stage keys by something else)."""
    batch, (exc_type, exc_repr, _traceback) = failure
    message = f"Inference failed for the batch holding this image: {exc_repr}"
    for key, example in batch:
        line = line_of(key, example)
        yield ManifestError(line.line_number, ErrorCode.INFERENCE_FAILED, message, line.source_ref)


class ModerateImages(beam.PTransform):
    """``(ManifestLine, image)`` -> ``results``: ``(ManifestLine, response)``, and ``invalid``.

    ``model_handler`` takes unkeyed images (``model.handler.ModerationModelHandler``); it is
    keyed here so that each response stays with its manifest line. A batch that fails is not
    retried forever nor dropped: each of its lines becomes an INFERENCE_FAILED error.

    With ``adapters`` (adapter key -> ``AdapterModelHandler``), the base model's handler must
    give analyses (``analyses=True``), and a second RunInference turns them into adapted
    responses through one ``KeyedModelHandler`` over every adapter: the base model runs once
    per image whichever adapter follows, and each adapter loads only its own small model.
    ``adapter_for`` picks a line's adapter key (default: the only adapter).
    """

    def __init__(
        self,
        model_handler: ModelHandler,
        adapters: Mapping[str, ModelHandler] | None = None,
        adapter_for: Callable[[ManifestLine], str] | None = None,
    ):
        super().__init__()
        self._model_handler = model_handler
        self._adapters = dict(adapters or {})
        if self._adapters and adapter_for is None:
            if len(self._adapters) > 1:
                raise ValueError("several adapters need adapter_for to choose one per line")
            (only,) = self._adapters
            adapter_for = lambda _line: only  # noqa: E731
        self._adapter_for = adapter_for

    def expand(self, images):
        predictions, dead_letters = (
            images
            | "RunInference"
            >> RunInference(KeyedModelHandler(self._model_handler)).with_exception_handling()
        )
        failures = [
            dead_letters.failed_inferences
            | "FailedBatchesToErrors" >> beam.FlatMap(_failed_batch_errors)
        ]
        if self._adapters:
            adapter_for = self._adapter_for
            keyed = predictions | "ToAdapterInputs" >> beam.MapTuple(
                lambda line, prediction: (
                    adapter_for(line),
                    AdapterInput(line, prediction.inference, prediction.model_id),
                )
            )
            handler = KeyedModelHandler(
                [KeyModelMapping([key], mh) for key, mh in sorted(self._adapters.items())]
            )
            adapted, adapter_dead_letters = (
                keyed | "RunAdapters" >> RunInference(handler).with_exception_handling()
            )
            results = adapted | "ToAdaptedResponses" >> beam.MapTuple(
                lambda _key, prediction: prediction.inference
            )
            failures.append(
                adapter_dead_letters.failed_inferences
                | "FailedAdapterBatchesToErrors"
                >> beam.FlatMap(_failed_batch_errors, lambda _key, item: item.line)
            )
        else:
            results = predictions | "ToResponses" >> beam.MapTuple(
                lambda line, prediction: (line, prediction.inference)
            )
        return {"results": results, "invalid": failures | "CollectFailures" >> beam.Flatten()}


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

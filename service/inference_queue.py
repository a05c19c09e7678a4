"""Micro-batched inference for one model: callers queue single images, one thread runs batches.

A model costs less per image in a batch than alone (a little on a CPU, much on a GPU), and it is
not safe to call from many threads at once. ``InferenceQueue`` gives it one owner thread that
loads it, gathers the requests waiting (up to ``max_batch_size``, waiting at most
``max_wait_secs`` after the first), analyses them in one call and answers each request with its
own minimum confidence and adapter. The queue is bounded: a caller that finds it full is told at
once (``QueueFull``) rather than left waiting behind everyone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUED",
    "DEFAULT_MAX_WAIT_SECS",
    "BatchingSettings",
    "InferenceQueue",
    "QueueFull",
    "QueueStats",
    "QueueStopped",
]

_LOGGER = logging.getLogger(__name__)

# As the pipeline's --inference_batch_size.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_WAIT_SECS = 0.005
DEFAULT_MAX_QUEUED = 64


@dataclass(frozen=True)
class BatchingSettings:
    """How requests are gathered: the largest batch, how long the first request of a batch
    waits for company, and how many requests may wait for the model at once."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_wait_secs: float = DEFAULT_MAX_WAIT_SECS
    max_queued: int = DEFAULT_MAX_QUEUED

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {self.max_batch_size}")
        if self.max_wait_secs < 0:
            raise ValueError(f"max_wait_secs must not be negative, not {self.max_wait_secs}")
        if self.max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, not {self.max_queued}")


@dataclass
class QueueStats:
    """What the queue has done so far: batches run, images in them, the largest, and requests
    refused because the queue was full."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    refused: int = 0


class QueueFull(Exception):
    """``max_queued`` requests are already waiting for the model."""


class QueueStopped(Exception):
    """The queue was stopped before this request reached the model."""


@dataclass
class _Request:
    image: Any
    min_confidence: float
    adapter: Any
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class InferenceQueue:
    """One model behind a bounded queue of single-image requests, run in batches by one thread.

    ``load`` builds the model (an object with ``analyse(images)`` giving one analysis per image
    and ``respond(analyses, min_confidence, adapter=...)`` giving one response per analysis);
    it runs on the queue's thread, once it has succeeded. The thread starts with ``start()``
    (loading at once, so that the first request does not pay for it) or with the first request.
    ``settings`` may be replaced at any time: the next batch and the next request follow them.
    """

    def __init__(
        self,
        load: Callable[[], Any],
        settings: BatchingSettings | None = None,
        *,
        name: str = "inference-queue",
    ) -> None:
        self._load = load
        self.settings = settings or BatchingSettings()
        self._name = name
        self._model: Any = None
        self._queue: deque[_Request] = deque()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = QueueStats()

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it is loaded only once)."""
        return self._model is not None

    @property
    def running(self) -> bool:
        """Whether the model's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (not counting the batch the model is running)."""
        with self._changed:
            return len(self._queue)

    def start(self) -> None:
        """Starts the model's thread, which loads the model at once; a no-op once started."""
        with self._changed:
            self._start_locked()

    def check_room(self) -> None:
        """QueueFull if a request would be refused now: lets a caller refuse before doing the
        work (reading, decoding) that a refused request would waste."""
        with self._changed:
            self._check_room_locked()

    def submit(self, image: Any, min_confidence: float, adapter: Any = None) -> Future:
        """Queues one image; the future gives its response, or raises what the model raised
        for its batch (QueueStopped if the queue stopped first). QueueFull when the queue is
        full, QueueStopped once stopped."""
        request = _Request(image, min_confidence, adapter)
        with self._changed:
            self._check_room_locked()
            self._start_locked()
            self._queue.append(request)
            self._changed.notify_all()
        return request.future

    def predict(self, image: Any, min_confidence: float, adapter: Any = None) -> dict[str, Any]:
        """The response for one image, once its batch has run."""
        return self.submit(image, min_confidence, adapter).result()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stops the thread after the batch it is running; requests still queued fail at once
        with QueueStopped. True when the thread has ended within ``timeout`` (it may still be
        loading the model, which cannot be interrupted)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            thread = self._thread
        self._fail_queued(QueueStopped("The model is stopping."))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _check_room_locked(self) -> None:
        if self._stopping:
            raise QueueStopped("The model is stopping.")
        if len(self._queue) >= self.settings.max_queued:
            self.stats.refused += 1
            raise QueueFull(f"{len(self._queue)} requests are already waiting for the model.")

    def _start_locked(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                if self._model is None and not self._load_model():
                    # Failed: the requests waiting were told why; the next one tries again.
                    if not self._wait_for_request():
                        return
                    continue
                batch = self._next_batch()
                if batch is None:
                    return
                self._run_batch(batch)
        finally:
            with self._changed:
                self._stopping = True  # no request may queue for a thread that has ended
            self._fail_queued(QueueStopped("The model is stopping."))
            self._model = None  # its memory goes with the thread

    def _load_model(self) -> bool:
        started = time.perf_counter()
        try:
            self._model = self._load()
        except Exception as exc:  # noqa: BLE001 - the waiting callers get the error
            _LOGGER.exception("Loading the model failed")
            self._fail_queued(exc)
            return False
        _LOGGER.info("Model loaded in %.1f s", time.perf_counter() - started)
        return True

    def _wait_for_request(self) -> bool:
        """Blocks until a request is queued (True) or the queue stops (False)."""
        with self._changed:
            while not self._queue and not self._stopping:
                self._changed.wait()
            return not self._stopping

    def _next_batch(self) -> list[_Request] | None:
        """The next batch: the oldest request and those that join it before it has waited
        ``max_wait_secs`` (counted from its arrival, so a request that already waited for the
        previous batch waits no more), at most ``max_batch_size``. None once stopping."""
        limit, wait = self.settings.max_batch_size, self.settings.max_wait_secs
        with self._changed:
            while not self._queue and not self._stopping:
                self._changed.wait()
            if self._stopping:
                return None
            deadline = self._queue[0].enqueued + wait
            while len(self._queue) < limit and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self.stats.batches += 1
            self.stats.images += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        """Analyses the batch in one call, then answers each request: a failure of the model
        fails this batch's requests, a failure of one group's responses that group's."""
        try:
            analyses = self._model.analyse([request.image for request in batch])
            if len(analyses) != len(batch):
                raise RuntimeError(f"the model analysed {len(analyses)} of {len(batch)} images")
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for group in _groups(batch):
            self._respond(group, [analyses[index] for index in group.indexes])

    def _respond(self, group: _Group, analyses: Sequence[Any]) -> None:
        try:
            responses = self._model.respond(analyses, group.min_confidence, adapter=group.adapter)
            if len(responses) != len(group.requests):
                raise RuntimeError(f"{len(responses)} responses for {len(group.requests)} images")
        except Exception as exc:  # noqa: BLE001 - these requests fail with it, the rest go on
            _fail(group.requests, exc)
            return
        for request, response in zip(group.requests, responses):
            request.future.set_result(response)

    def _fail_queued(self, exc: BaseException) -> None:
        with self._changed:
            waiting = list(self._queue)
            self._queue.clear()
        _fail(waiting, exc)


@dataclass
class _Group:
    """Requests of one batch answered by one ``respond`` call: same adapter, same minimum."""

    adapter: Any
    min_confidence: float
    indexes: list[int] = field(default_factory=list)
    requests: list[_Request] = field(default_factory=list)


def _groups(batch: Sequence[_Request]) -> list[_Group]:
    # Adapters are compared by identity: each request holds its adapter, so no id is reused
    # while the batch is answered.
    groups: dict[tuple[int, float], _Group] = {}
    for index, request in enumerate(batch):
        key = (id(request.adapter), request.min_confidence)
        group = groups.setdefault(key, _Group(request.adapter, request.min_confidence))
        group.indexes.append(index)
        group.requests.append(request)
    return list(groups.values())


def _fail(requests: Sequence[_Request], exc: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(exc)

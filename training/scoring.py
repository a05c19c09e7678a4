"""Runs the moderation model over the images of ground-truth lines, loading while it runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from storage.settings import S3Settings
from training.ground_truth import GroundTruthLine
from training.metrics import Evaluation
from training.sources import check_source_allowed
from transforms.fetching import fetch_image_bytes
from transforms.images import decode_image
from transforms.records import ErrorCode, ImageProblem

__all__ = ["batches", "evaluate", "image_loader"]

_LOGGER = logging.getLogger(__name__)

_PROGRESS_INTERVAL_SECS = 10.0
_Item = TypeVar("_Item")


def batches(items: Iterable[_Item], size: int) -> Iterator[list[_Item]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily."""
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    lines: Iterable[GroundTruthLine],
    model,
    evaluation: Evaluation,
    *,
    batch_size: int = 16,
    load_image: Callable[[str], np.ndarray],
    concurrency: int = 16,
) -> Evaluation:
    """Runs ``model`` over the images of ``lines`` in batches and feeds ``evaluation``.

    Loads of the next batch run while the model works on the current one, so at most two
    batches of images are held at once.
    """

    def load(line: GroundTruthLine) -> np.ndarray:
        try:
            return load_image(line.source_ref)
        except ImageProblem:
            raise
        except Exception as exc:  # one bad image costs its line, never the evaluation
            raise ImageProblem(
                ErrorCode.IMAGE_READ_FAILED,
                f"The image could not be loaded: {type(exc).__name__}: {exc}",
            ) from exc

    total = 0
    last_progress = time.monotonic()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="evaluate-load") as pool:
        pending: list[tuple[GroundTruthLine, Future]] = []
        for batch in batches(lines, batch_size):
            submitted = [(line, pool.submit(load, line)) for line in batch]
            _run_batch(pending, model, evaluation)
            pending = submitted
            total += len(batch)
            if time.monotonic() - last_progress >= _PROGRESS_INTERVAL_SECS:
                last_progress = time.monotonic()
                _LOGGER.info("Loaded %d images so far", total)
        _run_batch(pending, model, evaluation)
    return evaluation


def _run_batch(
    pending: Sequence[tuple[GroundTruthLine, Future]], model, evaluation: Evaluation
) -> None:
    loaded: list[GroundTruthLine] = []
    images: list[np.ndarray] = []
    for line, future in pending:
        try:
            images.append(future.result())
        except ImageProblem as problem:
            evaluation.add_error(line, problem.code, problem.message)
            continue
        loaded.append(line)
    if not images:
        return
    try:
        responses = model.predict(images, evaluation.min_confidence)
    except Exception as exc:  # a failed batch is reported image by image, never dropped
        _LOGGER.exception("The model failed on a batch of %d images", len(images))
        for line in loaded:
            evaluation.add_error(
                line, ErrorCode.INFERENCE_FAILED, f"The model failed: {type(exc).__name__}: {exc}"
            )
        return
    for line, response in zip(loaded, responses):
        evaluation.add(line, response)


def image_loader(
    s3: S3Settings, concurrency: int, allowed_prefixes: Sequence[str] | None = None
) -> Callable[[str], np.ndarray]:
    """``path -> RGB image``; ``s3://`` paths share one boto3 client, built on first use.
    ``allowed_prefixes``: the only places images may be read from (None: anywhere)."""
    lock = threading.Lock()
    clients: list[Any] = []

    def s3_client():
        with lock:
            if not clients:
                clients.append(s3.client(concurrency))
            return clients[0]

    def load(path: str) -> np.ndarray:
        check_source_allowed(path, allowed_prefixes)
        client = s3_client() if path.startswith("s3://") else None
        return decode_image(fetch_image_bytes(path, s3_client=client))

    return load

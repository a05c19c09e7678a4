"""Beam model handler that runs the moderation model inside RunInference."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model.adapter import Adapter
from model.analysis import ImageAnalysis
from model.backbone import DEFAULT_BACKBONE
from model.confidence import DEFAULT_MIN_CONFIDENCE
from model.moderation_model import (
    ModerationModel,
    load_moderation_model,
    moderation_model_version,
    resolve_components,
    respond,
)
from model.recent import RECENT_IMAGES, RecentResults
from storage.settings import S3Settings

__all__ = [
    "AdapterInput",
    "AdapterModelHandler",
    "CustomLabelsModelHandler",
    "ModerationModelHandler",
    "inference_threads",
    "usable_cores",
]

_LOGGER = logging.getLogger(__name__)

# Models loading ahead of the stage that runs them, by their load settings (see start_loading).
_LOADING: dict[tuple, Future] = {}
_LOADING_LOCK = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def inference_threads(requested: int | None, processes_per_machine: int | None) -> int:
    """Threads per model component: ``requested`` if given, else the worker's share of the
    machine's cores (``processes_per_machine`` worker processes; None: one per core), so that
    workers x threads never exceeds the cores."""
    if requested:
        return requested
    processes = processes_per_machine or usable_cores()
    return max(1, usable_cores() // processes)


class ModerationModelHandler(ModelHandler[np.ndarray, PredictionResult, ModerationModel]):
    """Decoded RGB images (HxWx3 uint8, any size) in, DetectModerationLabels responses out.

    Wrap it in ``KeyedModelHandler`` to carry manifest lines through RunInference.
    """

    def __init__(
        self,
        *,
        components: str = "auto",
        backbone: str | None = None,
        zero_shot_model: str | None = None,
        zero_shot_prompts: str | None = None,
        s3: S3Settings | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        intra_op_threads: int | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        max_batch_duration_secs: int | None = None,
        large_model: bool = False,
        model_copies: int | None = None,
        analyses: bool = False,
        processes_per_machine: int | None = 1,
        recent_images: int = RECENT_IMAGES,
    ):
        """``intra_op_threads``: threads per component; None gives each worker process its
        share of the machine's cores, ``processes_per_machine`` being how many run there (None:
        one per core). ``large_model``: one model per machine, shared by its worker processes
        (Beam's ``MultiProcessShared``); ``model_copies``: how many copies that machine holds.
        ``analyses``: return each image's ``ImageAnalysis`` (for an adapter stage after this
        one) instead of its response. ``recent_images``: how many distinct images' results each
        worker keeps to answer repeats (0: none)."""
        super().__init__()
        resolve_components(components)  # a bad choice fails at construction, not on a worker
        self._components = components
        self._backbone = backbone
        self._zero_shot = (zero_shot_model, zero_shot_prompts)
        self._s3 = s3
        self._min_confidence = min_confidence
        self._intra_op_threads = intra_op_threads
        self._batching_kwargs: dict[str, int] = {}
        if min_batch_size is not None:
            self._batching_kwargs["min_batch_size"] = min_batch_size
        if max_batch_size is not None:
            self._batching_kwargs["max_batch_size"] = max_batch_size
        if max_batch_duration_secs is not None:
            self._batching_kwargs["max_batch_duration_secs"] = max_batch_duration_secs
        self._large_model = large_model or model_copies is not None
        self._model_copies = model_copies
        self._analyses = analyses
        self._processes_per_machine = processes_per_machine
        self._recent_images = recent_images
        self._recent: RecentResults | None = None
        self._version: str | None = None
        self._repeats = Metrics.counter("moderation", "num_repeated_images")

    def _load_key(self) -> tuple:
        """What decides the model ``load_model`` gives: two handlers with the same key load the
        same model."""
        threads = inference_threads(self._intra_op_threads, self._processes_per_machine)
        return (self._components, self._backbone, self._zero_shot, self._s3, threads)

    def start_loading(self) -> None:
        """Starts loading the model in a thread of this process, for the first ``load_model``
        with the same settings here to take up.

        RunInference loads its model in its DoFn's ``setup``, which holds up the whole fused
        stage, the images' fetching and decoding with it. Started before the pipeline is built,
        the load overlaps with building it, launching the runner and reading the manifest
        instead. For runners that run the stage in this process only: a worker process
        elsewhere loads its own model, and this one would then be loaded for nothing.
        """
        key = self._load_key()
        with _LOADING_LOCK:
            if key in _LOADING:
                return
            future: Future = Future()
            _LOADING[key] = future
        threading.Thread(
            target=self._load_into, args=(future,), name="load-model", daemon=True
        ).start()

    def stop_loading(self) -> None:
        """Forgets a model ``start_loading`` began and no ``load_model`` took: its thread
        finishes, and the model is then dropped."""
        with _LOADING_LOCK:
            _LOADING.pop(self._load_key(), None)

    def _load_into(self, future: Future) -> None:
        try:
            future.set_result(self._load())
        except BaseException as exc:  # whatever it is, load_model raises it instead of waiting
            future.set_exception(exc)

    def load_model(self) -> ModerationModel:
        with _LOADING_LOCK:
            loading = _LOADING.pop(self._load_key(), None)
        if loading is not None:
            return loading.result()
        return self._load()

    def _load(self) -> ModerationModel:
        try:
            threads = inference_threads(self._intra_op_threads, self._processes_per_machine)
            model = load_moderation_model(
                self._components,
                backbone=self._backbone,
                zero_shot_model=self._zero_shot[0],
                zero_shot_prompts=self._zero_shot[1],
                intra_op_threads=threads,
                s3=self._s3,
            )
        except Exception as exc:
            zero_shot = f", --zero_shot_model={self._zero_shot[0]}" if self._zero_shot[0] else ""
            raise ValueError(
                f"Unable to load the moderation model (--components={self._components}, "
                f"--backbone={self._backbone or DEFAULT_BACKBONE}{zero_shot}): {exc}. Check that "
                "the model packages are installed (pip install '.[nudenet]'), that the backbone "
                "URI is a TF2 SavedModel or TF Hub handle, and that a zero-shot model folder is "
                "what python -m training.export_zero_shot writes."
            ) from exc
        _LOGGER.info(
            "Loaded moderation model %s (%d inference threads per component)",
            model.version,
            threads,
        )
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: ModerationModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        # The decoded image is not needed downstream: results carry the response only.
        if self._analyses:
            compute = model.analyse
        else:
            compute = lambda images: model.predict(images, self._min_confidence)  # noqa: E731
        if self._recent_images:
            if self._recent is None:
                self._recent = RecentResults(self._recent_images)
            outputs, repeats = self._recent.results(batch, compute)
            self._repeats.inc(repeats)
        else:
            outputs = compute(list(batch))
        version = self._model_version(model)
        return [PredictionResult(None, output, version) for output in outputs]

    def _model_version(self, model) -> str:
        if self._version is None:
            # A model shared across processes is a proxy, which exposes methods only.
            version = getattr(model, "version", None)
            if not isinstance(version, str):
                version = moderation_model_version(
                    self._components,
                    self._backbone,
                    zero_shot_model=self._zero_shot[0],
                    zero_shot_prompts=self._zero_shot[1],
                    s3=self._s3,
                )
            self._version = version
        return self._version

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        return "moderation"

    def batch_elements_kwargs(self) -> dict[str, int]:
        return self._batching_kwargs

    def share_model_across_processes(self) -> bool:
        return self._large_model

    def model_copies(self) -> int:
        return self._model_copies or 1


class AdapterInput(NamedTuple):
    """What the adapter stage gets per image: its manifest line (carried through), the base
    model's analysis, and the base model's version."""

    line: Any
    analysis: ImageAnalysis
    base_version: str


class AdapterModelHandler(ModelHandler[AdapterInput, PredictionResult, Adapter]):
    """Base-model analyses in, adapted DetectModerationLabels responses out.

    The model it loads is the adapter alone (kilobytes): the base model ran once, before, so
    several adapters in one worker share it. Use it in a ``KeyedModelHandler`` of
    ``KeyModelMapping``s, one per adapter. Each result's inference is ``(line, response)``.
    """

    def __init__(
        self,
        uri: str,
        *,
        s3: S3Settings | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        project_version: str | None = None,
    ):
        """``project_version``: the ARN responses echo (default: the one the adapter records)."""
        super().__init__()
        self._uri = uri
        self._project_version = project_version
        self._s3 = s3
        self._min_confidence = min_confidence

    def load_model(self) -> Adapter:
        try:
            adapter = Adapter.load(self._uri, self._s3)
        except ValueError as exc:
            raise ValueError(f"Unable to load the adapter (--adapter={self._uri}): {exc}") from exc
        _LOGGER.info(
            "Loaded adapter %s (%s) for labels %s",
            self._uri,
            adapter.project_version_arn or "no ARN",
            ", ".join(adapter.labels),
        )
        return adapter

    def run_inference(
        self,
        batch: Sequence[AdapterInput],
        model: Adapter,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        by_version: dict[str, list[int]] = {}
        for index, item in enumerate(batch):
            by_version.setdefault(item.base_version, []).append(index)
        responses: list[dict | None] = [None] * len(batch)
        for version, indexes in by_version.items():
            analyses = [batch[i].analysis for i in indexes]
            for i, response in zip(
                indexes, respond(analyses, version, self._min_confidence, model), strict=True
            ):
                project_version = self._project_version or model.project_version_arn
                if project_version:
                    response["ProjectVersion"] = project_version
                responses[i] = response
        return [
            PredictionResult(None, (item.line, response), model.fingerprint())
            for item, response in zip(batch, responses, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[AdapterInput]) -> int:
        return sum(
            item.analysis.embedding.nbytes for item in batch if item.analysis.embedding is not None
        )

    def get_metrics_namespace(self) -> str:
        return "moderation_adapter"


class CustomLabelsModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """Decoded RGB images (HxWx3 uint8, any size) in, DetectCustomLabels responses out, from a
    Custom Labels model (``model.custom_labels_model``) in folder ``uri``.

    ``min_confidence`` None applies each label's assumed threshold, as DetectCustomLabels does
    without ``MinConfidence``. Wrap it in ``KeyedModelHandler`` to carry manifest lines.
    """

    def __init__(
        self,
        uri: str,
        *,
        s3: S3Settings | None = None,
        min_confidence: float | None = None,
        intra_op_threads: int | None = None,
        processes_per_machine: int | None = 1,
        batch_size: int | None = None,
    ):
        super().__init__()
        self._uri = uri
        self._s3 = s3
        self._min_confidence = min_confidence
        self._intra_op_threads = intra_op_threads
        self._processes_per_machine = processes_per_machine
        self._batching_kwargs: dict[str, int] = {}
        if batch_size is not None:
            self._batching_kwargs = {"min_batch_size": batch_size, "max_batch_size": batch_size}

    def load_model(self):
        from model.custom_labels_model import CustomLabelsModel

        threads = inference_threads(self._intra_op_threads, self._processes_per_machine)
        try:
            model = CustomLabelsModel.load(self._uri, self._s3, intra_op_threads=threads)
        except ValueError as exc:
            raise ValueError(
                f"Unable to load the Custom Labels model (--custom_labels_model={self._uri}): {exc}"
            ) from exc
        _LOGGER.info(
            "Loaded the Custom Labels model %s (%s, labels %s), %d thread(s)",
            self._uri,
            model.spec.kind,
            ", ".join(model.spec.labels),
            threads,
        )
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        responses = model.detect_custom_labels(list(batch), self._min_confidence)
        return [PredictionResult(None, response, model.version) for response in responses]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        return "custom_labels"

    def batch_elements_kwargs(self) -> dict[str, int]:
        return self._batching_kwargs

"""Beam model handler that runs the moderation model inside RunInference."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model.backbone import DEFAULT_BACKBONE
from model.moderation_model import ModerationModel, load_moderation_model, resolve_components
from transforms.storage import S3Settings

__all__ = ["ModerationModelHandler"]

_LOGGER = logging.getLogger(__name__)


class ModerationModelHandler(ModelHandler[np.ndarray, PredictionResult, ModerationModel]):
    """Decoded RGB images (HxWx3 uint8, any size) in, DetectModerationLabels responses out.

    Wrap it in ``KeyedModelHandler`` to carry manifest lines through RunInference.
    """

    def __init__(
        self,
        *,
        components: str = "auto",
        backbone: str | None = None,
        s3: S3Settings | None = None,
        min_confidence: float = 50.0,
        intra_op_threads: int | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        max_batch_duration_secs: int | None = None,
        large_model: bool = False,
    ):
        super().__init__()
        resolve_components(components)  # a bad choice fails at construction, not on a worker
        self._components = components
        self._backbone = backbone
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
        self._large_model = large_model

    def load_model(self) -> ModerationModel:
        try:
            model = load_moderation_model(
                self._components,
                backbone=self._backbone,
                intra_op_threads=self._intra_op_threads,
                s3=self._s3,
            )
        except Exception as exc:
            raise ValueError(
                f"Unable to load the moderation model (--components={self._components}, "
                f"--backbone={self._backbone or DEFAULT_BACKBONE}): {exc}. Check that the model "
                "packages are installed (pip install '.[nudenet]') and that the backbone URI "
                "is a TF2 SavedModel or TF Hub handle."
            ) from exc
        _LOGGER.info("Loaded moderation model %s", model.version)
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: ModerationModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        responses = model.predict(batch, self._min_confidence)
        # The decoded image is not needed downstream: results carry the response only.
        return [PredictionResult(None, response, model.version) for response in responses]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        return "moderation"

    def batch_elements_kwargs(self) -> dict[str, int]:
        return self._batching_kwargs

    def share_model_across_processes(self) -> bool:
        return self._large_model

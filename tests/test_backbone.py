"""The TensorFlow backbone: checkpoint reading, the EfficientNet-Lite0 port, and custom models."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from model.checkpoint import CheckpointError, read_legacy_state_dict
from model.efficientnet_lite import checkpoint_path

# Classes ImageNet-trained models give the scikit-image photos (see MODELS.md).
CAT_CLASSES = {"tabby cat", "tiger cat", "Egyptian Mau", "a cat having a striped coat"}
CUP_CLASSES = {"tea cup", "coffee mug", "cup"}


def test_checkpoint_reads_every_tensor_with_its_shape():
    with open(checkpoint_path(), "rb") as file:
        state = read_legacy_state_dict(file)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_head.weight"].dtype == np.float32
    assert sum(v.size for v in state.values()) == 4694073
    assert np.isfinite(state["_fc.weight"]).all()


def _legacy_file(payload: bytes) -> io.BytesIO:
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {}))
    return io.BytesIO(head + payload)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_refuses_to_run_code():
    with pytest.raises(CheckpointError, match="not allowed"):
        read_legacy_state_dict(_legacy_file(pickle.dumps(_Exploit(), protocol=2)))


def test_checkpoint_rejects_other_files():
    with pytest.raises(CheckpointError, match="not a legacy PyTorch checkpoint"):
        read_legacy_state_dict(io.BytesIO(b"PK\x03\x04 a zip file"))
    with pytest.raises(CheckpointError, match="wrong magic number"):
        read_legacy_state_dict(io.BytesIO(pickle.dumps(42) * 3))


def test_checkpoint_detects_truncation():
    with open(checkpoint_path(), "rb") as file:
        data = file.read()
    with pytest.raises(CheckpointError, match="truncated"):
        read_legacy_state_dict(io.BytesIO(data[:-1000]))


def test_imagenet_class_names_are_unique():
    from model.backbone import imagenet_class_names

    names = imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert names[967] == "espresso"


def test_every_imagenet_rule_names_a_real_class():
    from model.backbone import imagenet_class_names
    from model.label_map import LABEL_RULES, UNMAPPED_OUTPUTS

    names = set(imagenet_class_names())
    for signal in [r.signal for r in LABEL_RULES] + list(UNMAPPED_OUTPUTS):
        if signal.startswith("imagenet/"):
            assert signal.removeprefix("imagenet/") in names, signal


def test_prepare_image_crops_the_centre_and_scales_to_unit_range():
    from model.backbone import prepare_image

    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # a white centre square between black side bands
    prepared = prepare_image(image, 32)
    assert prepared.shape == (32, 32, 3) and prepared.dtype == np.float32
    assert prepared.min() >= 0.0 and prepared.max() <= 1.0
    assert prepared[16, 16].tolist() == [1.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def photos(sample_photos) -> dict[str, np.ndarray]:
    """The JPEG sample photos decoded as the pipeline decodes them."""
    from transforms.images import decode_image

    return {
        name.removesuffix(".jpg"): decode_image(open(path, "rb").read())
        for name, path in sample_photos.items()
        if name.endswith(".jpg")
    }


@pytest.fixture(scope="module")
def backbone():
    from model.backbone import Backbone

    return Backbone()


def _top5(backbone, image) -> list[str]:
    from model.backbone import imagenet_class_names

    names = imagenet_class_names()
    probabilities = backbone.run([image]).imagenet[0]
    return [names[i] for i in np.argsort(-probabilities)[:5]]


@pytest.mark.slow
def test_port_predicts_what_the_original_predicts(backbone, photos):
    coffee = _top5(backbone, photos["coffee"])
    assert coffee[0] == "espresso"
    assert CUP_CLASSES & set(coffee)
    assert _top5(backbone, photos["chelsea"])[0] in CAT_CLASSES
    assert "tripod" in _top5(backbone, photos["camera"])[:2]


@pytest.mark.slow
def test_outputs_have_the_documented_shapes_and_ranges(backbone, photos):
    output = backbone.run(list(photos.values()))
    count = len(photos)
    assert output.embeddings.shape == (count, 1280) and output.embeddings.dtype == np.float32
    assert output.imagenet.shape == (count, 1000)
    np.testing.assert_allclose(output.imagenet.sum(axis=1), 1.0, atol=1e-4)
    assert (output.embeddings >= 0).all()  # ReLU6 features, averaged


@pytest.mark.slow
def test_embedding_is_deterministic_and_independent_of_the_batch(backbone, photos):
    images = list(photos.values())
    first = backbone.run(images).embeddings
    again = backbone.run(images).embeddings
    np.testing.assert_array_equal(first, again)
    alone = backbone.run(images[:1]).embeddings
    np.testing.assert_allclose(alone[0], first[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_weights_file_is_made_once_and_reused(backbone, tmp_path, monkeypatch, photos):
    from model.backbone import Backbone, _embedded_weights

    path = _embedded_weights()
    stamp = os.stat(path).st_mtime_ns
    assert Backbone().version == backbone.version
    assert os.stat(path).st_mtime_ns == stamp
    # A fresh cache gets the same weights: the same outputs to the bit.
    monkeypatch.setenv("BEAM_MODERATION_CACHE", str(tmp_path))
    fresh = Backbone()
    assert _embedded_weights().startswith(str(tmp_path))
    image = [photos["coffee"]]
    np.testing.assert_array_equal(fresh.run(image).embeddings, backbone.run(image).embeddings)

"""Bring-your-own backbone: SavedModels the test builds itself, from a folder and from S3."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = 224


def _keras_classifier_1001(folder: str) -> str:
    """A Keras SavedModel with TF Hub's classifier layout: 1001 logits, background first."""
    import tf_keras

    inputs = tf_keras.layers.Input((SIZE, SIZE, 3))
    pooled = tf_keras.layers.GlobalAveragePooling2D()(inputs)
    logits = tf_keras.layers.Dense(1001)(pooled)
    model = tf_keras.Model(inputs, logits)
    # Logit 968 (= ImageNet class 967, espresso, after the background class) wins for any
    # image: a known answer to check the class offset and the softmax.
    kernel = np.zeros((3, 1001), np.float32)
    bias = np.zeros(1001, np.float32)
    bias[968] = 10.0
    model.layers[-1].set_weights([kernel, bias])
    path = os.path.join(folder, "classifier")
    model.save(path, save_format="tf")
    return path


def _hub_style_feature_vector(folder: str) -> str:
    """A plain ``tf.Module`` SavedModel (not Keras), like most TF Hub feature-vector models."""
    import tensorflow as tf

    class FeatureVector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def __call__(self, images):
            # Mean colour and brightness: 4 numbers a test can predict.
            means = tf.reduce_mean(images, axis=[1, 2])
            return tf.concat([means, tf.reduce_mean(means, axis=1, keepdims=True)], axis=1)

    path = os.path.join(folder, "feature_vector")
    tf.saved_model.save(FeatureVector(), path)
    return path


def _red_image() -> np.ndarray:
    image = np.zeros((300, 400, 3), np.uint8)
    image[..., 0] = 255
    return image


def test_a_keras_savedmodel_classifier_with_a_background_class(tmp_path):
    from model.backbone import Backbone, imagenet_class_names

    backbone = Backbone(_keras_classifier_1001(str(tmp_path)))
    output = backbone.run([_red_image(), _red_image()])
    assert output.embeddings is None
    assert output.imagenet.shape == (2, 1000)
    np.testing.assert_allclose(output.imagenet.sum(axis=1), 1.0, atol=1e-5)
    assert imagenet_class_names()[int(output.imagenet[0].argmax())] == "espresso"
    assert backbone.version.startswith("backbone[")


def test_a_plain_tf_module_savedmodel_loads_as_a_hub_layer(tmp_path):
    from model.backbone import Backbone

    backbone = Backbone(_hub_style_feature_vector(str(tmp_path)))
    output = backbone.run([_red_image()])
    assert output.imagenet is None
    np.testing.assert_allclose(output.embeddings[0], [1.0, 0.0, 0.0, 1 / 3], atol=1e-5)


def test_a_folder_that_is_not_a_model_fails_with_what_to_check(tmp_path):
    from model.backbone import Backbone

    with pytest.raises(ValueError, match="TF2 SavedModel folder or TF Hub handle"):
        Backbone(str(tmp_path))


def test_a_savedmodel_in_s3(tmp_path, s3, moto_server, monkeypatch):
    from model.backbone import Backbone, imagenet_class_names
    from storage.settings import S3Settings

    monkeypatch.setenv("BEAM_MODERATION_CACHE", str(tmp_path / "cache"))
    local = _keras_classifier_1001(str(tmp_path))
    s3.create_bucket(Bucket="models")
    for root, _dirs, files in os.walk(local):
        for name in files:
            path = os.path.join(root, name)
            key = "backbones/classifier/" + os.path.relpath(path, local)
            s3.upload_file(path, "models", key)
    settings = S3Settings(
        endpoint_url=moto_server, access_key_id="testing", secret_access_key="testing"
    )
    backbone = Backbone("s3://models/backbones/classifier", s3=settings)
    output = backbone.run([_red_image()])
    assert imagenet_class_names()[int(output.imagenet[0].argmax())] == "espresso"
    assert backbone.version == "backbone[s3://models/backbones/classifier]"


def test_a_custom_backbone_drives_the_label_table_and_drops_the_content_head(tmp_path):
    """A classifier whose every answer is "slot machine" makes every image Gambling."""
    import tf_keras

    from model.backbone import imagenet_class_names
    from model.moderation_model import load_moderation_model, moderation_model_version

    inputs = tf_keras.layers.Input((SIZE, SIZE, 3))
    probabilities = tf_keras.layers.Dense(1000, activation="softmax")(
        tf_keras.layers.GlobalAveragePooling2D()(inputs)
    )
    model = tf_keras.Model(inputs, {"imagenet": probabilities})
    bias = np.full(1000, -10.0, np.float32)
    bias[imagenet_class_names().index("slot machine")] = 10.0
    model.layers[-1].set_weights([np.zeros((3, 1000), np.float32), bias])
    path = str(tmp_path / "slots")
    model.save(path, save_format="tf")

    moderation = load_moderation_model("open_nsfw", backbone=path)
    (response,) = moderation.predict([_red_image()], min_confidence=50)
    assert [
        (x["Name"], x["TaxonomyLevel"], x["ParentName"]) for x in response["ModerationLabels"]
    ] == [("Gambling", 1, "")]
    assert response["ModerationLabels"][0]["Confidence"] > 99
    assert response["ContentTypes"] == []
    assert response["ModerationModelVersion"] == moderation_model_version("open_nsfw", path)
    assert f"backbone[{path}]" in response["ModerationModelVersion"]

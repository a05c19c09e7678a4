"""Trains a Custom Labels model: a Keras head on the frozen backbone's features of the images.

The backbone runs once per training image and once more for its mirror image (the only
augmentation: a flipped object is still that object, and a box's mirror is exact); the head then
trains on those features alone, which keeps a few hundred images within minutes on two cores.
Each label's assumed threshold is then chosen on the testing images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.custom_labels_model import (
    CLASSIFICATION,
    CLASSIFIER_INPUT_SIZE,
    DETECTOR_INPUT_SIZE,
    DETECTOR_WIDTH,
    KINDS,
    OBJECT_DETECTION,
    Box,
    CustomLabelsModel,
    CustomLabelsSpec,
    FeatureExtractor,
    Prediction,
    classifier_features,
    flip_box,
    merged_feature_map,
    prepare_image,
)
from training.custom_labels_data import LabelledImage
from training.custom_labels_metrics import DEFAULT_THRESHOLD, assumed_thresholds, evaluate_analyses

__all__ = [
    "CLASSIFIER_EPOCHS",
    "DETECTOR_EPOCHS",
    "detector_targets",
    "fit_classifier",
    "fit_detector",
    "fit_model",
]

_LOGGER = logging.getLogger(__name__)

CLASSIFIER_EPOCHS = 60
DETECTOR_EPOCHS = 40
_BATCH_SIZE = 16  # images prepared and run through the backbone at once
_MIN_SCALE = 1e-2  # standardisation: features that barely vary are not blown up
# A heatmap peak's Gaussian spreads over this share of the box (TTFNet's alpha / 6).
_GAUSSIAN_SPREAD = 0.54 / 6
_MIN_SIGMA = 0.25  # cells
_HEATMAP_PRIOR = 0.05  # initial probability of an object centre in a cell


def _seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


def _standardisation(samples: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mean = samples.mean(axis=axes, dtype=np.float64)
    scale = np.maximum(samples.std(axis=axes, dtype=np.float64), _MIN_SCALE)
    return mean.astype(np.float32), scale.astype(np.float32)


def fit_classifier(
    kind: str,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, np.ndarray]:
    """Classifier head weights: a linear layer on standardised ``classifier_features``, softmax
    (``CLASSIFICATION``: ``targets`` one-hot) or one sigmoid per label (multi-hot)."""
    import tensorflow as tf

    _seed(seed)
    mean, scale = _standardisation(features, (0,))
    x = (features - mean) / scale
    labels = targets.shape[1]
    inputs = tf.keras.Input(shape=(x.shape[1],), name="embedding")
    dropped = tf.keras.layers.Dropout(0.2, seed=seed)(inputs)
    logits = tf.keras.layers.Dense(
        labels, kernel_regularizer=tf.keras.regularizers.l2(1e-3), name="labels"
    )(dropped)
    model = tf.keras.Model(inputs, logits, name="custom_labels_classifier")
    loss = (
        tf.keras.losses.CategoricalCrossentropy(from_logits=True)
        if kind == CLASSIFICATION
        else tf.keras.losses.BinaryCrossentropy(from_logits=True)
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3), loss=loss)
    model.fit(
        x, targets, epochs=epochs or CLASSIFIER_EPOCHS, batch_size=32, shuffle=True, verbose=0
    )
    kernel, bias = model.get_layer("labels").get_weights()
    return {
        "classifier.mean": mean,
        "classifier.scale": scale,
        "classifier.kernel": kernel.astype(np.float32),
        "classifier.bias": bias.astype(np.float32),
    }


def detector_targets(boxes: Sequence[tuple[int, Box]], grid: int, labels: int) -> np.ndarray:
    """(grid, grid, labels + 5) training targets of one image for the detector head: per label a
    heatmap (1 at each object's centre cell, a Gaussian around it), then the log of the box's
    width and height in cells, the centre's x and y offset in its cell, and 1 where a centre
    is (the cells whose size and offset are learnt)."""
    target = np.zeros((grid, grid, labels + 5), dtype=np.float32)
    rows, columns = np.mgrid[0:grid, 0:grid].astype(np.float32)
    # Larger boxes first, so that a small box sharing a centre cell keeps its size.
    for label, box in sorted(boxes, key=lambda item: -item[1].width * item[1].height):
        width, height = max(box.width * grid, 1e-3), max(box.height * grid, 1e-3)
        centre_x = min(max((box.left + box.width / 2) * grid, 0.0), grid - 1e-3)
        centre_y = min(max((box.top + box.height / 2) * grid, 0.0), grid - 1e-3)
        column, row = int(centre_x), int(centre_y)
        sigma_x = max(width * _GAUSSIAN_SPREAD, _MIN_SIGMA)
        sigma_y = max(height * _GAUSSIAN_SPREAD, _MIN_SIGMA)
        gaussian = np.exp(
            -((columns - column) ** 2) / (2 * sigma_x**2) - (rows - row) ** 2 / (2 * sigma_y**2)
        )
        target[:, :, label] = np.maximum(target[:, :, label], gaussian)
        target[row, column, label] = 1.0
        target[row, column, labels : labels + 2] = np.log([width, height])
        target[row, column, labels + 2 : labels + 4] = (centre_x - column, centre_y - row)
        target[row, column, labels + 4] = 1.0
    return target


def _detector_loss(labels: int):
    """CenterNet's loss: penalty-reduced focal loss on the heatmaps, L1 on the size and offset
    at object centres, each divided by the number of objects in the batch."""
    import tensorflow as tf

    def loss(y_true, y_pred):
        heat, logits = y_true[..., :labels], y_pred[..., :labels]
        probability = tf.sigmoid(logits)
        positive = tf.cast(tf.equal(heat, 1.0), tf.float32)
        positive_loss = -tf.math.log_sigmoid(logits) * tf.square(1.0 - probability) * positive
        negative_loss = (
            -tf.math.log_sigmoid(-logits)
            * tf.square(probability)
            * tf.pow(1.0 - heat, 4.0)
            * (1.0 - positive)
        )
        mask = y_true[..., labels + 4 : labels + 5]
        objects = tf.maximum(tf.reduce_sum(mask), 1.0)
        regression = tf.abs(y_true[..., labels : labels + 4] - y_pred[..., labels : labels + 4])
        return (
            tf.reduce_sum(positive_loss) + tf.reduce_sum(negative_loss)
        ) / objects + tf.reduce_sum(regression * mask) / objects

    return loss


def fit_detector(
    maps: np.ndarray, targets: np.ndarray, labels: int, *, seed: int = 0, epochs: int | None = None
) -> dict[str, np.ndarray]:
    """Detector head weights trained on merged feature maps (N, H, W, C) (see
    ``merged_feature_map``) against ``detector_targets``."""
    import tensorflow as tf

    _seed(seed)
    mean, scale = _standardisation(maps, (0, 1, 2))
    x = (maps - mean) / scale
    layers = tf.keras.layers
    l2 = tf.keras.regularizers.l2(1e-4)
    inputs = tf.keras.Input(shape=x.shape[1:], name="features")
    hidden = layers.SpatialDropout2D(0.1, seed=seed)(inputs)
    hidden = layers.Conv2D(
        DETECTOR_WIDTH, 1, activation="relu", kernel_regularizer=l2, name="reduce"
    )(hidden)
    for name in ("conv1", "conv2"):
        hidden = layers.Conv2D(
            DETECTOR_WIDTH, 3, padding="same", activation="relu", kernel_regularizer=l2, name=name
        )(hidden)
    prior = float(-np.log((1 - _HEATMAP_PRIOR) / _HEATMAP_PRIOR))
    heatmap = layers.Conv2D(
        labels, 1, bias_initializer=tf.keras.initializers.Constant(prior), name="heatmap"
    )(hidden)
    size = layers.Conv2D(2, 1, bias_initializer=tf.keras.initializers.Constant(1.0), name="size")(
        hidden
    )
    offset = layers.Conv2D(
        2, 1, bias_initializer=tf.keras.initializers.Constant(0.5), name="offset"
    )(hidden)
    outputs = layers.Concatenate(name="head")([heatmap, size, offset])
    model = tf.keras.Model(inputs, outputs, name="custom_labels_detector")
    epochs = epochs or DETECTOR_EPOCHS
    steps = epochs * int(np.ceil(len(x) / 16))
    schedule = tf.keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=schedule), loss=_detector_loss(labels)
    )
    model.fit(x, targets, epochs=epochs, batch_size=16, shuffle=True, verbose=0)
    weights = {"detector.mean": mean, "detector.scale": scale}
    for name in ("reduce", "conv1", "conv2", "heatmap", "size", "offset"):
        kernel, bias = model.get_layer(name).get_weights()
        weights[f"detector.{name}.kernel"] = kernel.astype(np.float32)
        weights[f"detector.{name}.bias"] = bias.astype(np.float32)
    return weights


def _prepared_batches(
    images: Sequence[LabelledImage], load_image: Callable[[str], np.ndarray], size: int
):
    for start in range(0, len(images), _BATCH_SIZE):
        chunk = images[start : start + _BATCH_SIZE]
        yield (
            chunk,
            np.stack([prepare_image(load_image(image.source_ref), size) for image in chunk]),
        )


def _training_features(
    kind: str,
    labels: Sequence[str],
    images: Sequence[LabelledImage],
    load_image: Callable[[str], np.ndarray],
    extractor: FeatureExtractor,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's inputs and targets for every training image and its mirror image."""
    index = {name: i for i, name in enumerate(labels)}
    detection = kind == OBJECT_DETECTION
    inputs, targets = [], []
    for chunk, batch in _prepared_batches(images, load_image, extractor.input_size):
        for flipped in (False, True):
            features = extractor.run(batch[:, :, ::-1] if flipped else batch)
            if detection:
                maps = merged_feature_map(features)
                inputs.append(maps)
                grid = maps.shape[1]
                for image in chunk:
                    boxes = [
                        (index[name], flip_box(box) if flipped else box)
                        for name, box in image.boxes
                        if name in index
                    ]
                    targets.append(detector_targets(boxes, grid, len(labels)))
            else:
                inputs.append(classifier_features(features))
                for image in chunk:
                    targets.append([float(name in image.labels) for name in labels])
    return np.concatenate(inputs), np.asarray(np.stack(targets), dtype=np.float32)


def fit_model(
    kind: str,
    labels: Sequence[str],
    training: Sequence[LabelledImage],
    testing: Sequence[LabelledImage],
    load_image: Callable[[str], np.ndarray],
    *,
    project_version_arn: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[CustomLabelsModel, dict[str, Any]]:
    """Fits the head on ``training``, chooses each label's assumed threshold on ``testing``
    (the confidence that maximises that label's F1) and returns the model and its evaluation
    there (``training.custom_labels_metrics.evaluate_analyses``). Deterministic for a seed."""
    from model.backbone import Backbone

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    labels = tuple(sorted(set(labels)))
    if not labels:
        raise ValueError("a Custom Labels model needs at least one label")
    if not training:
        raise ValueError("no training images")
    if not testing:
        raise ValueError("no testing images")

    def say(message: str) -> None:
        _LOGGER.info("%s", message)
        if progress is not None:
            progress(message)

    started = time.monotonic()
    input_size = DETECTOR_INPUT_SIZE if kind == OBJECT_DETECTION else CLASSIFIER_INPUT_SIZE
    extractor = FeatureExtractor(input_size)
    say(f"Computing the backbone's features of {len(training)} training images (and mirrors)")
    inputs, targets = _training_features(kind, labels, training, load_image, extractor)
    features_seconds = time.monotonic() - started
    say(f"Training the {kind} head on {len(inputs)} examples")
    if kind == OBJECT_DETECTION:
        weights = fit_detector(inputs, targets, len(labels), seed=seed)
        epochs = DETECTOR_EPOCHS
    else:
        weights = fit_classifier(kind, inputs, targets, seed=seed)
        epochs = CLASSIFIER_EPOCHS
    del inputs, targets
    fit_seconds = time.monotonic() - started - features_seconds
    spec = CustomLabelsSpec(
        kind=kind,
        labels=labels,
        thresholds=dict.fromkeys(labels, DEFAULT_THRESHOLD),
        backbone_version=Backbone.version_for(None),
        project_version_arn=project_version_arn,
        input_size=input_size,
    )
    model = CustomLabelsModel(spec, weights, extractor=extractor)
    say(f"Choosing each label's threshold on {len(testing)} testing images")
    analyses: list[list[Prediction]] = []
    for _, batch in _prepared_batches(testing, load_image, input_size):
        analyses.extend(model.analyse_prepared(batch))
    model = model.with_thresholds(assumed_thresholds(kind, labels, analyses, testing))
    evaluation = evaluate_analyses(kind, labels, model.spec.thresholds, analyses, testing)
    model = model.with_training(
        {
            "TrainingImages": len(training),
            "TestingImages": len(testing),
            "Seed": seed,
            "Epochs": epochs,
            "FeatureSeconds": round(features_seconds, 3),
            "FitSeconds": round(fit_seconds, 3),
            "TrainingSeconds": round(time.monotonic() - started, 3),
        }
    )
    say(f"Trained: F1 {evaluation['F1Score']:.3f} on the testing images")
    return model, evaluation

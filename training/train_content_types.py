"""Trains the content-types head (Animated, Illustrated) on the backbone embedding, reproducibly.

    python -m training.train_content_types [--output model/content_types_head.npz] [--seed 0]

The data is the recipe of ``training.content_types_data`` (images from packages, split by source).
Every image is embedded with the default backbone; the head is one dense layer with two
independent sigmoids, Animated and Illustrated (a photo is negative for both), trained in Keras
with each of the three classes weighing the same in the loss. Its L2 strength is picked by
cross-validation on the training split, folds never splitting a source (there are few photo
sources, and a head that has seen crops of a photo would look better than it is). The
embeddings are standardised on the training split first so that one L2 strength suits every
feature; the standardisation is then folded into the weights, so the saved head is a plain
``sigmoid(x @ weights + bias)`` on the raw embedding. The held-out split is used only to
measure the final head.

Writes the head (``.npz``: weights, bias, class names, version) and its metadata beside it
(``.json``: backbone version, seed, the recipe's counts, the held-out metrics, and the accuracy
floor that the tests hold the head to).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from model.content_types import (
    CONTENT_TYPE_NAMES,
    DEFAULT_HEAD_PATH,
    HEAD_VERSION,
    THRESHOLD,
    ContentTypesHead,
)
from pipeline.logs import configure_logging
from training import content_types_data as data

__all__ = [
    "Embedded",
    "embed_split",
    "predicted_class",
    "evaluate",
    "select_l2",
    "train_head",
    "main",
]

_LOGGER = logging.getLogger(__name__)

# The floor the tests assert is the measured held-out accuracy less this margin: room for
# numerical differences between machines, not for a worse head.
FLOOR_MARGIN = 0.05
# L2 strengths tried, by grouped cross-validation on the training split (per mean example loss).
L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
CV_FOLDS = 4
EPOCHS = 40
BATCH_SIZE = 128
LEARNING_RATE = 3e-3
EMBED_BATCH = 32


def embed_split(backbone, split: str, seed: int) -> tuple[np.ndarray, list[data.Example]]:
    """The embeddings of every example of ``split``, and the examples without their pixels."""
    embeddings, examples, batch = [], [], []

    def flush() -> None:
        embeddings.append(backbone.run([example.image for example in batch]).embeddings)
        examples.extend(
            data.Example(image=np.empty(0, np.uint8), label=e.label, source=e.source, name=e.name)
            for e in batch
        )
        batch.clear()

    for example in data.iter_examples(split, seed):
        batch.append(example)
        if len(batch) == EMBED_BATCH:
            flush()
    if batch:
        flush()
    return np.concatenate(embeddings).astype(np.float32), examples


# What the embeddings cache keeps per split besides the embeddings themselves.
_PARTS = ("labels", "sources", "names")


class Embedded(NamedTuple):
    """One split, embedded: a row of ``x`` per example, with its label, source and name."""

    x: np.ndarray
    labels: list[str]
    sources: list[str]
    names: list[str]


def _embeddings(backbone, seed: int, cache: Path | None) -> dict[str, Embedded]:
    """Every split embedded, from ``cache`` when it holds this very recipe and backbone."""
    planned = data.plan(seed)
    names = {split: [e.name for e in planned if e.split == split] for split in data.SPLITS}
    key = f"{backbone.version}/{seed}"
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            complete = {f"{split}_{part}" for split in data.SPLITS for part in _PARTS} <= set(saved)
            if (
                complete
                and str(saved["key"]) == key
                and all(
                    [str(x) for x in saved[f"{split}_names"]] == names[split]
                    for split in data.SPLITS
                )
            ):
                return {
                    split: Embedded(
                        saved[f"{split}_x"],
                        *([str(x) for x in saved[f"{split}_{part}"]] for part in _PARTS),
                    )
                    for split in data.SPLITS
                }
        _LOGGER.info("%s is for another recipe or backbone: embedding again", cache)
    result, arrays = {}, {"key": np.array(key)}
    for split in data.SPLITS:
        x, examples = embed_split(backbone, split, seed)
        result[split] = Embedded(
            x, [e.label for e in examples], [e.source for e in examples], [e.name for e in examples]
        )
        arrays[f"{split}_x"] = x
        for part in _PARTS:
            arrays[f"{split}_{part}"] = np.array(getattr(result[split], part))
    if cache is not None:
        np.savez(cache, **arrays)
    return result


def _targets(labels: Sequence[str]) -> np.ndarray:
    return np.array(
        [[label == name for name in CONTENT_TYPE_NAMES] for label in labels], np.float32
    )


def train_head(
    embeddings: np.ndarray, labels: Sequence[str], *, l2: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fits the head; returns ``(weights (D, 2), bias (2,))`` for the raw embedding."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    mean = embeddings.mean(axis=0, dtype=np.float64)
    scale = embeddings.std(axis=0, dtype=np.float64) + 1e-6
    features = ((embeddings - mean) / scale).astype(np.float32)
    frequency = {label: list(labels).count(label) for label in set(labels)}
    # Each class weighs the same in total, whatever its number of examples.
    weights = np.array([len(labels) / (len(frequency) * frequency[x]) for x in labels], np.float32)

    head = tf.keras.Sequential(
        [
            tf.keras.layers.Input((features.shape[1],)),
            tf.keras.layers.Dense(
                len(CONTENT_TYPE_NAMES),
                activation="sigmoid",
                kernel_regularizer=tf.keras.regularizers.l2(l2),
            ),
        ]
    )
    head.compile(
        optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
        loss=tf.keras.losses.BinaryCrossentropy(),
    )
    head.fit(
        features,
        _targets(labels),
        sample_weight=weights,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=True,
        verbose=0,
    )
    kernel, bias = (np.asarray(w, np.float64) for w in head.layers[-1].get_weights())
    # sigmoid(((x - mean) / scale) @ kernel + bias) == sigmoid(x @ folded + shifted)
    folded = kernel / scale[:, None]
    shifted = bias - (mean / scale) @ kernel
    return folded.astype(np.float32), shifted.astype(np.float32)


def _folds(labels: Sequence[str], sources: Sequence[str], seed: int) -> np.ndarray:
    """A fold number per example: whole sources per fold, each class spread over every fold."""
    fold_of = {}
    for label in data.LABELS:
        own = sorted({s for s, x in zip(sources, labels) if x == label})
        ranked = sorted(own, key=lambda source: (data.source_hash(seed, "fold", source), source))
        fold_of.update({source: i % CV_FOLDS for i, source in enumerate(ranked)})
    return np.array([fold_of[source] for source in sources])


def select_l2(train: Embedded, seed: int) -> tuple[float, dict[str, float]]:
    """The L2 strength of ``L2_GRID`` with the best cross-validated balanced accuracy (mean
    per-class recall), folds never splitting a source; a tie goes to the stronger one."""
    folds = _folds(train.labels, train.sources, seed)
    labels = np.array(train.labels)
    scores = {}
    for l2 in L2_GRID:
        predicted = np.empty(len(labels), dtype=object)
        for fold in range(CV_FOLDS):
            held = folds == fold
            weights, bias = train_head(train.x[~held], list(labels[~held]), l2=l2, seed=seed)
            head = ContentTypesHead(weights, bias)
            predicted[held] = [predicted_class(row) for row in head.probabilities(train.x[held])]
        recalls = [np.mean(predicted[labels == label] == label) for label in data.LABELS]
        scores[str(l2)] = round(float(np.mean(recalls)), 4)
        _LOGGER.info("L2 %g: cross-validated balanced accuracy %.4f", l2, scores[str(l2)])
    best = max(L2_GRID, key=lambda l2: (scores[str(l2)], l2))
    return best, scores


def predicted_class(probabilities: Sequence[float]) -> str:
    """The recipe's class for one row of the head: its likelier type if at least the threshold,
    else ``Photo`` (neither)."""
    best = int(np.argmax(probabilities))
    return CONTENT_TYPE_NAMES[best] if probabilities[best] >= THRESHOLD else data.PHOTO


def evaluate(probabilities: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall and the confusion table of the decisions at 0.5."""
    predicted = [predicted_class(row) for row in probabilities]
    classes = list(data.LABELS)
    confusion = {truth: {guess: 0 for guess in classes} for truth in classes}
    for truth, guess in zip(labels, predicted):
        confusion[truth][guess] += 1
    per_class = {}
    for name in classes:
        hits = confusion[name][name]
        guessed = sum(confusion[truth][name] for truth in classes)
        actual = sum(confusion[name].values())
        per_class[name] = {
            "support": actual,
            "precision": round(hits / guessed, 4) if guessed else 0.0,
            "recall": round(hits / actual, 4) if actual else 0.0,
        }
    # Each sigmoid on its own, as a yes/no detector of its type.
    per_output = {}
    for column, name in enumerate(CONTENT_TYPE_NAMES):
        truth = np.array([label == name for label in labels])
        guess = probabilities[:, column] >= THRESHOLD
        per_output[name] = {"accuracy": round(float((truth == guess).mean()), 4)}
    accuracy = sum(confusion[name][name] for name in classes) / len(labels)
    return {
        "threshold": THRESHOLD,
        "examples": len(labels),
        "accuracy": round(accuracy, 4),
        "per_class": per_class,
        "per_output": per_output,
        "confusion": confusion,
    }


def _print_report(split: str, metrics: dict) -> None:
    classes = list(data.LABELS)
    print(f"{split}: {metrics['examples']} examples, accuracy {metrics['accuracy']:.4f}")
    print(f"  {'class':<12} {'precision':>9} {'recall':>7} {'support':>7}")
    for name, row in metrics["per_class"].items():
        print(f"  {name:<12} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['support']:>7}")
    for name, row in metrics["per_output"].items():
        print(f"  sigmoid {name}: accuracy {row['accuracy']:.4f} at threshold {THRESHOLD}")
    print("  confusion (rows: truth, columns: predicted)")
    print("  " + " " * 12 + "".join(f"{name:>12}" for name in classes))
    for truth in classes:
        row = "".join(f"{metrics['confusion'][truth][guess]:>12}" for guess in classes)
        print(f"  {truth:<12}{row}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_HEAD_PATH,
        help="where the head is written (.npz; the .json goes beside it); default: %(default)s",
    )
    parser.add_argument("--seed", type=int, default=0, help="recipe and training seed (default 0)")
    parser.add_argument(
        "--backbone",
        default=None,
        help="backbone SavedModel or TF Hub handle (default: the embedded EfficientNet-Lite0)",
    )
    parser.add_argument(
        "--embeddings-cache",
        type=Path,
        default=None,
        help="an .npz that keeps the embeddings between runs (default: none, embed every time)",
    )
    args = parser.parse_args(argv)
    configure_logging()

    from model.backbone import Backbone

    started = time.monotonic()
    backbone = Backbone(args.backbone)
    embedded = _embeddings(backbone, args.seed, args.embeddings_cache)
    embed_seconds = time.monotonic() - started
    train, held = embedded[data.TRAIN], embedded[data.HELD_OUT]

    started = time.monotonic()
    l2, cv_scores = select_l2(train, args.seed)
    weights, bias = train_head(train.x, train.labels, l2=l2, seed=args.seed)
    fit_seconds = time.monotonic() - started
    head = ContentTypesHead(weights, bias, CONTENT_TYPE_NAMES, HEAD_VERSION)
    train_metrics = evaluate(head.probabilities(train.x), train.labels)
    held_metrics = evaluate(head.probabilities(held.x), held.labels)
    _print_report(data.TRAIN, train_metrics)
    _print_report(data.HELD_OUT, held_metrics)

    floor = float(np.floor((held_metrics["accuracy"] - FLOOR_MARGIN) * 100) / 100)
    recipe = data.describe(args.seed)
    metadata = {
        "version": HEAD_VERSION,
        "backbone_version": backbone.version,
        "seed": args.seed,
        "outputs": list(CONTENT_TYPE_NAMES),
        "head": {
            "layer": "Dense(2, sigmoid) on the embedding",
            "l2": l2,
            "l2_cross_validation": {
                "folds": CV_FOLDS,
                "grouped_by": "source",
                "balanced_accuracy": cv_scores,
            },
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "class_weighting": "each of Animated, Illustrated, Photo weighs the same",
        },
        "recipe": recipe,
        "metrics": {data.TRAIN: train_metrics, data.HELD_OUT: held_metrics},
        "held_out_accuracy_floor": floor,
        "floor_margin": FLOOR_MARGIN,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    head.save(args.output)
    json_path = args.output.with_suffix(".json")
    json_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    print(f"embedding {embed_seconds:.0f} s, fitting {fit_seconds:.0f} s")
    print(f"wrote {args.output} and {json_path}; held-out accuracy floor {floor:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Trains the content-types head (Animated, Illustrated) on the backbone embedding, reproducibly.

    python -m training.train_content_types [--output model/content_types_head.npz] [--seed 0]

The data is the recipe of ``training.content_types_data`` (images from packages, split by source).
Every image is embedded with the default backbone; the head is one dense layer with two
independent sigmoids, Animated and Illustrated (a photo is negative for both), fitted by L-BFGS
on the binary cross-entropy with an L2 penalty, each of the three classes weighing the same.
On one type's output the other type's examples count less than photos as a "no" (Rekognition's
types are not exclusive; a firm "no" there teaches the head to doubt drawings between the two
styles, which then get neither). The L2 strength and that weight are picked by
cross-validation on the training split, folds never splitting a source (there are few photo
sources, and a head that has seen crops of a photo would look better than it is). The
embeddings are standardised on the training split first so that one L2 strength suits every
feature; the standardisation is then folded into the weights, so the saved head is a plain
``sigmoid(x @ weights + bias)`` on the raw embedding. The held-out split and the unseen set
(art of packages the recipe never reads, and photos) are used only to measure the final head.

Writes the head (``.npz``: weights, bias, class names, version) and its metadata beside it
(``.json``: backbone version, seed, the recipe's counts, the held-out and unseen metrics, and the
floors that the tests hold the head to).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
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
    "Choice",
    "Embedded",
    "embed_examples",
    "embed_split",
    "evaluate",
    "evaluate_unseen",
    "main",
    "predicted_class",
    "select_settings",
    "train_head",
]

_LOGGER = logging.getLogger(__name__)

# The floor the tests assert is the measured held-out accuracy less this margin: room for
# numerical differences between machines, not for a worse head.
FLOOR_MARGIN = 0.05
# What the head must reach on the unseen set: this share of its art typed. Its photos typed are
# recorded as measured, and the tests allow no more.
UNSEEN_ART_TYPED_FLOOR = 0.85
# L2 strengths tried, by grouped cross-validation on the training split (per mean example loss).
L2_GRID = (0.1, 0.3, 1.0, 3.0)
CV_FOLDS = 4
# How much an example of the other type counts as a "no" on a type's output (photos count 1),
# tried by the same cross-validation; the default is for callers that do not choose.
OTHER_TYPE_GRID = (1.0, 0.5, 0.25)
OTHER_TYPE_WEIGHT = 0.5
MAX_ITERATIONS = 500
EMBED_BATCH = 32


def embed_examples(backbone, examples: Iterable[data.Example]) -> tuple[np.ndarray, list]:
    """The embeddings of ``examples``, and the examples without their pixels."""
    embeddings, kept, batch = [], [], []

    def flush() -> None:
        embeddings.append(backbone.run([example.image for example in batch]).embeddings)
        kept.extend(
            data.Example(image=np.empty(0, np.uint8), label=e.label, source=e.source, name=e.name)
            for e in batch
        )
        batch.clear()

    for example in examples:
        batch.append(example)
        if len(batch) == EMBED_BATCH:
            flush()
    if batch:
        flush()
    return np.concatenate(embeddings).astype(np.float32), kept


def embed_split(backbone, split: str, seed: int) -> tuple[np.ndarray, list[data.Example]]:
    """The embeddings of every example of ``split`` (a recipe split, or ``data.UNSEEN``)."""
    if split == data.UNSEEN:
        return embed_examples(backbone, data.unseen_examples(seed))
    return embed_examples(backbone, data.iter_examples(split, seed))


# What the embeddings cache keeps per split besides the embeddings themselves.
_PARTS = ("labels", "sources", "names")
_CACHED = (*data.SPLITS, data.UNSEEN)


class Embedded(NamedTuple):
    """One split, embedded: a row of ``x`` per example, with its label, source and name."""

    x: np.ndarray
    labels: list[str]
    sources: list[str]
    names: list[str]


def _planned_names(seed: int) -> dict[str, list[str]]:
    planned = data.plan(seed)
    names = {split: [e.name for e in planned if e.split == split] for split in data.SPLITS}
    names[data.UNSEEN] = [e.name for e in data.unseen_plan(seed)]
    return names


def _from_cache(cache: Path, key: str, names: dict[str, list[str]]) -> dict[str, Embedded] | None:
    with np.load(cache, allow_pickle=False) as saved:
        wanted = {f"{split}_{part}" for split in _CACHED for part in (*_PARTS, "x")}
        if not wanted <= set(saved) or str(saved["key"]) != key:
            return None
        if any([str(x) for x in saved[f"{split}_names"]] != names[split] for split in _CACHED):
            return None
        return {
            split: Embedded(
                saved[f"{split}_x"],
                *([str(x) for x in saved[f"{split}_{part}"]] for part in _PARTS),
            )
            for split in _CACHED
        }


def _embeddings(backbone, seed: int, cache: Path | None) -> dict[str, Embedded]:
    """Every split and the unseen set embedded, from ``cache`` when it holds the same examples
    and backbone (it knows examples by name: delete it when the recipe's drawing changes)."""
    names = _planned_names(seed)
    key = f"{backbone.version}/{seed}"
    if cache is not None and cache.exists():
        cached = _from_cache(cache, key, names)
        if cached is not None:
            return cached
        _LOGGER.info("%s is for another recipe or backbone: embedding again", cache)
    result, arrays = {}, {"key": np.array(key)}
    for split in _CACHED:
        started = time.monotonic()
        x, examples = embed_split(backbone, split, seed)
        _LOGGER.info("Embedded %d %s examples in %.0f s", len(x), split, time.monotonic() - started)
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


def _class_weights(labels: Sequence[str], other_type: float = OTHER_TYPE_WEIGHT) -> np.ndarray:
    """``(N, outputs)`` weights: each class weighs the same in total (mean 1), and on one
    type's output the examples of the other type count ``other_type`` as much as photos do.

    Rekognition's types are not exclusive (an image may be both), and a head taught that an
    illustration is a firm "no" to Animated learns to doubt drawings between the two styles,
    which then get neither; the photos stay firm "no"s to both."""
    frequency = Counter(labels)
    per_example = np.array([len(labels) / (len(frequency) * frequency[x]) for x in labels])
    weights = np.repeat(per_example[:, None], len(CONTENT_TYPE_NAMES), axis=1)
    for column, name in enumerate(CONTENT_TYPE_NAMES):
        other = np.array([x in CONTENT_TYPE_NAMES and x != name for x in labels])
        weights[other, column] *= other_type
    return weights


def _fit(features: np.ndarray, targets: np.ndarray, weights: np.ndarray, l2: float):
    """Minimises the weighted mean binary cross-entropy plus ``l2 * |kernel|^2`` by L-BFGS,
    from zeros: deterministic, and converged rather than stopped after a number of epochs."""
    from scipy.optimize import minimize

    count, width = features.shape
    outputs = targets.shape[1]

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = flat[:-outputs].reshape(width, outputs), flat[-outputs:]
        logits = features @ kernel + bias
        # log(1 + exp(z)) - t * z, computed without overflow
        losses = np.logaddexp(0.0, logits) - targets * logits
        value = float((weights * losses).sum() / count + l2 * (kernel**2).sum())
        residual = weights * (_probabilities(logits) - targets) / count
        gradient = np.concatenate(
            [(features.T @ residual + 2 * l2 * kernel).ravel(), residual.sum(axis=0)]
        )
        return value, gradient

    start = np.zeros(width * outputs + outputs)
    result = minimize(
        loss_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITERATIONS},
    )
    return result.x[:-outputs].reshape(width, outputs), result.x[-outputs:]


def _probabilities(logits: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -logits))


def train_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    l2: float,
    seed: int,
    other_type: float = OTHER_TYPE_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Fits the head; returns ``(weights (D, 2), bias (2,))`` for the raw embedding. The fit
    has no randomness; ``seed`` is kept for callers that vary it."""
    del seed
    embeddings = np.asarray(embeddings, np.float64)
    mean = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0) + 1e-6
    features = (embeddings - mean) / scale
    weights = _class_weights(labels, other_type)
    kernel, bias = _fit(features, _targets(labels).astype(np.float64), weights, l2)
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


class Choice(NamedTuple):
    """The fitting settings picked by cross-validation, and every setting's score."""

    l2: float
    other_type: float
    scores: dict[str, float]


def _cross_validated(train: Embedded, folds: np.ndarray, l2: float, other_type: float) -> float:
    """Balanced accuracy (mean per-class recall) of the decisions on each fold's held part."""
    labels = np.array(train.labels)
    predicted = np.empty(len(labels), dtype=object)
    for fold in range(CV_FOLDS):
        held = folds == fold
        weights, bias = train_head(
            train.x[~held], list(labels[~held]), l2=l2, seed=0, other_type=other_type
        )
        head = ContentTypesHead(weights, bias)
        predicted[held] = [predicted_class(row) for row in head.probabilities(train.x[held])]
    recalls = [np.mean(predicted[labels == label] == label) for label in data.LABELS]
    return round(float(np.mean(recalls)), 4)


def select_settings(train: Embedded, seed: int) -> Choice:
    """The L2 strength of ``L2_GRID`` and the other type's weight of ``OTHER_TYPE_GRID`` with
    the best cross-validated balanced accuracy, folds never splitting a source; a tie goes to
    the stronger L2, then to the larger weight."""
    folds = _folds(train.labels, train.sources, seed)
    scores = {}
    for other_type in OTHER_TYPE_GRID:
        for l2 in L2_GRID:
            score = _cross_validated(train, folds, l2, other_type)
            scores[f"l2={l2},other_type={other_type}"] = score
            _LOGGER.info("L2 %g, other type %g: balanced accuracy %.4f", l2, other_type, score)
    grid = [(l2, other_type) for other_type in OTHER_TYPE_GRID for l2 in L2_GRID]
    best = max(grid, key=lambda g: (scores[f"l2={g[0]},other_type={g[1]}"], g[0], g[1]))
    return Choice(best[0], best[1], scores)


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


def evaluate_unseen(probabilities: np.ndarray, labels: Sequence[str], kinds: Sequence[str]) -> dict:
    """The unseen set's figures: per kind of art, how many images are typed (either type at the
    threshold) and how many get their own type; per kind of photo, how many are typed (the
    target is none); and the decisions' per-class figures, as :func:`evaluate` gives them."""
    typed = probabilities.max(axis=1) >= THRESHOLD
    decided = np.array([predicted_class(row) for row in probabilities])
    labels, kinds = np.array(labels), np.array(kinds)
    art = labels != data.PHOTO
    per_kind = {}
    for kind in dict.fromkeys(kinds):
        rows = kinds == kind
        entry = {"examples": int(rows.sum()), "typed": int(typed[rows].sum())}
        if art[rows].all():
            entry["own_type"] = int((decided[rows] == labels[rows]).sum())
        entry["typed_rate"] = round(entry["typed"] / entry["examples"], 4)
        per_kind[str(kind)] = entry
    art_typed = int(typed[art].sum())
    return {
        "threshold": THRESHOLD,
        "art": {
            "examples": int(art.sum()),
            "typed": art_typed,
            "typed_rate": round(art_typed / max(1, int(art.sum())), 4),
        },
        "photos": {"examples": int((~art).sum()), "typed": int(typed[~art].sum())},
        "per_kind": per_kind,
        "decisions": evaluate(probabilities, list(labels)),
    }


def _print_unseen(metrics: dict) -> None:
    art, photos = metrics["art"], metrics["photos"]
    print(
        f"unseen: art typed {art['typed']} of {art['examples']} ({art['typed_rate']:.4f}), "
        f"photos typed {photos['typed']} of {photos['examples']}"
    )
    for kind, row in metrics["per_kind"].items():
        own = f", own type {row['own_type']}" if "own_type" in row else ""
        print(f"  {kind:<28} typed {row['typed']:>4} of {row['examples']:>4}{own}")


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
    train, held, unseen = (embedded[split] for split in _CACHED)

    started = time.monotonic()
    choice = select_settings(train, args.seed)
    weights, bias = train_head(
        train.x, train.labels, l2=choice.l2, seed=args.seed, other_type=choice.other_type
    )
    fit_seconds = time.monotonic() - started
    head = ContentTypesHead(weights, bias, CONTENT_TYPE_NAMES, HEAD_VERSION)
    train_metrics = evaluate(head.probabilities(train.x), train.labels)
    held_metrics = evaluate(head.probabilities(held.x), held.labels)
    unseen_metrics = evaluate_unseen(head.probabilities(unseen.x), unseen.labels, unseen.sources)
    _print_report(data.TRAIN, train_metrics)
    _print_report(data.HELD_OUT, held_metrics)
    _print_unseen(unseen_metrics)

    floor = float(np.floor((held_metrics["accuracy"] - FLOOR_MARGIN) * 100) / 100)
    recipe = data.describe(args.seed)
    metadata = {
        "version": HEAD_VERSION,
        "backbone_version": backbone.version,
        "seed": args.seed,
        "outputs": list(CONTENT_TYPE_NAMES),
        "head": {
            "layer": "Dense(2, sigmoid) on the embedding",
            "l2": choice.l2,
            "other_type_weight": choice.other_type,
            "cross_validation": {
                "folds": CV_FOLDS,
                "grouped_by": "source",
                "balanced_accuracy": choice.scores,
            },
            "optimiser": f"L-BFGS-B, at most {MAX_ITERATIONS} iterations, from zeros",
            "class_weighting": (
                "each of Animated, Illustrated, Photo weighs the same; on a type's output the "
                "other type's examples count other_type_weight"
            ),
        },
        "recipe": recipe,
        "metrics": {
            data.TRAIN: train_metrics,
            data.HELD_OUT: held_metrics,
            data.UNSEEN: unseen_metrics,
        },
        "held_out_accuracy_floor": floor,
        "floor_margin": FLOOR_MARGIN,
        "unseen_art_typed_floor": UNSEEN_ART_TYPED_FLOOR,
        "unseen_photos_typed_max": unseen_metrics["photos"]["typed"],
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

"""Which labels an adapter learns: AWS's minimums and the base model's verified errors per label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model.taxonomy import TAXONOMY, label
from training.examples import Example, predicted_labels

__all__ = [
    "MIN_FALSE_NEGATIVES",
    "MIN_FALSE_POSITIVES",
    "MIN_TEST_IMAGES",
    "choose_labels",
    "label_counts",
    "meets_training_minimum",
]

# AWS's minimum of verified examples per label to improve, and of test images.
MIN_FALSE_POSITIVES = 20
MIN_FALSE_NEGATIVES = 50
MIN_TEST_IMAGES = 20


def meets_training_minimum(false_positives: int, false_negatives: int) -> bool:
    """AWS's rule: a label can be trained with enough verified FPs or enough verified FNs."""
    return false_positives >= MIN_FALSE_POSITIVES or false_negatives >= MIN_FALSE_NEGATIVES


def label_counts(
    examples: Sequence[Example], threshold: float, custom
) -> dict[str, dict[str, int]]:
    """Per label seen in the ground truth or the base predictions: the base model's verified
    true positives, false positives and false negatives, and images with the label."""
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        predicted = predicted_labels(example, threshold, custom)
        for name in example.truth | predicted:
            row = counts.setdefault(
                name,
                {"Positives": 0, "TruePositives": 0, "FalsePositives": 0, "FalseNegatives": 0},
            )
            present, said = name in example.truth, name in predicted
            row["Positives"] += present
            row["TruePositives"] += present and said
            row["FalsePositives"] += said and not present
            row["FalseNegatives"] += present and not said
    return counts


def choose_labels(
    counts: Mapping[str, Mapping[str, int]], images: int, custom=None
) -> tuple[list[str], list[dict[str, Any]]]:
    """(labels to adapt, the others with why not), in taxonomy order then by name."""
    order = {name: i for i, name in enumerate(TAXONOMY)}
    adapted, skipped = [], []
    for name in sorted(counts, key=lambda n: (order.get(n, len(order)), n)):
        row = counts[name]
        if not meets_training_minimum(row["FalsePositives"], row["FalseNegatives"]):
            why = (
                f"{row['FalsePositives']} false positives and {row['FalseNegatives']} false "
                f"negatives; at least {MIN_FALSE_POSITIVES} false positives or "
                f"{MIN_FALSE_NEGATIVES} false negatives are needed"
            )
        elif row["Positives"] in (0, images):
            why = "every training image has the same answer for it; add images of both kinds"
        else:
            adapted.append(name)
            continue
        skipped.append({"Name": name, **row, "Reason": why})
    # A parent whose counts are those of an adapted child follows that child: adapting both
    # would learn the same thing twice.
    for name in list(adapted):
        child = next(
            (
                c
                for c in adapted
                if c != name and label(c, custom).parent == name and counts[c] == counts[name]
            ),
            None,
        )
        if child is not None:
            adapted.remove(name)
            skipped.append({"Name": name, **counts[name], "Reason": f"follows {child}"})
    return adapted, skipped

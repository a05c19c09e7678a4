"""Fits an adapter on training examples and compares it with the base model on test examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model.adapter import Adapter, AdapterSpec, build_adapter_model, features
from model.taxonomy import TAXONOMY, label
from training.examples import Example, predicted_labels
from training.metrics import LabelCounts

__all__ = ["compare", "fit"]

_EPOCHS = 150
_SEED = 0


def fit(examples: Sequence[Example], labels: Sequence[str], custom, spec: AdapterSpec) -> Adapter:
    """A Keras adapter for ``labels``, fitted on ``examples`` (deterministic for equal input)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(_SEED)
    x = features([e.analysis for e in examples], labels, [e.evidence for e in examples], custom)
    y = np.array([[name in e.truth for name in labels] for e in examples], dtype=np.float32)
    model = build_adapter_model(x.shape[1], len(labels))
    model.get_layer("standardise").adapt(x)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=1e-2),
        loss=tf.keras.losses.BinaryCrossentropy(),
    )
    model.fit(x, y, epochs=_EPOCHS, batch_size=32, shuffle=True, verbose=0)
    return Adapter(spec, model)


def _api_names(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Precision": row["precision"],
        "Recall": row["recall"],
        "F1Score": row["f1"],
        "TruePositives": row["true_positives"],
        "FalsePositives": row["false_positives"],
        "FalseNegatives": row["false_negatives"],
        "Support": row["support"],
    }


def compare(examples: Sequence[Example], adapter: Adapter, threshold: float) -> dict[str, Any]:
    """Base model against base model + adapter on ``examples``, per adapted label."""
    custom = adapter.custom_labels
    covered = set(adapter.labels)
    base, adapted = LabelCounts(adapter.labels), LabelCounts(adapter.labels)
    new_evidence = adapter.adapt([e.analysis for e in examples], [e.evidence for e in examples])
    for example, evidence in zip(examples, new_evidence, strict=True):
        truth = example.truth & covered
        base.add(truth, predicted_labels(example, threshold, custom) & covered)
        adapted.add(truth, predicted_labels(example, threshold, custom, evidence) & covered)
    labels = []
    for name in adapter.labels:
        entry = label(name, custom)
        labels.append(
            {
                "Name": name,
                "ParentName": entry.parent,
                "TaxonomyLevel": entry.level,
                "Custom": name not in TAXONOMY,
                "BaseModel": _api_names(base.row(name)),
                "Adapter": _api_names(adapted.row(name)),
            }
        )
    return {
        "Labels": labels,
        "Overall": {
            "BaseModel": _api_names(base.micro_average()),
            "Adapter": _api_names(adapted.micro_average()),
        },
    }

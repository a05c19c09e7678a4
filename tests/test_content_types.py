"""The content-types head: its runtime, its data recipe, and its held-out accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.content_types import (
    CONTENT_TYPE_NAMES,
    DEFAULT_HEAD_PATH,
    ContentTypesHead,
    content_types,
)
from training import content_types_data as data

METADATA_PATH = DEFAULT_HEAD_PATH.with_suffix(".json")


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads(METADATA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def recipe_plan(metadata) -> list[data.PlannedExample]:
    return data.plan(metadata["seed"])


# ---------------------------------------------------------------------------------------------
# The head at run time


def test_packaged_head_loads_and_matches_its_metadata(metadata):
    head = ContentTypesHead.load()
    assert head.names == CONTENT_TYPE_NAMES == tuple(metadata["outputs"])
    assert head.version == metadata["version"]
    assert head.weights.shape == (1280, 2) and head.bias.shape == (2,)
    assert np.isfinite(head.weights).all() and np.isfinite(head.bias).all()
    # Commit-ready: a few tens of KB, not a model dump.
    assert DEFAULT_HEAD_PATH.stat().st_size < 64 * 1024
    assert 0 < metadata["held_out_accuracy_floor"] <= metadata["metrics"]["heldout"]["accuracy"]


def test_predict_gives_two_probabilities_per_row():
    head = ContentTypesHead.load()
    rng = np.random.default_rng(0)
    embeddings = rng.uniform(0, 6, (7, head.embedding_size)).astype(np.float32)
    predictions = head.predict(embeddings)
    assert len(predictions) == 7
    for row in predictions:
        assert list(row) == list(CONTENT_TYPE_NAMES)
        assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in row.values())
    assert head.predict(np.zeros((0, head.embedding_size), np.float32)) == []


def test_extreme_embeddings_saturate_without_overflow():
    head = ContentTypesHead(np.array([[1.0, -1.0]]), np.zeros(2))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (row,) = head.predict(np.array([[1e6]]))
    assert row == {"Animated": 1.0, "Illustrated": 0.0}


def test_wrong_embedding_width_is_refused():
    head = ContentTypesHead.load()
    with pytest.raises(ValueError, match="embeddings have shape"):
        head.predict(np.zeros((2, 1000), np.float32))


def test_mismatched_head_shapes_are_refused():
    with pytest.raises(ValueError, match="do not agree"):
        ContentTypesHead(np.zeros((4, 2)), np.zeros(3))


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    head = ContentTypesHead(rng.normal(size=(8, 2)), rng.normal(size=2), version="test-1")
    path = tmp_path / "head.npz"
    head.save(path)
    loaded = ContentTypesHead.load(path)
    assert loaded.version == "test-1" and loaded.names == CONTENT_TYPE_NAMES
    embeddings = rng.normal(size=(3, 8))
    np.testing.assert_allclose(loaded.probabilities(embeddings), head.probabilities(embeddings))


def test_unreadable_head_raises_value_error(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="Unable to load the content-types head"):
        ContentTypesHead.load(path)


def test_content_types_are_filtered_and_sorted():
    probabilities = {"Animated": 0.727, "Illustrated": 0.9}
    assert content_types(probabilities, 50) == [
        {"Confidence": 90.0, "Name": "Illustrated"},
        {"Confidence": 72.7, "Name": "Animated"},
    ]
    assert content_types(probabilities, 80) == [{"Confidence": 90.0, "Name": "Illustrated"}]
    assert content_types(probabilities, 95) == []
    assert content_types({}, 0) == []


def test_content_types_confidence_is_a_rounded_percentage_kept_at_the_boundary():
    (item,) = content_types({"Animated": 0.123456789, "Illustrated": 0.01}, 12.3457)
    assert item == {"Confidence": 12.3457, "Name": "Animated"}
    assert list(item) == ["Confidence", "Name"]
    assert content_types({"Animated": 0.5}, 50.0) == [{"Confidence": 50.0, "Name": "Animated"}]


# ---------------------------------------------------------------------------------------------
# The data recipe


def _split_table(planned: list[data.PlannedExample]) -> list[tuple[str, str, str, str]]:
    return [(e.name, e.label, e.source, e.split) for e in planned]


def test_recipe_is_deterministic_for_a_seed(recipe_plan, metadata):
    again = data.plan(metadata["seed"])
    assert _split_table(again) == _split_table(recipe_plan)
    # Another seed draws another split (and another emoji sample).
    other = data.plan(metadata["seed"] + 1)
    assert _split_table(other) != _split_table(recipe_plan)


def test_recipe_splits_by_source(recipe_plan):
    splits_of_source: dict[str, set[str]] = {}
    for example in recipe_plan:
        splits_of_source.setdefault(example.source, set()).add(example.split)
    assert all(len(splits) == 1 for splits in splits_of_source.values())
    assert len({e.name for e in recipe_plan}) == len(recipe_plan)
    table = data.counts(recipe_plan)
    for label in data.LABELS:
        held = table["heldout"]["sources"][label]
        total = held + table["train"]["sources"][label]
        assert 0.15 <= held / total <= 0.35, (label, held, total)
        assert table["heldout"]["examples"][label] >= 100


def test_recipe_pixels_are_deterministic(recipe_plan, metadata):
    seed = metadata["seed"]
    firsts = [next(e for e in recipe_plan if e.label == label) for label in data.LABELS]
    for planned in firsts:
        first, second = planned.build(seed), planned.build(seed)
        assert first.image.dtype == np.uint8 and first.image.ndim == 3
        assert first.image.shape[2] == 3 and min(first.image.shape[:2]) >= 128
        np.testing.assert_array_equal(first.image, second.image)
        assert (first.label, first.source) == (planned.label, planned.source)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        next(data.iter_examples("validation"))


# ---------------------------------------------------------------------------------------------
# The trained head on the held-out split, with the real backbone


@pytest.mark.slow
def test_held_out_accuracy_meets_the_recorded_floor(metadata, recipe_plan):
    from model.backbone import Backbone
    from training.train_content_types import embed_split, evaluate

    recorded = metadata["recipe"]["counts"]
    assert recorded == data.counts(recipe_plan)
    assert metadata["metrics"]["heldout"]["examples"] == sum(
        recorded["heldout"]["examples"].values()
    )

    backbone = Backbone()
    assert backbone.version == metadata["backbone_version"]
    embeddings, examples = embed_split(backbone, "heldout", metadata["seed"])
    labels = [example.label for example in examples]
    assert {label: labels.count(label) for label in data.LABELS} == recorded["heldout"]["examples"]

    metrics = evaluate(ContentTypesHead.load().probabilities(embeddings), labels)
    assert metrics["accuracy"] >= metadata["held_out_accuracy_floor"], metrics

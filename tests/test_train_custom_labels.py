"""``python -m training.train_custom_labels`` end to end: trained on sample sets (slow), and each
TRAINING_FAILED outcome with its message (fast: they fail before any model is fitted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import s3_args
from training import evaluate_custom_labels, train_custom_labels
from training.custom_labels_training import MIN_TEST_IMAGES, summary_file_name

ARN = "arn:aws:rekognition:us-east-1:123456789012:project/Pets/version/v1/1700000000000"


def _run(tmp_path: Path, *flags: str) -> tuple[int, dict]:
    result_file = tmp_path / "result.json"
    status = train_custom_labels.main([*flags, f"--result_file={result_file}"])
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return status, result


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _colour_images(folder: Path, label: str, count: int, colour) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{label}-{i}.png"
        Image.new("RGB", (96 + i, 80), colour).save(path)
        paths.append(str(path))
    return paths


def _line(ref: str, label: str) -> str:
    return json.dumps(
        {
            "source-ref": ref,
            "colour": 0,
            "colour-metadata": {
                "confidence": 1,
                "class-name": label,
                "human-annotated": "yes",
                "creation-date": "2024-01-01T00:00:00",
                "type": "groundtruth/image-classification",
            },
        }
    )


def _manifest(path: Path, lines) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


@pytest.fixture
def colours(tmp_path) -> dict[str, list[str]]:
    """30 small plain images of each of red, green and blue."""
    rgb = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}
    return {
        label: _colour_images(tmp_path / "images", label, 30, colour)
        for label, colour in rgb.items()
    }


# Flags ------------------------------------------------------------------------------------


def test_help_explains_the_command(capsys):
    assert train_custom_labels.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--training_manifest", "--testing_manifest", "--auto_split", "--output"):
        assert flag in text
    assert "--project_version_arn" in text and "--kms_key_id" in text
    assert "--s3_endpoint_url" in text and "--result_file" in text


@pytest.mark.parametrize(
    "flags",
    [
        ["--training_manifest=a", "--output=o"],  # neither testing manifest nor auto split
        ["--training_manifest=a", "--testing_manifest=b", "--auto_split", "--output=o"],
        ["--training_manifest=a", "--auto_split"],  # no output
        ["--auto_split", "--output=o"],  # no training manifest
    ],
)
def test_bad_flags_exit_2_without_a_result(tmp_path, flags):
    status, result = _run(tmp_path, *flags)
    assert status == 2 and result == {}


# TRAINING_FAILED, before training ----------------------------------------------------------


def test_a_missing_manifest_fails_naming_it(tmp_path):
    missing = str(tmp_path / "train.manifest")
    status, result = _run(
        tmp_path, f"--training_manifest={missing}", "--auto_split", f"--output={tmp_path / 'o'}"
    )
    assert status == 0
    assert result == {
        "Status": "TRAINING_FAILED",
        "StatusMessage": f"The training manifest {missing} does not exist. Check the bucket, key.",
    }


def test_mixed_kinds_fail_naming_a_line_of_each(tmp_path, colours):
    box = {
        "source-ref": colours["red"][1],
        "b": {"image_size": [{"width": 97, "height": 80}], "annotations": []},
        "b-metadata": {"type": "groundtruth/object-detection", "class-map": {}, "objects": []},
    }
    train = _manifest(tmp_path / "train.manifest", [_line(colours["red"][0], "red")])
    test = _manifest(tmp_path / "test.manifest", [json.dumps(box)])
    status, result = _run(
        tmp_path,
        f"--training_manifest={train}",
        f"--testing_manifest={test}",
        f"--output={tmp_path / 'o'}",
    )
    assert status == 0 and result["Status"] == "TRAINING_FAILED"
    assert f"line 1 of {test} has bounding boxes" in result["StatusMessage"]
    assert f"line 1 of {train} has only image-level labels" in result["StatusMessage"]


def test_too_many_invalid_lines_fail_listing_them_with_validation_manifests(tmp_path, colours):
    lines = [_line(ref, label) for label in ("red", "green") for ref in colours[label][:20]]
    lines[3] = "not json"
    lines += [_line(str(tmp_path / f"gone-{i}.png"), "red") for i in range(10)]
    train = _manifest(tmp_path / "train.manifest", lines)
    output = tmp_path / "out"
    status, result = _run(
        tmp_path, f"--training_manifest={train}", "--auto_split", f"--output={output}"
    )
    assert status == 0 and result["Status"] == "TRAINING_FAILED"
    message = result["StatusMessage"]
    assert message.startswith(
        "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: 11 of the 50 lines of the training manifests "
        "cannot be used (at most 20% may be invalid)"
    )
    assert f"line 4 of {train}: ERROR_INVALID_JSON_LINE" in message
    assert f"line 41 of {train}: ERROR_INVALID_IMAGE" in message and "and 6 more" in message
    validation = result["TrainingDataResult"]["Validation"]["Assets"][0]["GroundTruthManifest"]
    rows = _lines(Path(validation["Path"]))
    assert len(rows) + len(_lines(output / "testing-validation.manifest")) == 50
    assert "Output" not in result["TrainingDataResult"]
    summary = json.loads((output / "manifest-summary.json").read_text())
    assert summary["statistics"]["training"]["invalid_json_lines"] == 11
    assert summary["statistics"]["training"]["errors"][0]["code"] == (
        "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST"
    )
    assert not (output / "model").exists()


def test_one_label_is_too_few_for_classification(tmp_path, colours):
    train = _manifest(tmp_path / "t", [_line(ref, "red") for ref in colours["red"]])
    status, result = _run(
        tmp_path, f"--training_manifest={train}", "--auto_split", f"--output={tmp_path / 'o'}"
    )
    assert result["Status"] == "TRAINING_FAILED"
    assert result["StatusMessage"].startswith(
        "ERROR_MANIFEST_TOO_FEW_LABELS: the training dataset has 1 label(s) (red); a "
        "CLASSIFICATION model needs at least 2."
    )
    assert result["TestingDataResult"]["Input"] == {"Assets": [], "AutoCreate": True}


def test_no_usable_line_fails_with_the_first_reasons(tmp_path):
    train = _manifest(tmp_path / "t", ['{"source-ref": "s3://b/a.jpg"}', '{"no": "ref"}'])
    status, result = _run(
        tmp_path, f"--training_manifest={train}", "--auto_split", f"--output={tmp_path / 'o'}"
    )
    message = result["StatusMessage"]
    assert "ERROR_MANIFEST_TOO_FEW_LABELS: none of the 2 lines of the training manifests" in message
    assert f"line 1 of {train}: WARNING_UNANNOTATED_RECORD" in message
    assert f"line 2 of {train}: ERROR_MISSING_SOURCE_REF" in message


def test_too_few_test_images_fail(tmp_path, colours):
    train = _manifest(
        tmp_path / "train", [_line(r, label) for label in ("red", "green") for r in colours[label]]
    )
    test = _manifest(tmp_path / "test", [_line(colours["blue"][0], "red")])
    status, result = _run(
        tmp_path,
        f"--training_manifest={train}",
        f"--testing_manifest={test}",
        f"--output={tmp_path / 'o'}",
    )
    assert result["StatusMessage"] == (
        "ERROR_TOO_FEW_TESTING_IMAGES: the testing dataset has 1 usable images; at least "
        f"{MIN_TEST_IMAGES} are needed to choose each label's threshold and measure the model. "
        "Add lines to the testing manifest."
    )


def test_test_images_that_are_training_images_are_left_out(tmp_path, colours):
    lines = [_line(r, label) for label in ("red", "green") for r in colours[label]]
    train = _manifest(tmp_path / "train", lines)
    status, result = _run(
        tmp_path,
        f"--training_manifest={train}",
        f"--testing_manifest={train}",
        f"--output={tmp_path / 'o'}",
    )
    assert "has 0 usable images" in result["StatusMessage"]
    assert "(60 test lines repeat training images)" in result["StatusMessage"]
    rows = _lines(tmp_path / "o" / "testing-validation.manifest")
    assert rows[0]["errors"][0]["code"] == "ERROR_IMAGE_IN_TRAINING_DATASET"


def test_a_test_set_without_most_training_labels_fails(tmp_path, colours):
    train = _manifest(
        tmp_path / "train",
        [_line(r, label) for label in colours for r in colours[label][:10]]
        + [_line(colours["red"][10], "black")],
    )
    test_refs = colours["red"][11:] + colours["blue"][10:12]
    test = _manifest(tmp_path / "test", [_line(r, "red") for r in test_refs])
    status, result = _run(
        tmp_path,
        f"--training_manifest={train}",
        f"--testing_manifest={test}",
        f"--output={tmp_path / 'o'}",
    )
    assert result["StatusMessage"].startswith(
        "ERROR_INSUFFICIENT_LABEL_OVERLAP: the testing dataset has 1 of the 4 training labels "
        "(at least 50% are needed); missing: black, blue, green."
    )
    summary = json.loads((tmp_path / "o" / "manifest-summary.json").read_text())
    assert summary["errors"][0]["code"] == "ERROR_INSUFFICIENT_LABEL_OVERLAP"


def test_the_summary_is_named_from_the_version_arn():
    assert summary_file_name(ARN) == "EvaluationSummary-Pets-v1.json"
    assert summary_file_name(None) == "evaluation-summary.json"
    assert summary_file_name("not an arn") == "evaluation-summary.json"


# Trained end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_classifier_is_trained_and_can_be_evaluated(tmp_path, capsys):
    from model.custom_labels_model import CLASSIFICATION, CustomLabelsModel
    from training.custom_labels_samples import write_classification_set

    sample = write_classification_set(tmp_path / "set", per_label=40)
    output = tmp_path / "out"
    status, result = _run(
        tmp_path,
        f"--training_manifest={sample.train_manifest}",
        f"--testing_manifest={sample.test_manifest}",
        f"--output={output}",
        f"--project_version_arn={ARN}",
    )
    assert status == 0, result
    assert result["Status"] == "TRAINING_COMPLETED", result["StatusMessage"]
    assert result["Kind"] == CLASSIFICATION
    assert result["Labels"] == ["car", "cat", "photo", "star"]
    assert result["F1Score"] > 0.5
    assert result["Summary"] == {"Path": str(output / "EvaluationSummary-Pets-v1.json")}
    assert result["Model"] == str(output / "model") + "/"
    summary = json.loads((output / "EvaluationSummary-Pets-v1.json").read_text())
    assert summary["EvaluationDetails"]["ProjectVersionArn"] == ARN
    assert summary["EvaluationDetails"]["NumberOfTestingImages"] == sample.test_images
    model = CustomLabelsModel.load(result["Model"])
    assert model.spec.labels == tuple(result["Labels"])
    for dataset, count in (("training", sample.train_images), ("testing", sample.test_images)):
        data = result[f"{dataset.capitalize()}DataResult"]
        used = data["Output"]["Assets"][0]["GroundTruthManifest"]["Path"]
        assert used == str(output / f"{dataset}.manifest") and len(_lines(Path(used))) == count
        rows = _lines(output / f"{dataset}-validation.manifest")
        assert len(rows) == count and all(row["custom-labels-validation"]["used"] for row in rows)

    capsys.readouterr()
    argv = [f"--model={result['Model']}", f"--manifest={sample.test_manifest}", "--format=json"]
    assert evaluate_custom_labels.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["Images"] == sample.test_images
    assert report["F1Score"] == pytest.approx(result["F1Score"], abs=1e-6)
    assert evaluate_custom_labels.main([*argv[:2], "--format=text", "--min_confidence=0"]) == 0
    text = capsys.readouterr().out
    assert "Label" in text and "Precision" in text and "(micro)" in text


@pytest.mark.slow
def test_a_detector_is_trained_from_s3_with_auto_split_and_kms(tmp_path, s3, kms, moto_server):
    from model.custom_labels_model import OBJECT_DETECTION
    from training.custom_labels_samples import upload, write_detection_set

    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    s3.create_bucket(Bucket="data")
    s3.create_bucket(Bucket="out")
    sample = upload(write_detection_set(tmp_path / "set", images=120), s3, "data", "boxes")
    status, result = _run(
        tmp_path,
        f"--training_manifest={sample.all_manifest}",
        "--auto_split",
        "--output=s3://out/Pets/v1/1700000000000",
        f"--project_version_arn={ARN}",
        f"--kms_key_id={key_id}",
        *s3_args(moto_server),
    )
    assert status == 0, result
    assert result["Status"] == "TRAINING_COMPLETED", result["StatusMessage"]
    assert result["Kind"] == OBJECT_DETECTION and result["Labels"] == ["car", "cat", "star"]
    prefix = "Pets/v1/1700000000000"
    assert result["Summary"] == {
        "Bucket": "out",
        "Name": f"{prefix}/EvaluationSummary-Pets-v1.json",
    }
    assert result["Model"] == f"s3://out/{prefix}/model/"
    assert result["TestingDataResult"]["Input"]["AutoCreate"] is True
    assert result["TrainingDataResult"]["Input"]["Assets"] == [
        {"GroundTruthManifest": {"S3Object": {"Bucket": "data", "Name": "boxes/all.manifest"}}}
    ]
    names = [
        "EvaluationSummary-Pets-v1.json",
        "manifest-summary.json",
        "training.manifest",
        "testing.manifest",
        "training-validation.manifest",
        "testing-validation.manifest",
        "model/custom-labels-model.json",
    ]
    for name in names:
        head = s3.head_object(Bucket="out", Key=f"{prefix}/{name}")
        assert head["ServerSideEncryption"] == "aws:kms", name
        assert head["SSEKMSKeyId"].endswith(key_id), name
    testing = result["TestingDataResult"]["Output"]["Assets"][0]["GroundTruthManifest"]
    body = s3.get_object(Bucket="out", Key=testing["S3Object"]["Name"])["Body"].read()
    tested = body.decode().splitlines()
    assert MIN_TEST_IMAGES <= len(tested) < 0.3 * 120
    summary = json.loads(
        s3.get_object(Bucket="out", Key=f"{prefix}/EvaluationSummary-Pets-v1.json")["Body"].read()
    )
    assert summary["EvaluationDetails"]["NumberOfTestingImages"] == len(tested)
    assert "AveragePrecision" in summary["AggregatedEvaluationResults"]["Metrics"]


@pytest.mark.slow
def test_a_multi_label_classifier_is_trained_with_auto_split(tmp_path):
    from model.custom_labels_model import MULTI_LABEL
    from training.custom_labels_samples import write_classification_set

    sample = write_classification_set(tmp_path / "set", per_label=40, multi_label=True)
    output = tmp_path / "out"
    status, result = _run(
        tmp_path, f"--training_manifest={sample.all_manifest}", "--auto_split", f"--output={output}"
    )
    assert result["Status"] == "TRAINING_COMPLETED", result["StatusMessage"]
    assert result["Kind"] == MULTI_LABEL
    assert result["Summary"] == {"Path": str(output / "evaluation-summary.json")}
    tested = _lines(output / "testing.manifest")
    trained = _lines(output / "training.manifest")
    assert len(tested) + len(trained) == sample.train_images + sample.test_images
    assert not {line["source-ref"] for line in tested} & {line["source-ref"] for line in trained}


def test_images_outside_the_allowed_prefixes_are_never_read(tmp_path, colours):
    allowed = str(tmp_path / "images" / "red")  # a prefix no image starts with but these
    lines = [_line(ref, label) for label in ("red", "green") for ref in colours[label][:20]]
    lines += [_line("/etc/passwd", "red"), _line("s3://other-bucket/x.png", "green")]
    train = _manifest(tmp_path / "train.manifest", lines)
    status, result = _run(
        tmp_path,
        f"--training_manifest={train}",
        "--auto_split",
        f"--output={tmp_path / 'out'}",
        f"--allowed_source_prefixes={allowed},s3://in-bucket/",
    )
    assert status == 0 and result["Status"] == "TRAINING_FAILED"
    # Every green image, /etc/passwd and the other bucket are refused: too many invalid lines.
    message = result["StatusMessage"]
    assert message.startswith("ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: 22 of the 42 lines")
    rows = _lines(tmp_path / "out" / "training-validation.manifest")
    rows += _lines(tmp_path / "out" / "testing-validation.manifest")
    refused = [
        row for row in rows if row["source-ref"] in ("/etc/passwd", "s3://other-bucket/x.png")
    ]
    assert len(refused) == 2
    assert all("may not read images there" in json.dumps(row) for row in refused)

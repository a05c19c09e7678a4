"""``pipeline.run --custom_labels_model``: a Custom Labels model over a whole manifest."""

from __future__ import annotations

import json

import pytest

from pipeline.custom_labels import model_folder_of, resolve_custom_labels_model
from pipeline.options import ModerationOptions, min_confidence, validate_options
from pipeline.run import prepare

ARN = "arn:aws:rekognition:us-east-1:000000000000:project/logos/version/v1/1700000000000"


def _options(*flags: str) -> ModerationOptions:
    return ModerationOptions(["--manifest=m.jsonl", "--output=out", *flags]).view_as(
        ModerationOptions
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--custom_labels_model=m/", "--adapter=a/"], "--adapter applies to the moderation"),
        (
            ["--custom_labels_model=m/", f"--project_version={ARN}"],
            "--project_version applies",
        ),
        (["--custom_labels_model=m/", "--zero_shot_model=z/"], "--zero_shot_model applies"),
        (
            [
                "--custom_labels_model=m/",
                "--flow_definition_arn=arn:aws:sagemaker:us-east-1:000000000000:flow-definition/f",
            ],
            "--flow_definition_arn applies",
        ),
        (["--custom_labels_model=m/", "--backbone=none"], "drop --backbone"),
        (["--custom_labels_model=arn:aws:rekognition:x"], "must be a model folder or"),
        (["--rekognition_endpoint_url=http://127.0.0.1:1"], "with a --custom_labels_model ARN"),
        (
            ["--custom_labels_model=m/", "--rekognition_endpoint_url=http://127.0.0.1:1"],
            "with a --custom_labels_model ARN",
        ),
    ],
)
def test_flags_that_do_not_go_with_a_custom_labels_model_are_refused(flags, message):
    with pytest.raises(ValueError, match=message):
        validate_options(_options(*flags))


def test_min_confidence_defaults_to_50_for_moderation_and_thresholds_for_custom_labels():
    assert min_confidence(_options()) == 50
    assert min_confidence(_options("--custom_labels_model=m/")) is None
    assert min_confidence(_options("--custom_labels_model=m/", "--min_confidence=0")) == 0
    validate_options(_options(f"--custom_labels_model={ARN}"))


def _version(**overrides):
    version = {
        "ProjectVersionArn": ARN,
        "Status": "RUNNING",
        "Feature": "CUSTOM_LABELS",
        "EvaluationResult": {
            "F1Score": 0.9,
            "Summary": {
                "S3Object": {
                    "Bucket": "out",
                    "Name": "cl/logos/v1/1700000000000/EvaluationSummary-logos-v1.json",
                }
            },
        },
    }
    version.update(overrides)
    return version


def test_the_model_folder_is_beside_the_evaluation_summary():
    assert model_folder_of(_version()) == "s3://out/cl/logos/v1/1700000000000/model/"
    for status in ("TRAINING_COMPLETED", "STOPPED", "STARTING", "STOPPING", "FAILED"):
        assert model_folder_of(_version(Status=status)).endswith("/model/")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"Feature": "CONTENT_MODERATION"}, "pass its folder as --adapter"),
        ({"Status": "TRAINING_IN_PROGRESS", "StatusMessage": "busy"}, "no trained model"),
        ({"Status": "TRAINING_FAILED", "StatusMessage": "line 3"}, "line 3"),
        ({"EvaluationResult": {}}, "reports no evaluation summary"),
    ],
)
def test_versions_without_a_model_say_why(overrides, message):
    with pytest.raises(ValueError, match=message):
        model_folder_of(_version(**overrides))


class _Rekognition:
    """The two calls the resolution makes, answering as Rekognition would."""

    def __init__(self, projects, versions):
        self.projects, self.versions, self.calls = projects, versions, []

    def describe_projects(self, **kwargs):
        self.calls.append(("describe_projects", kwargs))
        return {"ProjectDescriptions": self.projects}

    def describe_project_versions(self, **kwargs):
        self.calls.append(("describe_project_versions", kwargs))
        return {"ProjectVersionDescriptions": self.versions}


def test_an_arn_is_resolved_by_project_name_then_version_name():
    project = "arn:aws:rekognition:us-east-1:000000000000:project/logos/1690000000000"
    client = _Rekognition([{"ProjectArn": project}], [_version()])
    assert resolve_custom_labels_model(ARN, client=client).endswith("1700000000000/model/")
    assert client.calls == [
        ("describe_projects", {"ProjectNames": ["logos"]}),
        ("describe_project_versions", {"ProjectArn": project, "VersionNames": ["v1"]}),
    ]
    assert resolve_custom_labels_model("s3://b/m/", client=client) == "s3://b/m/"


def test_an_unknown_project_or_version_is_named():
    with pytest.raises(ValueError, match="no project named logos"):
        resolve_custom_labels_model(ARN, client=_Rekognition([], []))
    with pytest.raises(ValueError, match="no such project version"):
        resolve_custom_labels_model(ARN, client=_Rekognition([{"ProjectArn": "p"}], []))


def test_a_folder_without_a_model_is_refused_before_the_job_runs(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"source-ref": str(tmp_path / "a.jpg")}) + "\n")
    with pytest.raises(ValueError, match="holds no Custom Labels model"):
        prepare(
            [
                f"--manifest={manifest}",
                f"--output={tmp_path / 'out'}",
                f"--custom_labels_model={tmp_path / 'empty'}",
            ]
        )


# A trained detector over a whole manifest.


@pytest.fixture(scope="module")
def trained_detector(tmp_path_factory):
    """A small detector trained on the pasted-emoji sample set: ``(set, model folder)``."""
    from training.custom_labels_samples import write_detection_set
    from training.custom_labels_training import TrainingRequest, train

    folder = tmp_path_factory.mktemp("detector")
    samples = write_detection_set(folder / "set", images=100, seed=2)
    result = train(
        TrainingRequest(
            training_manifests=[samples.train_manifest],
            testing_manifests=[samples.test_manifest],
            output=str(folder / "out"),
        )
    )
    assert result["Status"] == "TRAINING_COMPLETED", result
    return samples, result["Model"]


def _source_refs(manifest: str) -> list[str]:
    with open(manifest, encoding="utf-8") as lines:
        return [json.loads(line)["source-ref"] for line in lines if line.strip()]


@pytest.mark.slow
def test_a_job_runs_a_custom_labels_model_over_a_manifest(trained_detector, tmp_path):
    from model.custom_labels_model import CustomLabelsModel
    from pipeline.run import run
    from transforms.images import decode_image
    from transforms.output import RESULTS_FILE, SUMMARY_FILE
    from transforms.records import ErrorCode

    samples, model_folder = trained_detector
    refs = _source_refs(samples.test_manifest)[:12]
    manifest = tmp_path / "job.jsonl"
    lines = [json.dumps({"source-ref": ref}) for ref in refs]
    lines.insert(3, json.dumps({"source-ref": str(tmp_path / "missing.jpg")}))
    lines.insert(6, "not json")
    manifest.write_text("\n".join(lines) + "\n")
    outcome = run(
        [
            f"--manifest={manifest}",
            f"--output={tmp_path / 'out'}",
            f"--custom_labels_model={model_folder}",
            "--runner=DirectRunner",
        ]
    )
    assert outcome["statistics"]["valid-json-lines"] == len(refs)
    assert outcome["error_codes"] == {
        ErrorCode.IMAGE_NOT_FOUND: 1,
        ErrorCode.INVALID_JSON: 1,
    }
    results = [
        json.loads(line) for line in (tmp_path / "out" / RESULTS_FILE).read_text().splitlines()
    ]
    assert [line["source-ref"] for line in results] == refs  # manifest order
    assert (tmp_path / "out" / SUMMARY_FILE).exists()
    # Each line carries the DetectCustomLabels response the model gives the image alone
    # (decoded as jobs and the API decode images), at each label's assumed threshold.
    model = CustomLabelsModel.load(model_folder)
    found = 0
    for line in results:
        assert set(line) == {"source-ref", "detect-custom-labels"}
        with open(line["source-ref"], "rb") as image:
            (expected,) = model.detect_custom_labels([decode_image(image.read())])
        response = line["detect-custom-labels"]
        assert [e["Name"] for e in response["CustomLabels"]] == [
            e["Name"] for e in expected["CustomLabels"]
        ]
        for entry in response["CustomLabels"]:
            assert entry["Confidence"] >= model.spec.thresholds[entry["Name"]]
            box = entry["Geometry"]["BoundingBox"]
            assert 0 <= box["Left"] <= 1 and 0 <= box["Top"] <= 1
        found += len(response["CustomLabels"])
    assert found >= len(refs)  # every test image shows at least one emoji


@pytest.mark.slow
def test_min_confidence_zero_returns_every_prediction(trained_detector, tmp_path):
    from pipeline.run import run

    samples, model_folder = trained_detector
    refs = _source_refs(samples.test_manifest)[:4]
    manifest = tmp_path / "job.jsonl"
    manifest.write_text("".join(json.dumps({"source-ref": ref}) + "\n" for ref in refs))
    counts = {}
    for minimum in ("0", None):
        flags = [
            f"--manifest={manifest}",
            f"--output={tmp_path / str(minimum)}",
            f"--custom_labels_model={model_folder}",
        ]
        if minimum is not None:
            flags.append(f"--min_confidence={minimum}")
        run(flags)
        text = (tmp_path / str(minimum) / "results.jsonl").read_text()
        counts[minimum] = sum(
            len(json.loads(line)["detect-custom-labels"]["CustomLabels"])
            for line in text.splitlines()
        )
    assert counts["0"] > counts[None]

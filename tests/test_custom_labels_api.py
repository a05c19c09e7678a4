"""Custom Labels projects and models through the real boto3 client, over a moto S3 server.

The fast tests register trained versions straight into the server's SQLite file (as a training
run reports) and serve a stand-in model of the test's own (``service.serving``'s loader is
replaced), so that every status and every error of StartProjectVersion, StopProjectVersion and
DetectCustomLabels is seen without training anything. The slow test trains a classifier and a
detector with ``python -m training.train_custom_labels`` on the sample sets and serves them.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError
from PIL import Image

from service.jobs import JobSettings
from service.projects import ProjectRegistry
from service.training import TrainingRunner
from storage.reading import versioned_uri
from storage.settings import S3Settings
from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client, start_api_server

FAKE_MODEL_URI = "s3://out-bucket/results/models/stand-in/"
# The stand-in model's confidences per label, and the threshold it assumes for each.
CONFIDENCES = {"cat": 90.0, "dog": 40.0, "bird": 10.0}
THRESHOLDS = {"cat": 50.0, "dog": 30.0, "bird": 50.0}
FAST_WAIT = {"Delay": 1, "MaxAttempts": 60}


class StandInModel:
    """``analyse``/``respond`` as ``model.custom_labels_model.CustomLabelsModel`` has them: every
    image gets the same three labels; ``hold`` (when set) keeps a batch until ``release``."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.holding = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []

    def analyse(self, images: Sequence[np.ndarray]) -> list[list[tuple[str, float]]]:
        assert all(image.ndim == 3 and image.shape[2] == 3 for image in images)
        self.batches.append(len(images))
        if self.hold:
            self.holding.set()
            assert self.release.wait(30)
        return [list(CONFIDENCES.items()) for _ in images]

    def respond(self, analyses, min_confidence: float | None, adapter=None) -> list[dict]:
        responses = []
        for analysis in analyses:
            kept = [
                {"Name": name, "Confidence": confidence}
                for name, confidence in analysis
                if confidence >= (THRESHOLDS[name] if min_confidence is None else min_confidence)
            ]
            kept.sort(key=lambda label: -label["Confidence"])
            responses.append({"CustomLabels": kept})
        return responses


class StandInLoader:
    """The server's model loader: a stand-in model for ``FAKE_MODEL_URI``, an error otherwise."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.models: list[StandInModel] = []

    def __call__(self, uri: str, s3: S3Settings, threads: int) -> StandInModel:
        assert threads >= 1
        if uri != FAKE_MODEL_URI:
            raise ValueError(f"{uri} does not hold a readable Custom Labels model: no model file")
        model = StandInModel(self.hold)
        self.models.append(model)
        return model


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def _message(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Message"]


def _server_args(tmp_path, moto_server, *extra: str) -> list[str]:
    return [
        f"--registry={tmp_path / 'jobs.sqlite'}",
        "--allowed_locations=in-bucket,out-bucket/results",
        "--components=open_nsfw",
        "--backbone=none",
        f"--s3_endpoint_url={moto_server}",
        "--s3_region_name=us-east-1",
        f"--kms_endpoint_url={moto_server}",
        *extra,
    ]


class Served:
    """A running API server: its URL, its ``ApiServer`` and a boto3 client."""

    def __init__(self, argv: list[str]) -> None:
        self.httpd, self.endpoint = start_api_server(argv)
        self.client = rekognition_client(self.endpoint)

    @property
    def serving(self):
        return self.httpd.api.serving

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loader(monkeypatch) -> StandInLoader:
    """The stand-in model loader, in place of ``CustomLabelsModel.load``."""
    stand_in = StandInLoader()
    monkeypatch.setattr("service.serving.load_custom_labels_model", stand_in)
    return stand_in


@pytest.fixture
def buckets(s3, monkeypatch):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket", "elsewhere"):
        s3.create_bucket(Bucket=bucket)
    return s3


@pytest.fixture
def served(tmp_path, buckets, moto_server, loader):
    """A server batching one image at a time, one request queued per inference unit."""
    server = Served(
        _server_args(tmp_path, moto_server, "--detect_batch_size=1", "--detect_queue_size=1")
    )
    yield server
    server.close()


def _registry(tmp_path) -> ProjectRegistry:
    return ProjectRegistry(str(tmp_path / "jobs.sqlite"))


def _asset(key: str, bucket: str = "in-bucket") -> dict:
    return {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}


def _version_request(project_arn: str, name: str = "v1", **overrides: Any) -> dict:
    request = {
        "ProjectArn": project_arn,
        "VersionName": name,
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results/models"},
        "TrainingData": {"Assets": [_asset("manifests/train.manifest")]},
        "TestingData": {"AutoCreate": True},
    }
    request.update(overrides)
    return request


def _trained(tmp_path, project_arn: str, name: str, model_uri: str = FAKE_MODEL_URI) -> str:
    """A Custom Labels version registered and reported trained (the stand-in model)."""
    registry = _registry(tmp_path)
    version = registry.create_version(project_arn, _version_request(project_arn, name))
    registry.mark_model_trained(
        version.arn,
        status_message="The model is trained.",
        billable_secs=7,
        f1=0.8,
        summary_bucket="out-bucket",
        summary_name=f"results/models/{name}/EvaluationSummary.json",
        model_uri=model_uri,
        model_kind="CLASSIFICATION",
        labels=sorted(CONFIDENCES),
    )
    return version.arn


def _project_and_name(client, arn: str) -> tuple[str, str]:
    """The project ARN and version name of the version ``arn``."""
    head, _, tail = arn.partition("/version/")
    (project,) = client.describe_projects(
        ProjectNames=[head.rsplit("/", 1)[-1]], Features=["CUSTOM_LABELS", "CONTENT_MODERATION"]
    )["ProjectDescriptions"]
    return project["ProjectArn"], tail.split("/")[0]


def _version(client, arn: str) -> dict:
    project_arn, name = _project_and_name(client, arn)
    (version,) = client.describe_project_versions(ProjectArn=project_arn, VersionNames=[name])[
        "ProjectVersionDescriptions"
    ]
    return version


def _wait_for(client, arn: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (version := _version(client, arn))["Status"] not in statuses:
        assert time.monotonic() < deadline, version
        time.sleep(0.1)
    return version


def _wait_running(client, arn: str) -> None:
    project_arn, name = _project_and_name(client, arn)
    client.get_waiter("project_version_running").wait(
        ProjectArn=project_arn, VersionNames=[name], WaiterConfig=FAST_WAIT
    )


def _jpeg(size: tuple[int, int] = (128, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _adapter_version(client, tmp_path) -> str:
    project = client.create_project(
        ProjectName="an-adapter", Feature="CONTENT_MODERATION", AutoUpdate="DISABLED"
    )["ProjectArn"]
    registry = _registry(tmp_path)
    version = registry.create_version(project, _version_request(project, "adapter"))
    registry.mark_trained(
        version.arn,
        status_message="The adapter is trained.",
        billable_secs=1,
        f1=0.5,
        summary_bucket="out-bucket",
        summary_name="results/adapters/summary.json",
        adapter_uri="s3://out-bucket/results/adapters/a/",
        base_model_version="base",
        backbone_version="backbone",
    )
    return version.arn


# Projects and versions.


def test_custom_labels_projects_are_the_default(served):
    client = served.client
    arn = client.create_project(ProjectName="pets")["ProjectArn"]
    explicit = client.create_project(ProjectName="birds", Feature="CUSTOM_LABELS")["ProjectArn"]
    client.create_project(ProjectName="adapter", Feature="CONTENT_MODERATION", AutoUpdate="ENABLED")
    listed = client.describe_projects()["ProjectDescriptions"]
    assert [p["ProjectArn"] for p in listed] == [explicit, arn]
    assert {p["Feature"] for p in listed} == {"CUSTOM_LABELS"}
    assert all("AutoUpdate" not in p for p in listed)
    adapters = client.describe_projects(Features=["CONTENT_MODERATION"])["ProjectDescriptions"]
    assert [p["Feature"] for p in adapters] == ["CONTENT_MODERATION"]
    with pytest.raises(ClientError) as auto_update:
        client.create_project(ProjectName="auto", AutoUpdate="ENABLED")
    assert _code(auto_update) == "InvalidParameterException"
    with pytest.raises(ClientError) as taken:
        client.create_project(ProjectName="pets")
    assert _code(taken) == "ResourceInUseException"


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        (
            {"FeatureConfig": {"ContentModeration": {"ConfidenceThreshold": 50}}},
            "InvalidParameterException",
            "FeatureConfig",
        ),
        ({"TrainingData": {"Assets": []}}, "InvalidParameterException", "TrainingData"),
        ({"TestingData": {}}, "InvalidParameterException", "AutoCreate=true"),
        ({"OutputConfig": {"S3KeyPrefix": "results"}}, "InvalidParameterException", "the model"),
        (
            {"TrainingData": {"Assets": [_asset("train.manifest", bucket="elsewhere")]}},
            "AccessDeniedException",
            "s3://elsewhere/train.manifest",
        ),
        (
            {"OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "other"}},
            "AccessDeniedException",
            "s3://out-bucket/other/pets/v1/",
        ),
    ],
)
def test_custom_labels_versions_the_server_refuses(served, overrides, code, fragment):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    with pytest.raises(ClientError) as error:
        client.create_project_version(**_version_request(project, **overrides))
    assert _code(error) == code
    assert fragment in _message(error)
    assert client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"] == []


def test_a_custom_labels_version_trains_with_its_own_command(tmp_path):
    registry = _registry(tmp_path)
    project = registry.create_project("pets", feature="CUSTOM_LABELS").arn
    request = _version_request(
        project,
        TrainingData={"Assets": [_asset("train.manifest")]},
        TestingData={"Assets": [_asset("test.manifest")]},
        KmsKeyId="alias/models",
    )
    request["TrainingData"]["Assets"][0]["GroundTruthManifest"]["S3Object"]["Version"] = "v7"
    version = registry.create_version(project, request)
    assert version.feature == "CUSTOM_LABELS" and version.base_model_version is None
    runner = TrainingRunner(
        registry,
        JobSettings(
            s3=S3Settings(endpoint_url="http://s3.local:9000", region_name="us-east-1"),
            allowed_locations=("in-bucket", "out-bucket/results"),
        ),
    )
    command = runner.command(version, "/tmp/result.json")
    # Its images come from the allowed locations only, never from the server's disk.
    assert "--allowed_source_prefixes=s3://in-bucket/,s3://out-bucket/results" in command
    assert command[1:3] == ["-m", "training.train_custom_labels"]
    manifest = versioned_uri("s3://in-bucket/train.manifest", "v7")
    assert f"--training_manifest={manifest}" in command
    assert "--testing_manifest=s3://in-bucket/test.manifest" in command
    assert "--auto_split" not in command
    assert any(
        part.startswith("--output=s3://out-bucket/results/models/pets/v1/") for part in command
    )
    assert f"--project_version_arn={version.arn}" in command
    assert "--kms_key_id=alias/models" in command
    assert "--s3_endpoint_url=http://s3.local:9000" in command
    assert command[-1] == "--result_file=/tmp/result.json"
    assert not any(part.startswith(("--components", "--backbone")) for part in command)
    auto = registry.create_version(project, _version_request(project, "v2"))
    assert "--auto_split" in runner.command(auto, "/tmp/result.json")


def test_training_results_are_described(served, tmp_path):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    registry = _registry(tmp_path)
    runner = TrainingRunner(registry, JobSettings())
    output = {"Assets": [_asset("results/models/pets/v1/1/training.manifest", "out-bucket")]}
    validation = {"Assets": [_asset("results/models/pets/v1/1/training-validation.manifest")]}
    data_results = {
        "TrainingDataResult": {"Output": output, "Validation": validation},
        "TestingDataResult": {"Output": output, "Validation": validation},
    }
    trained = registry.create_version(project, _version_request(project, "trained", KmsKeyId="k1"))
    summary = {"Bucket": "out-bucket", "Name": "results/models/pets/trained/1/Summary.json"}
    runner._record(
        trained,
        {
            "Status": "TRAINING_COMPLETED",
            "StatusMessage": "Trained on 40 images.",
            "F1Score": 0.93,
            "Summary": summary,
            "Model": "s3://out-bucket/results/models/pets/trained/1/model/",
            "Kind": "OBJECT_DETECTION",
            "Labels": ["cat", "dog"],
            "BackboneVersion": "backbone-1",
            **data_results,
        },
        12,
    )
    failed = registry.create_version(project, _version_request(project, "failed"))
    runner._record(
        failed,
        {
            "Status": "TRAINING_FAILED",
            "StatusMessage": "line 7 of s3://in-bucket/manifests/train.manifest: no source-ref",
            "TrainingDataResult": {"Validation": validation},
        },
        3,
    )
    unusable = registry.create_version(project, _version_request(project, "unusable"))
    runner._record(unusable, {"Status": "TRAINING_COMPLETED", "F1Score": 1.0}, 1)

    version = _version(client, trained.arn)
    assert version["Status"] == "TRAINING_COMPLETED"
    assert version["StatusMessage"] == "Trained on 40 images."
    assert version["Feature"] == "CUSTOM_LABELS"
    assert "BaseModelVersion" not in version
    assert version["BillableTrainingTimeInSeconds"] == 12
    assert "TrainingEndTimestamp" in version
    assert version["EvaluationResult"] == {
        "F1Score": pytest.approx(0.93),
        "Summary": {"S3Object": summary},
    }
    request = _version_request(project, "trained")
    assert version["TrainingDataResult"] == {
        "Input": request["TrainingData"],
        **data_results["TrainingDataResult"],
    }
    assert version["TestingDataResult"] == {
        "Input": {"AutoCreate": True},
        **data_results["TestingDataResult"],
    }
    assert version["KmsKeyId"] == "k1"
    assert "MinInferenceUnits" not in version
    stored = registry.get_version(trained.arn)
    assert (stored.model_kind, stored.labels) == ("OBJECT_DETECTION", ["cat", "dog"])

    version = _version(client, failed.arn)
    assert version["Status"] == "TRAINING_FAILED"
    assert version["StatusMessage"].startswith("line 7 of s3://in-bucket/manifests/train.manifest")
    assert version["TrainingDataResult"]["Validation"] == validation
    assert "EvaluationResult" not in version
    version = _version(client, unusable.arn)
    assert version["Status"] == "TRAINING_FAILED"
    assert "Model" in version["StatusMessage"]


def test_a_version_whose_manifest_is_missing_fails_its_training(served):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    client.create_project_version(**_version_request(project))
    with pytest.raises(WaiterError):
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project, VersionNames=["v1"], WaiterConfig=FAST_WAIT
        )
    (version,) = client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
    assert version["Status"] == "TRAINING_FAILED"
    assert version["StatusMessage"]
    assert version["Feature"] == "CUSTOM_LABELS"


# Serving.


def test_a_model_starts_serves_and_stops(served, tmp_path):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    arn = _trained(tmp_path, project, "v1")
    started = client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    assert started["Status"] == "STARTING"
    _wait_running(client, arn)
    version = _version(client, arn)
    assert version["Status"] == "RUNNING"
    assert (version["MinInferenceUnits"], version["MaxInferenceUnits"]) == (1, 1)
    assert version["EvaluationResult"]["F1Score"] == pytest.approx(0.8)
    with pytest.raises(ClientError) as again:
        client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    assert _code(again) == "ResourceInUseException"
    with pytest.raises(ClientError) as delete:
        client.delete_project_version(ProjectVersionArn=arn)
    assert _code(delete) == "ResourceInUseException"

    image = {"Bytes": _jpeg()}
    labels = client.detect_custom_labels(ProjectVersionArn=arn, Image=image)["CustomLabels"]
    assert [label["Name"] for label in labels] == ["cat", "dog"]  # each label's threshold
    everything = client.detect_custom_labels(ProjectVersionArn=arn, Image=image, MinConfidence=0)
    assert [label["Name"] for label in everything["CustomLabels"]] == ["cat", "dog", "bird"]
    assert everything["CustomLabels"][0]["Confidence"] == pytest.approx(90.0)
    strict = client.detect_custom_labels(ProjectVersionArn=arn, Image=image, MinConfidence=50)
    assert [label["Name"] for label in strict["CustomLabels"]] == ["cat"]
    cut = client.detect_custom_labels(
        ProjectVersionArn=arn, Image=image, MinConfidence=0, MaxResults=2
    )
    assert [label["Name"] for label in cut["CustomLabels"]] == ["cat", "dog"]
    none = client.detect_custom_labels(ProjectVersionArn=arn, Image=image, MaxResults=0)
    assert none["CustomLabels"] == []

    assert client.stop_project_version(ProjectVersionArn=arn)["Status"] == "STOPPING"
    stopped = _wait_for(client, arn, ("STOPPED",))
    assert "MinInferenceUnits" not in stopped
    assert served.serving.units(arn) == 0
    with pytest.raises(ClientError) as not_ready:
        client.detect_custom_labels(ProjectVersionArn=arn, Image=image)
    assert _code(not_ready) == "ResourceNotReadyException"
    assert "STOPPED" in _message(not_ready)
    with pytest.raises(ClientError) as stop_again:
        client.stop_project_version(ProjectVersionArn=arn)
    assert _code(stop_again) == "ResourceInUseException"

    # A stopped model starts again, on more units.
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=2, MaxInferenceUnits=3)
    _wait_running(client, arn)
    version = _version(client, arn)
    assert (version["MinInferenceUnits"], version["MaxInferenceUnits"]) == (2, 3)
    assert served.serving.units(arn) == 2
    client.stop_project_version(ProjectVersionArn=arn)
    _wait_for(client, arn, ("STOPPED",))
    assert client.delete_project_version(ProjectVersionArn=arn)["Status"] == "DELETING"


def test_starting_is_refused_unless_the_model_is_trained_or_stopped(served, tmp_path):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    registry = _registry(tmp_path)
    training = registry.create_version(project, _version_request(project, "training")).arn
    failed = registry.create_version(project, _version_request(project, "failed")).arn
    registry.mark_training_failed(failed, "Too few images.")
    trained = _trained(tmp_path, project, "trained")
    adapter = _adapter_version(client, tmp_path)
    unknown = trained.rsplit("/", 1)[0] + "/1"
    for arn, code in (
        (training, "ResourceInUseException"),
        (failed, "ResourceInUseException"),
        (adapter, "InvalidParameterException"),
        (unknown, "ResourceNotFoundException"),
    ):
        with pytest.raises(ClientError) as start:
            client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
        assert (_code(start), arn) == (code, arn)
        with pytest.raises(ClientError) as stop:
            client.stop_project_version(ProjectVersionArn=arn)
        assert (_code(stop), arn) == (code, arn)
    with pytest.raises(ClientError) as fewer:
        client.start_project_version(
            ProjectVersionArn=trained, MinInferenceUnits=2, MaxInferenceUnits=1
        )
    assert _code(fewer) == "InvalidParameterException"
    with pytest.raises(ClientError) as not_running:
        client.stop_project_version(ProjectVersionArn=trained)
    assert _code(not_running) == "ResourceInUseException"
    assert _version(client, trained)["Status"] == "TRAINING_COMPLETED"
    # A Custom Labels model is no adapter of DetectModerationLabels.
    with pytest.raises(ClientError) as as_adapter:
        client.detect_moderation_labels(Image={"Bytes": _jpeg()}, ProjectVersion=trained)
    assert _code(as_adapter) == "InvalidParameterException"


def test_a_model_that_cannot_be_loaded_fails_to_start(served, tmp_path):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    arn = _trained(tmp_path, project, "broken", model_uri="s3://out-bucket/results/missing/")
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    with pytest.raises(WaiterError):
        _wait_running(client, arn)
    version = _version(client, arn)
    assert version["Status"] == "FAILED"
    assert "s3://out-bucket/results/missing/" in version["StatusMessage"]
    assert "does not hold a readable Custom Labels model" in version["StatusMessage"]
    with pytest.raises(ClientError) as not_ready:
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": _jpeg()})
    assert _code(not_ready) == "ResourceNotReadyException"
    # A failed start may be tried again; a FAILED model can be deleted.
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    _wait_for(client, arn, ("FAILED",))
    assert client.delete_project_version(ProjectVersionArn=arn)["Status"] == "DELETING"


def test_detect_custom_labels_errors(served, tmp_path, buckets):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    arn = _trained(tmp_path, project, "v1")
    idle = _trained(tmp_path, project, "idle")
    adapter = _adapter_version(client, tmp_path)
    image = {"Bytes": _jpeg()}
    for target, code in (
        (arn.rsplit("/", 1)[0] + "/1", "ResourceNotFoundException"),
        (adapter, "InvalidParameterException"),
        (idle, "ResourceNotReadyException"),
        (arn, "ResourceNotReadyException"),
    ):
        with pytest.raises(ClientError) as error:
            client.detect_custom_labels(ProjectVersionArn=target, Image=image)
        assert (_code(error), target) == (code, target)
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    _wait_running(client, arn)
    buckets.put_object(Bucket="in-bucket", Key="images/photo.jpg", Body=_jpeg())
    buckets.put_object(Bucket="elsewhere", Key="photo.jpg", Body=_jpeg())
    from_s3 = client.detect_custom_labels(
        ProjectVersionArn=arn,
        Image={"S3Object": {"Bucket": "in-bucket", "Name": "images/photo.jpg"}},
    )
    assert [label["Name"] for label in from_s3["CustomLabels"]] == ["cat", "dog"]
    big = _jpeg() + b"\0" * (4 * 1024 * 1024)
    for refused, code in (
        ({"Bytes": big}, "ImageTooLargeException"),
        ({"Bytes": b"not an image at all"}, "InvalidImageFormatException"),
        (
            {"S3Object": {"Bucket": "in-bucket", "Name": "images/missing.jpg"}},
            "InvalidS3ObjectException",
        ),
        ({"S3Object": {"Bucket": "elsewhere", "Name": "photo.jpg"}}, "AccessDeniedException"),
    ):
        with pytest.raises(ClientError) as error:
            client.detect_custom_labels(ProjectVersionArn=arn, Image=refused)
        assert _code(error) == code
    # Just under the limit is accepted.
    fits = _jpeg() + b"\0" * (4 * 1024 * 1024 - len(_jpeg()))
    assert client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": fits})["CustomLabels"]
    client.stop_project_version(ProjectVersionArn=arn)
    _wait_for(client, arn, ("STOPPED",))


def test_a_full_queue_is_a_throttling_exception(served, tmp_path, loader):
    client = served.client
    project = client.create_project(ProjectName="pets")["ProjectArn"]
    arn = _trained(tmp_path, project, "v1")
    loader.hold = True
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    _wait_running(client, arn)
    (model,) = loader.models
    image = {"Bytes": _jpeg()}
    answers: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                rekognition_client(served.endpoint).detect_custom_labels(
                    ProjectVersionArn=arn, Image=image
                )
            )
        )
        for _ in range(2)
    ]
    threads[0].start()
    assert model.holding.wait(30)  # one request in the running batch ...
    threads[1].start()
    replica = served.serving.replica(arn)
    deadline = time.monotonic() + 30
    while replica.queued < 1:  # ... and one waiting: the queue is full
        assert time.monotonic() < deadline
        time.sleep(0.01)
    impatient = _without_retries(served.endpoint)
    with pytest.raises(ClientError) as error:
        impatient.detect_custom_labels(ProjectVersionArn=arn, Image=image)
    assert _code(error) == "ThrottlingException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    model.release.set()
    for thread in threads:
        thread.join(30)
    assert [[label["Name"] for label in a["CustomLabels"]] for a in answers] == [["cat", "dog"]] * 2
    client.stop_project_version(ProjectVersionArn=arn)
    _wait_for(client, arn, ("STOPPED",))


def _without_retries(endpoint: str):
    import boto3

    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=API_KEY_ID,
        aws_secret_access_key=API_SECRET,
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_a_restarted_server_serves_its_running_models_again(tmp_path, buckets, moto_server, loader):
    first = Served(_server_args(tmp_path, moto_server))
    try:
        client = first.client
        project = client.create_project(ProjectName="pets")["ProjectArn"]
        running = _trained(tmp_path, project, "running")
        client.start_project_version(ProjectVersionArn=running, MinInferenceUnits=2)
        _wait_running(client, running)
    finally:
        first.close()
    # What a server that died while starting one model and stopping another leaves behind.
    registry = _registry(tmp_path)
    starting = _trained(tmp_path, project, "starting")
    registry.begin_start(starting, 1, 1)
    stopping = _trained(tmp_path, project, "stopping")
    registry.begin_start(stopping, 1, 1)
    registry.mark_running(stopping, 1)
    registry.begin_stop(stopping)
    second = Served(_server_args(tmp_path, moto_server))
    try:
        client = second.client
        for arn in (running, starting):
            _wait_running(client, arn)
        assert second.serving.units(running) == 2
        assert _version(client, running)["MinInferenceUnits"] == 2
        assert _version(client, stopping)["Status"] == "STOPPED"
        answer = client.detect_custom_labels(ProjectVersionArn=running, Image={"Bytes": _jpeg()})
        assert [label["Name"] for label in answer["CustomLabels"]] == ["cat", "dog"]
    finally:
        second.close()


# The registry file of an earlier server.

_FIRST_SCHEMA = """
CREATE TABLE projects (
    arn TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL, feature TEXT NOT NULL,
    auto_update TEXT, status TEXT NOT NULL, tags TEXT NOT NULL
);
CREATE TABLE project_versions (
    arn TEXT PRIMARY KEY, project_arn TEXT NOT NULL, version_name TEXT NOT NULL,
    created REAL NOT NULL, status TEXT NOT NULL, status_message TEXT, request TEXT NOT NULL,
    training_end REAL, billable_secs INTEGER, f1 REAL, summary_bucket TEXT, summary_name TEXT,
    adapter_uri TEXT, base_model_version TEXT, backbone_version TEXT,
    UNIQUE (project_arn, version_name)
);
"""


def test_a_registry_file_of_an_earlier_server_keeps_working(tmp_path, buckets, moto_server, loader):
    project = "arn:aws:rekognition:us-east-1:000000000000:project/old/1700000000000"
    version = "arn:aws:rekognition:us-east-1:000000000000:project/old/version/v1/1700000000001"
    request = _version_request(project)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        db.executescript(_FIRST_SCHEMA)
        db.execute(
            "INSERT INTO projects VALUES (?, 'old', 1700000000.0, 'CONTENT_MODERATION', "
            "'DISABLED', 'CREATED', '{}')",
            (project,),
        )
        db.execute(
            "INSERT INTO project_versions VALUES (?, ?, 'v1', 1700000000.001, "
            "'TRAINING_COMPLETED', 'The adapter is trained.', ?, 1700000100.0, 50, 0.7, "
            "'out-bucket', 'results/summary.json', 's3://out-bucket/results/adapter/', "
            "'base-old', 'backbone-old')",
            (version, project, json.dumps(request)),
        )
    server = Served(_server_args(tmp_path, moto_server))
    try:
        client = server.client
        (old,) = client.describe_projects(Features=["CONTENT_MODERATION"])["ProjectDescriptions"]
        assert old["ProjectArn"] == project
        (described,) = client.describe_project_versions(ProjectArn=project)[
            "ProjectVersionDescriptions"
        ]
        assert described["ProjectVersionArn"] == version
        assert described["Feature"] == "CONTENT_MODERATION"
        assert described["BaseModelVersion"] == "base-old"
        assert described["EvaluationResult"]["F1Score"] == pytest.approx(0.7)
        with pytest.raises(ClientError) as start:
            client.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
        assert _code(start) == "InvalidParameterException"
        # The same file now holds Custom Labels models too.
        pets = client.create_project(ProjectName="pets")["ProjectArn"]
        arn = _trained(tmp_path, pets, "v1")
        client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
        _wait_running(client, arn)
    finally:
        server.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(project_versions)")}
    assert {"feature", "model_uri", "min_inference_units", "data_results"} <= columns


# End to end, with the training command and the model of this project.


def _test_images(sample_set, count: int) -> list[tuple[str, dict]]:
    """The first ``count`` lines of a set's test manifest: (image name, manifest line)."""
    lines = [json.loads(line) for line in _manifest_lines(sample_set.test_manifest) if line.strip()]
    return [(line["source-ref"].rsplit("/", 1)[-1], line) for line in lines[:count]]


def _manifest_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.mark.slow
def test_custom_labels_end_to_end(tmp_path, buckets, moto_server):
    """Sample sets in S3 -> a classifier and a detector trained, evaluated, started, asked
    (inline and from S3), one stopped, the other served again by a restarted server."""
    from training.custom_labels_samples import (
        upload,
        write_classification_set,
        write_detection_set,
    )

    s3 = buckets
    local = {
        "classifier": write_classification_set(
            tmp_path / "classification", per_label=24, source_prefix="s3://in-bucket/samples/cls"
        ),
        "detector": write_detection_set(
            tmp_path / "detection", images=96, source_prefix="s3://in-bucket/samples/det"
        ),
    }
    uploaded = {
        "classifier": upload(local["classifier"], s3, "in-bucket", "samples/cls"),
        "detector": upload(local["detector"], s3, "in-bucket", "samples/det"),
    }

    def asset(uri: str) -> dict:
        bucket, _, key = uri[len("s3://") :].partition("/")
        return _asset(key, bucket)

    server = Served(_server_args(tmp_path, moto_server))
    try:
        client = server.client
        project = client.create_project(ProjectName="samples")["ProjectArn"]
        arns = {}
        for name, sample_set in uploaded.items():
            arns[name] = client.create_project_version(
                ProjectArn=project,
                VersionName=name,
                OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results/custom-labels"},
                TrainingData={"Assets": [asset(sample_set.train_manifest)]},
                TestingData={"Assets": [asset(sample_set.test_manifest)]},
                VersionDescription=f"the sample {name}",
                Tags={"set": name},
            )["ProjectVersionArn"]
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project,
            VersionNames=list(arns),
            WaiterConfig={"Delay": 5, "MaxAttempts": 360},
        )
        versions = {
            v["ProjectVersionArn"]: v
            for v in client.describe_project_versions(ProjectArn=project)[
                "ProjectVersionDescriptions"
            ]
        }
        for name, arn in arns.items():
            version = versions[arn]
            assert version["Status"] == "TRAINING_COMPLETED", version.get("StatusMessage")
            assert version["Feature"] == "CUSTOM_LABELS"
            assert "BaseModelVersion" not in version
            assert version["BillableTrainingTimeInSeconds"] >= 0
            assert 0 <= version["EvaluationResult"]["F1Score"] <= 1
            where = version["EvaluationResult"]["Summary"]["S3Object"]
            summary = json.loads(
                s3.get_object(Bucket=where["Bucket"], Key=where["Name"])["Body"].read()
            )
            assert summary["EvaluationDetails"]["ProjectVersionArn"] == arn
            assert {r["Label"] for r in summary["LabelEvaluationResults"]} == set(
                local[name].labels
            )
            for data in ("TrainingDataResult", "TestingDataResult"):
                result = version[data]
                assert result["Input"]["Assets"]
                for part in ("Output", "Validation"):
                    (manifest,) = result[part]["Assets"]
                    location = manifest["GroundTruthManifest"]["S3Object"]
                    s3.head_object(Bucket=location["Bucket"], Key=location["Name"])

        for arn in arns.values():
            client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
        client.get_waiter("project_version_running").wait(
            ProjectArn=project,
            VersionNames=list(arns),
            WaiterConfig={"Delay": 2, "MaxAttempts": 150},
        )

        # The classifier names the label of most test images, most confident first.
        right = 0
        tests = _test_images(local["classifier"], 8)
        for image_name, line in tests:
            data = (tmp_path / "classification" / "images" / image_name).read_bytes()
            labels = client.detect_custom_labels(
                ProjectVersionArn=arns["classifier"], Image={"Bytes": data}, MinConfidence=0
            )["CustomLabels"]
            assert {label["Name"] for label in labels} <= set(local["classifier"].labels)
            confidences = [label["Confidence"] for label in labels]
            assert confidences == sorted(confidences, reverse=True)
            assert all("Geometry" not in label for label in labels)
            expected = line[local["classifier"].attribute + "-metadata"]["class-name"]
            right += bool(labels) and labels[0]["Name"] == expected
        assert right >= len(tests) // 2, right
        (image_name, _), *_ = tests
        from_s3 = client.detect_custom_labels(
            ProjectVersionArn=arns["classifier"],
            Image={"S3Object": {"Bucket": "in-bucket", "Name": f"samples/cls/images/{image_name}"}},
            MinConfidence=0,
            MaxResults=1,
        )["CustomLabels"]
        assert len(from_s3) == 1

        # The detector's boxes are ratios of the image, each with its polygon.
        found = 0
        for image_name, _ in _test_images(local["detector"], 4):
            key = f"samples/det/images/{image_name}"
            labels = client.detect_custom_labels(
                ProjectVersionArn=arns["detector"],
                Image={"S3Object": {"Bucket": "in-bucket", "Name": key}},
                MinConfidence=0,
            )["CustomLabels"]
            for label in labels:
                assert label["Name"] in local["detector"].labels
                box = label["Geometry"]["BoundingBox"]
                assert all(0 <= box[side] <= 1 for side in ("Width", "Height", "Left", "Top"))
                assert box["Left"] + box["Width"] <= 1.0001
                assert len(label["Geometry"]["Polygon"]) == 4
            found += len(labels)
        assert found > 0

        # A bulk job runs the detector over the test manifest, named by its ARN, which the job
        # resolves through this server with the credentials of its environment.
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
        }
        environment.update(AWS_ACCESS_KEY_ID=API_KEY_ID, AWS_SECRET_ACCESS_KEY=API_SECRET)
        job = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.run",
                f"--manifest={uploaded['detector'].test_manifest}",
                "--output=s3://out-bucket/results/bulk-detector",
                f"--custom_labels_model={arns['detector']}",
                f"--rekognition_endpoint_url={server.endpoint}",
                f"--s3_endpoint_url={moto_server}",
                "--s3_region_name=us-east-1",
            ],
            env=environment,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        assert f"Analysed {local['detector'].test_images} of" in job.stdout
        body = s3.get_object(Bucket="out-bucket", Key="results/bulk-detector/results.jsonl")
        bulk = [json.loads(line) for line in body["Body"].read().splitlines()]
        assert all(set(line) == {"source-ref", "detect-custom-labels"} for line in bulk)
        assert sum(len(line["detect-custom-labels"]["CustomLabels"]) for line in bulk) > 0

        client.stop_project_version(ProjectVersionArn=arns["detector"])
        _wait_for(client, arns["detector"], ("STOPPED",))
        assert server.serving.units(arns["detector"]) == 0
    finally:
        server.close()

    # The classifier was RUNNING when its server closed: the next server serves it again.
    restarted = Served(_server_args(tmp_path, moto_server))
    try:
        client = restarted.client
        _wait_running(client, arns["classifier"])
        assert _version(client, arns["detector"])["Status"] == "STOPPED"
        (image_name, _), *_ = _test_images(local["classifier"], 1)
        data = (tmp_path / "classification" / "images" / image_name).read_bytes()
        answer = client.detect_custom_labels(
            ProjectVersionArn=arns["classifier"], Image={"Bytes": data}, MinConfidence=0
        )
        assert answer["CustomLabels"]
        client.stop_project_version(ProjectVersionArn=arns["classifier"])
        _wait_for(client, arns["classifier"], ("STOPPED",))
    finally:
        restarted.close()

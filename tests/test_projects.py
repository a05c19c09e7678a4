"""Custom Moderation projects and adapter versions through the real boto3 client and AWS CLI.

The server runs over a moto S3 server. Versions created through the API train in the background
(and fail here, their manifests missing); versions that must stay TRAINING_IN_PROGRESS, or must
have trained, are registered straight into the server's SQLite file with ``ProjectRegistry``,
which is how a training run reports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from model.backbone import Backbone
from model.moderation_model import moderation_model_version
from service.jobs import JobRunner, JobSettings
from service.projects import ProjectRegistry
from service.registry import JobRegistry
from service.training import RESTART_MESSAGE
from service.validation import rekognition_model
from tests.conftest import API_KEY_ID, API_SECRET, start_api_server
from tests.conftest import rekognition_client as _client

_REMOVE = object()
# What the `server` fixture runs (open_nsfw, no backbone): adapters are judged against these.
BASE_MODEL_VERSION = moderation_model_version("open_nsfw", "none")
BACKBONE_VERSION = Backbone.version_for("none")


def _pattern(shape: str) -> re.Pattern[str]:
    return re.compile(rekognition_model().shape_for(shape).metadata["pattern"])


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def _message(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Message"]


def _registry(tmp_path) -> ProjectRegistry:
    """The server's project registry, opened beside it (as a training run would report)."""
    return ProjectRegistry(str(tmp_path / "jobs.sqlite"))


def _create_project(client, name: str = "adapter", **overrides) -> str:
    arguments = {"ProjectName": name, "Feature": "CONTENT_MODERATION", "AutoUpdate": "DISABLED"}
    arguments.update(overrides)
    return client.create_project(**arguments)["ProjectArn"]


def _asset(key: str, bucket: str = "in-bucket") -> dict:
    return {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}


def _version_request(project_arn: str, name: str = "v1", **overrides) -> dict:
    request = {
        "ProjectArn": project_arn,
        "VersionName": name,
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results/adapters"},
        "TrainingData": {"Assets": [_asset("manifests/train.jsonl")]},
        "TestingData": {"AutoCreate": True},
    }
    for key, value in overrides.items():
        if value is _REMOVE:
            request.pop(key, None)
        else:
            request[key] = value
    return request


def _versions(client, project_arn: str, **arguments) -> list[dict]:
    return client.describe_project_versions(ProjectArn=project_arn, **arguments)[
        "ProjectVersionDescriptions"
    ]


def _wait_for_training_end(client, project_arn: str, name: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        (version,) = _versions(client, project_arn, VersionNames=[name])
        if version["Status"] != "TRAINING_IN_PROGRESS":
            return version
        assert time.monotonic() < deadline, version
        time.sleep(0.2)


def _trained(registry: ProjectRegistry, project_arn: str, name: str, **versions: str) -> str:
    """A version registered and reported trained, on the given base model and backbone."""
    version = registry.create_version(project_arn, _version_request(project_arn, name))
    registry.mark_trained(
        version.arn,
        status_message="The adapter is trained.",
        billable_secs=42,
        f1=0.9,
        summary_bucket="out-bucket",
        summary_name=f"results/adapters/{name}/evaluation-summary.json",
        adapter_uri=f"s3://out-bucket/results/adapters/{name}/",
        base_model_version=versions.get("base_model_version", BASE_MODEL_VERSION),
        backbone_version=versions.get("backbone_version", BACKBONE_VERSION),
    )
    return version.arn


# Projects.


def test_projects_are_created_and_described_newest_first(server):
    client = _client(server)
    arns = [_create_project(client, name) for name in ("p1", "p2", "p3")]
    for name, arn in zip(("p1", "p2", "p3"), arns):
        assert _pattern("ProjectArn").fullmatch(arn)
        assert arn.startswith(f"arn:aws:rekognition:us-east-1:000000000000:project/{name}/")
    # Without Features, Rekognition lists Custom Labels projects only.
    assert client.describe_projects()["ProjectDescriptions"] == []
    listed = client.describe_projects(Features=["CONTENT_MODERATION"])
    assert "NextToken" not in listed
    projects = listed["ProjectDescriptions"]
    assert [p["ProjectArn"] for p in projects] == arns[::-1]
    assert {p["Status"] for p in projects} == {"CREATED"}
    assert {p["Feature"] for p in projects} == {"CONTENT_MODERATION"}
    assert {p["AutoUpdate"] for p in projects} == {"DISABLED"}
    created = [p["CreationTimestamp"] for p in projects]
    assert created == sorted(created, reverse=True)
    both = client.describe_projects(
        Features=["CUSTOM_LABELS", "CONTENT_MODERATION"], ProjectNames=["p1", "p3", "p9"]
    )
    assert [p["ProjectArn"] for p in both["ProjectDescriptions"]] == [arns[2], arns[0]]


def test_project_listings_page_through_the_boto3_paginator(server):
    client = _client(server)
    arns = [_create_project(client, f"paged-{i}") for i in range(3)]
    pages = list(
        client.get_paginator("describe_projects").paginate(
            Features=["CONTENT_MODERATION"], PaginationConfig={"PageSize": 1}
        )
    )
    assert [len(page["ProjectDescriptions"]) for page in pages] == [1, 1, 1]
    assert [page["ProjectDescriptions"][0]["ProjectArn"] for page in pages] == arns[::-1]
    first = client.describe_projects(Features=["CONTENT_MODERATION"], MaxResults=1)
    with pytest.raises(ClientError) as forged:
        client.describe_projects(Features=["CONTENT_MODERATION"], NextToken="forged")
    assert _code(forged) == "InvalidPaginationTokenException"
    with pytest.raises(ClientError) as other_listing:
        client.describe_projects(
            Features=["CONTENT_MODERATION"],
            ProjectNames=["paged-0"],
            MaxResults=1,
            NextToken=first["NextToken"],
        )
    assert _code(other_listing) == "InvalidPaginationTokenException"
    with pytest.raises(ClientError) as too_many:
        client.describe_projects(Features=["CONTENT_MODERATION"], MaxResults=101)
    assert _code(too_many) == "InvalidParameterException"


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        ({"Feature": _REMOVE}, "InvalidParameterException", "pass Feature=CONTENT_MODERATION"),
        ({"Feature": "CUSTOM_LABELS"}, "InvalidParameterException", "Feature=CONTENT_MODERATION"),
        ({"AutoUpdate": _REMOVE}, "InvalidParameterException", "AutoUpdate"),
        ({"AutoUpdate": "SOMETIMES"}, "InvalidParameterException", "autoUpdate"),
        ({"ProjectName": "has space"}, "InvalidParameterException", "projectName"),
    ],
)
def test_projects_the_server_refuses(server, overrides, code, fragment):
    arguments = {"ProjectName": "refused", "Feature": "CONTENT_MODERATION", "AutoUpdate": "ENABLED"}
    for key, value in overrides.items():
        if value is _REMOVE:
            arguments.pop(key)
        else:
            arguments[key] = value
    with pytest.raises(ClientError) as error:
        _client(server).create_project(**arguments)
    assert _code(error) == code
    assert fragment in _message(error)


def test_a_project_name_is_used_once(server):
    client = _client(server)
    _create_project(client, "taken", Tags={"team": "trust-and-safety"})
    with pytest.raises(ClientError) as error:
        _create_project(client, "taken")
    assert _code(error) == "ResourceInUseException"


def test_a_project_is_deleted_only_without_versions(server, tmp_path):
    client = _client(server)
    project = _create_project(client, "short-lived")
    registry = _registry(tmp_path)
    version = registry.create_version(project, _version_request(project))
    with pytest.raises(ClientError) as has_versions:
        client.delete_project(ProjectArn=project)
    assert _code(has_versions) == "ResourceInUseException"
    assert "DeleteProjectVersion" in _message(has_versions)
    with pytest.raises(ClientError) as training:
        client.delete_project_version(ProjectVersionArn=version.arn)
    assert _code(training) == "ResourceInUseException"
    registry.mark_training_failed(version.arn, "Not enough examples.")
    assert client.delete_project_version(ProjectVersionArn=version.arn)["Status"] == "DELETING"
    assert _versions(client, project) == []
    assert client.delete_project(ProjectArn=project)["Status"] == "DELETING"
    assert client.describe_projects(Features=["CONTENT_MODERATION"])["ProjectDescriptions"] == []
    with pytest.raises(ClientError) as gone:
        client.delete_project(ProjectArn=project)
    assert _code(gone) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as gone_version:
        client.delete_project_version(ProjectVersionArn=version.arn)
    assert _code(gone_version) == "ResourceNotFoundException"


# Versions.


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        ({"TrainingData": _REMOVE}, "InvalidParameterException", "TrainingData is required"),
        ({"TestingData": _REMOVE}, "InvalidParameterException", "pass TestingData too"),
        ({"TestingData": {}}, "InvalidParameterException", "or AutoCreate=true"),
        ({"TestingData": {"AutoCreate": False}}, "InvalidParameterException", "AutoCreate=true"),
        (
            {"TestingData": {"AutoCreate": True, "Assets": [_asset("manifests/test.jsonl")]}},
            "InvalidParameterException",
            "not both",
        ),
        ({"TrainingData": {"Assets": []}}, "InvalidParameterException", "TrainingData"),
        ({"OutputConfig": {"S3KeyPrefix": "results"}}, "InvalidParameterException", "S3Bucket"),
        (
            {"FeatureConfig": {"ContentModeration": {"ConfidenceThreshold": 101}}},
            "InvalidParameterException",
            "confidenceThreshold",
        ),
        (
            {"TrainingData": {"Assets": [_asset("train.jsonl", bucket="elsewhere")]}},
            "AccessDeniedException",
            "s3://elsewhere/train.jsonl",
        ),
        (
            {"TestingData": {"Assets": [_asset("test.jsonl", bucket="elsewhere")]}},
            "AccessDeniedException",
            "s3://elsewhere/test.jsonl",
        ),
        (
            {"OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "other"}},
            "AccessDeniedException",
            "s3://out-bucket/other/checked/v1/",
        ),
    ],
)
def test_project_versions_the_server_refuses(server, overrides, code, fragment):
    client = _client(server)
    project = _create_project(client, "checked")
    with pytest.raises(ClientError) as error:
        client.create_project_version(**_version_request(project, **overrides))
    assert _code(error) == code
    assert fragment in _message(error)
    assert _versions(client, project) == []


def test_versions_need_their_project_and_a_name_of_their_own(server):
    client = _client(server)
    unknown = "arn:aws:rekognition:us-east-1:000000000000:project/nowhere/1700000000000"
    with pytest.raises(ClientError) as no_project:
        client.create_project_version(**_version_request(unknown))
    assert _code(no_project) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as no_listing:
        client.describe_project_versions(ProjectArn=unknown)
    assert _code(no_listing) == "ResourceNotFoundException"
    project = _create_project(client, "named")
    client.create_project_version(**_version_request(project, "v1"))
    with pytest.raises(ClientError) as taken:
        client.create_project_version(**_version_request(project, "v1"))
    assert _code(taken) == "ResourceInUseException"
    # The name is taken in its project only.
    other = _create_project(client, "other")
    client.create_project_version(**_version_request(other, "v1"))


def test_versions_are_described_newest_first_echoing_their_request(server):
    client = _client(server)
    project = _create_project(client, "described")
    requests = [
        _version_request(project, "v1"),
        _version_request(
            project,
            "v2",
            TestingData={"Assets": [_asset("manifests/test.jsonl")]},
            VersionDescription="more false positives (alcohol)",
            KmsKeyId="alias/adapters",
        ),
        _version_request(
            project, "v3", FeatureConfig={"ContentModeration": {"ConfidenceThreshold": 70.0}}
        ),
    ]
    arns = [client.create_project_version(**request)["ProjectVersionArn"] for request in requests]
    for name, arn in zip(("v1", "v2", "v3"), arns):
        assert _pattern("ProjectVersionArn").fullmatch(arn)
        prefix = f"arn:aws:rekognition:us-east-1:000000000000:project/described/version/{name}/"
        assert arn.startswith(prefix) and arn[len(prefix) :].isdigit()
    versions = _versions(client, project)
    assert [v["ProjectVersionArn"] for v in versions] == arns[::-1]
    for version, request in zip(versions, requests[::-1]):
        assert version["Status"] in ("TRAINING_IN_PROGRESS", "TRAINING_FAILED")
        assert version["StatusMessage"]
        assert version["Feature"] == "CONTENT_MODERATION"
        assert version["BaseModelVersion"] == BASE_MODEL_VERSION
        assert version["OutputConfig"] == request["OutputConfig"]
        assert version["TrainingDataResult"] == {"Input": request["TrainingData"]}
        assert version["TestingDataResult"] == {"Input": request["TestingData"]}
        for name in ("KmsKeyId", "VersionDescription", "FeatureConfig"):
            assert version.get(name) == request.get(name)
        assert "EvaluationResult" not in version
    chosen = _versions(client, project, VersionNames=["v1", "v3", "v9"])
    assert [v["ProjectVersionArn"] for v in chosen] == [arns[2], arns[0]]
    pages = list(
        client.get_paginator("describe_project_versions").paginate(
            ProjectArn=project, PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(page["ProjectVersionDescriptions"]) for page in pages] == [2, 1]
    paged = [v["ProjectVersionArn"] for page in pages for v in page["ProjectVersionDescriptions"]]
    assert paged == arns[::-1]
    with pytest.raises(ClientError) as forged:
        client.describe_project_versions(ProjectArn=project, NextToken="forged")
    assert _code(forged) == "InvalidPaginationTokenException"


def test_a_trained_version_is_deleted(server):
    client = _client(server)
    project = _create_project(client, "deleted")
    arn = client.create_project_version(**_version_request(project))["ProjectVersionArn"]
    # No manifest exists: the training fails, and the version can then be deleted.
    version = _wait_for_training_end(client, project, "v1")
    assert version["Status"] == "TRAINING_FAILED"
    assert version["StatusMessage"]
    assert version["BillableTrainingTimeInSeconds"] >= 0
    assert "TrainingEndTimestamp" in version
    assert client.delete_project_version(ProjectVersionArn=arn)["Status"] == "DELETING"
    assert _versions(client, project) == []
    with pytest.raises(ClientError) as gone:
        client.delete_project_version(ProjectVersionArn=arn)
    assert _code(gone) == "ResourceNotFoundException"


def test_a_restarted_server_fails_the_versions_that_were_training(server, tmp_path, moto_server):
    client = _client(server)
    project = _create_project(client, "interrupted")
    version = _registry(tmp_path).create_version(project, _version_request(project))
    assert _versions(client, project)[0]["Status"] == "TRAINING_IN_PROGRESS"
    restarted, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            "--allowed_locations=*",
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={moto_server}",
        ]
    )
    try:
        (failed,) = _versions(_client(endpoint), project)
    finally:
        restarted.shutdown()
        restarted.server_close()
    assert failed["ProjectVersionArn"] == version.arn
    assert failed["Status"] == "TRAINING_FAILED"
    assert failed["StatusMessage"] == RESTART_MESSAGE
    assert "TrainingEndTimestamp" in failed


def test_adapters_of_an_older_base_model_are_deprecated_or_expired(server, tmp_path):
    client = _client(server)
    project = _create_project(client, "aging")
    registry = _registry(tmp_path)
    current = _trained(registry, project, "current")
    deprecated = _trained(registry, project, "deprecated", base_model_version="beam-moderation-0.1")
    expired = _trained(
        registry,
        project,
        "expired",
        base_model_version="beam-moderation-0.1",
        backbone_version="efficientnet-lite0-tf-0.0.1",
    )
    # Stored as trained; the status is told against the model the server runs now.
    with registry._connection() as db:
        stored = {row[0] for row in db.execute("SELECT status FROM project_versions")}
    assert stored == {"TRAINING_COMPLETED"}
    versions = {v["ProjectVersionArn"]: v for v in _versions(client, project)}
    assert versions[current]["Status"] == "TRAINING_COMPLETED"
    assert versions[current]["StatusMessage"] == "The adapter is trained."
    assert versions[deprecated]["Status"] == "DEPRECATED"
    assert "still applies" in versions[deprecated]["StatusMessage"]
    assert versions[expired]["Status"] == "EXPIRED"
    assert "ignored" in versions[expired]["StatusMessage"]
    for version in versions.values():
        assert version["EvaluationResult"]["F1Score"] == pytest.approx(0.9)
        summary = version["EvaluationResult"]["Summary"]["S3Object"]
        assert summary["Bucket"] == "out-bucket"
        assert summary["Name"].endswith("/evaluation-summary.json")
        assert version["BillableTrainingTimeInSeconds"] == 42
    assert versions[current]["BaseModelVersion"] == BASE_MODEL_VERSION
    assert versions[deprecated]["BaseModelVersion"] == "beam-moderation-0.1"


# Adapters at inference.


def test_jobs_and_images_refuse_adapters_that_are_missing_or_not_ready(
    server, tmp_path, sample_photos
):
    client = _client(server)
    project = _create_project(client, "inference")
    registry = _registry(tmp_path)
    training = registry.create_version(project, _version_request(project, "training")).arn
    failed = registry.create_version(project, _version_request(project, "failed")).arn
    registry.mark_training_failed(failed, "Label Alcohol has 3 examples.")
    unknown = training.rsplit("/", 1)[0] + "/1"
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        image = {"Bytes": f.read()}
    for arn, code, fragment in (
        (unknown, "ResourceNotFoundException", "does not exist"),
        (training, "ResourceNotReadyException", "still training"),
        (failed, "ResourceNotReadyException", "Label Alcohol has 3 examples."),
    ):
        with pytest.raises(ClientError) as job:
            client.start_media_analysis_job(
                OperationsConfig={"DetectModerationLabels": {"ProjectVersion": arn}},
                Input={"S3Object": {"Bucket": "in-bucket", "Name": "manifests/batch.jsonl"}},
                OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
            )
        assert (_code(job), arn) == (code, arn)
        assert fragment in _message(job)
        with pytest.raises(ClientError) as detect:
            client.detect_moderation_labels(Image=image, ProjectVersion=arn)
        assert (_code(detect), arn) == (code, arn)
    assert client.list_media_analysis_jobs()["MediaAnalysisJobs"] == []


@pytest.mark.slow
def test_an_expired_adapter_is_ignored_by_detect_moderation_labels(server, tmp_path, sample_photos):
    client = _client(server)
    project = _create_project(client, "expired")
    arn = _trained(_registry(tmp_path), project, "old", backbone_version="gone-backbone-0.1")
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        image = {"Bytes": f.read()}
    base = client.detect_moderation_labels(Image=image, MinConfidence=0)
    adapted = client.detect_moderation_labels(Image=image, MinConfidence=0, ProjectVersion=arn)
    assert "ProjectVersion" not in adapted
    assert adapted["ModerationLabels"] == base["ModerationLabels"]
    assert adapted["ModerationModelVersion"] == base["ModerationModelVersion"]


def test_job_commands_carry_the_adapter_unless_it_expired(tmp_path):
    path = str(tmp_path / "jobs.sqlite")
    projects = ProjectRegistry(
        path, base_model_version=BASE_MODEL_VERSION, backbone_version=BACKBONE_VERSION
    )
    project = projects.create_project("jobs", auto_update="DISABLED").arn
    deprecated = _trained(projects, project, "deprecated", base_model_version="old-base")
    expired = _trained(projects, project, "expired", backbone_version="old-backbone")
    training = projects.create_version(project, _version_request(project, "training")).arn
    registry = JobRegistry(path)
    runner = JobRunner(
        registry,
        JobSettings(components="open_nsfw", backbone="none"),
        s3_client=None,
        kms_client=None,
        projects=projects,
    )

    def job(arn: str):
        request = {
            "OperationsConfig": {"DetectModerationLabels": {"ProjectVersion": arn}},
            "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
            "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        }
        return registry.start(request)[0]

    command = runner.command(job(deprecated))
    assert "--adapter=s3://out-bucket/results/adapters/deprecated/" in command
    assert f"--project_version={deprecated}" in command
    command = runner.command(job(expired))
    assert not any(part.startswith(("--adapter", "--project_version")) for part in command)
    # An adapter that cannot be applied fails the job before anything runs.
    not_ready = job(training)
    runner.submit(not_ready)
    failure = registry.get(not_ready.job_id).to_api()["FailureDetails"]
    assert failure["Code"] == "RESOURCE_NOT_READY"
    gone = job(training.rsplit("/", 1)[0] + "/1")
    runner.submit(gone)
    assert registry.get(gone.job_id).to_api()["FailureDetails"]["Code"] == "RESOURCE_NOT_FOUND"


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_aws_cli_lists_adapter_projects(server):
    arn = _create_project(_client(server), "from-the-cli")
    environment = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=API_KEY_ID,
        AWS_SECRET_ACCESS_KEY=API_SECRET,
        AWS_DEFAULT_REGION="us-east-1",
    )
    environment.pop("AWS_SESSION_TOKEN", None)
    environment.pop("AWS_SECURITY_TOKEN", None)
    done = subprocess.run(
        [
            "aws",
            "rekognition",
            "describe-projects",
            "--features",
            "CONTENT_MODERATION",
            "--endpoint-url",
            server,
            "--output",
            "json",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (project,) = json.loads(done.stdout)["ProjectDescriptions"]
    assert project["ProjectArn"] == arn
    assert project["Feature"] == "CONTENT_MODERATION"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("training.train_adapter") is None,
    reason="training.train_adapter is not written yet",
)
def test_a_missing_training_manifest_fails_the_training(server, tmp_path, moto_server):
    # Adapters read the backbone's embedding: this server runs the default backbone.
    trainer_server, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'with-backbone.sqlite'}",
            "--allowed_locations=in-bucket,out-bucket/results",
            "--components=open_nsfw",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
        ]
    )
    try:
        client = _client(endpoint)
        project = _create_project(client, "missing-manifest")
        missing = {"Assets": [_asset("manifests/missing.jsonl")]}
        client.create_project_version(**_version_request(project, TrainingData=missing))
        version = _wait_for_training_end(client, project, "v1")
    finally:
        trainer_server.shutdown()
        trainer_server.server_close()
    assert version["Status"] == "TRAINING_FAILED"
    assert "s3://in-bucket/manifests/missing.jsonl" in version["StatusMessage"]
    assert "EvaluationResult" not in version


@pytest.mark.slow
def test_a_trained_adapter_answers_for_images_and_jobs(tmp_path, s3, moto_server, sample_photos):
    """An adapter artifact as training writes it (here: one that always sees Alcohol), applied
    by DetectModerationLabels and by a bulk analysis job on a server with the default backbone."""
    import numpy as np

    from model.adapter import Adapter, AdapterSpec, build_adapter_model
    from model.efficientnet_lite import EMBEDDING_SIZE
    from storage.outputs import OutputStore
    from storage.settings import S3Settings

    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    base_model_version = moderation_model_version("open_nsfw", None)
    spec = AdapterSpec(
        labels=("Alcohol",),
        custom_labels={},
        embedding_size=EMBEDDING_SIZE,
        base_model_version=base_model_version,
        backbone_version=Backbone.version_for(None),
    )
    model = build_adapter_model(spec.feature_size, 1)
    mean, variance, count, kernel, bias = model.get_weights()
    model.set_weights(
        [np.zeros_like(mean), np.ones_like(variance), count, np.zeros_like(kernel), bias + 10.0]
    )
    folder = "s3://out-bucket/results/adapters/always-alcohol/"
    settings = S3Settings(endpoint_url=moto_server, region_name="us-east-1")
    Adapter(spec, model).save(folder, OutputStore(settings))

    path = str(tmp_path / "jobs.sqlite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
        httpd, endpoint = start_api_server(
            [
                f"--registry={path}",
                "--allowed_locations=in-bucket,out-bucket/results",
                "--components=open_nsfw",
                f"--s3_endpoint_url={moto_server}",
                "--s3_region_name=us-east-1",
            ]
        )
    try:
        client = _client(endpoint)
        project = _create_project(client, "always-alcohol")
        registry = _registry(tmp_path)
        version = registry.create_version(project, _version_request(project))
        registry.mark_trained(
            version.arn,
            status_message="The adapter is trained.",
            billable_secs=1,
            f1=1.0,
            summary_bucket="out-bucket",
            summary_name="results/adapters/always-alcohol/evaluation-summary.json",
            adapter_uri=folder,
            base_model_version=base_model_version,
            backbone_version=Backbone.version_for(None),
        )
        assert _versions(client, project)[0]["Status"] == "TRAINING_COMPLETED"
        with open(sample_photos["chelsea.jpg"], "rb") as f:
            data = f.read()
        base = client.detect_moderation_labels(Image={"Bytes": data})
        assert "ProjectVersion" not in base
        assert "Alcohol" not in [label["Name"] for label in base["ModerationLabels"]]
        adapted = client.detect_moderation_labels(Image={"Bytes": data}, ProjectVersion=version.arn)
        assert adapted["ProjectVersion"] == version.arn
        assert "Alcohol" in [label["Name"] for label in adapted["ModerationLabels"]]

        s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=data)
        line = json.dumps({"source-ref": "s3://in-bucket/images/chelsea.jpg"}) + "\n"
        s3.put_object(Bucket="in-bucket", Key="manifests/batch.jsonl", Body=line)
        job_id = client.start_media_analysis_job(
            OperationsConfig={"DetectModerationLabels": {"ProjectVersion": version.arn}},
            Input={"S3Object": {"Bucket": "in-bucket", "Name": "manifests/batch.jsonl"}},
            OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        )["JobId"]
        deadline = time.monotonic() + 600
        while (job := client.get_media_analysis_job(JobId=job_id))["Status"] not in (
            "SUCCEEDED",
            "FAILED",
        ):
            assert time.monotonic() < deadline
            time.sleep(1)
        assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
        assert job["OperationsConfig"]["DetectModerationLabels"]["ProjectVersion"] == version.arn
        results = job["Results"]["S3Object"]
        body = s3.get_object(Bucket=results["Bucket"], Key=results["Name"])["Body"].read()
        (result,) = [json.loads(line) for line in body.splitlines()]
        response = result["detect-moderation-labels"]
        assert "Alcohol" in [label["Name"] for label in response["ModerationLabels"]]
        assert response["ProjectVersion"] == version.arn
    finally:
        httpd.shutdown()
        httpd.server_close()

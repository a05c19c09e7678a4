"""Jobs submitted to Dataflow through the Flex Template launch API (``--submit_to=dataflow``).

Dataflow is played by ``tests/fake_dataflow.py`` (HTTP, Dataflow's request and answer shapes,
the template's parameter checks); the job itself runs for real from ``templates/main.py``
against the moto S3 server.
"""

from __future__ import annotations

import json

import pytest

from service.dataflow import DataflowClient, DataflowError, DataflowSettings, dataflow_job_name
from service.flags import dataflow_settings as _dataflow_settings
from service.flags import flag_parser as _parser
from service.flags import runner_flags as _runner_flags
from service.jobs import JobRunner, JobSettings
from service.registry import JobRegistry
from storage.settings import S3Settings
from tests.fake_dataflow import FakeDataflow

TOKEN = "ya29.test-token"


@pytest.fixture
def dataflow(moto_server):
    fake = FakeDataflow(
        TOKEN,
        runner_flags=[
            "--runner=DirectRunner",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
        ],
    )
    yield fake
    fake.close()


def _runner(tmp_path, s3, kms, moto_server, dataflow, token=TOKEN) -> JobRunner:
    settings = JobSettings(
        s3=S3Settings(endpoint_url=moto_server, region_name="us-east-1"),
        components="open_nsfw",
        backbone="none",
        dataflow=DataflowSettings(
            project="my-project",
            region="europe-west1",
            template="gs://templates/beam-moderation.json",
            api_root=dataflow.url,
            environment={"maxWorkers": 3, "machineType": "n1-standard-4"},
            poll_interval_secs=0.2,
        ),
    )
    client = DataflowClient(settings.dataflow, token=lambda: token)
    registry = JobRegistry(str(tmp_path / "jobs.sqlite"))
    return JobRunner(registry, settings, s3_client=s3, kms_client=kms, dataflow_client=client)


def _request(manifest_key: str = "manifests/batch.jsonl") -> dict:
    return {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 60.0}},
        "Input": {"S3Object": {"Bucket": "in-bucket", "Name": manifest_key}},
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    }


def _put_manifest(s3, sample_photos, refs: list[str]) -> None:
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=f.read())
    body = "".join(json.dumps({"source-ref": ref}) + "\n" for ref in refs)
    s3.put_object(Bucket="in-bucket", Key="manifests/batch.jsonl", Body=body)


def _run(runner: JobRunner, request: dict) -> dict:
    job, _ = runner.registry.start(request)
    runner.submit(job)
    runner.wait(job.job_id, timeout=300)
    return runner.registry.get(job.job_id).to_api()


@pytest.mark.slow
def test_a_job_launched_on_dataflow_succeeds_with_its_outputs(
    tmp_path, s3, kms, moto_server, dataflow, sample_photos
):
    _put_manifest(s3, sample_photos, ["s3://in-bucket/images/chelsea.jpg"] * 2)
    runner = _runner(tmp_path, s3, kms, moto_server, dataflow)
    api = _run(runner, _request())
    assert api["Status"] == "SUCCEEDED", api.get("FailureDetails")
    results = s3.get_object(Bucket="out-bucket", Key=api["Results"]["S3Object"]["Name"])
    assert len(results["Body"].read().splitlines()) == 2

    (launch,) = dataflow.launches
    parameter = launch["launchParameter"]
    assert parameter["jobName"] == dataflow_job_name(api["JobId"])
    assert parameter["containerSpecGcsPath"] == "gs://templates/beam-moderation.json"
    assert parameter["environment"] == {"maxWorkers": 3, "machineType": "n1-standard-4"}
    assert parameter["parameters"]["manifest"] == "s3://in-bucket/manifests/batch.jsonl"
    assert parameter["parameters"]["output"] == f"s3://out-bucket/results/{api['JobId']}"
    assert parameter["parameters"]["min_confidence"] == "60.0"
    # Credentials and the server's S3 endpoint never travel in the launch request.
    assert not any(name.startswith("s3_") for name in parameter["parameters"])


@pytest.mark.slow
def test_a_dataflow_job_that_fails_is_failed_with_dataflows_reason(
    tmp_path, s3, kms, moto_server, dataflow, sample_photos
):
    _put_manifest(s3, sample_photos, ["s3://in-bucket/images/chelsea.jpg"])
    runner = _runner(tmp_path, s3, kms, moto_server, dataflow)
    missing = "s3://in-bucket/no-such-backbone"
    runner.settings = JobSettings(**{**runner.settings.__dict__, "backbone": missing})
    api = _run(runner, _request())
    assert api["Status"] == "FAILED"
    assert api["FailureDetails"]["Code"] == "INTERNAL_ERROR"
    message = api["FailureDetails"]["Message"]
    assert "ended in JOB_STATE_FAILED" in message
    assert missing in message


def test_parameters_the_template_refuses_fail_the_job_at_launch(
    tmp_path, s3, kms, moto_server, dataflow, sample_photos
):
    _put_manifest(s3, sample_photos, ["s3://in-bucket/images/chelsea.jpg"])
    runner = _runner(tmp_path, s3, kms, moto_server, dataflow)
    runner.settings = JobSettings(**{**runner.settings.__dict__, "components": "no-such-model"})
    api = _run(runner, _request())
    assert api["Status"] == "FAILED"
    message = api["FailureDetails"]["Message"]
    assert message.startswith("Dataflow did not launch the job: Dataflow answered 400")
    assert "components" in message


def test_a_refused_launch_fails_the_job_with_dataflows_answer(
    tmp_path, s3, kms, moto_server, dataflow, sample_photos
):
    _put_manifest(s3, sample_photos, ["s3://in-bucket/images/chelsea.jpg"])
    runner = _runner(tmp_path, s3, kms, moto_server, dataflow, token="expired")
    api = _run(runner, _request())
    assert api["Status"] == "FAILED"
    assert api["FailureDetails"]["Message"].startswith("Dataflow did not launch the job:")
    assert "401" in api["FailureDetails"]["Message"]
    assert dataflow.launches == []


def test_the_job_name_follows_dataflows_pattern():
    assert dataflow_job_name("AbC_123-x") == "moderation-abc-123-x"


def test_an_unreachable_dataflow_is_given_up_after_repeated_failures():
    settings = DataflowSettings(
        project="p",
        region="r",
        template="gs://t/spec.json",
        api_root="http://127.0.0.1:9",  # nothing listens on the discard port
        max_status_failures=3,
    )
    client = DataflowClient(settings, token=lambda: TOKEN)
    sleeps: list[float] = []
    with pytest.raises(DataflowError, match="could not be read 3 times"):
        client.wait("some-job", sleep=sleeps.append)
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], ("--runner=DirectRunner",)),
        (
            ["--job_args=--direct_num_workers=2"],
            ("--runner=DirectRunner", "--direct_num_workers=2"),
        ),
        (["--job_args=--runner=FnApiRunner"], ("--runner=FnApiRunner",)),
        (
            [
                "--submit_to=portable",
                "--job_endpoint=flink:8099",
                "--job_args=--environment_type=EXTERNAL --environment_config=localhost:50000",
            ],
            (
                "--runner=PortableRunner",
                "--job_endpoint=flink:8099",
                "--environment_type=EXTERNAL",
                "--environment_config=localhost:50000",
            ),
        ),
    ],
)
def test_the_submission_target_gives_the_runner_flags(flags, expected):
    args = _parser().parse_args(["--allowed_locations=*", *flags])
    assert _runner_flags(args) == expected
    assert _dataflow_settings(args) is None


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--submit_to=portable"], "--job_endpoint"),
        (
            ["--submit_to=dataflow", "--dataflow_project=p"],
            "--dataflow_region, --dataflow_template",
        ),
        (
            [
                "--submit_to=dataflow",
                "--dataflow_project=p",
                "--dataflow_region=r",
                "--dataflow_template=/local/spec.json",
            ],
            "gs://",
        ),
        (
            [
                "--submit_to=dataflow",
                "--dataflow_project=p",
                "--dataflow_region=r",
                "--dataflow_template=gs://t/spec.json",
                "--dataflow_environment=[1]",
            ],
            "JSON object",
        ),
    ],
)
def test_an_incomplete_submission_target_is_refused_naming_the_flag(flags, message):
    args = _parser().parse_args(["--allowed_locations=*", *flags])
    with pytest.raises(SystemExit, match=message):
        _runner_flags(args)
        _dataflow_settings(args)


def test_dataflow_settings_come_from_the_flags():
    args = _parser().parse_args(
        [
            "--allowed_locations=*",
            "--submit_to=dataflow",
            "--dataflow_project=p",
            "--dataflow_region=europe-west1",
            "--dataflow_template=gs://t/spec.json",
            '--dataflow_environment={"maxWorkers": 50}',
        ]
    )
    settings = _dataflow_settings(args)
    assert (settings.project, settings.region, settings.template) == (
        "p",
        "europe-west1",
        "gs://t/spec.json",
    )
    assert settings.environment == {"maxWorkers": 50}

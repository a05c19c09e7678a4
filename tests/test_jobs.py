"""Jobs run in their own processes against a moto S3 server: success, refusal, a kill, a restart."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from service.jobs import JobRunner, JobSettings, output_prefix
from service.registry import JobRegistry
from storage.settings import S3Settings

pytestmark = pytest.mark.slow


def _request(manifest_key: str = "manifests/batch.jsonl", **overrides) -> dict:
    request = {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
        "Input": {"S3Object": {"Bucket": "in-bucket", "Name": manifest_key}},
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    }
    request.update(overrides)
    return request


@pytest.fixture
def runner(tmp_path, s3, kms, moto_server):
    settings = JobSettings(
        s3=S3Settings(
            endpoint_url=moto_server,
            access_key_id="testing",
            secret_access_key="testing",
            region_name="us-east-1",
        ),
        components="open_nsfw",
        backbone="none",
    )
    registry = JobRegistry(str(tmp_path / "jobs.sqlite"))
    return JobRunner(registry, settings, s3_client=s3, kms_client=kms)


def _put_images(s3, sample_photos, lines: int) -> None:
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=f.read())
    line = json.dumps({"source-ref": "s3://in-bucket/images/chelsea.jpg"}) + "\n"
    s3.put_object(Bucket="in-bucket", Key="manifests/batch.jsonl", Body=line * lines)


def test_a_job_runs_to_success_with_its_outputs_where_the_registry_says(runner, s3, sample_photos):
    _put_images(s3, sample_photos, lines=3)
    job, _ = runner.registry.start(_request())
    runner.submit(job)
    runner.wait(job.job_id, timeout=300)
    api = runner.registry.get(job.job_id).to_api()
    assert api["Status"] == "SUCCEEDED", api.get("FailureDetails")
    assert api["Results"]["S3Object"] == {
        "Bucket": "out-bucket",
        "Name": f"results/{job.job_id}/results.jsonl",
    }
    assert api["Results"]["ModelVersions"]["Moderation"] == (
        "beam-moderation-0.2.0/open_nsfw-0.1.0"
    )
    summary_key = api["ManifestSummary"]["S3Object"]["Name"]
    summary = json.loads(s3.get_object(Bucket="out-bucket", Key=summary_key)["Body"].read())
    assert summary["statistics"]["valid-json-lines"] == 3
    results = s3.get_object(Bucket="out-bucket", Key=api["Results"]["S3Object"]["Name"])
    assert len(results["Body"].read().splitlines()) == 3
    assert api["CompletionTimestamp"] >= api["CreationTimestamp"]


def test_a_job_whose_manifest_is_missing_fails_without_running(runner, s3):
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    job, _ = runner.registry.start(_request("manifests/nowhere.jsonl"))
    runner.submit(job)
    api = runner.registry.get(job.job_id).to_api()
    assert api["Status"] == "FAILED"
    assert api["FailureDetails"]["Code"] == "INVALID_S3_OBJECT"
    assert runner.process_id(job.job_id) is None


def test_a_killed_job_fails_with_the_reason_and_publishes_nothing(runner, s3, sample_photos):
    _put_images(s3, sample_photos, lines=2000)
    job, _ = runner.registry.start(_request())
    runner.submit(job)
    deadline = time.monotonic() + 120
    while runner.registry.get(job.job_id).status != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(5)  # into the run: the model is loading or the images are being analysed
    os.kill(runner.process_id(job.job_id), signal.SIGKILL)
    runner.wait(job.job_id, timeout=60)
    api = runner.registry.get(job.job_id).to_api()
    assert api["Status"] == "FAILED"
    assert api["FailureDetails"]["Code"] == "INTERNAL_ERROR"
    assert api["FailureDetails"]["Message"].startswith("The job's process was killed by signal 9.")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="out-bucket").get("Contents", [])]
    assert f"{output_prefix(runner.registry.get(job.job_id))}/results.jsonl" not in keys
    assert not any(key.endswith("manifest-summary.json") for key in keys)


def test_a_restarted_server_fails_the_jobs_it_did_not_finish(runner, tmp_path):
    job, _ = runner.registry.start(_request())
    runner.registry.mark_in_progress(job.job_id, worker_pid=os.getpid())
    restarted = JobRunner(
        JobRegistry(runner.registry.path), runner.settings, s3_client=None, kms_client=None
    )
    assert restarted.recover() == [job.job_id]
    failure = restarted.registry.get(job.job_id).to_api()["FailureDetails"]
    assert failure["Code"] == "INTERNAL_ERROR"
    assert "server restarted" in failure["Message"]


def test_the_command_carries_no_secret(runner):
    job, _ = runner.registry.start(_request(KmsKeyId="alias/results"))
    command = runner.command(job)
    assert "--output=s3://out-bucket/results/" + job.job_id in command
    assert "--output_kms_key_id=alias/results" in command
    assert not any("testing" in part and "secret" in part for part in command)
    assert not any(part.startswith("--s3_secret_access_key") for part in command)

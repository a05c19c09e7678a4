"""The API server with the real boto3 client and the real AWS CLI, images in a moto S3 server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import API_KEY_ID as KEY_ID
from tests.conftest import API_SECRET as SECRET
from tests.conftest import rekognition_client as _client

pytestmark = pytest.mark.slow


def _put_manifest(s3, sample_photos, lines: int = 2) -> None:
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=f.read())
    line = json.dumps({"source-ref": "s3://in-bucket/images/chelsea.jpg"}) + "\n"
    s3.put_object(Bucket="in-bucket", Key="manifests/batch.jsonl", Body=line * lines + "{bad\n")


def _start(client, **overrides):
    arguments = {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50}},
        "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifests/batch.jsonl"}},
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    }
    arguments.update(overrides)
    return client.start_media_analysis_job(**arguments)


def _wait(client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_media_analysis_job(JobId=job_id)
        if job["Status"] in ("SUCCEEDED", "FAILED"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def test_a_job_from_boto3_to_results(server, s3, sample_photos):
    _put_manifest(s3, sample_photos)
    client = _client(server)
    job_id = _start(client, JobName="nightly", ClientRequestToken="token-1")["JobId"]
    assert len(job_id) == 64
    # A retry with the same token and parameters is the same job.
    assert _start(client, JobName="nightly", ClientRequestToken="token-1")["JobId"] == job_id
    job = _wait(client, job_id)
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    assert job["JobName"] == "nightly"
    results = job["Results"]["S3Object"]
    assert results == {"Bucket": "out-bucket", "Name": f"results/{job_id}/results.jsonl"}
    assert job["Results"]["ModelVersions"]["Moderation"] == "beam-moderation-0.2.0/open_nsfw-0.1.0"
    summary_object = job["ManifestSummary"]["S3Object"]
    summary = json.loads(
        s3.get_object(Bucket=summary_object["Bucket"], Key=summary_object["Name"])["Body"].read()
    )
    assert summary["statistics"] == {
        "total-json-lines": 3,
        "valid-json-lines": 2,
        "invalid-json-lines": 1,
    }
    lines = s3.get_object(Bucket="out-bucket", Key=results["Name"])["Body"].read().splitlines()
    assert len(lines) == 2
    with pytest.raises(ClientError) as mismatch:
        _start(client, JobName="other", ClientRequestToken="token-1")
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"


def test_listing_pages_newest_first(server, s3, sample_photos):
    _put_manifest(s3, sample_photos)
    client = _client(server)
    ids = [_start(client, ClientRequestToken=f"t{i}")["JobId"] for i in range(3)]
    for job_id in ids:
        _wait(client, job_id)
    first = client.list_media_analysis_jobs(MaxResults=2)
    assert len(first["MediaAnalysisJobs"]) == 2 and "NextToken" in first
    second = client.list_media_analysis_jobs(MaxResults=2, NextToken=first["NextToken"])
    listed = [j["JobId"] for j in first["MediaAnalysisJobs"] + second["MediaAnalysisJobs"]]
    assert listed == list(reversed(ids))
    assert "NextToken" not in second
    with pytest.raises(ClientError) as bad:
        client.list_media_analysis_jobs(MaxResults=2, NextToken="forged")
    assert bad.value.response["Error"]["Code"] == "InvalidPaginationTokenException"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"JobName": "x" * 65}, "jobName"),
        ({"JobName": "has space"}, "jobName"),
        ({"OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 101}}}, "minConfidence"),
        ({"OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "a b"}}, "s3KeyPrefix"),
    ],
)
def test_invalid_parameters_name_the_field(server, overrides, field):
    with pytest.raises(ClientError) as error:
        _start(_client(server), **overrides)
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    assert field in error.value.response["Error"]["Message"]


def test_failures_get_their_codes(server, s3, sample_photos):
    client = _client(server)
    missing = _start(client, Input={"S3Object": {"Bucket": "in-bucket", "Name": "nope.jsonl"}})
    job = client.get_media_analysis_job(JobId=missing["JobId"])
    assert job["Status"] == "FAILED"
    assert job["FailureDetails"]["Code"] == "INVALID_S3_OBJECT"
    s3.put_object(Bucket="in-bucket", Key="empty.jsonl", Body=b"")
    empty = _start(client, Input={"S3Object": {"Bucket": "in-bucket", "Name": "empty.jsonl"}})
    assert client.get_media_analysis_job(JobId=empty["JobId"])["FailureDetails"]["Code"] == (
        "INVALID_MANIFEST"
    )
    _put_manifest(s3, sample_photos)
    denied = _start(client, OutputConfig={"S3Bucket": "elsewhere", "S3KeyPrefix": "x"})
    assert client.get_media_analysis_job(JobId=denied["JobId"])["FailureDetails"]["Code"] == (
        "ACCESS_DENIED"
    )
    kms = _start(client, KmsKeyId="alias/does-not-exist")
    assert client.get_media_analysis_job(JobId=kms["JobId"])["FailureDetails"]["Code"] == (
        "INVALID_KMS_KEY"
    )
    with pytest.raises(ClientError) as unknown:
        client.get_media_analysis_job(JobId="0" * 64)
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_wrong_credentials_are_refused(server):
    with pytest.raises(ClientError) as unknown_key:
        _client(server, key_id="AKIDUNKNOWN").list_media_analysis_jobs()
    assert unknown_key.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as wrong_secret:
        _client(server, secret="not-the-secret").list_media_analysis_jobs()
    assert wrong_secret.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_detect_moderation_labels_with_bytes_and_s3(server, s3, sample_photos):
    client = _client(server)
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        data = f.read()
    response = client.detect_moderation_labels(Image={"Bytes": data}, MinConfidence=0)
    assert response["ModerationModelVersion"] == "beam-moderation-0.2.0/open_nsfw-0.1.0"
    assert [label["Name"] for label in response["ModerationLabels"]] == ["Explicit"]
    s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=data)
    from_s3 = client.detect_moderation_labels(
        Image={"S3Object": {"Bucket": "in-bucket", "Name": "images/chelsea.jpg"}}
    )
    assert from_s3["ModerationLabels"] == []
    with pytest.raises(ClientError) as not_an_image:
        client.detect_moderation_labels(Image={"Bytes": b"not an image at all"})
    assert not_an_image.value.response["Error"]["Code"] == "InvalidImageFormatException"
    with pytest.raises(ClientError) as missing:
        client.detect_moderation_labels(
            Image={"S3Object": {"Bucket": "in-bucket", "Name": "images/none.jpg"}}
        )
    assert missing.value.response["Error"]["Code"] == "InvalidS3ObjectException"


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_aws_cli_starts_gets_and_lists(server, s3, sample_photos, tmp_path):
    _put_manifest(s3, sample_photos)
    environment = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
    )
    environment.pop("AWS_SESSION_TOKEN", None)
    environment.pop("AWS_SECURITY_TOKEN", None)

    def aws(*args: str) -> dict:
        done = subprocess.run(
            ["aws", "rekognition", *args, "--endpoint-url", server, "--output", "json"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    started = aws(
        "start-media-analysis-job",
        "--operations-config",
        "DetectModerationLabels={MinConfidence=50}",
        "--input",
        "S3Object={Bucket=in-bucket,Name=manifests/batch.jsonl}",
        "--output-config",
        "S3Bucket=out-bucket,S3KeyPrefix=results",
    )
    job_id = started["JobId"]
    deadline = time.monotonic() + 300
    while (job := aws("get-media-analysis-job", "--job-id", job_id))["Status"] not in (
        "SUCCEEDED",
        "FAILED",
    ):
        assert time.monotonic() < deadline
        time.sleep(1)
    assert job["Status"] == "SUCCEEDED", job
    listed = aws("list-media-analysis-jobs", "--max-results", "10")
    assert [j["JobId"] for j in listed["MediaAnalysisJobs"]] == [job_id]


def test_a_killed_job_fails_and_a_restarted_server_keeps_the_records(
    server, s3, sample_photos, tmp_path, moto_server
):
    import signal

    from service.server import build_server

    _put_manifest(s3, sample_photos, lines=2000)
    client = _client(server)
    done = _start(client, Input={"S3Object": {"Bucket": "in-bucket", "Name": "nope.jsonl"}})
    running = _start(client)["JobId"]
    deadline = time.monotonic() + 120
    while client.get_media_analysis_job(JobId=running)["Status"] != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)
    registry_path = str(tmp_path / "jobs.sqlite")
    from service.registry import JobRegistry

    pid = JobRegistry(registry_path).get(running).worker_pid
    os.kill(pid, signal.SIGKILL)
    job = _wait(client, running, timeout=60)
    assert job["Status"] == "FAILED"
    assert job["FailureDetails"]["Code"] == "INTERNAL_ERROR"
    assert "killed by signal 9" in job["FailureDetails"]["Message"]
    # The server keeps serving.
    assert len(client.list_media_analysis_jobs()["MediaAnalysisJobs"]) == 2

    # A second server on the same registry: the records are there.
    restarted = build_server(
        [
            "--port=0",
            f"--registry={registry_path}",
            "--allowed_locations=*",
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={moto_server}",
        ]
    )
    thread = threading.Thread(target=restarted.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = restarted.server_address[:2]
        again = _client(f"http://{host}:{port}")
        assert again.get_media_analysis_job(JobId=running)["Status"] == "FAILED"
        assert again.get_media_analysis_job(JobId=done["JobId"])["Status"] == "FAILED"
    finally:
        restarted.shutdown()
        restarted.server_close()


def test_jobs_read_images_only_from_allowed_s3_locations(server, s3, sample_photos):
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        data = f.read()
    s3.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=data)
    s3.put_object(Bucket="elsewhere", Key="chelsea.jpg", Body=data)
    lines = [
        "s3://in-bucket/images/chelsea.jpg",
        "s3://elsewhere/chelsea.jpg",
        sample_photos["chelsea.jpg"],  # a file on the server's own disk
    ]
    s3.put_object(
        Bucket="in-bucket",
        Key="manifests/mixed.jsonl",
        Body="".join(json.dumps({"source-ref": ref}) + "\n" for ref in lines),
    )
    client = _client(server)
    job_id = _start(
        client, Input={"S3Object": {"Bucket": "in-bucket", "Name": "manifests/mixed.jsonl"}}
    )["JobId"]
    job = _wait(client, job_id)
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    summary_object = job["ManifestSummary"]["S3Object"]
    summary = json.loads(
        s3.get_object(Bucket=summary_object["Bucket"], Key=summary_object["Name"])["Body"].read()
    )
    codes = {error["line-numer"]: error["code"] for error in summary["errors"]}
    assert codes == {2: "ACCESS_DENIED", 3: "UNSUPPORTED_SCHEME"}


def test_job_outputs_are_encrypted_with_the_jobs_kms_key(server, s3, kms, sample_photos):
    _put_manifest(s3, sample_photos)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    client = _client(server)
    job = _wait(client, _start(client, KmsKeyId=key_id)["JobId"])
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    assert job["KmsKeyId"] == key_id
    for output in (job["Results"]["S3Object"], job["ManifestSummary"]["S3Object"]):
        head = s3.head_object(Bucket=output["Bucket"], Key=output["Name"])
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(key_id)


def _signed_post(endpoint: str, target: str, body: bytes):
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "rekognition", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        endpoint + "/", data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_unknown_operations_and_unsigned_requests(server):
    status, body = _signed_post(server, "RekognitionService.DetectLabels", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    import urllib.error
    import urllib.request

    unsigned = urllib.request.Request(
        server + "/",
        data=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.ListMediaAnalysisJobs",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=30)
    assert json.loads(refused.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_request_bodies_have_a_size_limit(server):
    from service.flags import DEFAULT_MAX_BODY_BYTES

    big = json.dumps({"Image": {"Bytes": "A" * DEFAULT_MAX_BODY_BYTES}}).encode()
    status, body = _signed_post(server, "RekognitionService.DetectModerationLabels", big)
    assert status == 413
    assert str(DEFAULT_MAX_BODY_BYTES) in body["Message"]


def test_the_server_process_logs_the_service_info_lines(tmp_path):
    """``python -m service.server`` shows the service package's INFO lines on stderr: where it
    serves, then a request refused for its signature (service.auth)."""
    import re

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.server",
            "--port=0",
            "--allowed_locations=*",
            f"--registry={tmp_path / 'jobs.sqlite'}",
            "--components=open_nsfw",
            "--backbone=none",
        ],
        env={**os.environ, "BEAM_MODERATION_ACCESS_KEYS": f"{KEY_ID}:{SECRET}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)

    def logged(pattern: str) -> re.Match:
        deadline = time.monotonic() + 60
        while True:
            for line in list(lines):
                if match := re.search(pattern, line):
                    return match
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)

    threading.Thread(target=read_stderr, daemon=True).start()

    try:
        serving = logged(r" INFO service\.server: Serving the Rekognition API on (http://\S+)")
        with pytest.raises(ClientError):
            _client(serving.group(1), secret="not-the-secret").list_media_analysis_jobs()
        logged(r" INFO service\.auth: Rejected a request with a wrong signature")
    finally:
        process.kill()
        process.wait(10)

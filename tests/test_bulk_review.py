"""Human review of bulk jobs (this project's extension of A2I): a job started with a flow
definition attached has one human loop per results line that meets the flow's conditions, also
when the step runs twice; ``python -m pipeline.run --flow_definition_arn`` does the same through
the A2I runtime API. Real boto3 clients against the real server and moto over HTTP."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from pipeline.human_review import bulk_loop_name, bulk_loops
from service.registry import JobRegistry
from service.review.bulk import FLOW_HEADER, start_job_loops
from service.review.flows import FlowDefinitionStore
from service.review.loops import HumanLoopStore
from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client
from tests.console_server import results_line
from tests.test_flow_definitions import _request

EVERY_LABEL_UNDER_99 = {
    "Conditions": [
        {
            "ConditionType": "ModerationLabelConfidenceCheck",
            "ConditionParameters": {"ModerationLabelName": "*", "ConfidenceLessThan": 99},
        }
    ]
}


def _clients(endpoint: str):
    keys = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": API_KEY_ID,
        "aws_secret_access_key": API_SECRET,
    }
    return boto3.client("sagemaker", **keys), boto3.client("sagemaker-a2i-runtime", **keys)


def _flow(sagemaker, name: str, conditions: dict) -> str:
    request = _request(name)
    request["HumanLoopActivationConfig"]["HumanLoopActivationConditionsConfig"][
        "HumanLoopActivationConditions"
    ] = json.dumps(conditions)
    return sagemaker.create_flow_definition(**request)["FlowDefinitionArn"]


def _loops(runtime, flow_arn: str) -> list[dict]:
    pages = runtime.get_paginator("list_human_loops").paginate(FlowDefinitionArn=flow_arn)
    return [loop for page in pages for loop in page["HumanLoopSummaries"]]


def test_loops_are_picked_and_named_once_per_line():
    lines = [
        json.dumps(results_line("s3://b/a.jpg", [("Explicit", 40.0, "", 1)])),
        "",
        json.dumps(results_line("s3://b/b.jpg?versionId=v1", [("Explicit", 99.5, "", 1)])),
        json.dumps(results_line("s3://b/c.jpg", [])),
        json.dumps(results_line("s3://b/d.jpg", [("Explicit", 10.0, "", 1)])),
    ]
    picked = list(
        bulk_loops(
            lines,
            flow_arn="arn:aws:sagemaker:us-east-1:0:flow-definition/f",
            conditions=EVERY_LABEL_UNDER_99,
            job_key="job-1",
            min_confidence=0.0,
        )
    )
    assert [loop.line_number for loop in picked] == [1, 5]
    assert [loop.name for loop in picked] == [bulk_loop_name("job-1", n) for n in (1, 5)]
    assert picked[0].input_content["aiServiceRequest"]["image"] == {
        "s3Object": {"bucket": "b", "name": "a.jpg"}
    }
    assert (
        picked[0].input_content["selectedAiServiceResponse"]["moderationLabels"][0]["name"]
        == "Explicit"
    )
    # Every line without conditions; another job, other names.
    everything = list(
        bulk_loops(lines, flow_arn="arn:f", conditions=None, job_key="job-2", min_confidence=0)
    )
    assert len(everything) == 4 and everything[0].name != picked[0].name
    assert all(len(loop.name) <= 63 for loop in everything)


def test_a_job_with_a_flow_definition_has_a_loop_per_matching_line(
    server, s3, sample_photos, tmp_path
):
    names = ["astronaut.jpg", "coffee.jpg", "rocket.png"]
    for name in names:
        with open(sample_photos[name], "rb") as f:
            s3.put_object(Bucket="in-bucket", Key=f"photos/{name}", Body=f.read())
    manifest = "".join(
        json.dumps({"source-ref": f"s3://in-bucket/photos/{name}"}) + "\n" for name in names
    )
    s3.put_object(Bucket="in-bucket", Key="manifest.jsonl", Body=manifest.encode())
    sagemaker, runtime = _clients(server)
    flow_arn = _flow(sagemaker, "bulk-review", EVERY_LABEL_UNDER_99)

    client = rekognition_client(server)

    def attach(request, **_kwargs):
        request.headers[FLOW_HEADER] = attach.flow

    attach.flow = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/missing"
    client.meta.events.register("before-sign.rekognition.StartMediaAnalysisJob", attach)
    start = {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 0.0}},
        "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    }
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.start_media_analysis_job(**start)
    attach.flow = flow_arn
    job_id = client.start_media_analysis_job(**start)["JobId"]
    job = client.get_media_analysis_job(JobId=job_id)
    assert "HumanReviewFlowDefinitionArn" not in json.dumps(job, default=str)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get_media_analysis_job(JobId=job_id)
        if job["Status"] in ("SUCCEEDED", "FAILED") and len(_loops(runtime, flow_arn)) >= 3:
            break
        time.sleep(1)
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    loops = _loops(runtime, flow_arn)
    assert len(loops) == 3  # every benign photo has some label under 99 at MinConfidence 0
    described = runtime.describe_human_loop(HumanLoopName=loops[0]["HumanLoopName"])
    assert described["HumanLoopStatus"] == "InProgress"
    assert loops[0]["HumanLoopName"].startswith("bulk-")

    # The step again (a retry): every loop exists once.
    registry = str(tmp_path / "jobs.sqlite")
    record = JobRegistry(registry).get(job_id)
    flows = FlowDefinitionStore(registry, region="us-east-1", account_id="000000000000")
    store = HumanLoopStore(registry, region="us-east-1", account_id="000000000000")
    assert start_job_loops(record, flows, store, s3) == 3
    assert len(_loops(runtime, flow_arn)) == 3


def test_pipeline_run_starts_the_loops_through_the_runtime_api(
    server, sample_photos, tmp_path, monkeypatch
):
    from pipeline.run import main

    sagemaker, runtime = _clients(server)
    flow_arn = _flow(sagemaker, "cli-review", EVERY_LABEL_UNDER_99)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"source-ref": sample_photos[name]}) + "\n"
            for name in ("chelsea.jpg", "camera.png")
        )
    )
    # The job signs its A2I calls with the AWS environment's credentials: the server's key pair.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", API_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", API_SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    argv = [
        f"--manifest={manifest}",
        f"--output={tmp_path / 'out'}",
        "--min_confidence=0",
        "--components=open_nsfw",
        "--backbone=none",
        f"--flow_definition_arn={flow_arn}",
        f"--review_endpoint_url={server}",
    ]
    assert main(argv) == 0
    first = sorted(loop["HumanLoopName"] for loop in _loops(runtime, flow_arn))
    assert len(first) == 2
    assert main(argv) == 0  # a rerun starts nothing twice
    assert sorted(loop["HumanLoopName"] for loop in _loops(runtime, flow_arn)) == first
    assert main([*argv[:-2], "--review_endpoint_url=http://x"]) == 2  # without the flow


def test_the_flow_flags_are_checked_before_the_job_runs(tmp_path):
    from pipeline.run import main

    base = ["--manifest=m.jsonl", f"--output={tmp_path}"]
    assert main([*base, "--flow_definition_arn=not-an-arn"]) == 2
    assert main([*base, "--review_endpoint_url=http://127.0.0.1:1"]) == 2

"""Custom Moderation end to end, with the real clients: a bulk job, verification, training an
adapter through boto3, the waiter, the evaluation, and the adapter in a job and in
DetectModerationLabels. The concept, hand-gesture emoji, is one the base model has no label for.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import botocore.exceptions
import pytest

from tests.conftest import (
    API_KEY_ID,
    API_SECRET,
    parse_jsonl,
    rekognition_client,
    s3_args,
    start_api_server,
)
from tests.gesture_images import HAND_GESTURES, PARENT, gesture_dataset

pytestmark = pytest.mark.slow

IMAGES, ADAPTERS = "images", "adapters"


@pytest.fixture(scope="module")
def gestures():
    """(training images, held-out images): ``[(name, PNG bytes, is a gesture)]``; 60 gestures
    and 45 others to train on, 15 and 15 held out."""
    items = gesture_dataset(75, 60, seed=3)
    positives = [item for item in items if item[2]]
    negatives = [item for item in items if not item[2]]
    return positives[:60] + negatives[:45], positives[60:] + negatives[45:]


@pytest.fixture
def api(tmp_path, s3, moto_server, monkeypatch):
    """An API server with the default base model (the backbone gives adapters their
    embedding), over the moto S3 server; buckets ``images`` and ``adapters``."""
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    s3.create_bucket(Bucket=IMAGES)
    s3.create_bucket(Bucket=ADAPTERS)
    httpd, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            f"--allowed_locations={IMAGES},{ADAPTERS}",
            "--components=open_nsfw",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={moto_server}",
        ]
    )
    yield rekognition_client(endpoint)
    httpd.shutdown()
    httpd.server_close()


def _upload(s3, items, folder: str) -> list[str]:
    refs = []
    for name, data, _is_gesture in items:
        s3.put_object(Bucket=IMAGES, Key=f"{folder}/{name}", Body=data)
        refs.append(f"s3://{IMAGES}/{folder}/{name}")
    return refs


def _put_lines(s3, key: str, lines) -> None:
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    s3.put_object(Bucket=IMAGES, Key=key, Body=body.encode())


def _run_job(client, s3, manifest_key: str, **config) -> list[dict]:
    job_id = client.start_media_analysis_job(
        OperationsConfig={"DetectModerationLabels": {"MinConfidence": 50.0, **config}},
        Input={"S3Object": {"Bucket": IMAGES, "Name": manifest_key}},
        OutputConfig={"S3Bucket": ADAPTERS, "S3KeyPrefix": "jobs"},
    )["JobId"]
    deadline = time.monotonic() + 600
    while True:
        job = client.get_media_analysis_job(JobId=job_id)
        if job["Status"] in ("SUCCEEDED", "FAILED"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    if config.get("ProjectVersion"):
        assert (
            job["OperationsConfig"]["DetectModerationLabels"]["ProjectVersion"]
            == (config["ProjectVersion"])
        )
    results = job["Results"]["S3Object"]
    body = s3.get_object(Bucket=results["Bucket"], Key=results["Name"])["Body"].read()
    return parse_jsonl(body)


def _verify(moto_server, results_key: str, verifications_key: str, output_key: str) -> dict:
    """``python -m training.verification`` over S3, as a reviewer's script would run it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.verification",
            f"--results=s3://{IMAGES}/{results_key}",
            f"--verifications=s3://{IMAGES}/{verifications_key}",
            f"--output=s3://{IMAGES}/{output_key}",
            f"--custom_label={HAND_GESTURES}={PARENT}",
            "--format=json",
            *s3_args(moto_server),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _names(response: dict) -> list[str]:
    return [label["Name"] for label in response["ModerationLabels"]]


def _asset(key: str) -> dict:
    return {"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": IMAGES, "Name": key}}}]}


def _wait_for_training(client, project_arn: str, version: str) -> dict:
    waiter = client.get_waiter("project_version_training_completed")
    waiter.wait(
        ProjectArn=project_arn,
        VersionNames=[version],
        WaiterConfig={"Delay": 2, "MaxAttempts": 300},
    )
    (described,) = client.describe_project_versions(ProjectArn=project_arn, VersionNames=[version])[
        "ProjectVersionDescriptions"
    ]
    return described


def test_verify_train_and_use_an_adapter(api, s3, moto_server, gestures):
    client = api
    training, held_out = gestures

    # 1. A bulk job over the training images, with the base model.
    training_refs = _upload(s3, training, "train")
    _put_lines(s3, "train.jsonl", [{"source-ref": ref} for ref in training_refs])
    results = _run_job(client, s3, "train.jsonl")
    assert len(results) == len(training)
    assert not any(HAND_GESTURES in _names(r["detect-moderation-labels"]) for r in results)
    _put_lines(s3, "train-results.jsonl", results)

    # 2. A reviewer adds the missed label on every gesture and confirms the rest as shown.
    _put_lines(
        s3,
        "train-verifications.jsonl",
        [
            {"source-ref": ref, "labels": {HAND_GESTURES: True} if is_gesture else {}}
            for ref, (_name, _data, is_gesture) in zip(training_refs, training, strict=True)
        ],
    )
    report = _verify(
        moto_server, "train-results.jsonl", "train-verifications.jsonl", "train-gt.jsonl"
    )
    rows = {row["name"]: row for row in report["labels"]}
    assert rows[HAND_GESTURES]["false_negatives"] == 60
    assert rows[HAND_GESTURES]["meets_training_minimum"] is True
    assert report["images_reviewed"] == len(training)

    # The held-out set, labelled independently.
    held_out_refs = _upload(s3, held_out, "test")
    _put_lines(
        s3,
        "test-gt.jsonl",
        [
            {
                "source-ref": ref,
                "content-moderation-groundtruth": {
                    "ModerationLabels": [{"Name": HAND_GESTURES, "ParentName": PARENT}]
                    if is_gesture
                    else []
                },
            }
            for ref, (_name, _data, is_gesture) in zip(held_out_refs, held_out, strict=True)
        ],
    )

    # 3. Train through boto3 and wait with boto3's own waiter.
    project_arn = client.create_project(
        ProjectName="gestures", Feature="CONTENT_MODERATION", AutoUpdate="DISABLED"
    )["ProjectArn"]
    started = time.monotonic()
    version_arn = client.create_project_version(
        ProjectArn=project_arn,
        VersionName="v1",
        OutputConfig={"S3Bucket": ADAPTERS, "S3KeyPrefix": "custom-moderation"},
        TrainingData=_asset("train-gt.jsonl"),
        TestingData=_asset("test-gt.jsonl"),
        FeatureConfig={"ContentModeration": {"ConfidenceThreshold": 50.0}},
        VersionDescription="hand-gesture emoji",
    )["ProjectVersionArn"]
    described = _wait_for_training(client, project_arn, "v1")
    print(f"\ntraining took {time.monotonic() - started:.1f} s (request to TRAINING_COMPLETED)")
    assert described["ProjectVersionArn"] == version_arn
    assert described["Status"] == "TRAINING_COMPLETED", described.get("StatusMessage")
    assert described["BillableTrainingTimeInSeconds"] >= 1
    summary_object = described["EvaluationResult"]["Summary"]["S3Object"]
    summary = json.loads(
        s3.get_object(Bucket=summary_object["Bucket"], Key=summary_object["Name"])["Body"].read()
    )
    print(json.dumps(summary["Labels"], indent=1))
    (row,) = [entry for entry in summary["Labels"] if entry["Name"] == HAND_GESTURES]
    assert row["ParentName"] == PARENT and row["TaxonomyLevel"] == 2
    assert row["Adapter"]["F1Score"] > row["BaseModel"]["F1Score"]
    assert row["Adapter"]["F1Score"] >= 0.8
    assert described["EvaluationResult"]["F1Score"] == pytest.approx(
        summary["Overall"]["Adapter"]["F1Score"], abs=1e-4
    )

    # 4. The adapter in a bulk job over the held-out images.
    _put_lines(s3, "test.jsonl", [{"source-ref": ref} for ref in held_out_refs])
    adapted = _run_job(client, s3, "test.jsonl", ProjectVersion=version_arn)
    assert len(adapted) == len(held_out)
    truth = {ref: is_gesture for ref, (_n, _d, is_gesture) in zip(held_out_refs, held_out)}
    correct = 0
    for line in adapted:
        response = line["detect-moderation-labels"]
        assert response["ProjectVersion"] == version_arn
        names = [label["Name"] for label in response["ModerationLabels"]]
        if HAND_GESTURES in names:
            assert PARENT in names  # with its parent, at the next level up
        correct += (HAND_GESTURES in names) == truth[line["source-ref"]]
    assert correct >= 0.8 * len(held_out)

    # 5. ... and in DetectModerationLabels.
    gesture_ref = next(ref for ref, is_gesture in truth.items() if is_gesture)
    image = {"S3Object": {"Bucket": IMAGES, "Name": gesture_ref.split("/", 3)[3]}}
    response = client.detect_moderation_labels(Image=image, ProjectVersion=version_arn)
    assert response["ProjectVersion"] == version_arn
    assert response["ModerationLabels"][0]["Name"] in (HAND_GESTURES, PARENT)
    plain = client.detect_moderation_labels(Image=image)
    assert "ProjectVersion" not in plain
    assert HAND_GESTURES not in [label["Name"] for label in plain["ModerationLabels"]]


def test_training_failures_end_training_failed_with_the_reason(api, s3):
    client = api
    project_arn = client.create_project(
        ProjectName="broken", Feature="CONTENT_MODERATION", AutoUpdate="DISABLED"
    )["ProjectArn"]
    _put_lines(
        s3,
        "malformed.jsonl",
        ['{"source-ref": "s3://images/a.png", "content-moderation-groundtruth": {}}'],
    )
    cases = {
        "malformed": (
            _asset("malformed.jsonl"),
            'line 1: "content-moderation-groundtruth" has no "ModerationLabels"',
        ),
        "missing": (_asset("no-such-manifest.jsonl"), "no-such-manifest.jsonl"),
    }
    for version, (training_data, expected) in cases.items():
        client.create_project_version(
            ProjectArn=project_arn,
            VersionName=version,
            OutputConfig={"S3Bucket": ADAPTERS, "S3KeyPrefix": "custom-moderation"},
            TrainingData=training_data,
            TestingData={"AutoCreate": True},
        )
        with pytest.raises(botocore.exceptions.WaiterError):
            client.get_waiter("project_version_training_completed").wait(
                ProjectArn=project_arn,
                VersionNames=[version],
                WaiterConfig={"Delay": 1, "MaxAttempts": 120},
            )
        (described,) = client.describe_project_versions(
            ProjectArn=project_arn, VersionNames=[version]
        )["ProjectVersionDescriptions"]
        assert described["Status"] == "TRAINING_FAILED"
        assert expected in described["StatusMessage"]
        assert "EvaluationResult" not in described

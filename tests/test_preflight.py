"""Checks of a job's S3 and KMS resources, against a moto server over HTTP."""

from __future__ import annotations

import pytest

from service.preflight import check_job_resources, is_allowed


def _request(**overrides) -> dict:
    request = {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
        "Input": {"S3Object": {"Bucket": "inbox", "Name": "manifests/batch.jsonl"}},
        "OutputConfig": {"S3Bucket": "outbox", "S3KeyPrefix": "results"},
    }
    request.update(overrides)
    return request


@pytest.fixture
def buckets(s3):
    s3.create_bucket(Bucket="inbox")
    s3.create_bucket(Bucket="outbox")
    s3.put_object(
        Bucket="inbox", Key="manifests/batch.jsonl", Body=b'{"source-ref": "s3://inbox/a.jpg"}\n'
    )
    return s3


def test_a_good_request_passes_and_leaves_no_probe(buckets, kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert check_job_resources(_request(KmsKeyId=key), buckets, kms) is None
    assert buckets.list_objects_v2(Bucket="outbox").get("KeyCount", 0) == 0


def test_a_missing_manifest(buckets):
    request = _request(Input={"S3Object": {"Bucket": "inbox", "Name": "nope.jsonl"}})
    problem = check_job_resources(request, buckets)
    assert problem.code == "INVALID_S3_OBJECT"
    assert "s3://inbox/nope.jsonl does not exist" in problem.message
    request = _request(Input={"S3Object": {"Bucket": "no-such-bucket", "Name": "m.jsonl"}})
    assert check_job_resources(request, buckets).code == "INVALID_S3_OBJECT"


def test_an_empty_or_oversized_manifest(buckets):
    buckets.put_object(Bucket="inbox", Key="empty.jsonl", Body=b"")
    request = _request(Input={"S3Object": {"Bucket": "inbox", "Name": "empty.jsonl"}})
    assert check_job_resources(request, buckets) == (
        "INVALID_MANIFEST",
        "The manifest s3://inbox/empty.jsonl is empty.",
    )
    problem = check_job_resources(_request(), buckets, max_manifest_bytes=10)
    assert problem.code == "INVALID_MANIFEST"
    assert "the limit is 10" in problem.message


def test_a_missing_output_bucket(buckets):
    request = _request(OutputConfig={"S3Bucket": "gone", "S3KeyPrefix": "x"})
    problem = check_job_resources(request, buckets)
    assert problem == ("INVALID_OUTPUT_CONFIG", "The output bucket gone does not exist.")


def test_a_kms_key_that_does_not_exist_or_is_disabled(buckets, kms):
    problem = check_job_resources(_request(KmsKeyId="alias/missing"), buckets, kms)
    assert problem.code == "INVALID_KMS_KEY"
    assert "alias/missing" in problem.message
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key)
    problem = check_job_resources(_request(KmsKeyId=key), buckets, kms)
    assert problem.code == "INVALID_KMS_KEY"
    assert "Disabled" in problem.message
    problem = check_job_resources(_request(KmsKeyId=key), buckets, None)
    assert problem.code == "INVALID_KMS_KEY"


def test_only_allowed_locations(buckets):
    problem = check_job_resources(_request(), buckets, allowed_locations=["inbox/manifests/"])
    assert problem == ("ACCESS_DENIED", "This server may not write under s3://outbox/results.")
    problem = check_job_resources(_request(), buckets, allowed_locations=["outbox"])
    assert problem.code == "ACCESS_DENIED" and "s3://inbox/manifests/batch.jsonl" in problem.message
    assert (
        check_job_resources(
            _request(), buckets, allowed_locations=["inbox/manifests/", "outbox/results"]
        )
        is None
    )


def test_is_allowed():
    assert is_allowed("b", "any/key", None)
    assert not is_allowed("b", "k", [])
    assert is_allowed("b", "k", ["b"])
    assert is_allowed("b", "team/a.jsonl", ["b/team/"])
    assert not is_allowed("b", "other/a.jsonl", ["b/team/"])
    assert not is_allowed("bb", "k", ["b"])

"""Tests for service.validation: Rekognition request checks driven by the botocore model."""

import base64
import json
import re
import uuid
import warnings

import pytest

from service.api import OPERATIONS as SUPPORTED_OPERATIONS
from service.api import validate_request
from service.validation import RequestError, rekognition_model

# The body the AWS CLI sends for `aws rekognition start-media-analysis-job` (REFERENCE §3), with
# the input bucket renamed: the captured "in" is below S3Bucket's model minimum of 3, so botocore
# itself refuses to send it (see test_two_letter_bucket_from_the_reference_capture_is_refused).
CLI_START_BODY = {
    "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
    "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
    "OutputConfig": {"S3Bucket": "out", "S3KeyPrefix": "results"},
    "ClientRequestToken": "0d6b5e2c-3f4a-4c1e-9b7a-2f5d8e1c6a90",
}
ADAPTER_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1700000000000"


def start_body(**overrides):
    body = json.loads(json.dumps(CLI_START_BODY))
    body.update(overrides)
    return body


def invalid(operation, body):
    with pytest.raises(RequestError) as caught:
        validate_request(operation, body)
    assert caught.value.code == "InvalidParameterException"
    assert caught.value.http_status == 400
    return caught.value.message


def serialization_error(operation, body):
    with pytest.raises(RequestError) as caught:
        validate_request(operation, body)
    assert caught.value.code == "SerializationException"
    return caught.value.message


def test_supported_operations_exist_in_the_botocore_model():
    assert set(SUPPORTED_OPERATIONS) <= set(rekognition_model().operation_names)


def test_every_pattern_of_the_supported_operations_compiles():
    from service.java_patterns import java_pattern as _compiled

    def patterns(shape, seen):
        if shape.name in seen:
            return
        seen.add(shape.name)
        if "pattern" in shape.metadata:
            yield shape.metadata["pattern"]
        children = {
            "structure": lambda: shape.members.values(),
            "list": lambda: [shape.member],
            "map": lambda: [shape.key, shape.value],
        }.get(shape.type_name, list)()
        for child in children:
            yield from patterns(child, seen)

    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for operation in SUPPORTED_OPERATIONS:
            shape = rekognition_model().operation_model(operation).input_shape
            for pattern in patterns(shape, seen):
                _compiled(pattern)


def test_cli_start_request_passes_unchanged_from_bytes_and_mapping():
    raw = json.dumps(CLI_START_BODY).encode()
    assert validate_request("StartMediaAnalysisJob", raw) == CLI_START_BODY
    assert validate_request("StartMediaAnalysisJob", CLI_START_BODY) == CLI_START_BODY


def test_two_letter_bucket_from_the_reference_capture_is_refused():
    body = start_body(Input={"S3Object": {"Bucket": "in", "Name": "manifest.jsonl"}})
    assert invalid("StartMediaAnalysisJob", body) == (
        "1 validation error detected: Value 'in' at 'input.s3Object.bucket' failed to satisfy "
        "constraint: Member must have length greater than or equal to 3"
    )


def test_full_start_request_passes_and_unknown_members_are_dropped():
    body = start_body(
        JobName="nightly_run-2.v1",
        KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abc",
        SomethingNew={"x": 1},
    )
    body["OperationsConfig"]["DetectModerationLabels"]["ProjectVersion"] = ADAPTER_ARN
    cleaned = validate_request("StartMediaAnalysisJob", body)
    assert "SomethingNew" not in cleaned
    assert cleaned["JobName"] == "nightly_run-2.v1"
    assert cleaned["OperationsConfig"]["DetectModerationLabels"]["ProjectVersion"] == ADAPTER_ARN


def test_job_name_too_long():
    message = invalid("StartMediaAnalysisJob", start_body(JobName="a" * 65))
    assert message == (
        f"1 validation error detected: Value '{'a' * 65}' at 'jobName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64"
    )


def test_job_name_with_a_space_breaks_the_pattern():
    message = invalid("StartMediaAnalysisJob", start_body(JobName="my job"))
    assert "Value 'my job' at 'jobName'" in message
    assert r"Member must satisfy regular expression pattern: [a-zA-Z0-9_.\-]+" in message


def test_client_request_token_pattern():
    message = invalid("StartMediaAnalysisJob", start_body(ClientRequestToken="abc/def"))
    assert "at 'clientRequestToken'" in message
    assert "Member must satisfy regular expression pattern: ^[a-zA-Z0-9-_]+$" in message


@pytest.mark.parametrize(
    "confidence, phrase",
    [
        (101, "Member must have value less than or equal to 100"),
        (-1, "Member must have value greater than or equal to 0"),
    ],
)
def test_min_confidence_bounds(confidence, phrase):
    body = start_body(OperationsConfig={"DetectModerationLabels": {"MinConfidence": confidence}})
    message = invalid("StartMediaAnalysisJob", body)
    assert message == (
        f"1 validation error detected: Value '{float(confidence)}' at "
        f"'operationsConfig.detectModerationLabels.minConfidence' failed to satisfy constraint: "
        f"{phrase}"
    )


def test_missing_input_is_null():
    body = start_body()
    del body["Input"]
    message = invalid("StartMediaAnalysisJob", body)
    assert message == (
        "1 validation error detected: Value null at 'input' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_json_null_counts_as_missing():
    message = invalid("StartMediaAnalysisJob", start_body(Input=None))
    assert "Value null at 'input'" in message


def test_s3_key_prefix_with_whitespace():
    body = start_body(OutputConfig={"S3Bucket": "out", "S3KeyPrefix": "my results"})
    message = invalid("StartMediaAnalysisJob", body)
    assert "Value 'my results' at 'outputConfig.s3KeyPrefix'" in message
    assert r"Member must satisfy regular expression pattern: \S*" in message


def test_bucket_too_short():
    body = start_body(Input={"S3Object": {"Bucket": "ab", "Name": "m.jsonl"}})
    message = invalid("StartMediaAnalysisJob", body)
    assert "Value 'ab' at 'input.s3Object.bucket'" in message
    assert "Member must have length greater than or equal to 3" in message


def test_two_violations_are_counted_and_joined():
    body = start_body(JobName="a b", ClientRequestToken="x" * 65)
    message = invalid("StartMediaAnalysisJob", body)
    assert message.startswith("2 validation errors detected: Value ")
    parts = message.removeprefix("2 validation errors detected: ").split("; ")
    assert len(parts) == 2
    assert any("'clientRequestToken'" in part and "equal to 64" in part for part in parts)
    assert any("'jobName'" in part and "pattern" in part for part in parts)


def test_long_values_are_truncated_in_messages():
    message = invalid("StartMediaAnalysisJob", start_body(JobName="a" * 5000))
    assert len(message) < 600
    assert "(5000 characters)" in message


@pytest.mark.parametrize(
    "max_results, phrase",
    [
        (0, "Member must have value greater than or equal to 1"),
        (101, "Member must have value less than or equal to 100"),
    ],
)
def test_list_jobs_max_results_bounds(max_results, phrase):
    message = invalid("ListMediaAnalysisJobs", {"MaxResults": max_results})
    assert message == (
        f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
        f"constraint: {phrase}"
    )


def test_list_jobs_accepts_empty_and_bounded_requests():
    assert validate_request("ListMediaAnalysisJobs", b"{}") == {}
    body = {"MaxResults": 100, "NextToken": "t" * 1024}
    assert validate_request("ListMediaAnalysisJobs", body) == body


def test_list_jobs_next_token_too_long():
    message = invalid("ListMediaAnalysisJobs", {"NextToken": "t" * 1025})
    assert "at 'nextToken'" in message
    assert "Member must have length less than or equal to 1024" in message


def test_detect_image_bytes_are_decoded():
    image = b"\xff\xd8\xff\xe0 not really a jpeg"
    body = {"Image": {"Bytes": base64.b64encode(image).decode()}, "MinConfidence": 60}
    cleaned = validate_request("DetectModerationLabels", json.dumps(body).encode())
    assert cleaned == {"Image": {"Bytes": image}, "MinConfidence": 60.0}


def test_detect_invalid_base64_names_the_field():
    message = invalid("DetectModerationLabels", {"Image": {"Bytes": "not base64!"}})
    assert "at 'image.bytes'" in message
    assert "base64" in message


def test_detect_image_bytes_over_the_model_maximum():
    max_bytes = rekognition_model().shape_for("ImageBlob").metadata["max"]
    assert max_bytes == 5 * 1024 * 1024
    too_big = base64.b64encode(b"\0" * (max_bytes + 1)).decode()
    message = invalid("DetectModerationLabels", {"Image": {"Bytes": too_big}})
    assert message == (
        "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=5242881 "
        "cap=5242881]' at 'image.bytes' failed to satisfy constraint: Member must have length "
        "less than or equal to 5242880"
    )


def test_detect_empty_image_bytes_below_the_minimum():
    message = invalid("DetectModerationLabels", {"Image": {"Bytes": ""}})
    assert "java.nio.HeapByteBuffer[pos=0 lim=0 cap=0]" in message
    assert "Member must have length greater than or equal to 1" in message


def test_detect_list_member_paths_are_one_based():
    body = {
        "Image": {"S3Object": {"Bucket": "bkt", "Name": "a.jpg"}},
        "HumanLoopConfig": {
            "HumanLoopName": "loop",
            "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/f",
            "DataAttributes": {"ContentClassifiers": ["FreeOfAdultContent", "Nope"]},
        },
    }
    message = invalid("DetectModerationLabels", body)
    assert "Value 'Nope' at 'humanLoopConfig.dataAttributes.contentClassifiers.2.member'" in message
    assert (
        "Member must satisfy enum value set: "
        "[FreeOfPersonallyIdentifiableInformation, FreeOfAdultContent]" in message
    )


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"', b'{"MaxResults": NaN}'])
def test_unparseable_or_non_object_bodies(raw):
    serialization_error("ListMediaAnalysisJobs", raw)


def test_unknown_operation():
    with pytest.raises(RequestError) as caught:
        validate_request("DetectLabels", b"{}")
    assert caught.value.code == "UnknownOperationException"
    assert caught.value.http_status == 400


def test_create_project_feature_enum():
    message = invalid("CreateProject", {"ProjectName": "p", "Feature": "FACES"})
    assert message == (
        "1 validation error detected: Value 'FACES' at 'feature' failed to satisfy constraint: "
        "Member must satisfy enum value set: [CONTENT_MODERATION, CUSTOM_LABELS]"
    )


def test_create_project_adapter_request_with_tags_passes():
    body = {
        "ProjectName": "my-adapter",
        "Feature": "CONTENT_MODERATION",
        "AutoUpdate": "ENABLED",
        "Tags": {"team": "trust", "Élan 2": "valeur"},
    }
    assert validate_request("CreateProject", body) == body


def test_create_project_tag_map_violation_is_reported_per_map():
    message = invalid("CreateProject", {"ProjectName": "p", "Tags": {"aws:owner": "x"}})
    assert "Value '{aws:owner=x}' at 'tags' failed to satisfy constraint: " in message
    assert "Map keys must satisfy constraint: [Member must have length less than" in message


@pytest.mark.parametrize(
    "value, expected",
    [
        ("10", "STRING_VALUE cannot be converted to Integer at 'maxResults'"),
        (True, "TRUE_VALUE cannot be converted to Integer at 'maxResults'"),
        (2.5, "DECIMAL_VALUE cannot be converted to Integer at 'maxResults'"),
        ([1], "Unrecognized collection type class java.lang.Integer at 'maxResults'"),
    ],
)
def test_wrong_json_types_for_an_integer(value, expected):
    assert serialization_error("ListMediaAnalysisJobs", {"MaxResults": value}) == expected


def test_wrong_json_types_elsewhere():
    message = serialization_error("StartMediaAnalysisJob", start_body(JobName=5))
    assert message == "NUMBER_VALUE cannot be converted to String at 'jobName'"
    message = serialization_error("StartMediaAnalysisJob", start_body(Input=["x"]))
    assert re.fullmatch(r"Start of list found where not expected at 'input'", message)
    body = start_body(OperationsConfig={"DetectModerationLabels": {"MinConfidence": "50"}})
    message = serialization_error("StartMediaAnalysisJob", body)
    assert "STRING_VALUE cannot be converted to Float" in message
    message = serialization_error("DetectModerationLabels", {"Image": {"Bytes": 12}})
    assert "only base-64-encoded strings are convertible to bytes" in message


def test_integral_float_is_accepted_for_an_integer():
    assert validate_request("ListMediaAnalysisJobs", {"MaxResults": 10.0}) == {"MaxResults": 10}


def test_error_body_shape():
    error = RequestError("InvalidParameterException", "bad")
    assert error.to_body() == {
        "__type": "InvalidParameterException",
        "Message": "bad",
        "Code": "InvalidParameterException",
    }


def test_more_than_ten_violations_are_capped_at_ten():
    body = {"ProjectArn": "arn", "VersionNames": ["bad name"] * 10, "MaxResults": 0}
    message = invalid("DescribeProjectVersions", body)
    assert message.startswith("10 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 10


def test_request_token_is_a_uuid4_like_boto3_fills_in():
    body = start_body(ClientRequestToken=str(uuid.uuid4()))
    assert validate_request("StartMediaAnalysisJob", body) == body

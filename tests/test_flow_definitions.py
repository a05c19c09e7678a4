"""Flow definitions of human review through the real boto3 SageMaker client, against the server.

The server (the ``server`` fixture: open_nsfw without a backbone, never loaded here) answers
SageMaker's CreateFlowDefinition, DescribeFlowDefinition, ListFlowDefinitions and
DeleteFlowDefinition beside the Rekognition API. Definitions that need given creation times are
registered straight into the server's SQLite file with ``FlowDefinitionStore``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from service.review.flows import REKOGNITION_SOURCE, FlowDefinitionStore
from tests.conftest import API_KEY_ID, API_SECRET, start_api_server
from tests.conftest import rekognition_client as _rekognition

_REMOVE = object()
ACCOUNT = "000000000000"
WORKTEAM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/moderators"
TASK_UI = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/moderation"
CONDITIONS = {
    "Conditions": [
        {
            "Or": [
                {
                    "ConditionType": "ModerationLabelConfidenceCheck",
                    "ConditionParameters": {
                        "ModerationLabelName": "Suggestive",
                        "ConfidenceLessThan": 98,
                    },
                },
                {
                    "ConditionType": "Sampling",
                    "ConditionParameters": {"RandomSamplingPercentage": 5},
                },
            ]
        }
    ]
}


def _client(endpoint: str, key_id: str = API_KEY_ID, secret: str = API_SECRET):
    return boto3.client(
        "sagemaker",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def _message(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Message"]


def _request(name: str = "moderation-review", **overrides) -> dict:
    request = {
        "FlowDefinitionName": name,
        "HumanLoopRequestSource": {"AwsManagedHumanLoopRequestSource": REKOGNITION_SOURCE},
        "HumanLoopActivationConfig": {
            "HumanLoopActivationConditionsConfig": {
                "HumanLoopActivationConditions": json.dumps(CONDITIONS)
            }
        },
        "HumanLoopConfig": {
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": TASK_UI,
            "TaskTitle": "Review moderation labels",
            "TaskDescription": "Say whether each label applies to the image.",
            "TaskCount": 1,
            "TaskAvailabilityLifetimeInSeconds": 3600,
            "TaskTimeLimitInSeconds": 300,
        },
        "OutputConfig": {"S3OutputPath": "s3://out-bucket/results/reviews"},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/service-role/A2IReviews",
    }
    for key, value in overrides.items():
        if value is _REMOVE:
            request.pop(key, None)
        else:
            request[key] = value
    return request


def _with_conditions(conditions: str) -> dict:
    return {
        "HumanLoopActivationConfig": {
            "HumanLoopActivationConditionsConfig": {"HumanLoopActivationConditions": conditions}
        }
    }


def _store(tmp_path, clock=None) -> FlowDefinitionStore:
    """The server's flow definitions, opened beside it."""
    if clock is None:
        return FlowDefinitionStore(str(tmp_path / "jobs.sqlite"))
    return FlowDefinitionStore(str(tmp_path / "jobs.sqlite"), clock=clock)


def _names(client, **arguments) -> list[str]:
    return [
        summary["FlowDefinitionName"]
        for summary in client.list_flow_definitions(**arguments)["FlowDefinitionSummaries"]
    ]


def _registered_at(tmp_path, times: dict[str, float]) -> None:
    for name, created in times.items():
        _store(tmp_path, clock=lambda created=created: created).create(_request(name))


# Create, describe, delete.


def test_a_flow_definition_is_created_and_described(server, tmp_path):
    client = _client(server)
    before = datetime.now(timezone.utc)
    arn = client.create_flow_definition(**_request())["FlowDefinitionArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/moderation-review"
    described = client.describe_flow_definition(FlowDefinitionName="moderation-review")
    described.pop("ResponseMetadata")
    created = described.pop("CreationTime")
    assert before.timestamp() - 1 <= created.timestamp() <= datetime.now(timezone.utc).timestamp()
    request = _request()
    assert described == {
        "FlowDefinitionArn": arn,
        "FlowDefinitionName": "moderation-review",
        "FlowDefinitionStatus": "Active",
        "HumanLoopRequestSource": request["HumanLoopRequestSource"],
        "HumanLoopActivationConfig": request["HumanLoopActivationConfig"],
        "HumanLoopConfig": request["HumanLoopConfig"],
        "OutputConfig": request["OutputConfig"],
        "RoleArn": request["RoleArn"],
    }
    # The record the human loops read: by name or by ARN, conditions parsed.
    flow = _store(tmp_path).get(arn)
    assert flow == _store(tmp_path).get("moderation-review")
    assert flow.conditions == CONDITIONS
    assert flow.workteam_arn == WORKTEAM and flow.human_task_ui_arn == TASK_UI
    assert (flow.task_count, flow.availability_lifetime_secs, flow.time_limit_secs) == (
        1,
        3600,
        300,
    )
    assert flow.output_path == "s3://out-bucket/results/reviews"
    assert flow.output_location == ("out-bucket", "results/reviews")
    assert flow.kms_key_id is None


def test_optional_parts_kms_key_tags_and_no_conditions(server, tmp_path):
    client = _client(server)
    request = _request(
        "every-image",
        HumanLoopActivationConfig=_REMOVE,
        OutputConfig={"S3OutputPath": "s3://out-bucket/results", "KmsKeyId": "alias/reviews"},
        Tags=[{"Key": "team", "Value": "trust-and-safety"}],
    )
    request["HumanLoopConfig"] = {
        key: request["HumanLoopConfig"][key]
        for key in ("WorkteamArn", "HumanTaskUiArn", "TaskTitle", "TaskDescription", "TaskCount")
    }
    client.create_flow_definition(**request)
    described = client.describe_flow_definition(FlowDefinitionName="every-image")
    assert "HumanLoopActivationConfig" not in described
    assert described["OutputConfig"]["KmsKeyId"] == "alias/reviews"
    flow = _store(tmp_path).get("every-image")
    assert flow.conditions is None
    assert flow.kms_key_id == "alias/reviews"
    assert (flow.availability_lifetime_secs, flow.time_limit_secs) == (864_000, 3600)


def test_a_name_in_use_is_refused_until_its_definition_is_deleted(server):
    client = _client(server)
    client.create_flow_definition(**_request())
    with pytest.raises(client.exceptions.ResourceInUse) as taken:
        client.create_flow_definition(**_request())
    assert "moderation-review" in _message(taken)
    client.delete_flow_definition(FlowDefinitionName="moderation-review")
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.describe_flow_definition(FlowDefinitionName="moderation-review")
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.delete_flow_definition(FlowDefinitionName="moderation-review")
    assert _names(client) == []
    client.create_flow_definition(**_request())
    assert _names(client) == ["moderation-review"]


def test_unknown_definitions_are_not_found(server):
    client = _client(server)
    with pytest.raises(client.exceptions.ResourceNotFound) as missing:
        client.describe_flow_definition(FlowDefinitionName="nothing-here")
    assert _code(missing) == "ResourceNotFound"
    assert "nothing-here" in _message(missing)
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.delete_flow_definition(FlowDefinitionName="nothing-here")


# Listing.


def test_listing_is_newest_first_paged_and_sorted_either_way(server, tmp_path):
    client = _client(server)
    _registered_at(tmp_path, {f"flow-{index}": 1_700_000_000.0 + index for index in range(5)})
    assert _names(client) == [f"flow-{index}" for index in (4, 3, 2, 1, 0)]
    assert _names(client, SortOrder="Ascending") == [f"flow-{index}" for index in range(5)]
    for order, expected in (("Descending", [4, 3, 2, 1, 0]), ("Ascending", [0, 1, 2, 3, 4])):
        pages, token = [], None
        while True:
            arguments = {"MaxResults": 2, "SortOrder": order}
            if token:
                arguments["NextToken"] = token
            page = client.list_flow_definitions(**arguments)
            pages.append([s["FlowDefinitionName"] for s in page["FlowDefinitionSummaries"]])
            token = page.get("NextToken")
            if not token:
                break
        assert pages == [
            [f"flow-{i}" for i in expected[:2]],
            [f"flow-{i}" for i in expected[2:4]],
            [f"flow-{expected[4]}"],
        ]
    summary = client.list_flow_definitions(MaxResults=1)["FlowDefinitionSummaries"][0]
    assert summary == {
        "FlowDefinitionName": "flow-4",
        "FlowDefinitionArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/flow-4",
        "FlowDefinitionStatus": "Active",
        "CreationTime": datetime.fromtimestamp(1_700_000_004, timezone.utc),
    }


def test_the_default_page_is_ten_and_the_paginator_reads_them_all(server, tmp_path):
    client = _client(server)
    _registered_at(tmp_path, {f"flow-{index:02}": 1_700_000_000.0 + index for index in range(12)})
    first = client.list_flow_definitions()
    assert len(first["FlowDefinitionSummaries"]) == 10 and first["NextToken"]
    names = [
        summary["FlowDefinitionName"]
        for page in client.get_paginator("list_flow_definitions").paginate(
            PaginationConfig={"PageSize": 5}
        )
        for summary in page["FlowDefinitionSummaries"]
    ]
    assert names == [f"flow-{index:02}" for index in reversed(range(12))]


def test_creation_time_filters(server, tmp_path):
    client = _client(server)
    base = 1_700_000_000.0
    _registered_at(tmp_path, {"early": base, "middle": base + 60, "late": base + 120})

    def at(offset: float) -> datetime:
        return datetime.fromtimestamp(base + offset, timezone.utc)

    # CreationTimeAfter: created at or after; CreationTimeBefore: created before.
    assert _names(client, CreationTimeAfter=at(60)) == ["late", "middle"]
    assert _names(client, CreationTimeAfter=at(61)) == ["late"]
    assert _names(client, CreationTimeBefore=at(60)) == ["early"]
    assert _names(client, CreationTimeBefore=at(61)) == ["middle", "early"]
    assert _names(client, CreationTimeAfter=at(0), CreationTimeBefore=at(120)) == [
        "middle",
        "early",
    ]
    assert _names(client, CreationTimeAfter=at(121)) == []
    page = client.list_flow_definitions(CreationTimeAfter=at(0), MaxResults=1)
    second = client.list_flow_definitions(
        CreationTimeAfter=at(0), MaxResults=1, NextToken=page["NextToken"]
    )
    assert [s["FlowDefinitionName"] for s in second["FlowDefinitionSummaries"]] == ["middle"]


def test_a_token_is_good_only_for_its_listing(server, tmp_path):
    client = _client(server)
    _registered_at(tmp_path, {"one": 1_700_000_000.0, "two": 1_700_000_001.0})
    token = client.list_flow_definitions(MaxResults=1)["NextToken"]
    for arguments in (
        {"MaxResults": 1, "SortOrder": "Ascending"},
        {"MaxResults": 2},
        {"MaxResults": 1, "CreationTimeAfter": datetime.fromtimestamp(0, timezone.utc)},
    ):
        with pytest.raises(ClientError) as refused:
            client.list_flow_definitions(NextToken=token, **arguments)
        assert _code(refused) == "ValidationException"
    with pytest.raises(ClientError) as forged:
        client.list_flow_definitions(NextToken="bm90IGEgdG9rZW4=")
    assert _code(forged) == "ValidationException"


# What is refused.


@pytest.mark.parametrize(
    ("conditions", "named"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"Conditions": [{"ConditionType": "Nope"}]}', "Conditions[0].ConditionType"),
        (
            '{"Conditions": [{"ConditionType": "Sampling", '
            '"ConditionParameters": {"RandomSamplingPercentage": 150}}]}',
            "RandomSamplingPercentage",
        ),
    ],
)
def test_bad_activation_conditions_are_a_validation_exception(server, conditions, named):
    client = _client(server)
    with pytest.raises(ClientError) as refused:
        client.create_flow_definition(**_request(**_with_conditions(conditions)))
    assert _code(refused) == "ValidationException"
    assert "HumanLoopActivationConditions" in _message(refused)
    assert named in _message(refused)
    assert _names(client) == []


def test_only_the_rekognition_request_source_is_served(server):
    client = _client(server)
    textract = {"AwsManagedHumanLoopRequestSource": "AWS/Textract/AnalyzeDocument/Forms/V1"}
    for overrides in ({"HumanLoopRequestSource": textract}, {"HumanLoopRequestSource": _REMOVE}):
        with pytest.raises(ClientError) as refused:
            client.create_flow_definition(**_request(**overrides))
        assert _code(refused) == "ValidationException"
        assert "AwsManagedHumanLoopRequestSource" in _message(refused)
        assert REKOGNITION_SOURCE in _message(refused)
    with pytest.raises(ClientError) as no_loop:
        client.create_flow_definition(**_request(HumanLoopConfig=_REMOVE))
    assert _code(no_loop) == "ValidationException" and "HumanLoopConfig" in _message(no_loop)
    assert _names(client) == []


def test_outputs_must_be_s3_within_the_allowed_locations(server):
    client = _client(server)
    for path in ("s3://elsewhere/reviews", "s3://out-bucket/other", "s3://in-bucket-2/x"):
        with pytest.raises(ClientError) as denied:
            client.create_flow_definition(**_request(OutputConfig={"S3OutputPath": path}))
        assert _code(denied) == "AccessDeniedException"
        assert path.removeprefix("s3://").split("/")[0] in _message(denied)
    with pytest.raises(ClientError) as https:
        client.create_flow_definition(
            **_request(OutputConfig={"S3OutputPath": "https://out-bucket/results"})
        )
    assert _code(https) == "ValidationException" and "S3OutputPath" in _message(https)
    # A bucket root is within an entry of the bucket alone: in-bucket is allowed whole.
    client.create_flow_definition(**_request(OutputConfig={"S3OutputPath": "s3://in-bucket"}))
    assert _names(client) == ["moderation-review"]


def test_model_constraints_are_a_validation_exception_naming_the_field(server):
    client = _client(server)
    cases = [
        ({"FlowDefinitionName": "Not_Lower_Case"}, "flowDefinitionName"),
        ({"RoleArn": "arn:aws:iam::123:role/short"}, "roleArn"),
    ]
    loop = dict(_request()["HumanLoopConfig"], TaskCount=4)
    cases.append(({"HumanLoopConfig": loop}, "humanLoopConfig.taskCount"))
    long_lived = dict(_request()["HumanLoopConfig"], TaskAvailabilityLifetimeInSeconds=864_001)
    cases.append(({"HumanLoopConfig": long_lived}, "TaskAvailabilityLifetimeInSeconds"))
    for overrides, field in cases:
        with pytest.raises(ClientError) as refused:
            client.create_flow_definition(**_request(**overrides))
        assert _code(refused) == "ValidationException", overrides
        assert field in _message(refused)
    with pytest.raises(ClientError) as order:
        client.list_flow_definitions(SortOrder="Sideways")
    assert _code(order) == "ValidationException"
    assert _names(client) == []


# Authentication and routing.


def _signed_post(endpoint: str, target: str, body: bytes, *, service: str, secret=API_SECRET):
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    if service:
        SigV4Auth(Credentials(API_KEY_ID, secret), service, "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        endpoint + "/", data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_unsigned_and_wrongly_signed_requests_are_refused(server):
    create = json.dumps(_request()).encode()
    target = "SageMaker.CreateFlowDefinition"
    status, body = _signed_post(server, target, create, service="")
    assert status != 200 and body["__type"] == "MissingAuthenticationTokenException"
    status, body = _signed_post(server, target, create, service="sagemaker", secret="wrong")
    assert status != 200 and body["__type"] == "InvalidSignatureException"
    # Signed for Rekognition: the credential scope names the wrong service.
    status, body = _signed_post(server, target, create, service="rekognition")
    assert status != 200 and body["__type"] == "InvalidSignatureException"
    assert "'sagemaker'" in body["Message"]
    with pytest.raises(ClientError) as unknown_key:
        _client(server, key_id="AKIDUNKNOWN").list_flow_definitions()
    assert _code(unknown_key) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as wrong_secret:
        _client(server, secret="not-the-secret").create_flow_definition(**_request())
    assert _code(wrong_secret) == "InvalidSignatureException"
    # Nothing was created; a request signed right is served.
    status, body = _signed_post(server, target, create, service="sagemaker")
    assert status == 200 and body["FlowDefinitionArn"].endswith("/moderation-review")
    assert _names(_client(server)) == ["moderation-review"]


def test_unknown_sagemaker_operations_and_the_rekognition_api_beside(server):
    client = _client(server)
    with pytest.raises(ClientError) as unknown:
        client.list_workteams()
    assert _code(unknown) == "UnknownOperationException"
    assert "SageMaker.ListWorkteams" in _message(unknown)
    status, body = _signed_post(server, "SageMaker.NoSuchThing", b"{}", service="sagemaker")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    # A Rekognition target signed for SageMaker is refused; Rekognition still answers.
    status, body = _signed_post(
        server, "RekognitionService.DescribeProjects", b"{}", service="sagemaker"
    )
    assert status != 200 and body["__type"] == "InvalidSignatureException"
    assert _rekognition(server).describe_projects()["ProjectDescriptions"] == []
    status, body = _signed_post(server, "SageMaker.ListFlowDefinitions", b"[]", service="sagemaker")
    assert (status, body["__type"]) == (400, "SerializationException")


def test_a_restarted_server_keeps_the_flow_definitions(server, tmp_path, moto_server):
    client = _client(server)
    client.create_flow_definition(**_request("kept"))
    client.create_flow_definition(**_request("deleted"))
    client.delete_flow_definition(FlowDefinitionName="deleted")
    described = client.describe_flow_definition(FlowDefinitionName="kept")
    restarted, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            "--allowed_locations=in-bucket,out-bucket/results",
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={moto_server}",
        ]
    )
    try:
        again = _client(endpoint)
        assert _names(again) == ["kept"]
        after = again.describe_flow_definition(FlowDefinitionName="kept")
        with pytest.raises(again.exceptions.ResourceNotFound):
            again.describe_flow_definition(FlowDefinitionName="deleted")
        with pytest.raises(again.exceptions.ResourceInUse):
            again.create_flow_definition(**_request("kept"))
    finally:
        restarted.shutdown()
        restarted.server_close()
    for answer in (described, after):
        answer.pop("ResponseMetadata")
    assert after == described


def test_arns_follow_the_region_and_account_flags(server, tmp_path, moto_server):
    httpd, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'other.sqlite'}",
            "--allowed_locations=out-bucket/results",
            "--components=open_nsfw",
            "--backbone=none",
            "--region=eu-west-1",
            "--account_id=123456789012",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={moto_server}",
        ]
    )
    try:
        arn = _client(endpoint).create_flow_definition(**_request())["FlowDefinitionArn"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert arn == "arn:aws:sagemaker:eu-west-1:123456789012:flow-definition/moderation-review"

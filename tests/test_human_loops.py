"""Human loops (A2I): activation from DetectModerationLabels, the A2I runtime API, reviews.

The real boto3 ``rekognition``, ``sagemaker`` and ``sagemaker-a2i-runtime`` clients against the
real server, images and outputs in a moto S3 server over HTTP. Reviewers' claims and answers go
through the server's ``HumanLoopStore`` (the console's way in); the server's sweeper releases
claims, expires loops and writes ``output.json``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from model.human_review import evaluate, parse_activation_conditions, sampling_key
from service.review.flows import REKOGNITION_SOURCE
from service.review.loops import HumanLoopStore, LoopNotOpen
from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client, start_api_server

ACCOUNT = "000000000000"
WORKTEAM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/moderators"
TASK_UI = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/moderation"
OUTPUT_PATH = "s3://out-bucket/results/reviews"

# open_nsfw gives benign photos a low "Explicit" confidence: any label under 99 activates.
LOW_CONFIDENCE = {
    "Conditions": [
        {
            "ConditionType": "ModerationLabelConfidenceCheck",
            "ConditionParameters": {"ModerationLabelName": "*", "ConfidenceLessThan": 99},
        }
    ]
}
VERY_CONFIDENT = {
    "Conditions": [
        {
            "ConditionType": "ModerationLabelConfidenceCheck",
            "ConditionParameters": {"ModerationLabelName": "*", "ConfidenceGreaterThan": 99.9},
        }
    ]
}


def _sampling(percentage: float) -> dict:
    return {
        "Conditions": [
            {
                "ConditionType": "Sampling",
                "ConditionParameters": {"RandomSamplingPercentage": percentage},
            }
        ]
    }


def _client(service: str, endpoint: str, secret: str = API_SECRET):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=API_KEY_ID,
        aws_secret_access_key=secret,
    )


@pytest.fixture
def start_review_server(tmp_path, s3, moto_server, monkeypatch):
    """Starts API servers over the moto S3 server (buckets ``in-bucket`` and ``out-bucket``
    exist), with a fast review sweep; each is ``SimpleNamespace(httpd, url, rekognition,
    sagemaker, a2i)``, closed at the end of the test (or by ``stop``)."""
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    running = []

    def stop(server) -> None:
        if server.httpd in running:
            running.remove(server.httpd)
            server.httpd.shutdown()
            server.httpd.server_close()

    def start(*flags: str):
        httpd, url = start_api_server(
            [
                f"--registry={tmp_path / 'jobs.sqlite'}",
                "--allowed_locations=in-bucket,out-bucket/results",
                "--components=open_nsfw",
                "--backbone=none",
                f"--s3_endpoint_url={moto_server}",
                "--s3_region_name=us-east-1",
                f"--kms_endpoint_url={moto_server}",
                "--review_sweep_secs=0.2",
                *flags,
            ]
        )
        running.append(httpd)
        server = SimpleNamespace(
            httpd=httpd,
            url=url,
            loops=httpd.api.loops,
            rekognition=rekognition_client(url),
            sagemaker=_client("sagemaker", url),
            a2i=_client("sagemaker-a2i-runtime", url),
        )
        server.stop = lambda: stop(server)
        return server

    yield start
    for httpd in list(running):
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def review(start_review_server):
    return start_review_server()


def _flow(
    server,
    name: str,
    conditions: dict | None = LOW_CONFIDENCE,
    *,
    task_count: int = 1,
    lifetime: int | None = None,
    kms_key_id: str | None = None,
) -> str:
    loop_config = {
        "WorkteamArn": WORKTEAM,
        "HumanTaskUiArn": TASK_UI,
        "TaskTitle": "Review this image",
        "TaskDescription": "Is anything in this image unsafe?",
        "TaskCount": task_count,
    }
    if lifetime is not None:
        loop_config["TaskAvailabilityLifetimeInSeconds"] = lifetime
    output = {"S3OutputPath": OUTPUT_PATH}
    if kms_key_id:
        output["KmsKeyId"] = kms_key_id
    arguments = {
        "FlowDefinitionName": name,
        "HumanLoopRequestSource": {"AwsManagedHumanLoopRequestSource": REKOGNITION_SOURCE},
        "HumanLoopConfig": loop_config,
        "OutputConfig": output,
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/a2i-reviews",
    }
    if conditions is not None:
        arguments["HumanLoopActivationConfig"] = {
            "HumanLoopActivationConditionsConfig": {
                "HumanLoopActivationConditions": json.dumps(conditions)
            }
        }
    return server.sagemaker.create_flow_definition(**arguments)["FlowDefinitionArn"]


def _photo(sample_photos, name: str = "astronaut.jpg") -> bytes:
    with open(sample_photos[name], "rb") as f:
        return f.read()


def _detect(server, image: bytes, loop_name: str, flow_arn: str, **extra) -> dict:
    return server.rekognition.detect_moderation_labels(
        Image={"Bytes": image},
        MinConfidence=0,
        HumanLoopConfig={"HumanLoopName": loop_name, "FlowDefinitionArn": flow_arn},
        **extra,
    )


def _start(server, name: str, flow_arn: str, content: dict | None = None) -> str:
    content = {"text": f"review {name}"} if content is None else content
    return server.a2i.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn,
        HumanLoopInput={"InputContent": json.dumps(content)},
    )["HumanLoopArn"]


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def _wait_for(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# Activation from DetectModerationLabels.


def test_an_activated_answer_starts_a_loop_and_another_does_not(review, s3, sample_photos):
    low = _flow(review, "low-confidence")
    confident = _flow(review, "very-confident", VERY_CONFIDENT)
    image = _photo(sample_photos)

    answer = _detect(review, image, "astronaut-review", low)
    activation = answer["HumanLoopActivationOutput"]
    assert activation["HumanLoopArn"] == (
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-loop/astronaut-review"
    )
    assert activation["HumanLoopActivationReasons"] == ["ConditionsEvaluation"]
    results = json.loads(activation["HumanLoopActivationConditionsEvaluationResults"])
    assert results["Conditions"][0]["EvaluationResult"] is True
    assert results["Conditions"][0]["ConditionType"] == "ModerationLabelConfidenceCheck"
    assert answer["ModerationLabels"], "MinConfidence 0 lists open_nsfw's label"

    loop = review.a2i.describe_human_loop(HumanLoopName="astronaut-review")
    assert loop["HumanLoopStatus"] == "InProgress"
    assert loop["FlowDefinitionArn"] == low
    assert loop["HumanLoopArn"] == activation["HumanLoopArn"]
    assert abs(loop["CreationTime"].timestamp() - time.time()) < 60
    assert "HumanLoopOutput" not in loop and "FailureCode" not in loop

    # What the loop keeps is A2I's inputContent of a Rekognition loop.
    content = review.loops.get("astronaut-review").input_content
    assert set(content) == {
        "aiServiceRequest",
        "aiServiceResponse",
        "humanTaskActivationConditionResults",
        "selectedAiServiceResponse",
    }
    assert content["aiServiceRequest"]["humanLoopConfig"] == {
        "flowDefinitionArn": low,
        "humanLoopName": "astronaut-review",
    }
    assert content["aiServiceRequest"]["minConfidence"] == 0
    assert "bytes" in content["aiServiceRequest"]["image"]
    labels = content["aiServiceResponse"]["moderationLabels"]
    assert labels and {"confidence", "name", "parentName"} <= set(labels[0])
    assert content["selectedAiServiceResponse"]["moderationLabels"] == labels
    assert content["humanTaskActivationConditionResults"] == results

    # Not activated: the results, no ARN, and no loop.
    quiet = _detect(review, image, "not-reviewed", confident)["HumanLoopActivationOutput"]
    assert set(quiet) == {"HumanLoopActivationConditionsEvaluationResults"}
    results = json.loads(quiet["HumanLoopActivationConditionsEvaluationResults"])
    assert results["Conditions"][0]["EvaluationResult"] is False
    with pytest.raises(ClientError) as missing:
        review.a2i.describe_human_loop(HumanLoopName="not-reviewed")
    assert _code(missing) == "ResourceNotFoundException"

    # An image in S3 is kept as its S3 object.
    s3.put_object(
        Bucket="in-bucket", Key="images/coffee.jpg", Body=_photo(sample_photos, "coffee.jpg")
    )
    review.rekognition.detect_moderation_labels(
        Image={"S3Object": {"Bucket": "in-bucket", "Name": "images/coffee.jpg"}},
        MinConfidence=0,
        HumanLoopConfig={
            "HumanLoopName": "coffee-review",
            "FlowDefinitionArn": low,
            "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]},
        },
    )
    request = review.loops.get("coffee-review").input_content["aiServiceRequest"]
    assert request["image"] == {"s3Object": {"bucket": "in-bucket", "name": "images/coffee.jpg"}}
    assert request["humanLoopConfig"]["dataAttributes"] == {
        "contentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]
    }
    # Without HumanLoopConfig nothing changes.
    plain = review.rekognition.detect_moderation_labels(Image={"Bytes": image})
    assert "HumanLoopActivationOutput" not in plain


def test_sampling_is_decided_by_the_image_and_the_flow(review, sample_photos):
    always = _flow(review, "everything", _sampling(100))
    half = _flow(review, "half", _sampling(50))
    photos = sorted(name for name in sample_photos if name.endswith(".jpg"))
    for index, name in enumerate(photos):
        image = _photo(sample_photos, name)
        answer = _detect(review, image, f"all-{index}", always)["HumanLoopActivationOutput"]
        assert answer["HumanLoopArn"].endswith(f"/all-{index}")
        expected = evaluate(
            parse_activation_conditions(json.dumps(_sampling(50))),
            {},
            sampling_key=sampling_key(half, image),
        ).activated
        sampled = _detect(review, image, f"half-{index}", half)["HumanLoopActivationOutput"]
        assert ("HumanLoopArn" in sampled) == expected, name
        # The same image through the same flow is sampled the same way again.
        again = _detect(review, image, f"half-again-{index}", half)["HumanLoopActivationOutput"]
        assert ("HumanLoopArn" in again) == expected


def test_a_used_name_an_unknown_flow_and_a_deleted_flow(review, sample_photos):
    low = _flow(review, "low-confidence")
    image = _photo(sample_photos)
    _detect(review, image, "first", low)
    with pytest.raises(ClientError) as duplicate:
        _detect(review, image, "first", low)
    assert _code(duplicate) == "InvalidParameterException"
    assert "first" in duplicate.value.response["Error"]["Message"]

    unknown = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/never-made"
    with pytest.raises(ClientError) as missing:
        _detect(review, image, "second", unknown)
    assert _code(missing) == "ResourceNotFoundException"

    review.sagemaker.delete_flow_definition(FlowDefinitionName="low-confidence")
    with pytest.raises(ClientError) as deleted:
        _detect(review, image, "third", low)
    assert _code(deleted) == "ResourceNotFoundException"
    # The deleted flow's loop lives on.
    assert review.a2i.describe_human_loop(HumanLoopName="first")["HumanLoopStatus"] == "InProgress"
    listed = review.a2i.list_human_loops(FlowDefinitionArn=low)["HumanLoopSummaries"]
    assert [loop["HumanLoopName"] for loop in listed] == ["first"]


def test_the_open_loop_quota(start_review_server, sample_photos):
    server = start_review_server("--max_open_human_loops=2")
    low = _flow(server, "low-confidence")
    image = _photo(sample_photos)
    _detect(server, image, "one", low)
    _start(server, "two", low)
    with pytest.raises(ClientError) as refused:
        _detect(server, image, "three", low)
    assert _code(refused) == "HumanLoopQuotaExceededException"
    assert refused.value.__class__.__name__ == "HumanLoopQuotaExceededException"
    response = refused.value.response
    assert response["ResourceType"] == "HumanLoop"
    assert response["ServiceCode"] == "sagemaker"
    assert response["QuotaCode"]
    with pytest.raises(ClientError) as start_refused:
        _start(server, "three", low)
    assert _code(start_refused) == "ServiceQuotaExceededException"
    assert start_refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 402
    # A stopped loop is not open any more.
    server.a2i.stop_human_loop(HumanLoopName="one")
    _detect(server, image, "three", low)


# The A2I runtime.


def test_start_describe_stop_and_delete(review):
    flow = _flow(review, "custom")
    arn = _start(review, "by-hand", flow, {"image": "s3://in-bucket/a.jpg", "note": "check"})
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-loop/by-hand"
    assert review.loops.get("by-hand").input_content == {
        "image": "s3://in-bucket/a.jpg",
        "note": "check",
    }
    # The same start again is the same loop; another input under the name is a conflict.
    assert (
        _start(review, "by-hand", flow, {"image": "s3://in-bucket/a.jpg", "note": "check"}) == arn
    )
    with pytest.raises(ClientError) as conflict:
        _start(review, "by-hand", flow, {"image": "s3://in-bucket/b.jpg"})
    assert _code(conflict) == "ConflictException"
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

    with pytest.raises(ClientError) as in_progress:
        review.a2i.delete_human_loop(HumanLoopName="by-hand")
    assert _code(in_progress) == "ValidationException"
    review.a2i.stop_human_loop(HumanLoopName="by-hand")
    review.a2i.stop_human_loop(HumanLoopName="by-hand")  # stopping again changes nothing
    described = review.a2i.describe_human_loop(HumanLoopName="by-hand")
    assert described["HumanLoopStatus"] == "Stopped"
    with pytest.raises(LoopNotOpen):
        review.loops.claim("by-hand", "alice")
    review.a2i.delete_human_loop(HumanLoopName="by-hand")
    for call in (review.a2i.describe_human_loop, review.a2i.delete_human_loop):
        with pytest.raises(ClientError) as gone:
            call(HumanLoopName="by-hand")
        assert _code(gone) == "ResourceNotFoundException"
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as stop_gone:
        review.a2i.stop_human_loop(HumanLoopName="by-hand")
    assert _code(stop_gone) == "ResourceNotFoundException"
    # A deleted loop's name may be used again.
    assert _start(review, "by-hand", flow) == arn


def test_runtime_requests_are_validated_and_signed(review):
    flow = _flow(review, "custom")
    bad = [
        ({"HumanLoopName": "Not_Lowercase"}, "humanLoopName"),
        ({"HumanLoopInput": {"InputContent": "not json"}}, "InputContent"),
        ({"HumanLoopInput": {"InputContent": "[1, 2]"}}, "InputContent"),
        ({"FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/x"}, "x"),
    ]
    for overrides, named in bad:
        arguments = {
            "HumanLoopName": "loop",
            "FlowDefinitionArn": flow,
            "HumanLoopInput": {"InputContent": "{}"},
            **overrides,
        }
        with pytest.raises(ClientError) as invalid:
            review.a2i.start_human_loop(**arguments)
        assert _code(invalid) == "ValidationException", overrides
        assert named in invalid.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as not_found:
        review.a2i.list_human_loops(
            FlowDefinitionArn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/none"
        )
    assert _code(not_found) == "ResourceNotFoundException"
    wrong = _client("sagemaker-a2i-runtime", review.url, secret="not-the-secret")
    with pytest.raises(ClientError) as refused:
        wrong.list_human_loops(FlowDefinitionArn=flow)
    assert _code(refused) == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_listing_pages_sorts_and_filters_by_creation_time(review):
    flow = _flow(review, "custom")
    other = _flow(review, "other")
    names = [f"loop-{index}" for index in range(5)]
    for name in names:
        _start(review, name, flow)
        time.sleep(0.01)
    _start(review, "elsewhere", other)

    first = review.a2i.list_human_loops(FlowDefinitionArn=flow, MaxResults=2)
    assert [loop["HumanLoopName"] for loop in first["HumanLoopSummaries"]] == names[:2]
    listed = list(first["HumanLoopSummaries"])
    token = first["NextToken"]
    while token:
        page = review.a2i.list_human_loops(FlowDefinitionArn=flow, MaxResults=2, NextToken=token)
        listed += page["HumanLoopSummaries"]
        token = page.get("NextToken")
    assert [loop["HumanLoopName"] for loop in listed] == names
    assert {loop["HumanLoopStatus"] for loop in listed} == {"InProgress"}
    assert {loop["FlowDefinitionArn"] for loop in listed} == {flow}

    paginator = review.a2i.get_paginator("list_human_loops")
    pages = paginator.paginate(
        FlowDefinitionArn=flow, SortOrder="Descending", PaginationConfig={"PageSize": 3}
    )
    newest_first = [loop["HumanLoopName"] for page in pages for loop in page["HumanLoopSummaries"]]
    assert newest_first == names[::-1]

    created = [loop["CreationTime"] for loop in listed]
    middle = review.a2i.list_human_loops(
        FlowDefinitionArn=flow, CreationTimeAfter=created[0], CreationTimeBefore=created[4]
    )["HumanLoopSummaries"]
    assert [loop["HumanLoopName"] for loop in middle] == names[1:4]
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert not review.a2i.list_human_loops(FlowDefinitionArn=flow, CreationTimeAfter=later)[
        "HumanLoopSummaries"
    ]

    with pytest.raises(ClientError) as forged:
        review.a2i.list_human_loops(FlowDefinitionArn=flow, MaxResults=2, NextToken="forged")
    assert _code(forged) == "ValidationException"
    with pytest.raises(ClientError) as other_listing:
        review.a2i.list_human_loops(
            FlowDefinitionArn=other, MaxResults=2, NextToken=first["NextToken"]
        )
    assert _code(other_listing) == "ValidationException"


# Reviews, output, claims, lifetimes.


def test_two_reviewers_complete_a_loop_and_its_output_is_written(review, s3, kms, sample_photos):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    flow = _flow(review, "two-reviewers", task_count=2, kms_key_id=key_id)
    _detect(review, _photo(sample_photos), "astronaut", flow)
    loops = review.loops
    assert [loop.name for loop in loops.open_loops("alice")] == ["astronaut"]
    loops.claim("astronaut", "alice")
    loops.claim("astronaut", "bob")
    # Both task slots are claimed: a third reviewer sees nothing and can claim nothing.
    assert loops.open_loops("carol") == []
    with pytest.raises(LoopNotOpen):
        loops.claim("astronaut", "carol")
    answer = {REKOGNITION_SOURCE: {"moderationLabels": []}}
    assert loops.answer("astronaut", "alice", answer).status == "InProgress"
    assert loops.open_loops("alice") == []  # answered
    with pytest.raises(LoopNotOpen):
        loops.claim("astronaut", "alice")
    flagged = {REKOGNITION_SOURCE: {"moderationLabels": [{"name": "Explicit", "parentName": ""}]}}
    assert loops.answer("astronaut", "bob", flagged).status == "Completed"

    described = _wait_for(
        lambda: (lambda loop: loop if "HumanLoopOutput" in loop else None)(
            review.a2i.describe_human_loop(HumanLoopName="astronaut")
        )
    )
    assert described["HumanLoopStatus"] == "Completed"
    created = described["CreationTime"].astimezone(timezone.utc)
    expected_key = (
        f"results/reviews/two-reviewers/{created:%Y/%m/%d/%H/%M/%S}/astronaut/output.json"
    )
    assert described["HumanLoopOutput"]["OutputS3Uri"] == f"s3://out-bucket/{expected_key}"
    written = s3.get_object(Bucket="out-bucket", Key=expected_key)
    assert written["ServerSideEncryption"] == "aws:kms"
    assert written["SSEKMSKeyId"].endswith(key_id)
    output = json.loads(written["Body"].read())
    assert list(output) == [
        "awsManagedHumanLoopRequestSource",
        "flowDefinitionArn",
        "humanAnswers",
        "humanLoopName",
        "inputContent",
    ]
    assert output["awsManagedHumanLoopRequestSource"] == REKOGNITION_SOURCE
    assert output["flowDefinitionArn"] == flow
    assert output["humanLoopName"] == "astronaut"
    assert [entry["workerId"] for entry in output["humanAnswers"]] == ["alice", "bob"]
    assert [entry["answerContent"] for entry in output["humanAnswers"]] == [answer, flagged]
    for entry in output["humanAnswers"]:
        assert set(entry) == {
            "acceptanceTime",
            "answerContent",
            "submissionTime",
            "timeSpentInSeconds",
            "workerId",
        }
        assert entry["submissionTime"].endswith("Z") and len(entry["submissionTime"]) == 24
        assert entry["timeSpentInSeconds"] >= 0
    assert output["inputContent"]["aiServiceResponse"]["moderationLabels"]
    # A completed loop takes no more answers, and may be deleted.
    with pytest.raises(LoopNotOpen):
        loops.claim("astronaut", "carol")
    review.a2i.delete_human_loop(HumanLoopName="astronaut")


def test_output_is_written_after_a_restart(start_review_server, s3, tmp_path):
    server = start_review_server()
    flow = _flow(server, "custom")
    _start(server, "survivor", flow, {"question": "ok?"})
    server.stop()
    # Answered while no server runs (another process on the same registry).
    loops = HumanLoopStore(str(tmp_path / "jobs.sqlite"), region="us-east-1", account_id=ACCOUNT)
    loops.claim("survivor", "alice")
    assert loops.answer("survivor", "alice", {"ok": True}).status == "Completed"

    restarted = start_review_server()
    described = _wait_for(
        lambda: (lambda loop: loop if "HumanLoopOutput" in loop else None)(
            restarted.a2i.describe_human_loop(HumanLoopName="survivor")
        )
    )
    bucket, key = described["HumanLoopOutput"]["OutputS3Uri"][len("s3://") :].split("/", 1)
    output = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    # A loop of StartHumanLoop has no request source; its input is kept as given.
    assert "awsManagedHumanLoopRequestSource" not in output
    assert output["inputContent"] == {"question": "ok?"}
    assert output["humanAnswers"][0]["answerContent"] == {"ok": True}


def test_an_abandoned_claim_returns_after_its_time_limit(review):
    flow = _flow(review, "custom")
    _start(review, "single", flow)
    loops = review.loops
    claim = loops.claim("single", "alice", time_limit_secs=1)
    assert claim.expires_at == pytest.approx(claim.claimed_at + 1)
    assert loops.claim("single", "alice") == claim  # the live claim again
    assert loops.open_loops("alice")[0].name == "single"
    assert loops.open_loops("bob") == []
    with pytest.raises(LoopNotOpen):
        loops.claim("single", "bob")
    with pytest.raises(LoopNotOpen):
        loops.answer("single", "bob", {"ok": True})  # no claim
    time.sleep(1.1)
    assert [loop.name for loop in loops.open_loops("bob")] == ["single"]
    _wait_for(lambda: not loops.claims("single"))  # the sweeper dropped it
    loops.claim("single", "bob")
    with pytest.raises(LoopNotOpen):
        loops.answer("single", "alice", {"late": True})
    assert loops.answer("single", "bob", {"ok": True}).status == "Completed"


def test_a_loop_past_its_lifetime_fails(review):
    flow = _flow(review, "short-lived", lifetime=1)
    _start(review, "too-slow", flow)
    review.loops.claim("too-slow", "alice")
    failed = _wait_for(
        lambda: (lambda loop: loop if loop["HumanLoopStatus"] == "Failed" else None)(
            review.a2i.describe_human_loop(HumanLoopName="too-slow")
        )
    )
    assert failed["FailureCode"] == "Expired"
    assert "TaskAvailabilityLifetimeInSeconds" in failed["FailureReason"]
    summary = review.a2i.list_human_loops(FlowDefinitionArn=flow)["HumanLoopSummaries"][0]
    assert summary["HumanLoopStatus"] == "Failed" and summary["FailureReason"]
    with pytest.raises(LoopNotOpen):
        review.loops.answer("too-slow", "alice", {"ok": True})
    assert review.loops.open_loops("bob") == []
    review.a2i.delete_human_loop(HumanLoopName="too-slow")


# The store alone, on a clock of its own.


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _store_flow(**overrides) -> SimpleNamespace:
    fields = {
        "name": "flow",
        "arn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/flow",
        "task_count": 2,
        "availability_lifetime_secs": 600,
        "time_limit_secs": 60,
        "output_path": OUTPUT_PATH,
        "kms_key_id": None,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_the_store_shares_task_slots_and_expires_loops(tmp_path):
    clock = _Clock()
    store = HumanLoopStore(
        str(tmp_path / "loops.sqlite"), region="us-east-1", account_id=ACCOUNT, clock=clock
    )
    flow = _store_flow()
    other = _store_flow(name="other", arn=flow.arn.replace("/flow", "/other"), task_count=1)
    store.create("a", flow, {"n": 1})
    clock.now += 1
    store.create("b", other, {"n": 2})
    assert [loop.name for loop in store.open_loops("alice")] == ["a", "b"]
    assert [loop.name for loop in store.open_loops("alice", flow_arns=[other.arn])] == ["b"]
    assert store.open_loops("alice", flow_arns=[]) == []
    store.claim("b", "bob")
    assert [loop.name for loop in store.open_loops("alice")] == ["a"]
    clock.now += 61  # bob's claim on b runs out
    assert [loop.name for loop in store.open_loops("alice")] == ["a", "b"]
    assert store.release_expired_claims() == 1
    assert store.release_expired_claims() == 0
    clock.now += 600  # past both lifetimes
    expired = store.expire()
    assert {loop.name for loop in expired} == {"a", "b"}
    assert all(loop.status == "Failed" and loop.failure_code == "Expired" for loop in expired)
    assert store.expire() == []
    assert store.open_loops("alice") == []
    assert store.completed_without_output() == []


def test_the_sweeper_retries_an_output_it_could_not_write(tmp_path, s3, moto_server):
    from service.review.sweeper import ReviewSweeper
    from storage.settings import S3Settings

    store = HumanLoopStore(str(tmp_path / "loops.sqlite"), region="us-east-1", account_id=ACCOUNT)
    flow = _store_flow(task_count=1, output_path="s3://late-bucket/reviews")
    store.create("pending", flow, {"n": 1})
    store.claim("pending", "alice")
    store.answer("pending", "alice", {"ok": True})
    sweeper = ReviewSweeper(
        store, S3Settings(endpoint_url=moto_server, region_name="us-east-1"), interval=60
    )
    assert sweeper.sweep() == []  # the bucket does not exist yet
    assert [loop.name for loop in store.completed_without_output()] == ["pending"]
    s3.create_bucket(Bucket="late-bucket")
    (uri,) = sweeper.sweep()
    assert uri.startswith("s3://late-bucket/reviews/flow/") and uri.endswith("/pending/output.json")
    assert store.get("pending").output_uri == uri
    assert store.completed_without_output() == []
    assert sweeper.sweep() == []

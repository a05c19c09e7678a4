"""Tests for SigV4 verification: requests signed by botocore, as boto3 and the AWS CLI sign them."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from service.auth import ACCESS_KEYS_ENV_VAR, AccessKeys, AuthError, verify_sigv4

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
OTHER_KEY_ID = "AKIDOTHER"
OTHER_SECRET = "otherSecret/+0123456789"
KEYS = AccessKeys.from_pairs([(KEY_ID, SECRET), (OTHER_KEY_ID, OTHER_SECRET)])

SIGNED_AT = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone.utc)
URL = "http://127.0.0.1:8085/"
TARGET = "RekognitionService.StartMediaAnalysisJob"
BODY = json.dumps(
    {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
        "Input": {"S3Object": {"Bucket": "in", "Name": "manifest.jsonl"}},
        "OutputConfig": {"S3Bucket": "out", "S3KeyPrefix": "results"},
        "ClientRequestToken": "6f1c2a52-4a8e-4c1e-9d53-8b1f0d1b2c3d",
    }
).encode()

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def sign(
    *,
    body: bytes = BODY,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    service: str = "rekognition",
    region: str = "us-east-1",
    url: str = URL,
    when: datetime = SIGNED_AT,
    extra_headers: dict[str, str] | None = None,
) -> AWSRequest:
    """Sign a JSON 1.1 request the way boto3 does, at a fixed time."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET}
    headers.update(extra_headers or {})
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    naive_utc = when.astimezone(timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive_utc):
        SigV4Auth(Credentials(key_id, secret), service, region).add_auth(request)
    return request


def verify(request, *, keys: AccessKeys = KEYS, now: datetime = SIGNED_AT, **overrides) -> str:
    """Feed the request to verify_sigv4 as a server would receive it off the wire."""
    parts = urlsplit(request.url)
    headers = {name: _text(value) for name, value in request.headers.items()}
    # urllib3 sends Host from the URL; botocore signs that same value.
    headers.setdefault("Host", parts.netloc)
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    arguments = {
        "method": request.method,
        "path": parts.path,
        "query_string": parts.query,
        "headers": headers,
        "body": body,
    }
    arguments.update(overrides)
    return verify_sigv4(**arguments, keys=keys, now=now)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def auth_error(request, **kwargs) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verify(request, **kwargs)
    return caught.value


def test_botocore_signed_request_verifies():
    assert verify(sign()) == KEY_ID


def test_second_key_pair_verifies_with_its_own_id():
    assert verify(sign(key_id=OTHER_KEY_ID, secret=OTHER_SECRET)) == OTHER_KEY_ID


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "local"])
def test_any_region_verifies(region):
    assert verify(sign(region=region)) == KEY_ID


def test_empty_body_query_string_and_path_verify():
    request = sign(body=b"", url="http://localhost:9000/some/path?b=2&a=x%20y&a=1")
    assert verify(request) == KEY_ID


def test_header_names_in_any_case_verify():
    request = sign()
    headers = {name.lower(): _text(value) for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:8085"
    assert verify(request, headers=headers) == KEY_ID


def test_content_sha256_header_matching_body_verifies():
    request = sign(extra_headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    assert verify(request) == KEY_ID


def test_content_sha256_header_not_matching_body_is_rejected():
    request = sign(extra_headers={"X-Amz-Content-SHA256": "0" * 64})
    error = auth_error(request)
    assert (error.code, error.message, error.http_status) == (
        "InvalidSignatureException",
        MISMATCH,
        400,
    )


def test_tampered_body_is_rejected():
    error = auth_error(sign(), body=BODY.replace(b'"out"', b'"evil"'))
    assert (error.code, error.message, error.http_status) == (
        "InvalidSignatureException",
        MISMATCH,
        400,
    )


def test_tampered_target_is_rejected():
    request = sign()
    request.headers["X-Amz-Target"] = "RekognitionService.GetMediaAnalysisJob"
    assert auth_error(request).code == "InvalidSignatureException"


def test_tampered_path_and_method_are_rejected():
    assert auth_error(sign(), path="/other").code == "InvalidSignatureException"
    assert auth_error(sign(), method="PUT").code == "InvalidSignatureException"


def test_wrong_secret_is_rejected():
    error = auth_error(sign(secret="not-the-secret"))
    assert (error.code, error.message) == ("InvalidSignatureException", MISMATCH)


def test_unknown_access_key_is_rejected():
    error = auth_error(sign(key_id="AKIDUNKNOWN"))
    assert (error.code, error.message, error.http_status) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
    )


def test_missing_authorization_is_rejected():
    request = AWSRequest(method="POST", url=URL, data=BODY, headers={"X-Amz-Target": TARGET})
    error = auth_error(request)
    assert (error.code, error.message, error.http_status) == (
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
        400,
    )


def test_non_sigv4_authorization_counts_as_missing():
    request = sign()
    request.headers.replace_header("Authorization", "Bearer abc.def")
    assert auth_error(request).code == "MissingAuthenticationTokenException"


def test_garbage_sigv4_authorization_is_incomplete():
    request = sign()
    request.headers.replace_header("Authorization", "AWS4-HMAC-SHA256 garbage")
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert error.http_status == 400
    assert error.message == (
        "'garbage' not a valid key=value pair (missing equal-sign) in Authorization header: "
        "'AWS4-HMAC-SHA256 garbage'."
    )


def test_authorization_missing_parameters_is_incomplete():
    request = sign()
    header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250314/us-east-1/rekognition/aws4_request"
    request.headers.replace_header("Authorization", header)
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert error.message == (
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        f"Authorization={header}"
    )


def test_missing_x_amz_date_is_incomplete():
    request = sign()
    del request.headers["X-Amz-Date"]
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert "requires existence of either a 'X-Amz-Date' or a 'Date' header" in error.message


def test_malformed_x_amz_date_is_incomplete():
    request = sign()
    request.headers.replace_header("X-Amz-Date", "2025-03-14")
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Date must be in ISO-8601 'basic format'. Got '2025-03-14'.")


def test_credential_with_wrong_element_count_is_incomplete():
    request = sign()
    auth = _text(request.headers["Authorization"]).replace("/us-east-1/", "/")
    request.headers.replace_header("Authorization", auth)
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Credential must have exactly 5 slash-delimited elements")


def test_unsupported_algorithm_is_incomplete():
    request = sign()
    auth = _text(request.headers["Authorization"]).replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")
    request.headers.replace_header("Authorization", auth)
    error = auth_error(request)
    assert error.code == "IncompleteSignatureException"
    assert error.message.startswith("Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'")


def test_scope_for_another_service_is_rejected():
    error = auth_error(sign(service="s3"))
    assert (error.code, error.message, error.http_status) == (
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'rekognition'.",
        400,
    )


def test_scope_date_must_match_x_amz_date():
    request = sign()
    auth = _text(request.headers["Authorization"]).replace("/20250314/", "/20250313/")
    request.headers.replace_header("Authorization", auth)
    error = auth_error(request)
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20250313' != '20250314', from '20250314T092653Z'."
    )


@pytest.mark.parametrize("header", ["host", "x-amz-date"])
def test_host_and_x_amz_date_must_be_signed(header):
    request = sign()
    auth = _text(request.headers["Authorization"])
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    unsigned = ";".join(name for name in signed.split(";") if name != header)
    request.headers.replace_header("Authorization", auth.replace(signed, unsigned))
    error = auth_error(request)
    assert error.code == "InvalidSignatureException"
    assert "must be a 'SignedHeader' in the AWS Authorization." in error.message


def test_signed_16_minutes_ago_is_expired():
    error = auth_error(sign(), now=SIGNED_AT + timedelta(minutes=16))
    assert (error.code, error.message, error.http_status) == (
        "InvalidSignatureException",
        "Signature expired: 20250314T092653Z is now earlier than 20250314T092753Z "
        "(20250314T094253Z - 15 min.)",
        400,
    )


def test_signed_16_minutes_ahead_is_not_yet_current():
    error = auth_error(sign(), now=SIGNED_AT - timedelta(minutes=16))
    assert (error.code, error.message, error.http_status) == (
        "InvalidSignatureException",
        "Signature not yet current: 20250314T092653Z is still later than 20250314T092553Z "
        "(20250314T091053Z + 15 min.)",
        400,
    )


@pytest.mark.parametrize("skew", [timedelta(minutes=14), timedelta(minutes=-14)])
def test_skew_of_14_minutes_verifies(skew):
    assert verify(sign(), now=SIGNED_AT + skew) == KEY_ID


def test_naive_now_is_read_as_utc():
    assert verify(sign(), now=SIGNED_AT.replace(tzinfo=None)) == KEY_ID


def test_real_boto3_client_request_verifies():
    """Capture what boto3's own client sends (before-send short-circuits the HTTP call)."""
    client = boto3.client(
        "rekognition",
        endpoint_url="http://127.0.0.1:8085",
        region_name="eu-west-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    captured = []

    def capture(request, **_):
        captured.append(request)
        raw = mock.Mock()
        raw.stream.return_value = iter([b'{"JobId": "job-1"}'])
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, raw)

    client.meta.events.register("before-send.rekognition.*", capture)
    response = client.start_media_analysis_job(
        OperationsConfig={"DetectModerationLabels": {"MinConfidence": 50}},
        Input={"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
        OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    )
    assert response["JobId"] == "job-1"

    (request,) = captured
    assert _text(request.headers["X-Amz-Target"]) == TARGET
    signed_at = datetime.strptime(_text(request.headers["X-Amz-Date"]), "%Y%m%dT%H%M%SZ")
    assert verify(request, now=signed_at.replace(tzinfo=timezone.utc)) == KEY_ID
    # The same request with any byte of the body changed no longer verifies.
    assert auth_error(request, now=signed_at, body=request.body + b" ").code == (
        "InvalidSignatureException"
    )


def test_access_keys_repr_hides_secrets():
    assert SECRET not in repr(KEYS)
    assert KEY_ID in repr(KEYS)
    assert KEYS.secret_for(KEY_ID) == SECRET
    assert KEYS.secret_for("AKIDUNKNOWN") is None
    assert KEYS.access_key_ids == {KEY_ID, OTHER_KEY_ID}


def test_access_keys_from_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "access_keys": [
                    {"access_key_id": KEY_ID, "secret_access_key": SECRET},
                    {"access_key_id": OTHER_KEY_ID, "secret_access_key": OTHER_SECRET},
                ]
            }
        )
    )
    keys = AccessKeys.from_file(path)
    assert keys.secret_for(KEY_ID) == SECRET
    assert keys.secret_for(OTHER_KEY_ID) == OTHER_SECRET
    assert verify(sign(), keys=keys) == KEY_ID


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "is not valid JSON"),
        ("[]", '"access_keys" list'),
        ('{"access_keys": {}}', '"access_keys" list'),
        ('{"access_keys": []}', "no access keys"),
        ('{"access_keys": [{"access_key_id": "A"}]}', "access_keys[0] must be an object"),
        ('{"access_keys": [{"access_key_id": "", "secret_access_key": "s"}]}', "empty access"),
        ('{"access_keys": [{"access_key_id": "A", "secret_access_key": ""}]}', "empty secret"),
        (
            '{"access_keys": [{"access_key_id": "A", "secret_access_key": "s"},'
            ' {"access_key_id": "A", "secret_access_key": "t"}]}',
            "more than once",
        ),
    ],
)
def test_malformed_access_keys_file_names_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        AccessKeys.from_file(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_missing_access_keys_file_names_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError, match="absent.json"):
        AccessKeys.from_file(path)


def test_malformed_file_error_does_not_echo_secrets(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text('{"access_keys": [{"access_key_id": "A", "secret_access_key": "hunter2"')
    with pytest.raises(ValueError) as caught:
        AccessKeys.from_file(path)
    assert "hunter2" not in str(caught.value)


def test_access_keys_from_environment():
    environ = {ACCESS_KEYS_ENV_VAR: f"{KEY_ID}:{SECRET}, {OTHER_KEY_ID}:{OTHER_SECRET}"}
    keys = AccessKeys.from_environment(environ)
    assert keys.secret_for(KEY_ID) == SECRET
    assert keys.secret_for(OTHER_KEY_ID) == OTHER_SECRET
    assert verify(sign(key_id=OTHER_KEY_ID, secret=OTHER_SECRET), keys=keys) == OTHER_KEY_ID


@pytest.mark.parametrize("value", ["", "no-colon-here", f"{KEY_ID}:", f":{SECRET}"])
def test_malformed_environment_names_variable(value):
    with pytest.raises(ValueError, match=ACCESS_KEYS_ENV_VAR) as caught:
        AccessKeys.from_environment({ACCESS_KEYS_ENV_VAR: value})
    assert SECRET not in str(caught.value)

"""Shared fixtures: an S3-protocol server (moto over HTTP), fake AWS credentials, photos."""

from __future__ import annotations

import json
import os
import urllib.request

import boto3
import pytest

from transforms.records import ErrorCode

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # No profile, config file or instance metadata may supply real credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSET = ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")

# Benign photos that ship with scikit-image: name -> loader in skimage.data.
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


@pytest.fixture(scope="session", autouse=True)
def fake_aws_credentials():
    """Fake credentials for the whole session (subprocesses inherit them): nothing reaches AWS."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        for name in _UNSET:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def moto_server(fake_aws_credentials):
    """The endpoint URL of a moto server in this process, spoken to over HTTP like real S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def moto_client(service: str, endpoint: str):
    """A boto3 client for ``service`` (s3, kms) of the moto server at ``endpoint``."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3_client(endpoint: str):
    return moto_client("s3", endpoint)


@pytest.fixture
def kms(moto_server, s3):  # s3: the server is reset first
    """A boto3 KMS client bound to the freshly reset moto server."""
    return moto_client("kms", moto_server)


@pytest.fixture
def s3(moto_server):
    """A boto3 S3 client bound to a freshly reset moto server."""
    reset_moto(moto_server)
    return s3_client(moto_server)


API_KEY_ID, API_SECRET = "AKIDMODERATION0001", "moderation-secret-0001"


def rekognition_client(endpoint: str, key_id: str = API_KEY_ID, secret: str = API_SECRET):
    """A boto3 Rekognition client for the API server at ``endpoint``, signing with SigV4."""
    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def start_api_server(argv: list[str]):
    """``python -m service.server`` with these flags, serving in a thread: ``(server, URL)``.

    Close it with ``server.shutdown(); server.server_close()``.
    """
    import threading

    from service.server import build_server

    httpd = build_server(["--port=0", *argv])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host, port = httpd.server_address[:2]
    return httpd, f"http://{host}:{port}"


@pytest.fixture
def server(tmp_path, s3, moto_server, monkeypatch):
    """The URL of an API server (registry ``tmp_path/jobs.sqlite``, open_nsfw without a backbone)
    over the moto S3 server, allowed ``in-bucket`` and ``out-bucket/results``; the buckets
    ``in-bucket``, ``out-bucket`` and ``elsewhere`` exist."""
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    s3.create_bucket(Bucket="elsewhere")
    httpd, endpoint = start_api_server(
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
    yield endpoint
    httpd.shutdown()
    httpd.server_close()


def s3_args(endpoint: str) -> list[str]:
    """Beam's flags that point its ``s3://`` filesystem (and the job's writers) at ``endpoint``."""
    return [
        f"--s3_endpoint_url={endpoint}",
        "--s3_access_key_id=testing",
        "--s3_secret_access_key=testing",
        "--s3_region_name=us-east-1",
    ]


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory) -> dict[str, str]:
    """Benign skimage photos written as JPEG and PNG: ``{"astronaut.jpg": path, ...}``."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    paths: dict[str, str] = {}
    for name in SAMPLE_PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)())
        for extension, options in (("jpg", {"quality": 90}), ("png", {})):
            path = folder / f"{name}.{extension}"
            image.save(path, **options)
            paths[path.name] = str(path)
    return paths


RESPONSE_KEYS = {"ModerationLabels", "ModerationModelVersion", "ContentTypes"}


def parse_jsonl(data: bytes) -> list[dict]:
    """The documents of a JSON Lines file; every line must end with a newline."""
    if not data:
        return []
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]


def assert_outputs_contract(summary: dict, results: list[dict]) -> None:
    """The manifest summary's exact shape (REFERENCE.md section 1) and its invariants."""
    assert list(summary) == ["version", "statistics", "errors"]
    assert summary["version"] == "1.0"
    stats = summary["statistics"]
    assert list(stats) == ["total-json-lines", "valid-json-lines", "invalid-json-lines"]
    assert all(type(v) is int and v >= 0 for v in stats.values())
    assert stats["total-json-lines"] == stats["valid-json-lines"] + stats["invalid-json-lines"]
    assert stats["valid-json-lines"] == len(results)
    assert stats["invalid-json-lines"] == len(summary["errors"])
    numbers = [error["line-numer"] for error in summary["errors"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for error in summary["errors"]:
        assert set(error) <= {"line-numer", "source-ref", "code", "message"}
        assert {"line-numer", "code", "message"} <= set(error)
        assert type(error["line-numer"]) is int and error["line-numer"] >= 1
        assert error["code"] in ErrorCode.all()
        assert isinstance(error["message"], str) and error["message"]
    for result in results:
        assert list(result) == ["source-ref", "detect-moderation-labels"]
        assert isinstance(result["source-ref"], str)
        response = result["detect-moderation-labels"]
        assert set(response) == RESPONSE_KEYS
        assert isinstance(response["ModerationLabels"], list)
        assert isinstance(response["ContentTypes"], list)
        assert isinstance(response["ModerationModelVersion"], str)
        assert "open_nsfw" in response["ModerationModelVersion"]

"""Faults between the job and S3: the pipeline talks to moto through ``tests.fault_proxy``.

Every pipeline run here reads its manifest, images and temporary parts and writes its outputs
through the proxy, which answers chosen requests with 500/503 errors, delays them or cuts the
connection mid-body. Whatever happens, every non-blank manifest line must end as exactly one
result or one error entry, and a summary must never stand beside results of another run.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
import zlib
from base64 import b64encode

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionClosedError

from pipeline.run import run
from tests.conftest import assert_outputs_contract, parse_jsonl, reset_moto, s3_args, s3_client
from tests.fault_proxy import FaultProxy, Request, delay, drop, error, seeded_mix
from transforms.output import RESULTS_FILE, SUMMARY_FILE
from transforms.records import ErrorCode

IN_BUCKET, OUT_BUCKET = "in-bucket", "out-bucket"
MANIFEST_KEY = "manifests/batch.jsonl"
OUTPUT = "results/faults"
IMAGES = ("astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.png", "camera.jpg")
JOB_FLAGS = ["--runner=DirectRunner", "--backbone=none", "--components=open_nsfw"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

slow = pytest.mark.slow


def _image_path(name: str) -> str:
    return f"/{IN_BUCKET}/images/{name}"


def _is_image_get(request: Request, name: str | None = None) -> bool:
    if request.method != "GET" or not request.path.startswith(f"/{IN_BUCKET}/images/"):
        return False
    return name is None or request.path == _image_path(name)


def _prepare(client, sample_photos) -> None:
    client.create_bucket(Bucket=IN_BUCKET)
    client.create_bucket(Bucket=OUT_BUCKET)
    for name in IMAGES:
        with open(sample_photos[name], "rb") as f:
            client.put_object(Bucket=IN_BUCKET, Key=f"images/{name}", Body=f.read())


def _put_manifest(client, lines: list[str]) -> str:
    """Writes a manifest of these lines: an image name, "" (a blank line), or raw text."""
    rendered = []
    for line in lines:
        if line in IMAGES or line.endswith((".jpg", ".png")):
            rendered.append(json.dumps({"source-ref": f"s3://{IN_BUCKET}/images/{line}"}))
        else:
            rendered.append(line)
    client.put_object(Bucket=IN_BUCKET, Key=MANIFEST_KEY, Body="\n".join(rendered) + "\n")
    return f"s3://{IN_BUCKET}/{MANIFEST_KEY}"


def _argv(endpoint: str, manifest: str, output: str = OUTPUT) -> list[str]:
    return [
        f"--manifest={manifest}",
        f"--output=s3://{OUT_BUCKET}/{output}",
        # Labels down to 0 % are returned: any change to an image's bytes changes its result.
        "--min_confidence=0",
        *JOB_FLAGS,
        *s3_args(endpoint),
    ]


def _cli(endpoint: str, manifest: str, output: str = OUTPUT) -> subprocess.CompletedProcess:
    """``python -m pipeline.run`` itself, in a process of its own (fake credentials inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run", *_argv(endpoint, manifest, output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )


def _object(client, key: str) -> bytes | None:
    try:
        return client.get_object(Bucket=OUT_BUCKET, Key=key)["Body"].read()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
        return None


def _outputs(client, output: str = OUTPUT) -> dict:
    results = _object(client, f"{output}/{RESULTS_FILE}")
    summary = _object(client, f"{output}/{SUMMARY_FILE}")
    listing = client.list_objects_v2(Bucket=OUT_BUCKET, Prefix=f"{output}/")
    return {
        "results_bytes": results,
        "results": parse_jsonl(results) if results is not None else None,
        "summary_bytes": summary,
        "summary": json.loads(summary) if summary is not None else None,
        "keys": sorted(item["Key"][len(output) + 1 :] for item in listing.get("Contents", [])),
    }


def _codes(summary: dict) -> dict[int, str]:
    return {e["line-numer"]: e["code"] for e in summary["errors"]}


def _refs(outputs: dict) -> list[str]:
    return [r["source-ref"].rsplit("/", 1)[1] for r in outputs["results"]]


def _assert_complete(outputs: dict, lines: list[str]) -> None:
    """Every non-blank line is exactly one result or one error; the two files agree."""
    assert outputs["summary"] is not None and outputs["results"] is not None
    assert_outputs_contract(outputs["summary"], outputs["results"])
    non_blank = [n for n, line in enumerate(lines, 1) if line.strip()]
    assert outputs["summary"]["statistics"]["total-json-lines"] == len(non_blank)
    errors = _codes(outputs["summary"])
    analysed = [lines[n - 1] for n in non_blank if n not in errors]
    assert _refs(outputs) == analysed  # in manifest order, none lost, none twice
    assert set(errors) <= set(non_blank)


@pytest.fixture
def proxy(s3, moto_server):
    with FaultProxy(moto_server) as proxy:
        yield proxy


# -- the proxy itself -------------------------------------------------------------------------


def _client(endpoint: str, attempts: int = 1):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


_SAME_HEADERS = ("ETag", "Content-Length", "Content-Type", "Last-Modified", "x-amz-meta-note")


def test_proxy_forwards_requests_and_responses_faithfully(s3, proxy):
    s3.create_bucket(Bucket=IN_BUCKET)
    via = _client(proxy.url)
    data = bytes(range(256)) * 1000
    via.put_object(Bucket=IN_BUCKET, Key="a b/x.bin", Body=data, Metadata={"note": "kept"})
    assert s3.get_object(Bucket=IN_BUCKET, Key="a b/x.bin")["Body"].read() == data
    through = via.get_object(Bucket=IN_BUCKET, Key="a b/x.bin")
    direct = s3.get_object(Bucket=IN_BUCKET, Key="a b/x.bin")
    assert through["Body"].read() == data
    through_headers = through["ResponseMetadata"]["HTTPHeaders"]
    direct_headers = direct["ResponseMetadata"]["HTTPHeaders"]
    for name in _SAME_HEADERS:
        assert through_headers[name.lower()] == direct_headers[name.lower()], name
    ranged = via.get_object(Bucket=IN_BUCKET, Key="a b/x.bin", Range="bytes=10-19")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["Body"].read() == data[10:20]
    assert via.head_object(Bucket=IN_BUCKET, Key="a b/x.bin")["ContentLength"] == len(data)
    with pytest.raises(ClientError) as missing:
        via.get_object(Bucket=IN_BUCKET, Key="nothing")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    via.delete_object(Bucket=IN_BUCKET, Key="a b/x.bin")
    assert s3.list_objects_v2(Bucket=IN_BUCKET)["KeyCount"] == 0
    assert [entry[:4] for entry in proxy.requests("GET", "/a%20b/x.bin")] == [
        ("GET", f"/{IN_BUCKET}/a%20b/x.bin", "", n) for n in (1, 2)
    ]


def _signed(method: str, url: str, headers: dict | None = None, body: bytes = b"") -> dict:
    """``headers`` plus a SigV4 signature of the request, as an S3 client would send them."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if "x-amz-trailer" in request.headers:  # signed as aws-chunked with a trailing checksum
        request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    S3SigV4Auth(Credentials("testing", "testing"), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _raw_put(url: str, chunks: list[bytes], headers: dict) -> int:
    """A signed PUT sent with Transfer-Encoding: chunked, one HTTP chunk per item of ``chunks``."""
    headers = {"Content-Type": "application/octet-stream", **headers}
    request = urllib.request.Request(
        url,
        data=iter(chunks),  # an iterable without a length: urllib sends it chunked
        method="PUT",
        headers=_signed("PUT", url, headers, b"".join(chunks)),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_proxy_forwards_chunked_and_aws_chunked_uploads(s3, proxy):
    s3.create_bucket(Bucket=IN_BUCKET)
    data = b"".join(b"part %d of a chunked body\n" % n for n in range(500))
    pieces = [data[i : i + 4000] for i in range(0, len(data), 4000)]
    assert _raw_put(f"{proxy.url}/{IN_BUCKET}/chunked.txt", pieces, {}) == 200
    assert s3.get_object(Bucket=IN_BUCKET, Key="chunked.txt")["Body"].read() == data

    # aws-chunked (what SDKs send for trailing checksums) inside HTTP chunked transfer: the
    # proxy must pass the inner framing through untouched for the store to decode it.
    checksum = b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    framed = (
        b"%x\r\n" % len(data)
        + data
        + b"\r\n0\r\nx-amz-checksum-crc32:"
        + checksum.encode()
        + b"\r\n\r\n"
    )
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    framed_pieces = [framed[i : i + 3000] for i in range(0, len(framed), 3000)]
    assert _raw_put(f"{proxy.url}/{IN_BUCKET}/aws-chunked.txt", framed_pieces, headers) == 200
    assert s3.get_object(Bucket=IN_BUCKET, Key="aws-chunked.txt")["Body"].read() == data
    assert [e[3] for e in proxy.requests("PUT")] == [1, 1]
    assert s3.head_object(Bucket=IN_BUCKET, Key="aws-chunked.txt")["ContentLength"] == len(data)


def test_proxy_injects_errors_delays_and_mid_body_drops(s3, proxy):
    s3.create_bucket(Bucket=IN_BUCKET)
    data = random.Random(5).randbytes(100_000)
    s3.put_object(Bucket=IN_BUCKET, Key="x.bin", Body=data)
    faults = {1: error(503, "SlowDown"), 2: error(500), 3: drop(0.25), 4: delay(1.0)}
    proxy.rule = lambda request: faults.get(request.attempt)
    via = _client(proxy.url)
    for status, code in ((503, "SlowDown"), (500, "InternalError")):
        with pytest.raises(ClientError) as failed:
            via.get_object(Bucket=IN_BUCKET, Key="x.bin")
        assert failed.value.response["Error"]["Code"] == code
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    # The drop: the full Content-Length is promised, a quarter arrives, the connection ends.
    url = f"{proxy.url}/{IN_BUCKET}/x.bin"
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=_signed("GET", url)), timeout=30
    ) as got:
        assert got.headers["Content-Length"] == str(len(data))
        with pytest.raises(http.client.IncompleteRead) as cut:
            got.read()
    assert cut.value.partial == data[: len(data) // 4]

    started = time.monotonic()
    assert via.get_object(Bucket=IN_BUCKET, Key="x.bin")["Body"].read() == data
    assert time.monotonic() - started >= 1.0

    # A drop of a response without a body: the PUT takes effect, its answer never comes.
    proxy.rule = lambda request: drop() if request.method == "PUT" else None
    with pytest.raises(ConnectionClosedError):
        via.put_object(Bucket=IN_BUCKET, Key="y.bin", Body=b"stored anyway")
    assert s3.get_object(Bucket=IN_BUCKET, Key="y.bin")["Body"].read() == b"stored anyway"
    assert [e[4] for e in proxy.log] == ["error", "error", "drop", "delay", "drop"]


def test_seeded_mix_depends_only_on_seed_and_request():
    def requests(n):
        return [Request("GET", f"/b/k{i}", "", None, b"", 1) for i in range(n)]

    faults = [error(503), drop()]
    first = [seeded_mix(11, 0.3, faults)(r) for r in requests(400)]
    again = [seeded_mix(11, 0.3, faults)(r) for r in reversed(requests(400))][::-1]
    other = [seeded_mix(12, 0.3, faults)(r) for r in requests(400)]
    assert first == again
    assert first != other
    assert 80 <= sum(f is not None for f in first) <= 160
    assert {f.kind for f in first if f} == {"error", "drop"}
    later = Request("GET", "/b/k0", "", None, b"", 2)
    assert all(seeded_mix(s, 1.0, faults)(later) is None for s in range(20))


# -- transient faults on images ---------------------------------------------------------------

FIVE = list(IMAGES)


@pytest.fixture(scope="module")
def baseline(moto_server, sample_photos):
    """The results of a run without faults over the five images, by image name."""
    reset_moto(moto_server)
    client = s3_client(moto_server)
    _prepare(client, sample_photos)
    run(_argv(moto_server, _put_manifest(client, FIVE)))
    outputs = _outputs(client)
    _assert_complete(outputs, FIVE)
    assert outputs["summary"]["errors"] == []
    return {name: r for name, r in zip(_refs(outputs), outputs["results"])}


# Per image: what its GETs get, by attempt (later attempts pass).
TRANSIENT = {
    "astronaut.jpg": {1: error(503, "SlowDown"), 2: drop(0.5)},
    "chelsea.png": {1: error(500), 2: error(500), 3: drop(0.5)},
    "coffee.jpg": {1: delay(3.0)},
    "rocket.png": {1: drop(0.5)},
    "camera.jpg": {1: drop(0.3)},
    "missing.jpg": {1: drop(0.5)},  # its 404 answer cut short: the status still says it all
}


@slow
def test_transient_image_faults_end_in_results_for_every_image(s3, proxy, sample_photos, baseline):
    _prepare(s3, sample_photos)
    lines = [*FIVE[:2], "", "not json", *FIVE[2:], "missing.jpg"]
    manifest = _put_manifest(s3, lines)

    def rule(request):
        for name, faults in TRANSIENT.items():
            if _is_image_get(request, name):
                return faults.get(request.attempt)
        return None

    proxy.rule = rule
    run(_argv(proxy.url, manifest))
    outputs = _outputs(s3)
    _assert_complete(outputs, lines)
    # Only the two lines that are wrong in themselves are errors: no INVALID_IMAGE from a drop.
    assert _codes(outputs["summary"]) == {4: ErrorCode.INVALID_JSON, 8: ErrorCode.IMAGE_NOT_FOUND}
    assert _refs(outputs) == FIVE
    for name, result in zip(_refs(outputs), outputs["results"]):
        assert result == baseline[name], name  # the intact bytes were analysed
    # The faults did happen, and each image was read exactly as often as it took.
    gets = {name: len(proxy.requests("GET", _image_path(name))) for name in TRANSIENT}
    assert gets == {
        "astronaut.jpg": 3,
        "chelsea.png": 4,
        "coffee.jpg": 1,
        "rocket.png": 2,
        "camera.jpg": 2,
        "missing.jpg": 1,
    }
    assert len(proxy.injected("drop")) == 5
    assert len(proxy.injected("error")) == 3
    assert outputs["keys"] == [SUMMARY_FILE, RESULTS_FILE]


@slow
def test_persistent_image_faults_cost_only_their_lines(s3, proxy, sample_photos):
    _prepare(s3, sample_photos)
    manifest = _put_manifest(s3, FIVE)

    def rule(request):
        if _is_image_get(request, "rocket.png"):
            return drop(0.5)
        if _is_image_get(request, "chelsea.png"):
            return error(500)
        return None

    proxy.rule = rule
    run(_argv(proxy.url, manifest))
    outputs = _outputs(s3)
    _assert_complete(outputs, FIVE)
    by_line = {e["line-numer"]: e for e in outputs["summary"]["errors"]}
    assert _codes(outputs["summary"]) == {
        2: ErrorCode.IMAGE_READ_FAILED,
        4: ErrorCode.IMAGE_READ_FAILED,
    }
    assert _refs(outputs) == ["astronaut.jpg", "coffee.jpg", "camera.jpg"]
    dropped = by_line[4]["message"]
    assert dropped.startswith("The image could not be read in 4 tries: "), dropped
    size = os.path.getsize(sample_photos["rocket.png"])
    assert dropped.endswith(f"ShortRead: short read: {size // 2} of {size} bytes arrived"), dropped
    assert by_line[4]["source-ref"] == f"s3://{IN_BUCKET}/images/rocket.png"
    assert "InternalError" in by_line[2]["message"], by_line[2]["message"]
    assert len(proxy.requests("GET", _image_path("rocket.png"))) == 4  # READ_ATTEMPTS
    assert len(proxy.requests("GET", _image_path("chelsea.png"))) == 3  # boto3 standard mode


# -- a seeded mix over every request ----------------------------------------------------------

MIX = [error(503, "SlowDown"), error(500), delay(0.4), drop(0.5)]


def _normalised(rule):
    """The rule, seeing temporary folders without their random run id (so seeds repeat)."""

    def normalised(request):
        path = re.sub(r"/\.temporary-[0-9a-f]+", "/.temporary-RUN", request.path)
        return rule(dataclasses.replace(request, path=path))

    return normalised


@slow
@pytest.mark.parametrize("seed", [65, 141])
def test_seeded_fault_mix_still_gives_complete_outputs(s3, proxy, sample_photos, seed, baseline):
    _prepare(s3, sample_photos)
    lines = [*FIVE, "", "[1, 2]", "missing.png"]
    manifest = _put_manifest(s3, lines)
    # Every request of the job may be faulted, on its first two tries.
    proxy.rule = _normalised(seeded_mix(seed, 0.35, MIX, max_attempt=2))
    run(_argv(proxy.url, manifest))
    outputs = _outputs(s3)
    _assert_complete(outputs, lines)
    assert _codes(outputs["summary"]) == {
        7: ErrorCode.NOT_A_JSON_OBJECT,
        8: ErrorCode.IMAGE_NOT_FOUND,
    }
    for name, result in zip(_refs(outputs), outputs["results"]):
        assert result == baseline[name], name
    assert outputs["keys"] == [SUMMARY_FILE, RESULTS_FILE]
    # These seeds hit image reads with drops, and publishing writes, for sure.
    assert any(path.startswith(f"/{IN_BUCKET}/images/") for _, path, *_ in proxy.injected("drop"))
    assert any(
        method in ("PUT", "POST") and path.endswith((RESULTS_FILE, SUMMARY_FILE))
        for method, path, *_ in proxy.injected()
    ), proxy.log


# -- publishing -------------------------------------------------------------------------------

OLD = ["chelsea.png", "not json", "astronaut.jpg"]
NEW = [*FIVE, "missing.jpg"]


def _previous_run(client, moto_server) -> dict:
    """A successful earlier run into OUTPUT, with other counts than NEW's."""
    run(_argv(moto_server, _put_manifest(client, OLD)))
    old = _outputs(client)
    _assert_complete(old, OLD)
    assert old["keys"] == [SUMMARY_FILE, RESULTS_FILE]
    _put_manifest(client, NEW)
    return old


def _assert_no_mismatched_pair(outputs: dict, old: dict) -> None:
    """A summary present must be the old one, beside the old results."""
    if outputs["summary_bytes"] is not None:
        assert outputs["summary_bytes"] == old["summary_bytes"]
        assert outputs["results_bytes"] == old["results_bytes"]


def _to(name: str, *methods: str):
    return lambda request: request.method in methods and request.path.endswith(f"/{name}")


@slow
def test_failed_summary_upload_leaves_no_old_summary_beside_new_results(
    s3, proxy, moto_server, sample_photos
):
    _prepare(s3, sample_photos)
    old = _previous_run(s3, moto_server)
    refuse = _to(SUMMARY_FILE, "PUT", "POST")
    proxy.rule = lambda request: error(500) if refuse(request) else None
    finished = _cli(proxy.url, f"s3://{IN_BUCKET}/{MANIFEST_KEY}")
    assert finished.returncode == 1, finished.stderr[-3000:]
    assert "error: the job failed" in finished.stderr
    outputs = _outputs(s3)
    assert proxy.injected("error", SUMMARY_FILE)  # the new summary was tried, and refused
    assert proxy.requests("PUT", RESULTS_FILE)
    _assert_no_mismatched_pair(outputs, old)
    assert outputs["summary"] is None  # the old one went first
    assert [r["source-ref"].rsplit("/", 1)[1] for r in outputs["results"]] == FIVE


@slow
def test_failed_results_upload_leaves_no_mismatched_pair(s3, proxy, moto_server, sample_photos):
    _prepare(s3, sample_photos)
    old = _previous_run(s3, moto_server)
    refuse = _to(RESULTS_FILE, "PUT", "POST")
    proxy.rule = lambda request: error(500) if refuse(request) else None
    with pytest.raises(Exception, match="internal error"):
        run(_argv(proxy.url, f"s3://{IN_BUCKET}/{MANIFEST_KEY}"))
    outputs = _outputs(s3)
    assert proxy.injected("error", RESULTS_FILE)
    _assert_no_mismatched_pair(outputs, old)
    assert outputs["results_bytes"] == old["results_bytes"]  # a refused PUT replaces nothing
    assert outputs["summary"] is None
    assert not proxy.requests("PUT", SUMMARY_FILE)


@slow
def test_failure_while_assembling_results_publishes_no_partial_results(
    s3, proxy, moto_server, sample_photos
):
    _prepare(s3, sample_photos)
    old = _previous_run(s3, moto_server)
    # The temporary parts cannot be read back once results.jsonl has been opened for writing.
    proxy.rule = lambda request: (
        error(403, "AccessDenied")
        if request.method == "GET" and "/.temporary-" in request.path
        else None
    )
    with pytest.raises(Exception, match="Access Denied"):
        run(_argv(proxy.url, f"s3://{IN_BUCKET}/{MANIFEST_KEY}"))
    outputs = _outputs(s3)
    assert proxy.injected("error", "/.temporary-")
    _assert_no_mismatched_pair(outputs, old)
    # Nothing half-written replaced the old results: the failed upload was abandoned.
    assert outputs["results_bytes"] == old["results_bytes"]
    assert not proxy.requests("PUT", RESULTS_FILE)


@slow
def test_refused_removal_of_the_old_summary_fails_the_job_and_keeps_the_old_pair(
    s3, proxy, moto_server, sample_photos
):
    _prepare(s3, sample_photos)
    old = _previous_run(s3, moto_server)
    refuse = _to(SUMMARY_FILE, "DELETE")
    proxy.rule = lambda request: error(403, "AccessDenied") if refuse(request) else None
    with pytest.raises(Exception, match="Access Denied"):
        run(_argv(proxy.url, f"s3://{IN_BUCKET}/{MANIFEST_KEY}"))
    outputs = _outputs(s3)
    assert proxy.injected("error", SUMMARY_FILE)
    assert outputs["summary_bytes"] == old["summary_bytes"]
    assert outputs["results_bytes"] == old["results_bytes"]
    assert not proxy.requests("PUT", RESULTS_FILE)


def _removes_temporary(request) -> bool:
    if request.method == "DELETE":
        return "/.temporary-" in request.path
    # s3fs removes a folder with DeleteObjects: POST /bucket?delete, the keys in the body.
    return request.method == "POST" and request.query == "delete" and b".temporary-" in request.body


@slow
def test_refused_cleanup_of_the_temporary_folder_still_publishes(s3, proxy, sample_photos):
    _prepare(s3, sample_photos)
    lines = [*FIVE[:3], "{}"]
    manifest = _put_manifest(s3, lines)
    proxy.rule = lambda request: error(403, "AccessDenied") if _removes_temporary(request) else None
    finished = _cli(proxy.url, manifest)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "could not be removed" in finished.stderr
    outputs = _outputs(s3)
    _assert_complete(outputs, lines)
    assert _codes(outputs["summary"]) == {4: ErrorCode.MISSING_SOURCE_REF}
    assert proxy.injected("error")  # the cleanup was tried, and refused
    leftovers = [key for key in outputs["keys"] if key.startswith(".temporary-")]
    assert leftovers and all(key.endswith(".jsonl") for key in leftovers)
    assert set(outputs["keys"]) - set(leftovers) == {SUMMARY_FILE, RESULTS_FILE}

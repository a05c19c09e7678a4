"""End-to-end runs against a real S3-protocol server (moto over HTTP), read back with boto3."""

from __future__ import annotations

import json

import pytest

from pipeline.run import run
from tests.conftest import (
    assert_outputs_contract,
    parse_jsonl,
    reset_moto,
    s3_args,
    s3_client,
)
from transforms.output import RESULTS_FILE, SUMMARY_FILE
from transforms.records import ErrorCode

pytestmark = pytest.mark.slow

IN_BUCKET = "in-bucket"
OUT_BUCKET = "out-bucket"
MANIFEST_KEY = "manifests/batch.jsonl"
OUTPUT_PREFIX = "results/run1"
BEAM = ["--runner=DirectRunner"]


def _ref(key: str, bucket: str = IN_BUCKET) -> str:
    return f"s3://{bucket}/{key}"


def _line(source_ref: str) -> bytes:
    return json.dumps({"source-ref": source_ref}).encode()


def _put_manifest(client, lines: list[bytes]) -> str:
    client.put_object(
        Bucket=IN_BUCKET, Key=MANIFEST_KEY, Body=b"".join(line + b"\n" for line in lines)
    )
    return _ref(MANIFEST_KEY)


def _run(endpoint: str, manifest: str, output_prefix: str = OUTPUT_PREFIX) -> dict:
    return run(
        [
            f"--manifest={manifest}",
            f"--output=s3://{OUT_BUCKET}/{output_prefix}",
            *BEAM,
            *s3_args(endpoint),
        ]
    )


def _read_outputs(client, output_prefix: str = OUTPUT_PREFIX) -> dict:
    results_object = client.get_object(Bucket=OUT_BUCKET, Key=f"{output_prefix}/{RESULTS_FILE}")
    results_bytes = results_object["Body"].read()
    summary_object = client.get_object(Bucket=OUT_BUCKET, Key=f"{output_prefix}/{SUMMARY_FILE}")
    summary_bytes = summary_object["Body"].read()
    listing = client.list_objects_v2(Bucket=OUT_BUCKET, Prefix=f"{output_prefix}/")
    return {
        "results_bytes": results_bytes,
        "results_length": results_object["ContentLength"],
        "results": parse_jsonl(results_bytes),
        "summary": json.loads(summary_bytes),
        "keys": sorted(item["Key"] for item in listing.get("Contents", [])),
        "all_out_keys": sorted(
            item["Key"] for item in client.list_objects_v2(Bucket=OUT_BUCKET).get("Contents", [])
        ),
    }


def _prepare_buckets(client, sample_photos) -> None:
    client.create_bucket(Bucket=IN_BUCKET)
    client.create_bucket(Bucket=OUT_BUCKET)
    for name in ("astronaut.jpg", "chelsea.png", "coffee.png"):
        with open(sample_photos[name], "rb") as f:
            client.put_object(Bucket=IN_BUCKET, Key=f"images/{name}", Body=f.read())
    client.put_object(
        Bucket=IN_BUCKET, Key="images/notes.jpg", Body=b"plain text, not an image\n" * 10
    )


@pytest.fixture(scope="module")
def s3_job(moto_server, sample_photos):
    """One run over a mixed manifest on S3, read back before any other test resets moto."""
    reset_moto(moto_server)
    client = s3_client(moto_server)
    _prepare_buckets(client, sample_photos)
    refs = {
        1: _ref("images/astronaut.jpg"),
        2: _ref("images/chelsea.png"),
        3: _ref("images/missing.jpg"),
        4: _ref("images/notes.jpg"),
        5: _ref("images/astronaut.jpg"),
        7: _ref("images/coffee.png"),
        8: sample_photos["rocket.jpg"],  # a local file beside S3 objects is allowed
    }
    lines = [_line(refs[n]) if n in refs else b"not json at all" for n in range(1, 9)]
    outcome = _run(moto_server, _put_manifest(client, lines))
    return {"outcome": outcome, **_read_outputs(client), "refs": refs}


def test_s3_results_in_manifest_order(s3_job):
    refs = s3_job["refs"]
    assert [r["source-ref"] for r in s3_job["results"]] == [refs[n] for n in (1, 2, 5, 7, 8)]
    for result in s3_job["results"]:
        assert result["detect-moderation-labels"]["ModerationLabels"] == []


def test_s3_summary_codes_and_invariant(s3_job):
    summary = s3_job["summary"]
    assert_outputs_contract(summary, s3_job["results"])
    assert summary["statistics"] == {
        "total-json-lines": 8,
        "valid-json-lines": 5,
        "invalid-json-lines": 3,
    }
    assert {e["line-numer"]: e["code"] for e in summary["errors"]} == {
        3: ErrorCode.IMAGE_NOT_FOUND,
        4: ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
        6: ErrorCode.INVALID_JSON,
    }
    by_line = {e["line-numer"]: e for e in summary["errors"]}
    assert by_line[3]["source-ref"] == s3_job["refs"][3]
    assert by_line[4]["source-ref"] == s3_job["refs"][4]


def test_s3_run_returns_the_exact_keys(s3_job):
    outcome = s3_job["outcome"]
    assert outcome["results"] == f"s3://{OUT_BUCKET}/{OUTPUT_PREFIX}/{RESULTS_FILE}"
    assert outcome["summary"] == f"s3://{OUT_BUCKET}/{OUTPUT_PREFIX}/{SUMMARY_FILE}"
    assert outcome["statistics"] == s3_job["summary"]["statistics"]


def test_s3_leaves_no_temporary_objects(s3_job):
    expected = [f"{OUTPUT_PREFIX}/{SUMMARY_FILE}", f"{OUTPUT_PREFIX}/{RESULTS_FILE}"]
    assert s3_job["keys"] == expected
    assert s3_job["all_out_keys"] == expected


def test_s3_all_invalid_gives_empty_results_object(s3, moto_server, sample_photos):
    _prepare_buckets(s3, sample_photos)
    manifest = _put_manifest(
        s3,
        [
            _line(_ref("images/missing.jpg")),
            _line(_ref("images/notes.jpg")),
            _line(_ref("key.jpg", bucket="no-such-bucket")),
            b"[1, 2]",
        ],
    )
    outcome = _run(moto_server, manifest, "results/empty")
    outputs = _read_outputs(s3, "results/empty")
    assert outputs["results_bytes"] == b""
    assert outputs["results_length"] == 0
    assert_outputs_contract(outputs["summary"], outputs["results"])
    assert outputs["summary"]["statistics"] == {
        "total-json-lines": 4,
        "valid-json-lines": 0,
        "invalid-json-lines": 4,
    }
    codes = {e["line-numer"]: e["code"] for e in outputs["summary"]["errors"]}
    assert codes == {
        1: ErrorCode.IMAGE_NOT_FOUND,
        2: ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
        3: ErrorCode.IMAGE_NOT_FOUND,
        4: ErrorCode.NOT_A_JSON_OBJECT,
    }
    assert outputs["keys"] == [f"results/empty/{SUMMARY_FILE}", f"results/empty/{RESULTS_FILE}"]
    assert outcome["statistics"] == outputs["summary"]["statistics"]


def test_s3_missing_manifest_is_refused(s3, moto_server):
    s3.create_bucket(Bucket=IN_BUCKET)
    s3.create_bucket(Bucket=OUT_BUCKET)
    with pytest.raises(ValueError, match="--manifest"):
        _run(moto_server, _ref("manifests/nowhere.jsonl"))
    assert s3.list_objects_v2(Bucket=OUT_BUCKET).get("KeyCount") == 0


def test_s3_missing_output_bucket_is_refused(s3, moto_server, sample_photos):
    s3.create_bucket(Bucket=IN_BUCKET)
    with open(sample_photos["chelsea.png"], "rb") as f:
        s3.put_object(Bucket=IN_BUCKET, Key="images/chelsea.png", Body=f.read())
    manifest = _put_manifest(s3, [_line(_ref("images/chelsea.png"))])
    with pytest.raises(ValueError, match=f"--output s3://{OUT_BUCKET}/"):
        _run(moto_server, manifest)


def test_s3_outputs_encrypted_with_a_kms_key(s3, kms, moto_server, sample_photos):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    s3.create_bucket(Bucket=IN_BUCKET)
    s3.create_bucket(Bucket=OUT_BUCKET)
    with open(sample_photos["chelsea.png"], "rb") as f:
        s3.put_object(Bucket=IN_BUCKET, Key="images/chelsea.png", Body=f.read())
    manifest = _put_manifest(s3, [_line(_ref("images/chelsea.png")), b"not json"])
    run(
        [
            f"--manifest={manifest}",
            f"--output=s3://{OUT_BUCKET}/encrypted",
            f"--output_kms_key_id={key_id}",
            "--backbone=none",
            *BEAM,
            *s3_args(moto_server),
        ]
    )
    for name in (RESULTS_FILE, SUMMARY_FILE):
        head = s3.head_object(Bucket=OUT_BUCKET, Key=f"encrypted/{name}")
        assert head["ServerSideEncryption"] == "aws:kms", name
        assert head["SSEKMSKeyId"].endswith(key_id), name
    outputs = _read_outputs(s3, "encrypted")
    assert_outputs_contract(outputs["summary"], outputs["results"])


def test_kms_key_needs_an_s3_output(tmp_path):
    with pytest.raises(ValueError, match="--output_kms_key_id applies to s3:// outputs only"):
        run([f"--manifest={tmp_path}/m.jsonl", f"--output={tmp_path}/out", "--output_kms_key_id=k"])

"""One hostile line costs only itself; exit codes mean one thing; manifests are read at the S3
version asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.run import run
from tests.conftest import assert_outputs_contract, parse_jsonl, s3_args
from transforms.manifest import ValidateManifestLine
from transforms.output import RESULTS_FILE, SUMMARY_FILE
from transforms.records import ErrorCode, ManifestError, ManifestLine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--runner=DirectRunner", "--backbone=none"]


def _line(source_ref) -> bytes:
    return json.dumps({"source-ref": source_ref}).encode()


def _outputs(output) -> tuple[dict, list[dict]]:
    with open(os.path.join(output, SUMMARY_FILE), "rb") as f:
        summary = json.load(f)
    with open(os.path.join(output, RESULTS_FILE), "rb") as f:
        results = parse_jsonl(f.read())
    assert_outputs_contract(summary, results)
    return summary, results


def _codes(summary: dict) -> dict[int, str]:
    return {error["line-numer"]: error["code"] for error in summary["errors"]}


# The lines that killed whole jobs.
HUGE_SOURCE_REF = b'{"source-ref": ' + b"9" * 5000 + b"}"
LONE_SURROGATE = b'{"source-ref": "/images/\\udcff-0.jpg"}'
BROKEN_PAIR = b'{"source-ref": "/images/\\ud83d\\u0e00.jpg"}'  # a byte flip in \ud83d\ude00


def _huge_number_beside(source_ref: str) -> bytes:
    return b'{"source-ref": ' + json.dumps(source_ref).encode() + b', "n": ' + b"4" * 4400 + b"}"


@pytest.mark.parametrize(
    "raw, code",
    [
        (HUGE_SOURCE_REF, ErrorCode.INVALID_SOURCE_REF),
        (LONE_SURROGATE, ErrorCode.INVALID_SOURCE_REF),
        (BROKEN_PAIR, ErrorCode.INVALID_SOURCE_REF),
        (b'{"source-ref": "/a.jpg", "n": 1e999999, "m": -Infinity}', None),
        (_huge_number_beside("/a.jpg"), None),
    ],
    ids=["huge number", "lone surrogate", "broken pair", "float overflow", "huge number beside"],
)
def test_hostile_values_are_refused_or_ignored(raw, code):
    outcome = ValidateManifestLine().parse(7, raw)
    if code is None:
        assert outcome == ManifestLine(7, "/a.jpg")
    else:
        assert isinstance(outcome, ManifestError) and outcome.code == code
        assert outcome.message
        if outcome.source_ref is not None:
            outcome.source_ref.encode("utf-8")  # what the summary carries can be written


def test_a_non_string_source_ref_is_named_by_its_json_type():
    for raw, kind in (
        (b'{"source-ref": 12}', "number"),
        (b'{"source-ref": [1]}', "array"),
        (b'{"source-ref": {"a": 1}}', "object"),
        (b'{"source-ref": null}', "null"),
        (b'{"source-ref": true}', "boolean"),
    ):
        outcome = ValidateManifestLine().parse(1, raw)
        assert outcome.code == ErrorCode.INVALID_SOURCE_REF
        assert outcome.message.endswith(f"not {kind}."), outcome.message


@pytest.mark.slow
def test_hostile_lines_cost_only_themselves(tmp_path, sample_photos):
    photo = sample_photos["chelsea.jpg"]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(
        b"\n".join(
            [
                _line(photo),
                HUGE_SOURCE_REF,
                _huge_number_beside(photo),
                LONE_SURROGATE,
                BROKEN_PAIR,
                _line(sample_photos["coffee.png"]),
            ]
        )
        + b"\n"
    )
    output = tmp_path / "out"
    outcome = run([f"--manifest={manifest}", f"--output={output}", *FAST])
    summary, results = _outputs(output)
    assert _codes(summary) == {
        2: ErrorCode.INVALID_SOURCE_REF,
        4: ErrorCode.INVALID_SOURCE_REF,
        5: ErrorCode.INVALID_SOURCE_REF,
    }
    assert [r["source-ref"] for r in results] == [photo, photo, sample_photos["coffee.png"]]
    assert summary["errors"][1]["source-ref"] == "/images/\\udcff-0.jpg"
    assert outcome["statistics"]["total-json-lines"] == 6


@pytest.mark.slow
def test_an_unexpected_exception_becomes_the_lines_internal_error(
    tmp_path, sample_photos, monkeypatch
):
    """Whatever validation raises on one line (here a bug injected for line 2) is that line's
    INTERNAL_ERROR, with the exception's class and message and no traceback."""
    parse = ValidateManifestLine.parse

    def broken_on_line_2(self, number, raw):
        if number == 2:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return parse(self, number, raw)

    monkeypatch.setattr(ValidateManifestLine, "parse", broken_on_line_2)
    photo = sample_photos["astronaut.jpg"]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(b"\n".join([_line(photo)] * 3) + b"\n")
    output = tmp_path / "out"
    run([f"--manifest={manifest}", f"--output={output}", *FAST])
    summary, results = _outputs(output)
    assert len(results) == 2
    (error,) = summary["errors"]
    assert error["line-numer"] == 2 and error["code"] == ErrorCode.INTERNAL_ERROR
    assert "ValueError" in error["message"] and "4300 digits" in error["message"]
    assert "Traceback" not in error["message"]


# Exit codes: 0 success, 2 a flag or location to fix before anything ran, 1 a failure while
# running.


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_exit_codes_mean_one_thing(tmp_path, sample_photos):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(_line(sample_photos["rocket.jpg"]) + b"\n" + HUGE_SOURCE_REF + b"\n")

    ok = _cli(f"--manifest={manifest}", f"--output={tmp_path / 'ok'}", *FAST)
    assert ok.returncode == 0, ok.stderr[-2000:]

    bad_flag = _cli(f"--manifest={manifest}", f"--output={tmp_path / 'x'}", "--fetch_concurrency=0")
    assert bad_flag.returncode == 2 and "--fetch_concurrency" in bad_flag.stderr

    bad_version = _cli(
        f"--manifest={manifest}", f"--output={tmp_path / 'x'}", "--manifest_version=abc", *FAST
    )
    assert bad_version.returncode == 2 and "--manifest_version" in bad_version.stderr

    # A backbone that cannot be loaded fails on the worker, while running: a ValueError there is
    # no bad flag.
    broken = _cli(
        f"--manifest={manifest}",
        f"--output={tmp_path / 'broken'}",
        "--runner=DirectRunner",
        f"--backbone={tmp_path / 'no-such-saved-model'}",
    )
    assert broken.returncode == 1, broken.stderr[-2000:]
    assert "the job failed and published no summary" in broken.stderr
    assert not (tmp_path / "broken" / SUMMARY_FILE).exists()


# S3 object versions.


@pytest.mark.slow
def test_the_manifest_is_read_at_the_version_asked_for(tmp_path, s3, moto_server, sample_photos):
    s3.create_bucket(Bucket="in-bucket")
    s3.put_bucket_versioning(Bucket="in-bucket", VersioningConfiguration={"Status": "Enabled"})
    with open(sample_photos["coffee.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="coffee.jpg", Body=f.read())
    first = s3.put_object(
        Bucket="in-bucket", Key="m.jsonl", Body=_line("s3://in-bucket/coffee.jpg") + b"\nnot json\n"
    )["VersionId"]
    s3.put_object(
        Bucket="in-bucket", Key="m.jsonl", Body=_line("s3://in-bucket/coffee.jpg") + b"\n"
    )

    def outcome(*version: str) -> dict:
        output = tmp_path / f"out-{len(version)}"
        return run(
            ["--manifest=s3://in-bucket/m.jsonl", f"--output={output}", *version, *FAST]
            + s3_args(moto_server)
        )["statistics"]

    assert outcome()["total-json-lines"] == 1
    assert outcome(f"--manifest_version={first}") == {
        "total-json-lines": 2,
        "valid-json-lines": 1,
        "invalid-json-lines": 1,
    }
    with pytest.raises(ValueError, match="has no version"):
        run(
            [
                "--manifest=s3://in-bucket/m.jsonl",
                f"--output={tmp_path / 'x'}",
                "--manifest_version=nope",
            ]
            + FAST
            + s3_args(moto_server)
        )


def _versioned_manifest(s3, sample_photos) -> str:
    """``in-bucket/m.jsonl`` in a versioned bucket: the returned (older) version holds a photo
    and a bad line, the latest only the photo."""
    s3.put_bucket_versioning(Bucket="in-bucket", VersioningConfiguration={"Status": "Enabled"})
    with open(sample_photos["coffee.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="coffee.jpg", Body=f.read())
    photo = _line("s3://in-bucket/coffee.jpg")
    older = s3.put_object(Bucket="in-bucket", Key="m.jsonl", Body=photo + b"\nnot json\n")
    s3.put_object(Bucket="in-bucket", Key="m.jsonl", Body=photo + b"\n")
    return older["VersionId"]


@pytest.mark.slow
def test_a_job_reads_the_manifest_version_it_was_started_with(server, s3, sample_photos):
    from tests.conftest import rekognition_client

    version = _versioned_manifest(s3, sample_photos)
    client = rekognition_client(server)
    job_id = client.start_media_analysis_job(
        OperationsConfig={"DetectModerationLabels": {"MinConfidence": 50}},
        Input={"S3Object": {"Bucket": "in-bucket", "Name": "m.jsonl", "Version": version}},
        OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    )["JobId"]
    job = client.get_media_analysis_job(JobId=job_id)
    for _ in range(600):
        if job["Status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.5)
        job = client.get_media_analysis_job(JobId=job_id)
    assert job["Status"] == "SUCCEEDED", job
    summary_key = job["ManifestSummary"]["S3Object"]["Name"]
    summary = json.loads(s3.get_object(Bucket="out-bucket", Key=summary_key)["Body"].read())
    assert summary["statistics"] == {
        "total-json-lines": 2,
        "valid-json-lines": 1,
        "invalid-json-lines": 1,
    }


def test_training_reads_its_manifests_at_their_versions(s3, moto_server, sample_photos):
    """The training runner names each manifest's Version, and the trainer's reader reads it."""
    from apache_beam.io.filesystems import FileSystems

    from service.training import _manifests
    from storage.settings import S3Settings
    from training.json_lines import read_lines

    s3.create_bucket(Bucket="in-bucket")
    version = _versioned_manifest(s3, sample_photos)
    data = {
        "Assets": [
            {"GroundTruthManifest": {"S3Object": {"Bucket": "in-bucket", "Name": "m.jsonl"}}},
            {
                "GroundTruthManifest": {
                    "S3Object": {"Bucket": "in-bucket", "Name": "m.jsonl", "Version": version}
                }
            },
        ]
    }
    latest, older = _manifests(data)
    assert latest == "s3://in-bucket/m.jsonl"
    assert older == f"s3://in-bucket/m.jsonl?versionId={version}"
    settings = S3Settings(endpoint_url=moto_server, region_name="us-east-1")
    # As the trainer's command line does: the latest versions are read through Beam's FileSystems.
    FileSystems.set_options(settings.pipeline_options())
    assert [n for n, _ in read_lines(latest, "--training_manifest", s3=settings)] == [1]
    assert [n for n, _ in read_lines(older, "--training_manifest", s3=settings)] == [1, 2]
    with pytest.raises(ValueError, match="does not exist"):
        list(read_lines(f"{latest}?versionId=nope", "--training_manifest", s3=settings))

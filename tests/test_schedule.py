"""Scheduled batch runs (``python -m scheduler``) against a moto S3 server over HTTP and
the real API server: exactly one job per manifest version, through reruns, races and lost state.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from scheduler.cli import main
from scheduler.manifests import ManifestVersion, job_name, list_manifests
from scheduler.state import ScheduleState
from scheduler.submission import API_KEY_ID_ENV, API_SECRET_ENV, client_request_token
from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client, s3_args

MANIFESTS = "s3://in-bucket/manifests/"
OUTPUT = "s3://out-bucket/results"
STATE_KEY = "results/schedule-state.json"
TOKEN = re.compile(r"[a-zA-Z0-9-_]{1,64}")
JOB_NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,64}")


@pytest.fixture
def api_keys(monkeypatch):
    """The scheduler signs with the server's key pair; S3 keeps the fake AWS credentials."""
    monkeypatch.setenv(API_KEY_ID_ENV, API_KEY_ID)
    monkeypatch.setenv(API_SECRET_ENV, API_SECRET)


@pytest.fixture
def buckets(s3):
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    return s3


def _line(key: str = "images/chelsea.jpg") -> str:
    return json.dumps({"source-ref": f"s3://in-bucket/{key}"}) + "\n"


def _put(s3, key: str, body: str | None = None) -> str:
    """Uploads a manifest; returns its ETag without quotes."""
    answer = s3.put_object(Bucket="in-bucket", Key=key, Body=(body or _line()).encode())
    return answer["ETag"].strip('"')


def _schedule(capsys, *args: str) -> tuple[int, dict | None]:
    """Runs the command in this process: ``(exit status, its JSON report or None)``."""
    status = main([*args, "--format=json"])
    out = capsys.readouterr().out
    return status, (json.loads(out) if out.strip() else None)


def _api_args(server: str, moto_server: str, *extra: str) -> list[str]:
    return [
        f"--manifests={MANIFESTS}",
        f"--output={OUTPUT}",
        f"--endpoint_url={server}",
        *s3_args(moto_server),
        *extra,
    ]


def _jobs(server: str) -> list[dict]:
    return rekognition_client(server).list_media_analysis_jobs()["MediaAnalysisJobs"]


def _wait_for_jobs(server: str, timeout: float = 300) -> None:
    """Lets the jobs' processes end, so that none keeps running into the next test."""
    deadline = time.monotonic() + timeout
    while any(job["Status"] not in ("SUCCEEDED", "FAILED") for job in _jobs(server)):
        assert time.monotonic() < deadline, _jobs(server)
        time.sleep(0.5)


def _by_key(report: dict) -> dict[str, dict]:
    return {entry["key"]: entry for entry in report["manifests"]}


# --- Pieces ---------------------------------------------------------------------------------


def test_tokens_name_the_manifest_version_and_the_output():
    manifest = ManifestVersion("in-bucket", "manifests/a.jsonl", "0cc175b9c0f1b6a831c399e269772661")
    token = client_request_token(manifest, "out-bucket", "results")
    assert TOKEN.fullmatch(token) and len(token) == 64
    assert client_request_token(manifest, "out-bucket", "results") == token
    others = {
        client_request_token(
            ManifestVersion("in-bucket", "manifests/a.jsonl", "92eb5ffee6ae2fec3ad71c777531578f"),
            "out-bucket",
            "results",
        ),
        client_request_token(
            ManifestVersion("in-bucket", "manifests/b.jsonl", manifest.etag),
            "out-bucket",
            "results",
        ),
        client_request_token(
            ManifestVersion("in-bucket", "manifests/a.jsonl", manifest.etag, "v2"),
            "out-bucket",
            "results",
        ),
        client_request_token(manifest, "out-bucket", "other"),
    }
    assert token not in others and len(others) == 4


def test_job_names_fit_the_api():
    assert job_name("scheduled", "daily/batch", "0cc175b9c0f1") == "scheduled-daily-batch-0cc175b9"
    long = job_name("x" * 40, "é" * 10 + "n" * 100, "abc-12")
    assert JOB_NAME.fullmatch(long) and len(long) == 64 and long.endswith("-abc-12")


def test_listing_reads_every_page_and_keeps_the_suffix(buckets):
    keys = [f"manifests/{i:02d}.jsonl" for i in range(5)]
    for key in keys:
        _put(buckets, key)
    for key in ("manifests/notes.txt", "manifests/old.jsonl.bak", "manifests/sub/", "other.jsonl"):
        buckets.put_object(Bucket="in-bucket", Key=key, Body=b"x")
    buckets.put_object(Bucket="in-bucket", Key="manifests/sub/deep.jsonl", Body=_line().encode())
    found = list_manifests(buckets, "in-bucket", "manifests/", ".jsonl", page_size=2)
    assert [m.key for m in found] == [*keys, "manifests/sub/deep.jsonl"]
    assert all(len(m.etag) == 32 and '"' not in m.etag for m in found)
    everything = list_manifests(buckets, "in-bucket", "manifests/", "", page_size=2)
    assert len(everything) == 8  # the folder marker is never a manifest


def test_state_writers_that_race_merge_on_s3(buckets):
    """Two schedulers read the same state, each records a job: the conditional put makes the
    second re-read and merge, so neither record is lost."""
    location = "s3://out-bucket/state.json"
    first, second = ScheduleState(location, buckets).load(), ScheduleState(location, buckets).load()
    a = ManifestVersion("in-bucket", "manifests/a.jsonl", "etag-a")
    b = ManifestVersion("in-bucket", "manifests/b.jsonl", "etag-b")
    first.record(a, "job-a", None)
    second.record(b, "job-b", None)
    first.save()
    second.save()  # If-None-Match: * fails, then If-Match the merged document
    first.record(ManifestVersion("in-bucket", "manifests/a.jsonl", "etag-a2"), "job-a2", None)
    first.save()  # its ETag is stale too
    final = ScheduleState(location, buckets).load()
    assert final.get(a)["job_id"] == "job-a" and final.get(b)["job_id"] == "job-b"
    assert len(final) == 3
    document = json.loads(buckets.get_object(Bucket="out-bucket", Key="state.json")["Body"].read())
    assert document["version"] == 1
    assert set(document["started"]["s3://in-bucket/manifests/a.jsonl"]) == {"etag-a", "etag-a2"}


def test_state_writers_that_race_merge_on_disk(tmp_path):
    location = str(tmp_path / "state" / "schedule.json")
    first, second = ScheduleState(location).load(), ScheduleState(location).load()
    first.record(ManifestVersion("b", "a.jsonl", "1"), "job-a", "out/a-1")
    second.record(ManifestVersion("b", "b.jsonl", "2"), "job-b", "out/b-2")
    first.save()
    second.save()
    assert len(ScheduleState(location).load()) == 2
    assert [name for name in os.listdir(tmp_path / "state")] == ["schedule.json"]


# --- Arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([f"--output={OUTPUT}"], "--manifests"),
        ([f"--manifests={MANIFESTS}"], "--output"),
        (["--manifests=/srv/manifests", f"--output={OUTPUT}"], "--manifests must be an s3://"),
        ([f"--manifests={MANIFESTS}", f"--output={OUTPUT}", "--min_confidence=101"], "between 0"),
        ([f"--manifests={MANIFESTS}", f"--output={OUTPUT}", "--format=xml"], "--format"),
        (
            [f"--manifests={MANIFESTS}", f"--output={OUTPUT}", "--job_name_prefix=has space"],
            "--job_name_prefix",
        ),
        (
            [f"--manifests={MANIFESTS}", "--output=s3://in-bucket/manifests/out"],
            "overlaps --manifests",
        ),
        (
            ["--manifests=s3://in-bucket/", "--output=s3://in-bucket/results"],
            "overlaps --manifests",
        ),
        (
            [f"--manifests={MANIFESTS}", "--output=/srv/out", "--project_version=arn:x"],
            "--project_version needs --endpoint_url",
        ),
        (
            [
                f"--manifests={MANIFESTS}",
                f"--output={OUTPUT}",
                "--endpoint_url=http://127.0.0.1:8642",
                "--job_args=--runner=DirectRunner",
            ],
            "--job_args applies to local runs only",
        ),
        (
            [f"--manifests={MANIFESTS}", "--output=/srv/out", "--endpoint_url=127.0.0.1:8642"],
            "--endpoint_url must be",
        ),
        (
            [
                f"--manifests={MANIFESTS}",
                "--output=/srv/out",
                "--endpoint_url=http://127.0.0.1:8642",
            ],
            "--output must be an s3://",
        ),
        (
            [f"--manifests={MANIFESTS}", f"--output={OUTPUT}", "--state=gs://b/state.json"],
            "--state must be",
        ),
        (
            [
                f"--manifests={MANIFESTS}",
                f"--output={OUTPUT}",
                "--state=s3://in-bucket/manifests/s",
            ],
            "listed as a manifest",
        ),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(capsys, arguments, message):
    assert main(arguments + ["--suffix="] * ("listed as a manifest" in message)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_a_missing_bucket_or_a_corrupt_state_exits_2(capsys, buckets, moto_server, tmp_path):
    args = [f"--output={tmp_path / 'out'}", *s3_args(moto_server), "--dry_run"]
    assert main(["--manifests=s3://no-such-bucket/m/", *args]) == 2
    assert "bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    state = tmp_path / "state.json"
    state.write_text("{not json")
    assert main([f"--manifests={MANIFESTS}", f"--state={state}", *args]) == 2
    assert f"--state {state} is not a schedule state file" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--manifests" in out and "ClientRequestToken" in out and "--s3_endpoint_url" in out


# --- Through the API ------------------------------------------------------------------------


def test_dry_run_starts_nothing_and_reports_json(capsys, server, s3, moto_server):
    etag = _put(s3, "manifests/a.jsonl")
    _put(s3, "manifests/readme.txt", "not a manifest")
    status, report = _schedule(capsys, *_api_args(server, moto_server, "--dry_run"))
    assert status == 0
    assert set(report) == {
        "manifests_prefix",
        "suffix",
        "output",
        "mode",
        "endpoint_url",
        "state",
        "dry_run",
        "manifests",
        "summary",
        "errors",
    }
    assert report["mode"] == "api" and report["dry_run"] is True
    assert report["state"] == f"{OUTPUT}/schedule-state.json"
    assert report["summary"] == {
        "started": 0,
        "skipped": 0,
        "failed": 0,
        "would_start": 1,
        "total": 1,
    }
    (entry,) = report["manifests"]
    assert entry == {
        "manifest": "s3://in-bucket/manifests/a.jsonl",
        "bucket": "in-bucket",
        "key": "manifests/a.jsonl",
        "etag": etag,
        "version_id": None,
        "action": "would_start",
        "job_id": None,
        "output": None,
        "started_at": None,
        "client_request_token": entry["client_request_token"],
        "reason": None,
    }
    assert TOKEN.fullmatch(entry["client_request_token"])
    assert report["errors"] == []
    assert _jobs(server) == []
    assert "Contents" not in s3.list_objects_v2(Bucket="out-bucket")  # no state written
    # Text: one line per manifest and a summary.
    assert main(_api_args(server, moto_server, "--dry_run")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"s3://in-bucket/manifests/a.jsonl (ETag {etag[:12]}): would start (dry run)",
        "Summary: 0 started, 0 skipped, 1 would start (dry run), 0 failed of 1 manifests under "
        f"{MANIFESTS} ending in .jsonl.",
    ]


@pytest.mark.slow
def test_new_unchanged_and_changed_manifests(capsys, server, s3, moto_server, api_keys):
    first_etag = _put(s3, "manifests/batch.jsonl")
    s3.put_object(Bucket="in-bucket", Key="manifests/batch.csv", Body=b"ignored")
    status, report = _schedule(capsys, *_api_args(server, moto_server))
    assert status == 0, report
    (entry,) = report["manifests"]
    assert entry["action"] == "started" and entry["etag"] == first_etag
    job_id = entry["job_id"]
    assert entry["output"] == f"{OUTPUT}/{job_id}"
    (job,) = _jobs(server)
    assert job["JobId"] == job_id
    assert job["Input"] == {"S3Object": {"Bucket": "in-bucket", "Name": "manifests/batch.jsonl"}}
    assert job["OutputConfig"] == {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"}
    assert job["JobName"] == f"scheduled-batch-{first_etag[:8]}"
    assert job["OperationsConfig"] == {"DetectModerationLabels": {"MinConfidence": 50.0}}
    state = json.loads(s3.get_object(Bucket="out-bucket", Key=STATE_KEY)["Body"].read())
    record = state["started"]["s3://in-bucket/manifests/batch.jsonl"][first_etag]
    assert record["job_id"] == job_id

    # Unchanged: skipped from the state, no call to the API, no new job.
    status, report = _schedule(capsys, *_api_args(server, moto_server))
    assert status == 0
    (entry,) = report["manifests"]
    assert entry["action"] == "skipped" and entry["job_id"] == job_id
    assert entry["reason"].startswith(f"already started as {job_id}")
    assert len(_jobs(server)) == 1

    # Changed: a new ETag is a new version, and a second job.
    second_etag = _put(s3, "manifests/batch.jsonl", _line() * 2)
    assert second_etag != first_etag
    assert main(_api_args(server, moto_server)) == 0
    lines = capsys.readouterr().out.splitlines()
    jobs = _jobs(server)
    assert len(jobs) == 2
    new_id = jobs[0]["JobId"]  # newest first
    assert new_id != job_id
    assert lines[0] == (
        f"s3://in-bucket/manifests/batch.jsonl (ETag {second_etag[:12]}): started {new_id}, "
        f"output {OUTPUT}/{new_id}"
    )
    assert lines[-1].startswith("Summary: 1 started, 0 skipped, 0 failed of 1 manifests")
    _wait_for_jobs(server)


@pytest.mark.slow
def test_lost_state_gets_the_same_job_back(capsys, server, s3, moto_server, api_keys):
    _put(s3, "manifests/a.jsonl")
    _put(s3, "manifests/b.jsonl", _line() * 2)
    s3.put_object(Bucket="in-bucket", Key="manifests/notes.txt", Body=b"ignored")
    status, report = _schedule(capsys, *_api_args(server, moto_server))
    assert status == 0
    started = {key: entry["job_id"] for key, entry in _by_key(report).items()}
    assert set(started) == {"manifests/a.jsonl", "manifests/b.jsonl"}
    assert len(set(started.values())) == 2
    assert {job["JobId"] for job in _jobs(server)} == set(started.values())

    # The state is lost: the deterministic ClientRequestToken gets the same jobs back.
    s3.delete_object(Bucket="out-bucket", Key=STATE_KEY)
    status, report = _schedule(capsys, *_api_args(server, moto_server))
    assert status == 0
    assert {key: entry["job_id"] for key, entry in _by_key(report).items()} == started
    assert len(_jobs(server)) == 2
    # ...and the state was written again: the next run skips both.
    status, report = _schedule(capsys, *_api_args(server, moto_server))
    assert [entry["action"] for entry in report["manifests"]] == ["skipped", "skipped"]

    # Lost again, and the settings changed: the API refuses to reuse the token, the command
    # says why and what to do, and exits 1; nothing new is started.
    s3.delete_object(Bucket="out-bucket", Key=STATE_KEY)
    status, report = _schedule(capsys, *_api_args(server, moto_server, "--min_confidence=60"))
    assert status == 1
    assert report["summary"]["failed"] == 2
    reason = report["manifests"][0]["reason"]
    assert reason.startswith("IdempotentParameterMismatchException")
    assert "restore the state or the old settings" in reason
    assert len(_jobs(server)) == 2
    _wait_for_jobs(server)


@pytest.mark.slow
def test_some_starts_fail_and_the_others_still_start(
    capsys, tmp_path, s3, moto_server, api_keys, monkeypatch
):
    """A server that runs one job at a time refuses the second (LimitExceededException): the
    first is started, the second reported failed (exit 1) and started by a later run."""
    from tests.conftest import start_api_server

    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    httpd, server = start_api_server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            "--allowed_locations=in-bucket,out-bucket/results",
            "--components=open_nsfw",
            "--backbone=none",
            "--max_active_jobs=1",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
        ]
    )
    try:
        _put(s3, "manifests/a.jsonl")
        _put(s3, "manifests/b.jsonl", _line() * 2)
        status, report = _schedule(capsys, *_api_args(server, moto_server))
        assert status == 1
        first, second = report["manifests"]
        assert first["action"] == "started"
        assert second["action"] == "failed"
        assert second["reason"].startswith("LimitExceededException")
        assert second["reason"].endswith("(tried again on the next run)")
        _wait_for_jobs(server)
        status, report = _schedule(capsys, *_api_args(server, moto_server))
        assert status == 0
        assert [entry["action"] for entry in report["manifests"]] == ["skipped", "started"]
        assert len(_jobs(server)) == 2
        _wait_for_jobs(server)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_unreachable_api_fails_every_start(capsys, buckets, moto_server, api_keys):
    _put(buckets, "manifests/a.jsonl")
    _put(buckets, "manifests/b.jsonl", _line() * 2)
    status, report = _schedule(capsys, *_api_args("http://127.0.0.1:9", moto_server))
    assert status == 1
    assert report["summary"]["failed"] == 2
    for entry in report["manifests"]:
        assert entry["reason"].startswith("the API at http://127.0.0.1:9 cannot be reached")
    assert "Contents" not in buckets.list_objects_v2(Bucket="out-bucket")


# --- Locally --------------------------------------------------------------------------------


def _local_args(moto_server: str, output, *extra: str) -> list[str]:
    return [f"--manifests={MANIFESTS}", f"--output={output}", *s3_args(moto_server), *extra]


def test_local_dry_run_and_finished_outputs(capsys, buckets, moto_server, tmp_path):
    """A version whose output already has manifest-summary.json is done, state or no state."""
    output = tmp_path / "out"
    etag_a = _put(buckets, "manifests/a.jsonl")
    etag_b = _put(buckets, "manifests/daily/b.jsonl", _line() * 2)
    status, report = _schedule(capsys, *_local_args(moto_server, output, "--dry_run"))
    assert status == 0 and report["mode"] == "local"
    assert [(e["action"], e["output"]) for e in report["manifests"]] == [
        ("would_start", str(output / f"a-{etag_a[:12]}")),
        ("would_start", str(output / "daily" / f"b-{etag_b[:12]}")),
    ]
    assert not output.exists()

    done = output / f"a-{etag_a[:12]}"
    done.mkdir(parents=True)
    (done / "manifest-summary.json").write_text("{}")
    status, report = _schedule(
        capsys, *_local_args(moto_server, output, "--job_args=--components=no-such-model")
    )
    assert status == 1  # b's run fails on its bad flag
    a, b = report["manifests"]
    assert a["action"] == "skipped" and a["job_id"] == f"a-{etag_a[:12]}"
    assert "manifest-summary.json exists" in a["reason"]
    assert b["action"] == "failed"
    assert "exited with status 2" in b["reason"] and "--components" in b["reason"]
    state = json.loads((output / "schedule-state.json").read_text())
    assert list(state["started"]) == ["s3://in-bucket/manifests/a.jsonl"]


@pytest.mark.slow
def test_local_runs_once_per_version(capsys, buckets, moto_server, tmp_path, sample_photos):
    with open(sample_photos["chelsea.jpg"], "rb") as f:
        buckets.put_object(Bucket="in-bucket", Key="images/chelsea.jpg", Body=f.read())
    etag = _put(buckets, "manifests/batch.jsonl", _line() + "{bad\n")
    output = "s3://out-bucket/runs"
    args = _local_args(
        moto_server,
        output,
        "--job_args=--components=open_nsfw --backbone=none --runner=DirectRunner",
    )
    status, report = _schedule(capsys, *args)
    assert status == 0, report
    (entry,) = report["manifests"]
    assert entry["action"] == "started"
    assert entry["output"] == f"{output}/batch-{etag[:12]}"
    summary = json.loads(
        buckets.get_object(
            Bucket="out-bucket", Key=f"runs/batch-{etag[:12]}/manifest-summary.json"
        )["Body"].read()
    )
    assert summary["statistics"]["total-json-lines"] == 2
    status, report = _schedule(capsys, *args)
    assert status == 0
    assert report["manifests"][0]["action"] == "skipped"
    assert report["manifests"][0]["job_id"] == f"batch-{etag[:12]}"


def test_a_versioned_bucket_pins_the_version(capsys, server, s3, moto_server, api_keys):
    """In a versioned bucket the job names the exact version listed (Input.S3Object.Version).

    The output is outside the server's allowed locations, so the job is registered and fails its
    checks at once (ACCESS_DENIED) without running: what is checked here is the request.
    """
    s3.put_bucket_versioning(Bucket="in-bucket", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="in-bucket", Key="manifests/a.jsonl", Body=_line().encode())
    args = [
        f"--manifests={MANIFESTS}",
        "--output=s3://out-bucket/denied",
        f"--endpoint_url={server}",
        *s3_args(moto_server),
    ]
    status, report = _schedule(capsys, *args)
    assert status == 0
    (entry,) = report["manifests"]
    assert entry["version_id"] == first["VersionId"]
    (job,) = _jobs(server)
    assert job["JobId"] == entry["job_id"]
    assert job["Input"]["S3Object"] == {
        "Bucket": "in-bucket",
        "Name": "manifests/a.jsonl",
        "Version": first["VersionId"],
    }
    assert job["Status"] == "FAILED" and job["FailureDetails"]["Code"] == "ACCESS_DENIED"
    # The same bytes uploaded again: a new version with the same ETag, skipped by the state.
    second = s3.put_object(Bucket="in-bucket", Key="manifests/a.jsonl", Body=_line().encode())
    assert second["VersionId"] != first["VersionId"] and second["ETag"] == first["ETag"]
    status, report = _schedule(capsys, *args)
    assert [e["action"] for e in report["manifests"]] == ["skipped"]
    assert len(_jobs(server)) == 1


class _NoConditionalWrites:
    """A real S3 client in front of a store that answers conditional puts 501 NotImplemented,
    as some S3-compatible stores do."""

    def __init__(self, client):
        self._client = client

    def put_object(self, **kwargs):
        from botocore.exceptions import ClientError

        if "IfMatch" in kwargs or "IfNoneMatch" in kwargs:
            raise ClientError(
                {
                    "Error": {"Code": "NotImplemented", "Message": "not implemented"},
                    "ResponseMetadata": {"HTTPStatusCode": 501},
                },
                "PutObject",
            )
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_store_without_conditional_writes_gets_a_plain_put(buckets):
    client = _NoConditionalWrites(buckets)
    state = ScheduleState("s3://out-bucket/state.json", client).load()
    state.record(ManifestVersion("in-bucket", "manifests/a.jsonl", "e1"), "job-a", None)
    state.save()
    state.record(ManifestVersion("in-bucket", "manifests/b.jsonl", "e2"), "job-b", None)
    state.save()
    assert len(ScheduleState("s3://out-bucket/state.json", buckets).load()) == 2


def test_the_command_line_prints_only_the_report_on_stdout(buckets, moto_server, tmp_path):
    """As cron runs it: a process of its own, whose stdout is the report and nothing else."""
    import subprocess
    import sys

    etag = _put(buckets, "manifests/a.jsonl")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler",
            *_local_args(moto_server, tmp_path / "out", "--dry_run", "--format=json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(e["etag"], e["action"]) for e in report["manifests"]] == [(etag, "would_start")]

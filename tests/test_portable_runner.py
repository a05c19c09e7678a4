"""The portable path that Flink, Spark and Dataflow Runner v2 use, run for real on this machine.

A job service (``tests/job_service.py``: Beam's local one, running each job on
``--sdk_worker_parallelism`` workers as a cluster's task manager does) and an EXTERNAL worker
pool (``apache_beam.runners.worker.worker_pool_main``) run as processes of their own; the job
runs the real models in two SDK worker processes the pool starts. Its results and summary must
be byte-identical to the DirectRunner run of the same manifest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from transforms.output import RESULTS_FILE, SUMMARY_FILE

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, what: str, process: subprocess.Popen, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with status {process.returncode}")
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not start within {timeout:.0f} s")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _environment() -> dict[str, str]:
    # The pool starts its workers as plain "python": this environment's must come first on PATH,
    # or the workers lack the project and the job hangs instead of failing.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # the pool stops its workers on a clean exit
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portable")
    env = _environment()
    pool_port = _free_port()
    pool_log = folder / "worker-pool.log"
    with open(pool_log, "wb") as log:
        pool = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={pool_port}",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    port_file = folder / "job-service.port"
    with open(folder / "job-service.log", "wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "tests.job_service", f"--port_file={port_file}"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: _listening(pool_port), "the worker pool", pool)
        job_port = _wait_for(
            lambda: port_file.exists() and port_file.read_text(), "the job service", service
        )
        yield {
            "job_endpoint": f"localhost:{job_port}",
            "worker_pool": f"localhost:{pool_port}",
            "pool_log": pool_log,
            "env": env,
        }
    finally:
        _stop(service)
        _stop(pool)


def _manifest(folder, sample_photos) -> str:
    refs = [sample_photos[name] for name in sorted(sample_photos)]
    lines = [json.dumps({"source-ref": ref}) for ref in refs * 3]
    lines.insert(4, json.dumps({"source-ref": str(folder / "missing.jpg")}))
    lines.insert(9, '{"source-ref": "/not/closed.jpg"')
    lines.insert(13, json.dumps({"source-ref": "ftp://host/image.jpg"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _run_job(manifest: str, output: str, env: dict, *beam_flags: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.run",
            f"--manifest={manifest}",
            f"--output={output}",
            *beam_flags,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _read(output: str, name: str) -> bytes:
    with open(os.path.join(output, name), "rb") as f:
        return f.read()


def test_portable_runner_with_two_external_workers_matches_direct_runner(
    tmp_path, sample_photos, portable_services
):
    manifest = _manifest(tmp_path, sample_photos)
    direct, portable = str(tmp_path / "direct"), str(tmp_path / "portable")
    env = portable_services["env"]
    _run_job(manifest, direct, env, "--runner=DirectRunner")
    _run_job(
        manifest,
        portable,
        env,
        "--runner=PortableRunner",
        f"--job_endpoint={portable_services['job_endpoint']}",
        "--environment_type=EXTERNAL",
        f"--environment_config={portable_services['worker_pool']}",
        f"--sdk_worker_parallelism={WORKERS}",
    )

    summary = json.loads(_read(portable, SUMMARY_FILE))
    assert summary["statistics"] == {
        "total-json-lines": 33,
        "valid-json-lines": 30,
        "invalid-json-lines": 3,
    }
    assert _read(portable, RESULTS_FILE) == _read(direct, RESULTS_FILE)
    assert _read(portable, SUMMARY_FILE) == _read(direct, SUMMARY_FILE)
    # The job ran in separate SDK worker processes that the pool started, one per worker.
    started = [
        line
        for line in portable_services["pool_log"].read_text(errors="replace").splitlines()
        if "Starting worker" in line
    ]
    assert [f'worker_id="worker_{i}"' in line for i, line in enumerate(started)] == [True] * WORKERS


def test_the_api_server_submits_jobs_to_a_portable_job_endpoint(
    tmp_path, s3, moto_server, sample_photos, portable_services, monkeypatch
):
    """``service.server --submit_to=portable``: StartMediaAnalysisJob from boto3 runs the job on
    the job service's workers and ends SUCCEEDED with its outputs in S3."""
    from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client, start_api_server

    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    with open(sample_photos["coffee.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="images/coffee.jpg", Body=f.read())
    line = json.dumps({"source-ref": "s3://in-bucket/images/coffee.jpg"}) + "\n"
    s3.put_object(Bucket="in-bucket", Key="manifests/batch.jsonl", Body=line * 3)
    httpd, endpoint = start_api_server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            "--allowed_locations=in-bucket,out-bucket",
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={moto_server}",
            "--submit_to=portable",
            f"--job_endpoint={portable_services['job_endpoint']}",
            "--job_args=--environment_type=EXTERNAL "
            f"--environment_config={portable_services['worker_pool']} "
            f"--sdk_worker_parallelism={WORKERS}",
        ]
    )
    try:
        client = rekognition_client(endpoint)
        job_id = client.start_media_analysis_job(
            OperationsConfig={"DetectModerationLabels": {"MinConfidence": 50}},
            Input={"S3Object": {"Bucket": "in-bucket", "Name": "manifests/batch.jsonl"}},
            OutputConfig={"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        )["JobId"]
        deadline = time.monotonic() + 300
        while (job := client.get_media_analysis_job(JobId=job_id))["Status"] not in (
            "SUCCEEDED",
            "FAILED",
        ):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert job["Status"] == "SUCCEEDED", job.get("FailureDetails")
    results = s3.get_object(Bucket="out-bucket", Key=job["Results"]["S3Object"]["Name"])
    assert len(results["Body"].read().splitlines()) == 3

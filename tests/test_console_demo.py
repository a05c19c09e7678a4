"""``python -m service.console.demo``: one command serves a console that a newcomer can sign in
to, over an embedded S3 that holds the sample manifest, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30

_FIELDS = {
    "console": re.compile(r"^\s*Console:\s+(http://\S+/console/)\s*$"),
    "key_id": re.compile(r"^\s*Access key id:\s+(\S+)\s*$"),
    "secret": re.compile(r"^\s*Secret access key:\s+(\S+)\s*$"),
    "manifest": re.compile(r"^\s*Sample manifest:\s+(s3://\S+)\s*$"),
    "s3": re.compile(r"^\s*S3 endpoint:\s+(http://\S+)\s*$"),
}


def _pump(process: subprocess.Popen, lines: list[str]) -> tuple[threading.Thread, queue.Queue]:
    """Reads the demo's output into ``lines`` and a queue of them, None once it ends."""
    arrived: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.append(line)
            arrived.put(line)
        arrived.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread, arrived


def _read_banner(process: subprocess.Popen, arrived: queue.Queue, lines: list[str]) -> dict:
    """The banner's fields, as its lines arrive."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while set(found) != set(_FIELDS):
        try:
            line = arrived.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"No banner within {START_TIMEOUT_S} s; stdout so far:\n{''.join(lines)}")
        if line is None:
            pytest.fail(f"The demo exited ({process.wait()}) before its banner:\n{''.join(lines)}")
        for name, pattern in _FIELDS.items():
            match = pattern.match(line)
            if match:
                found[name] = match.group(1)
    return found


@pytest.mark.slow
def test_demo_serves_a_console_over_an_embedded_s3(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BEAM_MODERATION_ACCESS_KEYS", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.console.demo",
            "--port=0",
            f"--workdir={tmp_path / 'demo'}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    pump, arrived = _pump(process, lines)
    try:
        banner = _read_banner(process, arrived, lines)
        console = banner["console"]
        assert not console.endswith(":0/console/")  # the port picked, not the one asked for
        assert banner["key_id"] == "AKIDCONSOLEDEMO0001"
        assert len(banner["secret"]) >= 20
        assert banner["manifest"] == "s3://moderation-demo/samples/manifest.jsonl"

        with urllib.request.urlopen(f"{console}sign-in", timeout=30) as response:
            assert response.status == 200
            assert response.headers.get_content_type() == "text/html"
            page = response.read().decode("utf-8")
        assert 'name="user"' in page and 'name="secret"' in page

        s3 = boto3.client(
            "s3",
            endpoint_url=banner["s3"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        body = s3.get_object(Bucket="moderation-demo", Key="samples/manifest.jsonl")["Body"]
        refs = [json.loads(line)["source-ref"] for line in body.read().decode().splitlines()]
        assert len(refs) >= 5
        assert "s3://moderation-demo/samples/astronaut.jpg" in refs
        for ref in refs:
            key = ref.removeprefix("s3://moderation-demo/")
            head = s3.head_object(Bucket="moderation-demo", Key=key)
            assert head["ContentLength"] > 1000

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        pump.join(10)
    output = "".join(lines)
    assert "Traceback" not in output and "ERROR" not in output, output

"""Console benchmark: ``python -m bench.console [--lines 1000,100000] [--reviewers 4]``.

Starts an in-process moto S3 server and the API server with its console (``build_server``,
``--components=open_nsfw --backbone=none``: no page here runs the model), and registers one
SUCCEEDED job per ``--lines`` count whose ``results.jsonl`` (synthetic lines with labels drawn
from the taxonomy, a tenth of them with none) and manifest summary are put in S3. For each job
it times the indexing of its results (once, as when a job ends), the first render of its results
page and its verify page over HTTP, then the median of ``--renders`` renders, unfiltered and
filtered by a level-1 label.

Then ``--reviewers`` threads, each signed in with its own key pair and session, save
``--decisions`` verification decisions each on distinct images of the largest job, one request
per decision as the verify page makes them; prints p50/p99/max latency and decisions/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import threading
import time

KEY_PREFIX, SECRET_PREFIX = "AKIDBENCHCONSOLE000", "bench-console-secret-"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--lines", default="1000,100000", help="Results lines of each job.")
    parser.add_argument("--renders", type=int, default=10, help="Renders timed per page.")
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--decisions", type=int, default=100, help="Decisions per reviewer.")
    parser.add_argument("--workdir", default=os.path.join("bench-out", "console"))
    return parser


def _results_lines(count: int, seed: int = 7):
    from model.taxonomy import TAXONOMY

    rng = random.Random(seed)
    leaves = [entry for entry in TAXONOMY.values() if entry.level == 2]
    for number in range(1, count + 1):
        labels = []
        if number % 10:
            leaf = rng.choice(leaves)
            confidence = round(rng.uniform(50, 99.9), 1)
            labels = [
                {
                    "Confidence": confidence,
                    "Name": leaf.name,
                    "ParentName": leaf.parent,
                    "TaxonomyLevel": 2,
                },
                {
                    "Confidence": confidence,
                    "Name": leaf.parent,
                    "ParentName": "",
                    "TaxonomyLevel": 1,
                },
            ]
        line = {
            "source-ref": f"s3://bench-console/images/{number:07d}.jpg",
            "detect-moderation-labels": {
                "ModerationLabels": labels,
                "ModerationModelVersion": "bench",
                "ContentTypes": [],
            },
        }
        yield (json.dumps(line) + "\n").encode()


def _register_job(registry_path: str, s3, lines: int) -> str:
    from service.registry import JobRegistry

    registry = JobRegistry(registry_path, max_active_jobs=1000)
    job, _ = registry.start(
        {
            "JobName": f"bench-{lines}",
            "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
            "Input": {"S3Object": {"Bucket": "bench-console", "Name": "manifest.jsonl"}},
            "OutputConfig": {"S3Bucket": "bench-console", "S3KeyPrefix": "jobs"},
        }
    )
    prefix = f"jobs/{job.job_id}"
    s3.put_object(
        Bucket="bench-console",
        Key=f"{prefix}/results.jsonl",
        Body=b"".join(_results_lines(lines)),
    )
    summary = {
        "version": "1.0",
        "statistics": {
            "total-json-lines": lines,
            "valid-json-lines": lines,
            "invalid-json-lines": 0,
        },
        "errors": [],
    }
    s3.put_object(
        Bucket="bench-console", Key=f"{prefix}/manifest-summary.json", Body=json.dumps(summary)
    )
    registry.mark_queued(job.job_id)
    registry.mark_in_progress(job.job_id)
    registry.mark_succeeded(
        job.job_id,
        results_key=f"{prefix}/results.jsonl",
        summary_key=f"{prefix}/manifest-summary.json",
        model_version="bench",
    )
    return job.job_id


def _session(base: str, key_id: str, secret: str):
    import requests

    session = requests.Session()
    form = session.get(f"{base}/console/sign-in", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
    answer = session.post(
        f"{base}/console/sign-in",
        data={"csrf_token": token, "user": key_id, "secret": secret, "next": "/console/jobs"},
        timeout=30,
    )
    answer.raise_for_status()
    page = session.get(f"{base}/console/jobs", timeout=30).text
    session.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    return session


def _timed_get(session, url: str) -> float:
    started = time.perf_counter()
    answer = session.get(url, timeout=300)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.logs import configure_logging
    from service.console.results_index import ResultsIndex, index_job

    args = _parser().parse_args(argv)
    configure_logging()
    counts = [int(value) for value in args.lines.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    registry_path = os.path.join(args.workdir, f"registry-{os.getpid()}.sqlite")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[name] = value
    keys = [(f"{KEY_PREFIX}{i}", f"{SECRET_PREFIX}{i}") for i in range(args.reviewers)]
    os.environ["BEAM_MODERATION_ACCESS_KEYS"] = ",".join(f"{k}:{s}" for k, s in keys)

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3_endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench-console")

    from service.server import build_server

    server = build_server(
        [
            "--port=0",
            f"--registry={registry_path}",
            "--allowed_locations=bench-console",
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={s3_endpoint}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={s3_endpoint}",
            f"--console_cache_dir={os.path.join(args.workdir, 'thumbnails')}",
        ]
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    base = f"http://{host}:{port}"
    try:
        session = _session(base, *keys[0])
        print(f"{'measurement':44} {'lines':>8} {'seconds':>9}")
        jobs = {}
        for lines in counts:
            job_id = _register_job(registry_path, s3, lines)
            jobs[lines] = job_id
            index = ResultsIndex(registry_path)
            record = server.api.registry.get(job_id)
            started = time.perf_counter()
            index_job(index, record, s3)
            print(
                f"{'index results.jsonl (once, at job end)':44} {lines:>8} "
                f"{time.perf_counter() - started:>9.3f}"
            )
            for name, path in (
                ("results page, first render", f"/console/jobs/{job_id}/results"),
                ("verify page, first render", f"/console/jobs/{job_id}/verify"),
            ):
                print(f"{name:44} {lines:>8} {_timed_get(session, base + path):>9.3f}")
            for name, path in (
                ("results page, median", f"/console/jobs/{job_id}/results"),
                (
                    "results page filtered by label, median",
                    f"/console/jobs/{job_id}/results?label=Violence",
                ),
                ("results page 100, median", f"/console/jobs/{job_id}/results?offset=4800"),
                ("verify page, median", f"/console/jobs/{job_id}/verify"),
            ):
                times = [_timed_get(session, base + path) for _ in range(args.renders)]
                print(f"{name:44} {lines:>8} {statistics.median(times):>9.3f}")

        largest = jobs[max(counts)]
        sessions = [_session(base, *pair) for pair in keys]
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def review(reviewer: int) -> None:
            session = sessions[reviewer]
            for i in range(args.decisions):
                number = 1 + reviewer * args.decisions + i
                ref = f"s3://bench-console/images/{number:07d}.jpg"
                body = {"decisions": [{"sourceRef": ref, "labels": {}, "expectedRevision": 0}]}
                started = time.perf_counter()
                answer = session.post(
                    f"{base}/console/jobs/{largest}/decisions", json=body, timeout=60
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if answer.status_code != 200 or len(answer.json().get("saved", [])) != 1:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

        threads = [threading.Thread(target=review, args=(r,)) for r in range(args.reviewers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        print(
            f"\n{args.reviewers} reviewers x {args.decisions} decisions on the "
            f"{max(counts)}-line job: p50 {1000 * _percentile(latencies, 0.5):.1f} ms, "
            f"p99 {1000 * _percentile(latencies, 0.99):.1f} ms, "
            f"max {1000 * max(latencies):.1f} ms, {len(latencies) / wall:.1f} decisions/s, "
            f"errors: {len(failures)}"
        )
        for failure in failures[:5]:
            print("  ", failure)
        return 1 if failures else 0
    finally:
        server.shutdown()
        server.server_close()
        moto.stop()


if __name__ == "__main__":
    raise SystemExit(main())

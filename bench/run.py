"""The benchmark: ``python -m bench.run [--images 500] [--memory_lines 1000,10000]``.

Measures side by side, in one run, on the same distinct images, each in a fresh process (the
throughput ones in interleaved rounds, keeping each one's best):
the pipeline on DirectRunner (local files and an S3-protocol server over HTTP), the bare
inference bound of the same model components, and the naive per-image loop; the scaling with
worker processes (``--direct_running_mode=multi_processing``, one inference thread each, with
and without a shared model), beside the same scaling of bare inference (one single-threaded
process on one core, then one such process per core at once); a manifest whose images repeat;
then the pipeline's peak memory on manifests of increasing length. Prints absolute figures and
the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from bench.images import make_benchmark_images
from model.backbone import NO_BACKBONE
from model.handler import usable_cores

_STARTUP_IMAGES = 16
STARTUP = f"pipeline, {_STARTUP_IMAGES} images (startup)"
STARTUP_NO_BACKBONE = f"pipeline, {_STARTUP_IMAGES} images, no backbone"

_CREDENTIALS = (
    "--s3_access_key_id=bench",
    "--s3_secret_access_key=bench",
    "--s3_region_name=us-east-1",
)


def _usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _pinned_to(cores: list[int] | None):
    """A ``preexec_fn`` that keeps the measured process (and the worker processes it starts)
    on ``cores``; None: leaves it where it is."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _bench_result(kind: str, stdout: str, stderr: str) -> dict:
    """The JSON object a ``bench.measure`` run printed."""
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH ") :])
    raise RuntimeError(f"{kind} measurement failed:\n{stderr[-3000:]}")


def _measure(kind: str, manifest: str, *args: str, cores: int | None = None) -> dict:
    """One ``bench.measure`` run in a fresh process (on its first ``cores`` usable cores;
    None: all), with the CPU time it and every process it started used (worker processes are
    waited for, so their time is counted) and its wall time, from which how many cores it kept
    busy on average."""
    command = [sys.executable, "-m", "bench.measure", kind, manifest, *args]
    pinned = None if cores is None else _usable_cores()[:cores]
    cpu_before, started = _children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, preexec_fn=_pinned_to(pinned)
    )
    cpu, wall = _children_cpu_seconds() - cpu_before, time.perf_counter() - started
    result = _bench_result(kind, done.stdout, done.stderr)
    result.update(cpu_seconds=cpu, process_seconds=wall, cores_busy=cpu / wall)
    return result


def _measure_at_once(count: int, kind: str, manifest: str, *args: str) -> dict:
    """``count`` ``bench.measure`` runs started together, each kept on a core of its own: what
    the machine itself gives ``count`` independent processes (shared caches, memory bandwidth,
    the host's scheduling), with no pipeline between them. Their images and rates add up."""
    command = [sys.executable, "-m", "bench.measure", kind, manifest, *args]
    cores = _usable_cores()
    cpu_before, started = _children_cpu_seconds(), time.perf_counter()
    running = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_pinned_to([cores[i % len(cores)]]),
        )
        for i in range(count)
    ]
    outputs = [process.communicate() for process in running]  # all of them, before any raises
    cpu, wall = _children_cpu_seconds() - cpu_before, time.perf_counter() - started
    each = [_bench_result(kind, stdout, stderr) for stdout, stderr in outputs]
    return {
        "images": sum(r["images"] for r in each),
        "seconds": max(r["seconds"] for r in each),
        "images_per_sec": sum(r["images_per_sec"] for r in each),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in each),
        "processes": count,
        "peak_total_pss_mb": sum(r.get("peak_total_pss_mb", 0) for r in each),
        "cpu_seconds": cpu,
        "process_seconds": wall,
        "cores_busy": cpu / wall,
    }


def _write_manifest(path: str, refs: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for ref in refs:
            f.write(json.dumps({"source-ref": ref}) + "\n")
    return path


def _start_s3_server():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _upload(endpoint: str, paths: list[str]) -> list[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    for bucket in ("bench-in", "bench-out"):
        s3.create_bucket(Bucket=bucket)
    refs = []
    for path in paths:
        key = "images/" + os.path.basename(path)
        s3.upload_file(path, "bench-in", key)
        refs.append(f"s3://bench-in/{key}")
    return refs


def _worker_rss(result: dict) -> float:
    """The largest process's peak RSS: a worker's when the job has worker processes."""
    return max([result["peak_rss_mb"], *result.get("peak_child_rss_mb", [])])


def _row(name: str, result: dict) -> str:
    return (
        f"{name:<40} {result['images']:>7d} {result['seconds']:>9.1f} "
        f"{result['images_per_sec']:>9.1f} {_worker_rss(result):>9.0f} "
        f"{result.get('processes', 1):>5d} {result.get('peak_total_pss_mb', 0):>9.0f} "
        f"{result['cores_busy']:>6.2f}"
    )


def _workers(count: int, *extra: str) -> tuple[str, ...]:
    return (
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={count}",
        "--inference_threads=1",
        *extra,
    )


def _startup_moments(moments: dict) -> str:
    """One line: when, in seconds from the process's start, a 16-image job got where."""

    def span(name: str) -> str:
        return f"{moments.get(name + '_began', 0):.1f}-{moments.get(name + '_done', 0):.1f}"

    waited = moments.get("stage_waiting_for_model_done", 0) - moments.get(
        "stage_waiting_for_model_began", 0
    )
    return (
        f"start-up moments, s from process start: imports done {moments['imports_done']:.1f}; "
        f"model loading {span('model_loading')} (thread {moments.get('model_loading_thread')}); "
        f"inference stage waited {waited:.1f} s for it; first image decoded "
        f"{moments.get('first_decode_done', 0):.1f}; first batch {span('first_inference')}; "
        f"job done {moments['job_done']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500, help="Distinct images. Default: 500.")
    parser.add_argument(
        "--memory_lines",
        default="1000,10000",
        help="Manifest lengths for the memory runs, comma-separated; empty skips them. "
        "Default: 1000,10000.",
    )
    parser.add_argument(
        "--workdir", default="bench-out", help="Scratch folder. Default: bench-out."
    )
    parser.add_argument("--skip_s3", action="store_true", help="Leave out the S3 server runs.")
    parser.add_argument(
        "--workers",
        type=int,
        default=usable_cores(),
        help="Worker processes of the scaling runs, against one; 0 or 1 skips them. "
        "Default: the cores there are.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="Rounds of the throughput measurements, interleaved; each keeps its best. Default: 2.",
    )
    args = parser.parse_args(argv)

    workdir = os.path.abspath(args.workdir)
    print(f"Generating {args.images} distinct images in {workdir} ...", flush=True)
    paths = make_benchmark_images(os.path.join(workdir, "images"), args.images)
    local_manifest = _write_manifest(os.path.join(workdir, "local.jsonl"), paths)
    # A run's fixed cost (imports, model loading, graph tracing) is measured on one batch, so
    # that the per-image cost of a long job can be told apart from it.
    startup_manifest = _write_manifest(
        os.path.join(workdir, "startup.jsonl"), paths[:_STARTUP_IMAGES]
    )

    results: dict[str, dict] = {}
    throughput = [
        ("bound (bare inference)", lambda: _measure("bound", local_manifest)),
        ("pipeline, local files", lambda: _measure("pipeline", local_manifest)),
        (
            "bound, no backbone",
            lambda: _measure("bound", local_manifest, f"--backbone={NO_BACKBONE}"),
        ),
        (
            "pipeline, no backbone",
            lambda: _measure("pipeline", local_manifest, f"--backbone={NO_BACKBONE}"),
        ),
        ("naive loop, local files", lambda: _measure("naive", local_manifest)),
        (STARTUP, lambda: _measure("pipeline", startup_manifest)),
        (
            STARTUP_NO_BACKBONE,
            lambda: _measure("pipeline", startup_manifest, f"--backbone={NO_BACKBONE}"),
        ),
    ]
    workers = args.workers
    if workers > 1:
        one, many = "1 worker process, 1 thread", f"{workers} worker processes, 1 thread each"
        # One worker left alone has every core for its fetching and decoding threads and its
        # runner: the baseline of "N workers on N cores" is one worker on one core.
        one_core = "1 worker process, 1 thread, 1 core"
        shared = f"{workers} workers, 1 thread, shared model"
        # What the machine gives N processes with no pipeline at all: bare inference on one
        # thread, alone on one core, and N such processes at once, one per core.
        bound_one = "bound, 1 thread, 1 core"
        bound_many = f"bound, 1 thread, {workers} at once"
        one_thread = "--inference_threads=1"
        throughput += [
            (bound_one, lambda: _measure("bound", local_manifest, one_thread, cores=1)),
            (
                bound_many,
                lambda: _measure_at_once(workers, "bound", local_manifest, one_thread),
            ),
            (one, lambda: _measure("pipeline", local_manifest, *_workers(1))),
            (one_core, lambda: _measure("pipeline", local_manifest, *_workers(1), cores=1)),
            (many, lambda: _measure("pipeline", local_manifest, *_workers(workers))),
            (
                shared,
                lambda: _measure("pipeline", local_manifest, *_workers(workers, "--share_model")),
            ),
        ]
    # The same number of lines as the distinct run, each image ten times: the repeats are
    # answered from the worker's recent results.
    distinct = paths[: max(1, len(paths) // 10)]
    repeated_manifest = _write_manifest(
        os.path.join(workdir, "repeated.jsonl"),
        [distinct[i % len(distinct)] for i in range(len(paths))],
    )
    repeated = "pipeline, each image 10 times"
    throughput.append((repeated, lambda: _measure("pipeline", repeated_manifest)))
    server = None
    if not args.skip_s3:
        server, endpoint = _start_s3_server()
        s3_refs = _upload(endpoint, paths)
        s3_manifest = _write_manifest(os.path.join(workdir, "s3.jsonl"), s3_refs)
        s3_flags = (f"--s3_endpoint_url={endpoint}", *_CREDENTIALS)
        throughput += [
            (
                "pipeline, S3 server",
                lambda: _measure(
                    "pipeline", s3_manifest, *s3_flags, "--output=s3://bench-out/pipeline"
                ),
            ),
            ("naive loop, S3 server", lambda: _measure("naive", s3_manifest, *s3_flags)),
        ]
    # The machine is shared and noisy: rounds interleave the measurements and each keeps its
    # fastest run, so that a burst of load elsewhere does not decide a ratio.
    steps = [step for _ in range(max(1, args.repeats)) for step in throughput]
    for lines in [int(n) for n in args.memory_lines.split(",") if n.strip()]:
        refs = [paths[i % len(paths)] for i in range(lines)]
        manifest = _write_manifest(os.path.join(workdir, f"memory-{lines}.jsonl"), refs)
        steps.append(
            (f"pipeline, {lines}-line manifest", lambda m=manifest: _measure("pipeline", m))
        )

    print("Measuring the model's parts ...", flush=True)
    components = _measure("components", local_manifest)
    print("Measuring the start-up's moments ...", flush=True)
    startup_moments = _measure("startup", startup_manifest)["moments"]

    server_cpu: dict[str, float] = {}
    for name, step in steps:
        started = time.perf_counter()
        print(f"Measuring {name} ...", flush=True)
        cpu_before = time.process_time()  # this process hosts the S3 server, idle otherwise
        result = step()
        if "S3" in name:
            server_cpu[name] = time.process_time() - cpu_before
        print(f"  {time.perf_counter() - started:.0f} s, {result['images_per_sec']:.1f} images/s")
        if name not in results or result["images_per_sec"] > results[name]["images_per_sec"]:
            results[name] = result
    if server is not None:
        server.stop()

    print()
    print(
        f"{'measurement':<40} {'images':>7} {'seconds':>9} {'images/s':>9} {'peak MB':>9} "
        f"{'procs':>5} {'PSS MB':>9} {'cores':>6}"
    )
    for name, result in results.items():
        print(_row(name, result))
    print()

    sizes = list(next(iter(components["components"].values())))
    print(f"{'part of the model, ms/image':<34} " + " ".join(f"{'batch ' + n:>9}" for n in sizes))
    for name, by_size in components["components"].items():
        print(f"{name:<34} " + " ".join(f"{by_size[n]:>9.1f}" for n in sizes))
    print()

    def ratio(a: str, b: str, what: str = "images_per_sec") -> None:
        if a in results and b in results:
            print(f"{a} / {b}: {results[a][what] / results[b][what]:.2f} ({what})")

    for name, seconds in server_cpu.items():
        images = results[name]["images"]
        print(
            f"S3 server CPU during the last '{name}': {seconds:.1f} s "
            f"({1000 * seconds / images:.1f} ms/image), on the same cores"
        )
    print()
    ratio("pipeline, local files", "bound (bare inference)")
    ratio("pipeline, local files", "naive loop, local files")
    ratio("pipeline, no backbone", "bound, no backbone")
    if {"pipeline, no backbone", STARTUP, STARTUP_NO_BACKBONE} <= set(results):
        # Per-image cost once running: the whole run less the startup run, per extra image.
        def per_image_ms(whole: str, startup: str) -> float:
            extra = results[whole]["images"] - results[startup]["images"]
            return 1000 * (results[whole]["seconds"] - results[startup]["seconds"]) / extra

        with_backbone = per_image_ms("pipeline, local files", STARTUP)
        without = per_image_ms("pipeline, no backbone", STARTUP_NO_BACKBONE)
        bound = 1000 / results["bound (bare inference)"]["images_per_sec"]
        bound_without = 1000 / results["bound, no backbone"]["images_per_sec"]
        backbone_ms = components["components"]["backbone"][sizes[-1]]
        print(
            f"startup: {results[STARTUP]['seconds']:.1f} s with the backbone, "
            f"{results[STARTUP_NO_BACKBONE]['seconds']:.1f} s without"
        )
        print(
            f"pipeline ms/image once started: {with_backbone:.1f} with the backbone, "
            f"{without:.1f} without; bound: {bound:.1f} and {bound_without:.1f}"
        )
        print(
            f"once started, pipeline / bound: {bound / with_backbone:.2f} with the backbone, "
            f"{bound_without / without:.2f} without"
        )
        print(
            f"ms/image the backbone adds to the pipeline: {with_backbone - without:.1f}; "
            f"to bare inference: {bound - bound_without:.1f}; its own inference at batch "
            f"{sizes[-1]}: {backbone_ms:.1f}"
        )
    print(_startup_moments(startup_moments))
    ratio(repeated, "pipeline, local files")
    if workers > 1 and {one, many} <= set(results):
        for baseline in (one, one_core):
            if baseline in results:
                speedup = results[many]["images_per_sec"] / results[baseline]["images_per_sec"]
                print(
                    f"{many} / {baseline}: {speedup:.2f} = {speedup / workers:.2f} x {workers} "
                    f"(images_per_sec; target 0.9 x {workers})"
                )
                # Images per CPU-second of the whole process tree: what each added worker
                # costs, whatever share of the cores a lone worker could take for itself.
                per_cpu = {
                    name: results[name]["images"] / results[name]["cpu_seconds"]
                    for name in (many, baseline)
                }
                print(
                    f"  per CPU-second: {per_cpu[many]:.2f} against {per_cpu[baseline]:.2f} "
                    f"images ({per_cpu[many] / per_cpu[baseline]:.2f}); cores kept busy: "
                    f"{results[many]['cores_busy']:.2f} against "
                    f"{results[baseline]['cores_busy']:.2f}"
                )
        if {bound_one, bound_many, one_core} <= set(results):
            machine = results[bound_many]["images_per_sec"] / results[bound_one]["images_per_sec"]
            pipeline = results[many]["images_per_sec"] / results[one_core]["images_per_sec"]
            print(
                f"{bound_many} / {bound_one}: {machine:.2f} = {machine / workers:.2f} x "
                f"{workers} (the machine's own scaling, no pipeline); the workers reach "
                f"{pipeline / machine:.2f} of it"
            )
        ratio(shared, many)
        for name in (one, many, shared):
            if name in results:
                print(
                    f"{name}: peak RSS per process {results[name].get('peak_child_rss_mb')} MB, "
                    f"all processes together {results[name]['peak_total_pss_mb']:.0f} MB (PSS)"
                )
    ratio("pipeline, S3 server", "bound (bare inference)")
    ratio("pipeline, S3 server", "naive loop, S3 server")
    memory = [name for name in results if name.endswith("-line manifest")]
    if len(memory) >= 2:
        ratio(memory[-1], memory[0], "peak_rss_mb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

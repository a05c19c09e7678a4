"""DetectModerationLabels under load: ``python -m bench.detect_load [--images 120] [--rounds 3]``.

Measures, side by side in one run, on ``--images`` distinct JPEGs (``bench.images``):

- the bound: bare inference, the model's ``predict`` on images decoded beforehand, in batches of
  ``--batch_size`` (after one warm-up batch);
- the API server (``build_server``, the same model) answering ``--clients`` concurrent boto3
  clients, each sending its own share of the images as ``Image.Bytes``: one request at a time
  (``--detect_batch_size=1 --detect_batch_wait_ms=0``, what a lock around the model gives), and
  micro-batched with the default wait and ``--detect_batch_size=--batch_size``;
- overload: ``--overload_clients`` clients against a queue of ``--overload_queue`` requests,
  which answers ThrottlingException when full.

The first three run ``--rounds`` times in turn (one at a time, bound, batched), each server
started and its model loaded beforehand, so that every ratio compares measurements seconds
apart on a machine whose load changes; the ratios are given over all rounds and per round.
The clients run in a process of their own (as callers on other machines would), with retries
off, so that every error counts; each makes one untimed warm-up call first. Prints per scenario
the calls answered, ThrottlingExceptions, other errors, images/s, p50/p99 latency and the mean
batch the model ran, then the ratios; exits 1 if any call failed with anything but
ThrottlingException.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from service.inference_queue import QueueStats

KEY_ID, SECRET = "AKIDBENCHDETECT00001", "bench-detect-load-secret"
# Nothing here is read from S3; an endpoint that refuses connections keeps it so.
_NO_S3 = "http://127.0.0.1:9"
THROTTLED = "ThrottlingException"
DETECT_MODERATION_LABELS = "detect_moderation_labels"  # the boto3 method the clients call


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.detect_load", description=__doc__)
    parser.add_argument(
        "--images", type=int, default=64, help="Distinct images per round. Default: 64."
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="Rounds of the 8-client runs. Default: 6."
    )
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients. Default: 8.")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="The bound's and the server's batch. Default: 16.",
    )
    parser.add_argument(
        "--overload_clients", type=int, default=32, help="0: no overload run. Default: 32."
    )
    parser.add_argument(
        "--overload_queue", type=int, default=4, help="--detect_queue_size then. Default: 4."
    )
    parser.add_argument(
        "--overload_calls", type=int, default=8, help="Calls per overload client. Default: 8."
    )
    parser.add_argument("--components", default="auto", help="As for the server. Default: auto.")
    parser.add_argument(
        "--backbone", default=None, help="As for the server. Default: the server's default."
    )
    parser.add_argument(
        "--skip_one_at_a_time", action="store_true", help="Leave out the one-at-a-time run."
    )
    parser.add_argument("--workdir", default=os.path.join("bench-out", "detect"))
    return parser


@dataclass
class Outcome:
    """One scenario: what the clients saw and what the model ran."""

    name: str
    clients: int
    seconds: float
    answered: int = 0
    cpu_seconds: float = 0.0  # of every process taking part: server and clients, or the bound
    latencies: list[float] = field(default_factory=list)  # of the answered calls
    errors: collections.Counter = field(default_factory=collections.Counter)
    batches: int = 0
    images_in_batches: int = 0

    @property
    def images_per_sec(self) -> float:
        return self.answered / self.seconds

    @property
    def other_errors(self) -> int:
        return sum(n for code, n in self.errors.items() if code != THROTTLED)


# --- the clients (their own process) -------------------------------------------------------


def rekognition_client(endpoint: str):
    """A boto3 Rekognition client of the server at ``endpoint``, signing with this benchmark's
    key pair, retries off (every error counts)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=300, max_pool_connections=4),
    )


def _call(
    client, data: bytes, operation: str, params: Mapping[str, Any]
) -> tuple[float, str | None]:
    from botocore.exceptions import ClientError

    started = time.perf_counter()
    try:
        getattr(client, operation)(Image={"Bytes": data}, **params)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
    except Exception as exc:  # noqa: BLE001 - a broken connection is an error to count
        code = type(exc).__name__
    else:
        code = None
    return time.perf_counter() - started, code


def drive_clients(
    connection,
    endpoint: str,
    plan: list[list[str]],
    operation: str = DETECT_MODERATION_LABELS,
    params: Mapping[str, Any] | None = None,
) -> None:
    """The client process: one thread per client, each making one warm-up call, then, once the
    parent has answered ``"warm"`` with ``"go"``, sending the images of its list, all starting
    together. Each call is the boto3 method ``operation`` with ``Image.Bytes`` and ``params``.
    Sends back ``(wall seconds, [(latency, error code or None), ...])``."""
    params = dict(params or {})
    shares = [[open(path, "rb").read() for path in paths] for paths in plan]
    clients = [rekognition_client(endpoint) for _ in plan]
    results: list[tuple[float, str | None]] = []
    lock = threading.Lock()
    warm, go = threading.Barrier(len(plan) + 1), threading.Barrier(len(plan) + 1)

    def run(client, share: list[bytes]) -> None:
        _call(client, share[0], operation, params)  # connection, credentials, first batches
        warm.wait()
        go.wait()
        mine = [_call(client, data, operation, params) for data in share]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(clients, shares)]
    for thread in threads:
        thread.start()
    warm.wait()
    connection.send("warm")
    assert connection.recv() == "go"
    started, cpu = time.perf_counter(), time.process_time()
    go.wait()
    for thread in threads:
        thread.join()
    connection.send((time.perf_counter() - started, time.process_time() - cpu, results))


# --- the bound and the server (this process) -------------------------------------------------


class Bound:
    """Bare inference: the model's ``predict`` on images decoded beforehand, batch by batch."""

    def __init__(self, paths: Sequence[str], batch_size: int, components: str, backbone: str):
        from model.moderation_model import load_moderation_model
        from transforms.images import decode_image

        self.name = f"bound: predict, batches of {batch_size}"
        self.batch_size = batch_size
        self.model = load_moderation_model(components, backbone=backbone)
        self.images = [decode_image(open(path, "rb").read()) for path in paths]
        self.model.predict(self.images[:batch_size])  # warm-up

    def measure(self) -> Outcome:
        return measure_batches(self.name, self.model.predict, self.images, self.batch_size)


def measure_batches(
    name: str, predict: Callable[[Sequence], Any], images: Sequence, batch_size: int
) -> Outcome:
    """Bare inference timed: ``predict`` on ``images`` (decoded beforehand), ``batch_size`` at
    a time."""
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(images), batch_size):
        predict(images[start : start + batch_size])
    outcome = Outcome(name, 0, time.perf_counter() - started, answered=len(images))
    outcome.cpu_seconds = time.process_time() - cpu
    outcome.batches = -(-len(images) // batch_size)
    outcome.images_in_batches = len(images)
    return outcome


class Server:
    """An API server (``build_server``) with these flags, serving in a thread, its model
    loaded."""

    def __init__(self, workdir: str, name: str, flags: Sequence[str]):
        from service.server import build_server

        self.name = name
        registry = os.path.join(workdir, f"{name.split()[0]}.sqlite")
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(registry + suffix):
                os.remove(registry + suffix)
        self.httpd = build_server(
            [
                "--port=0",
                f"--registry={registry}",
                "--allowed_locations=*",
                "--no_console",
                f"--s3_endpoint_url={_NO_S3}",
                "--s3_region_name=us-east-1",
                f"--kms_endpoint_url={_NO_S3}",
                *flags,
            ]
        )
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        host, port = self.httpd.server_address[:2]
        self.endpoint = f"http://{host}:{port}"

    def wait_for_model(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not self.httpd.api.model.loaded:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the model did not load")
            time.sleep(0.05)

    def measure(
        self,
        plan: list[list[str]],
        *,
        operation: str = DETECT_MODERATION_LABELS,
        params: Mapping[str, Any] | None = None,
        stats: Callable[[], QueueStats] | None = None,
    ) -> Outcome:
        """``plan`` sent by clients in a process of their own, once each has made its warm-up
        call (``drive_clients``' ``operation`` and ``params``); the batches counted are those of
        the timed calls, from ``stats`` (default: the moderation model's queue)."""
        stats = stats or (lambda: self.httpd.api.model.stats)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        clients = context.Process(
            target=drive_clients, args=(theirs, self.endpoint, plan, operation, params)
        )
        clients.start()
        try:
            if ours.recv() != "warm":
                raise RuntimeError("the clients did not start")
            before, cpu = replace(stats()), time.process_time()
            ours.send("go")
            seconds, clients_cpu, results = ours.recv()
            after, server_cpu = replace(stats()), time.process_time() - cpu
        finally:
            clients.join(60)
        outcome = Outcome(self.name, len(plan), seconds, cpu_seconds=server_cpu + clients_cpu)
        for latency, code in results:
            if code is None:
                outcome.answered += 1
                outcome.latencies.append(latency)
            else:
                outcome.errors[code] += 1
        outcome.batches = after.batches - before.batches
        outcome.images_in_batches = after.images - before.images
        return outcome

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def client_shares(paths: Sequence[str], clients: int, calls: int | None = None) -> list[list[str]]:
    """Each client's images: distinct when ``calls`` is None (the images dealt out in turn),
    else ``calls`` each, cycling through the images."""
    if calls is None:
        return [list(paths[seat::clients]) for seat in range(clients)]
    return [
        [paths[(seat * calls + call) % len(paths)] for call in range(calls)]
        for seat in range(clients)
    ]


# --- the report -----------------------------------------------------------------------------


def combined(outcomes: Sequence[Outcome]) -> Outcome:
    """The rounds of one scenario as one."""
    total = Outcome(outcomes[0].name, outcomes[0].clients, sum(o.seconds for o in outcomes))
    for o in outcomes:
        total.answered += o.answered
        total.cpu_seconds += o.cpu_seconds
        total.latencies += o.latencies
        total.errors.update(o.errors)
        total.batches += o.batches
        total.images_in_batches += o.images_in_batches
    return total


def _row(*cells) -> str:
    widths = (40, 8, 7, 9, 10, 7, 8, 9, 8, 8, 6, 10)
    first, *rest = cells
    return f"{first:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:]))


def _cpu_ms_per_image(o: Outcome) -> float:
    return 1000 * o.cpu_seconds / o.answered if o.answered else float("nan")


def print_table(totals: Sequence[Outcome]) -> None:
    """One row per scenario: calls, answers, errors, images/s, p50/p99 latency, the mean batch
    the model ran and the CPU time per image."""
    print(
        _row(
            "scenario", "clients", "calls", "answered", "throttled", "other",
            "seconds", "images/s", "p50 ms", "p99 ms", "batch", "CPU ms/im",
        )
    )  # fmt: skip
    for o in totals:
        times = np.array(o.latencies) * 1000
        p50, p99 = (f"{v:.0f}" for v in np.percentile(times, [50, 99])) if len(times) else "--"
        mean_batch = o.images_in_batches / o.batches if o.batches else float("nan")
        print(
            _row(
                o.name, o.clients or "-", o.answered + sum(o.errors.values()), o.answered,
                o.errors[THROTTLED] if o.clients else "-", o.other_errors if o.clients else "-",
                f"{o.seconds:.1f}", f"{o.images_per_sec:.1f}", p50, p99, f"{mean_batch:.1f}",
                f"{_cpu_ms_per_image(o):.0f}",
            )
        )  # fmt: skip


def ratios(numerator: Sequence[Outcome], denominator: Sequence[Outcome]) -> dict[str, Any]:
    """Images/s of one scenario over another's, over all rounds (``images_per_sec``) and per
    round (``rounds``, and their ``median``); and images per CPU-second (of the processes
    taking part, ``images_per_cpu_second``), which other work on the machine disturbs less than
    wall time."""
    rounds = [n.images_per_sec / d.images_per_sec for n, d in zip(numerator, denominator)]
    return {
        "images_per_sec": combined(numerator).images_per_sec / combined(denominator).images_per_sec,
        "rounds": rounds,
        "median": float(np.median(rounds)),
        "images_per_cpu_second": (
            _cpu_ms_per_image(combined(denominator)) / _cpu_ms_per_image(combined(numerator))
        ),
    }


def print_ratio(name: str, numerator: Sequence[Outcome], denominator: Sequence[Outcome]) -> None:
    """One line of ``ratios``."""
    ratio = ratios(numerator, denominator)
    each = ", ".join(f"{r:.2f}" for r in ratio["rounds"])
    print(
        f"{name}: {ratio['images_per_sec']:.2f} images/s (rounds {each}; median "
        f"{ratio['median']:.2f}); {ratio['images_per_cpu_second']:.2f} images per CPU-second"
    )


def _print_report(rounds: dict[str, list[Outcome]], overload: Outcome | None) -> None:
    totals = [combined(outcomes) for outcomes in rounds.values()]
    print_table([*totals, *([overload] if overload else [])])
    print()
    bound, batched = rounds["bound"], rounds["batched"]
    print_ratio("batched / bound", batched, bound)
    if "one-at-a-time" in rounds:
        single = rounds["one-at-a-time"]
        print_ratio("one-at-a-time / bound", single, bound)
        print_ratio("batched / one-at-a-time", batched, single)
        b, s = combined(batched).latencies, combined(single).latencies
        print(
            f"batched / one-at-a-time latency: p50 {np.median(b) / np.median(s):.2f}, "
            f"p99 {np.percentile(b, 99) / np.percentile(s, 99):.2f}"
        )
    everything = [*totals, *([overload] if overload else [])]
    for o in everything:
        for code, count in sorted(o.errors.items()):
            print(f"  {o.name}: {code} x{count}")
    print(f"errors other than {THROTTLED}: {sum(o.other_errors for o in everything)}")


def _measure_rounds(args, paths, backbone: str, workdir: str) -> dict[str, list[Outcome]]:
    """Each round: one-at-a-time, the bound, batched, one after the other, so that each ratio
    compares measurements minutes apart at most on a machine whose load changes."""
    model_flags = [f"--components={args.components}", f"--backbone={backbone}"]
    servers = {}
    if not args.skip_one_at_a_time:
        servers["one-at-a-time"] = Server(
            workdir,
            "one-at-a-time (batch 1, wait 0)",
            [*model_flags, "--detect_batch_size=1", "--detect_batch_wait_ms=0"],
        )
    servers["batched"] = Server(
        workdir,
        f"batched (batch {args.batch_size}, defaults)",
        [*model_flags, f"--detect_batch_size={args.batch_size}"],
    )
    bound = Bound(paths, args.batch_size, args.components, backbone)
    plan = client_shares(paths, args.clients)
    order = [*(["one-at-a-time"] if "one-at-a-time" in servers else []), "bound", "batched"]
    rounds: dict[str, list[Outcome]] = {name: [] for name in order}
    try:
        for server in servers.values():
            server.wait_for_model()
        for _ in range(args.rounds):
            for name in order:
                measure = bound.measure if name == "bound" else partial(servers[name].measure, plan)
                rounds[name].append(measure())
    finally:
        for server in servers.values():
            server.close()
    return rounds


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["BEAM_MODERATION_ACCESS_KEYS"] = f"{KEY_ID}:{SECRET}"

    from bench.images import make_benchmark_images
    from model.backbone import DEFAULT_BACKBONE

    backbone = args.backbone or DEFAULT_BACKBONE
    workdir = os.path.abspath(args.workdir)
    paths = make_benchmark_images(os.path.join(workdir, "images"), args.images)
    rounds = _measure_rounds(args, paths, backbone, workdir)
    overload = None
    if args.overload_clients:
        server = Server(
            workdir,
            f"overload (queue {args.overload_queue})",
            [
                f"--components={args.components}",
                f"--backbone={backbone}",
                f"--detect_batch_size={args.batch_size}",
                f"--detect_queue_size={args.overload_queue}",
            ],
        )
        try:
            server.wait_for_model()
            overload = server.measure(
                client_shares(paths, args.overload_clients, args.overload_calls)
            )
        finally:
            server.close()

    print(
        f"DetectModerationLabels load: {args.images} distinct images, {args.clients} clients, "
        f"{args.rounds} rounds, model --components={args.components} --backbone={backbone}, "
        "clients in their own process with retries off"
    )
    print()
    _print_report(rounds, overload)
    failed = [*sum(rounds.values(), []), *([overload] if overload else [])]
    return 1 if any(o.other_errors for o in failed) else 0


if __name__ == "__main__":
    sys.exit(main())

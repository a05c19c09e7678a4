"""Custom Labels' quality, training time and DetectCustomLabels latency:
``python -m bench.custom_labels [--quick] [--output FILE.json]``.

Measures, in one run, on the sample sets of ``training.custom_labels_samples``:

1. Quality on held-out images. For each of ``--seeds`` a classification set
   (``write_classification_set``, 60 images a label: 180 training and 60 test images, 4 labels)
   and a detection set (``write_detection_set``, 267 images: 200 and 67, 3 labels), each
   written and trained with that seed by ``training.custom_labels_training.train``, the
   training ``python -m training.train_custom_labels`` runs. The figures are the training's
   evaluation on the test set: micro-averaged F1, precision and recall and per-label F1 at each
   label's assumed threshold (which Custom Labels chooses on the test set itself, so F1 there
   is at its best threshold; average precision depends on no threshold); for detection F1 at
   IoU 0.5, mAP@0.5, AverageRecall (IoU 0.5-0.95) and per-label AP. Then the harder task, the
   same with ``unseen_drawings=True`` (test images show drawings that training never did),
   unless ``--skip_unseen``.
2. Training time of each of those trainings: the backbone's features of the training images
   and their mirrors, and fitting the head (``FeatureSeconds`` and ``FitSeconds`` of the
   model's ``spec.training``), and the whole ``train`` call (reading and checking the images,
   writing the files); also a classifier on 200 training images (67 images a label), and the
   first detection set trained again through the API server's CreateProjectVersion, in a
   process of its own as the server runs it (its BillableTrainingTimeInSeconds).
3. DetectCustomLabels through the API server (``bench.detect_load.Server``, over a moto S3
   server), the version of 2 started with StartProjectVersion (MinInferenceUnits=1) and the
   project_version_running waiter. ``--rounds`` rounds, one measurement after the other: the
   bound (``CustomLabelsModel.detect_custom_labels`` in this process on the images decoded
   beforehand, in batches of 1 and of ``--batch_size``), then 1 client and ``--clients``
   concurrent boto3 clients in a process of their own (``bench.detect_load.drive_clients``,
   retries off, one untimed warm-up call each), sending the detection set's test images as
   ``Image.Bytes``. Per scenario p50/p99 latency and images/s, and the ratios to the bound.

``--quick``: one seed, sets of 80 images (60 training, 20 test), no unseen drawings, no
200-image classifier, one round: a minute or so, for a test. Prints the tables and writes every
figure as JSON to ``--output``, with the machine and the commands. Exits 1 if any
DetectCustomLabels call failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.detect_load import (
    KEY_ID,
    SECRET,
    Outcome,
    Server,
    client_shares,
    combined,
    measure_batches,
    print_ratio,
    print_table,
    ratios,
    rekognition_client,
)

__all__ = ["FULL", "QUICK", "Sizes", "main"]

CLASSIFICATION, DETECTION = "classification", "detection"
_REGION = "us-east-1"
_IN_BUCKET, _OUT_BUCKET = "bench-in", "bench-out"
_WAIT_TRAINED = {"Delay": 2, "MaxAttempts": 1800}
_WAIT_RUNNING = {"Delay": 1, "MaxAttempts": 600}
DETECT_CUSTOM_LABELS = "detect_custom_labels"  # the boto3 method the clients call
_VERSION = "detector"


@dataclass(frozen=True)
class Sizes:
    """How big the sample sets are: classification images a label, detection images, and
    images a label of the classifier trained for its time on 200 images (None: not trained)."""

    per_label: int
    detection_images: int
    timing_per_label: int | None


FULL = Sizes(per_label=60, detection_images=267, timing_per_label=67)
QUICK = Sizes(per_label=20, detection_images=80, timing_per_label=None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.custom_labels",
        description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A small run for a test: one seed, 80-image sets, one round. Default: off.",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="Where the JSON report goes. Default: WORKDIR/custom-labels.json.",
    )
    parser.add_argument(
        "--seeds",
        default="0,1",
        help="Seeds of the sample sets and their trainings, comma-separated (--quick: the "
        "first). Default: 0,1.",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="Rounds of the latency measurements. Default: 3 (--quick: 1).",
    )
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients. Default: 8.")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="The bound's batch and the server's --detect_batch_size. Default: 16.",
    )
    parser.add_argument(
        "--skip_unseen",
        action="store_true",
        help="Leave out the sets of unseen drawings (always left out with --quick).",
    )
    parser.add_argument(
        "--workdir",
        default=os.path.join("bench-out", "custom-labels"),
        help="Scratch folder; each set's folder in it is replaced. Default: "
        "bench-out/custom-labels.",
    )
    return parser


# --- quality and training time ------------------------------------------------------------


@dataclass
class TrainingRun:
    """One sample set written and trained: its evaluation on the test set and the timings."""

    name: str
    task: str
    seed: int
    unseen_drawings: bool
    train_images: int
    test_images: int
    labels: list[str]
    evaluation: dict[str, Any]
    training: dict[str, Any]  # the model's spec.training: FeatureSeconds, FitSeconds, ...
    train_seconds: float  # the whole train() call
    set_seconds: float  # writing the sample set
    commands: dict[str, str] = field(default_factory=dict)  # what does the same by hand
    quality: bool = True  # False: trained for its time only
    sample_set: Any = None  # the training.custom_labels_samples.SampleSet

    def to_json(self) -> dict[str, Any]:
        evaluation = self.evaluation
        document: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "seed": self.seed,
            "unseen_drawings": self.unseen_drawings,
            "train_images": self.train_images,
            "test_images": self.test_images,
            "labels": self.labels,
            **{
                name: evaluation[name]
                for name in ("F1Score", "Precision", "Recall", "AveragePrecision", "AverageRecall")
                if name in evaluation
            },
            "per_label": {row["Label"]: _label_row(row) for row in evaluation["Labels"]},
            "training": {
                **self.training,
                "TrainCallSeconds": round(self.train_seconds, 3),
                "SampleSetSeconds": round(self.set_seconds, 3),
            },
            "commands": self.commands,
        }
        if "ConfusionMatrix" in evaluation:
            document["ConfusionMatrix"] = evaluation["ConfusionMatrix"]
        return document


def _label_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "Label"}


def _command(*words: Any) -> str:
    return shlex.join(str(word) for word in words)


def _write_set(task: str, folder: str, seed: int, unseen: bool, size: int):
    """The sample set and the command that writes the same one."""
    from training.custom_labels_samples import write_classification_set, write_detection_set

    if task == CLASSIFICATION:
        sample_set = write_classification_set(
            folder, per_label=size, seed=seed, unseen_drawings=unseen
        )
        images = size * 4  # the command's --images: over the 4 labels
    else:
        sample_set = write_detection_set(folder, images=size, seed=seed, unseen_drawings=unseen)
        images = size
    command = _command(
        "python", "-m", "training.custom_labels_samples", "--kind", task, "--output", folder,
        "--images", images, "--seed", seed, *(["--unseen_drawings"] if unseen else []),
    )  # fmt: skip
    return sample_set, command


def _train_run(
    workdir: str, task: str, seed: int, *, unseen: bool, size: int, quality: bool = True
) -> TrainingRun:
    """Writes a sample set and trains on it with ``train``, keeping the evaluation that the
    training computes (the fit's own result) and the model's timings."""
    from model.tensorflow_env import import_tensorflow
    from training.custom_labels_fit import fit_model
    from training.custom_labels_training import TrainingRequest, train

    # Each training starts from a clean Keras state, as in a process of its own.
    import_tensorflow().keras.backend.clear_session()
    name = f"{task}{', unseen drawings' if unseen else ''}, seed {seed}"
    folder = os.path.join(
        workdir, f"{task}{'-unseen' if unseen else ''}{'' if quality else '-timing'}-{seed}"
    )
    shutil.rmtree(folder, ignore_errors=True)
    print(f"Writing the {name} set ...", flush=True)
    started = time.perf_counter()
    sample_set, samples_command = _write_set(task, folder, seed, unseen, size)
    set_seconds = time.perf_counter() - started
    if not quality:
        name = f"{task}, {sample_set.train_images} training images, seed {seed}"
    kept: dict[str, Any] = {}

    def fit(*args, **kwargs):
        model, evaluation = fit_model(*args, **kwargs)
        kept["model"], kept["evaluation"] = model, evaluation
        return model, evaluation

    output = os.path.join(folder, "output")
    request = TrainingRequest(
        training_manifests=[sample_set.train_manifest],
        testing_manifests=[sample_set.test_manifest],
        output=output,
        seed=seed,
    )
    print(
        f"Training the {name} ({sample_set.train_images} training images, "
        f"{sample_set.test_images} test images) ...",
        flush=True,
    )
    started = time.perf_counter()
    train(request, fit=fit)
    train_seconds = time.perf_counter() - started
    run = TrainingRun(
        name=name,
        task=task,
        seed=seed,
        unseen_drawings=unseen,
        train_images=sample_set.train_images,
        test_images=sample_set.test_images,
        labels=list(sample_set.labels),
        evaluation=kept["evaluation"],
        training=dict(kept["model"].spec.training),
        train_seconds=train_seconds,
        set_seconds=set_seconds,
        commands={
            "samples": samples_command,
            "training": _command(
                "python",
                "-m",
                "training.train_custom_labels",
                "--training_manifest",
                sample_set.train_manifest,
                "--testing_manifest",
                sample_set.test_manifest,
                "--output",
                output,
                "--seed",
                seed,
            ),
        },  # fmt: skip
        quality=quality,
        sample_set=sample_set,
    )
    print(
        f"  F1 {run.evaluation['F1Score']:.3f}; features {run.training['FeatureSeconds']:.1f} s, "
        f"fit {run.training['FitSeconds']:.1f} s, train() {train_seconds:.1f} s",
        flush=True,
    )
    return run


def _means(runs: Sequence[TrainingRun]) -> list[dict[str, Any]]:
    """Per set (task, unseen drawings or not), the mean of each figure over the seeds."""
    groups: dict[tuple[str, bool], list[TrainingRun]] = {}
    for run in runs:
        if run.quality:
            groups.setdefault((run.task, run.unseen_drawings), []).append(run)
    means = []
    for (task, unseen), group in groups.items():
        documents = [run.to_json() for run in group]
        mean: dict[str, Any] = {
            "task": task,
            "unseen_drawings": unseen,
            "seeds": [run.seed for run in group],
        }
        for name in ("F1Score", "Precision", "Recall", "AveragePrecision", "AverageRecall"):
            if name in documents[0]:
                mean[name] = float(np.mean([d[name] for d in documents]))
        mean["per_label"] = {
            label: {
                name: float(np.mean([d["per_label"][label][name] for d in documents]))
                for name in ("F1Score", "Precision", "Recall", "AveragePrecision")
            }
            for label in documents[0]["per_label"]
        }
        means.append(mean)
    return means


# --- DetectCustomLabels through the server -------------------------------------------------


@dataclass
class Latency:
    """The served version and the rounds of each scenario."""

    version_arn: str
    model_uri: str
    images: int
    start_seconds: float  # StartProjectVersion until the waiter saw RUNNING
    server_training: dict[str, Any]
    rounds: dict[str, list[Outcome]]
    commands: dict[str, Any]


def _s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=_REGION)


def _asset(uri: str) -> dict[str, Any]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}


def _test_images(sample_set) -> list[str]:
    with open(sample_set.test_manifest, encoding="utf-8") as stream:
        return [json.loads(line)["source-ref"] for line in stream if line.strip()]


def _train_through_server(client, uploaded, name: str) -> tuple[str, str]:
    """CreateProjectVersion on the uploaded set, waited for; the project's and the version's
    ARNs."""
    from botocore.exceptions import WaiterError

    project = client.create_project(ProjectName="bench-detection")["ProjectArn"]
    arn = client.create_project_version(
        ProjectArn=project,
        VersionName=name,
        OutputConfig={"S3Bucket": _OUT_BUCKET, "S3KeyPrefix": "custom-labels"},
        TrainingData={"Assets": [_asset(uploaded.train_manifest)]},
        TestingData={"Assets": [_asset(uploaded.test_manifest)]},
    )["ProjectVersionArn"]
    try:
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project, VersionNames=[name], WaiterConfig=_WAIT_TRAINED
        )
    except WaiterError as exc:
        raise RuntimeError(f"CreateProjectVersion did not train: {exc}") from None
    return project, arn


class _Bound:
    """Bare inference: ``detect_custom_labels`` on the images decoded beforehand, in batches,
    on as many threads as the server gives its one inference unit."""

    def __init__(self, model_uri: str, s3, paths: Sequence[str]):
        from model.custom_labels_model import CustomLabelsModel
        from transforms.images import decode_image

        self.model = CustomLabelsModel.load(model_uri, s3, intra_op_threads=os.cpu_count() or 1)
        self.images = []
        for path in paths:
            with open(path, "rb") as stream:
                self.images.append(decode_image(stream.read()))

    def measure(self, batch_size: int) -> Outcome:
        predict = self.model.detect_custom_labels
        predict(self.images[:batch_size])  # warm-up
        name = f"bound: detect_custom_labels, batch {batch_size}"
        return measure_batches(name, predict, self.images, batch_size)


def _server_training(client, project: str, run: TrainingRun, spec) -> dict[str, Any]:
    """What DescribeProjectVersions and the model's spec say of the version's training."""
    (version,) = client.describe_project_versions(ProjectArn=project, VersionNames=[_VERSION])[
        "ProjectVersionDescriptions"
    ]
    return {
        "name": f"{run.name}, through CreateProjectVersion",
        "task": run.task,
        "train_images": run.train_images,
        "test_images": run.test_images,
        "Status": version["Status"],
        "F1Score": version.get("EvaluationResult", {}).get("F1Score"),
        "BillableTrainingTimeInSeconds": version.get("BillableTrainingTimeInSeconds"),
        **dict(spec.training),
    }


def _latency_rounds(
    args, server: Server, arn: str, bound: _Bound, paths: Sequence[str]
) -> dict[str, list[Outcome]]:
    """``--rounds`` rounds of the bound at batch 1 and ``--batch_size``, 1 client and
    ``--clients`` clients, one after the other, so that each ratio compares measurements
    seconds apart on a machine whose load changes."""
    serving = server.httpd.api.serving

    def served(plan: list[list[str]], name: str) -> Outcome:
        outcome = server.measure(
            plan,
            operation=DETECT_CUSTOM_LABELS,
            params={"ProjectVersionArn": arn},
            stats=lambda: serving.replica(arn).stats,
        )
        return replace(outcome, name=name)

    one, many = "DetectCustomLabels, 1 client", f"DetectCustomLabels, {args.clients} clients"
    steps: dict[str, Callable[[], Outcome]] = {
        "bound 1": lambda: bound.measure(1),
        f"bound {args.batch_size}": lambda: bound.measure(args.batch_size),
        "1 client": lambda: served(client_shares(paths, 1), one),
        f"{args.clients} clients": lambda: served(client_shares(paths, args.clients), many),
    }
    rounds: dict[str, list[Outcome]] = {name: [] for name in steps}
    for number in range(args.rounds):
        print(f"Latency round {number + 1} of {args.rounds} ({len(paths)} images) ...", flush=True)
        for name, step in steps.items():
            rounds[name].append(step())
    return rounds


def _measure_latency(args, workdir: str, run: TrainingRun) -> Latency:
    """The run's detection set put in a moto S3 server, trained again through the API server,
    started on one inference unit; then the rounds of the bound and the clients."""
    from bench.run import _start_s3_server
    from model.custom_labels_model import CustomLabelsModel
    from storage.settings import S3Settings
    from training.custom_labels_samples import upload

    moto, s3_endpoint = _start_s3_server()
    server = None
    try:
        s3 = _s3_client(s3_endpoint)
        for bucket in (_IN_BUCKET, _OUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        uploaded = upload(run.sample_set, s3, _IN_BUCKET, "detection")
        flags = [
            # The moderation model loads at start-up; the lightest keeps it out of the way.
            "--components=open_nsfw",
            "--backbone=none",
            f"--s3_endpoint_url={s3_endpoint}",
            f"--kms_endpoint_url={s3_endpoint}",
            f"--detect_batch_size={args.batch_size}",
        ]
        name = f"custom-labels (batch {args.batch_size}, defaults)"
        server = Server(workdir, name, flags)
        server.wait_for_model()
        client = rekognition_client(server.endpoint)
        print(f"Training the {run.name} set again through CreateProjectVersion ...", flush=True)
        project, arn = _train_through_server(client, uploaded, _VERSION)
        model_uri = server.httpd.api.projects.get_version(arn).model_uri
        s3_settings = S3Settings(endpoint_url=s3_endpoint, region_name=_REGION)
        spec = CustomLabelsModel.load(model_uri, s3_settings).spec
        server_training = _server_training(client, project, run, spec)
        print(
            f"  {server_training['Status']}, F1 {server_training['F1Score']}, billable "
            f"{server_training['BillableTrainingTimeInSeconds']} s",
            flush=True,
        )

        print("StartProjectVersion (MinInferenceUnits=1) ...", flush=True)
        started = time.perf_counter()
        client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
        client.get_waiter("project_version_running").wait(
            ProjectArn=project, VersionNames=[_VERSION], WaiterConfig=_WAIT_RUNNING
        )
        start_seconds = time.perf_counter() - started

        paths = _test_images(run.sample_set)
        rounds = _latency_rounds(args, server, arn, _Bound(model_uri, s3_settings, paths), paths)
        client.stop_project_version(ProjectVersionArn=arn)
        registry = os.path.join(workdir, name.split()[0] + ".sqlite")  # as Server names it
        commands = {
            "server": "bench.detect_load.Server, in this process: "
            + _command("python", "-m", "service.server", "--port=0", f"--registry={registry}",
                       "--allowed_locations=*", "--no_console", f"--s3_region_name={_REGION}",
                       *flags),
            "calls": [
                "s3 CreateBucket, PutObject (training.custom_labels_samples.upload)",
                "CreateProject(ProjectName='bench-detection')",
                f"CreateProjectVersion(VersionName='{_VERSION}', TrainingData and TestingData: "
                "the uploaded train and test manifests)",
                "waiter project_version_training_completed",
                "StartProjectVersion(MinInferenceUnits=1)",
                "waiter project_version_running",
                "DetectCustomLabels(ProjectVersionArn, Image={'Bytes': ...}) per test image",
                "StopProjectVersion",
            ],
        }  # fmt: skip
        return Latency(arn, model_uri, len(paths), start_seconds, server_training, rounds, commands)
    finally:
        if server is not None:
            server.close()
        moto.stop()


def _seeds(args) -> list[int]:
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    if not seeds:
        raise SystemExit("error: --seeds names no seed")
    return seeds[:1] if args.quick else seeds


def _outcome_json(rounds: Sequence[Outcome]) -> dict[str, Any]:
    whole = combined(rounds)
    times = np.array(whole.latencies) * 1000
    document: dict[str, Any] = {
        "clients": whole.clients,
        "calls": whole.answered + sum(whole.errors.values()),
        "answered": whole.answered,
        "errors": dict(whole.errors),
        "seconds": whole.seconds,
        "images_per_sec": whole.images_per_sec,
        "images_per_sec_by_round": [o.images_per_sec for o in rounds],
        "ms_per_image": 1000 / whole.images_per_sec if whole.answered else None,
        "mean_batch": whole.images_in_batches / whole.batches if whole.batches else None,
        "cpu_ms_per_image": 1000 * whole.cpu_seconds / whole.answered if whole.answered else None,
    }
    if len(times):
        document.update(
            p50_ms=float(np.percentile(times, 50)),
            p99_ms=float(np.percentile(times, 99)),
            mean_ms=float(times.mean()),
            max_ms=float(times.max()),
        )
    return document


# --- the report ------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_quality(runs: Sequence[TrainingRun], means: Sequence[Mapping[str, Any]]) -> None:
    print(
        "Quality on the held-out test images (F1, precision and recall at each label's assumed "
        "threshold, chosen on those test images as Custom Labels does; detection at IoU 0.5)"
    )
    header = ("set", "seed", "train", "test", "F1", "prec", "recall", "mAP@0.5", "AR")
    widths = (42, 6, 6, 5, 7, 7, 7, 8, 7)

    def row(cells) -> str:
        first, *rest = cells
        return f"{first:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:]))

    print(row(header))
    for mean in means:
        group = [
            r
            for r in runs
            if r.quality and (r.task, r.unseen_drawings) == (mean["task"], mean["unseen_drawings"])
        ]
        title = mean["task"] + (" (unseen drawings, harder)" if mean["unseen_drawings"] else "")
        for run in group:
            e = run.evaluation
            print(
                row(
                    (title, run.seed, run.train_images, run.test_images, _f(e["F1Score"]),
                     _f(e["Precision"]), _f(e["Recall"]), _f(e.get("AveragePrecision")),
                     _f(e.get("AverageRecall")))
                )
            )  # fmt: skip
        if len(group) > 1:
            print(
                row(
                    (title, "mean", "", "", _f(mean["F1Score"]), _f(mean["Precision"]),
                     _f(mean["Recall"]), _f(mean.get("AveragePrecision")),
                     _f(mean.get("AverageRecall")))
                )
            )  # fmt: skip
    print()
    print("Per label: F1 at the assumed threshold / average precision (detection: AP@0.5)")
    for mean in means:
        group = [
            r
            for r in runs
            if r.quality and (r.task, r.unseen_drawings) == (mean["task"], mean["unseen_drawings"])
        ]
        title = mean["task"] + (", unseen drawings" if mean["unseen_drawings"] else "")
        columns = [f"seed {run.seed}" for run in group] + (["mean"] if len(group) > 1 else [])
        print(f"{title:<42}" + "".join(f"{c:>15}" for c in columns))
        for label, figures in mean["per_label"].items():
            cells = [
                f"{_f(run.to_json()['per_label'][label]['F1Score'])} / "
                f"{_f(run.to_json()['per_label'][label]['AveragePrecision'])}"
                for run in group
            ]
            if len(group) > 1:
                cells.append(f"{_f(figures['F1Score'])} / {_f(figures['AveragePrecision'])}")
            print(f"  {label:<40}" + "".join(f"{c:>15}" for c in cells))
    print()


def _print_training(
    runs: Sequence[TrainingRun], server: Mapping[str, Any] | None, tensorflow_import: float
) -> None:
    cores = _cores()
    print(
        f"Training time on this machine ({cores} cores): the backbone's features of the training "
        "images and their mirrors, fitting the head, fit_model in all, the whole training"
    )
    widths = (58, 7, 11, 8, 12, 10)

    def row(cells) -> str:
        first, *rest = cells
        return f"{first:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:]))

    print(row(("training", "images", "features s", "fit s", "fit_model s", "whole s")))
    for run in runs:
        t = run.training
        print(
            row(
                (run.name, run.train_images, _f(t["FeatureSeconds"], 1), _f(t["FitSeconds"], 1),
                 _f(t["TrainingSeconds"], 1), _f(run.train_seconds, 1))
            )
        )  # fmt: skip
    if server:
        print(
            row(
                (server["name"] + " *", server["train_images"],
                 _f(server.get("FeatureSeconds"), 1), _f(server.get("FitSeconds"), 1),
                 _f(server.get("TrainingSeconds"), 1),
                 server.get("BillableTrainingTimeInSeconds", "-"))
            )
        )  # fmt: skip
        print(
            "* its whole time is BillableTrainingTimeInSeconds: the training process from its "
            "start, imports included"
        )
    print(
        f"TensorFlow's import, {tensorflow_import:.1f} s here, came before the trainings in "
        "this process; a training process of its own pays it (in its fit s)"
    )
    print()


def _print_latency(latency: Latency, args) -> dict[str, Any]:
    """Prints the scenarios and the ratios; returns the ratios."""
    rounds = latency.rounds
    many = f"{args.clients} clients"
    print(
        f"DetectCustomLabels through the API server: {latency.images} test images of the "
        f"detection set as Image.Bytes, {args.rounds} round(s), 1 inference unit "
        f"(--detect_batch_size={args.batch_size}); StartProjectVersion -> RUNNING "
        f"{latency.start_seconds:.1f} s (waiter polling every {_WAIT_RUNNING['Delay']} s)"
    )
    print_table([combined(outcomes) for outcomes in rounds.values()])
    print()
    bound_1, bound_n = rounds["bound 1"], rounds[f"bound {args.batch_size}"]
    print_ratio("1 client / bound, batch 1", rounds["1 client"], bound_1)
    print_ratio(f"{many} / bound, batch {args.batch_size}", rounds[many], bound_n)
    print_ratio(f"{many} / 1 client", rounds[many], rounds["1 client"])
    one = combined(rounds["1 client"])
    bound_ms = 1000 / combined(bound_1).images_per_sec
    p50 = float(np.median(one.latencies)) * 1000 if one.latencies else float("nan")
    print(
        f"1 client p50 {p50:.1f} ms against the bound's {bound_ms:.1f} ms an image at batch 1: "
        f"{p50 - bound_ms:.1f} ms for the client, HTTP, SigV4, decoding and the queue"
    )
    print()
    return {
        "1 client / bound batch 1": ratios(rounds["1 client"], bound_1),
        f"{many} / bound batch {args.batch_size}": ratios(rounds[many], bound_n),
        f"{many} / 1 client": ratios(rounds[many], rounds["1 client"]),
        "1 client p50 ms - bound ms per image at batch 1": p50 - bound_ms,
    }


def _cores() -> int:
    from model.handler import usable_cores

    return usable_cores()


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    seeds = _seeds(args)
    sizes = QUICK if args.quick else FULL
    args.rounds = args.rounds or (1 if args.quick else 3)
    unseen = not (args.quick or args.skip_unseen)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = _REGION
    os.environ["BEAM_MODERATION_ACCESS_KEYS"] = f"{KEY_ID}:{SECRET}"

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    output = args.output or os.path.join(workdir, "custom-labels.json")
    began, began_at, load_before = time.perf_counter(), datetime.datetime.now(), _load()

    from model.tensorflow_env import import_tensorflow

    # Imported once, first, so that no training here counts it (the server's training process,
    # a fresh one, does count it).
    started = time.perf_counter()
    import_tensorflow()
    tensorflow_import = time.perf_counter() - started
    runs: list[TrainingRun] = []
    for unseen_drawings in (False, True) if unseen else (False,):
        for seed in seeds:
            runs.append(
                _train_run(
                    workdir, CLASSIFICATION, seed, unseen=unseen_drawings, size=sizes.per_label
                )
            )
            runs.append(
                _train_run(
                    workdir,
                    DETECTION,
                    seed,
                    unseen=unseen_drawings,
                    size=sizes.detection_images,
                )
            )
    if sizes.timing_per_label:
        runs.append(
            _train_run(
                workdir,
                CLASSIFICATION,
                seeds[0],
                unseen=False,
                size=sizes.timing_per_label,
                quality=False,
            )
        )
    served = next(run for run in runs if run.task == DETECTION and not run.unseen_drawings)
    latency = _measure_latency(args, workdir, served)

    means = _means(runs)
    print()
    print(
        f"Custom Labels benchmark: {_cores()} cores (usable), load average {load_before} at the "
        f"start and {_load()} at the end (a shared machine: other work may slow any figure)"
    )
    print()
    _print_quality(runs, means)
    _print_training(runs, latency.server_training, tensorflow_import)
    latency_ratios = _print_latency(latency, args)
    errors = sum(o.other_errors for outcomes in latency.rounds.values() for o in outcomes)
    throttled = sum(
        o.errors.get("ThrottlingException", 0)
        for outcomes in latency.rounds.values()
        for o in outcomes
    )
    print(f"DetectCustomLabels calls that failed: {errors + throttled}")

    report = {
        "benchmark": "bench.custom_labels",
        "quick": args.quick,
        "started": began_at.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 1),
        "machine": {
            "usable_cores": _cores(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": load_before,
            "load_average_end": _load(),
            "note": "a shared machine: other work may have slowed any figure",
        },
        "settings": {
            "seeds": seeds,
            "classification_per_label": sizes.per_label,
            "detection_images": sizes.detection_images,
            "timing_classification_per_label": sizes.timing_per_label,
            "unseen_drawings": unseen,
            "rounds": args.rounds,
            "clients": args.clients,
            "batch_size": args.batch_size,
        },
        "quality": {
            "runs": [run.to_json() for run in runs if run.quality],
            "means": means,
        },
        "training_time": [
            {
                "name": run.name,
                "task": run.task,
                "train_images": run.train_images,
                "test_images": run.test_images,
                **run.training,
                "TrainCallSeconds": round(run.train_seconds, 3),
                **({} if run.quality else {"F1Score": run.evaluation["F1Score"]}),
            }
            for run in runs
        ]
        + [latency.server_training],
        "latency": {
            "version_arn": latency.version_arn,
            "model_uri": latency.model_uri,
            "images": latency.images,
            "rounds": args.rounds,
            "inference_units": 1,
            "start_seconds": latency.start_seconds,
            "scenarios": {
                outcomes[0].name: _outcome_json(outcomes) for outcomes in latency.rounds.values()
            },
            "ratios": latency_ratios,
            "failed_calls": errors + throttled,
        },
        "tensorflow_import_seconds": round(tensorflow_import, 3),
        "commands": {
            "benchmark": _command("python", "-m", "bench.custom_labels", *argv),
            "runs": {run.name: run.commands for run in runs},
            "latency": latency.commands,
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2, default=_jsonable)
    print(f"The report: {output}")
    return 1 if errors + throttled else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.custom_labels --quick``: it trains, serves and measures, and its report has
every part (not what the figures are)."""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import pytest

from bench.custom_labels import QUICK

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick benchmark run once: its standard output and its JSON report."""
    folder = tmp_path_factory.mktemp("bench-custom-labels")
    output = folder / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.custom_labels",
            "--quick",
            f"--workdir={folder / 'work'}",
            f"--output={output}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(output.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_report_names_the_machine_and_the_commands(quick_run):
    _, report = quick_run
    assert report["quick"] is True
    assert report["machine"]["usable_cores"] >= 1
    assert {"cpu_count", "load_average_start", "load_average_end"} <= set(report["machine"])
    commands = report["commands"]
    assert commands["benchmark"].startswith("python -m bench.custom_labels --quick")
    for run in commands["runs"].values():
        assert run["samples"].startswith("python -m training.custom_labels_samples")
        assert run["training"].startswith("python -m training.train_custom_labels")
    assert "python -m service.server" in commands["latency"]["server"]
    assert report["settings"]["seeds"] == [0]


@pytest.mark.slow
def test_the_report_has_the_quality_of_both_sets(quick_run):
    _, report = quick_run
    runs = {run["task"]: run for run in report["quality"]["runs"]}
    assert set(runs) == {"classification", "detection"}
    for task, run in runs.items():
        assert not run["unseen_drawings"]
        for name in ("F1Score", "Precision", "Recall"):
            assert _number(run[name]), (task, name)
        assert set(run["per_label"]) == set(run["labels"])
        for row in run["per_label"].values():
            assert _number(row["F1Score"]) and _number(row["AveragePrecision"])
        assert {"FeatureSeconds", "FitSeconds", "TrainingSeconds"} <= set(run["training"])
    assert runs["classification"]["train_images"] + runs["classification"]["test_images"] == (
        4 * QUICK.per_label
    )
    assert len(runs["classification"]["labels"]) == 4
    assert "ConfusionMatrix" in runs["classification"]
    detection = runs["detection"]
    assert detection["train_images"] + detection["test_images"] == QUICK.detection_images
    assert _number(detection["AveragePrecision"]) and _number(detection["AverageRecall"])
    means = report["quality"]["means"]
    assert [(m["task"], m["seeds"]) for m in means] == [
        ("classification", [0]),
        ("detection", [0]),
    ]


@pytest.mark.slow
def test_the_report_has_the_training_times(quick_run):
    _, report = quick_run
    times = report["training_time"]
    assert [entry["task"] for entry in times[:-1]] == ["classification", "detection"]
    for entry in times:
        for name in ("FeatureSeconds", "FitSeconds", "TrainingSeconds"):
            assert _number(entry[name]), (entry["name"], name)
    server = times[-1]
    assert "CreateProjectVersion" in server["name"]
    assert server["Status"] == "TRAINING_COMPLETED"
    assert _number(server["BillableTrainingTimeInSeconds"])
    assert _number(report["tensorflow_import_seconds"])


@pytest.mark.slow
def test_the_report_has_the_latency_through_the_server_and_the_bound(quick_run):
    stdout, report = quick_run
    latency = report["latency"]
    assert latency["version_arn"].startswith("arn:aws:rekognition:")
    assert latency["inference_units"] == 1 and latency["failed_calls"] == 0
    assert _number(latency["start_seconds"])
    scenarios = latency["scenarios"]
    assert list(scenarios) == [
        "bound: detect_custom_labels, batch 1",
        "bound: detect_custom_labels, batch 16",
        "DetectCustomLabels, 1 client",
        "DetectCustomLabels, 8 clients",
    ]
    for name, scenario in scenarios.items():
        assert scenario["answered"] == scenario["calls"] == latency["images"], name
        assert _number(scenario["images_per_sec"])
        if name.startswith("DetectCustomLabels"):
            assert _number(scenario["p50_ms"]) and _number(scenario["p99_ms"])
    assert [scenarios[name]["clients"] for name in scenarios][2:] == [1, 8]
    ratios = latency["ratios"]
    for name in ("1 client / bound batch 1", "8 clients / bound batch 16"):
        assert _number(ratios[name]["images_per_sec"]) and len(ratios[name]["rounds"]) == 1
    for heading in ("Quality on the held-out", "Training time", "DetectCustomLabels through"):
        assert heading in stdout

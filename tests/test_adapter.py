"""Adapters: custom labels, training rules and failures, the artifact, and the pipeline stage."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from model.adapter import ADAPTER_FILE, WEIGHTS_FILE, Adapter
from model.label_map import labels_from_evidence
from model.taxonomy import TaxonomyLabel, ancestors, custom_label
from tests.gesture_images import HAND_GESTURES, PARENT, gesture_dataset
from training.adapter_training import TrainingRequest, train
from training.examples import TrainingProblem, auto_split, custom_labels, read_examples
from training.ground_truth import GROUND_TRUTH_KEY
from training.label_selection import MIN_FALSE_NEGATIVES, MIN_FALSE_POSITIVES, choose_labels
from training.train_adapter import main

# --- Custom labels in the taxonomy ---------------------------------------------------------


def test_custom_labels_take_their_level_from_the_parent():
    assert custom_label("Brand Logos", "") == TaxonomyLabel("Brand Logos", 1, "")
    assert custom_label(HAND_GESTURES, PARENT) == TaxonomyLabel(HAND_GESTURES, 2, PARENT)
    assert custom_label("Flick", "Middle Finger").level == 3
    with pytest.raises(ValueError, match="level 4"):
        custom_label("Too Deep", "Pills")
    with pytest.raises(ValueError, match="not a taxonomy label"):
        custom_label("Orphan", "No Such Parent")
    with pytest.raises(ValueError, match="already a taxonomy label"):
        custom_label("Pills", "Products")


def test_a_custom_label_is_emitted_with_its_parents():
    custom = {HAND_GESTURES: custom_label(HAND_GESTURES, PARENT)}
    assert ancestors(HAND_GESTURES, custom) == [HAND_GESTURES, PARENT]
    labels = labels_from_evidence({HAND_GESTURES: 87.5, "Weapons": 10.0}, 50.0, custom)
    assert labels == [
        {"Confidence": 87.5, "Name": HAND_GESTURES, "ParentName": PARENT, "TaxonomyLevel": 2},
        {"Confidence": 87.5, "Name": PARENT, "ParentName": "", "TaxonomyLevel": 1},
    ]


def test_custom_labels_from_a_manifest_resolve_parents_first():
    resolved = custom_labels({"Flick": "Finger Signs", "Finger Signs": PARENT})
    assert resolved["Flick"] == TaxonomyLabel("Flick", 3, "Finger Signs")
    with pytest.raises(TrainingProblem, match="ParentName of Lost"):
        custom_labels({"Lost": "Nowhere"})


# --- Which labels are trained ----------------------------------------------------------------


def _counts(fp: int, fn: int, positives: int) -> dict[str, int]:
    return {
        "Positives": positives,
        "TruePositives": positives - fn,
        "FalsePositives": fp,
        "FalseNegatives": fn,
    }


def test_the_aws_minimum_of_verified_examples_per_label():
    counts = {
        "Alcohol": _counts(MIN_FALSE_POSITIVES, 0, 10),
        "Weapons": _counts(MIN_FALSE_POSITIVES - 1, MIN_FALSE_NEGATIVES - 1, 60),
        "Gambling": _counts(0, MIN_FALSE_NEGATIVES, 60),
        "Pills": _counts(0, MIN_FALSE_NEGATIVES, 100),  # every image: nothing to learn from
    }
    adapted, skipped = choose_labels(counts, images=100)
    assert adapted == ["Alcohol", "Gambling"]
    reasons = {row["Name"]: row["Reason"] for row in skipped}
    assert "19 false positives and 49 false negatives" in reasons["Weapons"]
    assert "at least 20 false positives or 50 false negatives" in reasons["Weapons"]
    assert "same answer" in reasons["Pills"]


def test_a_parent_with_its_childs_counts_follows_the_child():
    custom = {HAND_GESTURES: custom_label(HAND_GESTURES, PARENT)}
    counts = {HAND_GESTURES: _counts(0, 60, 60), PARENT: _counts(0, 60, 60)}
    adapted, skipped = choose_labels(counts, images=120, custom=custom)
    assert adapted == [HAND_GESTURES]
    assert skipped[0]["Name"] == PARENT and skipped[0]["Reason"] == f"follows {HAND_GESTURES}"


def _write_manifest(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def _truth(source_ref: str, *names: str) -> dict:
    labels = [
        {"Name": n, "ParentName": PARENT} if n == HAND_GESTURES else {"Name": n} for n in names
    ]
    return {
        "source-ref": source_ref,
        GROUND_TRUTH_KEY: {"ModerationLabels": labels},
    }


def test_the_automatic_split_is_80_20_and_stable(tmp_path):
    manifest = _write_manifest(tmp_path / "m.jsonl", [_truth(f"{i}.png") for i in range(500)])
    examples = read_examples([manifest], {})
    train_part, test_part = auto_split(examples)
    assert 0.15 < len(test_part) / len(examples) < 0.25
    again = auto_split(read_examples([manifest], {}))
    assert [e.line for e in again[1]] == [e.line for e in test_part]


# --- Failures that need no model ---------------------------------------------------------


def _run_main(tmp_path, *args: str) -> dict:
    result_file = tmp_path / "result.json"
    assert main([*args, "--output", str(tmp_path / "out"), "--result_file", str(result_file)]) == 0
    return json.loads(result_file.read_text())


def test_a_malformed_manifest_fails_training_with_the_line(tmp_path):
    train_manifest = _write_manifest(
        tmp_path / "train.jsonl", [_truth("a.png"), "{not json", _truth("b.png")]
    )
    result = _run_main(tmp_path, "--training_manifest", train_manifest, "--auto_split")
    assert result["Status"] == "TRAINING_FAILED"
    assert "line 2: not valid JSON" in result["StatusMessage"]
    assert not os.path.exists(tmp_path / "out")


def test_too_small_a_test_set_fails_training(tmp_path):
    train_manifest = _write_manifest(tmp_path / "t.jsonl", [_truth(f"{i}.png") for i in range(40)])
    test_manifest = _write_manifest(tmp_path / "s.jsonl", [_truth(f"{i}.png") for i in range(19)])
    result = _run_main(
        tmp_path, "--training_manifest", train_manifest, "--testing_manifest", test_manifest
    )
    assert result["Status"] == "TRAINING_FAILED"
    assert "The test set has 19 images; at least 20 are needed" in result["StatusMessage"]


def test_arguments_are_checked(tmp_path, capsys):
    assert main(["--training_manifest", "t.jsonl", "--output", str(tmp_path)]) == 2
    assert "--testing_manifest or --auto_split" in capsys.readouterr().err


# --- Training for real (slow: the base model runs) -----------------------------------------


@pytest.fixture(scope="module")
def gestures(tmp_path_factory):
    """Hand-gesture emoji (the adapter's label) and other emoji and photos, on disk:
    105 training lines (60 gestures) and 30 test lines (15 gestures)."""
    folder = tmp_path_factory.mktemp("gestures")
    items = gesture_dataset(75, 60, seed=1)
    positives = [item for item in items if item[2]]
    negatives = [item for item in items if not item[2]]
    splits = {
        "train": positives[:60] + negatives[:45],
        "test": positives[60:] + negatives[45:],
    }
    for split, rows in splits.items():
        lines = []
        for name, data, is_gesture in rows:
            (folder / name).write_bytes(data)
            lines.append(_truth(name, HAND_GESTURES) if is_gesture else _truth(name))
        _write_manifest(folder / f"{split}.jsonl", lines)
    return folder


@pytest.fixture(scope="module")
def base_model():
    from model.moderation_model import load_moderation_model

    return load_moderation_model()


@pytest.fixture(scope="module")
def trained(gestures, base_model, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("adapter"))
    request = TrainingRequest(
        training_manifests=[str(gestures / "train.jsonl")],
        testing_manifests=[str(gestures / "test.jsonl")],
        output=output,
        project_version_arn="arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1",
    )
    return train(request, model=base_model), output


@pytest.mark.slow
def test_an_adapter_learns_a_label_the_base_model_lacks(trained):
    result, output = trained
    assert result["Status"] == "TRAINING_COMPLETED"
    assert result["Labels"] == [HAND_GESTURES]
    summary = json.loads(open(result["Summary"]["Path"]).read())
    (row,) = summary["Labels"]
    assert row["Name"] == HAND_GESTURES and row["ParentName"] == PARENT and row["Custom"]
    assert row["BaseModel"]["F1Score"] == 0.0  # the base model has no such label
    assert row["Adapter"]["F1Score"] >= 0.8
    assert result["F1Score"] == pytest.approx(summary["Overall"]["Adapter"]["F1Score"], abs=1e-6)
    assert summary["TestingImages"] == 30 and summary["TrainingImages"] == 105
    assert summary["TrainingCounts"][HAND_GESTURES]["FalseNegatives"] == 60
    assert sorted(os.listdir(output)) == sorted(
        [ADAPTER_FILE, WEIGHTS_FILE, "evaluation-summary.json"]
    )


@pytest.mark.slow
def test_a_saved_adapter_loads_and_answers_the_same(trained, gestures, base_model):
    from transforms.images import decode_image

    result, output = trained
    adapter = Adapter.load(output)
    images = [decode_image((gestures / f"gesture-06{i}.png").read_bytes()) for i in range(3)]
    (response, *_rest) = base_model.predict(images, 50.0, adapter=adapter)
    names = [entry["Name"] for entry in response["ModerationLabels"]]
    assert names[:2] == [HAND_GESTURES, PARENT]
    assert response["ModerationModelVersion"] == base_model.version
    again = Adapter.load(output)
    assert again.fingerprint() == adapter.fingerprint()
    plain = base_model.predict(images, 50.0)
    assert all(HAND_GESTURES not in [e["Name"] for e in r["ModerationLabels"]] for r in plain)


@pytest.mark.slow
def test_too_few_verified_examples_fail_with_the_counts(gestures, base_model, tmp_path):
    # 40 gestures: 40 false negatives, under the 50 needed.
    lines = [json.loads(line) for line in (gestures / "train.jsonl").read_text().splitlines()]
    gesture_lines = [line for line in lines if line[GROUND_TRUTH_KEY]["ModerationLabels"]]
    other_lines = [line for line in lines if not line[GROUND_TRUTH_KEY]["ModerationLabels"]]
    for line in gesture_lines + other_lines:
        line["source-ref"] = str(gestures / line["source-ref"])
    manifest = _write_manifest(tmp_path / "few.jsonl", gesture_lines[:40] + other_lines)
    request = TrainingRequest(
        training_manifests=[manifest],
        testing_manifests=[str(gestures / "test.jsonl")],
        output=str(tmp_path / "out"),
    )
    with pytest.raises(TrainingProblem) as caught:
        train(request, model=base_model)
    message = str(caught.value)
    assert f"{HAND_GESTURES}: 0 false positives and 40 false negatives" in message
    assert "at least 20 false positives or 50 false negatives" in message
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_missing_images_fail_training_with_their_lines(gestures, base_model, tmp_path):
    lines = [_truth(str(gestures / f"gesture-{i:03d}.png"), HAND_GESTURES) for i in range(20)]
    lines += [_truth(str(tmp_path / "gone.png")), _truth(str(gestures / "other-000.png"))]
    manifest = _write_manifest(tmp_path / "m.jsonl", lines)
    request = TrainingRequest(
        training_manifests=[manifest],
        testing_manifests=[str(gestures / "test.jsonl")],
        output=str(tmp_path / "out"),
    )
    with pytest.raises(TrainingProblem, match=r"1 of 52 images could not be read: line 21 of"):
        train(request, model=base_model)


# --- The pipeline stage ------------------------------------------------------------------


@pytest.mark.slow
def test_two_adapters_share_one_run_of_the_base_model(trained, gestures):
    """Lines keyed to two adapters: one base-model RunInference, then each line's adapter."""
    from apache_beam.metrics.metric import MetricsFilter

    from model.handler import AdapterModelHandler, ModerationModelHandler
    from transforms.images import decode_image
    from transforms.moderation import ModerateImages
    from transforms.records import ManifestLine

    _result, output = trained
    names = ["gesture-060.png", "gesture-061.png", "photo-000.png", "photo-001.png"]
    lines = [
        (ManifestLine(i + 1, name), decode_image((gestures / name).read_bytes()))
        for i, name in enumerate(names)
    ]
    adapters = {
        "first": AdapterModelHandler(output, project_version="arn-first"),
        "second": AdapterModelHandler(output, project_version="arn-second"),
    }
    pipeline = beam.Pipeline(runner="DirectRunner")
    moderated = (
        pipeline
        | beam.Create(lines)
        | ModerateImages(
            ModerationModelHandler(analyses=True),
            adapters,
            adapter_for=lambda line: "first" if line.line_number % 2 else "second",
        )
    )
    echoed = moderated["results"] | beam.MapTuple(
        lambda line, response: (
            line.source_ref,
            response["ProjectVersion"],
            HAND_GESTURES in [entry["Name"] for entry in response["ModerationLabels"]],
        )
    )
    assert_that(
        echoed,
        equal_to(
            [
                ("gesture-060.png", "arn-first", True),
                ("gesture-061.png", "arn-second", True),
                ("photo-000.png", "arn-first", False),
                ("photo-001.png", "arn-second", False),
            ]
        ),
    )
    assert_that(moderated["invalid"], equal_to([]), label="NoErrors")
    outcome = pipeline.run()
    outcome.wait_until_finish()
    counters = outcome.metrics().query(MetricsFilter().with_name("num_inferences"))["counters"]
    by_namespace = {}
    for counter in counters:
        by_namespace[counter.key.metric.namespace] = (
            by_namespace.get(counter.key.metric.namespace, 0) + counter.committed
        )
    assert by_namespace["moderation"] == 4  # the base model ran once per image


@pytest.mark.slow
def test_the_pipeline_applies_an_adapter_and_echoes_its_arn(trained, gestures, tmp_path):
    from pipeline.run import run

    _result, output = trained
    manifest = _write_manifest(
        tmp_path / "manifest.jsonl",
        [{"source-ref": str(gestures / n)} for n in ("gesture-062.png", "photo-002.png")]
        + ["not json"],
    )
    run(
        [
            f"--manifest={manifest}",
            f"--output={tmp_path / 'out'}",
            f"--adapter={output}",
            "--runner=DirectRunner",
        ]
    )
    results = [
        json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    ]
    summary = json.loads((tmp_path / "out" / "manifest-summary.json").read_text())
    assert summary["statistics"] == {
        "total-json-lines": 3,
        "valid-json-lines": 2,
        "invalid-json-lines": 1,
    }
    by_ref = {os.path.basename(r["source-ref"]): r["detect-moderation-labels"] for r in results}
    arn = "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1"
    assert by_ref["gesture-062.png"]["ProjectVersion"] == arn
    assert by_ref["gesture-062.png"]["ModerationLabels"][0]["Name"] == HAND_GESTURES
    assert HAND_GESTURES not in [e["Name"] for e in by_ref["photo-002.png"]["ModerationLabels"]]


@pytest.mark.slow
def test_an_unreadable_adapter_fails_each_line_not_the_job(gestures, tmp_path):
    from pipeline.run import run

    manifest = _write_manifest(
        tmp_path / "manifest.jsonl", [{"source-ref": str(gestures / "photo-002.png")}]
    )
    run(
        [
            f"--manifest={manifest}",
            f"--output={tmp_path / 'out'}",
            f"--adapter={tmp_path / 'no-adapter-here'}",
            "--runner=DirectRunner",
        ]
    )
    summary = json.loads((tmp_path / "out" / "manifest-summary.json").read_text())
    assert summary["statistics"]["invalid-json-lines"] == 1
    (error,) = summary["errors"]
    assert error["code"] == "INFERENCE_FAILED"
    assert "does not hold a readable adapter" in error["message"]
    np.testing.assert_equal((tmp_path / "out" / "results.jsonl").read_text(), "")

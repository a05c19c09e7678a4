"""The evaluation harness: metrics on constructed cases, the model loop, the CLI end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import s3_args
from training.evaluate import main
from training.evaluation_text import format_text
from training.ground_truth import (
    GroundTruthLine,
    ManifestProblem,
    parse_ground_truth_line,
    read_ground_truth,
)
from training.metrics import Evaluation, LabelCounts, expand_labels
from training.scoring import evaluate
from transforms.records import ErrorCode, ImageProblem


def truth(number: int, labels=(), content_types=None, source_ref: str | None = None):
    return GroundTruthLine(
        number,
        source_ref or f"s3://b/{number}.jpg",
        tuple(labels),
        None if content_types is None else tuple(content_types),
    )


def response(labels=(), content_types=()) -> dict:
    """A DetectModerationLabels response from ``(name, confidence)`` pairs."""
    return {
        "ModerationLabels": [{"Name": n, "Confidence": c} for n, c in labels],
        "ModerationModelVersion": "test",
        "ContentTypes": [{"Name": n, "Confidence": c} for n, c in content_types],
    }


def row(report: dict, name: str, key: str = "labels") -> dict:
    (found,) = [r for r in report[key] if r["name"] == name]
    return found


def counts(entry: dict) -> tuple:
    keys = ("support", "predicted", "true_positives", "false_positives", "false_negatives")
    return tuple(entry[k] for k in keys)


# --- Pure metrics -----------------------------------------------------------------------------


def test_ground_truth_implies_ancestors():
    assert expand_labels(["Pills"]) == {"Pills", "Products", "Drugs & Tobacco"}
    assert expand_labels(["Gambling", "Weapons"]) == {"Gambling", "Weapons", "Violence"}
    assert expand_labels([]) == set()


@pytest.fixture
def mixed() -> dict:
    evaluation = Evaluation(min_confidence=50, model_version="v1")
    # Right at every level: a level-3 ground truth against the label and its parents.
    evaluation.add(
        truth(1, ["Pills"]),
        response([("Pills", 90.0), ("Products", 90.0), ("Drugs & Tobacco", 90.0)]),
    )
    # A false positive on a safe image.
    evaluation.add(truth(2), response([("Explicit", 80.0)]))
    # Right at level 1, missed at level 2.
    evaluation.add(truth(3, ["Explicit Nudity"]), response([("Explicit", 70.0)]))
    # A false negative.
    evaluation.add(truth(4, ["Alcohol"]), response())
    # Below MinConfidence: not a prediction at all.
    evaluation.add(truth(5), response([("Violence", 49.9), ("Weapons", 49.9)]))
    return evaluation.report()


def test_per_label_counts_and_ratios(mixed):
    assert [r["name"] for r in mixed["labels"]] == [  # taxonomy order
        "Explicit",
        "Explicit Nudity",
        "Drugs & Tobacco",
        "Products",
        "Pills",
        "Alcohol",
    ]
    explicit = row(mixed, "Explicit")
    assert counts(explicit) == (1, 2, 1, 1, 0)
    assert explicit["precision"] == 0.5
    assert explicit["recall"] == 1.0
    assert explicit["f1"] == pytest.approx(2 / 3)
    assert (explicit["level"], explicit["parent"]) == (1, "")

    nudity = row(mixed, "Explicit Nudity")
    assert counts(nudity) == (1, 0, 0, 0, 1)
    assert nudity["precision"] is None  # never predicted: 0/0 is not 0 nor 1
    assert nudity["recall"] == 0.0
    assert nudity["f1"] == 0.0
    assert (nudity["level"], nudity["parent"]) == (2, "Explicit")

    for name in ("Drugs & Tobacco", "Products", "Pills"):
        entry = row(mixed, name)
        assert counts(entry) == (1, 1, 1, 0, 0), name
        assert (entry["precision"], entry["recall"], entry["f1"]) == (1.0, 1.0, 1.0)

    assert counts(row(mixed, "Alcohol")) == (1, 0, 0, 0, 1)


def test_micro_average(mixed):
    micro = mixed["micro_average"]
    assert counts(micro) == (6, 5, 4, 1, 2)
    assert micro["precision"] == pytest.approx(4 / 5)
    assert micro["recall"] == pytest.approx(4 / 6)
    assert micro["f1"] == pytest.approx(8 / 11)  # 2PR / (P + R)


def test_false_positive_report(mixed):
    assert mixed["false_positives"] == [
        {
            "line_number": 2,
            "source-ref": "s3://b/2.jpg",
            "ground_truth": [],
            "labels": [{"Name": "Explicit", "Confidence": 80.0}],
        }
    ]
    assert mixed["images"] == 5
    assert mixed["failed_images"] == 0
    assert mixed["errors"] == []
    assert mixed["min_confidence"] == 50
    assert mixed["model_version"] == "v1"
    assert "content_types" not in mixed  # no line had the key


def test_only_predicted_label_has_no_recall():
    evaluation = Evaluation(min_confidence=50)
    evaluation.add(truth(1), response([("Gambling", 99.0)]))
    gambling = row(evaluation.report(), "Gambling")
    assert counts(gambling) == (0, 1, 0, 1, 0)
    assert gambling["precision"] == 0.0
    assert gambling["recall"] is None
    assert gambling["f1"] == 0.0


def test_empty_evaluation_has_null_ratios():
    report = Evaluation().report()
    assert report["labels"] == []
    assert report["micro_average"] == {
        "support": 0,
        "predicted": 0,
        "true_positives": 0,
        "false_positives": 0,
        "false_negatives": 0,
        "precision": None,
        "recall": None,
        "f1": None,
    }
    text = format_text(report)
    assert "No moderation label" in text


def test_all_safe_and_all_right_is_perfect():
    evaluation = Evaluation()
    evaluation.add(truth(1), response())
    evaluation.add(truth(2, ["Gambling"]), response([("Gambling", 60.0)]))
    report = evaluation.report()
    micro = report["micro_average"]
    assert counts(micro) == (1, 1, 1, 0, 0)
    assert (micro["precision"], micro["recall"], micro["f1"]) == (1.0, 1.0, 1.0)
    assert report["false_positives"] == []


def test_content_types_scored_when_a_line_has_the_key():
    evaluation = Evaluation(min_confidence=50)
    evaluation.add(truth(1, content_types=["Animated"]), response(content_types=[("Animated", 90)]))
    # Without the key the line means "no content type" once any line has it.
    evaluation.add(truth(2), response(content_types=[("Illustrated", 70)]))
    evaluation.add(truth(3, content_types=["Illustrated"]), response())
    report = evaluation.report()
    assert [r["name"] for r in report["content_types"]] == ["Animated", "Illustrated"]
    assert counts(row(report, "Animated", "content_types")) == (1, 1, 1, 0, 0)
    illustrated = row(report, "Illustrated", "content_types")
    assert counts(illustrated) == (1, 1, 0, 1, 1)
    assert (illustrated["precision"], illustrated["recall"]) == (0.0, 0.0)
    assert report["labels"] == []  # content types stay out of the label rows and micro average
    assert report["false_positives"] == [
        {
            "line_number": 2,
            "source-ref": "s3://b/2.jpg",
            "ground_truth": [],
            "labels": [],
            "content_types": [{"Name": "Illustrated", "Confidence": 70}],
        }
    ]


def test_content_types_ignored_when_no_line_has_the_key():
    evaluation = Evaluation(min_confidence=50)
    evaluation.add(truth(1), response(content_types=[("Animated", 90)]))
    report = evaluation.report()
    assert "content_types" not in report
    assert report["false_positives"] == []


def test_errors_are_reported_not_counted():
    evaluation = Evaluation()
    evaluation.add(truth(1), response())
    evaluation.add_error(truth(2, ["Alcohol"]), ErrorCode.IMAGE_NOT_FOUND, "gone")
    report = evaluation.report()
    assert (report["images"], report["failed_images"]) == (1, 1)
    assert report["labels"] == []  # the failed image's Alcohol is not a false negative
    assert report["errors"] == [
        {
            "line_number": 2,
            "source-ref": "s3://b/2.jpg",
            "code": "IMAGE_NOT_FOUND",
            "message": "gone",
        }
    ]
    text = format_text(report)
    assert "IMAGE_NOT_FOUND: gone" in text


def test_label_counts_order_unknown_names_last():
    label_counts = LabelCounts(["b", "a"])
    label_counts.add({"a", "z"}, {"b"})
    assert label_counts.names() == ["b", "a", "z"]


def test_text_report_is_aligned(mixed):
    text = format_text(mixed)
    table = text.split("\n\n")[1].splitlines()
    assert table[0].split() == [
        "Label",
        "Support",
        "Predicted",
        "TP",
        "FP",
        "FN",
        "Precision",
        "Recall",
        "F1",
    ]
    assert len({len(line) for line in table}) == 1  # every column right-aligned to the end
    assert "  Explicit Nudity" in text  # indented under its parent
    nudity = next(line for line in table if "Explicit Nudity" in line)
    assert nudity.split()[-3:] == ["-", "0.000", "0.000"]
    assert table[-1].startswith("Micro average")
    assert "line 2: s3://b/2.jpg" in text
    assert "Explicit (80.0)" in text


# --- Manifest lines ---------------------------------------------------------------------------


def gt_line(source_ref: str, labels=(), **extra) -> str:
    ground_truth = {"ModerationLabels": [{"Name": name} for name in labels], **extra}
    return json.dumps({"source-ref": source_ref, "content-moderation-groundtruth": ground_truth})


def test_parse_line():
    line = parse_ground_truth_line(4, gt_line("s3://b/1.jpg", ["Alcohol"]).encode())
    assert line == GroundTruthLine(4, "s3://b/1.jpg", ("Alcohol",), None)
    line = parse_ground_truth_line(
        5, gt_line("s3://b/1.jpg", ContentTypes=[{"Name": "Animated"}]).encode()
    )
    assert line == GroundTruthLine(5, "s3://b/1.jpg", (), ("Animated",))


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'{"source-ref": ', "line 7: not valid JSON"),
        (b"[1]", "line 7: a JSON list, not an object"),
        (b'{"content-moderation-groundtruth": {"ModerationLabels": []}}', '"source-ref"'),
        (b'{"source-ref": "a.jpg"}', '"content-moderation-groundtruth" is missing'),
        (b'{"source-ref": "a.jpg", "content-moderation-groundtruth": {}}', "ModerationLabels"),
        (gt_line("a.jpg", ["Beer"]).encode(), "line 7: unknown ModerationLabels name 'Beer'"),
        (
            gt_line("a.jpg", ContentTypes=[{"Name": "Cartoon"}]).encode(),
            "line 7: unknown ContentTypes name 'Cartoon'",
        ),
        (
            b'{"source-ref": "a.jpg", "content-moderation-groundtruth": '
            b'{"ModerationLabels": ["Alcohol"]}}',
            '"Name"',
        ),
        (b"\xff\xfe", "line 7: not valid UTF-8"),
        (None, "line 7: longer than"),
    ],
)
def test_bad_lines_name_the_line(raw, expected):
    with pytest.raises(ManifestProblem, match="line 7") as caught:
        parse_ground_truth_line(7, raw)
    assert expected in str(caught.value)


def test_relative_source_refs_resolve_against_the_manifest_folder(tmp_path):
    manifest = tmp_path / "sub" / "gt.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(
        "\n".join(
            [
                gt_line("images/a.jpg"),
                "",
                gt_line("/abs/b.jpg"),
                gt_line("s3://bucket/c.jpg"),
            ]
        )
        + "\n"
    )
    lines = list(read_ground_truth(str(manifest)))
    assert [(line.line_number, line.source_ref) for line in lines] == [
        (1, str(tmp_path / "sub" / "images" / "a.jpg")),
        (3, "/abs/b.jpg"),
        (4, "s3://bucket/c.jpg"),
    ]


# --- The model loop, with a stand-in model ------------------------------------------------------


class FakeModel:
    """Flags every image whose top-left pixel is 255 as Gambling; fails on a batch with 7."""

    version = "fake-1"

    def __init__(self):
        self.batch_sizes: list[int] = []

    def predict(self, images, min_confidence):
        self.batch_sizes.append(len(images))
        if any(image[0, 0, 0] == 7 for image in images):
            raise RuntimeError("boom")
        return [response([("Gambling", 99.0)] if image[0, 0, 0] == 255 else []) for image in images]


def test_evaluate_batches_and_reports_failures():
    pixels = {f"s3://b/{i}.jpg": 255 if i % 3 == 0 else 0 for i in range(1, 11)}

    def load_image(path: str) -> np.ndarray:
        if path.endswith("/4.jpg"):
            raise ImageProblem(ErrorCode.IMAGE_NOT_FOUND, "no such image")
        if path.endswith("/5.jpg"):
            raise OSError("disk on fire")
        if path.endswith("/11.jpg"):
            return np.full((2, 2, 3), 7, np.uint8)
        return np.full((2, 2, 3), pixels[path], np.uint8)

    lines = [truth(i, ["Gambling"] if i in (3, 6, 10) else []) for i in range(1, 12)]
    model = FakeModel()
    evaluation = evaluate(
        iter(lines), model, Evaluation(50, model.version), batch_size=4, load_image=load_image
    )
    report = evaluation.report()
    # Batches: [1-4] minus 4, [5-8] minus 5, [9-11] fails as a whole.
    assert model.batch_sizes == [3, 3, 3]
    assert (report["images"], report["failed_images"]) == (6, 5)
    assert [(e["line_number"], e["code"]) for e in report["errors"]] == [
        (4, ErrorCode.IMAGE_NOT_FOUND),
        (5, ErrorCode.IMAGE_READ_FAILED),
        (9, ErrorCode.INFERENCE_FAILED),
        (10, ErrorCode.INFERENCE_FAILED),
        (11, ErrorCode.INFERENCE_FAILED),
    ]
    assert "disk on fire" in report["errors"][1]["message"]
    # Images 3 and 6 are right; 10 failed with its batch and is not a false negative.
    assert counts(row(report, "Gambling")) == (2, 2, 2, 0, 0)


# --- The command line ---------------------------------------------------------------------------


def write_manifest(path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_bad_json_line_exits_2_naming_the_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "gt.jsonl", [gt_line("a.jpg"), "{not json"])
    assert main(["--manifest", manifest]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "not valid JSON" in err


def test_unknown_label_exits_2(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "gt.jsonl", [gt_line("a.jpg", ["Pills", "Beer"])])
    assert main(["--manifest", manifest]) == 2
    assert "line 1: unknown ModerationLabels name 'Beer'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--manifest", "/no/such/gt.jsonl"], "does not exist"),
        (["--manifest", "{empty}"], "has no lines"),
        (["--manifest", "{good}", "--min_confidence", "101"], "--min_confidence"),
        (["--manifest", "{good}", "--batch_size", "0"], "--batch_size"),
        (["--manifest", "{good}", "--format", "xml"], "--format"),
        (["--manifest", "{good}", "--no_such_flag"], "unrecognized arguments"),
        ([], "--manifest"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    paths = {
        "{empty}": write_manifest(tmp_path / "empty.jsonl", [""]),
        "{good}": write_manifest(tmp_path / "good.jsonl", [gt_line("a.jpg")]),
    }
    assert main([paths.get(arg, arg) for arg in args]) == 2
    assert message in capsys.readouterr().err


def test_help_states_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # argparse would wrap "efficientnet-lite0" at the hyphen
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "Default: 50",
        "Default: text",
        "Default: auto",
        "Default: efficientnet-lite0",
        "ContentTypes",
        "--s3_endpoint_url",
    ):
        assert text in out


def test_s3_manifest_and_images_through_beams_s3_flags(
    s3, moto_server, sample_photos, monkeypatch, capsys
):
    """The manifest and its images on an S3-protocol server named by --s3_endpoint_url."""
    s3.create_bucket(Bucket="truth")
    for name in ("astronaut.jpg", "coffee.jpg"):
        with open(sample_photos[name], "rb") as f:
            s3.put_object(Bucket="truth", Key=f"set/images/{name}", Body=f.read())
    lines = [
        gt_line("images/astronaut.jpg"),  # relative to s3://truth/set/
        gt_line("s3://truth/set/images/coffee.jpg", ["Gambling"]),
        gt_line("s3://truth/set/images/missing.jpg"),
    ]
    s3.put_object(Bucket="truth", Key="set/gt.jsonl", Body=("\n".join(lines) + "\n").encode())
    loaded = []

    def load_model(args, s3):
        loaded.append((args.components, args.backbone, s3.endpoint_url))
        return FakeModel()

    monkeypatch.setattr("training.evaluate._load_model", load_model)
    argv = ["--manifest", "s3://truth/set/gt.jsonl", "--format", "json", *s3_args(moto_server)]
    assert main([*argv, "--components", "open_nsfw", "--backbone", "/models/b"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert loaded == [("open_nsfw", "/models/b", moto_server)]
    assert report["model_version"] == FakeModel.version
    assert (report["images"], report["failed_images"]) == (2, 1)
    assert [(r["name"], counts(r)) for r in report["labels"]] == [("Gambling", (1, 0, 0, 0, 1))]
    assert [(e["line_number"], e["source-ref"], e["code"]) for e in report["errors"]] == [
        (3, "s3://truth/set/images/missing.jpg", ErrorCode.IMAGE_NOT_FOUND)
    ]


@pytest.mark.slow
def test_end_to_end_on_benign_photos(tmp_path, capsys, sample_photos):
    images = tmp_path / "images"
    images.mkdir()
    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg"]
    for name in names:
        shutil.copy(sample_photos[name], images / name)
    lines = [gt_line(f"images/{name}") for name in names]  # relative to the manifest
    lines[2] = gt_line("images/coffee.jpg", ["Alcoholic Beverages"])  # a known false negative
    lines.append(gt_line(str(tmp_path / "missing.jpg")))
    manifest = write_manifest(tmp_path / "gt.jsonl", lines)

    assert main(["--manifest", manifest, "--format", "json", "--batch_size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert report["manifest"] == manifest
    assert report["min_confidence"] == 50.0
    assert "open_nsfw" in report["model_version"]
    assert (report["images"], report["failed_images"]) == (5, 1)
    # Benign photos: nothing predicted, so only the ground truth's label and its parent appear.
    assert [(r["name"], counts(r)) for r in report["labels"]] == [
        ("Alcohol", (1, 0, 0, 0, 1)),
        ("Alcoholic Beverages", (1, 0, 0, 0, 1)),
    ]
    beverages = report["labels"][1]
    assert (beverages["precision"], beverages["recall"], beverages["f1"]) == (None, 0.0, 0.0)
    micro = report["micro_average"]
    assert counts(micro) == (2, 0, 0, 0, 2)
    assert (micro["precision"], micro["recall"]) == (None, 0.0)
    assert "content_types" not in report
    assert report["false_positives"] == []
    assert report["errors"] == [
        {
            "line_number": 6,
            "source-ref": str(tmp_path / "missing.jpg"),
            "code": ErrorCode.IMAGE_NOT_FOUND,
            "message": f"The image does not exist: {tmp_path / 'missing.jpg'}",
        }
    ]

    assert main(["--manifest", manifest, "--components", "open_nsfw"]) == 0
    text = capsys.readouterr().out
    assert "5 evaluated, 1 failed" in text
    assert "  Alcoholic Beverages" in text
    assert "IMAGE_NOT_FOUND" in text

"""Verified predictions -> adapter ground truth: counts, ancestors, custom labels, errors, CLI."""

from __future__ import annotations

import json

import pytest

from model.taxonomy import TaxonomyLabel
from tests.conftest import parse_jsonl, s3_args
from training.custom_labels import declare_custom_labels, parse_custom_label
from training.ground_truth import GroundTruthLine, ground_truth_line, parse_ground_truth_line
from training.verification import main
from training.verification_report import GroundTruthEntry, InputError, build_ground_truth

CHAINS = {  # a prediction comes with its parents, as the model returns it
    "Pills": ["Pills", "Products", "Drugs & Tobacco"],
    "Alcoholic Beverages": ["Alcoholic Beverages", "Alcohol"],
    "Weapons": ["Weapons", "Violence"],
    "Gambling": ["Gambling"],
}


def result(source_ref: str, *predictions: tuple[str, float]) -> dict:
    """A results.jsonl line; each ``(name, confidence)`` brings its parents at that confidence."""
    labels = [
        {"Confidence": confidence, "Name": name}
        for label, confidence in predictions
        for name in CHAINS.get(label, [label])
    ]
    response = {"ModerationLabels": labels, "ModerationModelVersion": "t", "ContentTypes": []}
    return {"source-ref": source_ref, "detect-moderation-labels": response}


def verify(source_ref: str, **labels: bool) -> dict:
    return {"source-ref": source_ref, "labels": labels}


def counts(report, name: str) -> tuple[int, int, int]:
    (row,) = [r for r in report.rows() if r["name"] == name]
    return row["true_positives"], row["false_positives"], row["false_negatives"]


def truth(report) -> dict[str, tuple[str, ...]]:
    return {entry.source_ref: entry.labels for entry in report.ground_truth}


# --- Pure builder -----------------------------------------------------------------------------


def test_confirmed_rejected_and_added_labels():
    report = build_ground_truth(
        [
            result("1.jpg", ("Pills", 90)),
            result("2.jpg", ("Pills", 80)),
            result("3.jpg", ("Gambling", 60)),
            result("4.jpg"),
        ],
        [
            {"source-ref": "1.jpg", "labels": {"Pills": True}},  # confirmed explicitly
            verify("2.jpg"),  # {}: confirmed as predicted
            verify("3.jpg", Gambling=False),  # rejected
            verify("4.jpg", Gambling=True),  # added: the model missed it
        ],
    )
    assert report.ok and report.errors == []
    assert counts(report, "Pills") == (2, 0, 0)
    assert counts(report, "Drugs & Tobacco") == (2, 0, 0)
    assert counts(report, "Gambling") == (0, 1, 1)
    assert truth(report) == {
        "1.jpg": ("Pills",),
        "2.jpg": ("Pills",),
        "3.jpg": (),
        "4.jpg": ("Gambling",),
    }
    assert (report.images, report.images_reviewed, report.images_not_reviewed) == (4, 4, 0)


def test_an_unnamed_prediction_is_confirmed_and_the_threshold_decides_what_was_predicted():
    report = build_ground_truth(
        [result("1.jpg", ("Weapons", 70), ("Gambling", 30))],
        [verify("1.jpg", Gambling=True)],
        confidence_threshold=50,
    )
    assert counts(report, "Weapons") == (1, 0, 0)  # left unmarked: confirmed
    assert counts(report, "Gambling") == (0, 0, 1)  # 30 < 50: not predicted, so missed
    assert truth(report) == {"1.jpg": ("Weapons", "Gambling")}

    lower = build_ground_truth(
        [result("1.jpg", ("Weapons", 70), ("Gambling", 30))],
        [verify("1.jpg", Gambling=True)],
        confidence_threshold=30,  # at the threshold counts
    )
    assert counts(lower, "Gambling") == (1, 0, 0)


def test_a_present_child_implies_its_ancestors_and_the_ground_truth_keeps_the_deepest():
    report = build_ground_truth(
        [result("1.jpg", ("Alcoholic Beverages", 80)), result("2.jpg")],
        [
            verify("1.jpg", **{"Alcoholic Beverages": False, "Drinking": True}),
            verify("2.jpg", **{"Pills": True, "Drugs & Tobacco": True}),
        ],
    )
    assert report.ok, report.errors
    # Alcohol stays present through Drinking; Alcoholic Beverages was wrong.
    assert counts(report, "Alcohol") == (1, 0, 0)
    assert counts(report, "Alcoholic Beverages") == (0, 1, 0)
    assert counts(report, "Alcohol Use") == (0, 0, 1)
    assert counts(report, "Drinking") == (0, 0, 1)
    for name in ("Pills", "Products", "Drugs & Tobacco"):
        assert counts(report, name) == (0, 0, 1)
    assert truth(report) == {"1.jpg": ("Drinking",), "2.jpg": ("Pills",)}
    # Rows go depth first through the taxonomy.
    assert [row["name"] for row in report.rows()] == [
        "Drugs & Tobacco",
        "Products",
        "Pills",
        "Alcohol",
        "Alcohol Use",
        "Drinking",
        "Alcoholic Beverages",
    ]


def test_marking_a_child_absent_keeps_the_parent_and_a_label_only_marked_absent_is_listed():
    report = build_ground_truth(
        [result("1.jpg", ("Pills", 90))],
        [verify("1.jpg", Pills=False, Gambling=False)],
    )
    assert counts(report, "Pills") == (0, 1, 0)
    assert counts(report, "Products") == (1, 0, 0)
    assert counts(report, "Gambling") == (0, 0, 0)
    assert truth(report) == {"1.jpg": ("Products",)}


def test_an_absent_parent_with_a_present_child_is_an_error():
    report = build_ground_truth(
        [result("1.jpg", ("Pills", 90)), result("2.jpg")],
        [
            verify("1.jpg", **{"Drugs & Tobacco": False}),  # Pills left checked
            verify("2.jpg", **{"Alcohol": False, "Drinking": True}),
        ],
    )
    assert [(e.line_number, e.source_ref) for e in report.errors] == [(1, "1.jpg"), (2, "2.jpg")]
    assert "'Drugs & Tobacco' is marked absent but 'Pills' below it is predicted and not" in str(
        report.errors[0]
    )
    assert "'Alcohol' is marked absent but 'Drinking' below it is marked present" in str(
        report.errors[1]
    )
    assert report.ground_truth == [] and report.images_reviewed == 0


def test_unreviewed_images_and_duplicate_results_lines():
    report = build_ground_truth(
        [
            result("1.jpg", ("Gambling", 90)),
            result("1.jpg", ("Weapons", 90)),  # the same image twice: predictions merge
            result("2.jpg"),
            result("3.jpg", ("Pills", 90)),
        ],
        [verify("1.jpg", Weapons=False)],
    )
    assert (report.result_lines, report.images) == (4, 3)
    assert (report.images_reviewed, report.images_not_reviewed) == (1, 2)
    assert counts(report, "Gambling") == (1, 0, 0)  # the image counts once
    assert counts(report, "Weapons") == (0, 1, 0)
    assert "Pills" not in {row["name"] for row in report.rows()}  # not reviewed: not counted
    assert report.ground_truth == [GroundTruthEntry("1.jpg", ("Violence", "Gambling"))]


def test_lines_may_be_text_or_numbered():
    report = build_ground_truth(
        [(3, json.dumps(result("1.jpg", ("Gambling", 90))).encode())],
        [(7, '{"source-ref": "1.jpg", "labels": {}}'), (9, "{bad")],
    )
    assert report.ground_truth == [GroundTruthEntry("1.jpg", ("Gambling",))]
    assert [(e.file, e.line_number) for e in report.errors] == [("verifications", 9)]


@pytest.mark.parametrize(
    "fp, fn, meets", [(19, 49, False), (20, 0, True), (0, 50, True), (19, 50, True)]
)
def test_training_minimum(fp, fn, meets):
    results = [result(f"fp{i}.jpg", ("Gambling", 90)) for i in range(fp)]
    results += [result(f"fn{i}.jpg") for i in range(fn)]
    verifications = [verify(f"fp{i}.jpg", Gambling=False) for i in range(fp)]
    verifications += [verify(f"fn{i}.jpg", Gambling=True) for i in range(fn)]
    report = build_ground_truth(results, verifications)
    (row,) = report.rows()
    assert (row["false_positives"], row["false_negatives"]) == (fp, fn)
    assert row["meets_training_minimum"] is meets


# --- Custom labels ----------------------------------------------------------------------------


def test_custom_labels_with_parents_levels_and_parent_names():
    custom = {"Hand Gestures": "Rude Gestures", "Brand Logos": "", "Beer Logos": "Alcohol"}
    report = build_ground_truth(
        [result("1.jpg", ("Hand Gestures", 70)), result("2.jpg")],
        [verify("1.jpg"), verify("2.jpg", **{"Brand Logos": True, "Beer Logos": True})],
        custom_labels=custom,
    )
    assert report.ok, report.errors
    assert [(e.name, e.level, e.parent) for e in report.custom_labels.values()] == [
        ("Hand Gestures", 2, "Rude Gestures"),
        ("Brand Logos", 1, ""),
        ("Beer Logos", 2, "Alcohol"),
    ]
    assert counts(report, "Hand Gestures") == (1, 0, 0)
    assert counts(report, "Rude Gestures") == (1, 0, 0)
    assert counts(report, "Brand Logos") == (0, 0, 1)
    assert counts(report, "Alcohol") == (0, 0, 1)
    lines = parse_jsonl(report.ground_truth_jsonl())
    assert [line["content-moderation-groundtruth"]["ModerationLabels"] for line in lines] == [
        [{"Name": "Hand Gestures", "ParentName": "Rude Gestures"}],
        [
            {"Name": "Brand Logos", "ParentName": ""},
            {"Name": "Beer Logos", "ParentName": "Alcohol"},
        ],
    ]
    rows = {row["name"]: row for row in report.rows()}
    assert rows["Hand Gestures"]["custom"] and not rows["Rude Gestures"]["custom"]
    assert (rows["Hand Gestures"]["level"], rows["Hand Gestures"]["parent"]) == (
        2,
        "Rude Gestures",
    )


@pytest.mark.parametrize(
    "custom, message",
    [
        ({"Pill Shapes": "Pills"}, "level 4"),  # Pills is level 3
        ({"Blood": "Gore"}, "'Gore' of custom label 'Blood' is not a taxonomy label"),
        ({"Logos": "", "Beer Logos": "Logos"}, "'Logos' of custom label 'Beer Logos' is not a"),
        ({"Pills": "Products"}, "already a taxonomy label"),
        ({"": "Alcohol"}, "needs a name"),
    ],
)
def test_bad_custom_label_declarations(custom, message):
    with pytest.raises(ValueError, match=message):
        declare_custom_labels(custom)
    with pytest.raises(ValueError, match=message):
        build_ground_truth([], [], custom_labels=custom)


def test_declarations_accept_taxonomy_labels_and_parse_from_flags():
    declared = declare_custom_labels({"Logos": TaxonomyLabel("Logos", 1, "")})
    assert declared == {"Logos": TaxonomyLabel("Logos", 1, "")}
    assert parse_custom_label("Hand Gestures=Rude Gestures") == ("Hand Gestures", "Rude Gestures")
    assert parse_custom_label(" Brand Logos = ") == ("Brand Logos", "")
    with pytest.raises(ValueError, match="NAME=PARENT"):
        parse_custom_label("Brand Logos")


def test_the_ground_truth_reads_back_as_model_evaluate_reads_it():
    report = build_ground_truth(
        [result("s3://b/1.jpg", ("Pills", 90)), result("s3://b/2.jpg", ("Gambling", 90))],
        [verify("s3://b/1.jpg", Drinking=True), verify("s3://b/2.jpg", Gambling=False)],
    )
    lines = report.ground_truth_jsonl().splitlines()
    assert [parse_ground_truth_line(n, raw) for n, raw in enumerate(lines, start=1)] == [
        GroundTruthLine(1, "s3://b/1.jpg", ("Pills", "Drinking"), None),
        GroundTruthLine(2, "s3://b/2.jpg", (), None),
    ]


def test_ground_truth_line():
    assert json.loads(ground_truth_line("s3://b/1.jpg", [])) == {
        "source-ref": "s3://b/1.jpg",
        "content-moderation-groundtruth": {"ModerationLabels": []},
    }
    custom = declare_custom_labels({"Logos": ""})
    line = ground_truth_line("1.jpg", ["Alcohol", "Logos"], custom)
    assert json.loads(line)["content-moderation-groundtruth"]["ModerationLabels"] == [
        {"Name": "Alcohol"},
        {"Name": "Logos", "ParentName": ""},
    ]
    with pytest.raises(ValueError, match="--custom_label"):
        ground_truth_line("1.jpg", ["Logos"])


# --- Command line -----------------------------------------------------------------------------


def write_jsonl(path, lines) -> str:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return str(path)


@pytest.fixture
def files(tmp_path):
    """A results file of four images and a verifications file of three of them."""
    results = write_jsonl(
        tmp_path / "results.jsonl",
        [
            result("s3://b/1.jpg", ("Pills", 91.9)),
            result("s3://b/2.jpg", ("Alcoholic Beverages", 70)),
            result("s3://b/3.jpg"),
            result("s3://b/4.jpg"),
        ],
    )
    verifications = write_jsonl(
        tmp_path / "verifications.jsonl",
        [
            verify("s3://b/1.jpg"),
            "",  # blank lines are skipped but keep the line numbers physical
            verify("s3://b/2.jpg", **{"Alcoholic Beverages": False, "Hand Gestures": True}),
            verify("s3://b/3.jpg", Drinking=True),
        ],
    )
    return results, verifications, tmp_path / "gt.jsonl"


CUSTOM = ["--custom_label", "Hand Gestures=Rude Gestures"]


def test_text_output_and_ground_truth(files, capsys):
    results, verifications, output = files
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main([*argv, *CUSTOM]) == 0
    assert [
        line["content-moderation-groundtruth"] for line in parse_jsonl(output.read_bytes())
    ] == [
        {"ModerationLabels": [{"Name": "Pills"}]},
        # Alcohol was predicted and left unmarked: confirmed, beside the added Hand Gestures.
        {
            "ModerationLabels": [
                {"Name": "Alcohol"},
                {"Name": "Hand Gestures", "ParentName": "Rude Gestures"},
            ]
        },
        {"ModerationLabels": [{"Name": "Drinking"}]},
    ]
    out = capsys.readouterr().out
    assert f"Ground truth:         {output} (written)" in out
    assert "Images:               3 reviewed, 1 not reviewed" in out
    assert "Errors:               0 bad lines" in out
    table = out.split("\n\n")[1].splitlines()
    assert table == [
        "Label                     TP  FP  FN  Meets training minimum",
        "Drugs & Tobacco            1   0   0  no",
        "  Products                 1   0   0  no",
        "    Pills                  1   0   0  no",
        "Alcohol                    1   0   1  no",
        "  Alcohol Use              0   0   1  no",
        "    Drinking               0   0   1  no",
        "  Alcoholic Beverages      0   1   0  no",
        "Rude Gestures              0   0   1  no",
        "  Hand Gestures (custom)   0   0   1  no",
    ]
    assert "20 verified false positives or 50 verified false negatives" in out
    assert "test set of at least 20 images" in out


def test_json_output(files, capsys):
    results, verifications, output = files
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main([*argv, *CUSTOM, "--format", "json", "--confidence_threshold", "75"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] is True and report["output"] == str(output)
    assert report["confidence_threshold"] == 75
    assert report["custom_labels"] == [
        {"name": "Hand Gestures", "parent": "Rude Gestures", "level": 2}
    ]
    assert (report["images_reviewed"], report["images_not_reviewed"]) == (3, 1)
    assert (report["result_lines"], report["verification_lines"], report["errors"]) == (4, 3, [])
    assert report["training_minimum"] == {"false_positives": 20, "false_negatives": 50}
    assert report["test_set_minimum_images"] == 20
    rows = {row["name"]: row for row in report["labels"]}
    # At 75 the Alcoholic Beverages prediction (70) was not made: marking it absent is a TN.
    assert rows["Alcoholic Beverages"] == {
        "name": "Alcoholic Beverages",
        "level": 2,
        "parent": "Alcohol",
        "custom": False,
        "true_positives": 0,
        "false_positives": 0,
        "false_negatives": 0,
        "meets_training_minimum": False,
    }
    assert (rows["Alcohol"]["false_positives"], rows["Alcohol"]["false_negatives"]) == (0, 1)
    assert rows["Hand Gestures"]["custom"] is True


BAD_LINES = [
    ("{not json", "verifications line 2: not valid JSON"),
    ('["s3://b/1.jpg"]', "verifications line 2: a JSON list, not an object"),
    ('{"labels": {}}', 'verifications line 2: "source-ref" is missing'),
    ('{"source-ref": "s3://b/1.jpg"}', 'verifications line 2: "labels" must be an object'),
    ('{"source-ref": "s3://b/1.jpg", "labels": ["Pills"]}', "not a JSON list"),
    (
        '{"source-ref": "s3://b/1.jpg", "labels": {"Pills": "yes"}}',
        "verifications line 2: label 'Pills' must be true (present) or false (absent), not 'yes'",
    ),
    (
        '{"source-ref": "s3://b/1.jpg", "labels": {"Beer": true}}',
        "verifications line 2: unknown label 'Beer': use a name of the moderation taxonomy",
    ),
    (
        '{"source-ref": "s3://b/9.jpg", "labels": {}}',
        "verifications line 2: s3://b/9.jpg is not in the results",
    ),
    (
        '{"source-ref": "s3://b/3.jpg", "labels": {}}',  # line 1 verified it already
        "verifications line 2: s3://b/3.jpg was already verified on line 1",
    ),
]


@pytest.mark.parametrize("bad, message", BAD_LINES)
def test_a_bad_verification_line_is_named_and_nothing_is_written(tmp_path, capsys, bad, message):
    results = write_jsonl(
        tmp_path / "results.jsonl", [result("s3://b/1.jpg"), result("s3://b/3.jpg")]
    )
    verifications = write_jsonl(tmp_path / "v.jsonl", [verify("s3://b/3.jpg"), bad])
    output = tmp_path / "out" / "gt.jsonl"
    output.parent.mkdir()
    output.write_text("the previous ground truth\n")
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main([*argv, "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert f"1 bad line; {output} was not written" in captured.err
    report = json.loads(captured.out)
    assert report["written"] is False
    assert [(e["file"], e["line_number"]) for e in report["errors"]] == [("verifications", 2)]
    assert output.read_text() == "the previous ground truth\n"  # untouched, no temporary left
    assert [p.name for p in output.parent.iterdir()] == ["gt.jsonl"]


def test_the_unknown_label_error_says_how_to_declare_it(tmp_path, capsys):
    results = write_jsonl(tmp_path / "r.jsonl", [result("1.jpg")])
    verifications = write_jsonl(tmp_path / "v.jsonl", [verify("1.jpg", Logos=True)])
    output = tmp_path / "gt.jsonl"
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert 'declare a custom label with --custom_label "Logos=PARENT"' in err
    assert '--custom_label "Logos=")' in err
    assert not output.exists()


def test_every_bad_line_of_both_files_is_reported(tmp_path, capsys):
    results = write_jsonl(
        tmp_path / "r.jsonl",
        [
            result("1.jpg"),
            '{"source-ref": "2.jpg"}',
            '{"source-ref": "3.jpg", "detect-moderation-labels": {"ModerationLabels": '
            '[{"Name": "Beer", "Confidence": 99}]}}',
            '{"source-ref": "4.jpg", "detect-moderation-labels": {"ModerationLabels": '
            '[{"Name": "Pills", "Confidence": "high"}]}}',
        ],
    )
    verifications = write_jsonl(
        tmp_path / "v.jsonl",
        [
            verify("2.jpg"),
            verify("1.jpg", Beer=True, Pills=1),
            "",
            "not json",
            verify("1.jpg"),
        ],
    )
    output = tmp_path / "gt.jsonl"
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert [line.split(":")[1].strip() for line in lines] == [
        "results line 2",
        "results line 3",
        "results line 4",
        "verifications line 1",
        "verifications line 2",
        "verifications line 4",
        "6 bad lines; " + str(output) + " was not written",
    ]
    assert '"detect-moderation-labels" is missing' in lines[0]
    assert "unknown label 'Beer'" in lines[1]
    assert '"Confidence" number' in lines[2]
    assert "its results line 2 is bad" in lines[3]
    assert "unknown label 'Beer'" in lines[4] and "label 'Pills' must be true" in lines[4]
    assert "not valid JSON" in lines[5]
    assert not output.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--confidence_threshold", "101"], "--confidence_threshold must be between 0 and 100"),
        (["--confidence_threshold", "nan"], "--confidence_threshold"),
        (["--custom_label", "Logos"], "must be NAME=PARENT"),
        (["--custom_label", "Pill Shapes=Pills"], "level 4"),
        (["--custom_label", "A=Alcohol", "--custom_label", "A=Gambling"], "declared twice"),
        (["--format", "xml"], "--format"),
    ],
)
def test_bad_arguments_exit_2(files, capsys, extra, message):
    results, verifications, output = files
    argv = ["--results", results, "--verifications", verifications, "--output", str(output)]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_bad_files_exit_2(files, tmp_path, capsys):
    results, verifications, output = files
    empty = write_jsonl(tmp_path / "empty.jsonl", [""])
    output = str(output)
    for argv, message in [
        (["/no/such.jsonl", verifications, output], "--results /no/such.jsonl does not exist"),
        ([results, empty, output], f"--verifications {empty} has no lines"),
        ([results, verifications, results], "--output must not be one of the input files"),
    ]:
        flags = ["--results", argv[0], "--verifications", argv[1], "--output", argv[2]]
        assert main(flags) == 2
        assert message in capsys.readouterr().err
    assert not tmp_path.joinpath("gt.jsonl").exists()
    assert main(["--results", results]) == 2
    assert "--verifications" in capsys.readouterr().err


def test_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--results", "--custom_label NAME=PARENT", "Default: 50", "--s3_endpoint_url"):
        assert text in out


def test_s3_input_and_output(s3, moto_server, capsys):
    s3.create_bucket(Bucket="jobs")
    lines = [result("s3://photos/1.jpg", ("Gambling", 90)), result("s3://photos/2.jpg")]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    s3.put_object(Bucket="jobs", Key="out/job1/results.jsonl", Body=body)
    reviewed = [verify("s3://photos/1.jpg", Gambling=False, Weapons=True)]
    body = "".join(json.dumps(line) + "\n" for line in reviewed).encode()
    s3.put_object(Bucket="jobs", Key="review/verifications.jsonl", Body=body)
    argv = [
        "--results=s3://jobs/out/job1/results.jsonl",
        "--verifications=s3://jobs/review/verifications.jsonl",
        "--output=s3://jobs/adapter/train.jsonl",
        "--format=json",
        *s3_args(moto_server),
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images_reviewed"], report["images_not_reviewed"]) == (1, 1)
    written = s3.get_object(Bucket="jobs", Key="adapter/train.jsonl")["Body"].read()
    assert parse_jsonl(written) == [
        {
            "source-ref": "s3://photos/1.jpg",
            "content-moderation-groundtruth": {"ModerationLabels": [{"Name": "Weapons"}]},
        }
    ]


def test_input_error_text():
    error = InputError("results", 3, "not valid JSON", None)
    assert str(error) == "results line 3: not valid JSON"
    assert error.to_dict() == {"file": "results", "line_number": 3, "message": "not valid JSON"}

"""End-to-end runs on local files: outputs, per-line error codes, failures, the command line."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from model.handler import ModerationModelHandler
from pipeline.run import run
from tests.conftest import assert_outputs_contract, parse_jsonl
from transforms.output import RESULTS_FILE, SUMMARY_FILE
from transforms.records import ErrorCode

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEAM = ["--runner=DirectRunner"]


def _line(source_ref) -> bytes:
    return json.dumps({"source-ref": source_ref}).encode()


def _write_manifest(path, lines: list[bytes], *, newline: bytes = b"\n", bom: bool = False) -> str:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + newline for line in lines)
    path.write_bytes(data)
    return str(path)


def _outputs(output: str) -> tuple[dict, list[dict]]:
    with open(os.path.join(output, SUMMARY_FILE), "rb") as f:
        summary = json.load(f)
    with open(os.path.join(output, RESULTS_FILE), "rb") as f:
        results = parse_jsonl(f.read())
    return summary, results


def _codes(summary: dict) -> dict[int, str]:
    return {error["line-numer"]: error["code"] for error in summary["errors"]}


def _run(manifest: str, output: str, *extra: str, model_handler=None) -> dict:
    return run(
        [f"--manifest={manifest}", f"--output={output}", *BEAM, *extra],
        model_handler=model_handler,
    )


def _png_bomb(side: int = 20_000) -> bytes:
    """A greyscale PNG of side x side zero pixels, built chunk by chunk (no bitmap in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor = zlib.compressobj(1)
    rows = bytes(side + 1) * 200  # filter byte 0 + a row of zeros, 200 rows at a time
    idat = b"".join(compressor.compress(rows) for _ in range(side // 200)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# A mixed manifest: photos, duplicated lines, a missing file, a line that is not JSON.


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, sample_photos):
    folder = tmp_path_factory.mktemp("mixed")
    missing = str(folder / "missing.jpg")
    refs = {
        1: sample_photos["astronaut.jpg"],
        2: sample_photos["chelsea.png"],
        3: sample_photos["coffee.jpg"],
        4: sample_photos["astronaut.jpg"],
        6: sample_photos["rocket.png"],
        7: missing,
        8: sample_photos["camera.jpg"],
        9: sample_photos["chelsea.png"],
        10: sample_photos["astronaut.jpg"],
        11: sample_photos["camera.png"],
        12: sample_photos["rocket.jpg"],
    }
    lines = [
        _line(refs[n]) if n in refs else b'{"source-ref": "/no/closing/brace.jpg"'
        for n in range(1, 13)
    ]
    manifest = _write_manifest(folder / "manifest.jsonl", lines)
    output = str(folder / "output")
    outcome = _run(manifest, output)
    summary, results = _outputs(output)
    valid_refs = [refs[n] for n in sorted(refs) if n != 7]
    return {
        "outcome": outcome,
        "summary": summary,
        "results": results,
        "output": output,
        "valid_refs": valid_refs,
        "missing": missing,
    }


def test_mixed_results_follow_manifest_order(mixed):
    results = mixed["results"]
    assert [r["source-ref"] for r in results] == mixed["valid_refs"]
    assert len(results) == 10
    versions = {r["detect-moderation-labels"]["ModerationModelVersion"] for r in results}
    assert len(versions) == 1
    (version,) = versions
    assert "open_nsfw" in version and "nudenet" in version
    for result in results:
        response = result["detect-moderation-labels"]
        assert response["ModerationLabels"] == [], result["source-ref"]
        assert response["ContentTypes"] == []


def test_mixed_summary_matches_reference_format(mixed):
    summary = mixed["summary"]
    assert_outputs_contract(summary, mixed["results"])
    assert summary["statistics"] == {
        "total-json-lines": 12,
        "valid-json-lines": 10,
        "invalid-json-lines": 2,
    }
    first, second = summary["errors"]
    assert list(first) == ["line-numer", "code", "message"]
    assert first["line-numer"] == 5 and first["code"] == ErrorCode.INVALID_JSON
    assert list(second) == ["line-numer", "source-ref", "code", "message"]
    assert second["line-numer"] == 7 and second["code"] == ErrorCode.IMAGE_NOT_FOUND
    assert second["source-ref"] == mixed["missing"]


def test_mixed_run_returns_paths_and_statistics(mixed):
    outcome = mixed["outcome"]
    assert outcome["results"] == os.path.join(mixed["output"], RESULTS_FILE)
    assert outcome["summary"] == os.path.join(mixed["output"], SUMMARY_FILE)
    assert outcome["statistics"] == mixed["summary"]["statistics"]
    assert outcome["error_codes"] == {ErrorCode.IMAGE_NOT_FOUND: 1, ErrorCode.INVALID_JSON: 1}
    assert outcome["elapsed_secs"] > 0


def test_mixed_run_leaves_only_the_two_outputs(mixed):
    assert sorted(os.listdir(mixed["output"])) == [SUMMARY_FILE, RESULTS_FILE]


# A hostile manifest: every kind of bad line and bad image, CRLF endings and a BOM.


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, sample_photos):
    folder = tmp_path_factory.mktemp("hostile")
    with open(sample_photos["astronaut.jpg"], "rb") as f:
        jpeg = f.read()
    files = {
        "truncated.jpg": jpeg[: len(jpeg) * 2 // 5],
        "bomb.png": _png_bomb(),
        "animation.gif": _encoded(Image.new("RGB", (120, 120), (200, 30, 30)), "GIF"),
        "tiny.png": _encoded(Image.new("RGB", (50, 50), (10, 200, 10)), "PNG"),
        "huge.jpg": jpeg[:2048] + os.urandom(15 * 1024 * 1024 + 1024),
        "notes.jpg": b"this is a text file with an image's name\n" * 20,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "a-folder.jpg").mkdir()
    path = {name: str(folder / name) for name in [*files, "a-folder.jpg", "missing.jpg"]}
    good_jpg, good_png, last = (
        sample_photos["astronaut.jpg"],
        sample_photos["chelsea.png"],
        sample_photos["coffee.png"],
    )
    # line number -> (raw line, expected code or None for a valid line); missing numbers are blank.
    table = {
        1: (_line(good_jpg), None),  # after the BOM
        2: (b"this line is not JSON", ErrorCode.INVALID_JSON),
        3: (json.dumps([good_jpg]).encode(), ErrorCode.NOT_A_JSON_OBJECT),
        4: (json.dumps({"image": good_jpg}).encode(), ErrorCode.MISSING_SOURCE_REF),
        5: (
            json.dumps({"\u0455ource-ref": good_jpg}, ensure_ascii=False).encode(),
            ErrorCode.MISSING_SOURCE_REF,
        ),
        6: (_line(""), ErrorCode.INVALID_SOURCE_REF),
        7: (b'{"source-ref": 42}', ErrorCode.INVALID_SOURCE_REF),
        8: (_line("https://example.com/cat.jpg"), ErrorCode.UNSUPPORTED_SCHEME),
        9: (_line("images/relative.jpg"), ErrorCode.INVALID_SOURCE_REF),
        10: (b'{"source-ref": "/' + b"a" * (10 * 1024 * 1024) + b'.jpg"}', ErrorCode.LINE_TOO_LONG),
        11: (b'{"source-ref": "/tmp/\xff\xfe.jpg"}', ErrorCode.INVALID_ENCODING),
        13: (_line(path["truncated.jpg"]), ErrorCode.INVALID_IMAGE),
        14: (_line(path["bomb.png"]), ErrorCode.DECOMPRESSION_BOMB),
        15: (_line(path["animation.gif"]), ErrorCode.UNSUPPORTED_IMAGE_FORMAT),
        16: (_line(path["tiny.png"]), ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        17: (_line(path["huge.jpg"]), ErrorCode.IMAGE_TOO_LARGE),
        18: (_line(path["missing.jpg"]), ErrorCode.IMAGE_NOT_FOUND),
        19: (_line(good_png), None),
        20: (_line(good_jpg), None),
        21: (_line(good_png), None),
        22: (_line(path["notes.jpg"]), ErrorCode.UNSUPPORTED_IMAGE_FORMAT),
        23: (b'{"source-ref": null}', ErrorCode.INVALID_SOURCE_REF),
        24: (b'"just a string"', ErrorCode.NOT_A_JSON_OBJECT),
        26: (_line(path["a-folder.jpg"]), ErrorCode.IMAGE_NOT_FOUND),
        27: (_line("/tmp/nul\u0000byte.jpg"), ErrorCode.INVALID_SOURCE_REF),
        28: (_line(last), None),
    }
    blank = {12: b"", 25: b"  \t "}
    raw = [table[n][0] if n in table else blank[n] for n in range(1, 29)]
    # CRLF everywhere, a BOM first, and no line ending after the last line.
    data = b"\xef\xbb\xbf" + b"\r\n".join(raw)
    manifest = folder / "manifest.jsonl"
    manifest.write_bytes(data)
    output = str(folder / "output")
    outcome = _run(str(manifest), output)
    summary, results = _outputs(output)
    return {
        "outcome": outcome,
        "summary": summary,
        "results": results,
        "table": table,
        "output": output,
        "valid_refs": [good_jpg, good_png, good_jpg, good_png, last],
    }


def test_hostile_manifest_error_codes(hostile):
    expected = {n: code for n, (_, code) in hostile["table"].items() if code is not None}
    assert _codes(hostile["summary"]) == expected


def test_hostile_manifest_invariants(hostile):
    summary = hostile["summary"]
    assert_outputs_contract(summary, hostile["results"])
    # Blank lines are not manifest lines: 28 physical lines, 2 blank.
    assert summary["statistics"] == {
        "total-json-lines": 26,
        "valid-json-lines": 5,
        "invalid-json-lines": 21,
    }
    assert hostile["outcome"]["statistics"] == summary["statistics"]


def test_hostile_manifest_results_keep_duplicates_in_order(hostile):
    assert [r["source-ref"] for r in hostile["results"]] == hostile["valid_refs"]


def test_hostile_manifest_errors_name_the_image_they_concern(hostile):
    errors = {error["line-numer"]: error for error in hostile["summary"]["errors"]}
    table = hostile["table"]
    for number in (13, 14, 15, 16, 17, 18, 22, 26):
        assert errors[number]["source-ref"] == json.loads(table[number][0])["source-ref"]
    for number in (2, 3, 4, 5, 7, 10, 11, 23, 24):
        assert "source-ref" not in errors[number]
    assert len(errors[10]["message"]) < 1000  # the 10 MB line is not echoed back
    assert sorted(os.listdir(hostile["output"])) == [SUMMARY_FILE, RESULTS_FILE]


# Manifests with nothing to analyse still get both outputs.


@pytest.mark.parametrize(
    "lines, expected_codes",
    [
        ([], {}),
        (
            [
                b"not json",
                b"[]",
                b'{"source-ref": "ftp://host/x.jpg"}',
                b'{"source-ref": "/does/not/exist.png"}',
            ],
            {
                1: ErrorCode.INVALID_JSON,
                2: ErrorCode.NOT_A_JSON_OBJECT,
                3: ErrorCode.UNSUPPORTED_SCHEME,
                4: ErrorCode.IMAGE_NOT_FOUND,
            },
        ),
    ],
    ids=["empty", "only-invalid"],
)
def test_nothing_to_analyse_gives_empty_results(tmp_path, lines, expected_codes):
    manifest = _write_manifest(tmp_path / "manifest.jsonl", lines)
    output = str(tmp_path / "output")
    outcome = _run(manifest, output)
    with open(os.path.join(output, RESULTS_FILE), "rb") as f:
        assert f.read() == b""
    summary, results = _outputs(output)
    assert results == []
    assert_outputs_contract(summary, results)
    assert summary["statistics"]["valid-json-lines"] == 0
    assert summary["statistics"]["total-json-lines"] == len(lines)
    assert _codes(summary) == expected_codes
    assert outcome["statistics"] == summary["statistics"]
    assert sorted(os.listdir(output)) == [SUMMARY_FILE, RESULTS_FILE]


# Failures: a crashed job publishes nothing; a failed batch costs only its own lines.


class _CrashingModelHandler(ModerationModelHandler):
    def load_model(self):
        raise RuntimeError("simulated crash while loading the model")


class _FailsOnWidthModelHandler(ModerationModelHandler):
    """Raises for any batch holding an image exactly ``width`` pixels wide."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self._width = width

    def run_inference(self, batch, model, inference_args=None):
        if any(image.shape[1] == self._width for image in batch):
            raise RuntimeError(f"simulated failure on an image {self._width} px wide")
        return super().run_inference(batch, model, inference_args)


def test_failing_run_publishes_nothing(tmp_path, sample_photos):
    manifest = _write_manifest(
        tmp_path / "manifest.jsonl",
        [_line(sample_photos["astronaut.jpg"]), b"not json", _line(sample_photos["coffee.png"])],
    )
    output = tmp_path / "output"
    with pytest.raises(Exception, match="simulated crash while loading the model"):
        _run(manifest, str(output), model_handler=_CrashingModelHandler())
    assert not (output / RESULTS_FILE).exists()
    assert not (output / SUMMARY_FILE).exists()


def test_failed_inference_batch_becomes_dead_letters(tmp_path, sample_photos):
    refs = [
        sample_photos["astronaut.jpg"],
        sample_photos["chelsea.jpg"],  # 451 px wide
        sample_photos["coffee.png"],
        sample_photos["chelsea.png"],  # 451 px wide
        sample_photos["rocket.jpg"],
    ]
    manifest = _write_manifest(tmp_path / "manifest.jsonl", [_line(ref) for ref in refs])
    output = str(tmp_path / "output")
    handler = _FailsOnWidthModelHandler(451, max_batch_size=1)
    outcome = _run(manifest, output, model_handler=handler)
    summary, results = _outputs(output)
    assert_outputs_contract(summary, results)
    assert _codes(summary) == {2: ErrorCode.INFERENCE_FAILED, 4: ErrorCode.INFERENCE_FAILED}
    for error in summary["errors"]:
        assert error["source-ref"] == refs[error["line-numer"] - 1]
        assert "simulated failure on an image 451 px wide" in error["message"]
    assert [r["source-ref"] for r in results] == [refs[0], refs[2], refs[4]]
    assert outcome["error_codes"] == {ErrorCode.INFERENCE_FAILED: 2}


def test_open_nsfw_alone_gives_a_result_that_says_so(tmp_path, sample_photos):
    refs = [sample_photos["chelsea.jpg"], sample_photos["astronaut.jpg"]]
    manifest = _write_manifest(tmp_path / "manifest.jsonl", [_line(ref) for ref in refs])
    output = str(tmp_path / "output")
    _run(manifest, output, "--components=open_nsfw", "--backbone=none", "--min_confidence=0")
    summary, results = _outputs(output)
    assert_outputs_contract(summary, results)
    for result in results:
        response = result["detect-moderation-labels"]
        assert response["ModerationModelVersion"] == "beam-moderation-0.2.0/open_nsfw-0.1.0"
        # open_nsfw alone supports only the level-1 label.
        assert [label["Name"] for label in response["ModerationLabels"]] == ["Explicit"]
        assert response["ContentTypes"] == []


def test_min_confidence_zero_returns_labels(tmp_path, sample_photos):
    refs = [sample_photos["chelsea.jpg"], sample_photos["rocket.png"]]
    manifest = _write_manifest(tmp_path / "manifest.jsonl", [_line(ref) for ref in refs])
    output = str(tmp_path / "output")
    _run(manifest, output, "--min_confidence=0")
    summary, results = _outputs(output)
    assert_outputs_contract(summary, results)
    assert [r["source-ref"] for r in results] == refs
    for result in results:
        labels = result["detect-moderation-labels"]["ModerationLabels"]
        explicit = [label for label in labels if label["Name"] == "Explicit"]
        assert len(explicit) == 1, labels
        assert explicit[0]["TaxonomyLevel"] == 1
        assert explicit[0]["ParentName"] == ""
        assert 0 < explicit[0]["Confidence"] < 50
        for label in labels:
            assert list(label) == ["Confidence", "Name", "ParentName", "TaxonomyLevel"]
            assert (label["TaxonomyLevel"] == 1) == (label["ParentName"] == "")


# The command line.


def _cli(*args: str, module: str = "pipeline.run") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_help_lists_the_job_flags():
    completed = _cli("--help")
    assert completed.returncode == 0, completed.stderr
    for flag in ("--manifest", "--output", "--min_confidence", "--components"):
        assert flag in completed.stdout


def test_cli_rejects_min_confidence_out_of_range(tmp_path, sample_photos):
    manifest = _write_manifest(tmp_path / "manifest.jsonl", [_line(sample_photos["chelsea.jpg"])])
    completed = _cli(
        f"--manifest={manifest}", f"--output={tmp_path / 'out'}", "--min_confidence=150", *BEAM
    )
    assert completed.returncode == 2
    assert "--min_confidence" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_cli_rejects_missing_manifest(tmp_path):
    missing = tmp_path / "no-such-manifest.jsonl"
    completed = _cli(f"--manifest={missing}", f"--output={tmp_path / 'out'}", *BEAM)
    assert completed.returncode == 2
    assert "--manifest" in completed.stderr
    assert str(missing) in completed.stderr
    assert not (tmp_path / "out").exists()


def test_cli_run_prints_output_paths(tmp_path, sample_photos):
    manifest = _write_manifest(
        tmp_path / "manifest.jsonl", [_line(sample_photos["coffee.jpg"]), b"{bad json"]
    )
    output = tmp_path / "out"
    completed = _cli(
        f"--manifest={manifest}", f"--output={output}", "--progress_interval_secs=0", *BEAM
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Progress: 2 of 2 manifest lines done (100%)" in completed.stderr
    lines = completed.stdout.splitlines()
    assert f"Results: {output / RESULTS_FILE}" in lines
    assert f"Summary: {output / SUMMARY_FILE}" in lines
    assert "Analysed 1 of 2 manifest lines (1 invalid)" in completed.stdout
    summary, results = _outputs(str(output))
    assert_outputs_contract(summary, results)
    assert _codes(summary) == {2: ErrorCode.INVALID_JSON}


def test_demo_runs(tmp_path):
    completed = _cli("--workdir", str(tmp_path), *BEAM, module="pipeline.demo")
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary, results = _outputs(str(tmp_path / "output"))
    assert_outputs_contract(summary, results)
    assert summary["statistics"]["valid-json-lines"] == 6
    assert summary["statistics"]["invalid-json-lines"] == 4
    assert all(r["detect-moderation-labels"]["ModerationLabels"] == [] for r in results)


def test_content_types_reach_the_results(tmp_path):
    """Game art and emoji through the whole job: ContentTypes as the model gives them."""
    import itertools

    from model.moderation_model import load_moderation_model
    from training import content_types_data as recipe
    from transforms.images import decode_image

    examples = list(
        itertools.islice(
            (e for e in recipe.iter_examples(recipe.HELD_OUT) if e.label != recipe.PHOTO), 6
        )
    )
    refs = []
    for i, example in enumerate(examples):
        path = tmp_path / f"drawing-{i}.png"
        Image.fromarray(example.image).save(path)
        refs.append(str(path))
    manifest = _write_manifest(tmp_path / "manifest.jsonl", [_line(ref) for ref in refs])
    output = str(tmp_path / "output")
    _run(manifest, output)
    summary, results = _outputs(output)
    assert_outputs_contract(summary, results)

    model = load_moderation_model()
    expected = model.predict([decode_image(open(ref, "rb").read()) for ref in refs])
    got = [r["detect-moderation-labels"]["ContentTypes"] for r in results]
    assert got == [e["ContentTypes"] for e in expected]
    assert any(types for types in got), "no drawing was given a content type"
    for types in got:
        for entry in types:
            assert list(entry) == ["Confidence", "Name"]
            assert entry["Name"] in {"Animated", "Illustrated"} and entry["Confidence"] >= 50

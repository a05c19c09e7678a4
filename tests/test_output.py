"""Tests for the results line, the manifest summary, atomic output writes and publishing."""

import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from storage.outputs import OutputStore
from transforms.output import (
    RESULTS_FILE,
    SUMMARY_FILE,
    BuildSummary,
    _Publish,
    result_line,
)
from transforms.records import ErrorCode, ManifestError, ManifestLine

RESPONSE = {
    "ModerationLabels": [
        {
            "Confidence": 91.9,
            "Name": "Pills",
            "ParentName": "Products",
            "TaxonomyLevel": 3,
        }
    ],
    "ModerationModelVersion": "test-model",
    "ContentTypes": [],
}

ZERO_SUMMARY = {
    "version": "1.0",
    "statistics": {
        "total-json-lines": 0,
        "valid-json-lines": 0,
        "invalid-json-lines": 0,
    },
    "errors": [],
}


# result_line


def test_result_line_is_one_compact_json_line():
    data = result_line(ManifestLine(3, "s3://bucket/a.jpg"), RESPONSE)
    assert isinstance(data, bytes)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert b": " not in data and b", " not in data
    assert json.loads(data) == {
        "source-ref": "s3://bucket/a.jpg",
        "detect-moderation-labels": RESPONSE,
    }
    assert data.startswith(b'{"source-ref":"s3://bucket/a.jpg","detect-moderation-labels":{')


def test_result_line_keeps_non_ascii_source_ref():
    data = result_line(ManifestLine(1, "/données/写真.jpg"), {"ModerationLabels": []})
    assert "/données/写真.jpg".encode() in data
    assert b"\\u" not in data
    assert json.loads(data.decode("utf-8"))["source-ref"] == "/données/写真.jpg"


def test_result_line_escapes_newlines_in_source_ref():
    data = result_line(ManifestLine(1, "/a\nb.jpg"), {"ModerationLabels": []})
    assert data.count(b"\n") == 1
    assert json.loads(data)["source-ref"] == "/a\nb.jpg"


# BuildSummary, one method at a time


def _summarise(*groups):
    combine = BuildSummary()
    accumulators = []
    for outcomes in groups:
        accumulator = combine.create_accumulator()
        for outcome in outcomes:
            accumulator = combine.add_input(accumulator, outcome)
        accumulators.append(accumulator)
    return combine.extract_output(combine.merge_accumulators(accumulators))


def test_empty_summary():
    combine = BuildSummary()
    assert combine.extract_output(combine.create_accumulator()) == ZERO_SUMMARY
    assert _summarise([]) == ZERO_SUMMARY
    assert _summarise() == ZERO_SUMMARY


def test_summary_counts_valid_and_invalid():
    outcomes = [None, ManifestError(2, ErrorCode.INVALID_JSON, "bad"), None, None]
    summary = _summarise(outcomes)
    assert summary["version"] == "1.0"
    assert summary["statistics"] == {
        "total-json-lines": 4,
        "valid-json-lines": 3,
        "invalid-json-lines": 1,
    }
    assert len(summary["errors"]) == 1


def test_summary_errors_are_sorted_by_line_number():
    outcomes = [
        ManifestError(10, ErrorCode.IMAGE_NOT_FOUND, "gone", "s3://b/10.jpg"),
        None,
        ManifestError(2, ErrorCode.INVALID_JSON, "not json"),
        ManifestError(7, ErrorCode.INVALID_IMAGE, "truncated", "/7.jpg"),
    ]
    summary = _summarise(outcomes)
    assert summary["errors"] == [
        {"line-numer": 2, "code": "INVALID_JSON", "message": "not json"},
        {
            "line-numer": 7,
            "source-ref": "/7.jpg",
            "code": "INVALID_IMAGE",
            "message": "truncated",
        },
        {
            "line-numer": 10,
            "source-ref": "s3://b/10.jpg",
            "code": "IMAGE_NOT_FOUND",
            "message": "gone",
        },
    ]


def test_summary_entry_key_order_and_spelling():
    summary = _summarise([ManifestError(5, ErrorCode.UNSUPPORTED_SCHEME, "no", "ftp://x/y")])
    (entry,) = summary["errors"]
    assert list(entry) == ["line-numer", "source-ref", "code", "message"]
    assert "line-number" not in entry


def test_summary_omits_unknown_source_ref():
    summary = _summarise([ManifestError(1, ErrorCode.LINE_TOO_LONG, "too long")])
    assert summary["errors"] == [{"line-numer": 1, "code": "LINE_TOO_LONG", "message": "too long"}]


def test_summary_keeps_an_empty_string_source_ref():
    summary = _summarise([ManifestError(1, ErrorCode.INVALID_SOURCE_REF, "empty", "")])
    assert summary["errors"][0]["source-ref"] == ""


def test_summary_merges_accumulators():
    summary = _summarise(
        [None, ManifestError(4, ErrorCode.INVALID_JSON, "a")],
        [],
        [ManifestError(1, ErrorCode.MISSING_SOURCE_REF, "b"), None, None],
    )
    statistics = summary["statistics"]
    assert statistics == {
        "total-json-lines": 5,
        "valid-json-lines": 3,
        "invalid-json-lines": 2,
    }
    assert statistics["total-json-lines"] == (
        statistics["valid-json-lines"] + statistics["invalid-json-lines"]
    )
    assert [entry["line-numer"] for entry in summary["errors"]] == [1, 4]


def test_summary_is_json_serialisable():
    summary = _summarise([None, ManifestError(3, ErrorCode.INVALID_IMAGE, "é", "/é.jpg")])
    assert json.loads(json.dumps(summary, ensure_ascii=False)) == summary


def test_summary_over_a_pipeline_on_empty_input():
    with test_pipeline.TestPipeline() as p:
        summary = p | beam.Create([]) | beam.CombineGlobally(BuildSummary())
        assert_that(summary, equal_to([ZERO_SUMMARY]), label="CheckSummary")


# OutputStore on local paths


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_open_write_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "out.json"
    with OutputStore().open_write(str(path)) as stream:
        stream.write(b"hello")
    assert path.read_bytes() == b"hello"


def test_file_appears_only_when_the_block_ends(tmp_path):
    path = tmp_path / "out.jsonl"
    with OutputStore().open_write(str(path)) as stream:
        stream.write(b"first\n")
        stream.flush()
        assert not path.exists()
        assert len(list(tmp_path.iterdir())) == 1  # the temporary file only
    assert path.read_bytes() == b"first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_open_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_bytes(b"old")
    store = OutputStore()
    store.write_bytes(str(path), b"new")
    assert path.read_bytes() == b"new"


def test_exception_in_block_leaves_nothing(tmp_path):
    path = tmp_path / "out.jsonl"
    with (
        pytest.raises(ValueError, match="boom"),
        OutputStore().open_write(str(path)) as stream,
    ):
        stream.write(b"partial")
        raise ValueError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_exception_in_block_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"previous")
    with (
        pytest.raises(KeyboardInterrupt),
        OutputStore().open_write(str(path)) as stream,
    ):
        stream.write(b"partial")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_files_get_normal_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = tmp_path / "out.json"
        OutputStore().write_bytes(str(path), b"{}")
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


def test_files_follow_the_current_umask(tmp_path):
    path = tmp_path / "out.json"
    OutputStore().write_bytes(str(path), b"{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_write_bytes_writes_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    OutputStore().write_bytes(str(path), b"")
    assert path.exists() and path.read_bytes() == b""


def test_delete_tree_removes_a_folder(tmp_path):
    folder = tmp_path / "tmp"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(b"a")
    (folder / "sub" / "b.jsonl").write_bytes(b"b")
    (tmp_path / "keep.json").write_bytes(b"k")
    OutputStore().delete_tree(str(folder))
    assert not folder.exists()
    assert (tmp_path / "keep.json").read_bytes() == b"k"


def test_delete_tree_on_a_missing_folder(tmp_path):
    OutputStore().delete_tree(str(tmp_path / "missing"))
    assert list(tmp_path.iterdir()) == []


# _Publish


@pytest.fixture
def publish_setup(tmp_path):
    output = tmp_path / "out"
    temporary = output / ".tmp-job"
    temporary.mkdir(parents=True)
    part_0 = temporary / "results-00000000.jsonl"
    part_1 = temporary / "results-00000001.jsonl"
    part_0.write_bytes(b'{"n":1}\n{"n":2}\n')
    part_1.write_bytes(b'{"n":10000}\n')
    # Given out of order: publishing must follow the part numbers.
    parts = [(1, str(part_1), 1), (0, str(part_0), 2)]
    fn = _Publish(str(output), str(temporary), OutputStore())
    return fn, parts, output, temporary


def _summary(valid, errors):
    combine = BuildSummary()
    accumulator = combine.create_accumulator()
    for _ in range(valid):
        accumulator = combine.add_input(accumulator, None)
    for error in errors:
        accumulator = combine.add_input(accumulator, error)
    return combine.extract_output(accumulator)


def test_publish_writes_results_and_summary(publish_setup):
    fn, parts, output, temporary = publish_setup
    summary = _summary(3, [ManifestError(2, ErrorCode.INVALID_JSON, "bad")])
    published = list(fn.process(None, parts, summary, 4))
    results = output / RESULTS_FILE
    summary_file = output / SUMMARY_FILE
    assert results.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":10000}\n'
    assert json.loads(summary_file.read_text("utf-8")) == summary
    assert not temporary.exists()
    assert sorted(p.name for p in output.iterdir()) == [SUMMARY_FILE, RESULTS_FILE]
    assert len(published) == 1
    assert published[0].results == str(results)
    assert published[0].summary == str(summary_file)
    assert published[0].statistics == summary["statistics"]


def test_publish_with_no_parts_writes_empty_results(tmp_path):
    output = tmp_path / "out"
    temporary = output / ".tmp-job"
    temporary.mkdir(parents=True)
    fn = _Publish(str(output), str(temporary), OutputStore())
    summary = _summary(0, [ManifestError(1, ErrorCode.INVALID_JSON, "bad")])
    list(fn.process(None, [], summary, 1))
    assert (output / RESULTS_FILE).read_bytes() == b""
    assert json.loads((output / SUMMARY_FILE).read_text())["statistics"]["total-json-lines"] == 1
    assert not temporary.exists()


@pytest.mark.parametrize(
    "valid, errors, lines_read",
    [
        (
            3,
            [ManifestError(2, ErrorCode.INVALID_JSON, "bad")],
            5,
        ),  # total != lines read
        (3, [], 4),  # total != lines read
        (2, [ManifestError(2, ErrorCode.INVALID_JSON, "bad")], 3),  # results != valid
        (4, [], 4),  # results != valid
    ],
)
def test_publish_refuses_inconsistent_numbers(publish_setup, valid, errors, lines_read):
    fn, parts, output, temporary = publish_setup
    with pytest.raises(RuntimeError, match="inconsistent"):
        list(fn.process(None, parts, _summary(valid, errors), lines_read))
    assert not (output / RESULTS_FILE).exists()
    assert not (output / SUMMARY_FILE).exists()
    assert sorted(p.name for p in output.iterdir()) == [".tmp-job"]
    assert len(list(temporary.iterdir())) == 2

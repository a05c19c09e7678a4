"""The console's index of a job's results: paging, filters, errors, re-indexing, S3, scale."""

from __future__ import annotations

import json
import sqlite3
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.console.results_index import (
    STALE_BUILD_SECS,
    ResultFilters,
    ResultItem,
    ResultsIndex,
    index_job,
)
from service.registry import JobRecord, JobRegistry


class Clock:
    def __init__(self, now: float = 1_790_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def label(name: str, confidence: float, parent: str = "", level: int = 1) -> dict:
    return {"Name": name, "Confidence": confidence, "ParentName": parent, "TaxonomyLevel": level}


def line(ref: str, labels: list[dict] = (), types: list[str] = ()) -> str:
    return json.dumps(
        {
            "source-ref": ref,
            "detect-moderation-labels": {
                "ModerationLabels": list(labels),
                "ModerationModelVersion": "7.0",
                "ContentTypes": [{"Name": name, "Confidence": 88.0} for name in types],
            },
        }
    )


PILLS = label("Pills", 91.0, "Products", 3)
SMOKING = label("Smoking", 70.0, "Drugs & Tobacco Paraphernalia & Use", 3)
EXPLICIT = label("Explicit", 97.1, "Explicit Nudity", 2)

# Line 1: Pills only; 2: nothing, animated; 3: Smoking, illustrated; 4: Violence 60 and
# Weapons 95, animated; 5: three labels at 10, 50 and 90; 6: nothing.
LINES = [
    line("s3://b/1.jpg", [PILLS]),
    line("s3://b/2.jpg", types=["Animated"]),
    line("s3://b/3.jpg", [SMOKING], types=["Illustrated"]),
    line(
        "s3://b/4.jpg",
        [label("Violence", 60.0), label("Weapons", 95.0, "Violence", 2)],
        types=["Animated"],
    ),
    line(
        "s3://b/5.jpg",
        [
            label("Explicit Nudity", 10.0, "Explicit", 2),
            label("Gambling", 50.0),
            label("Middle Finger", 90.0, "Rude Gestures", 2),
        ],
    ),
    line("s3://b/6.jpg"),
]

SUMMARY = {
    "version": "1.0",
    "statistics": {"total-json-lines": 9, "valid-json-lines": 6, "invalid-json-lines": 3},
    "errors": [
        {"line-numer": 8, "code": "INVALID_JSON", "message": "not JSON"},
        {"line-numer": 3, "source-ref": "s3://b/x.jpg", "code": "INVALID_IMAGE", "message": "bad"},
        {"line-numer": 5, "source-ref": "s3://b/y.jpg", "code": "IMAGE_NOT_FOUND", "message": "?"},
    ],
}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def index(tmp_path, clock):
    return ResultsIndex(str(tmp_path / "registry.sqlite3"), clock=clock)


@pytest.fixture
def indexed(index):
    assert index.index("j1", LINES, SUMMARY) == 6
    return index


def positions(index: ResultsIndex, filters: ResultFilters, job: str = "j1") -> list[int]:
    page = index.page(job, filters, limit=1000)
    found = [item.position for item in page.items]
    assert page.total == len(found)
    return found


def rows(index: ResultsIndex, table: str) -> int:
    with sqlite3.connect(index.path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# Indexing and paging.


def test_pages_in_line_order(indexed):
    assert indexed.is_indexed("j1") and not indexed.is_indexed("j2")
    first = indexed.page("j1", limit=4)
    assert [item.position for item in first.items] == [1, 2, 3, 4]
    assert (first.total, first.offset, first.limit) == (6, 0, 4)
    rest = indexed.page("j1", offset=4, limit=4)
    assert [item.position for item in rest.items] == [5, 6] and rest.total == 6
    assert indexed.page("j1", offset=10).items == []
    assert indexed.line_count("j1") == indexed.image_count("j1") == 6


def test_an_item_is_the_line_as_it_was(indexed):
    item = indexed.item("j1", 3)
    document = json.loads(LINES[2])
    assert item == ResultItem(
        position=3,
        source_ref="s3://b/3.jpg",
        labels=[SMOKING],
        content_types=[{"Name": "Illustrated", "Confidence": 88.0}],
        document=document,
    )
    assert indexed.page("j1", offset=2, limit=1).items == [item]
    assert indexed.item("j1", 7) is None and indexed.item("j1", 0) is None
    assert indexed.item("other", 1) is None


def test_a_job_not_indexed_reads_as_empty(index):
    page = index.page("nope", ResultFilters(label="Explicit"))
    assert (page.items, page.total) == ([], 0)
    assert index.neighbours("nope", 1) == (None, None)
    assert index.documents("nope", ["s3://b/1.jpg"]) == []
    assert index.line_count("nope") == index.image_count("nope") == 0
    assert index.label_names("nope") == index.content_type_names("nope") == []
    assert index.errors("nope") == ([], 0)
    assert index.statistics("nope") is None


def test_paging_arguments_are_checked(indexed):
    with pytest.raises(ValueError):
        indexed.page("j1", offset=-1)
    with pytest.raises(ValueError):
        indexed.errors("j1", limit=-1)
    assert indexed.page("j1", limit=0).total == 6


def test_image_count_counts_distinct_source_refs(index):
    index.index("j", [line("s3://b/a.jpg"), line("s3://b/b.jpg"), line("s3://b/a.jpg")], None)
    assert (index.line_count("j"), index.image_count("j")) == (3, 2)


# Filters.


def test_a_label_finds_the_lines_with_it_or_a_label_below_it(indexed):
    assert positions(indexed, ResultFilters(label="Pills")) == [1]
    assert positions(indexed, ResultFilters(label="Products")) == [1]
    assert positions(indexed, ResultFilters(label="Drugs & Tobacco")) == [1, 3]
    assert positions(indexed, ResultFilters(label="Smoking")) == [3]
    assert positions(indexed, ResultFilters(label="Violence")) == [4]
    assert positions(indexed, ResultFilters(label="Weapons")) == [4]
    assert positions(indexed, ResultFilters(label="Explicit")) == [5]
    assert positions(indexed, ResultFilters(label="Rude Gestures")) == [5]
    assert positions(indexed, ResultFilters(label="Hate Symbols")) == []
    assert positions(indexed, ResultFilters(label="No Such Label")) == []


def test_a_labels_confidence_is_the_highest_at_or_below_it(indexed):
    # Line 4: Violence 60, Weapons 95 below it: Violence is found at 95.
    assert positions(indexed, ResultFilters(label="Violence", min_confidence=95)) == [4]
    assert positions(indexed, ResultFilters(label="Violence", max_confidence=70)) == []
    assert positions(indexed, ResultFilters(label="Weapons", max_confidence=94.9)) == []
    # Line 5: Explicit Nudity at 10 is all Explicit has.
    assert positions(indexed, ResultFilters(label="Explicit", max_confidence=10)) == [5]
    assert positions(indexed, ResultFilters(label="Explicit", min_confidence=10.01)) == []
    drugs = ResultFilters(label="Drugs & Tobacco", min_confidence=70, max_confidence=90)
    assert positions(indexed, drugs) == [3]


def test_a_confidence_range_alone_wants_some_label_in_it(indexed):
    # Confidences: 1: 91; 3: 70; 4: 60, 95; 5: 10, 50, 90.
    assert positions(indexed, ResultFilters(min_confidence=91)) == [1, 4]
    assert positions(indexed, ResultFilters(min_confidence=95)) == [4]
    assert positions(indexed, ResultFilters(min_confidence=95.5)) == []
    assert positions(indexed, ResultFilters(max_confidence=10)) == [5]
    assert positions(indexed, ResultFilters(max_confidence=9.9)) == []
    assert positions(indexed, ResultFilters(min_confidence=0)) == [1, 3, 4, 5]
    # Only a label between the lowest and the highest lies in the range.
    assert positions(indexed, ResultFilters(min_confidence=40, max_confidence=55)) == [5]
    assert positions(indexed, ResultFilters(min_confidence=50, max_confidence=50)) == [5]
    assert positions(indexed, ResultFilters(min_confidence=61, max_confidence=69)) == []
    assert positions(indexed, ResultFilters(min_confidence=60, max_confidence=70)) == [3, 4]
    assert positions(indexed, ResultFilters(min_confidence=0, max_confidence=100)) == [1, 3, 4, 5]


def test_content_types(indexed):
    assert positions(indexed, ResultFilters(content_type="Animated")) == [2, 4]
    assert positions(indexed, ResultFilters(content_type="Illustrated")) == [3]
    assert positions(indexed, ResultFilters(content_type="Photo")) == []
    assert indexed.content_type_names("j1") == ["Animated", "Illustrated"]


def test_no_labels(indexed):
    assert positions(indexed, ResultFilters(no_labels=True)) == [2, 6]
    assert positions(indexed, ResultFilters(no_labels=True, content_type="Animated")) == [2]
    assert positions(indexed, ResultFilters(no_labels=True, content_type="Illustrated")) == []
    assert positions(indexed, ResultFilters(no_labels=True, label="Pills")) == []
    assert positions(indexed, ResultFilters(no_labels=True, min_confidence=0)) == []


def test_filters_combine(indexed):
    animated = ResultFilters(label="Violence", content_type="Animated")
    assert positions(indexed, animated) == [4]
    assert positions(indexed, ResultFilters(label="Drugs & Tobacco", content_type="Animated")) == []
    both = ResultFilters(label="Drugs & Tobacco", content_type="Illustrated", min_confidence=70)
    assert positions(indexed, both) == [3]
    ranged = ResultFilters(content_type="Animated", min_confidence=90)
    assert positions(indexed, ranged) == [4]
    ranged = ResultFilters(content_type="Illustrated", min_confidence=50, max_confidence=69)
    assert positions(indexed, ranged) == []


def test_filtered_pages(index):
    lines = [line(f"s3://b/{n}.jpg", [PILLS] if n % 3 == 0 else []) for n in range(1, 101)]
    index.index("j", lines, None)
    filters = ResultFilters(label="Drugs & Tobacco")
    page = index.page("j", filters, offset=5, limit=4)
    assert page.total == 33
    assert [item.position for item in page.items] == [18, 21, 24, 27]
    assert [item.source_ref for item in page.items][0] == "s3://b/18.jpg"


def test_custom_labels_are_found_by_name_and_under_their_taxonomy_parent(index):
    custom = label("Vape Pen", 77.0, "Smoking", 3)
    deeper = label("Disposable Vape", 66.0, "Vape Pen", 3)
    index.index("j", [line("s3://b/1.jpg", [custom, deeper]), line("s3://b/2.jpg")], None)
    for name in ("Vape Pen", "Disposable Vape", "Smoking", "Drugs & Tobacco"):
        assert positions(index, ResultFilters(label=name), "j") == [1], name
    assert positions(index, ResultFilters(label="Vape Pen", max_confidence=70), "j") == []
    assert positions(index, ResultFilters(label="Disposable Vape", max_confidence=70), "j") == [1]
    assert index.label_names("j") == [
        "Drugs & Tobacco",
        "Drugs & Tobacco Paraphernalia & Use",
        "Smoking",
        "Disposable Vape",
        "Vape Pen",
    ]


def test_label_names_in_taxonomy_order(indexed):
    assert indexed.label_names("j1") == [
        "Explicit",
        "Explicit Nudity",
        "Violence",
        "Weapons",
        "Drugs & Tobacco",
        "Products",
        "Pills",
        "Drugs & Tobacco Paraphernalia & Use",
        "Smoking",
        "Rude Gestures",
        "Middle Finger",
        "Gambling",
    ]


def test_odd_labels_do_not_break_the_index(index):
    odd = json.dumps(
        {
            "source-ref": "s3://b/odd.jpg",
            "detect-moderation-labels": {
                "ModerationLabels": [
                    "not a label",
                    {"Confidence": 80.0},
                    {"Name": "Gambling", "Confidence": "high"},
                    {"Name": "Gambling", "Confidence": True},
                    {"Name": "Loop", "ParentName": "Loop", "Confidence": 40.0},
                ],
                "ContentTypes": "none",
            },
        }
    )
    no_response = json.dumps({"source-ref": "s3://b/bare.jpg"})
    assert index.index("j", [odd, no_response], None) == 2
    assert positions(index, ResultFilters(label="Gambling"), "j") == [1]
    assert positions(index, ResultFilters(label="Gambling", min_confidence=0), "j") == []
    assert positions(index, ResultFilters(label="Loop", max_confidence=40), "j") == [1]
    assert positions(index, ResultFilters(no_labels=True), "j") == [2]
    bare = index.item("j", 2)
    assert (bare.labels, bare.content_types) == ([], [])
    assert index.item("j", 1).content_types == []


# Neighbours.


def test_neighbours(indexed):
    assert indexed.neighbours("j1", 3) == (2, 4)
    assert indexed.neighbours("j1", 1) == (None, 2)
    assert indexed.neighbours("j1", 6) == (5, None)
    drugs = ResultFilters(label="Drugs & Tobacco")
    assert indexed.neighbours("j1", 1, drugs) == (None, 3)
    assert indexed.neighbours("j1", 3, drugs) == (1, None)
    # The position itself need not match.
    assert indexed.neighbours("j1", 2, drugs) == (1, 3)
    assert indexed.neighbours("j1", 4, ResultFilters(no_labels=True)) == (2, 6)
    assert indexed.neighbours("j1", 4, ResultFilters(no_labels=True, label="Pills")) == (None, None)
    assert indexed.neighbours("j1", 3, ResultFilters(min_confidence=40, max_confidence=55)) == (
        None,
        5,
    )


# Documents by source-ref.


def test_documents_for_many_source_refs(index):
    lines = [line(f"s3://b/{n % 1500}.jpg") for n in range(1, 1601)]
    index.index("j", lines, None)
    wanted = [f"s3://b/{n}.jpg" for n in range(1499, -1, -1)][:1200] + ["s3://b/missing.jpg"]
    found = index.documents("j", wanted)
    # refs 300-1499, and 1-100 again on lines 1501-1600 for refs 1-100: only 300-1499 asked.
    assert [position for position, _ in found] == list(range(300, 1500))
    assert all(doc["source-ref"] == f"s3://b/{n}.jpg" for n, doc in found)
    twice = index.documents("j", ["s3://b/7.jpg", "s3://b/7.jpg"])
    assert [position for position, _ in twice] == [7, 1507]
    assert index.documents("j", []) == []


# Errors and statistics.


def test_errors_in_line_order(indexed):
    entries, total = indexed.errors("j1")
    assert total == 3
    assert entries == [SUMMARY["errors"][1], SUMMARY["errors"][2], SUMMARY["errors"][0]]
    assert "source-ref" not in entries[2]
    assert indexed.errors("j1", offset=1, limit=1) == ([SUMMARY["errors"][2]], 3)


def test_statistics(indexed):
    assert indexed.statistics("j1") == {
        "total-json-lines": 9,
        "valid-json-lines": 6,
        "invalid-json-lines": 3,
        "unreadable-result-lines": 0,
    }


def test_without_a_summary(index):
    index.index("j", LINES[:2], None)
    assert index.statistics("j") == {"unreadable-result-lines": 0}
    assert index.errors("j") == ([], 0)


def test_many_errors_page(index):
    errors = [{"line-numer": n, "code": "INVALID_JSON", "message": "x"} for n in range(5000, 0, -1)]
    index.index("j", [], {"statistics": {}, "errors": errors})
    entries, total = index.errors("j", offset=2500, limit=3)
    assert total == 5000 and [e["line-numer"] for e in entries] == [2501, 2502, 2503]


def test_unreadable_lines_are_skipped_and_counted(index):
    lines = [
        LINES[0],
        "{not json",
        b"\xff\xfe not utf-8",
        "[1, 2]",
        json.dumps({"detect-moderation-labels": {}}),
        json.dumps({"source-ref": 7}),
        "",
        "   ",
        LINES[1].encode() + b"\r\n",
    ]
    assert index.index("j", lines, SUMMARY) == 2
    assert index.line_count("j") == 2
    assert index.statistics("j")["unreadable-result-lines"] == 5
    # Positions stay line numbers in the file.
    assert [item.position for item in index.page("j").items] == [1, 9]


# Re-indexing and forgetting.


def test_reindexing_replaces_the_index(indexed):
    assert indexed.index("j1", [line("s3://b/new.jpg", [EXPLICIT]), "oops"], None) == 1
    page = indexed.page("j1")
    assert [item.source_ref for item in page.items] == ["s3://b/new.jpg"] and page.total == 1
    assert positions(indexed, ResultFilters(label="Pills")) == []
    assert positions(indexed, ResultFilters(label="Explicit")) == [1]
    assert indexed.statistics("j1") == {"unreadable-result-lines": 1}
    assert indexed.errors("j1") == ([], 0)
    # The taxonomy, not the line's ParentName, says what is above a taxonomy label.
    assert positions(indexed, ResultFilters(label="Explicit Nudity")) == []
    assert indexed.label_names("j1") == ["Explicit"]
    # Nothing of the old index is left behind.
    assert rows(indexed, "console_result_lines") == 1
    assert rows(indexed, "console_result_labels") == 1
    assert rows(indexed, "console_result_errors") == 0
    assert rows(indexed, "console_result_generations") == 1


def test_other_jobs_are_untouched(indexed):
    indexed.index("j2", LINES[:1], None)
    indexed.index("j2", LINES[:2], None)
    indexed.forget("j2")
    assert indexed.page("j1").total == 6 and indexed.errors("j1")[1] == 3
    assert not indexed.is_indexed("j2")


def test_readers_see_the_old_index_until_the_new_one_is_complete(indexed, monkeypatch):
    monkeypatch.setattr("service.console.results_index.BATCH_LINES", 10)
    seen = []

    def new_lines():
        for n in range(1, 101):
            if n % 25 == 0:
                seen.append(indexed.page("j1", ResultFilters(label="Drugs & Tobacco")).total)
                seen.append(indexed.page("j1").total)
            yield line(f"s3://b/new{n}.jpg")

    indexed.index("j1", new_lines(), None)
    assert seen == [2, 6] * 4
    assert indexed.page("j1").total == 100
    assert positions(indexed, ResultFilters(label="Drugs & Tobacco")) == []


def test_a_failed_build_leaves_the_old_index(indexed, monkeypatch):
    monkeypatch.setattr("service.console.results_index.BATCH_LINES", 10)

    def broken():
        yield from (line(f"s3://b/new{n}.jpg") for n in range(50))
        raise OSError("connection reset")

    with pytest.raises(OSError):
        indexed.index("j1", broken(), None)
    assert indexed.page("j1").total == 6 and indexed.statistics("j1")["total-json-lines"] == 9
    assert rows(indexed, "console_result_lines") == 6
    assert rows(indexed, "console_result_generations") == 1


def test_forget(indexed):
    indexed.forget("j1")
    assert not indexed.is_indexed("j1") and indexed.statistics("j1") is None
    assert indexed.page("j1").total == 0
    for table in ("lines", "labels", "errors", "generations", "jobs"):
        assert rows(indexed, f"console_result_{table}") == 0, table
    indexed.forget("j1")  # nothing to forget


def test_forgetting_a_job_stops_its_build(indexed, monkeypatch):
    monkeypatch.setattr("service.console.results_index.BATCH_LINES", 10)

    def lines():
        for n in range(1, 60):
            if n == 30:
                indexed.forget("j1")
            yield line(f"s3://b/{n}.jpg")

    with pytest.raises(RuntimeError, match="forgotten"):
        indexed.index("j1", lines(), None)
    assert not indexed.is_indexed("j1")
    assert rows(indexed, "console_result_lines") == 0
    assert rows(indexed, "console_result_generations") == 0


def test_the_rows_of_a_dead_build_are_removed_once_stale(indexed, clock, monkeypatch):
    monkeypatch.setattr("service.console.results_index.BATCH_LINES", 10)
    # The process dies mid-build: nothing marks the build as abandoned.
    monkeypatch.setattr(ResultsIndex, "_retire", lambda self, generation: None)

    def dying():
        yield from (line(f"s3://b/{n}.jpg") for n in range(25))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        indexed.index("j1", dying(), None)
    assert rows(indexed, "console_result_lines") == 6 + 20
    indexed.index("j1", LINES, SUMMARY)  # a build still fresh is left alone: it may be running
    assert rows(indexed, "console_result_lines") == 6 + 20
    clock.now += STALE_BUILD_SECS + 1
    indexed.index("j1", LINES, SUMMARY)
    assert rows(indexed, "console_result_lines") == 6
    assert indexed.page("j1").total == 6


def test_the_registry_writes_to_its_file_while_an_index_is_built(index, monkeypatch):
    monkeypatch.setattr("service.console.results_index.BATCH_LINES", 10)
    registry = JobRegistry(index.path)
    started = []

    def lines():
        for n in range(50):
            if n == 25:  # the build holds no write lock between batches
                started.append(registry.start(_job().request)[0].job_id)
            yield line(f"s3://b/{n}.jpg")

    index.index("j1", lines(), None)
    assert registry.get(started[0]).status == "CREATED"
    assert index.page("j1").total == 50


# Filters as URL query parameters.


def test_to_query():
    assert ResultFilters().to_query() == {} and ResultFilters().is_empty()
    filters = ResultFilters("Pills", 50.0, 97.25, "Animated", False)
    assert filters.to_query() == {"label": "Pills", "min": "50", "max": "97.25", "type": "Animated"}
    assert ResultFilters(no_labels=True).to_query() == {"none": "1"}
    assert not ResultFilters(min_confidence=0).is_empty()
    assert ResultFilters(label="", content_type="").is_empty()


def test_from_query():
    query = {"label": "Pills", "min": " 50 ", "max": "97.25", "type": "Animated", "page": "3"}
    assert ResultFilters.from_query(query) == ResultFilters("Pills", 50.0, 97.25, "Animated")
    empty = {"label": "", "min": "", "max": "", "type": "", "none": ""}
    assert ResultFilters.from_query(empty) == ResultFilters()
    assert ResultFilters.from_query({"none": "on"}).no_labels
    assert not ResultFilters.from_query({"none": "0"}).no_labels


@pytest.mark.parametrize(
    "query, message",
    [
        ({"min": "abc"}, "minimum confidence must be a number"),
        ({"max": "1,5"}, "maximum confidence must be a number"),
        ({"min": "150"}, "from 0 to 100"),
        ({"max": "-1"}, "from 0 to 100"),
        ({"min": "nan"}, "from 0 to 100"),
        ({"max": "inf"}, "from 0 to 100"),
        ({"min": "80", "max": "20"}, r"minimum confidence \(80\) is above the maximum \(20\)"),
        ({"none": "maybe"}, "'none' must be 1 or 0"),
    ],
)
def test_from_query_says_what_is_wrong(query, message):
    with pytest.raises(ValueError, match=message):
        ResultFilters.from_query(query)


def test_filters_are_checked_when_made():
    with pytest.raises(ValueError, match="above the maximum"):
        ResultFilters(min_confidence=60, max_confidence=40)
    with pytest.raises(ValueError, match="from 0 to 100"):
        ResultFilters(max_confidence=float("nan"))
    with pytest.raises(ValueError, match="must be a number"):
        ResultFilters(min_confidence="50")


_confidences = st.one_of(st.none(), st.floats(0, 100), st.integers(0, 100).map(float))


@st.composite
def filters(draw) -> ResultFilters:
    low, high = sorted(
        (draw(_confidences), draw(_confidences)), key=lambda v: (v is None, v or 0.0)
    )
    if low is not None and high is None and draw(st.booleans()):
        low, high = None, low
    return ResultFilters(
        label=draw(st.one_of(st.none(), st.text(min_size=1))),
        min_confidence=low,
        max_confidence=high,
        content_type=draw(st.one_of(st.none(), st.sampled_from(["Animated", "Illustrated"]))),
        no_labels=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(filters())
def test_query_round_trip(filters):
    query = filters.to_query()
    assert all(isinstance(value, str) and value for value in query.values())
    assert ResultFilters.from_query(query) == filters
    assert filters.is_empty() == (query == {})


# S3.


def _job(**overrides) -> JobRecord:
    fields = {
        "job_id": "j1",
        "request": {
            "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
            "Input": {"S3Object": {"Bucket": "in", "Name": "manifest.jsonl"}},
            "OutputConfig": {"S3Bucket": "out", "S3KeyPrefix": "results"},
        },
        "status": "SUCCEEDED",
        "created": 0.0,
        "results_key": "results/j1/results.jsonl",
        "summary_key": "results/j1/manifest-summary.json",
    }
    fields.update(overrides)
    return JobRecord(**fields)


def test_index_job_reads_results_and_summary_from_s3(s3, index):
    s3.create_bucket(Bucket="out")
    body = ("\n".join(LINES) + "\n").encode()
    s3.put_object(Bucket="out", Key="results/j1/results.jsonl", Body=body)
    s3.put_object(
        Bucket="out", Key="results/j1/manifest-summary.json", Body=json.dumps(SUMMARY).encode()
    )
    assert index_job(index, _job(), s3) == 6
    assert [item.source_ref for item in index.page("j1").items] == [
        f"s3://b/{n}.jpg" for n in range(1, 7)
    ]
    assert positions(index, ResultFilters(label="Drugs & Tobacco")) == [1, 3]
    assert index.errors("j1")[1] == 3
    assert index.statistics("j1")["valid-json-lines"] == 6
    assert index.item("j1", 4).document == json.loads(LINES[3])


def test_index_job_without_a_summary(s3, index):
    s3.create_bucket(Bucket="out")
    s3.put_object(Bucket="out", Key="r/results.jsonl", Body="\n".join(LINES).encode())
    job = _job(results_key="r/results.jsonl", summary_key="r/manifest-summary.json")
    assert index_job(index, job, s3) == 6
    assert index.statistics("j1") == {"unreadable-result-lines": 0}
    s3.put_object(Bucket="out", Key="r/manifest-summary.json", Body=b"{truncated")
    assert index_job(index, job, s3) == 6
    assert index.statistics("j1") == {"unreadable-result-lines": 0}


def test_index_job_streams_a_large_object(s3, index):
    s3.create_bucket(Bucket="out")
    body = "".join(line(f"s3://b/{n}.jpg", [PILLS] if n % 2 else []) + "\n" for n in range(20_000))
    s3.put_object(Bucket="out", Key="results/j1/results.jsonl", Body=body.encode())
    assert index_job(index, _job(summary_key=None), s3) == 20_000
    assert index.page("j1", ResultFilters(label="Pills")).total == 10_000


def test_index_job_wants_a_succeeded_job(s3, index):
    with pytest.raises(ValueError, match="no results"):
        index_job(index, _job(status="IN_PROGRESS", results_key=None), s3)


# Scale.


def _big_lines(count: int):
    """``count`` lines, made one at a time: a quarter with Pills, a quarter with Violence and
    Weapons (confidences spread from 30 to 100), a fifth animated."""
    start = '{"source-ref":"s3://b/%d.jpg","detect-moderation-labels":{"ModerationLabels":['
    pills = '{"Name":"Pills","Confidence":91.0,"ParentName":"Products"}'
    violence = (
        '{"Name":"Violence","Confidence":%d.5},'
        '{"Name":"Weapons","Confidence":%d.0,"ParentName":"Violence"}'
    )
    for n in range(count):
        labels = (
            pills if n % 4 == 0 else violence % (40 + n % 60, 30 + n % 70) if n % 4 == 1 else ""
        )
        types = '{"Name":"Animated","Confidence":88.0}' if n % 5 == 0 else ""
        yield f'{start % n}{labels}],"ContentTypes":[{types}]}}}}'


def test_a_hundred_thousand_lines_stream_through(index):
    count = 100_000
    first_batch_in = []

    def lines():
        with sqlite3.connect(index.path) as db:
            for n in range(count):
                if n == count // 2:  # half way, the first half is in the file already
                    (written,) = db.execute("SELECT COUNT(*) FROM console_result_lines").fetchone()
                    first_batch_in.append(written)
                yield f'{{"source-ref":"s3://b/{n}.jpg","detect-moderation-labels":{{}}}}'

    tracemalloc.start()
    try:
        started = time.perf_counter()
        assert index.index("big", lines(), None) == count
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\nindexed {count} lines in {took:.1f} s (traced), peak {peak / 2**20:.1f} MiB")
    assert peak < 16 * 2**20
    assert count // 2 - first_batch_in[0] <= 2000
    assert index.line_count("big") == index.image_count("big") == count


def test_paging_a_hundred_thousand_lines_is_fast(index):
    count = 100_000
    started = time.perf_counter()
    index.index("big", _big_lines(count), None)
    print(f"\nindexed {count} lines in {time.perf_counter() - started:.1f} s")
    cases = {
        "none": ResultFilters(),
        "label": ResultFilters(label="Drugs & Tobacco"),
        "label+min": ResultFilters(label="Violence", min_confidence=80),
        "min": ResultFilters(min_confidence=80),
        "range": ResultFilters(min_confidence=50, max_confidence=60),
        "type": ResultFilters(content_type="Animated"),
        "label+type": ResultFilters(label="Violence", content_type="Animated"),
        "type+range": ResultFilters(content_type="Animated", min_confidence=50, max_confidence=60),
        "no labels": ResultFilters(no_labels=True),
    }
    for name, filters in cases.items():
        for offset in (0, None):
            page = index.page("big", filters, limit=0)
            offset = max(page.total - 48, 0) if offset is None else offset
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                page = index.page("big", filters, offset=offset)
                timings.append(time.perf_counter() - started)
            assert len(page.items) == 48
            print(
                f"page() {name:10s} total {page.total:6d} offset {offset:6d}:"
                f" {min(timings) * 1000:5.1f} ms"
            )
    assert index.page("big", ResultFilters(label="Pills")).total == count // 4
    assert index.page("big", ResultFilters(no_labels=True)).total == count // 2

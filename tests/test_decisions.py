"""Console verification decisions: compare-and-set saves, history, races, export, readiness."""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import pickle
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.console.decisions import (
    Decision,
    InvalidDecision,
    StaleDecision,
    VerificationStore,
    can_train,
    check_decision,
    training_readiness,
    verification_report,
)
from tests.conftest import parse_jsonl
from training.verification import main
from training.verification_report import build_ground_truth

ROOT = pathlib.Path(__file__).resolve().parent.parent
JOB = "job-1"

CHAINS = {  # a prediction comes with its parents, as the model returns it
    "Pills": ["Pills", "Products", "Drugs & Tobacco"],
    "Alcoholic Beverages": ["Alcoholic Beverages", "Alcohol"],
    "Weapons": ["Weapons", "Violence"],
    "Gambling": ["Gambling"],
    "Middle Finger": ["Middle Finger", "Rude Gestures"],
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


class Clock:
    """1000.0, 1001.0, ...: every decision has its own time."""

    def __init__(self):
        self._ticks = itertools.count(1000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def store(tmp_path):
    return VerificationStore(str(tmp_path / "registry.sqlite"), clock=Clock())


# --- Saving and reading -----------------------------------------------------------------------


def test_decide_saves_and_each_change_is_the_next_revision(store):
    assert store.decision(JOB, "s3://b/1.jpg") is None
    first = store.decide(
        JOB, "s3://b/1.jpg", {"Alcohol": True}, reviewer="ana", expected_revision=0
    )
    assert first == Decision(JOB, "s3://b/1.jpg", {"Alcohol": True}, "ana", 1000.0, 1)
    assert store.decision(JOB, "s3://b/1.jpg") == first

    second = store.decide(
        JOB, "s3://b/1.jpg", {"Alcohol": False}, reviewer="ben", expected_revision=1
    )
    assert (second.revision, second.reviewer, second.decided_at) == (2, "ben", 1001.0)
    store.decide(JOB, "s3://b/2.jpg", {}, reviewer="ana", expected_revision=0)

    assert store.get(JOB, ["s3://b/1.jpg", "s3://b/2.jpg", "s3://b/none.jpg"]) == {
        "s3://b/1.jpg": second,
        "s3://b/2.jpg": store.decision(JOB, "s3://b/2.jpg"),
    }
    assert store.get(JOB, []) == {}
    assert store.count(JOB) == 2 and store.count("another-job") == 0
    assert store.get("another-job", ["s3://b/1.jpg"]) == {}
    assert second.to_line() == {"source-ref": "s3://b/1.jpg", "labels": {"Alcohol": False}}
    assert second.to_json() == {
        "sourceRef": "s3://b/1.jpg",
        "labels": {"Alcohol": False},
        "reviewer": "ben",
        "decidedAt": 1001.0,
        "revision": 2,
    }
    assert store.history(JOB, "s3://b/1.jpg") == [
        {**first.to_json()},
        {**second.to_json()},
    ]


def test_get_reads_many_images_in_chunks(store, monkeypatch):
    monkeypatch.setattr("service.console.decisions._IN_CHUNK", 4)
    refs = [f"s3://b/{i}.jpg" for i in range(23)]
    for ref in refs[::2]:
        store.decide(JOB, ref, {}, reviewer="ana", expected_revision=0)
    found = store.get(JOB, refs)
    assert sorted(found) == sorted(refs[::2])
    assert all(found[ref].source_ref == ref for ref in found)


def test_decisions_come_in_the_order_first_decided(store, monkeypatch):
    monkeypatch.setattr("service.console.decisions._PAGE", 2)  # several pages
    for ref in ("c", "a", "d", "b", "e"):
        store.decide(JOB, ref, {}, reviewer="ana", expected_revision=0)
    store.decide(JOB, "c", {"Gambling": True}, reviewer="ben", expected_revision=1)
    store.withdraw(JOB, "d", reviewer="ben", expected_revision=1)
    store.decide("job-2", "z", {}, reviewer="ana", expected_revision=0)
    assert [d.source_ref for d in store.decisions(JOB)] == ["c", "a", "b", "e"]
    # Withdrawn and decided again: the image keeps its place.
    store.decide(JOB, "d", {}, reviewer="cy", expected_revision=0)
    assert [d.source_ref for d in store.decisions(JOB)] == ["c", "a", "d", "b", "e"]
    assert [d.source_ref for d in store.decisions("job-2")] == ["z"]
    assert list(store.decisions("no-job")) == []


def test_a_stale_write_is_refused_with_the_decision_stored_now(store):
    # Ana and Ben both open the image while it is not reviewed.
    ana = store.decide(JOB, "1.jpg", {"Gambling": True}, reviewer="ana", expected_revision=0)
    with pytest.raises(StaleDecision) as raised:
        store.decide(JOB, "1.jpg", {"Gambling": False}, reviewer="ben", expected_revision=0)
    assert raised.value.current == ana
    assert raised.value.current.reviewer == "ana"
    assert "decided by ana (revision 1)" in str(raised.value)
    assert store.decision(JOB, "1.jpg") == ana  # not overwritten
    assert len(store.history(JOB, "1.jpg")) == 1

    # Ben read Ana's decision; then Ana changes it again: Ben's revision 1 is stale.
    again = store.decide(JOB, "1.jpg", {}, reviewer="ana", expected_revision=1)
    with pytest.raises(StaleDecision) as raised:
        store.decide(JOB, "1.jpg", {"Gambling": False}, reviewer="ben", expected_revision=1)
    assert raised.value.current == again
    # A revision from the future is stale too.
    with pytest.raises(StaleDecision):
        store.decide(JOB, "1.jpg", {}, reviewer="ben", expected_revision=7)
    # The exception crosses processes intact.
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (copy.current, str(copy)) == (raised.value.current, str(raised.value))


def test_withdraw_takes_a_decision_back_and_revisions_keep_growing(store):
    store.decide(JOB, "1.jpg", {"Pills": True}, reviewer="ana", expected_revision=0)
    store.withdraw(JOB, "1.jpg", reviewer="ana", expected_revision=1)
    assert store.decision(JOB, "1.jpg") is None
    assert store.count(JOB) == 0 and store.get(JOB, ["1.jpg"]) == {}

    # Ben still sees Ana's revision 1: his change and his undo are both stale now.
    with pytest.raises(StaleDecision) as raised:
        store.decide(JOB, "1.jpg", {"Pills": False}, reviewer="ben", expected_revision=1)
    assert raised.value.current is None
    assert "not reviewed any more" in str(raised.value)
    with pytest.raises(StaleDecision):
        store.withdraw(JOB, "1.jpg", reviewer="ben", expected_revision=1)
    with pytest.raises(InvalidDecision, match="nothing to undo"):
        store.withdraw(JOB, "1.jpg", reviewer="ben", expected_revision=0)
    with pytest.raises(InvalidDecision, match="nothing to undo"):
        store.withdraw(JOB, "never.jpg", reviewer="ben", expected_revision=0)

    # Not reviewed again: decided with expected_revision 0, and the revision goes on from 2.
    cy = store.decide(JOB, "1.jpg", {"Pills": False}, reviewer="cy", expected_revision=0)
    assert cy.revision == 3
    history = store.history(JOB, "1.jpg")
    assert [(h["revision"], h["reviewer"], h["labels"]) for h in history] == [
        (1, "ana", {"Pills": True}),
        (2, "ana", None),
        (3, "cy", {"Pills": False}),
    ]
    assert [h["decidedAt"] for h in history] == [1000.0, 1001.0, 1002.0]


def test_a_restart_keeps_decisions_history_and_custom_labels(tmp_path):
    path = str(tmp_path / "registry.sqlite")
    first = VerificationStore(path, clock=Clock())
    first.declare_custom_label(JOB, "Hand Gestures", "Rude Gestures")
    first.decide(JOB, "1.jpg", {"Hand Gestures": True}, reviewer="ana", expected_revision=0)
    first.decide(JOB, "2.jpg", {}, reviewer="ben", expected_revision=0)
    first.decide(JOB, "1.jpg", {}, reviewer="ben", expected_revision=1)
    before = (
        list(first.decisions(JOB)),
        first.history(JOB, "1.jpg"),
        first.custom_labels(JOB),
    )

    again = VerificationStore(path)
    assert (list(again.decisions(JOB)), again.history(JOB, "1.jpg"), again.custom_labels(JOB)) == (
        before
    )
    assert again.count(JOB) == 2
    with pytest.raises(StaleDecision):  # the revisions survive too
        again.decide(JOB, "1.jpg", {}, reviewer="cy", expected_revision=1)
    assert again.decide(JOB, "1.jpg", {}, reviewer="cy", expected_revision=2).revision == 3


def test_forget_deletes_one_job_only(store):
    for job in (JOB, "job-2"):
        store.declare_custom_label(job, "Hand Gestures", "")
        store.decide(job, "1.jpg", {"Hand Gestures": True}, reviewer="ana", expected_revision=0)
    store.forget(JOB)
    assert store.count(JOB) == 0 and store.history(JOB, "1.jpg") == []
    assert store.custom_labels(JOB) == {}
    assert store.count("job-2") == 1 and store.custom_labels("job-2") == {"Hand Gestures": ""}
    # Forgotten: the image starts again from revision 1.
    assert store.decide(JOB, "1.jpg", {}, reviewer="ana", expected_revision=0).revision == 1


def test_decide_refuses_what_no_verification_line_may_hold(store):
    for labels, message in [
        ({"Hand Gestures": True}, "unknown label 'Hand Gestures'"),
        ({"Alcohol": 1}, "label 'Alcohol' must be true (present) or false (absent), not 1"),
        ({"Alcohol": "yes"}, "must be true (present) or false (absent)"),
        (["Alcohol"], '"labels" must be an object'),
    ]:
        with pytest.raises(InvalidDecision) as raised:
            store.decide(JOB, "1.jpg", labels, reviewer="ana", expected_revision=0)
        assert message in str(raised.value)
    for reviewer, revision, message in [
        ("", 0, "reviewer must be a non-empty string"),
        ("ana", -1, "expected_revision must be the revision you read"),
        ("ana", True, "expected_revision must be the revision you read"),
        ("ana", "1", "expected_revision must be the revision you read"),
    ]:
        with pytest.raises(InvalidDecision, match=message):
            store.decide(JOB, "1.jpg", {}, reviewer=reviewer, expected_revision=revision)
    with pytest.raises(InvalidDecision, match="source_ref"):
        store.decide(JOB, "", {}, reviewer="ana", expected_revision=0)
    assert store.count(JOB) == 0 and store.history(JOB, "1.jpg") == []

    # Declared for this job, the custom label is known; for another job it is not.
    store.declare_custom_label(JOB, "Hand Gestures", "Rude Gestures")
    store.decide(JOB, "1.jpg", {"Hand Gestures": True}, reviewer="ana", expected_revision=0)
    with pytest.raises(InvalidDecision, match="unknown label"):
        store.decide("job-2", "1.jpg", {"Hand Gestures": True}, reviewer="a", expected_revision=0)


# --- Custom labels ----------------------------------------------------------------------------


def test_custom_labels_are_declared_in_order_and_checked(store):
    store.declare_custom_label(JOB, " Hand Gestures ", " Rude Gestures ")
    store.declare_custom_label(JOB, "Vaping", "Drugs & Tobacco Paraphernalia & Use")
    store.declare_custom_label(JOB, "Memes", "")
    store.declare_custom_label(JOB, "Hand Gestures", "Rude Gestures")  # again: nothing
    assert store.custom_labels(JOB) == {
        "Hand Gestures": "Rude Gestures",
        "Vaping": "Drugs & Tobacco Paraphernalia & Use",
        "Memes": "",
    }
    assert list(store.custom_labels(JOB)) == ["Hand Gestures", "Vaping", "Memes"]
    assert store.custom_labels("job-2") == {}

    for name, parent, message in [
        ("Hand Gestures", "", "already declared under 'Rude Gestures'"),
        ("Memes", "Alcohol", "already declared at level 1"),
        ("   ", "Alcohol", "a custom label needs a name"),
        ("", "", "a custom label needs a name"),
        ("Alcohol", "", "'Alcohol' is already a taxonomy label"),
        ("Tea", "Drinks", "the parent 'Drinks' of custom label 'Tea' is not a taxonomy label"),
        ("Shots", "Drinking", "would be at level 4"),
        ("Cats", "Memes", "the parent 'Memes' of custom label 'Cats' is not a taxonomy label"),
    ]:
        with pytest.raises(InvalidDecision) as raised:
            store.declare_custom_label(JOB, name, parent)
        assert message in str(raised.value)
        assert "--custom_label" not in str(raised.value)
    assert len(store.custom_labels(JOB)) == 3


# --- Races ------------------------------------------------------------------------------------

ROUNDS = 25


def _race(store: VerificationStore, reviewer: str, start: Callable[[], object]) -> list[int]:
    """Once ``start`` returns: reads the image's revision and saves on top of it, again and
    again until it reaches ROUNDS; the revisions this reviewer's writes made."""
    won = []
    start()
    while True:
        current = store.decision(JOB, "1.jpg")
        seen = current.revision if current is not None else 0
        if seen >= ROUNDS:
            return won
        try:
            decision = store.decide(
                JOB, "1.jpg", {"Gambling": seen % 2 == 0}, reviewer=reviewer, expected_revision=seen
            )
        except StaleDecision as stale:  # another saved since the read: it is shown the reviewer
            assert stale.current is not None and stale.current.revision > seen
            assert stale.current.reviewer != reviewer
        else:
            assert decision.revision == seen + 1
            won.append(decision.revision)
        # A reviewer's next save comes a little later, not in step with the others'.
        time.sleep(random.uniform(0, 0.004))


# A reviewer in a process of its own: says "ready", races once a line comes on stdin, prints
# the revisions it won.
_RACER = """
import json, sys
from service.console.decisions import VerificationStore
from tests.test_decisions import _race
store = VerificationStore(sys.argv[1])
print("ready", flush=True)
print(json.dumps(_race(store, sys.argv[2], sys.stdin.readline)), flush=True)
"""


def _check_race(store: VerificationStore, wins: dict[str, list[int]]) -> None:
    """Every revision was won by exactly one reviewer, and no write was lost."""
    everything = sorted(revision for won in wins.values() for revision in won)
    assert everything == list(range(1, ROUNDS + 1))
    history = store.history(JOB, "1.jpg")
    assert [h["revision"] for h in history] == everything
    by_revision = {revision: reviewer for reviewer, won in wins.items() for revision in won}
    assert [h["reviewer"] for h in history] == [by_revision[h["revision"]] for h in history]
    assert store.decision(JOB, "1.jpg").revision == ROUNDS
    assert store.decision(JOB, "1.jpg").reviewer == by_revision[ROUNDS]


def test_threads_racing_on_one_image_win_each_revision_once(tmp_path):
    store = VerificationStore(str(tmp_path / "registry.sqlite"))
    start = threading.Barrier(4)
    wins: dict[str, list[int]] = {}

    def run(reviewer: str) -> None:
        wins[reviewer] = _race(store, reviewer, lambda: start.wait(timeout=60))

    threads = [threading.Thread(target=run, args=(f"reviewer-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(wins) == [f"reviewer-{i}" for i in range(4)]  # no thread failed
    _check_race(store, wins)


def test_processes_racing_on_one_image_win_each_revision_once(tmp_path):
    path = str(tmp_path / "registry.sqlite")
    store = VerificationStore(path)  # the tables exist before the race
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = {
        name: subprocess.Popen(
            [sys.executable, "-c", _RACER, path, name],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("ana", "ben")
    }
    try:
        for racer in racers.values():
            assert racer.stdout.readline() == "ready\n", racer.communicate()[1]
        for racer in racers.values():  # both are waiting: go
            racer.stdin.write("go\n")
            racer.stdin.flush()
        answers = {name: racer.communicate(timeout=120) for name, racer in racers.items()}
    finally:
        for racer in racers.values():
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert {name: racer.returncode for name, racer in racers.items()} == {"ana": 0, "ben": 0}, (
        answers
    )
    _check_race(store, {name: json.loads(out) for name, (out, _) in answers.items()})


LABELS = st.dictionaries(st.sampled_from(["Alcohol", "Gambling", "Pills"]), st.booleans())
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["ana", "ben", "cy"]),
        st.sampled_from(["decide", "withdraw"]),
        st.none() | st.integers(0, 5),  # None: the revision stored now, as a fresh read
        LABELS,
    ),
    max_size=20,
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    return VerificationStore(str(tmp_path_factory.mktemp("property") / "registry.sqlite"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_history_holds_every_successful_write_and_nothing_else(shared_store, operations):
    store, job = shared_store, f"job-{uuid.uuid4()}"
    live = 0  # the revision a reviewer sees: 0 when not reviewed
    writes: list[tuple[str, dict | None]] = []
    for reviewer, action, seen, labels in operations:
        expected = live if seen is None else seen
        before = live
        try:
            if action == "decide":
                decision = store.decide(
                    job, "1.jpg", labels, reviewer=reviewer, expected_revision=expected
                )
                assert decision.revision == len(writes) + 1
                writes.append((reviewer, labels))
                live = decision.revision
            else:
                store.withdraw(job, "1.jpg", reviewer=reviewer, expected_revision=expected)
                writes.append((reviewer, None))
                live = 0
        except StaleDecision as stale:
            assert expected != before
            assert (stale.current.revision if stale.current else 0) == before
        except InvalidDecision:
            assert action == "withdraw" and expected == before == 0
        else:
            assert expected == before and (action == "decide" or before != 0)
    history = store.history(job, "1.jpg")
    assert [(h["reviewer"], h["labels"]) for h in history] == writes
    assert [h["revision"] for h in history] == list(range(1, len(writes) + 1))
    current = store.decision(job, "1.jpg")
    if live:
        assert current is not None and current.revision == live == len(writes)
        assert (current.reviewer, current.labels) == writes[-1]
    else:
        assert current is None
    assert store.count(job) == (1 if live else 0)


# --- Checks and export through build_ground_truth ---------------------------------------------


def test_check_decision_says_what_the_builder_refuses():
    document = result("s3://b/1.jpg", ("Alcoholic Beverages", 80), ("Gambling", 30))
    custom = {"Hand Gestures": "Rude Gestures"}

    def check(labels, threshold=50):
        check_decision(document, labels, confidence_threshold=threshold, custom_labels=custom)

    # Accepted: confirmations, rejections, additions, a custom label.
    check({})
    check({"Alcoholic Beverages": False, "Alcohol": False})
    check({"Alcoholic Beverages": False, "Drinking": True})
    check({"Hand Gestures": True, "Gambling": True})
    check({"Alcohol": False}, threshold=90)  # nothing below it was predicted at 90

    for labels, message in [
        ({"Tea": True}, "unknown label 'Tea'"),
        ({"Alcohol": "no"}, "label 'Alcohol' must be true (present) or false (absent)"),
        (
            {"Alcohol": False},
            "'Alcohol' is marked absent but 'Alcoholic Beverages' below it is predicted and not "
            "marked; mark 'Alcoholic Beverages' false too, or 'Alcohol' true",
        ),
        (
            {"Alcoholic Beverages": False, "Alcohol": False, "Drinking": True},
            "'Alcohol' is marked absent but 'Drinking' below it is marked present",
        ),
        (
            {"Rude Gestures": False, "Hand Gestures": True},
            "'Rude Gestures' is marked absent but 'Hand Gestures' below it is marked present",
        ),
        ([], '"labels" must be an object'),
    ]:
        with pytest.raises(InvalidDecision) as raised:
            check(labels)
        assert message in str(raised.value)
        assert not str(raised.value).startswith("verifications line")

    with pytest.raises(InvalidDecision, match="the results of s3://b/1.jpg cannot be read"):
        check_decision(
            {"source-ref": "s3://b/1.jpg"}, {}, confidence_threshold=50, custom_labels={}
        )


def _write_jsonl(path, documents) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return str(path)


def test_the_console_report_is_the_command_lines(store, tmp_path, capsys):
    store.declare_custom_label(JOB, "Hand Gestures", "Rude Gestures")
    results = [
        result("s3://b/1.jpg", ("Pills", 90)),
        result("s3://b/2.jpg", ("Alcoholic Beverages", 70), ("Gambling", 40)),
        result("s3://b/3.jpg", ("Weapons", 80)),
        result("s3://b/4.jpg"),
        result("s3://b/5.jpg", ("Middle Finger", 95)),
        result("s3://b/6.jpg", ("Gambling", 55)),  # never reviewed
        result("s3://b/7.jpg", ("Pills", 60)),
    ]
    decide = store.decide
    decide(JOB, "s3://b/3.jpg", {"Weapons": False}, reviewer="ana", expected_revision=0)
    decide(JOB, "s3://b/1.jpg", {}, reviewer="ben", expected_revision=0)
    decide(
        JOB,
        "s3://b/2.jpg",
        {"Alcoholic Beverages": False, "Drinking": True, "Gambling": True},
        reviewer="ana",
        expected_revision=0,
    )
    decide(JOB, "s3://b/5.jpg", {"Hand Gestures": True}, reviewer="cy", expected_revision=0)
    decide(JOB, "s3://b/4.jpg", {"Gambling": True}, reviewer="ben", expected_revision=0)
    decide(
        JOB, "s3://b/1.jpg", {"Pills": False, "Products": True}, reviewer="cy", expected_revision=1
    )  # changed
    decide(JOB, "s3://b/7.jpg", {}, reviewer="ana", expected_revision=0)
    store.withdraw(JOB, "s3://b/7.jpg", reviewer="ana", expected_revision=1)  # undone
    decide(
        JOB, "s3://b/4.jpg", {"Gambling": True, "Pills": True}, reviewer="ana", expected_revision=1
    )

    decisions = list(store.decisions(JOB))
    custom = store.custom_labels(JOB)
    # What the console gets from its results index: the reviewed images' lines, numbered.
    reviewed = {decision.source_ref for decision in decisions}
    documents = [
        (number, line)
        for number, line in enumerate(results, start=1)
        if line["source-ref"] in reviewed
    ]
    console = verification_report(
        documents, decisions, confidence_threshold=50, custom_labels=custom
    )
    assert console.ok and console.images_reviewed == 5

    # The command line, on the same lines written to files.
    results_file = _write_jsonl(tmp_path / "results.jsonl", results)
    verifications = _write_jsonl(
        tmp_path / "verifications.jsonl", [decision.to_line() for decision in decisions]
    )
    output = tmp_path / "groundtruth.jsonl"
    argv = ["--results", results_file, "--verifications", verifications, "--output", str(output)]
    argv += ["--confidence_threshold", "50", "--format", "json"]
    argv += [f"--custom_label={name}={parent}" for name, parent in custom.items()]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)

    assert cli["labels"] == console.rows()
    assert output.read_bytes() == console.ground_truth_jsonl()
    assert cli["images_reviewed"] == console.images_reviewed
    assert cli["images_not_reviewed"] == 2 and console.images_not_reviewed == 0
    assert [line["source-ref"] for line in parse_jsonl(output.read_bytes())] == [
        "s3://b/3.jpg",
        "s3://b/1.jpg",
        "s3://b/2.jpg",
        "s3://b/5.jpg",
        "s3://b/4.jpg",
    ]
    # And the builder on the files' lines agrees.
    direct = build_ground_truth(
        (tmp_path / "results.jsonl").read_text().splitlines(),
        (tmp_path / "verifications.jsonl").read_text().splitlines(),
        confidence_threshold=50,
        custom_labels=custom,
    )
    assert direct.rows() == console.rows()
    assert direct.ground_truth_jsonl() == console.ground_truth_jsonl()


# --- Training readiness -----------------------------------------------------------------------


def _report(false_positives: int, false_negatives: int, *, label: str = "Gambling"):
    """A report whose ``label`` has these verified false positives and false negatives."""
    documents, decisions = [], []
    for i in range(false_positives + false_negatives):
        ref = f"s3://b/{i}.jpg"
        predicted = i < false_positives
        documents.append((i + 1, result(ref, (label, 90)) if predicted else result(ref)))
        decisions.append(Decision(JOB, ref, {label: not predicted}, "ana", 1.0, 1))
    return verification_report(documents, decisions, confidence_threshold=50, custom_labels={})


def _missing(report, name: str = "Gambling") -> str:
    (row,) = [row for row in training_readiness(report) if row["name"] == name]
    return row["missing"]


def test_training_readiness_says_what_each_label_still_needs():
    assert _missing(_report(14, 0)) == "6 more false positives or 50 more false negatives"
    assert _missing(_report(19, 0)) == "1 more false positive or 50 more false negatives"
    assert _missing(_report(0, 49)) == "20 more false positives or 1 more false negative"
    assert _missing(_report(3, 12)) == "17 more false positives or 38 more false negatives"
    assert _missing(_report(20, 0)) == "" and _missing(_report(0, 50)) == ""

    (row,) = training_readiness(_report(14, 2))
    assert row == {
        "name": "Gambling",
        "parent": "",
        "level": 1,
        "custom": False,
        "true_positives": 0,
        "false_positives": 14,
        "false_negatives": 2,
        "meets_training_minimum": False,
        "missing": "6 more false positives or 48 more false negatives",
    }
    # Pills marked absent leaves its predicted parents confirmed: only Pills has the FPs.
    rows = training_readiness(_report(21, 0, label="Pills"))
    assert [(r["name"], r["level"], r["false_positives"], r["missing"]) for r in rows] == [
        ("Drugs & Tobacco", 1, 0, "20 more false positives or 50 more false negatives"),
        ("Products", 2, 0, "20 more false positives or 50 more false negatives"),
        ("Pills", 3, 21, ""),
    ]


def test_can_train_needs_one_label_at_the_minimum():
    empty = verification_report([], [], confidence_threshold=50, custom_labels={})
    assert can_train(empty) == (False, "No image has been verified yet.")
    assert training_readiness(empty) == []
    assert can_train(_report(19, 49)) == (
        False,
        "No label has 20 verified false positives or 50 false negatives yet.",
    )
    assert can_train(_report(20, 0)) == (True, "1 label meets the training minimum: Gambling.")
    ok, why = can_train(_report(0, 50, label="Alcoholic Beverages"))
    assert ok and why == ("2 labels meet the training minimum: Alcohol, Alcoholic Beverages.")

    # A decision the builder refuses (here an image missing from the results) blocks export.
    broken = verification_report(
        [(1, result("s3://b/1.jpg"))],
        [Decision(JOB, "s3://b/2.jpg", {}, "ana", 1.0, 1)],
        confidence_threshold=50,
        custom_labels={},
    )
    ok, why = can_train(broken)
    assert not ok
    assert why == ("1 decision cannot be exported: s3://b/2.jpg is not in the results")
    contradiction = verification_report(
        [(1, result("s3://b/1.jpg", ("Pills", 90)))],
        [Decision(JOB, "s3://b/1.jpg", {"Products": False}, "ana", 1.0, 1)],
        confidence_threshold=50,
        custom_labels={},
    )
    assert can_train(contradiction)[1].startswith(
        "1 decision cannot be exported: s3://b/1.jpg: 'Products' is marked absent"
    )

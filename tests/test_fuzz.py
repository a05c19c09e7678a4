"""Property-based fuzzing (Hypothesis) of manifest reading, line validation and the whole job.

Hostile manifests and images come from ``tests/hostile.py``, which also holds the oracle
(``check_outputs``): line counting written from the README independently of the reader, and per
line the outcomes it may have. The job runs with ``--backbone=none`` on DirectRunner, with
``--allowed_source_prefixes=/`` so that a well-formed ``s3://``/``gs://`` reference is
ACCESS_DENIED without reaching any network.

Volume (every run is seeded or derandomized, so each run repeats the same inputs):

- quick (no model, no pipeline; about 10 s together):
  ``test_parse_never_raises_on_any_bytes``: 1,000 examples of arbitrary bytes or mutated JSON;
  ``test_hostile_lines_get_their_codes``: 600 examples of one drawn hostile line each;
  ``test_reader_numbers_lines_as_the_readme``: 2,000 examples of up to 48 pieces, limits 4-24;
  ``test_reader_at_the_64_kib_limit``: 150 examples of up to 6 lines of 0 to 131,073 bytes;
  ``test_hostile_images_have_their_codes``: each of the 69 corpus paths once (34 valid, 35 hostile).
- slow: ``test_fuzz_pipeline_small``: 10 derandomized examples (about 20 s), each a whole
  manifest of 40 to 120 drawn lines plus the 12 pinned ones: 973 lines over the 10 runs;
  ``test_fuzz_pipeline_large``: one manifest from seed 20240611, 10,000 drawn lines plus the 12
  pinned ones and a BOM-led 65,536-byte first line (10,013 lines, 24.7 MB), run as
  ``python -m pipeline.run`` (about 20 s).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import hostile as H
from tests.conftest import parse_jsonl
from transforms.fetching import fetch_image_bytes
from transforms.images import decode_image
from transforms.manifest import MAX_LINE_BYTES, ValidateManifestLine, read_manifest_lines
from transforms.output import RESULTS_FILE, SUMMARY_FILE
from transforms.records import ErrorCode, ImageProblem, ManifestError, ManifestLine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE_SEED = 20240611
LARGE_LINES = 10_000
SMALL_EXAMPLES = 10

# Pipelines take seconds each: no shrinking (each step would be a run), no example database.
PIPELINE_SETTINGS = settings(
    max_examples=SMALL_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def quick(examples: int):
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_photos) -> H.Corpus:
    return H.build_corpus(tmp_path_factory.mktemp("fuzz-corpus"), sample_photos)


# ValidateManifestLine.parse alone.


def _check_outcome(number: int, raw: bytes | None, outcome) -> None:
    """What holds for any line: one ManifestLine or one ManifestError with a known code."""
    assert isinstance(outcome, ManifestLine | ManifestError), outcome
    assert outcome.line_number == number
    if isinstance(outcome, ManifestError):
        assert outcome.code in ErrorCode.all(), outcome
        assert outcome.code != ErrorCode.INTERNAL_ERROR, (outcome, raw)
        assert isinstance(outcome.message, str) and outcome.message.strip()
        outcome.message.encode("utf-8")  # the summary is written as UTF-8
        if outcome.source_ref is not None:
            outcome.source_ref.encode("utf-8")
        if raw is None:
            assert outcome.code == ErrorCode.LINE_TOO_LONG
            return
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            assert outcome.code == ErrorCode.INVALID_ENCODING, outcome
        return
    ref = outcome.source_ref
    assert raw is not None
    assert type(ref) is str and ref.strip() and "\x00" not in ref
    ref.encode("utf-8")
    assert ref == H._reference_source_ref(raw)


_KEYS = st.sampled_from(["source-ref", "Source-Ref", "", "a", "source-ref\x00"]) | st.text(
    max_size=4
)
_REF_TEXT = st.text(
    st.sampled_from("/sgx3:.\\-_ \x00\t\u00e9\ud800\udcff\U0001f600*?") | st.characters(),
    max_size=24,
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | _REF_TEXT
    | st.builds(lambda s: "s3://" + s, _REF_TEXT),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)


@st.composite
def _json_lines(draw) -> bytes:
    document = draw(_JSON)
    if draw(st.booleans()):
        document = {"source-ref": draw(_JSON), **draw(st.dictionaries(_KEYS, _JSON, max_size=2))}
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass" if draw(st.booleans()) else "backslashreplace")
    for _ in range(draw(st.integers(0, 3))):  # a few flipped bytes
        if data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


@quick(1_000)
@given(raw=st.binary(max_size=300) | _json_lines(), number=st.integers(1, 2**40))
def test_parse_never_raises_on_any_bytes(raw, number):
    """Any bytes at all: parse returns (never raises) a ManifestLine whose source-ref is the
    line's, or a ManifestError with a documented code other than INTERNAL_ERROR."""
    validator = ValidateManifestLine()
    _check_outcome(number, raw, validator.parse(number, raw))
    _check_outcome(number, None, validator.parse(number, None))


@quick(600)
@given(data=st.data())
def test_hostile_lines_get_their_codes(corpus, data):
    """One drawn hostile line, read as the job reads it, then validated: its code is one the
    generator expects (a line expected to be analysed or to fail on its image validates)."""
    d = H.HypothesisDraw(data.draw)
    line = H.hostile_line(d, corpus, H.Budget())
    ending = line.ending if line.ending is not None else d.choice([b"\n", b"\r\n", b""])
    data = line.raw + ending
    read = list(read_manifest_lines(io.BytesIO(data)))
    assert read == _expected_reads(data, MAX_LINE_BYTES), line.kind
    if not read:  # blank (a mutated line may have become so)
        assert line.expect is None or line.expect == frozenset(), line.kind
        return
    assert line.expect != frozenset(), line.kind
    ((number, raw),) = read
    outcome = ValidateManifestLine(allowed_prefixes=H.ALLOWED_PREFIXES).parse(number, raw)
    _check_outcome(number, raw, outcome)
    if line.expect is None:
        return
    if isinstance(outcome, ManifestError):
        assert outcome.code in line.expect, (line.kind, outcome, line.raw[:200])
    else:
        assert line.expect & H.IMAGE_OUTCOMES, (line.kind, outcome, sorted(line.expect))


# read_manifest_lines alone.

_PIECES = st.sampled_from(
    [b"\n", b"\r", b"\r\n", b" ", b"\t", b"\x0b", b"x", b"{}", H.BOM, b"\xff", b"\x00"]
    + [b"y" * 7, b"z" * 20]
)


def _expected_reads(data: bytes, limit: int) -> list[tuple[int, bytes | None]]:
    return [
        (line.number, None if line.too_long else line.content + b"\n" * line.ended)
        for line in H.physical_lines(data, limit)
        if not line.blank
    ]


def _check_reads(reads, data: bytes, limit: int) -> None:
    numbers = [number for number, _ in reads]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)
    assert all(raw is None or 0 < len(raw) <= limit for _, raw in reads)
    assert reads == _expected_reads(data, limit)


@quick(2_000)
@given(pieces=st.lists(_PIECES, max_size=48), bom=st.booleans(), limit=st.integers(4, 24))
def test_reader_numbers_lines_as_the_readme(pieces, bom, limit):
    """Line numbers strictly increase and are physical (LF-split) numbers; no line over the
    limit (line ending included) is ever yielded; blank lines are skipped; a BOM is stripped
    only at the start of the file; exactly the README's lines come out, byte for byte.
    (Limits of 4 bytes and up: under 3 a BOM itself cannot be read in one go.)"""
    data = (H.BOM if bom else b"") + b"".join(pieces)
    _check_reads(list(read_manifest_lines(io.BytesIO(data), limit)), data, limit)


_SIZES = st.sampled_from([0, 1, 2, 65_532, 65_533, 65_534, 65_535, 65_536, 65_537, 65_538])


@quick(150)
@given(
    lines=st.lists(
        st.tuples(_SIZES | st.just(131_073), st.sampled_from([b"\n", b"\r\n"]), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    bom=st.booleans(),
    final=st.booleans(),
)
def test_reader_at_the_64_kib_limit(lines, bom, final):
    """At the real limit: lines of 65,535/65,536 bytes (line ending included, LF or CRLF) are
    read whole, 65,537 and more are too long, with or without a BOM before line 1."""
    parts = [H.BOM] if bom else []
    for i, (size, ending, spaces) in enumerate(lines):
        if i == len(lines) - 1 and not final:
            ending = b""
        body = size - len(ending)
        if body < 0:
            continue
        parts += [(b" " if spaces else b"x") * body, ending]
    data = b"".join(parts)
    _check_reads(list(read_manifest_lines(io.BytesIO(data))), data, MAX_LINE_BYTES)


# The images alone: the oracle's table holds for decode_image.


def test_hostile_images_have_their_codes(corpus):
    table = [(path, H.outcomes(H.RESULT)) for path in corpus.good]
    table += corpus.hostile + list(corpus.costly.values())
    wrong = []
    for path, expect in table:
        try:
            decode_image(fetch_image_bytes(path))
            got = H.RESULT
        except ImageProblem as problem:
            got = problem.code
        if got not in expect:
            wrong.append((path, got, sorted(expect)))
    assert not wrong


# The whole job.


def _outputs(output: str) -> tuple[dict, list[dict]]:
    with open(os.path.join(output, SUMMARY_FILE), "rb") as f:
        summary = json.load(f)
    with open(os.path.join(output, RESULTS_FILE), "rb") as f:
        results = parse_jsonl(f.read())
    return summary, results


def _job_args(manifest: str, output: str) -> list[str]:
    return [
        f"--manifest={manifest}",
        f"--output={output}",
        "--runner=DirectRunner",
        "--backbone=none",
        f"--allowed_source_prefixes={','.join(H.ALLOWED_PREFIXES)}",
        "--progress_interval_secs=-1",
    ]


@pytest.mark.slow
@PIPELINE_SETTINGS
@given(data=st.data())
def test_fuzz_pipeline_small(corpus, tmp_path_factory, data):
    """A whole hostile manifest per example through ``pipeline.run.run``: the job returns, and
    every non-blank line is exactly one result or one error with the code expected of it."""
    from pipeline.run import run

    manifest = data.draw(H.manifests(corpus, min_lines=40, max_lines=120), label="manifest")
    folder = tmp_path_factory.mktemp("fuzz-small")
    path = folder / "manifest.jsonl"
    path.write_bytes(manifest.data)
    output = str(folder / "output")
    outcome = run(_job_args(str(path), output))
    summary, results = _outputs(output)
    counts = H.check_outputs(manifest, summary, results)
    assert outcome["statistics"] == summary["statistics"]
    assert sorted(os.listdir(output)) == [SUMMARY_FILE, RESULTS_FILE]
    assert counts.get(H.RESULT, 0) >= 4  # the pinned lines alone give four results
    print(f"\nsmall fuzz: {len(manifest.lines)} lines ({path}), outcomes {counts}")


@pytest.mark.slow
def test_fuzz_pipeline_large(corpus, tmp_path):
    """10,000 seeded hostile lines (a few images many times over: repeats are answered from the
    worker's recent results) through ``python -m pipeline.run``: exit status 0, and the same
    per-line invariants and expected codes."""
    budget = H.Budget({"megabyte-line": 3, "15-mb-read": 3, "64k-line": 150})
    manifest = H.random_manifest(LARGE_SEED, LARGE_LINES, corpus, budget)
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(manifest.data)
    output = tmp_path / "output"
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.run", *_job_args(str(path), str(output))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr[-5000:]
    assert "Analysed " in completed.stdout, completed.stdout
    summary, results = _outputs(str(output))
    assert len(H.physical_lines(manifest.data)) >= LARGE_LINES
    counts = H.check_outputs(manifest, summary, results)
    assert counts.get(H.RESULT, 0) >= 1_000
    assert sorted(os.listdir(output)) == [SUMMARY_FILE, RESULTS_FILE]
    print(
        f"\nlarge fuzz: seed {LARGE_SEED}, {len(manifest.lines)} lines, "
        f"{len(manifest.data)} bytes, {elapsed:.1f} s, outcomes {counts}"
    )

"""Tests for reading manifest lines with their numbers and validating each line."""

import io
import json

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.manifest import (
    MAX_LINE_BYTES,
    MAX_SOURCE_REF_CHARS,
    ReadManifest,
    ValidateManifestLine,
    read_manifest_lines,
)
from transforms.records import ErrorCode, ManifestError, ManifestLine


class _RecordingStream(io.BytesIO):
    """A BytesIO that remembers the size asked of, and returned by, every readline."""

    def __init__(self, data):
        super().__init__(data)
        self.requested = []
        self.returned = []

    def readline(self, size=-1):
        line = super().readline(size)
        self.requested.append(size)
        self.returned.append(len(line))
        return line


def _lines(data, **kwargs):
    return list(read_manifest_lines(io.BytesIO(data), **kwargs))


def _line(source_ref, **extra):
    return json.dumps({"source-ref": source_ref, **extra}).encode() + b"\n"


# read_manifest_lines


def test_numbers_lines_from_one():
    data = b'{"source-ref": "/a.jpg"}\n{"source-ref": "/b.jpg"}\n'
    assert _lines(data) == [
        (1, b'{"source-ref": "/a.jpg"}\n'),
        (2, b'{"source-ref": "/b.jpg"}\n'),
    ]


def test_empty_stream_gives_no_lines():
    assert _lines(b"") == []


def test_utf8_bom_on_first_line_is_stripped():
    data = b'\xef\xbb\xbf{"source-ref": "/a.jpg"}\n{"source-ref": "/b.jpg"}\n'
    assert _lines(data) == [
        (1, b'{"source-ref": "/a.jpg"}\n'),
        (2, b'{"source-ref": "/b.jpg"}\n'),
    ]


def test_bom_alone_on_first_line_is_a_blank_line():
    assert _lines(b'\xef\xbb\xbf\n{"source-ref": "/b.jpg"}\n') == [
        (2, b'{"source-ref": "/b.jpg"}\n')
    ]


def test_bom_after_first_line_is_kept():
    data = b'{"a": 1}\n\xef\xbb\xbf{"b": 2}\n'
    assert _lines(data)[1] == (2, b'\xef\xbb\xbf{"b": 2}\n')


def test_crlf_lines_are_numbered_and_parse():
    data = b'{"source-ref": "/a.jpg"}\r\n{"source-ref": "/b.jpg"}\r\n'
    lines = _lines(data)
    assert [n for n, _ in lines] == [1, 2]
    validate = ValidateManifestLine()
    assert [validate.parse(n, raw) for n, raw in lines] == [
        ManifestLine(1, "/a.jpg"),
        ManifestLine(2, "/b.jpg"),
    ]


def test_blank_and_whitespace_lines_are_skipped_but_counted():
    data = b'\n{"x": 1}\n   \n\t \r\n\r\n{"x": 2}\n\n'
    assert _lines(data) == [(2, b'{"x": 1}\n'), (6, b'{"x": 2}\n')]


def test_last_line_without_newline():
    data = b'{"x": 1}\n{"x": 2}'
    assert _lines(data) == [(1, b'{"x": 1}\n'), (2, b'{"x": 2}')]


def _json_line(total_bytes: int, ending: bytes) -> bytes:
    """A valid JSON line of exactly ``total_bytes``, its line ending included."""
    head = b'{"source-ref": "/i.jpg", "pad": "'
    tail = b'"}' + ending
    return head + b"p" * (total_bytes - len(head) - len(tail)) + tail


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""], ids=["LF", "CRLF", "last line"])
@pytest.mark.parametrize(
    "total, kept",
    [(MAX_LINE_BYTES - 1, True), (MAX_LINE_BYTES, True), (MAX_LINE_BYTES + 1, False)],
    ids=["65535", "65536", "65537"],
)
def test_the_line_limit_counts_the_line_ending(total, kept, ending):
    line = _json_line(total, ending)
    assert len(line) == total
    expected = [(1, line), (2, b'{"x": 2}\n')] if kept else [(1, None), (2, b'{"x": 2}\n')]
    if ending:
        assert _lines(line + b'{"x": 2}\n') == expected
    else:
        assert _lines(line) == expected[:1]


def test_line_one_byte_over_the_limit_is_too_long():
    assert _lines(b"x" * 100 + b"\n", max_line_bytes=100) == [(1, None)]
    assert _lines(b"x" * 101, max_line_bytes=100) == [(1, None)]
    assert _lines(b"x" * 99 + b"\n" + b"x" * 100, max_line_bytes=100) == [
        (1, b"x" * 99 + b"\n"),
        (2, b"x" * 100),
    ]


def test_too_long_line_yields_none_and_next_line_keeps_its_number():
    data = b'{"x": 1}\n' + b"y" * (MAX_LINE_BYTES + 10) + b'\n\n{"x": 3}\n'
    assert _lines(data) == [(1, b'{"x": 1}\n'), (2, None), (4, b'{"x": 3}\n')]


def test_ten_megabyte_line_with_small_limit():
    huge = b'{"source-ref": "/' + b"a" * (10 * 1024 * 1024) + b'.jpg"}\n'
    stream = _RecordingStream(b'{"x": 1}\n' + huge + b'{"x": 3}\n' + huge)
    lines = list(read_manifest_lines(stream, max_line_bytes=1024))
    assert lines == [(1, b'{"x": 1}\n'), (2, None), (3, b'{"x": 3}\n'), (4, None)]
    assert all(size != -1 and size is not None for size in stream.requested)
    assert max(stream.requested) <= 1025
    assert max(stream.returned) <= 1025


def test_bounded_read_with_default_limit():
    stream = _RecordingStream(b"z" * (3 * MAX_LINE_BYTES) + b"\n" + b'{"x": 2}\n')
    assert list(read_manifest_lines(stream)) == [(1, None), (2, b'{"x": 2}\n')]
    assert max(stream.returned) <= MAX_LINE_BYTES + 1


# ValidateManifestLine.parse: invalid lines


def _parse(raw, number=7, **kwargs):
    return ValidateManifestLine(**kwargs).parse(number, raw)


def _assert_error(outcome, code, source_ref=None, number=7):
    assert isinstance(outcome, ManifestError), outcome
    assert outcome.line_number == number
    assert outcome.code == code
    assert isinstance(outcome.message, str) and outcome.message.strip()
    assert outcome.source_ref == source_ref


def test_too_long_line_is_line_too_long():
    outcome = _parse(None)
    _assert_error(outcome, ErrorCode.LINE_TOO_LONG)
    assert str(MAX_LINE_BYTES) in outcome.message


def test_bad_utf8_is_invalid_encoding():
    _assert_error(_parse(b'{"source-ref": "/caf\xe9.jpg"}\n'), ErrorCode.INVALID_ENCODING)


def test_latin1_bytes_after_valid_prefix_is_invalid_encoding():
    _assert_error(_parse(b"\xff\xfe{}\n"), ErrorCode.INVALID_ENCODING)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json\n",
        b'{"source-ref": "/a.jpg"\n',
        b"{'source-ref': '/a.jpg'}\n",
        b'{"source-ref": "/a.jpg"} trailing\n',
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
    ],
    ids=["text", "unclosed", "single-quotes", "trailing", "deep-nesting"],
)
def test_not_json_is_invalid_json(raw):
    _assert_error(_parse(raw), ErrorCode.INVALID_JSON)


@pytest.mark.parametrize(
    "raw",
    [b'["/a.jpg"]\n', b'"/a.jpg"\n', b"42\n", b"4.5\n", b"null\n", b"true\n"],
    ids=["array", "string", "int", "float", "null", "bool"],
)
def test_json_that_is_not_an_object(raw):
    _assert_error(_parse(raw), ErrorCode.NOT_A_JSON_OBJECT)


@pytest.mark.parametrize(
    "raw",
    [
        b"{}\n",
        b'{"source_ref": "/a.jpg"}\n',
        b'{"Source-Ref": "/a.jpg"}\n',
        b'{"source-ref ": "/a.jpg"}\n',
        # Cyrillic small letter o (U+043E) in place of the Latin "o".
        '{"s\u043eurce-ref": "/a.jpg"}\n'.encode(),
    ],
    ids=["empty", "underscore", "capitals", "trailing-space", "cyrillic-o"],
)
def test_missing_source_ref(raw):
    _assert_error(_parse(raw), ErrorCode.MISSING_SOURCE_REF)


@pytest.mark.parametrize(
    "value",
    [None, 42, 1.5, True, ["/a.jpg"], {"path": "/a.jpg"}],
    ids=["null", "int", "float", "bool", "list", "object"],
)
def test_source_ref_that_is_not_a_string(value):
    raw = json.dumps({"source-ref": value}).encode()
    _assert_error(_parse(raw), ErrorCode.INVALID_SOURCE_REF, source_ref=None)


@pytest.mark.parametrize(
    "source_ref",
    [
        "",
        "   ",
        "\t\n",
        "/" + "a" * MAX_SOURCE_REF_CHARS,
        "/images/a\x00.jpg",
        "images/a.jpg",
        "./a.jpg",
        "a.jpg",
        "s3://ab/key.jpg",
        "s3://-bucket-/key.jpg",
        "s3://bad bucket/key.jpg",
        "s3:///key.jpg",
        "gs://b/key.jpg",
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/folder/",
        "gs://bucket/folder/sub/",
    ],
    ids=[
        "empty",
        "spaces",
        "whitespace",
        "too-long",
        "nul",
        "relative",
        "dot-relative",
        "bare-name",
        "short-bucket",
        "dash-bucket",
        "space-bucket",
        "no-bucket",
        "one-char-bucket",
        "bucket-only",
        "bucket-slash",
        "s3-folder",
        "gs-folder",
    ],
)
def test_invalid_source_ref(source_ref):
    raw = json.dumps({"source-ref": source_ref}).encode() + b"\n"
    _assert_error(_parse(raw), ErrorCode.INVALID_SOURCE_REF, source_ref=source_ref)


def test_source_ref_at_the_length_limit_is_valid():
    source_ref = "/" + "a" * (MAX_SOURCE_REF_CHARS - 1)
    assert _parse(_line(source_ref)) == ManifestLine(7, source_ref)


@pytest.mark.parametrize(
    "source_ref",
    [
        "https://example.com/a.jpg",
        "http://example.com/a.jpg",
        "ftp://example.com/a.jpg",
        "file:///images/a.jpg",
        "az://container/a.jpg",
    ],
)
def test_unsupported_scheme(source_ref):
    _assert_error(_parse(_line(source_ref)), ErrorCode.UNSUPPORTED_SCHEME, source_ref=source_ref)


# ValidateManifestLine.parse: valid lines


@pytest.mark.parametrize(
    "source_ref",
    [
        "s3://bucket/key.jpg",
        "s3://my.bucket-1/deep/folder/photo 1.png",
        "gs://bucket/key.jpg",
        "/images/a.jpg",
        "/données/été/写真 1.jpg",
        "s3://bucket/写真.jpg",
    ],
)
def test_valid_source_ref(source_ref):
    assert _parse(_line(source_ref), number=3) == ManifestLine(3, source_ref)


def test_unicode_source_ref_as_utf8_json_without_escapes():
    raw = '{"source-ref": "/données/写真.jpg"}\n'.encode()
    assert _parse(raw) == ManifestLine(7, "/données/写真.jpg")


def test_extra_keys_are_ignored():
    raw = _line("s3://bucket/a.jpg", label="cat", **{"source-ref-metadata": {"x": 1}})
    assert _parse(raw) == ManifestLine(7, "s3://bucket/a.jpg")


def test_crlf_and_surrounding_whitespace_are_valid():
    assert _parse(b'  {"source-ref": "/a.jpg"}  \r\n') == ManifestLine(7, "/a.jpg")


# ValidateManifestLine: the schemes= restriction


def test_s3_only_rejects_local_paths():
    outcome = _parse(_line("/images/a.jpg"), schemes=("s3",))
    _assert_error(outcome, ErrorCode.UNSUPPORTED_SCHEME, source_ref="/images/a.jpg")


def test_s3_only_rejects_gs():
    outcome = _parse(_line("gs://bucket/a.jpg"), schemes=("s3",))
    _assert_error(outcome, ErrorCode.UNSUPPORTED_SCHEME, source_ref="gs://bucket/a.jpg")
    assert "s3://" in outcome.message


def test_s3_only_accepts_s3():
    outcome = _parse(_line("s3://bucket/a.jpg"), schemes=("s3",))
    assert outcome == ManifestLine(7, "s3://bucket/a.jpg")


def test_local_only_rejects_s3():
    outcome = _parse(_line("s3://bucket/a.jpg"), schemes=("local",))
    _assert_error(outcome, ErrorCode.UNSUPPORTED_SCHEME, source_ref="s3://bucket/a.jpg")


@pytest.mark.parametrize("schemes", [("s3", "https"), ("ftp",), ("S3",)])
def test_unknown_scheme_name_raises(schemes):
    with pytest.raises(ValueError):
        ValidateManifestLine(schemes=schemes)


# Under a pipeline


def test_validate_manifest_line_splits_valid_and_invalid():
    elements = [
        (1, b'{"source-ref": "s3://bucket/a.jpg"}\n'),
        (2, b"not json\n"),
        (3, b'{"source-ref": "/images/b.png"}\r\n'),
        (4, None),
        (5, b'{"source-ref": "https://example.com/c.jpg"}\n'),
        (6, b"[]\n"),
    ]
    with test_pipeline.TestPipeline() as p:
        result = (
            p
            | beam.Create(elements)
            | beam.ParDo(ValidateManifestLine()).with_outputs(
                ValidateManifestLine.TAG_INVALID, main="valid"
            )
        )
        assert_that(
            result.valid,
            equal_to([ManifestLine(1, "s3://bucket/a.jpg"), ManifestLine(3, "/images/b.png")]),
            label="CheckValid",
        )
        invalid = result[ValidateManifestLine.TAG_INVALID] | beam.Map(
            lambda e: (e.line_number, e.code, e.source_ref)
        )
        assert_that(
            invalid,
            equal_to(
                [
                    (2, ErrorCode.INVALID_JSON, None),
                    (4, ErrorCode.LINE_TOO_LONG, None),
                    (5, ErrorCode.UNSUPPORTED_SCHEME, "https://example.com/c.jpg"),
                    (6, ErrorCode.NOT_A_JSON_OBJECT, None),
                ]
            ),
            label="CheckInvalid",
        )


def test_read_manifest_numbers_lines(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"source-ref": "/a.jpg"}\r\n'
        b"\n"
        b'{"source-ref": "/b.jpg"}\n' + b"x" * 300 + b"\n" + b'{"source-ref": "/c.jpg"}'
    )
    with test_pipeline.TestPipeline() as p:
        lines = p | ReadManifest(str(path), max_line_bytes=200)
        assert_that(
            lines,
            equal_to(
                [
                    (1, b'{"source-ref": "/a.jpg"}\r\n'),
                    (3, b'{"source-ref": "/b.jpg"}\n'),
                    (4, None),
                    (5, b'{"source-ref": "/c.jpg"}'),
                ]
            ),
            label="CheckLines",
        )


def test_only_allowed_prefixes_are_read():
    fn = ValidateManifestLine(allowed_prefixes=["s3://in-bucket/images/", "s3://shared/"])
    assert fn.parse(1, b'{"source-ref": "s3://in-bucket/images/a.jpg"}').source_ref
    assert fn.parse(2, b'{"source-ref": "s3://shared/x/b.png"}').source_ref
    refused = fn.parse(3, b'{"source-ref": "s3://in-bucket/private/a.jpg"}')
    assert refused.code == ErrorCode.ACCESS_DENIED
    assert "s3://in-bucket/images/" in refused.message
    nothing = ValidateManifestLine(allowed_prefixes=[])
    assert nothing.parse(1, b'{"source-ref": "s3://bucket/k.jpg"}').code == ErrorCode.ACCESS_DENIED

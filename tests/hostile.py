"""Hostile manifests and images for the fuzz tests (``tests/test_fuzz.py``), and their oracle.

Every generator draws through a ``Draw``: ``HypothesisDraw`` (Hypothesis strategies, so that a
failure shrinks) or ``RandomDraw`` (a seeded ``random.Random``, for manifests far larger than a
Hypothesis example may hold). Large payloads (64 KiB lines, 5,000-digit numbers) are built in
code from small drawn parameters, which keeps each Hypothesis example within its choice budget.

A generated ``Line`` is one physical line (its bytes never hold an LF) with the outcomes it may
have: error codes and/or ``RESULT`` (analysed), or ``None`` where anything documented may happen
(a byte-flipped line). ``check_outputs`` holds a run's outputs against the manifest's bytes,
counting lines itself as the README defines them:

- the file is split on LF; a CR before the LF is part of the line (JSON whitespace);
- a UTF-8 BOM at the very start of the file is not part of line 1 (nor of its length);
- a line is over the limit when its bytes, LF included, exceed 65,536; such a line is
  LINE_TOO_LONG whatever it holds (it is never read whole, so never found blank);
- any other line whose bytes are all ASCII whitespace (``bytes.isspace``: space, tab, CR, VT,
  FF) is blank: no outcome, but it still has a number.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transforms.manifest import MAX_LINE_BYTES, MAX_SOURCE_REF_CHARS
from transforms.records import ErrorCode as C

RESULT = "RESULT"
BOM = b"\xef\xbb\xbf"

# Codes a line gets before any image is read, and those of its image.
LINE_CODES = frozenset(
    {
        C.INVALID_ENCODING,
        C.LINE_TOO_LONG,
        C.INVALID_JSON,
        C.NOT_A_JSON_OBJECT,
        C.MISSING_SOURCE_REF,
        C.INVALID_SOURCE_REF,
        C.UNSUPPORTED_SCHEME,
    }
)
IMAGE_OUTCOMES = frozenset(
    {
        RESULT,
        C.IMAGE_NOT_FOUND,
        C.ACCESS_DENIED,
        C.IMAGE_READ_FAILED,
        C.IMAGE_TOO_LARGE,
        C.UNSUPPORTED_IMAGE_FORMAT,
        C.INVALID_IMAGE,
        C.IMAGE_DIMENSIONS_OUT_OF_RANGE,
        C.DECOMPRESSION_BOMB,
    }
)
# No hostile input here is unforeseen: an INTERNAL_ERROR (an unexpected exception) or an
# INFERENCE_FAILED (a batch the model could not take) anywhere fails the fuzz tests.
NEVER = frozenset({C.INTERNAL_ERROR, C.INFERENCE_FAILED})
# The job runs with --allowed_source_prefixes=/ : a well-formed s3:// or gs:// reference is
# ACCESS_DENIED before anything is fetched (no network), a malformed one INVALID_SOURCE_REF.
ALLOWED_PREFIXES = ("/",)


def outcomes(*values: str) -> frozenset[str]:
    return frozenset(values)


@dataclass(frozen=True)
class Line:
    raw: bytes  # without its line ending; never holds an LF
    expect: frozenset[str] | None  # allowed outcomes; empty: blank; None: any documented one
    kind: str
    ending: bytes | None = None  # forced line ending; None: the manifest chooses

    def __post_init__(self):
        assert b"\n" not in self.raw, self.kind


# Drawing.


class Draw:
    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, options: Sequence):
        return options[self.integer(0, len(options) - 1)]

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1

    def seed(self) -> int:
        return self.integer(0, 2**32 - 1)


class RandomDraw(Draw):
    def __init__(self, rng: random.Random):
        self._rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, hi)


class HypothesisDraw(Draw):
    def __init__(self, draw):
        from hypothesis import strategies as st

        self._draw, self._st = draw, st

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(self._st.integers(lo, hi))

    def choice(self, options: Sequence):
        return self._draw(self._st.sampled_from(options))

    def boolean(self) -> bool:
        return self._draw(self._st.booleans())


@dataclass
class Budget:
    """How many lines of each costly kind (megabytes to read or build) one manifest may hold."""

    left: dict[str, int] = field(
        default_factory=lambda: {"megabyte-line": 2, "15-mb-read": 2, "64k-line": 12}
    )

    def take(self, name: str) -> bool:
        if self.left.get(name, 0) <= 0:
            return False
        self.left[name] -= 1
        return True


# Images.


def _encoded(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG built chunk by chunk: any declared size and depth; ``rows`` is the raw scanlines
    (each with its filter byte), which may be far fewer than the header declares."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0") + 5  # baseline SOF0: length, precision, then height, width
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


def _corrupt_scan(jpeg: bytes, seed: int) -> bytes:
    """Random bytes over part of the entropy-coded data (the Huffman-coded scan)."""
    rng = random.Random(seed)
    data = bytearray(jpeg)
    start = data.index(b"\xff\xda") + 100
    for i in range(start + (len(data) - start) // 3, start + (len(data) - start) // 2):
        data[i] = rng.randrange(256)
    return bytes(data)


@dataclass
class Corpus:
    """Files that lines point to: valid images, hostile ones with their outcomes, and bases
    for byte-flipped copies (written on demand, named by their content)."""

    folder: Path
    good: list[str]
    hostile: list[tuple[str, frozenset[str]]]
    costly: dict[str, tuple[str, frozenset[str]]]  # budgeted: 15 MB reads
    missing: str
    directory: str
    bases: list[bytes]

    def __repr__(self) -> str:  # Hypothesis prints it with a failing example
        return f"Corpus({str(self.folder)!r})"

    def mutated_image(self, base: int, edits: list[tuple[int, int]], cut: int | None) -> str:
        data = bytearray(self.bases[base])
        for position, value in edits:
            data[position % len(data)] ^= value or 1
        if cut is not None:
            del data[cut % len(data) :]
        digest = hashlib.sha1(data).hexdigest()[:16]
        path = self.folder / "mutated" / f"{digest}.img"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(bytes(data))
        return str(path)


def build_corpus(folder: Path, sample_photos: dict[str, str]) -> Corpus:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(sample_photos["astronaut.jpg"]).convert("RGB")
    jpeg = Path(sample_photos["astronaut.jpg"]).read_bytes()
    png = Path(sample_photos["chelsea.png"]).read_bytes()
    small = photo.resize((120, 100))
    rng = np.random.default_rng(7)

    def rows(width: int, height: int, channels: int, depth: int) -> bytes:
        pixels = rng.integers(0, 256, (height, width * channels * depth // 8), dtype=np.uint8)
        return b"".join(b"\x00" + row.tobytes() for row in pixels)

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    palette = small.convert("P", palette=Image.Palette.ADAPTIVE)
    good_files = {
        "80x80.png": _encoded(Image.new("RGB", (80, 80), (9, 99, 199)), "PNG"),
        "80x80.jpg": _encoded(photo.resize((80, 80)), "JPEG"),
        "10000x80.png": _encoded(Image.new("RGB", (10_000, 80), (200, 10, 10)), "PNG"),
        "80x10000.jpg": _encoded(Image.new("RGB", (80, 10_000), (10, 200, 10)), "JPEG"),
        "cmyk.jpg": _encoded(small.convert("CMYK"), "JPEG"),
        "grey.jpg": _encoded(small.convert("L"), "JPEG"),
        "progressive.jpg": _encoded(small, "JPEG", progressive=True),
        "exif-rotated.jpg": _encoded(photo.resize((160, 90)), "JPEG", exif=exif.tobytes()),
        "grey16.png": _encoded(
            Image.fromarray(rng.integers(0, 65536, (100, 120), dtype=np.uint16)), "PNG"
        ),
        "rgb16.png": png_bytes(120, 90, 16, 2, rows(120, 90, 3, 16)),
        "rgba16.png": png_bytes(120, 90, 16, 6, rows(120, 90, 4, 16)),
        "la16.png": png_bytes(120, 90, 16, 4, rows(120, 90, 2, 16)),
        "palette-transparent.png": _encoded(palette, "PNG", transparency=0),
        "rgba.png": _encoded(small.convert("RGBA"), "PNG"),
        "bilevel.png": _encoded(small.convert("1"), "PNG"),
        "animated.png": _encoded(
            small, "PNG", save_all=True, append_images=[small.rotate(90)], duration=100
        ),
        "jpeg-named.png": _encoded(small, "JPEG"),
        "png-named.gif": _encoded(small, "PNG"),
        "trailing-garbage.png": _encoded(small, "PNG") + os.urandom(5000),
        "f\u00f6t\u00f6 \U0001f600 [*?].jpg": _encoded(small, "JPEG", quality=70),
        "new\nline.jpg": _encoded(small.rotate(180), "JPEG"),
    }
    hostile_files = {
        "zero-bytes.jpg": (b"", outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        "text.jpg": (b"not an image at all\n" * 30, outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        "truncated.jpg": (jpeg[: len(jpeg) * 2 // 5], outcomes(C.INVALID_IMAGE)),
        "truncated.png": (png[: len(png) * 2 // 5], outcomes(C.INVALID_IMAGE)),
        # Cut inside the header: Pillow may not even recognise the format.
        "header-only.jpg": (jpeg[:300], outcomes(C.INVALID_IMAGE, C.UNSUPPORTED_IMAGE_FORMAT)),
        "header-only.png": (png[:33], outcomes(C.INVALID_IMAGE, C.UNSUPPORTED_IMAGE_FORMAT)),
        "signature-only.png": (png[:8], outcomes(C.INVALID_IMAGE, C.UNSUPPORTED_IMAGE_FORMAT)),
        "bad-huffman.jpg": (_corrupt_scan(jpeg, 3), outcomes(RESULT, C.INVALID_IMAGE)),
        "animation.gif": (_encoded(small, "GIF"), outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        "image.webp": (_encoded(small, "WEBP"), outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        "image.tiff": (_encoded(small, "TIFF"), outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        "image.bmp": (_encoded(small, "BMP"), outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
        # A multi-picture JPEG (what some cameras write as .jpg): Pillow calls it MPO.
        "multi-picture.jpg": (
            _encoded(small, "MPO", save_all=True, append_images=[small.rotate(90)]),
            outcomes(RESULT, C.UNSUPPORTED_IMAGE_FORMAT),
        ),
        "1x1.png": (
            _encoded(Image.new("RGB", (1, 1)), "PNG"),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
        "80x79.png": (
            _encoded(Image.new("RGB", (80, 79)), "PNG"),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
        "79x80.jpg": (
            _encoded(Image.new("RGB", (79, 80)), "JPEG"),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
        "10001x80.png": (
            _encoded(Image.new("RGB", (10_001, 80)), "PNG"),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
        "declares-100000x100000.png": (
            png_bytes(100_000, 100_000, 8, 2, b"\x00" * 64),
            outcomes(C.DECOMPRESSION_BOMB),
        ),
        # Just over and just under 200 megapixels (both sides over 10,000 px).
        "declares-14143x14143.png": (
            png_bytes(14_143, 14_143, 8, 0, b"\x00" * 64),
            outcomes(C.DECOMPRESSION_BOMB),
        ),
        "declares-14142x14142.png": (
            png_bytes(14_142, 14_142, 8, 0, b"\x00" * 64),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
        "declares-65000x65000.jpg": (
            _jpeg_declaring(jpeg, 65_000, 65_000),
            outcomes(C.DECOMPRESSION_BOMB),
        ),
        "declares-12000x100.jpg": (
            _jpeg_declaring(jpeg, 12_000, 100),
            outcomes(C.IMAGE_DIMENSIONS_OUT_OF_RANGE),
        ),
    }
    good: list[str] = list(sample_photos.values())
    for name, data in good_files.items():
        (folder / name).write_bytes(data)
        good.append(str(folder / name))
    os.symlink(folder / "80x80.png", folder / "link-to-good.png")
    good.append(str(folder / "link-to-good.png"))
    good.append(str(folder / "." / ".." / folder.name / "grey.jpg"))  # dots in the path
    good.append("/" + str(folder / "cmyk.jpg"))  # a double slash

    hostile: list[tuple[str, frozenset[str]]] = []
    for name, (data, expect) in hostile_files.items():
        (folder / name).write_bytes(data)
        hostile.append((str(folder / name), expect))
    (folder / "a-folder.jpg").mkdir()
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    os.symlink(folder / "loop-b", folder / "loop-a")
    os.symlink(folder / "loop-a", folder / "loop-b")
    not_found = outcomes(C.IMAGE_NOT_FOUND)
    unreadable = outcomes(C.IMAGE_NOT_FOUND, C.IMAGE_READ_FAILED)
    hostile += [
        (str(folder / "a-folder.jpg"), not_found),
        (str(folder / "a-folder.jpg") + "/", not_found),
        ("/", not_found),
        (str(folder / "dangling.jpg"), not_found),
        (str(folder / "missing.jpg"), not_found),
        (str(folder / "\u00fc\U0001f600 missing.jpg"), not_found),
        (str(folder / "loop-a"), unreadable),
        (str(folder / "80x80.png" / "under-a-file.jpg"), unreadable),
        (str(folder / ("x" * 300 + ".jpg")), unreadable),  # a name over 255 bytes
        ("/dev/null", outcomes(C.UNSUPPORTED_IMAGE_FORMAT)),
    ]

    # 15 MB is the limit: one byte over is refused from its size, before any read.
    limit = 15 * 1024 * 1024
    at_limit = folder / "exactly-15-mb.png"
    at_limit.write_bytes(_encoded(small, "PNG"))
    os.truncate(at_limit, limit)  # trailing zeros after IEND
    over = folder / "15-mb-plus-one.jpg"
    over.write_bytes(jpeg[:4096])
    os.truncate(over, limit + 1)
    costly = {
        "at-limit": (str(at_limit), outcomes(RESULT)),
        "over-limit": (str(over), outcomes(C.IMAGE_TOO_LARGE)),
        "dev-zero": ("/dev/zero", outcomes(C.IMAGE_TOO_LARGE)),
    }
    bases = [jpeg, png, _encoded(small, "PNG"), _encoded(small, "JPEG", progressive=True)]
    return Corpus(
        folder=folder,
        good=good,
        hostile=hostile,
        costly=costly,
        missing=str(folder / "missing.jpg"),
        directory=str(folder / "a-folder.jpg"),
        bases=bases,
    )


# Lines.


def _digits(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=count - 1))


def _string(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _object(d: Draw, members: list[tuple[str, str]]) -> str:
    """JSON object text from (key text, value text) pairs, with drawn spacing."""
    comma = d.choice([", ", ",", " ,\t"])
    colon = d.choice([": ", ":", " : "])
    body = comma.join(f"{key}{colon}{value}" for key, value in members)
    return d.choice(["", " ", "\t"]) + "{" + body + "}" + d.choice(["", " ", "\r", " \t"])


def _line(d: Draw, source_ref_text: str, expect, kind: str, extra=()) -> Line:
    members = [('"source-ref"', source_ref_text), *extra]
    if len(members) > 1:  # source-ref first, last or in between
        at = d.integer(0, len(members) - 1)
        members.insert(at, members.pop(0))
    return Line(_object(d, members).encode("utf-8"), expect, kind)


def _good_ref(d: Draw, c: Corpus) -> str:
    return _string(d.choice(c.good), d.boolean())


def _huge_number(d: Draw, digits: int) -> str:
    text = _digits(digits, d.seed())
    form = d.integer(0, 3)
    if form == 1:
        text = "-" + text
    elif form == 2:
        text = text[:1] + "." + text[1:] + "e-" + _digits(5, d.seed())
    elif form == 3:
        text = "0." + text + "E+" + _digits(400, d.seed())
    return text


def _extra_value(d: Draw) -> str:
    kind = d.integer(0, 11)
    if kind == 0:
        return _huge_number(d, d.choice([4_300, 4_301, 4_400, 5_000]))
    if kind == 1:
        return d.choice(['"\\udcff"', '"\\ud800x"', '"\\ude00\\ud83d"', '"\\ud83d\\ude00"'])
    if kind == 2:
        return d.choice(["null", "true", "false", "[]", "{}", '""', "0", "-0.0e-0"])
    if kind == 3:  # nested, with its own source-ref (only the top-level one counts)
        return '{"source-ref": 5, "a": [1, {"b": null}], "source-ref ": "/x.jpg"}'
    if kind == 4:
        depth = d.choice([1, 10, 100])
        return "[" * depth + "]" * depth
    if kind == 5:
        return _string("\u2028\u2029\x85\u00a0\ufeff\u200b\U0010ffff", d.boolean())
    if kind == 6:
        return _string("".join(chr(i) for i in range(32)), True)  # escaped control characters
    if kind == 7:
        return '"' + "\\\\" * d.integer(1, 50) + '\\""'
    if kind == 8:
        return _string("\u00e9\u4e2d" * d.integer(1, 400), d.boolean())
    if kind == 9:
        return '{"label": 1, "label-metadata": {"confidence": 0.93, "class-name": "cat"}}'
    if kind == 10:
        return _string("x" * d.integer(100, 20_000), True)
    return '"\\u0000"'


def good(d: Draw, c: Corpus, b: Budget) -> Line:
    return _line(d, _good_ref(d, c), outcomes(RESULT), "good")


def good_with_other_keys(d: Draw, c: Corpus, b: Budget) -> Line:
    extra = []
    for i in range(d.integer(1, 4)):
        key = d.choice(['"n"', '"label"', '""', '"\\udcff"', '"\u00e9\U0001f600"', '"source_ref"'])
        extra.append((key[:-1] + str(i) + '"', _extra_value(d)))
    return _line(d, _good_ref(d, c), outcomes(RESULT), "good-other-keys", extra)


def deep_nesting(d: Draw, c: Corpus, b: Budget) -> Line:
    """A good line with deep nesting in another key. Python's parser stops at its recursion
    limit (INVALID_JSON, 'nests too deeply'); either way it is one outcome."""
    opener, closer, deepest = d.choice([("[", "]", 30_000), ('{"a":', "}", 10_000)])
    depth = d.choice([200, 900, 1_000, 3_000, deepest])  # the deepest still fits in 64 KiB
    value = opener * depth + "1" + closer * depth
    return _line(
        d, _good_ref(d, c), outcomes(RESULT, C.INVALID_JSON), "deep-nesting", [('"x"', value)]
    )


def deep_document(d: Draw, c: Corpus, b: Budget) -> Line:
    depth = d.choice([1_000, 10_000, 30_000])
    closed = d.boolean()
    raw = "[" * depth + ("]" * depth if closed else "")
    expect = outcomes(C.INVALID_JSON, C.NOT_A_JSON_OBJECT) if closed else outcomes(C.INVALID_JSON)
    return Line(raw.encode(), expect, "deep-document")


def hostile_image(d: Draw, c: Corpus, b: Budget) -> Line:
    path, expect = d.choice(c.hostile)
    return _line(d, _string(path, d.boolean()), expect, "hostile-image")


def costly_image(d: Draw, c: Corpus, b: Budget) -> Line:
    name = d.choice(sorted(c.costly))
    if not b.take("15-mb-read") and name != "over-limit":  # refused from its size: cheap
        return good(d, c, b)
    path, expect = c.costly[name]
    return _line(d, _string(path, True), expect, f"costly-image-{name}")


def mutated_image(d: Draw, c: Corpus, b: Budget) -> Line:
    base = d.integer(0, len(c.bases) - 1)
    edits = []
    for _ in range(d.integer(1, 6)):
        region = d.choice([400, 4_000, 1 << 30])  # mostly the headers
        edits.append((d.integer(0, region), d.integer(1, 255)))
    cut = d.integer(0, 1 << 30) if d.integer(0, 3) == 0 else None
    path = c.mutated_image(base, edits, cut)
    # Whatever the flips did, the image's outcome is one of its own codes (never too large: the
    # size did not grow; never missing).
    expect = outcomes(
        RESULT,
        C.INVALID_IMAGE,
        C.UNSUPPORTED_IMAGE_FORMAT,
        C.IMAGE_DIMENSIONS_OUT_OF_RANGE,
        C.DECOMPRESSION_BOMB,
    )
    return _line(d, _string(path, True), expect, "mutated-image")


_NOT_STRINGS = (
    "42",
    "-0",
    "3.5e-7",
    "1e999",
    "null",
    "true",
    "false",
    "[]",
    '["/tmp/a.jpg"]',
    '{"s3": "bucket/key.jpg"}',
    '{"source-ref": "/tmp/a.jpg"}',
    '[[[[["/tmp/a.jpg"]]]]]',
)


def source_ref_not_a_string(d: Draw, c: Corpus, b: Budget) -> Line:
    form = d.integer(0, 2)
    if form == 0:
        value = _huge_number(d, d.choice([4_301, 5_000, 20_000]))
        expect = outcomes(C.INVALID_SOURCE_REF)
    elif form == 1:
        value = d.choice(["NaN", "Infinity", "-Infinity"])  # not JSON, though Python reads it
        expect = outcomes(C.INVALID_SOURCE_REF, C.INVALID_JSON)
    else:
        value = d.choice(_NOT_STRINGS)
        expect = outcomes(C.INVALID_SOURCE_REF)
    return _line(d, value, expect, "source-ref-not-a-string")


def _escaped(text: str) -> str:
    """JSON string text holding raw escapes as written (``\\udcff`` stays an escape)."""
    return '"' + text + '"'


def source_ref_invalid(d: Draw, c: Corpus, b: Budget) -> Line:
    folder = str(c.folder)
    refs = [
        '""',
        '"   "',
        '"\\t\\r\\n"',
        _string("/" + "a" * MAX_SOURCE_REF_CHARS, True),  # one character over
        _string(folder + "/nul\x00byte.jpg", True),
        _escaped(folder + "/\\udcff.jpg"),  # lone low surrogate
        _escaped(folder + "/\\ud800.jpg"),  # lone high surrogate
        _escaped(folder + "/\\ud83dA.jpg"),  # a pair broken by a letter
        _escaped("\\ude00\\ud83d"),  # a pair in the wrong order
        _escaped(folder + "/x.jpg\\ud83d"),  # a high surrogate at the end
        _escaped("s3://bucket/\\udfff.jpg"),
        '"images/relative.jpg"',
        '"./x.jpg"',
        '"../x.jpg"',
        '"~/x.jpg"',
        '"x.jpg"',
        _string(" " + c.good[0], True),
        '"C:\\\\images\\\\x.jpg"',
        '"\\\\\\\\server\\\\share\\\\x.jpg"',
        '"data:image/png;base64,iVBORw0KGgo="',
        '"s3://"',
        '"s3:///key.jpg"',
        '"s3://a/key.jpg"',
        '"s3://ab/key.jpg"',
        '"s3://-bucket/key.jpg"',
        '"s3://bucket-/key.jpg"',
        '"s3://buck et/key.jpg"',
        '"s3://bucket!/key.jpg"',
        '"s3://b\\u00fcck/key.jpg"',
        _string("s3://" + "a" * 300 + "/key.jpg", True),
        '"s3://bucket\\n/key.jpg"',  # a newline ends the bucket name
        '"gs://bucket\\n/key.jpg"',
        '"s3://bucket"',
        '"s3://bucket/"',
        '"s3://bucket/folder/"',
        '"gs://bucket"',
        '"s3://bucket\\t/key.jpg"',
        '"s3://\\u212abucket/key.jpg"',  # KELVIN SIGN: "k" to a case-insensitive match
        '"s3://bucket\\u017f/key.jpg"',  # LATIN SMALL LETTER LONG S: "s" likewise
    ]
    return _line(d, d.choice(refs), outcomes(C.INVALID_SOURCE_REF), "source-ref-invalid")


def source_ref_unsupported(d: Draw, c: Corpus, b: Budget) -> Line:
    refs = [
        _string("file://" + c.good[0], True),
        '"http://example.com/cat.jpg"',
        '"https://example.com/cat.jpg"',
        '"ftp://host/x.jpg"',
        '"S3://bucket/key.jpg"',
        '"GS://bucket/key.jpg"',
        '"s3a://bucket/key.jpg"',
        '"hdfs://namenode/x.jpg"',
        '"azfs://account/container/x.jpg"',
        '"c://x.jpg"',
        '"x+y.z-w://q/r.jpg"',
    ]
    return _line(d, d.choice(refs), outcomes(C.UNSUPPORTED_SCHEME), "source-ref-unsupported")


REMOTE_REFS = (
    '"s3://in-bucket/images/x.jpg"',
    '"gs://bucket/a/b.png"',
    '"s3://my.bucket-1/k%20ey \\u00e9.jpg"',
    '"s3://bucket/a\\nb.jpg"',  # object keys may hold anything
)


def source_ref_remote(d: Draw, c: Corpus, b: Budget) -> Line:
    """Well-formed s3:// and gs:// references: outside --allowed_source_prefixes=/ ."""
    return _line(d, d.choice(REMOTE_REFS), outcomes(C.ACCESS_DENIED), "source-ref-remote")


def missing_source_ref(d: Draw, c: Corpus, b: Budget) -> Line:
    ref = _good_ref(d, c)
    keys = [
        '"Source-Ref"',
        '"source-ref "',
        '" source-ref"',
        '"source_ref"',
        '"sourceRef"',
        '"\u0455ource-ref"',  # a Cyrillic s
        '"source-ref\\u0000"',
        '"source-ref\\u200b"',
        '"source\\u2010ref"',
    ]
    form = d.integer(0, 2)
    if form == 0:
        raw = _object(d, [(d.choice(keys), ref)])
    elif form == 1:
        raw = _object(d, [('"meta"', "{" + '"source-ref": ' + ref + "}")])
    else:
        raw = d.choice(["{}", " { } ", '{"a": 1}'])
    return Line(raw.encode("utf-8"), outcomes(C.MISSING_SOURCE_REF), "missing-source-ref")


def escaped_key(d: Draw, c: Corpus, b: Budget) -> Line:
    """``"\\u0073ource-ref"`` is ``"source-ref"`` once JSON is read."""
    raw = _object(d, [('"\\u0073ource-ref"', _good_ref(d, c))])
    return Line(raw.encode(), outcomes(RESULT), "escaped-key")


def duplicate_keys(d: Draw, c: Corpus, b: Budget) -> Line:
    """The last of duplicated keys counts (as JSON parsers do); refusing the line would do."""
    good_ref, missing = _good_ref(d, c), _string(c.missing, True)
    if d.boolean():
        members, expect = [("a", missing), ("b", good_ref)], RESULT
    else:
        members, expect = [("a", good_ref), ("b", "5")], C.INVALID_SOURCE_REF
    raw = _object(d, [('"source-ref"', value) for _, value in members])
    return Line(raw.encode(), outcomes(expect, C.INVALID_JSON), "duplicate-keys")


def not_an_object(d: Draw, c: Corpus, b: Budget) -> Line:
    ref = _good_ref(d, c)
    values = ["[]", "null", "true", "0", '"just a string"', "[" + ref + "]", "-1.5e300", '""']
    value = d.choice([*values, _huge_number(d, 5_000)])
    return Line(value.encode(), outcomes(C.NOT_A_JSON_OBJECT), "not-an-object")


def not_json(d: Draw, c: Corpus, b: Budget) -> Line:
    ref = _good_ref(d, c).encode()
    good_line = b'{"source-ref": ' + ref + b"}"
    raws = [
        b"this line is not JSON",
        b'{"source-ref": ' + ref,  # unclosed
        good_line + b" trailing",
        good_line + b"," + good_line,
        good_line + good_line,
        good_line + b"\r" + good_line,  # CR-only endings: one line
        b"{'source-ref': " + ref.replace(b'"', b"'") + b"}",
        b'{"source-ref": ' + ref + b",}",
        b'{"source-ref": "/tmp/a\x00.jpg"}',  # a raw NUL inside a string
        b'{"source-ref": "/tmp/a\x01\x1f.jpg"}',  # raw control characters
        b'{"source-ref": "/tmp/a\tb.jpg"}',
        b'{"source-ref": "/tmp/a\rb.jpg"}',  # a raw CR inside a string
        b"\x00",
        b"\x00" * 100,
        b"\x1c\x1d\x1e\x1f",  # separators: str.isspace, but neither JSON nor ASCII whitespace
        b"\xc2\xa0",  # NO-BREAK SPACE
        b"\xe2\x80\xa8",  # LINE SEPARATOR
        b"\xc2\x85",  # NEXT LINE
        b"\x1b[31m" + good_line + b"\x1b[0m",
        b"// " + good_line,
        BOM + good_line,  # a BOM after the start of the file is not skipped
        BOM + BOM + good_line,
        BOM + b"   ",
        good_line.replace(b'"source-ref"', b"source-ref"),
        b'{"source-ref": ' + ref + b', "n": 0x1F}',
        b'{"source-ref": ' + ref + b', "n": 01}',
        b'{"source-ref": ' + ref + b', "n": +1}',
        b'{"source-ref": ' + ref + b', "n": .5}',
        b'{"source-ref": ' + ref + b', "s": "\\x41"}',
        b'{"source-ref": ' + ref + b', "s": "\\u12"}',
        b"\x0b" + good_line + b"\x0c",  # VT and FF are not JSON whitespace
        "{\u201csource-ref\u201d: ".encode() + ref + b"}",  # curly quotes
    ]
    return Line(d.choice(raws), outcomes(C.INVALID_JSON), "not-json")


def not_utf8(d: Draw, c: Corpus, b: Budget) -> Line:
    junk = d.choice(
        [
            b"\xff",
            b"\xfe\xff",
            b"\xc0\xaf",  # overlong /
            b"\xed\xa0\x80",  # a surrogate written as UTF-8
            b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80",  # over U+10FFFF
            b"caf\xe9",  # Latin-1
            b"\x80",
            b"\xe2\x82",  # truncated sequence
        ]
    )
    form = d.integer(0, 2)
    path = json.dumps(d.choice(c.good))[1:-1].encode()  # escaped: no raw LF, quote, backslash
    if form == 0:  # inside the source-ref
        raw = b'{"source-ref": "' + path + junk + b'"}'
    elif form == 1:  # in another key of a good line
        raw = b'{"source-ref": "' + path + b'", "n": "' + junk + b'"}'
    else:  # at the very end, just before the line ending
        raw = b'{"source-ref": "' + path + b'"}' + junk
    return Line(raw, outcomes(C.INVALID_ENCODING), "not-utf8")


def utf16(d: Draw, c: Corpus, b: Budget) -> Line:
    text = '{"source-ref": ' + json.dumps(d.choice(c.good)) + "}"
    raw = text.encode(d.choice(["utf-16-le", "utf-16", "utf-32-le"]))
    if b"\n" in raw:  # a code unit holding 0x0A: keep the line one line
        raw = raw.replace(b"\n", b"\x0b")
    return Line(raw, outcomes(C.INVALID_ENCODING, C.INVALID_JSON), "utf16")


def blank(d: Draw, c: Corpus, b: Budget) -> Line:
    raw = d.choice([b"", b" ", b"\t", b"\r", b" \t \r", b"\x0b", b"\x0c", b"   " * 200, b"\r\r"])
    return Line(raw, frozenset(), "blank")


def boundary(d: Draw, c: Corpus, b: Budget) -> Line:
    """A line of 65,535 to 65,538 bytes, line ending included, with LF or CRLF; its content a
    good line padded in another key or with trailing spaces, or not JSON."""
    if not b.take("64k-line"):
        return good(d, c, b)
    total = d.choice([MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1, MAX_LINE_BYTES + 2])
    ending = d.choice([b"\n", b"\r\n"])
    head = b'{"source-ref": ' + _good_ref(d, c).encode()
    size = total - len(ending)
    form = d.integer(0, 2)
    if form == 0:
        head += b', "pad": "'
        raw = head + b"x" * (size - len(head) - 2) + b'"}'
        parsed = RESULT
    elif form == 1:
        head += b"}"
        raw = head + b" " * (size - len(head))
        parsed = RESULT
    else:
        raw = b"[" * size
        parsed = C.INVALID_JSON
    assert len(raw) + len(ending) == total
    expect = parsed if total <= MAX_LINE_BYTES else C.LINE_TOO_LONG
    return Line(raw, outcomes(expect), f"boundary-{total}", ending)


def long_string(d: Draw, c: Corpus, b: Budget) -> Line:
    """A very long string in another key, of ASCII or of 3-byte characters: whether the line
    fits depends on its bytes, not its characters."""
    if not b.take("64k-line"):
        return good(d, c, b)
    char = d.choice(["a", "\u4e2d", "\\u4e2d"])
    count = d.integer(1_000, 30_000)
    ending = d.choice([b"\n", b"\r\n"])
    raw = ('{"source-ref": ' + _good_ref(d, c) + ', "s": "' + char * count + '"}').encode()
    fits = len(raw) + len(ending) <= MAX_LINE_BYTES
    return Line(raw, outcomes(RESULT if fits else C.LINE_TOO_LONG), "long-string", ending)


def megabyte_line(d: Draw, c: Corpus, b: Budget) -> Line:
    if not b.take("megabyte-line"):
        return good(d, c, b)
    size = d.choice([MAX_LINE_BYTES * 2, 1 << 20, 3 << 20])
    raw = b'{"source-ref": "/' + b"a" * size + b'.jpg"}'
    return Line(raw, outcomes(C.LINE_TOO_LONG), "megabyte-line")


_FRAGMENTS = (
    b"\x00",
    b"\r",
    BOM,
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xe2\x80\xa8",
    b"\xc2\x85",
    b"\t",
    b'"',
    b"\\",
    b"\\u",
    b"\\udcff",
    b"{",
    b"}",
    b",",
    b"\x1b[31m",
    b" ",
    b"]",
    b"e999",
)


def mutated_line(d: Draw, c: Corpus, b: Budget) -> Line:
    """A structured line with bytes flipped, cut, inserted or removed: any outcome will do, as
    long as it is exactly one (and no INTERNAL_ERROR)."""
    base = d.choice([good, good_with_other_keys, source_ref_invalid, hostile_image, escaped_key])
    data = bytearray(base(d, c, b).raw)
    for _ in range(d.integer(1, 5)):
        op = d.integer(0, 3)
        at = d.integer(0, max(len(data) - 1, 0))
        if op == 0 and data:
            data[at] ^= d.integer(1, 255)
        elif op == 1:
            del data[at:]
        elif op == 2:
            data[at:at] = d.choice(_FRAGMENTS)
        else:
            del data[at : at + d.integer(1, 8)]
    raw = bytes(data).replace(b"\n", b"\x0b")  # an LF would split it into two lines
    return Line(raw, None, "mutated-line")


# (kind, weight): the first is what Hypothesis shrinks towards.
KINDS: tuple[tuple[Callable[[Draw, Corpus, Budget], Line], int], ...] = (
    (good, 10),
    (good_with_other_keys, 6),
    (hostile_image, 8),
    (mutated_image, 4),
    (costly_image, 1),
    (source_ref_not_a_string, 3),
    (source_ref_invalid, 5),
    (source_ref_unsupported, 2),
    (source_ref_remote, 2),
    (missing_source_ref, 2),
    (escaped_key, 1),
    (duplicate_keys, 1),
    (not_an_object, 2),
    (not_json, 5),
    (not_utf8, 3),
    (utf16, 1),
    (blank, 4),
    (deep_nesting, 1),
    (deep_document, 1),
    (boundary, 2),
    (long_string, 1),
    (megabyte_line, 1),
    (mutated_line, 8),
)
_WEIGHTED = tuple(kind for kind, weight in KINDS for _ in range(weight))


def hostile_line(d: Draw, c: Corpus, b: Budget) -> Line:
    return d.choice(_WEIGHTED)(d, c, b)


def pinned_lines(c: Corpus) -> list[Line]:
    """Lines every fuzz manifest holds, with the outcome each must have."""
    ref = json.dumps(c.good[0]).encode()

    def pad_to(total: int, ending: bytes) -> bytes:
        padding = b"p" * (total - len(ending) - len(ref) - 27)
        return b'{"source-ref": ' + ref + b', "pad": "' + padding + b'"}'

    lines = []
    for total, ending in [(65_535, b"\n"), (65_536, b"\n"), (65_537, b"\n")] + [
        (65_536, b"\r\n"),
        (65_537, b"\r\n"),
    ]:
        raw = pad_to(total, ending)
        assert len(raw) + len(ending) == total
        code = RESULT if total <= MAX_LINE_BYTES else C.LINE_TOO_LONG
        lines.append(Line(raw, outcomes(code), f"pinned-{total}-{ending!r}", ending))
    folder = str(c.folder).encode()
    lines += [
        Line(
            b'{"source-ref": "' + folder + b'/\\udcff.jpg"}',
            outcomes(C.INVALID_SOURCE_REF),
            "pinned-surrogate",
        ),
        Line(
            b'{"source-ref": ' + _digits(5_000, 1).encode() + b"}",
            outcomes(C.INVALID_SOURCE_REF),
            "pinned-huge-number-source-ref",
        ),
        Line(
            b'{"source-ref": ' + ref + b', "n": ' + _digits(4_400, 2).encode() + b"}",
            outcomes(RESULT),
            "pinned-4400-digits-other-key",
        ),
        Line(
            b'{"n": -' + _digits(5_000, 3).encode() + b"e-99999, " + b'"source-ref": ' + ref + b"}",
            outcomes(RESULT),
            "pinned-5000-digit-float-other-key",
        ),
        Line(
            b'{"source-ref": "s3://bucket\\n/key.jpg"}',
            outcomes(C.INVALID_SOURCE_REF),
            "pinned-bucket-newline",
        ),
        Line(
            BOM + b'{"source-ref": ' + ref + b"}", outcomes(C.INVALID_JSON), "pinned-bom-mid-file"
        ),
        Line(b'{"source-ref": "/dev/zero"}', outcomes(C.IMAGE_TOO_LARGE), "pinned-dev-zero"),
    ]
    return lines


# Manifests.


@dataclass
class Manifest:
    data: bytes
    lines: dict[int, Line]  # physical line number -> the line generated there

    def __repr__(self) -> str:  # Hypothesis prints it with a failing example
        return f"Manifest({len(self.lines)} lines, {len(self.data)} bytes, {self.kinds()})"

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in self.lines.values():
            counts[line.kind] = counts.get(line.kind, 0) + 1
        return dict(sorted(counts.items()))


def assemble(lines: list[Line], endings: list[bytes], bom: bool, final_ending: bool) -> Manifest:
    """The manifest's bytes; ``endings[i]`` ends line i unless the line forces its own; the
    last line has none unless ``final_ending`` (or it forces one)."""
    if lines and lines[0].raw.startswith(BOM) and not bom:
        # A BOM that starts the file is the file's: keep generated mid-file BOMs mid-file.
        lines = [Line(b'{"source-ref": "/x.jpg"}', None, "filler"), *lines]
        endings = [b"\n", *endings]
    parts = [BOM] if bom else []
    numbered: dict[int, Line] = {}
    for i, line in enumerate(lines):
        ending = line.ending if line.ending is not None else endings[i % len(endings)]
        if i == len(lines) - 1 and not final_ending and line.ending is None:
            ending = b""
        parts += [line.raw, ending]
        numbered[i + 1] = line
    return Manifest(b"".join(parts), numbered)


def random_manifest(seed: int, count: int, c: Corpus, budget: Budget | None = None) -> Manifest:
    """``count`` hostile lines drawn from ``random.Random(seed)``, the pinned lines among them
    (first: a BOM, then a 65,536-byte line)."""
    rng = random.Random(seed)
    d = RandomDraw(rng)
    budget = budget or Budget()
    lines = [hostile_line(d, c, budget) for _ in range(count)]
    for line in pinned_lines(c):
        lines.insert(rng.randint(1, len(lines)), line)
    first = next(line for line in pinned_lines(c) if line.kind.startswith("pinned-65536"))
    lines.insert(0, first)
    endings = [rng.choice([b"\n", b"\n", b"\r\n"]) for _ in range(97)]
    return assemble(lines, endings, bom=True, final_ending=rng.random() < 0.5)


def manifests(c: Corpus, min_lines: int = 40, max_lines: int = 100):
    """Hypothesis strategy: a whole hostile manifest, the pinned lines at drawn places."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw) -> Manifest:
        d = HypothesisDraw(draw)
        budget = Budget()
        lines = [hostile_line(d, c, budget) for _ in range(d.integer(min_lines, max_lines))]
        for line in pinned_lines(c):
            lines.insert(d.integer(0, len(lines)), line)
        endings = [d.choice([b"\n", b"\r\n"]) for _ in range(d.integer(1, 8))]
        return assemble(lines, endings, bom=d.boolean(), final_ending=d.boolean())

    return build()


# The oracle.


@dataclass(frozen=True)
class Physical:
    number: int
    content: bytes  # the line's bytes without its LF (a CR before it kept); line 1 without BOM
    ended: bool  # an LF follows it (the last line of a file may have none)
    too_long: bool
    blank: bool


def physical_lines(data: bytes, max_line_bytes: int = MAX_LINE_BYTES) -> list[Physical]:
    """The README's counting, written independently of ``read_manifest_lines``."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    pieces = data.split(b"\n")
    ends_with_lf = data.endswith(b"\n")
    if ends_with_lf or not data:
        pieces.pop()  # what follows the last LF is no line
    lines = []
    for number, piece in enumerate(pieces, 1):
        has_lf = number < len(pieces) or ends_with_lf
        too_long = len(piece) + has_lf > max_line_bytes
        blank = not too_long and (piece == b"" or piece.isspace())
        lines.append(Physical(number, piece, has_lf, too_long, blank))
    return lines


def _reference_source_ref(content: bytes):
    """The line's top-level source-ref as Python's json module reads it (numbers as text);
    ``_NO_REF`` when the line is not such an object."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5_000))  # whatever the job's own stack depth allowed
    try:
        document = json.loads(
            content.decode("utf-8"), parse_int=_Number, parse_float=_Number, parse_constant=_Number
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NO_REF
    finally:
        sys.setrecursionlimit(limit)
    if not isinstance(document, dict) or "source-ref" not in document:
        return _NO_REF
    return document["source-ref"]


_NO_REF = object()


class _Number(str):
    """A JSON number kept as its text (Python refuses integers of over 4,300 digits)."""


def _show(raw: bytes) -> str:
    return repr(raw[:160]) + (f"... ({len(raw)} bytes)" if len(raw) > 160 else "")


def check_outputs(manifest: Manifest, summary: dict, results: list[dict]) -> dict[str, int]:
    """Every assertion the fuzz tests make of one run; returns the outcome counts."""
    from tests.conftest import assert_outputs_contract

    assert_outputs_contract(summary, results)
    physical = physical_lines(manifest.data)
    counted = [line for line in physical if not line.blank]
    by_number = {line.number: line for line in physical}
    stats = summary["statistics"]
    assert stats["total-json-lines"] == len(counted), (stats, len(counted))
    errors = {error["line-numer"]: error for error in summary["errors"]}
    assert len(errors) == len(summary["errors"]), "two error entries for one line"
    stray = sorted(n for n in errors if n not in by_number or by_number[n].blank)
    assert not stray, f"errors for blank or absent lines {stray}"
    analysed = [line for line in counted if line.number not in errors]
    assert len(analysed) == len(results), (len(analysed), len(results))
    assert len(analysed) + len(errors) == len(counted)

    outcome: dict[int, str] = {}
    for line, result in zip(analysed, results):
        assert not line.too_long, f"line {line.number} is over the limit yet analysed"
        ref = _reference_source_ref(line.content)
        assert type(ref) is str, (
            f"line {line.number} analysed though it has no string source-ref: {_show(line.content)}"
        )
        assert result["source-ref"] == ref, (line.number, result["source-ref"][:200], ref[:200])
        outcome[line.number] = RESULT
    for number, error in errors.items():
        line = by_number[number]
        code = error["code"]
        outcome[number] = code
        message = error["message"]
        assert isinstance(message, str) and message.strip(), error
        assert len(message) <= 2 * MAX_SOURCE_REF_CHARS, (
            f"line {number}: a {len(message)}-char message"
        )
        assert code not in NEVER, f"line {number}: {error} for {_show(line.content)}"
        assert (code == C.LINE_TOO_LONG) == line.too_long, (number, code, line.too_long)
        if line.too_long:
            assert "source-ref" not in error
            continue
        try:
            line.content.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        assert (code == C.INVALID_ENCODING) == (not utf8), (number, code, _show(line.content))
        ref = _reference_source_ref(line.content)
        if code in IMAGE_OUTCOMES or code in (C.UNSUPPORTED_SCHEME,):
            assert error.get("source-ref") == ref, (number, error, ref)
        elif code == C.INVALID_SOURCE_REF:
            if type(ref) is str:
                shown = ref.encode("utf-8", "backslashreplace").decode("utf-8")
                assert error.get("source-ref") == shown, (number, error)
            else:
                assert "source-ref" not in error, (number, error)
        else:
            assert "source-ref" not in error, (number, error)

    for number, line in manifest.lines.items():
        physical_line = by_number[number]
        if line.expect is None:
            continue
        if not line.expect:  # generated blank
            assert physical_line.blank, f"line {number} ({line.kind}) should be blank"
            continue
        got = outcome.get(number)
        assert got in line.expect, (
            f"line {number} ({line.kind}): {got}, expected one of {sorted(line.expect)}; "
            f"{errors.get(number, {}).get('message', '')[:300]!r}; line {_show(line.raw)}"
        )
    counts: dict[str, int] = {}
    for value in outcome.values():
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))

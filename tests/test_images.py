"""Tests for fetching and decoding images, alone and under LoadImages."""

import io
import random
import struct
import time
import zlib

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from transforms.fetching import fetch_image_bytes
from transforms.images import DECODE_MAX_SIDE, MAX_SIDE, MIN_SIDE, LoadImages, decode_image
from transforms.records import ErrorCode, ImageProblem, ManifestLine


def _noise(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return Image.fromarray(pixels, "RGB")


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _jpeg(width, height, **kwargs):
    return _encode(_noise(width, height), "JPEG", **kwargs)


def _png(width, height):
    return _encode(_noise(width, height), "PNG")


def _problem(data, **kwargs):
    with pytest.raises(ImageProblem) as caught:
        decode_image(data, **kwargs)
    assert caught.value.message.strip()
    return caught.value.code


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(side=20_000):
    """A valid 8-bit greyscale PNG of side x side black pixels, without the bitmap in memory."""
    row = b"\x00" * (side + 1)  # filter type 0, then one zero byte per pixel
    rows_per_block = 100
    block = row * rows_per_block
    compressor = zlib.compressobj(9)
    idat = []
    checksum = zlib.adler32(b"")
    for index in range(side // rows_per_block):
        # Deflating all 400 MB takes seconds; after a full flush the compressor starts afresh,
        # so from the second block on, the same input deflates to the same bytes.
        if index < 2:
            deflated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
        idat.append(deflated)
        checksum = zlib.adler32(block, checksum)
    # The final (empty) block, with the Adler-32 of all the rows instead of the two seen.
    idat.append(compressor.flush()[:-4] + struct.pack(">I", checksum))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(idat))
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def png_bomb():
    return _png_bomb()


# decode_image: shapes and sizes


@pytest.mark.parametrize("encode", [_jpeg, _png], ids=["jpeg", "png"])
def test_decodes_to_uint8_rgb(encode):
    array = decode_image(encode(200, 120))
    assert array.dtype == np.uint8
    assert array.shape == (120, 200, 3)


def test_png_pixels_are_exact():
    image = _noise(120, 100, seed=3)
    assert np.array_equal(decode_image(_encode(image, "PNG")), np.asarray(image))


def test_jpeg_colour_is_kept():
    array = decode_image(_encode(Image.new("RGB", (100, 100), (200, 30, 40)), "JPEG"))
    assert np.abs(array.astype(int) - [200, 30, 40]).max() <= 3


@pytest.mark.parametrize(
    "encode, width, height, expected",
    [
        (_jpeg, 1024, 768, (384, 512, 3)),
        (_jpeg, 768, 1024, (512, 384, 3)),
        (_jpeg, 4000, 1000, (128, 512, 3)),
        (_png, 2000, 1000, (256, 512, 3)),
        (_png, 600, 1200, (512, 256, 3)),
    ],
)
def test_longest_side_is_reduced_keeping_aspect(encode, width, height, expected):
    assert decode_image(encode(width, height)).shape == expected


def test_max_side_argument():
    assert decode_image(_png(400, 200), max_side=100).shape == (50, 100, 3)


def test_large_png_goes_through_the_large_decode_path():
    # Over 4096 x 4096 pixels: decoded one at a time, then reduced.
    data = _encode(Image.new("L", (5000, 4000), 77), "PNG")
    array = decode_image(data)
    assert max(array.shape[:2]) == DECODE_MAX_SIDE
    assert array.shape[1] == DECODE_MAX_SIDE
    assert abs(array.shape[0] - 4000 / 5000 * DECODE_MAX_SIDE) <= 1
    assert (array == 77).all()


@pytest.mark.parametrize("encode", [_jpeg, _png], ids=["jpeg", "png"])
def test_small_image_is_not_upscaled(encode):
    assert decode_image(encode(100, 90)).shape == (90, 100, 3)


def test_exif_orientation_6_is_applied():
    image = Image.new("RGB", (800, 400), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 200, 100))  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    array = decode_image(_encode(image, "JPEG", exif=exif))
    assert array.shape == (512, 256, 3)
    # Turned clockwise, the stored top-left corner is shown top-right.
    top_right = array[10:50, -30:-10].astype(int)
    top_left = array[10:50, 10:30].astype(int)
    assert (top_right[..., 0] > 200).all() and (top_right[..., 1:] < 60).all()
    assert (top_left < 60).all()


def test_exif_orientation_6_on_small_image():
    exif = Image.Exif()
    exif[0x0112] = 6
    assert decode_image(_jpeg(300, 150, exif=exif)).shape == (300, 150, 3)


def test_rgba_transparent_pixels_become_white():
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (50, 0, 100, 100))
    array = decode_image(_encode(image, "PNG"))
    assert array.shape == (100, 100, 3)
    assert (array[:, :50] == 255).all()
    assert (array[:, 50:] == [0, 0, 255]).all()


def test_half_transparent_pixels_are_blended_on_white():
    array = decode_image(_encode(Image.new("RGBA", (100, 100), (0, 0, 0, 128)), "PNG"))
    assert np.abs(array.astype(int) - 127).max() <= 1


def test_greyscale_with_alpha_becomes_white_where_transparent():
    image = Image.new("LA", (100, 100), (0, 0))
    image.paste((10, 255), (0, 0, 100, 50))
    array = decode_image(_encode(image, "PNG"))
    assert (array[:50] == 10).all()
    assert (array[50:] == 255).all()


def test_greyscale_png_decodes_to_rgb():
    array = decode_image(_encode(Image.new("L", (100, 100), 100), "PNG"))
    assert array.shape == (100, 100, 3)
    assert (array == 100).all()


def test_greyscale_jpeg_decodes_to_rgb():
    array = decode_image(_encode(Image.new("L", (100, 100), 100), "JPEG"))
    assert array.shape == (100, 100, 3)
    assert np.abs(array.astype(int) - 100).max() <= 2


def test_one_bit_png_decodes_to_rgb():
    image = Image.new("1", (100, 100), 0)
    image.paste(1, (0, 0, 100, 50))
    array = decode_image(_encode(image, "PNG"))
    assert array.shape == (100, 100, 3)
    assert (array[:50] == 255).all() and (array[50:] == 0).all()


def test_palette_png_decodes_to_rgb():
    image = Image.new("P", (100, 100), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 100, 50))
    array = decode_image(_encode(image, "PNG"))
    assert array.shape == (100, 100, 3)
    assert (array[:50] == 0).all()
    assert (array[50:] == [10, 200, 30]).all()


def test_palette_png_with_transparency_becomes_white_there():
    image = Image.new("P", (100, 100), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 100, 50))
    array = decode_image(_encode(image, "PNG", transparency=0))
    assert (array[:50] == 255).all()
    assert (array[50:] == [10, 200, 30]).all()


def test_16_bit_png_decodes_to_rgb():
    values = np.full((100, 120), 32768, np.uint16)
    values[:50] = 65535
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    array = decode_image(data)
    assert array.dtype == np.uint8
    assert array.shape == (100, 120, 3)
    assert (array[:50] == 255).all()
    assert (array[50:] == 128).all()


def test_cmyk_jpeg_decodes_to_rgb():
    data = _encode(Image.new("CMYK", (200, 100), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    array = decode_image(data)
    assert array.dtype == np.uint8
    assert array.shape == (100, 200, 3)
    assert np.abs(array.astype(int) - [255, 0, 0]).max() <= 3


# decode_image: refusals


@pytest.mark.parametrize(
    "width, height",
    [(MIN_SIDE - 1, 200), (200, MIN_SIDE - 1), (10, 10), (1, 1)],
)
def test_side_under_minimum_is_out_of_range(width, height):
    assert _problem(_png(width, height)) == ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE


def test_jpeg_side_under_minimum_is_out_of_range():
    assert _problem(_jpeg(79, 500)) == ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE


def test_minimum_side_is_accepted():
    assert decode_image(_png(MIN_SIDE, MIN_SIDE)).shape == (MIN_SIDE, MIN_SIDE, 3)


@pytest.mark.parametrize("mode", ["1", "L"])
def test_side_over_maximum_is_out_of_range(mode):
    data = _encode(Image.new(mode, (MAX_SIDE + 1, 100)), "PNG")
    assert _problem(data) == ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE


def test_tall_side_over_maximum_is_out_of_range():
    data = _encode(Image.new("1", (100, MAX_SIDE + 1)), "PNG")
    assert _problem(data) == ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE


def test_maximum_side_is_accepted():
    data = _encode(Image.new("L", (MAX_SIDE, 100), 50), "PNG")
    array = decode_image(data)
    assert array.shape[1] == DECODE_MAX_SIDE
    assert (array == 50).all()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP", "ICO"])
def test_other_formats_are_unsupported(fmt):
    data = _encode(_noise(100, 100), fmt)
    assert _problem(data) == ErrorCode.UNSUPPORTED_IMAGE_FORMAT


@pytest.mark.parametrize(
    "data",
    [random.Random(0).randbytes(5000), b"", b"\x89PNG", b"<html>not an image</html>"],
    ids=["random", "empty", "png-signature-only", "html"],
)
def test_data_that_is_no_image_is_unsupported(data):
    assert _problem(data) == ErrorCode.UNSUPPORTED_IMAGE_FORMAT


def test_truncated_jpeg_is_invalid():
    data = _jpeg(400, 300)
    assert _problem(data[: len(data) // 2]) == ErrorCode.INVALID_IMAGE


def test_truncated_png_is_invalid():
    data = _png(400, 300)
    assert _problem(data[: len(data) // 2]) == ErrorCode.INVALID_IMAGE


def test_png_with_corrupt_data_is_invalid():
    data = bytearray(_png(200, 200))
    start = data.index(b"IDAT") + 4
    data[start + 100 : start + 400] = bytes(300)
    assert _problem(bytes(data)) == ErrorCode.INVALID_IMAGE


def test_png_bomb_is_small_and_valid(png_bomb, monkeypatch):
    assert len(png_bomb) < 1_000_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    image = Image.open(io.BytesIO(png_bomb))  # reads the header only
    assert (image.format, image.mode, image.size) == ("PNG", "L", (20_000, 20_000))


def test_png_bomb_is_refused_fast(png_bomb):
    started = time.perf_counter()
    assert _problem(png_bomb) == ErrorCode.DECOMPRESSION_BOMB
    assert time.perf_counter() - started < 0.5


# fetch_image_bytes


def test_fetch_returns_the_bytes(tmp_path):
    data = _jpeg(100, 100)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    assert fetch_image_bytes(str(path)) == data


def test_fetch_unicode_path(tmp_path):
    path = tmp_path / "été 写真.png"
    path.write_bytes(b"some bytes")
    assert fetch_image_bytes(str(path)) == b"some bytes"


def test_fetch_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert fetch_image_bytes(str(path)) == b""


def _fetch_problem(path, **kwargs):
    with pytest.raises(ImageProblem) as caught:
        fetch_image_bytes(str(path), **kwargs)
    assert caught.value.message.strip()
    return caught.value


def test_fetch_missing_file_is_not_found(tmp_path):
    problem = _fetch_problem(tmp_path / "missing.jpg")
    assert problem.code == ErrorCode.IMAGE_NOT_FOUND
    assert "missing.jpg" in problem.message


def test_fetch_missing_folder_is_not_found(tmp_path):
    assert _fetch_problem(tmp_path / "no" / "a.jpg").code == ErrorCode.IMAGE_NOT_FOUND


def test_fetch_directory_is_not_found(tmp_path):
    problem = _fetch_problem(tmp_path)
    assert problem.code == ErrorCode.IMAGE_NOT_FOUND
    assert "directory" in problem.message


def test_fetch_file_over_max_bytes_is_too_large(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"x" * 1001)
    problem = _fetch_problem(path, max_bytes=1000)
    assert problem.code == ErrorCode.IMAGE_TOO_LARGE
    assert "1001" in problem.message


def test_fetch_file_of_exactly_max_bytes(tmp_path):
    path = tmp_path / "edge.jpg"
    path.write_bytes(b"x" * 1000)
    assert fetch_image_bytes(str(path), max_bytes=1000) == b"x" * 1000


# LoadImages


def test_load_images_rejects_zero_concurrency():
    with pytest.raises(ValueError):
        LoadImages(concurrency=0)


def test_load_images_splits_good_and_bad(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg(200, 100))
    (tmp_path / "b.png").write_bytes(_png(100, 90))
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    truncated = _jpeg(300, 300)
    (tmp_path / "half.jpg").write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "tiny.png").write_bytes(_png(20, 20))
    lines = [
        ManifestLine(1, str(tmp_path / "a.jpg")),
        ManifestLine(2, str(tmp_path / "missing.jpg")),
        ManifestLine(3, str(tmp_path / "b.png")),
        ManifestLine(4, str(tmp_path / "broken.jpg")),
        ManifestLine(5, str(tmp_path / "half.jpg")),
        ManifestLine(6, str(tmp_path / "tiny.png")),
        ManifestLine(7, str(tmp_path / "a.jpg")),
    ]
    with test_pipeline.TestPipeline() as p:
        result = p | beam.Create(lines) | LoadImages(concurrency=4)
        images = result.images | "ImageShapes" >> beam.MapTuple(
            lambda line, image: (line.line_number, image.shape, str(image.dtype))
        )
        assert_that(
            images,
            equal_to(
                [
                    (1, (100, 200, 3), "uint8"),
                    (3, (90, 100, 3), "uint8"),
                    (7, (100, 200, 3), "uint8"),
                ]
            ),
            label="CheckImages",
        )
        errors = result[LoadImages.TAG_INVALID] | "ErrorCodes" >> beam.Map(
            lambda e: (
                e.line_number,
                e.code,
                e.source_ref == lines[e.line_number - 1].source_ref,
            )
        )
        assert_that(
            errors,
            equal_to(
                [
                    (2, ErrorCode.IMAGE_NOT_FOUND, True),
                    (4, ErrorCode.UNSUPPORTED_IMAGE_FORMAT, True),
                    (5, ErrorCode.INVALID_IMAGE, True),
                    (6, ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE, True),
                ]
            ),
            label="CheckErrors",
        )


@pytest.mark.parametrize("concurrency", [1, 4])
def test_load_images_emits_every_line_once(tmp_path, concurrency):
    good = tmp_path / "good.png"
    good.write_bytes(_png(100, 90))
    lines = [
        ManifestLine(n, str(good if n % 3 else tmp_path / f"missing-{n}.png")) for n in range(1, 31)
    ]
    with test_pipeline.TestPipeline() as p:
        result = p | beam.Create(lines) | LoadImages(concurrency=concurrency)
        loaded = result.images | "LoadedNumbers" >> beam.MapTuple(
            lambda line, image: line.line_number
        )
        failed = result[LoadImages.TAG_INVALID] | "FailedNumbers" >> beam.Map(
            lambda e: e.line_number
        )
        assert_that(loaded, equal_to([n for n in range(1, 31) if n % 3]), label="CheckLoaded")
        assert_that(
            failed,
            equal_to([n for n in range(1, 31) if not n % 3]),
            label="CheckFailed",
        )


@pytest.mark.parametrize(
    "error_code, expected",
    [
        ("NoSuchKey", ErrorCode.IMAGE_NOT_FOUND),
        ("NoSuchBucket", ErrorCode.IMAGE_NOT_FOUND),
        ("404", ErrorCode.IMAGE_NOT_FOUND),
        ("AccessDenied", ErrorCode.ACCESS_DENIED),
        ("403", ErrorCode.ACCESS_DENIED),
        ("SlowDown", ErrorCode.IMAGE_READ_FAILED),
    ],
)
def test_s3_client_errors_are_classified(error_code, expected):
    from botocore.exceptions import ClientError

    from transforms.fetching import _storage_problem

    error = ClientError({"Error": {"Code": error_code, "Message": "x"}}, "GetObject")
    problem = _storage_problem("s3://bucket/key.jpg", error)
    assert problem.code == expected
    assert "s3://bucket/key.jpg" in problem.message or expected == ErrorCode.IMAGE_READ_FAILED


def test_a_multi_picture_jpeg_is_a_jpeg():
    first = Image.new("RGB", (200, 100), (200, 30, 30))
    second = Image.new("RGB", (200, 100), (30, 30, 200))
    data = _encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image = decode_image(data)
    assert image.shape == (100, 200, 3)
    assert [int(v) for v in image[50, 100]] == pytest.approx([200, 30, 30], abs=8)


@pytest.mark.parametrize("cut", [8, 16, 20], ids=["signature only", "in IHDR", "bad IHDR CRC"])
def test_a_png_whose_header_is_cut_is_invalid_not_unsupported(cut):
    data = bytearray(_png(120, 90))
    if cut == 20:
        data[29] ^= 0xFF  # IHDR's CRC
    else:
        data = data[:cut]
    with pytest.raises(ImageProblem) as caught:
        decode_image(bytes(data))
    assert caught.value.code == ErrorCode.INVALID_IMAGE, caught.value.message


def test_text_is_still_an_unsupported_format():
    with pytest.raises(ImageProblem) as caught:
        decode_image(b"just some text named .jpg")
    assert caught.value.code == ErrorCode.UNSUPPORTED_IMAGE_FORMAT

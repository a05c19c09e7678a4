"""The console's thumbnails (against a moto S3 server over HTTP) and its upload checks."""

from __future__ import annotations

import io
import os
import pathlib
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.console.images import (
    THUMBNAIL_SIZES,
    CheckedUpload,
    ImageRefused,
    ImageUnavailable,
    ThumbnailCache,
    UploadRefused,
    check_upload,
    unique_names,
)

ALLOWED = ["in-bucket/images"]
ENTRY = re.compile(r"[0-9a-f]{64}\.jpg")


class CountingS3:
    """An S3 client that records every call made through it."""

    def __init__(self, client):
        self._client = client
        self.calls: list = []
        self._lock = threading.Lock()

    def get_object(self, **kwargs):
        with self._lock:
            self.calls.append(kwargs)
        return self._client.get_object(**kwargs)

    def __getattr__(self, name):
        with self._lock:
            self.calls.append(name)
        return getattr(self._client, name)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _read(path: str) -> bytes:
    return pathlib.Path(path).read_bytes()


def _entries(folder) -> set[str]:
    return {name for name in os.listdir(folder) if ENTRY.fullmatch(name)}


@pytest.fixture
def store(s3, sample_photos):
    """``in-bucket`` with photos under ``images/`` and ``private/``, and ``elsewhere``."""
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="elsewhere")
    for name in ("chelsea.jpg", "rocket.jpg", "astronaut.png", "coffee.jpg", "camera.png"):
        s3.put_object(Bucket="in-bucket", Key=f"images/{name}", Body=_read(sample_photos[name]))
    for key in ("private/x.jpg", "x.jpg"):
        s3.put_object(Bucket="in-bucket", Key=key, Body=_read(sample_photos["chelsea.jpg"]))
    s3.put_object(Bucket="elsewhere", Key="images/x.jpg", Body=_read(sample_photos["chelsea.jpg"]))
    return s3


@pytest.fixture
def client(store):
    return CountingS3(store)


def _cache(folder, client, *, max_bytes=10 << 20, allowed=ALLOWED, **options) -> ThumbnailCache:
    return ThumbnailCache(
        str(folder), max_bytes=max_bytes, s3_client=client, allowed_locations=allowed, **options
    )


# --- Thumbnails --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [160, 320])
def test_a_thumbnail_is_an_rgb_jpeg_scaled_to_its_longest_side(tmp_path, client, size):
    cache = _cache(tmp_path / "cache", client)
    data = cache.thumbnail("s3://in-bucket/images/rocket.jpg", size)  # 640 x 427
    image = _open(data)
    assert image.format == "JPEG" and image.mode == "RGB"
    width, height = image.size
    assert width == size
    assert abs(height / width - 427 / 640) < 0.02


def test_a_thumbnail_is_never_enlarged(tmp_path, client):
    cache = _cache(tmp_path / "cache", client)
    image = _open(cache.thumbnail("s3://in-bucket/images/chelsea.jpg", 1024))
    assert image.size == (451, 300)


def test_a_greyscale_png_becomes_an_rgb_jpeg(tmp_path, client):
    image = _open(_cache(tmp_path, client).thumbnail("s3://in-bucket/images/camera.png", 160))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (160, 160))


@pytest.mark.parametrize("size", [0, 100, 161, 2048, -1, "160", 160.0, True])
def test_only_the_console_sizes_are_made(tmp_path, client, size):
    cache = _cache(tmp_path, client)
    with pytest.raises(ValueError) as raised:
        cache.thumbnail("s3://in-bucket/images/rocket.jpg", size)
    assert type(raised.value) is ValueError
    assert client.calls == []
    assert THUMBNAIL_SIZES == (160, 320, 1024)


def test_transparency_is_composited_on_white(tmp_path, client):
    image = Image.new("RGBA", (400, 200), (0, 0, 0, 0))  # left half transparent black
    image.paste((255, 0, 0, 255), (200, 0, 400, 200))  # right half opaque red
    client.put_object(Bucket="in-bucket", Key="images/alpha.png", Body=_encode(image, "PNG"))
    palette = Image.new("P", (300, 300), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255])
    palette.paste(1, (150, 0, 300, 300))
    data = _encode(palette, "PNG", transparency=0)
    client.put_object(Bucket="in-bucket", Key="images/palette.png", Body=data)
    cache = _cache(tmp_path, client)

    thumb = _open(cache.thumbnail("s3://in-bucket/images/alpha.png", 160)).convert("RGB")
    assert thumb.size == (160, 80)
    assert all(value > 245 for value in thumb.getpixel((20, 40)))
    red, green, blue = thumb.getpixel((140, 40))
    assert red > 230 and green < 30 and blue < 30

    thumb = _open(cache.thumbnail("s3://in-bucket/images/palette.png", 160)).convert("RGB")
    assert all(value > 245 for value in thumb.getpixel((20, 80)))
    red, green, blue = thumb.getpixel((140, 80))
    assert blue > 230 and red < 30 and green < 30


def test_the_exif_orientation_is_applied(tmp_path, client):
    image = Image.new("RGB", (400, 200), (255, 0, 0))  # stored landscape: left red, right blue
    image.paste((0, 0, 255), (200, 0, 400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    data = _encode(image, "JPEG", exif=exif, quality=95)
    client.put_object(Bucket="in-bucket", Key="images/rotated.jpg", Body=data)

    thumb = _open(_cache(tmp_path, client).thumbnail("s3://in-bucket/images/rotated.jpg", 160))
    assert thumb.size == (80, 160)  # portrait
    top, bottom = thumb.getpixel((40, 20)), thumb.getpixel((40, 140))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now at the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_multi_picture_jpeg_shows_its_first_picture(tmp_path, client):
    frames = [Image.new("RGB", (400, 300), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    client.put_object(Bucket="in-bucket", Key="images/stereo.jpg", Body=buffer.getvalue())
    thumb = _open(_cache(tmp_path, client).thumbnail("s3://in-bucket/images/stereo.jpg", 160))
    assert thumb.size == (160, 120)
    red, green, blue = thumb.getpixel((80, 60))
    assert red > 230 and green < 30 and blue < 30


def test_a_versioned_ref_reads_that_version(tmp_path, client, sample_photos):
    client.put_bucket_versioning(Bucket="in-bucket", VersioningConfiguration={"Status": "Enabled"})
    key = "images/versioned.jpg"
    first = client.put_object(Bucket="in-bucket", Key=key, Body=_read(sample_photos["chelsea.jpg"]))
    client.put_object(Bucket="in-bucket", Key=key, Body=_read(sample_photos["astronaut.jpg"]))
    cache = _cache(tmp_path, client)
    client.calls.clear()

    old = _open(cache.thumbnail(f"s3://in-bucket/{key}?versionId={first['VersionId']}", 320))
    new = _open(cache.thumbnail(f"s3://in-bucket/{key}", 320))
    assert old.size == (320, 213)  # chelsea, 451 x 300
    assert new.size == (320, 320)  # astronaut, 512 x 512
    assert client.calls[0]["VersionId"] == first["VersionId"]
    assert "VersionId" not in client.calls[1]

    with pytest.raises(ImageUnavailable):
        cache.thumbnail(f"s3://in-bucket/{key}?versionId=no-such-version", 320)


def test_cache_hits_do_not_read_s3(tmp_path, client):
    folder = tmp_path / "cache"
    cache = _cache(folder, client)
    ref = "s3://in-bucket/images/coffee.jpg"
    first = cache.thumbnail(ref, 320)
    client.delete_object(Bucket="in-bucket", Key="images/coffee.jpg")
    client.calls.clear()

    assert cache.thumbnail(ref, 320) == first
    assert client.calls == []
    assert cache.cached_bytes() == len(first)
    assert len(_entries(folder)) == 1
    assert not [name for name in os.listdir(folder) if name not in _entries(folder)]

    # Another size is another entry; the object is gone now.
    with pytest.raises(ImageUnavailable):
        cache.thumbnail(ref, 160)
    assert cache.cached_bytes() == len(first)

    # A new cache over the same folder (a restart) finds the entry.
    again = _cache(folder, client)
    client.calls.clear()
    assert again.cached_bytes() == len(first)
    assert again.thumbnail(ref, 320) == first
    assert client.calls == []


def test_the_size_bound_evicts_the_least_recently_used(tmp_path, client):
    refs = [f"s3://in-bucket/images/{name}" for name in ("chelsea.jpg", "rocket.jpg", "coffee.jpg")]
    sizes = [len(_cache(tmp_path / "measure", client).thumbnail(ref, 160)) for ref in refs]
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"x" * 100_000)  # not an entry: never deleted
    (folder / "sub").mkdir()
    (folder / "sub" / ("0" * 64 + ".jpg")).write_bytes(b"y" * 100_000)
    (folder / ("a" * 64 + ".png")).write_bytes(b"z" * 100_000)
    foreign = set(os.listdir(folder))
    cache = _cache(folder, client, max_bytes=sum(sizes) - 1)
    assert cache.cached_bytes() == 0

    a, b, c = refs
    first_a = cache.thumbnail(a, 160)
    cache.thumbnail(b, 160)
    assert cache.cached_bytes() == sizes[0] + sizes[1]
    assert len(_entries(folder)) == 2
    client.calls.clear()
    assert cache.thumbnail(a, 160) == first_a  # a is now the most recently used
    assert client.calls == []
    cache.thumbnail(c, 160)  # over the bound: b goes

    assert cache.cached_bytes() == sizes[0] + sizes[2]
    on_disk = sum((folder / name).stat().st_size for name in _entries(folder))
    assert on_disk == cache.cached_bytes()
    assert foreign <= set(os.listdir(folder))
    assert set(os.listdir(folder)) - foreign == _entries(folder)
    client.calls.clear()
    cache.thumbnail(a, 160)
    cache.thumbnail(c, 160)
    assert client.calls == []
    cache.thumbnail(b, 160)
    assert len(client.calls) == 1
    assert foreign <= set(os.listdir(folder))


def test_a_restart_evicts_by_mtime_and_hits_touch_files(tmp_path, client):
    refs = [f"s3://in-bucket/images/{name}" for name in ("chelsea.jpg", "rocket.jpg", "coffee.jpg")]
    folder = tmp_path / "cache"
    cache = _cache(folder, client)
    for ref in refs:
        cache.thumbnail(ref, 160)
    for age, name in enumerate(sorted(_entries(folder))):
        os.utime(folder / name, (1_000_000 - age * 1000, 1_000_000 - age * 1000))
    sizes = {name: (folder / name).stat().st_size for name in _entries(folder)}

    # A hit touches its file, so that a restart sees it as the most recently used.
    client.calls.clear()
    _cache(folder, client).thumbnail(refs[0], 160)
    assert client.calls == []
    touched = [name for name in sizes if (folder / name).stat().st_mtime > 1_000_000]
    assert len(touched) == 1

    # Restarting with a smaller bound deletes the oldest by mtime until within it.
    newest_first = sorted(sizes, key=lambda name: -(folder / name).stat().st_mtime)
    assert newest_first[0] == touched[0]
    bound = sizes[newest_first[0]] + sizes[newest_first[1]]
    smaller = _cache(folder, client, max_bytes=bound)
    assert smaller.cached_bytes() == bound
    assert _entries(folder) == set(newest_first[:2])
    client.calls.clear()
    assert smaller.thumbnail(refs[0], 160)
    assert client.calls == []


def test_concurrent_thumbnails(tmp_path, client):
    names = ("chelsea.jpg", "rocket.jpg", "coffee.jpg", "astronaut.png")
    jobs = [(f"s3://in-bucket/images/{name}", size) for name in names for size in (160, 320)]
    expected = {job: _cache(tmp_path / "serial", client).thumbnail(*job) for job in jobs}
    folder = tmp_path / "cache"
    cache = _cache(folder, client)
    client.calls.clear()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda job: (job, cache.thumbnail(*job)), jobs * 8))
    assert all(data == expected[job] for job, data in results)
    assert len(client.calls) == len(jobs)  # each made once; the other requests waited
    on_disk = sum((folder / name).stat().st_size for name in _entries(folder))
    assert cache.cached_bytes() == on_disk == sum(len(data) for data in expected.values())
    assert set(os.listdir(folder)) == _entries(folder)  # no temporary files left


def test_concurrent_thumbnails_within_a_small_bound(tmp_path, client):
    names = ("chelsea.jpg", "rocket.jpg", "coffee.jpg", "astronaut.png", "camera.png")
    jobs = [(f"s3://in-bucket/images/{name}", size) for name in names for size in (160, 320)]
    folder = tmp_path / "cache"
    cache = _cache(folder, client, max_bytes=40_000)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda job: cache.thumbnail(*job), jobs * 4))
    assert all(_open(data).format == "JPEG" for data in results)
    on_disk = sum((folder / name).stat().st_size for name in _entries(folder))
    assert cache.cached_bytes() == on_disk <= 40_000
    assert set(os.listdir(folder)) == _entries(folder)


REFUSED = [
    "/etc/passwd",
    "file:///etc/passwd",
    "../etc/passwd",
    "images/chelsea.jpg",
    "",
    "http://in-bucket.s3.amazonaws.com/images/chelsea.jpg",
    "https://in-bucket.s3.amazonaws.com/images/chelsea.jpg",
    "S3://in-bucket/images/chelsea.jpg",
    "s3:/in-bucket/images/chelsea.jpg",
    "s3://",
    "s3://in-bucket",
    "s3://in-bucket/",
    "s3:///images/chelsea.jpg",
    "s3://in-bucket/images/",
    "s3://in-bucket/images/../private/x.jpg",
    "s3://in-bucket/images/./chelsea.jpg",
    "s3://in-bucket/images/..",
    "s3://in-bucket//images/chelsea.jpg",
    "s3://in-bucket/private/x.jpg",
    "s3://in-bucket/x.jpg",
    "s3://elsewhere/images/x.jpg",
    "s3://in-bucket.evil/images/x.jpg",
    "s3://../images/chelsea.jpg",
    "s3://in-bucket/images/chelsea.jpg?versionId=",
    "s3://in-bucket/images/chelsea\x00.jpg",
    "s3://in-bucket/images/chelsea.jpg\n",
    "s3://in-bucket/images/" + "k" * 1100,
]


@pytest.mark.parametrize("ref", REFUSED)
def test_refused_references_are_not_read(tmp_path, client, ref):
    cache = _cache(tmp_path / "cache", client)
    with pytest.raises(ImageRefused) as raised:
        cache.thumbnail(ref, 160)
    assert isinstance(raised.value, ValueError) and str(raised.value)
    assert client.calls == []
    assert os.listdir(tmp_path / "cache") == []


@pytest.mark.parametrize("ref", [None, b"s3://in-bucket/images/chelsea.jpg", 7])
def test_a_reference_that_is_not_text_is_refused(tmp_path, client, ref):
    with pytest.raises(ImageRefused):
        _cache(tmp_path, client).thumbnail(ref, 160)
    assert client.calls == []


def test_no_allowed_locations_allows_every_bucket_and_empty_allows_none(tmp_path, client):
    assert _open(
        _cache(tmp_path / "a", client, allowed=None).thumbnail("s3://elsewhere/images/x.jpg", 160)
    ).size == (160, 106)
    client.calls.clear()
    with pytest.raises(ImageRefused):
        _cache(tmp_path / "b", client, allowed=[]).thumbnail("s3://in-bucket/images/x.jpg", 160)
    with pytest.raises(ImageRefused):  # None still refuses what is not s3://
        _cache(tmp_path / "c", client, allowed=None).thumbnail("/etc/passwd", 160)
    assert client.calls == []


@pytest.mark.parametrize(
    "ref",
    [
        "s3://in-bucket/images/missing.jpg",
        "s3://no-such-bucket/images/chelsea.jpg",
    ],
)
def test_missing_objects_are_unavailable(tmp_path, client, ref):
    cache = _cache(tmp_path, client, allowed=None)
    with pytest.raises(ImageUnavailable, match="does not exist"):
        cache.thumbnail(ref, 160)
    assert len(client.calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"just some text, not an image\n",
        b"",
        _encode(Image.new("P", (200, 200)), "GIF"),
        _encode(Image.new("RGB", (200, 200), "red"), "BMP"),
        _encode(Image.new("RGB", (400, 400), "red"), "JPEG")[:300],
        _encode(Image.new("RGB", (400, 400), "red"), "PNG")[:60],
        b"\xff\xd8\xff" + b"\x00" * 500,
    ],
    ids=["text", "empty", "gif", "bmp", "truncated-jpeg", "truncated-png", "bad-jpeg"],
)
def test_objects_that_are_not_images_are_unavailable(tmp_path, client, body):
    client.put_object(Bucket="in-bucket", Key="images/not-an-image.jpg", Body=body)
    folder = tmp_path / "cache"
    cache = _cache(folder, client)
    with pytest.raises(ImageUnavailable):
        cache.thumbnail("s3://in-bucket/images/not-an-image.jpg", 160)
    assert os.listdir(folder) == [] and cache.cached_bytes() == 0


def test_objects_over_the_limit_are_unavailable(tmp_path, client, sample_photos):
    size = len(_read(sample_photos["chelsea.jpg"]))
    cache = _cache(tmp_path, client, max_source_bytes=size - 1)
    with pytest.raises(ImageUnavailable, match="KB"):
        cache.thumbnail("s3://in-bucket/images/chelsea.jpg", 160)
    assert _cache(tmp_path, client, max_source_bytes=size).thumbnail(
        "s3://in-bucket/images/chelsea.jpg", 160
    )


@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
def test_decompression_bombs_are_unavailable(tmp_path, client, monkeypatch, warning_filter):
    warnings.simplefilter(warning_filter, Image.DecompressionBombWarning)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    client.put_object(
        Bucket="in-bucket",
        Key="images/big.png",
        Body=_encode(Image.new("L", (120, 120)), "PNG"),  # between one and two times the limit
    )
    client.put_object(
        Bucket="in-bucket",
        Key="images/huge.png",
        Body=_encode(Image.new("L", (1000, 1000)), "PNG"),  # Pillow's own error
    )
    cache = _cache(tmp_path, client)
    for name in ("big.png", "huge.png"):
        with pytest.raises(ImageUnavailable, match="pixels"):
            cache.thumbnail(f"s3://in-bucket/images/{name}", 160)


BUCKETS = st.sampled_from(["in-bucket", "elsewhere", "in-bucket.evil", "", "IN-BUCKET", ".."])
REFS = st.one_of(
    st.text(max_size=60),
    st.builds(lambda key: "s3://in-bucket/images/" + key, st.text(max_size=40)),
    st.builds(lambda text: "s3://" + text, st.text(max_size=60)),
    st.builds(
        lambda bucket, key: f"s3://{bucket}/{key}",
        BUCKETS,
        st.one_of(
            st.text(max_size=40),
            st.builds(lambda rest: "images" + rest, st.text(max_size=40)),
            st.builds(lambda rest: "images/../" + rest, st.text(max_size=20)),
        ),
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ref=REFS)
@example(ref="s3://in-bucket/images/chelsea.jpg")
@example(ref="s3://in-bucket/images/chelsea.jpg?versionId=null")
@example(ref="s3://in-bucket/images%2F..%2Fprivate/x.jpg")
def test_any_ref_is_refused_unread_or_is_an_allowed_s3_uri(tmp_path, client, ref):
    cache = _cache(tmp_path / "cache", client)
    client.calls.clear()
    try:
        cache.thumbnail(ref, 160)
    except ImageRefused:
        assert client.calls == []
        return
    except ImageUnavailable:
        pass
    assert ref.startswith("s3://in-bucket/images")
    key = ref[len("s3://in-bucket/") :].partition("?versionId=")[0]
    assert key and ".." not in key.split("/") and not re.search(r"[\x00-\x1f\x7f]", ref)
    assert len(client.calls) == 1
    assert client.calls[0]["Bucket"] == "in-bucket"
    assert client.calls[0]["Key"].startswith("images")


# --- Uploads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt, size",
    [("chelsea.jpg", "JPEG", (451, 300)), ("astronaut.png", "PNG", (512, 512))],
)
def test_uploaded_jpegs_and_pngs_are_accepted_as_they_are(sample_photos, name, fmt, size):
    data = _read(sample_photos[name])
    upload = check_upload(name, data, max_bytes=15 << 20)
    assert upload == CheckedUpload(name, data, fmt, *size)


def test_an_upload_is_named_by_its_real_format():
    jpeg = _encode(Image.new("RGB", (100, 80), "red"), "JPEG")
    png = _encode(Image.new("RGBA", (100, 80)), "PNG")
    assert check_upload("photo.png", jpeg, max_bytes=1 << 20).name == "photo.jpg"
    assert check_upload("photo.JPEG", png, max_bytes=1 << 20).name == "photo.png"
    assert check_upload("photo", png, max_bytes=1 << 20).name == "photo.png"
    assert check_upload("photo.tar.gz", jpeg, max_bytes=1 << 20).name == "photo.tar.jpg"


def test_a_multi_picture_jpeg_counts_as_jpeg():
    frames = [Image.new("RGB", (120, 90), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    upload = check_upload("stereo.mpo", buffer.getvalue(), max_bytes=1 << 20)
    assert (upload.format, upload.name, upload.width, upload.height) == (
        "JPEG",
        "stereo.jpg",
        120,
        90,
    )


@pytest.mark.parametrize(
    "filename, data, message",
    [
        ("notes.txt", b"hello, world\n", "notes.txt is not a JPEG or PNG image"),
        ("anim.gif", _encode(Image.new("P", (90, 90)), "GIF"), "anim.gif is a GIF image; upload"),
        ("pic.webp", _encode(Image.new("RGB", (90, 90)), "WEBP"), "pic.webp is a WEBP image"),
        ("empty.jpg", b"", "empty.jpg is empty"),
        ("cut.jpg", _encode(Image.new("RGB", (400, 400), "red"), "JPEG")[:-400], "truncated"),
        ("cut.png", _encode(Image.new("RGB", (400, 400), "red"), "PNG")[:-200], "truncated"),
        ("header.png", _encode(Image.new("RGB", (400, 400)), "PNG")[:40], "cut"),
        ("uploads/../cat.txt", b"\x00" * 10, "cat.txt is not a JPEG or PNG image"),
    ],
)
def test_uploads_that_are_not_whole_jpegs_or_pngs_are_refused(filename, data, message):
    with pytest.raises(UploadRefused) as raised:
        check_upload(filename, data, max_bytes=15 << 20)
    text = str(raised.value)
    if message == "cut":  # a PNG header cut short: not recognisable, or truncated
        assert text.startswith("header.png is ")
    else:
        assert message in text
    assert isinstance(raised.value, ValueError)


def test_oversized_uploads_are_refused_before_decoding():
    data = b"\xff\xd8\xff" + b"\x00" * (18_035_507 - 3)  # 17.2 MB, and not even a JPEG
    with pytest.raises(UploadRefused) as raised:
        check_upload("cat.jpg", data, max_bytes=15 * 1024 * 1024)
    assert str(raised.value).startswith("cat.jpg is 17.2 MB; the limit is 15 MB per image")
    with pytest.raises(UploadRefused, match="600 bytes; the limit is 500 bytes"):
        check_upload("x.png", b"x" * 600, max_bytes=500)


@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
def test_decompression_bomb_uploads_are_refused(monkeypatch, warning_filter):
    warnings.simplefilter(warning_filter, Image.DecompressionBombWarning)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    for side in (120, 1000):
        data = _encode(Image.new("L", (side, side)), "PNG")
        with pytest.raises(UploadRefused, match="bomb.png has too many pixels"):
            check_upload("bomb.png", data, max_bytes=1 << 20)


PNG = _encode(Image.new("RGB", (90, 90)), "PNG")


@pytest.mark.parametrize(
    "filename, name",
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\me\\My Photo (1).PNG", "My_Photo_1.png"),
        ("café.png", "cafe.png"),
        (".hidden.png", "hidden.png"),
        ("....", "image.png"),
        ("", "image.png"),
        ("/", "image.png"),
        ("写真.png", "image.png"),
        ("a..b.png", "a.b.png"),
        ("-rf .png", "rf.png"),
    ],
)
def test_upload_names_are_sanitised(filename, name):
    assert check_upload(filename, PNG, max_bytes=1 << 20).name == name


@settings(max_examples=200, deadline=None)
@given(filename=st.text(max_size=300))
def test_any_upload_name_is_safe(filename):
    name = check_upload(filename, PNG, max_bytes=1 << 20).name
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.png", name)
    assert len(name) <= 100 and ".." not in name


def _upload(name: str) -> CheckedUpload:
    return CheckedUpload(name, PNG, "PNG", 90, 90)


def test_unique_names():
    names = ["a.jpg", "a.jpg", "b.png", "A.jpg", "a-2.jpg", "a.jpg", "b.png"]
    assert unique_names([_upload(name) for name in names]) == [
        "a.jpg",
        "a-2.jpg",
        "b.png",
        "A-3.jpg",
        "a-2-2.jpg",
        "a-4.jpg",
        "b-2.png",
    ]
    assert unique_names([]) == []
    long = "x" * 96 + ".png"
    made = unique_names([_upload(long)] * 12)
    assert len({name.lower() for name in made}) == 12
    assert all(len(name) <= 100 and name.endswith(".png") for name in made)
    assert made[11].endswith("-12.png")

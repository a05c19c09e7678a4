"""The console's images: thumbnails of stored images, and checks of images uploaded from a browser.

``ThumbnailCache`` makes small JPEG previews of the images a job analysed, reading them from S3
and keeping the results in a folder of bounded size. What it may read is narrow on purpose: a
thumbnail reference comes from a browser, so only ``s3://`` objects under the server's allowed
locations are read, and the server's own disk is never touched outside the cache folder.

``check_upload`` decodes a browser's upload completely before it is accepted, so that only whole
JPEG and PNG images (what the pipeline analyses) are stored, under a file name safe for an S3 key.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from botocore.exceptions import ClientError
from PIL import Image, ImageOps, UnidentifiedImageError

from service.preflight import is_allowed
from storage.reading import split_s3_uri, split_versioned_uri
from transforms.images import to_rgb

__all__ = [
    "THUMBNAIL_SIZES",
    "CheckedUpload",
    "ImageRefused",
    "ImageUnavailable",
    "ThumbnailCache",
    "UploadRefused",
    "check_upload",
    "render_thumbnail",
    "unique_names",
]

THUMBNAIL_SIZES = (160, 320, 1024)  # longest side in pixels; the console asks for these only

_JPEG_QUALITY = 85
_DEFAULT_MAX_SOURCE_BYTES = 15 * 1024 * 1024
# Image.open tries only these: what the pipeline analyses. (A multi-picture JPEG, MPO, is read
# by the JPEG plugin; "MPO" itself is no format Image.open may be limited to.)
_READ_FORMATS = ("JPEG", "PNG")
_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}

# S3 bucket names, legacy ones (upper case, underscores) included.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_KEY_BYTES = 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"}
_ENTRY = re.compile(r"[0-9a-f]{64}\.jpg")  # a cache entry's file name; nothing else is deleted

_MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ImageRefused(ValueError):
    """The reference may not be read: not ``s3://``, malformed, or outside the allowed locations.

    The message is for a user."""


class ImageUnavailable(LookupError):
    """The reference is allowed, but the object is missing, unreadable, not an image or too large.

    The message is for a user."""


class UploadRefused(ValueError):
    """An uploaded file is not accepted; the message, for a user, names the file."""


@dataclass(frozen=True)
class CheckedUpload:
    """An uploaded image that decoded completely."""

    name: str  # safe for an S3 key: [A-Za-z0-9._-], at most 100 characters, .jpg or .png
    data: bytes  # the bytes as uploaded, not re-encoded
    format: str  # "JPEG" or "PNG"
    width: int  # as stored, before any EXIF orientation
    height: int


# --- Thumbnails --------------------------------------------------------------------------------


def _checked_ref(ref: object, allowed: Collection[str] | None) -> tuple[str, str, str | None]:
    """``(bucket, key, version)`` of a reference the cache may read; otherwise ImageRefused."""
    if not isinstance(ref, str) or not ref.startswith("s3://"):
        raise ImageRefused("Only images stored in S3 (s3:// references) can be shown.")
    shown = ref if len(ref) <= 200 else ref[:200] + "..."
    if _CONTROL.search(ref):
        raise ImageRefused("The image reference contains control characters.")
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageRefused("The image reference is not valid text.") from None
    base, version = split_versioned_uri(ref)
    if base != ref and version is None:
        raise ImageRefused(f"The image reference {shown} names an empty version.")
    bucket, key = split_s3_uri(base)
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ImageRefused(f"The image reference {shown} does not name a valid S3 bucket.")
    if not key or key.endswith("/"):
        raise ImageRefused(f"The image reference {shown} does not name an object.")
    if key.startswith("/") or any(part in (".", "..") for part in key.split("/")):
        raise ImageRefused(f"The image reference {shown} may not contain . or .. segments.")
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise ImageRefused("The image reference's key is longer than S3 allows.")
    if not is_allowed(bucket, key, allowed):
        raise ImageRefused(f"This server may not read {shown}.")
    return bucket, key, version


def _megabytes(count: int) -> str:
    """A byte count for a user: ``17.2 MB``, ``15 MB``, ``300 KB``, ``12 bytes``."""
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            text = f"{count / scale:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    return "1 byte" if count == 1 else f"{count} bytes"


def _too_many_pixels(image: Image.Image) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and image.size[0] * image.size[1] > limit


def _rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB, any transparency composited on white: the pipeline's conversion, with
    the transparent colour of a greyscale or RGB image (PNG's tRNS) honoured too."""
    if "transparency" in image.info and image.mode in ("L", "RGB"):
        image = image.convert("RGBA")
    return to_rgb(image)


def render_thumbnail(data: bytes, size: int, ref: str) -> bytes:
    """JPEG bytes of the image ``data``, its longest side at most ``size``."""
    not_image = ImageUnavailable(f"{ref} is not a JPEG or PNG image.")
    try:
        image = Image.open(io.BytesIO(data), formats=_READ_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageUnavailable(f"{ref} has too many pixels to show.") from None
    except UnidentifiedImageError:
        raise not_image from None
    except Exception as exc:  # a header Pillow cannot parse
        raise not_image from exc
    with image:
        if _too_many_pixels(image):
            raise ImageUnavailable(f"{ref} has too many pixels to show.")
        try:
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (size, size))  # decode at the smallest DCT scale that will do
            image.load()
            try:
                ImageOps.exif_transpose(image, in_place=True)
            except Exception:  # a broken EXIF block should not cost the thumbnail
                pass
            small = _rgb(image)
            small.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            out = io.BytesIO()
            small.save(out, "JPEG", quality=_JPEG_QUALITY, optimize=True)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageUnavailable(f"{ref} has too many pixels to show.") from None
        except Exception as exc:
            raise ImageUnavailable(f"{ref} is truncated or corrupt.") from exc
    return out.getvalue()


class ThumbnailCache:
    """JPEG thumbnails of S3 images, kept in ``folder`` up to ``max_bytes`` in all.

    ``allowed_locations`` holds ``bucket`` or ``bucket/prefix`` entries (``None``: any bucket);
    objects over ``max_source_bytes`` are not read. Thread-safe. Connection failures of the S3
    client (botocore's non-``ClientError`` exceptions) propagate as they are.
    """

    def __init__(
        self,
        folder: str,
        *,
        max_bytes: int,
        s3_client,
        allowed_locations: Collection[str] | None,
        max_source_bytes: int = _DEFAULT_MAX_SOURCE_BYTES,
    ):
        self._folder = os.fspath(folder)
        self._max_bytes = max_bytes
        self._s3 = s3_client
        self._allowed = None if allowed_locations is None else tuple(allowed_locations)
        self._max_source_bytes = max_source_bytes
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}  # entry -> held while it is being made
        # Entry name -> size, least recently used first.
        self._entries: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._total = 0
        os.makedirs(self._folder, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        found = []
        with os.scandir(self._folder) as listing:
            for entry in listing:
                if not _ENTRY.fullmatch(entry.name):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found.append((stat.st_mtime_ns, entry.name, stat.st_size))
        with self._lock:
            for _, name, size in sorted(found):
                self._entries[name] = size
                self._total += size
            self._evict()

    def cached_bytes(self) -> int:
        """The total size of the cached thumbnails."""
        with self._lock:
            return self._total

    def thumbnail(self, ref: str, size: int) -> bytes:
        """JPEG bytes of the image at ``ref`` (``s3://bucket/key``, optionally ``?versionId=``),
        its longest side at most ``size`` (one of THUMBNAIL_SIZES; never enlarged).

        Raises ImageRefused (before any read) for a reference that may not be read, and
        ImageUnavailable for an object that is missing, too large or not an image.
        """
        if type(size) is not int or size not in THUMBNAIL_SIZES:
            raise ValueError(f"A thumbnail's size is one of {THUMBNAIL_SIZES}, not {size!r}.")
        bucket, key, version = _checked_ref(ref, self._allowed)
        name = hashlib.sha256(f"{size}\n{ref}".encode()).hexdigest() + ".jpg"
        cached = self._cached(name)
        if cached is not None:
            return cached
        with self._lock:
            making = self._making.setdefault(name, threading.Lock())
        with making:  # one thread makes an entry; others asking for it wait, then read it
            try:
                cached = self._cached(name)
                if cached is not None:
                    return cached
                data = render_thumbnail(self._read(bucket, key, version, ref), size, ref)
                self._store(name, data)
                return data
            finally:
                with self._lock:
                    if self._making.get(name) is making:
                        del self._making[name]

    def _path(self, name: str) -> str:
        return os.path.join(self._folder, name)

    def _cached(self, name: str) -> bytes | None:
        with self._lock:
            if name not in self._entries:
                return None
            self._entries.move_to_end(name)
        try:
            with open(self._path(name), "rb") as file:
                data = file.read()
            os.utime(self._path(name))  # the mtime records use, for the next start's scan
        except FileNotFoundError:  # evicted meanwhile, or removed by someone else
            with self._lock:
                size = self._entries.pop(name, None)
                if size is not None:
                    self._total -= size
            return None
        return data

    def _read(self, bucket: str, key: str, version: str | None, ref: str) -> bytes:
        args = {"Bucket": bucket, "Key": key}
        if version:
            args["VersionId"] = version
        try:
            response = self._s3.get_object(**args)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ImageUnavailable(f"{ref} does not exist.") from None
            raise ImageUnavailable(f"{ref} could not be read ({code or 'error'}).") from None
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            limit = self._max_source_bytes
            if length is not None and length > limit:
                raise ImageUnavailable(
                    f"{ref} is {_megabytes(length)}; thumbnails are made of images up to "
                    f"{_megabytes(limit)}."
                )
            data = body.read(limit + 1)
            if len(data) > limit:
                raise ImageUnavailable(
                    f"{ref} is over {_megabytes(limit)}, the most a thumbnail is made of."
                )
            return data
        finally:
            body.close()

    def _store(self, name: str, data: bytes) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self._folder)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            with self._lock:
                os.replace(temporary, self._path(name))
                self._total -= self._entries.pop(name, 0)
                self._entries[name] = len(data)
                self._total += len(data)
                self._evict()
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise

    def _evict(self) -> None:
        """Deletes the least recently used entries until the total is within max_bytes (lock
        held)."""
        while self._total > self._max_bytes and self._entries:
            name, size = self._entries.popitem(last=False)
            self._total -= size
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass


# --- Uploads -----------------------------------------------------------------------------------


def _base_name(filename: str) -> str:
    return re.split(r"[/\\]", filename)[-1]


def _shown(filename: str) -> str:
    """The uploaded file's name as a message shows it."""
    name = _CONTROL.sub("", _base_name(filename or "")).strip()
    if len(name) > _MAX_NAME:
        name = name[: _MAX_NAME - 3] + "..."
    return name or "The file"


def _safe_name(filename: str, extension: str) -> str:
    """The base name reduced to ``[A-Za-z0-9._-]``, at most 100 characters, with ``extension``."""
    stem = _base_name(filename)
    if "." in stem.lstrip("."):
        stem = stem.rsplit(".", 1)[0]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("_", ascii_stem).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)
    stem = stem[: _MAX_NAME - len(extension)].rstrip("._-") or "image"
    return stem + extension


def check_upload(filename: str, data: bytes, *, max_bytes: int) -> CheckedUpload:
    """The upload ``data`` named ``filename``, once it has decoded completely as a JPEG or PNG.

    Raises UploadRefused, with a message naming the file, for anything else.
    """
    shown = _shown(filename)
    if not data:
        raise UploadRefused(f"{shown} is empty.")
    if len(data) > max_bytes:
        raise UploadRefused(
            f"{shown} is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)} per image."
        )
    bomb = UploadRefused(f"{shown} has too many pixels to analyse.")
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise bomb from None
    except Exception:
        raise UploadRefused(f"{shown} is not a JPEG or PNG image.") from None
    with image:
        image_format = "JPEG" if image.format == "MPO" else image.format
        if image_format not in _FORMAT_EXTENSIONS:
            raise UploadRefused(f"{shown} is a {image.format} image; upload JPEG or PNG.")
        if _too_many_pixels(image):
            raise bomb
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise bomb from None
        except Exception:
            raise UploadRefused(f"{shown} is truncated or corrupt.") from None
        width, height = image.size
    return CheckedUpload(
        name=_safe_name(filename or "", _FORMAT_EXTENSIONS[image_format]),
        data=bytes(data),
        format=image_format,
        width=width,
        height=height,
    )


def unique_names(uploads: Sequence[CheckedUpload]) -> list[str]:
    """The uploads' names in order, made unique (ignoring case) by ``-2``, ``-3``... before the
    extension, each still at most 100 characters."""
    taken: set[str] = set()
    names = []
    for upload in uploads:
        name = upload.name
        stem, extension = os.path.splitext(name)
        number = 1
        while name.lower() in taken:
            number += 1
            suffix = f"-{number}"
            name = stem[: _MAX_NAME - len(suffix) - len(extension)] + suffix + extension
        taken.add(name.lower())
        names.append(name)
    return names

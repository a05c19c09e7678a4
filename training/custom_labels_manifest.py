"""SageMaker Ground Truth manifests read for Custom Labels, with Amazon Rekognition Custom
Labels' validation rules: each line parsed, checked and kept or dropped, and the validation
manifest line that says which.

Three kinds of label attribute are read (``<attribute>`` beside ``<attribute>-metadata``, whose
``type`` says the kind):

- ``groundtruth/image-classification``: the value a class id, the label the metadata's
  ``class-name``; a line with several such attributes has several image-level labels;
- ``groundtruth/image-classification-multilabel``: the value a list of class ids, each named in
  the metadata's ``class-map``;
- ``groundtruth/object-detection``: ``image_size`` and ``annotations`` in pixels (``class_id``,
  ``left``, ``top``, ``width``, ``height``), the metadata's ``class-map`` naming the classes and
  its ``objects`` giving each box's confidence.

A problem with one line drops that line (or, inside it, one attribute or one box) and is kept
as an ``Issue`` with AWS's error code; ``training.custom_labels_training`` turns too many of
them, and anything that makes a dataset unusable as a whole, into a ``TrainingProblem``.
Problems with the file itself (missing, empty, not JSON Lines, over AWS's size or row limits)
raise ``TrainingProblem`` here.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from model.custom_labels_model import CLASSIFICATION, MULTI_LABEL, OBJECT_DETECTION, Box
from storage.reading import exists, open_for_reading, split_versioned_uri
from storage.settings import S3Settings
from training.custom_labels_data import ImageSize, LabelledImage
from training.examples import TrainingProblem
from training.json_lines import LineProblem, json_object
from transforms.manifest import read_manifest_lines
from transforms.records import ErrorCode, ImageProblem

__all__ = [
    "CLASSIFICATION_TYPE",
    "DETECTION_TYPE",
    "IMAGE_LEVEL",
    "MAX_BOXES_PER_IMAGE",
    "MAX_LABELS_PER_IMAGE",
    "MAX_LABEL_NAME_CHARS",
    "MAX_LINE_CHARS",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_LINES",
    "MULTI_LABEL_TYPE",
    "TRAINING_RESIZE_SIDE",
    "VALIDATION_KEY",
    "Issue",
    "ManifestEntry",
    "check_images",
    "dataset_kind",
    "detection_size",
    "drop_duplicates",
    "keep_labels",
    "label_entries",
    "manifest_text",
    "output_line",
    "parse_line",
    "read_entries",
    "summary_statistics",
    "validation_line",
]

_LOGGER = logging.getLogger(__name__)

CLASSIFICATION_TYPE = "groundtruth/image-classification"
MULTI_LABEL_TYPE = "groundtruth/image-classification-multilabel"
DETECTION_TYPE = "groundtruth/object-detection"
IMAGE_LEVEL = "IMAGE_LEVEL"  # what a line with only image-level attributes can train

# AWS's limits (limits.md, md-create-manifest-file-validation-rules.md,
# debugging-datasets-terminal-errors.md).
MAX_MANIFEST_BYTES = 1 << 30
MAX_MANIFEST_LINES = 250_000
MAX_LINE_CHARS = 100_000
MAX_BOXES_PER_IMAGE = 50
MAX_LABELS_PER_IMAGE = 50
MAX_LABEL_NAME_CHARS = 256
TRAINING_RESIZE_SIDE = 1280  # a box must stay over 1x1 px once the image is resized to this
VALIDATION_KEY = "custom-labels-validation"  # ours: where each validation line says its fate

_MAX_LINE_BYTES = 4 * MAX_LINE_CHARS  # UTF-8 takes at most 4 bytes a character
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_SUPPORTED_SCHEMES = ("s3", "gs")
_METADATA = "-metadata"
_KIND_OF_TYPE = {
    CLASSIFICATION_TYPE: IMAGE_LEVEL,
    MULTI_LABEL_TYPE: IMAGE_LEVEL,
    DETECTION_TYPE: OBJECT_DETECTION,
}
_USE_CASE = {IMAGE_LEVEL: "IMAGE_LEVEL_LABELS", OBJECT_DETECTION: "OBJECT_LOCALIZATION"}


@dataclass(frozen=True)
class Issue:
    """One problem with a line, in AWS's words: its code (``ERROR_...`` or ``WARNING_...``) and
    message, and where it sits: the line itself, one label attribute (or its ``-metadata``), or
    one box of a detection attribute (``annotation``: its index in ``annotations``).

    An error of the line itself drops the line; a warning of the line itself leaves it unused
    but not invalid (AWS's "ignored" lines); an issue inside the line drops only that part.
    """

    code: str
    message: str
    attribute: str | None = None
    annotation: int | None = None
    metadata: bool = False

    @property
    def of_line(self) -> bool:
        return self.attribute is None

    @property
    def is_warning(self) -> bool:
        return self.code.startswith("WARNING_")


@dataclass
class _Attribute:
    """One label attribute of a line, as far as it could be read."""

    name: str
    kind: str  # IMAGE_LEVEL or OBJECT_DETECTION
    type: str
    labels: list[str] = field(default_factory=list)  # image level
    boxes: list[tuple[int, str, tuple[float, float, float, float]]] = field(default_factory=list)
    annotations: int = 0  # detection: how many boxes the line gives, valid or not
    image_size: ImageSize | None = None


@dataclass
class ManifestEntry:
    """One non-blank line of a manifest and what became of it: the labelled image it gives
    (``image``, None when it is not used) and its issues."""

    manifest: str
    line_number: int
    document: dict[str, Any] | None = None  # None: the line is not a JSON object
    source_ref: str | None = None  # resolved against the manifest's folder
    issues: list[Issue] = field(default_factory=list)
    image: LabelledImage | None = None
    attributes: list[_Attribute] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"line {self.line_number} of {self.manifest}"

    @property
    def used(self) -> bool:
        return self.image is not None

    @property
    def invalid(self) -> bool:
        """Whether an error drops the line (warnings leave a line ignored, not invalid)."""
        return any(issue.of_line and not issue.is_warning for issue in self.issues)

    @property
    def kinds(self) -> set[str]:
        return {attribute.kind for attribute in self.attributes}

    @property
    def reason(self) -> str | None:
        """Why the line is not used (None when it is)."""
        if self.used:
            return None
        reasons = [f"{i.code}: {i.message}" for i in self.issues if i.of_line]
        return "; ".join(reasons) or "not used"

    def drop(self, code: str, message: str) -> None:
        """Marks the line unused for ``code``/``message``."""
        self.issues.append(Issue(code, message))
        self.image = None


# Reading ----------------------------------------------------------------------------------


def read_entries(
    manifests: Sequence[str], dataset: str, s3: S3Settings | None = None
) -> list[ManifestEntry]:
    """Every non-blank line of ``manifests`` (local, ``s3://``, ``gs://``;
    ``s3://bucket/key?versionId=ID`` for one version), parsed and checked on its own.

    ``dataset`` ("training" or "testing") names the manifests in messages. A manifest that is
    missing, unreadable, empty, not JSON Lines or over AWS's limits raises ``TrainingProblem``.
    """
    entries: list[ManifestEntry] = []
    for manifest in manifests:
        read = list(_read_manifest(manifest, dataset, s3))
        if not read:
            raise TrainingProblem(
                f"The {dataset} manifest {manifest} is empty. Add one JSON line per image "
                "(SageMaker Ground Truth format)."
            )
        if all(entry.document is None for entry in read):
            first = read[0]
            raise TrainingProblem(
                f"The {dataset} manifest {manifest} is not a JSON Lines file: no line is a JSON "
                f"object ({first.where}: {first.issues[0].message}). Give a SageMaker Ground "
                "Truth manifest, one JSON object per line."
            )
        entries.extend(read)
    if len(entries) > MAX_MANIFEST_LINES:
        raise TrainingProblem(
            f"The {dataset} dataset has {len(entries)} lines; at most {MAX_MANIFEST_LINES} "
            f"images are allowed. Remove lines from {', '.join(manifests)}."
        )
    return entries


def _read_manifest(manifest: str, dataset: str, s3: S3Settings | None) -> Iterator[ManifestEntry]:
    uri, version = split_versioned_uri(manifest)
    try:
        found = exists(uri, version=version, s3=s3)
    except Exception as exc:
        raise TrainingProblem(
            f"The {dataset} manifest {manifest} cannot be read: {type(exc).__name__}: {exc}. "
            "Check its location and the permissions to read it."
        ) from exc
    if not found:
        raise TrainingProblem(
            f"The {dataset} manifest {manifest} does not exist. Check the bucket, key"
            + (" and version." if version else ".")
        )
    total_bytes = 0
    try:
        with open_for_reading(uri, version=version, s3=s3) as stream:
            for number, raw in read_manifest_lines(stream, _MAX_LINE_BYTES):
                total_bytes += _MAX_LINE_BYTES + 1 if raw is None else len(raw)
                if total_bytes > MAX_MANIFEST_BYTES:
                    raise TrainingProblem(
                        f"The {dataset} manifest {manifest} is larger than "
                        f"{_size(MAX_MANIFEST_BYTES)} (at line {number}); split it or remove "
                        "lines."
                    )
                if number > MAX_MANIFEST_LINES:
                    raise TrainingProblem(
                        f"The {dataset} manifest {manifest} has more than "
                        f"{MAX_MANIFEST_LINES} lines (line {number}); remove lines."
                    )
                yield parse_line(manifest, number, raw)
    except TrainingProblem:
        raise
    except Exception as exc:
        raise TrainingProblem(
            f"The {dataset} manifest {manifest} cannot be read: {type(exc).__name__}: {exc}."
        ) from exc


def _size(count: int) -> str:
    return f"{count >> 30} GB" if count >= 1 << 30 and not count % (1 << 30) else f"{count} bytes"


def parse_line(manifest: str, number: int, raw: bytes | str | None) -> ManifestEntry:
    """One manifest line, its attributes read as far as they go (the dataset's kind decides
    later which of them count)."""
    entry = ManifestEntry(manifest, number)
    try:
        document = json_object(raw)
    except LineProblem as problem:
        entry.drop("ERROR_INVALID_JSON_LINE", f"The JSON Line has an invalid format: {problem}.")
        return entry
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if len(text.rstrip("\r\n")) > MAX_LINE_CHARS:
        entry.drop(
            "ERROR_INVALID_JSON_LINE",
            f"The JSON Line is longer than {MAX_LINE_CHARS} characters.",
        )
        return entry
    entry.document = document
    if "source-ref" not in document:
        entry.drop("ERROR_MISSING_SOURCE_REF", 'The "source-ref" key is missing.')
        return entry
    try:
        entry.source_ref = _resolved_source_ref(document["source-ref"], manifest)
    except LineProblem as problem:
        entry.drop("ERROR_INVALID_SOURCE_REF_FORMAT", f"The source-ref is invalid: {problem}.")
        return entry
    names = [key for key in document if key != "source-ref" and not key.endswith(_METADATA)]
    orphans = [
        key[: -len(_METADATA)]
        for key in document
        if key.endswith(_METADATA) and key[: -len(_METADATA)] not in document
    ]
    paired = [name for name in names if isinstance(document.get(name + _METADATA), dict)]
    if not paired:
        if not names and not orphans:
            entry.drop("WARNING_UNANNOTATED_RECORD", "Record is unannotated.")
        else:
            missing = [f'"{name}{_METADATA}"' for name in names] + [f'"{o}"' for o in orphans]
            entry.drop(
                "ERROR_NO_LABEL_ATTRIBUTES",
                "No label attributes found: a label attribute needs its metadata beside it "
                f"(missing: {', '.join(missing)}).",
            )
        return entry
    for name in paired:
        attribute = _parse_attribute(entry, name, document[name], document[name + _METADATA])
        if attribute is not None:
            entry.attributes.append(attribute)
    if not entry.attributes:
        entry.drop(
            "ERROR_NO_VALID_LABEL_ATTRIBUTES",
            "No valid label attributes found (see the errors of each attribute).",
        )
    return entry


def _resolved_source_ref(value: Any, manifest: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LineProblem("it must be a non-empty string")
    match = _SCHEME.match(value)
    if match:
        scheme = match.group(1).lower()
        if scheme not in _SUPPORTED_SCHEMES:
            raise LineProblem(
                f"{match.group(1)}:// is not supported; use s3://BUCKET/KEY, gs://BUCKET/KEY "
                "or a local path"
            )
        bucket, _, key = value[match.end() :].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise LineProblem(f"{value!r} names no object (s3://BUCKET/KEY)")
        return f"{scheme}://{value[match.end() :]}"
    if os.path.isabs(value):
        return value
    folder = split_versioned_uri(manifest)[0]
    if "://" in folder:
        return folder.rsplit("/", 1)[0] + "/" + value
    return os.path.join(os.path.dirname(os.path.abspath(folder)), value)


def _label_name(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_attribute(
    entry: ManifestEntry, name: str, value: Any, metadata: dict[str, Any]
) -> _Attribute | None:
    """The attribute, or None with its issues recorded."""

    def fail(code: str, message: str, *, on_metadata: bool = False) -> None:
        entry.issues.append(Issue(code, message, attribute=name, metadata=on_metadata))

    kind_type = metadata.get("type")
    if kind_type not in _KIND_OF_TYPE:
        fail(
            "ERROR_UNSUPPORTED_USE_CASE_TYPE",
            f"The type {kind_type!r} is not supported; use {CLASSIFICATION_TYPE}, "
            f"{MULTI_LABEL_TYPE} or {DETECTION_TYPE}.",
            on_metadata=True,
        )
        return None
    attribute = _Attribute(name, _KIND_OF_TYPE[kind_type], kind_type)
    if kind_type == CLASSIFICATION_TYPE:
        label = _label_name(metadata.get("class-name"))
        if label is None:
            fail(
                "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT",
                'The format of the label attribute metadata is invalid: "class-name" must be '
                "a non-empty string.",
                on_metadata=True,
            )
            return None
        if not _is_int(value):
            fail(
                "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT",
                f"The format of the label attribute {name} is invalid: its value must be an "
                "integer (the class id).",
            )
            return None
        attribute.labels = [label]
    elif kind_type == MULTI_LABEL_TYPE:
        class_map = _class_map(metadata)
        if class_map is None:
            fail(
                "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT",
                'The format of the label attribute metadata is invalid: "class-map" must map '
                "class ids to non-empty label names.",
                on_metadata=True,
            )
            return None
        if not isinstance(value, list) or not all(_is_int(item) for item in value):
            fail(
                "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT",
                f"The format of the label attribute {name} is invalid: its value must be a list "
                "of class ids.",
            )
            return None
        missing = sorted({str(item) for item in value} - set(class_map))
        if missing:
            fail(
                "ERROR_MISSING_CLASS_MAP_ID",
                f"Class ids {', '.join(missing)} are missing from the class map.",
                on_metadata=True,
            )
            return None
        attribute.labels = sorted({class_map[str(item)] for item in value})
    else:
        if not _parse_detection(entry, attribute, value, metadata):
            return None
    for label in attribute.labels + [label for _, label, _ in attribute.boxes]:
        if len(label) > MAX_LABEL_NAME_CHARS:
            fail(
                "ERROR_INVALID_LABEL_NAME_LENGTH",
                f"The label name {label[:40]!r}... is longer than {MAX_LABEL_NAME_CHARS} "
                "characters.",
                on_metadata=True,
            )
            return None
    return attribute


def _class_map(metadata: Mapping[str, Any]) -> dict[str, str] | None:
    class_map = metadata.get("class-map")
    if not isinstance(class_map, dict):
        return None
    if not all(_label_name(label) for label in class_map.values()):
        return None
    return {str(key): label for key, label in class_map.items()}


def _image_size(value: Mapping[str, Any]) -> ImageSize | None:
    sizes = value.get("image_size")
    if not isinstance(sizes, list) or not sizes or not isinstance(sizes[0], dict):
        return None
    width, height = sizes[0].get("width"), sizes[0].get("height")
    if not (_is_int(width) and _is_int(height)) or width <= 0 or height <= 0:
        return None
    return ImageSize(width, height)


def _parse_detection(
    entry: ManifestEntry, attribute: _Attribute, value: Any, metadata: Mapping[str, Any]
) -> bool:
    name = attribute.name

    def fail(code: str, message: str, *, on_metadata: bool = False, box: int | None = None):
        entry.issues.append(
            Issue(code, message, attribute=name, annotation=box, metadata=on_metadata)
        )

    if not isinstance(value, dict) or not isinstance(value.get("annotations"), list):
        fail(
            "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT",
            f"The format of the label attribute {name} is invalid: it must be an object with "
            '"image_size" and an "annotations" list.',
        )
        return False
    size = _image_size(value)
    if size is None:
        fail(
            "ERROR_INVALID_IMAGE_DIMENSION",
            '"image_size" must be a list holding one {"width", "height", "depth"} object with '
            "positive integer pixels.",
        )
        return False
    class_map = _class_map(metadata)
    objects = metadata.get("objects")
    if class_map is None or not isinstance(objects, list):
        fail(
            "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT",
            'The format of the label attribute metadata is invalid: it needs a "class-map" '
            'of class ids to label names and an "objects" list (a confidence per box).',
            on_metadata=True,
        )
        return False
    attribute.image_size = size
    annotations = value["annotations"]
    attribute.annotations = len(annotations)
    scale = min(1.0, TRAINING_RESIZE_SIDE / max(size))
    for index, annotation in enumerate(annotations):
        fields = (
            [annotation.get(key) for key in ("left", "top", "width", "height")]
            if isinstance(annotation, dict)
            else []
        )
        if len(fields) != 4 or not all(_is_number(v) for v in fields):
            fail(
                "ERROR_INVALID_BOUNDING_BOX",
                'A bounding box needs numeric "left", "top", "width" and "height" pixels.',
                box=index,
            )
            continue
        class_id = annotation.get("class_id")
        if not _is_int(class_id) or str(class_id) not in class_map:
            fail(
                "ERROR_MISSING_CLASS_MAP_ID",
                f"The class_id {class_id!r} of this box is missing from the class map.",
                box=index,
            )
            continue
        confidence = objects[index] if index < len(objects) else None
        if not isinstance(confidence, dict) or not _is_number(confidence.get("confidence")):
            fail(
                "ERROR_MISSING_BOUNDING_BOX_CONFIDENCE",
                'This box has no confidence value ("objects" in the metadata needs one '
                '{"confidence": N} per box, in order).',
                box=index,
            )
            continue
        left, top, width, height = (float(v) for v in fields)
        if left < 0 or top < 0 or left + width > size.width or top + height > size.height:
            fail(
                "ERROR_INVALID_BOUNDING_BOX",
                f"The bounding box has off frame values: left {left:g}, top {top:g}, width "
                f"{width:g}, height {height:g} in a {size.width}x{size.height} image.",
                box=index,
            )
            continue
        if width * scale <= 1 or height * scale <= 1:
            fail(
                "ERROR_BOUNDING_BOX_TOO_SMALL",
                f"The height and width of the bounding box is too small ({width:g}x{height:g} "
                "px; both must be over 1 px"
                + (f" once the image is resized to {TRAINING_RESIZE_SIDE} px" if scale < 1 else "")
                + ").",
                box=index,
            )
            continue
        attribute.boxes.append((index, class_map[str(class_id)], (left, top, width, height)))
    return True


# The dataset's kind and its labelled images -----------------------------------------------


def dataset_kind(entries: Iterable[ManifestEntry]) -> str | None:
    """The kind of model the entries train: ``OBJECT_DETECTION`` when lines have bounding boxes,
    ``MULTI_LABEL`` when an image has several image-level labels or a multi-label attribute,
    else ``CLASSIFICATION``; None when no line has a valid attribute.

    Lines with only image-level labels beside lines with only bounding boxes raise
    ``TrainingProblem`` naming one of each (a line with both fits either kind).
    """
    first: dict[str, ManifestEntry] = {}
    multi = False
    for entry in entries:
        kinds = entry.kinds
        if len(kinds) == 1:
            first.setdefault(next(iter(kinds)), entry)
        if kinds:
            first.setdefault("any", entry)
        image_level = [a for a in entry.attributes if a.kind == IMAGE_LEVEL]
        if any(a.type == MULTI_LABEL_TYPE for a in image_level):
            multi = True
        if len({label for a in image_level for label in a.labels}) > 1:
            multi = True
    if IMAGE_LEVEL in first and OBJECT_DETECTION in first:
        boxes, labels = first[OBJECT_DETECTION], first[IMAGE_LEVEL]
        raise TrainingProblem(
            f"The manifests mix two kinds of dataset: {boxes.where} has bounding boxes "
            f"({DETECTION_TYPE}) but {labels.where} has only image-level labels "
            f"({CLASSIFICATION_TYPE} or {MULTI_LABEL_TYPE}). A model finds either image-level "
            "labels or object locations: label every image the same way, in the training and "
            "the testing manifests."
        )
    if "any" not in first:
        return None
    if OBJECT_DETECTION in first or IMAGE_LEVEL not in first:
        return OBJECT_DETECTION
    return MULTI_LABEL if multi else CLASSIFICATION


def label_entries(entries: Iterable[ManifestEntry], kind: str) -> None:
    """Gives each entry that still stands the labelled image it contributes to a ``kind``
    dataset (before its image is checked), or drops it saying why."""
    for entry in entries:
        if entry.invalid or entry.source_ref is None or not entry.attributes:
            continue
        if kind == OBJECT_DETECTION:
            _label_detection(entry)
        else:
            _label_image_level(entry)


def _label_image_level(entry: ManifestEntry) -> None:
    labels = sorted(
        {label for a in entry.attributes if a.kind == IMAGE_LEVEL for label in a.labels}
    )
    if not labels:
        entry.drop("WARNING_NO_ANNOTATIONS", "No annotations were found.")
        return
    if len(labels) > MAX_LABELS_PER_IMAGE:
        entry.drop(
            "ERROR_TOO_MANY_LABELS",
            f"The image has {len(labels)} labels; at most {MAX_LABELS_PER_IMAGE} are allowed.",
        )
        return
    entry.image = LabelledImage(
        entry.source_ref, entry.line_number, entry.manifest, frozenset(labels)
    )


def _label_detection(entry: ManifestEntry) -> None:
    attributes = [a for a in entry.attributes if a.kind == OBJECT_DETECTION]
    sizes = {a.image_size for a in attributes}
    if len(sizes) > 1:
        entry.drop(
            "ERROR_INVALID_IMAGE_DIMENSION",
            "The bounding box attributes give different image sizes: "
            + ", ".join(f"{s.width}x{s.height}" for s in sorted(sizes))
            + ".",
        )
        return
    given = sum(a.annotations for a in attributes)
    if given > MAX_BOXES_PER_IMAGE:
        entry.drop(
            "ERROR_TOO_MANY_BOUNDING_BOXES",
            f"There are more bounding boxes than the allowed maximum ({given}; at most "
            f"{MAX_BOXES_PER_IMAGE}).",
        )
        return
    if given == 0:
        entry.drop("WARNING_NO_ANNOTATIONS", "No annotations were found.")
        return
    size = next(iter(sizes))
    boxes = tuple(
        (
            label,
            Box(left / size.width, top / size.height, width / size.width, height / size.height),
        )
        for a in attributes
        for _, label, (left, top, width, height) in a.boxes
    )
    if not boxes:
        entry.drop(
            "ERROR_NO_VALID_ANNOTATIONS",
            "No valid annotations found (see the errors of each bounding box).",
        )
        return
    entry.image = LabelledImage(
        entry.source_ref,
        entry.line_number,
        entry.manifest,
        frozenset(label for label, _ in boxes),
        boxes,
    )


def detection_size(entry: ManifestEntry) -> ImageSize | None:
    """The image size a detection line's boxes are measured in."""
    sizes = [a.image_size for a in entry.attributes if a.kind == OBJECT_DETECTION]
    return sizes[0] if sizes else None


def drop_duplicates(entries: Iterable[ManifestEntry], dataset: str) -> None:
    """Drops every line whose image an earlier line of the dataset already gives."""
    seen: dict[str, ManifestEntry] = {}
    for entry in entries:
        if not entry.used:
            continue
        first = seen.setdefault(entry.image.source_ref, entry)
        if first is not entry:
            entry.drop(
                "ERROR_DUPLICATE_SOURCE_REF",
                f"The image is already in the {dataset} dataset ({first.where}); an image can "
                "be referenced once in a dataset.",
            )


def check_images(
    entries: Sequence[ManifestEntry],
    check: Callable[[str], ImageSize],
    *,
    concurrency: int = 16,
    kind: str | None = None,
) -> None:
    """Checks the image of every used entry with ``check`` (``ImageReader.check``), dropping
    the lines whose image is missing, unreadable or outside AWS's limits; for a detection
    dataset also those whose ``image_size`` is not the image's."""
    pending = [entry for entry in entries if entry.used]

    def probe(entry: ManifestEntry) -> ImageSize | ImageProblem:
        try:
            return check(entry.image.source_ref)
        except ImageProblem as problem:
            return problem
        except Exception as exc:  # a storage error of any type costs its line, never the run
            return ImageProblem(ErrorCode.IMAGE_READ_FAILED, f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="check-image") as pool:
        for entry, outcome in zip(pending, pool.map(probe, pending)):
            if isinstance(outcome, ImageProblem):
                entry.drop(
                    "ERROR_INVALID_IMAGE",
                    f"The image is invalid ({outcome.code}): {outcome.message}",
                )
                continue
            given = detection_size(entry) if kind == OBJECT_DETECTION else None
            if given is not None and tuple(given) != tuple(outcome):
                entry.drop(
                    "ERROR_INVALID_IMAGE_DIMENSION",
                    f"image_size says {given.width}x{given.height} px but the image is "
                    f"{outcome.width}x{outcome.height} px; the boxes would be misplaced.",
                )


# Writing ------------------------------------------------------------------------------------


def manifest_text(lines: Iterable[Mapping[str, Any]]) -> bytes:
    """JSON lines as a manifest file's bytes."""
    return "".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines
    ).encode("utf-8")


def output_line(entry: ManifestEntry) -> dict[str, Any]:
    """A used line as read, its source-ref resolved (so that the copy reads from anywhere)."""
    document = dict(entry.document or {})
    document["source-ref"] = entry.source_ref
    return document


def validation_line(entry: ManifestEntry, dataset: str) -> dict[str, Any]:
    """The line as AWS's validation manifests write it: a copy with each issue in an
    ``errors`` (or ``warnings``) list where it applies (the line, the label attribute or its
    metadata, the box), plus ``custom-labels-validation``: the manifest, the line number,
    whether the line is used and why not."""
    document = copy.deepcopy(entry.document) if entry.document is not None else {}
    if entry.source_ref is not None:
        document["source-ref"] = entry.source_ref
    for issue in entry.issues:
        _holder(document, issue).setdefault(
            "warnings" if issue.is_warning else "errors", []
        ).append({"code": issue.code, "message": issue.message})
    document[VALIDATION_KEY] = {
        "dataset": dataset,
        "manifest": entry.manifest,
        "line-number": entry.line_number,
        "used": entry.used,
        **({"reason": entry.reason} if not entry.used else {}),
    }
    return document


def _holder(document: dict[str, Any], issue: Issue) -> dict[str, Any]:
    """The object of ``document`` that the issue's ``errors`` list belongs in."""
    holder: Any = document
    if issue.attribute is not None:
        value = document.get(issue.attribute)
        if issue.metadata or not isinstance(value, dict):
            holder = document.get(issue.attribute + _METADATA)
        else:
            holder = value
            if issue.annotation is not None:
                annotations = value.get("annotations")
                if isinstance(annotations, list) and issue.annotation < len(annotations):
                    holder = annotations[issue.annotation]
    if not isinstance(holder, dict):
        holder = document
    for key in ("errors", "warnings"):
        if key in holder and not isinstance(holder[key], list):
            holder[key] = [holder[key]]
    return holder


def summary_statistics(
    entries: Sequence[ManifestEntry], kind: str | None, errors: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """One dataset's ``statistics`` in AWS's manifest summary; ``error_json_line_indices`` are
    1-based positions in its validation manifest."""
    use_case = "NOT_DETERMINED"
    if kind is not None:
        use_case = _USE_CASE[OBJECT_DETECTION if kind == OBJECT_DETECTION else IMAGE_LEVEL]
    return {
        "use_case": use_case,
        "total_json_lines": len(entries),
        "valid_json_lines": sum(entry.used for entry in entries),
        "invalid_json_lines": sum(entry.invalid for entry in entries),
        "ignored_json_lines": sum(not entry.used and not entry.invalid for entry in entries),
        "error_json_line_indices": [
            index for index, entry in enumerate(entries, 1) if entry.invalid
        ],
        "errors": [dict(error) for error in errors],
    }


def keep_labels(
    entries: Iterable[ManifestEntry], labels: Collection[str], kind: str, *, known_to: str
) -> Counter:
    """Takes every label outside ``labels`` out of the used entries' images (a detection
    image's boxes of such labels with it); a line left with no label, and a classification line
    with an unknown label, is dropped. ``known_to`` says whose labels they are ("the training
    dataset", "the model"). Returns, per unknown label, the images that named it."""
    known = set(labels)
    removed: Counter = Counter()
    for entry in entries:
        if not entry.used:
            continue
        unknown = sorted(entry.image.labels - known)
        if not unknown:
            continue
        removed.update(unknown)
        names = ", ".join(repr(name) for name in unknown)
        kept = entry.image.labels & known
        message = f"{names} {'is' if len(unknown) == 1 else 'are'} not a label of {known_to}"
        if kind == CLASSIFICATION or not kept:
            entry.drop("ERROR_UNKNOWN_LABEL", f"{message}; the line cannot be scored.")
            continue
        entry.image = replace(
            entry.image,
            labels=frozenset(kept),
            boxes=tuple(box for box in entry.image.boxes if box[0] in known),
        )
        entry.issues.append(
            Issue("WARNING_UNKNOWN_LABEL", f"{message}; the line is used without it.")
        )
    return removed

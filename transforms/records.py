"""The records that flow through the pipeline, and the per-line error codes of the summary."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ManifestLine", "ManifestError", "ErrorCode", "ImageProblem"]


class ManifestLine(NamedTuple):
    """A valid manifest line: its 1-based line number in the file and the image it references."""

    line_number: int
    source_ref: str


class ManifestError(NamedTuple):
    """Why one manifest line was not analysed; one entry of the summary's ``errors``."""

    line_number: int
    code: str
    message: str
    source_ref: str | None = None

    def to_summary_entry(self) -> dict[str, object]:
        # "line-numer" is spelt as AWS spells it: clients parse that key.
        entry: dict[str, object] = {"line-numer": self.line_number}
        if self.source_ref is not None:
            entry["source-ref"] = self.source_ref
        entry["code"] = self.code
        entry["message"] = self.message
        return entry


class ErrorCode:
    """The stable vocabulary of ``errors[].code`` in ``manifest-summary.json``."""

    # The line itself.
    INVALID_ENCODING = "INVALID_ENCODING"  # not UTF-8
    LINE_TOO_LONG = "LINE_TOO_LONG"
    INVALID_JSON = "INVALID_JSON"
    NOT_A_JSON_OBJECT = "NOT_A_JSON_OBJECT"
    MISSING_SOURCE_REF = "MISSING_SOURCE_REF"
    INVALID_SOURCE_REF = "INVALID_SOURCE_REF"  # empty, not a string, malformed URI or path
    UNSUPPORTED_SCHEME = "UNSUPPORTED_SCHEME"
    # The image it references.
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    IMAGE_READ_FAILED = "IMAGE_READ_FAILED"  # any other storage error
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"  # over the byte limit
    UNSUPPORTED_IMAGE_FORMAT = "UNSUPPORTED_IMAGE_FORMAT"
    INVALID_IMAGE = "INVALID_IMAGE"  # truncated or corrupt
    IMAGE_DIMENSIONS_OUT_OF_RANGE = "IMAGE_DIMENSIONS_OUT_OF_RANGE"
    DECOMPRESSION_BOMB = "DECOMPRESSION_BOMB"
    # The model.
    INFERENCE_FAILED = "INFERENCE_FAILED"
    # Anything else that went wrong with this one line: the job goes on without it.
    INTERNAL_ERROR = "INTERNAL_ERROR"

    @classmethod
    def all(cls) -> list[str]:
        return sorted(v for k, v in vars(cls).items() if k.isupper())


class ImageProblem(Exception):
    """Why one image cannot be analysed: an ``ErrorCode`` and a message for the summary."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

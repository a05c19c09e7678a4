"""Server-side checks of requests against the botocore service models boto3 ships.

Rekognition's model is the default; the same checks run against any other JSON service model
(``service_model("sagemaker")`` for the flow definitions of human review), each service answering
violations with its own error code.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import OperationNotFoundError, ServiceModel, Shape

from service.errors import RequestError
from service.java_patterns import java_pattern

__all__ = [
    "INVALID_PARAMETER",
    "MAX_REPORTED_ERRORS",
    "SERIALIZATION_ERROR",
    "UNKNOWN_OPERATION",
    "RequestError",
    "VALIDATION_ERROR",
    "rekognition_model",
    "service_model",
    "validate_parameters",
]

_LOGGER = logging.getLogger(__name__)

# Real Rekognition answers constraint violations with Coral's `ValidationException`, which is not
# in the botocore model; InvalidParameterException is, so boto3 raises a modelled exception class.
INVALID_PARAMETER = "InvalidParameterException"
SERIALIZATION_ERROR = "SerializationException"
UNKNOWN_OPERATION = "UnknownOperationException"
# What services without a modelled parameter error (SageMaker) answer a violation with.
VALIDATION_ERROR = "ValidationException"

# Coral stops collecting after ten violations; it also keeps the message bounded.
MAX_REPORTED_ERRORS = 10
_MAX_VALUE_CHARS = 256

_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_JAVA_TYPE_NAMES = {
    "string": "String",
    "integer": "Integer",
    "long": "Long",
    "float": "Float",
    "double": "Double",
    "boolean": "Boolean",
    "timestamp": "Date",
}


@functools.cache
def service_model(name: str) -> ServiceModel:
    """The model of service ``name`` (``rekognition``, ``sagemaker``) in the installed botocore
    (loaded once)."""
    return botocore.session.get_session().get_service_model(name)


def rekognition_model() -> ServiceModel:
    """The Rekognition service model of the installed botocore (loaded once)."""
    return service_model("rekognition")


def validate_parameters(
    operation: str,
    body: bytes | Mapping[str, Any],
    *,
    model: ServiceModel | None = None,
    invalid_code: str = INVALID_PARAMETER,
) -> dict[str, Any]:
    """Check a request for `operation` against its input shape in `model` (Rekognition's by
    default) and return its cleaned parameters. Which operations are served is the API's to say
    (``service.api``).

    `body` is the raw JSON body or an already parsed mapping. Members the model does not know are
    dropped, JSON nulls count as absent, and blobs come back base64-decoded to bytes. Raises
    RequestError: UnknownOperationException for an operation the model does not have,
    SerializationException for a body that is not a JSON object or a value of the wrong JSON type,
    `invalid_code` (InvalidParameterException unless given) listing the constraint violations in
    AWS's wording.
    """
    model = rekognition_model() if model is None else model
    try:
        input_shape = model.operation_model(operation).input_shape
    except OperationNotFoundError:
        raise RequestError(
            UNKNOWN_OPERATION, f"An unknown operation was requested: {operation!r}"
        ) from None
    params = _parse_body(body) if isinstance(body, bytes | bytearray) else body
    if not isinstance(params, Mapping):
        raise RequestError(SERIALIZATION_ERROR, "The request body must be a JSON object")
    checker = _Checker()
    cleaned = checker.check(input_shape, dict(params), "")
    if checker.errors:
        count = len(checker.errors)
        plural = "error" if count == 1 else "errors"
        message = f"{count} validation {plural} detected: " + "; ".join(checker.errors)
        raise RequestError(invalid_code, message)
    return cleaned


def _parse_body(body: bytes | bytearray) -> Any:
    if not body.strip():
        raise RequestError(SERIALIZATION_ERROR, "The request body is empty; expected a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestError(
            SERIALIZATION_ERROR, f"The request body is not valid JSON: {_truncate(str(exc))}"
        ) from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _serialization_error(message: str, path: str) -> RequestError:
    where = f" at '{path}'" if path else ""
    return RequestError(SERIALIZATION_ERROR, f"{message}{where}")


def _json_token(value: Any) -> str:
    """Coral's name for the JSON token it found where another type was expected."""
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, int):
        return "NUMBER_VALUE"
    if isinstance(value, float):
        return "DECIMAL_VALUE"
    return "STRING_VALUE"


class _Checker:
    """One walk over a request: raises on type errors, collects constraint violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def violation(self, shown: str, path: str, constraint: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(f"{shown} at '{path}' failed to satisfy constraint: {constraint}")

    def check(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self._structure(shape, value, path)
        if kind == "list":
            return self._list(shape, value, path)
        if kind == "map":
            return self._map(shape, value, path)
        if kind == "blob":
            return self._blob(shape, value, path)
        cleaned = _scalar(shape, value, path)
        for constraint in _scalar_violations(shape, cleaned):
            self.violation(_shown(cleaned), path, constraint)
        return cleaned

    def _structure(self, shape: Shape, value: Any, path: str) -> dict[str, Any]:
        _expect_container(value, dict, path)
        required = set(shape.required_members)
        cleaned = {}
        for name, member in shape.members.items():
            member_path = _join(path, name)
            item = value.get(member.serialization.get("name", name))
            if item is None:
                if name in required:
                    self.violation("Value null", member_path, "Member must not be null")
                continue
            cleaned[name] = self.check(member, item, member_path)
        return cleaned

    def _list(self, shape: Shape, value: Any, path: str) -> list[Any]:
        _expect_container(value, list, path)
        for constraint in _length_violations(shape, len(value)):
            self.violation(_shown(value), path, constraint)
        cleaned = []
        for index, item in enumerate(value, start=1):
            item_path = f"{path}.{index}.member"
            if item is None:
                self.violation("Value null", item_path, "Member must not be null")
                continue
            cleaned.append(self.check(shape.member, item, item_path))
        return cleaned

    def _map(self, shape: Shape, value: Any, path: str) -> dict[str, Any]:
        _expect_container(value, dict, path)
        for constraint in _length_violations(shape, len(value)):
            self.violation(_shown(value), path, constraint)
        keys_ok = values_ok = True
        cleaned = {}
        for key, item in value.items():
            keys_ok = keys_ok and not _scalar_violations(shape.key, key)
            if item is None:
                values_ok = False
                continue
            if shape.value.type_name in ("structure", "list", "map", "blob"):
                cleaned[key] = self.check(shape.value, item, f"{path}.{key}")
                continue
            cleaned[key] = item = _scalar(shape.value, item, f"{path}.{key}")
            values_ok = values_ok and not _scalar_violations(shape.value, item)
        # Coral reports map entries as one violation per map, listing every constraint on the side
        # that failed, e.g. "Map value must satisfy constraint: [Member must have length ...]".
        if not keys_ok:
            listed = ", ".join(_all_constraints(shape.key))
            self.violation(_shown(value), path, f"Map keys must satisfy constraint: [{listed}]")
        if not values_ok:
            listed = ", ".join(["Member must not be null", *_all_constraints(shape.value)])
            self.violation(_shown(value), path, f"Map value must satisfy constraint: [{listed}]")
        return cleaned

    def _blob(self, shape: Shape, value: Any, path: str) -> bytes | None:
        if not isinstance(value, str):
            raise _serialization_error(
                "only base-64-encoded strings are convertible to bytes", path
            )
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            self.violation("Value", path, f"Member must be base64-encoded: {exc}")
            return None
        # Coral echoes a blob as the Java ByteBuffer holding it, never its content.
        shown = f"Value 'java.nio.HeapByteBuffer[pos=0 lim={len(data)} cap={len(data)}]'"
        for constraint in _length_violations(shape, len(data)):
            self.violation(shown, path, constraint)
        return data


def _expect_container(value: Any, expected: type, path: str) -> None:
    if isinstance(value, expected):
        return
    if isinstance(value, dict):
        raise _serialization_error("Start of structure or map found where not expected", path)
    if isinstance(value, list):
        raise _serialization_error("Start of list found where not expected", path)
    raise _serialization_error("Unexpected field type", path)


def _scalar(shape: Shape, value: Any, path: str) -> Any:
    """The value converted to the shape's Python type; SerializationException if it cannot be."""
    kind = shape.type_name
    java_name = _JAVA_TYPE_NAMES.get(kind, kind)
    if isinstance(value, dict):
        raise _serialization_error("Start of structure or map found where not expected", path)
    if isinstance(value, list):
        raise _serialization_error(
            f"Unrecognized collection type class java.lang.{java_name}", path
        )
    mismatch = _serialization_error(
        f"{_json_token(value)} cannot be converted to {java_name}", path
    )
    if kind == "string":
        if not isinstance(value, str):
            raise mismatch
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise mismatch
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise mismatch
    if kind in _INT_BOUNDS:
        if isinstance(value, float):
            if not value.is_integer():
                raise mismatch
            value = int(value)
        low, high = _INT_BOUNDS[kind]
        if not low <= value <= high:
            raise _serialization_error(f"NUMBER_VALUE out of range for {java_name}", path)
        return value
    if kind in ("float", "double", "timestamp"):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _serialization_error(f"NUMBER_VALUE out of range for {java_name}", path)
        return number if kind != "timestamp" else value
    raise _serialization_error(f"Unsupported shape type {kind}", path)


def _scalar_violations(shape: Shape, value: Any) -> list[str]:
    """The constraint phrases a string or number breaks, in Coral's order (max, min, pattern)."""
    meta = shape.metadata
    if isinstance(value, str):
        violations = _length_violations(shape, _java_length(value))
        pattern = meta.get("pattern")
        if pattern is not None and java_pattern(pattern).fullmatch(value) is None:
            violations.append(f"Member must satisfy regular expression pattern: {pattern}")
        enum = meta.get("enum")
        if enum and value not in enum:
            violations.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return violations
    violations = []
    if "max" in meta and value > meta["max"]:
        violations.append(f"Member must have value less than or equal to {_number(meta['max'])}")
    if "min" in meta and value < meta["min"]:
        violations.append(f"Member must have value greater than or equal to {_number(meta['min'])}")
    return violations


def _length_violations(shape: Shape, length: int) -> list[str]:
    meta = shape.metadata
    violations = []
    if "max" in meta and length > meta["max"]:
        violations.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta and length < meta["min"]:
        violations.append(f"Member must have length greater than or equal to {meta['min']}")
    return violations


def _all_constraints(shape: Shape) -> list[str]:
    meta = shape.metadata
    phrases = []
    if "max" in meta:
        phrases.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta:
        phrases.append(f"Member must have length greater than or equal to {meta['min']}")
    if "pattern" in meta:
        phrases.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if meta.get("enum"):
        phrases.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    return phrases


def _java_length(text: str) -> int:
    # Java's String.length() counts UTF-16 code units: a character outside the BMP counts twice.
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _join(path: str, member_name: str) -> str:
    name = member_name[:1].lower() + member_name[1:]
    return f"{path}.{name}" if path else name


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _java_text(value: Any) -> str:
    """How Java's toString() prints a deserialized value, as Coral echoes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_java_text(item)}" for key, item in value.items()) + "}"
    return str(value)


def _truncate(text: str) -> str:
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return text[:_MAX_VALUE_CHARS] + f"...({len(text)} characters)"


def _shown(value: Any) -> str:
    return f"Value '{_truncate(_java_text(value))}'"

"""The Amazon A2I runtime API (``sagemaker-a2i-runtime``) over REST-JSON, for the real clients.

``boto3.client("sagemaker-a2i-runtime", endpoint_url=SERVER)`` works against these routes as
against AWS: botocore's model (``sagemaker-a2i-runtime`` 2019-11-07) gives each operation's
method and path, and SigV4 signs with the service name ``sagemaker`` (its ``signingName``):

- ``POST /human-loops``: StartHumanLoop (``HumanLoopName``, ``FlowDefinitionArn``,
  ``HumanLoopInput.InputContent``, a JSON object as a string, ``DataAttributes``).
- ``GET /human-loops/{HumanLoopName}``: DescribeHumanLoop.
- ``GET /human-loops?FlowDefinitionArn=...``: ListHumanLoops (``CreationTimeAfter``,
  ``CreationTimeBefore`` in ISO 8601, ``SortOrder``, ``MaxResults``, ``NextToken``).
- ``POST /human-loops/stop``: StopHumanLoop; ``DELETE /human-loops/{HumanLoopName}``:
  DeleteHumanLoop (of a loop no longer InProgress, as A2I's guide says).

Requests are checked against the model (``service.validation``, violations answered with the
service's ``ValidationException``). Errors are answered the REST-JSON way, which botocore's
parser reads: the code in the ``x-amzn-ErrorType`` header, ``{"Message": ...}`` as the body, and
the HTTP status the model gives the error shape (ValidationException 400, ResourceNotFoundException
404, ConflictException 409, ServiceQuotaExceededException 402, InternalServerException 500).

StartHumanLoop with the name of an existing loop of the same flow and the same input returns that
loop (A2I's ConflictException is for the same name with *different* input data).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.model import ServiceModel
from botocore.utils import parse_timestamp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.auth import AuthError, verify_sigv4
from service.errors import RequestError
from service.review.flows import FlowNotFound
from service.review.loops import (
    LoopExists,
    LoopInProgress,
    LoopNotFound,
    LoopNotOpen,
    LoopQuotaExceeded,
)
from service.store import InvalidPaginationToken, page_answer
from service.validation import VALIDATION_ERROR, service_model, validate_parameters

__all__ = [
    "ERROR_STATUS",
    "SERVICE_NAME",
    "SIGNING_NAME",
    "handle_runtime",
    "runtime_model",
    "runtime_routes",
]

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME = "sagemaker-a2i-runtime"
SIGNING_NAME = "sagemaker"
_CONTENT_TYPE = "application/json"
_DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_DEFAULT_MAX_RESULTS = 100

# The HTTP status of each error, as the model's error shapes give it.
ERROR_STATUS: Mapping[str, int] = {
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ServiceQuotaExceededException": 402,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "SerializationException": 400,
    "UnknownOperationException": 404,
}


@functools.cache
def runtime_model() -> ServiceModel:
    """The A2I runtime's model in the installed botocore."""
    return service_model(SERVICE_NAME)


def handle_runtime(
    api, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One request to ``/human-loops...`` as it arrived (``path`` and ``query`` still
    percent-encoded, as SigV4 signs them): ``(status, headers, body)``."""
    try:
        verify_sigv4(method, path, query, headers, body, api.access_keys, service=SIGNING_NAME)
        operation, params = _route(method, path, query, body)
        answer = _OPERATIONS[operation](api, params)
        return 200, {"Content-Type": _CONTENT_TYPE}, json.dumps(answer).encode()
    except AuthError as exc:
        # REST APIs answer a refused signature with 403.
        return _error(exc.code, exc.message, 403)
    except RequestError as exc:
        return _error(exc.code, exc.message, ERROR_STATUS.get(exc.code, exc.http_status))
    except Exception:
        _LOGGER.exception("Internal error")
        return _error("InternalServerException", "Internal server error.", 500)


def runtime_routes(api, *, max_body_bytes: int = _DEFAULT_MAX_BODY_BYTES) -> list[Route]:
    """The Starlette routes of the A2I runtime over ``api`` (a ``service.api.RekognitionApi``
    with ``loops`` and ``flows``), to mount before any catch-all route."""

    async def endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        body = b""
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            async for _ in request.stream():
                pass
            status, headers, payload = _error(
                "SerializationException", f"The request body is over {max_body_bytes} bytes.", 413
            )
            headers["Connection"] = "close"
        else:
            body = await request.body()
            # SigV4 signs the path as sent, before any percent-decoding.
            path = request.scope.get("raw_path", b"/").decode("latin-1").partition("?")[0]
            query = request.scope.get("query_string", b"").decode("latin-1")
            status, headers, payload = await run_in_threadpool(
                handle_runtime, api, request.method, path, query, dict(request.headers), body
            )
        headers = {**headers, "x-amzn-RequestId": os.urandom(16).hex()}
        return Response(payload, status_code=status, headers=headers)

    methods = ["GET", "POST", "DELETE"]
    return [
        Route("/human-loops", endpoint, methods=methods),
        Route("/human-loops/{name}", endpoint, methods=methods),
    ]


# Requests.


def _route(method: str, path: str, query: str, body: bytes) -> tuple[str, dict[str, Any]]:
    parts = path.rstrip("/").split("/")
    if parts[:2] != ["", "human-loops"] or len(parts) > 3:
        raise RequestError("UnknownOperationException", f"No operation is served at {path}.")
    name = unquote(parts[2]) if len(parts) == 3 else None
    if name is None and method == "POST":
        return "StartHumanLoop", _validated("StartHumanLoop", _json_body(body))
    if name is None and method == "GET":
        return "ListHumanLoops", _validated("ListHumanLoops", _query_params(query))
    if name == "stop" and method == "POST":
        return "StopHumanLoop", _validated("StopHumanLoop", _json_body(body))
    if name is not None and method == "GET":
        return "DescribeHumanLoop", _validated("DescribeHumanLoop", {"HumanLoopName": name})
    if name is not None and method == "DELETE":
        return "DeleteHumanLoop", _validated("DeleteHumanLoop", {"HumanLoopName": name})
    raise RequestError("UnknownOperationException", f"No operation is served by {method} {path}.")


def _validated(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return validate_parameters(
        operation, params, model=runtime_model(), invalid_code=VALIDATION_ERROR
    )


def _json_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestError("SerializationException", f"The body is not valid JSON: {exc}") from None


def _query_params(query: str) -> dict[str, Any]:
    """The ListHumanLoops parameters of a query string, converted as the model types them."""
    shape = runtime_model().operation_model("ListHumanLoops").input_shape
    values = {key: items[-1] for key, items in parse_qs(query, keep_blank_values=True).items()}
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        text = values.get(member.serialization.get("name", name))
        if text is None:
            continue
        if member.type_name == "integer":
            try:
                params[name] = int(text)
            except ValueError:
                raise RequestError(
                    VALIDATION_ERROR, f"{name} must be an integer, not {text!r}."
                ) from None
        elif member.type_name == "timestamp":
            try:
                params[name] = parse_timestamp(text).timestamp()
            except (ValueError, TypeError):
                raise RequestError(
                    VALIDATION_ERROR, f"{name} must be an ISO 8601 date and time, not {text!r}."
                ) from None
        else:
            params[name] = text
    return params


# Operations.


def start_human_loop(api, params: dict) -> dict:
    name, arn = params["HumanLoopName"], params["FlowDefinitionArn"]
    text = params["HumanLoopInput"]["InputContent"]
    try:
        content = json.loads(text)
    except ValueError:
        content = None
    if not isinstance(content, dict):
        raise RequestError(
            VALIDATION_ERROR,
            "HumanLoopInput.InputContent must be a JSON object serialized as a string.",
        )
    try:
        flow = api.flows.get(arn)
    except FlowNotFound:
        raise RequestError(VALIDATION_ERROR, f"The flow definition {arn} does not exist.") from None
    try:
        loop = api.loops.create(name, flow, content, data_attributes=params.get("DataAttributes"))
    except LoopExists:
        existing = api.loops.get(name)
        if existing.flow_definition_arn == flow.arn and existing.input_content == content:
            return {"HumanLoopArn": existing.arn}
        raise RequestError(
            "ConflictException",
            f"A human loop named {name} exists already, with another flow definition or other "
            "input data.",
        ) from None
    except LoopQuotaExceeded as exc:
        raise RequestError("ServiceQuotaExceededException", str(exc)) from None
    return {"HumanLoopArn": loop.arn}


def describe_human_loop(api, params: dict) -> dict:
    return _loop(api, params["HumanLoopName"]).to_api()


def list_human_loops(api, params: dict) -> dict:
    arn = params["FlowDefinitionArn"]
    try:
        api.flows.get(arn)
    except FlowNotFound:
        # A deleted flow's loops stay listed; a flow that never had any is unknown.
        if not api.loops.has_loops(arn):
            raise RequestError(
                "ResourceNotFoundException", f"The flow definition {arn} does not exist."
            ) from None
    # Creation times are kept to the millisecond: a bound read back from a listing (through
    # ISO 8601) compares equal to the time it came from.
    after, before = (
        None if params.get(name) is None else round(params[name], 3)
        for name in ("CreationTimeAfter", "CreationTimeBefore")
    )
    try:
        loops, token = api.loops.list(
            arn,
            created_after=after,
            created_before=before,
            sort_order=params.get("SortOrder", "Ascending"),
            max_results=params.get("MaxResults", _DEFAULT_MAX_RESULTS),
            next_token=params.get("NextToken"),
        )
    except InvalidPaginationToken as exc:
        raise RequestError(VALIDATION_ERROR, str(exc)) from None
    return page_answer("HumanLoopSummaries", [loop.summary() for loop in loops], token)


def stop_human_loop(api, params: dict) -> dict:
    try:
        api.loops.stop(params["HumanLoopName"])
    except LoopNotFound as exc:
        raise RequestError("ResourceNotFoundException", str(exc)) from None
    except LoopNotOpen as exc:
        raise RequestError(VALIDATION_ERROR, str(exc)) from None
    return {}


def delete_human_loop(api, params: dict) -> dict:
    try:
        api.loops.delete(params["HumanLoopName"])
    except LoopNotFound as exc:
        raise RequestError("ResourceNotFoundException", str(exc)) from None
    except LoopInProgress as exc:
        raise RequestError(VALIDATION_ERROR, str(exc)) from None
    return {}


_OPERATIONS = {
    "StartHumanLoop": start_human_loop,
    "DescribeHumanLoop": describe_human_loop,
    "ListHumanLoops": list_human_loops,
    "StopHumanLoop": stop_human_loop,
    "DeleteHumanLoop": delete_human_loop,
}


def _loop(api, name: str):
    try:
        return api.loops.get(name)
    except LoopNotFound as exc:
        raise RequestError("ResourceNotFoundException", str(exc)) from None


def _error(code: str, message: str, status: int) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": _CONTENT_TYPE, "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"Message": message}).encode()

"""The web application: the Rekognition API (AWS JSON 1.1) at ``POST /``, the A2I runtime
(REST-JSON) under ``/human-loops`` (``service.review.runtime``), and the console at
``/console/`` (``service.console``), on Starlette, in one process over one registry.

``RekognitionApi.handle`` answers each request as it arrived; this module only moves bytes
between it and the ASGI server, in a worker thread (the API blocks: SQLite, S3, the model).
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

__all__ = ["build_app"]

_CONTENT_TYPE = "application/x-amz-json-1.1"


async def _read_body(request: Request, max_bytes: int) -> bytes | None:
    """The request body, or None when it is over ``max_bytes``: then it is still read to its
    end (without being kept), so that the client gets the answer, not a connection broken
    halfway through its upload."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        async for _ in request.stream():
            pass
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            chunks = None
        elif chunks is not None:
            chunks.append(chunk)
    return None if chunks is None else b"".join(chunks)


def build_app(api, *, max_body_bytes: int, console=None) -> Starlette:
    """The application over ``api`` (a ``service.api.RekognitionApi``), with ``console`` (an
    ASGI application, ``service.console.build_console``) mounted at ``/console`` if given."""

    async def aws_json(request: Request) -> Response:
        body = await _read_body(request, max_body_bytes)
        if body is None:
            message = f"The request body is over {max_body_bytes} bytes."
            payload = {"__type": "SerializationException", "Message": message}
            payload["Code"] = "SerializationException"
            return Response(
                json.dumps(payload).encode(),
                status_code=413,
                headers={"Content-Type": _CONTENT_TYPE, "Connection": "close"},
            )
        # SigV4 signs the path as sent, before any percent-decoding.
        path = request.scope.get("raw_path", b"/").decode("latin-1").partition("?")[0]
        query = request.scope.get("query_string", b"").decode("latin-1")
        status, headers, payload = await run_in_threadpool(
            api.handle, request.method, path, query, dict(request.headers), body
        )
        headers = {**headers, "x-amzn-RequestId": os.urandom(16).hex()}
        return Response(payload, status_code=status, headers=headers)

    routes = []
    if console is not None:

        async def to_console(request: Request) -> Response:
            return RedirectResponse("/console/", status_code=307)

        routes += [Route("/console", to_console), Mount("/console", app=console)]
    if getattr(api, "loops", None) is not None:
        from service.review.runtime import runtime_routes

        # The A2I runtime (REST-JSON), before the AWS JSON catch-all.
        routes += runtime_routes(api, max_body_bytes=max_body_bytes)
    routes.append(Route("/{path:path}", aws_json, methods=["GET", "POST"]))
    return Starlette(routes=routes)

"""What every console page shares: the ``Console`` (the API, the stores, the templates), the
guards that a page needs a signed-in user and an action a CSRF token too, and rendering.

Pages call the API's operations through ``RekognitionApi.call``: a job started, an adapter
trained or an image moderated in the console takes exactly the path of the same request from
boto3, validation included.
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from model.taxonomy import TAXONOMY
from service.console.decisions import VerificationStore
from service.console.images import ThumbnailCache
from service.console.results_index import ResultsIndex
from service.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SignInThrottle,
    csrf_matches,
    csrf_token,
)
from service.console.settings import ConsoleSettings
from service.errors import RequestError

__all__ = ["Console", "action", "json_action", "page"]

_LOGGER = logging.getLogger(__name__)

HERE = pathlib.Path(__file__).parent
Handler = Callable[[Request], Awaitable[Response]]

# No inline script or style anywhere: what a page shows can never run as code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _timestamp(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value is escaped unless a template says otherwise (none does)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["timestamp"] = _timestamp
    environment.filters["urlencode_ref"] = lambda ref: urllib.parse.quote(ref, safe="")
    return Jinja2Templates(env=environment)


class Console:
    """The console's state: the API it calls, its stores, and its settings."""

    def __init__(self, api, settings: ConsoleSettings):
        self.api = api
        self.settings = settings
        registry_file = api.registry.path
        self.index = ResultsIndex(registry_file)
        self.decisions = VerificationStore(registry_file)
        self.thumbnails = ThumbnailCache(
            settings.cache_dir,
            max_bytes=settings.cache_bytes,
            s3_client=api.s3_client,
            allowed_locations=api.allowed_locations,
        )
        self.throttle = SignInThrottle()
        self.templates = _templates()
        self.taxonomy = [
            {
                "name": entry.name,
                "parent": entry.parent,
                "level": entry.level,
                "indent": "\u2003" * (entry.level - 1),
            }
            for entry in TAXONOMY.values()
        ]

    # Calling the API as a signed client would.

    async def call(
        self, operation: str, params: dict[str, Any], extensions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await run_in_threadpool(
            functools.partial(self.api.call, extensions=extensions), operation, params
        )

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        context.setdefault("section", "")
        context.update(
            user=request.session.get("user"),
            csrf_token=csrf_token(request.session),
            csrf_field=CSRF_FIELD,
        )
        return self.templates.TemplateResponse(
            request, template, context, status_code=status_code, headers=SECURITY_HEADERS
        )

    def error_page(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status, title=title, message=message)


def _signed_in(console: Console, request: Request) -> str | None:
    user = request.session.get("user")
    # A key pair removed from the server's configuration signs its sessions out.
    if isinstance(user, str) and console.api.access_keys.secret_for(user) is not None:
        return user
    return None


def page(console: Console) -> Callable[[Handler], Handler]:
    """A page that needs a signed-in user: anyone else is sent to sign in, and back after."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            if _signed_in(console, request) is None:
                request.session.pop("user", None)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                query = urllib.parse.urlencode({"next": target})
                return RedirectResponse(f"/console/sign-in?{query}", status_code=303)
            return await handler(request)

        return guarded

    return wrap


async def _sent_token(console: Console, request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        # Parsed once: the handler reads the same form. Twice the upload limit in files, so
        # that a few too many are refused by the page, with a message, not by the parser.
        form = await request.form(max_files=2 * console.settings.max_upload_images, max_fields=1000)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def action(console: Console, *, signed_in: bool = True) -> Callable[[Handler], Handler]:
    """A form post that changes something: a signed-in user (unless ``signed_in`` is False: the
    sign-in form itself) and the session's CSRF token."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            if signed_in and _signed_in(console, request) is None:
                return RedirectResponse("/console/sign-in", status_code=303)
            if not csrf_matches(request.session, await _sent_token(console, request)):
                return console.error_page(
                    request,
                    403,
                    "Refused",
                    "The form was missing its security token or it has expired. Reload the "
                    "page and try again.",
                )
            return await handler(request)

        return guarded

    return wrap


def json_action(console: Console) -> Callable[[Handler], Handler]:
    """A state-changing JSON request of the console's scripts: signed in, CSRF header."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            if _signed_in(console, request) is None:
                return JSONResponse({"error": "Sign in again."}, status_code=401)
            if not csrf_matches(request.session, request.headers.get(CSRF_HEADER)):
                return JSONResponse(
                    {"error": "Missing or wrong security token; reload the page."},
                    status_code=403,
                )
            return await handler(request)

        return guarded

    return wrap


def json_page(console: Console) -> Callable[[Handler], Handler]:
    """A JSON read of the console's scripts: signed in (401 otherwise, no redirect)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            if _signed_in(console, request) is None:
                return JSONResponse({"error": "Sign in again."}, status_code=401)
            return await handler(request)

        return guarded

    return wrap


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; ValueError when it is not one."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ValueError("The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    return body


def api_message(error: RequestError) -> str:
    """A RequestError as the console shows it."""
    return f"{error.message} ({error.code})"

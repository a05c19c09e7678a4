"""The console application, mounted at ``/console`` beside the API: sign-in and sign-out, the
thumbnails, the static files, and the pages of each part (``jobs_pages``, ``verify_pages``,
``adapter_pages``, ``moderation_page``, ``review_pages``)."""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import urllib.parse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.console import (
    adapter_pages,
    custom_labels_pages,
    jobs_pages,
    moderation_page,
    review_pages,
    verify_pages,
)
from service.console.images import THUMBNAIL_SIZES, ImageRefused, ImageUnavailable
from service.console.results_index import index_job
from service.console.sessions import check_credentials
from service.console.settings import ConsoleSettings
from service.console.web import HERE, SECURITY_HEADERS, Console, action, page
from service.store import SqliteStore

__all__ = ["build_console"]

SESSION_COOKIE = "console_session"


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if target and target.startswith("/console/") and "\\" not in target:
        parsed = urllib.parse.urlsplit(target)
        path = posixpath.normpath(parsed.path)
        if not parsed.scheme and not parsed.netloc and path.startswith("/console/"):
            return path + (f"?{parsed.query}" if parsed.query else "")
    return "/console/jobs"


def build_console(api, settings: ConsoleSettings) -> Starlette:
    """The console over ``api`` (a ``service.api.RekognitionApi``)."""
    console = Console(api, settings)
    # A finished job's results are indexed once, as it ends, so that its pages open at once.
    api.runner.on_succeeded.append(lambda job: index_job(console.index, job, api.s3_client))
    session_key = SqliteStore(api.registry.path, "").setting(
        "console_session_key", lambda: secrets.token_hex(32)
    )

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/jobs", status_code=303)

    async def sign_in_form(request: Request) -> Response:
        return console.render(
            request, "sign_in.html", next=_safe_next(request.query_params.get("next")), error=""
        )

    async def sign_in(request: Request) -> Response:
        form = await request.form()
        user = str(form.get("user", "")).strip()
        secret = str(form.get("secret", ""))
        target = _safe_next(str(form.get("next", "")))
        address = request.client.host if request.client else ""
        wait = console.throttle.wait_for(address, user)
        if wait > 0:
            return console.render(
                request,
                "sign_in.html",
                429,
                next=target,
                error=f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds.",
            )
        if not check_credentials(api.access_keys, user, secret):
            console.throttle.failed(address, user)
            await asyncio.sleep(0.5)  # every failure costs the guesser time
            return console.render(
                request,
                "sign_in.html",
                401,
                next=target,
                error="That access key id and secret do not match a key pair of this server.",
            )
        console.throttle.succeeded(address, user)
        request.session.clear()  # a new session (and CSRF token) on every sign-in
        request.session["user"] = user
        return RedirectResponse(target, status_code=303)

    async def sign_out(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/console/sign-in", status_code=303)

    @page(console)
    async def thumbnail(request: Request) -> Response:
        ref = request.query_params.get("ref", "")
        try:
            size = int(request.query_params.get("size", "320"))
        except ValueError:
            size = 0
        if size not in THUMBNAIL_SIZES:
            return Response(f"size must be one of {THUMBNAIL_SIZES}", 400)
        try:
            data = await run_in_threadpool(console.thumbnails.thumbnail, ref, size)
        except ImageRefused as exc:
            return Response(str(exc), 403, media_type="text/plain")
        except ImageUnavailable as exc:
            return Response(str(exc), 404, media_type="text/plain")
        headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"}
        return Response(data, media_type="image/jpeg", headers=headers)

    routes = [
        Route("/", home),
        Route("/sign-in", sign_in_form, methods=["GET"]),
        # Signing in needs the CSRF token of the sign-in form's session (no login CSRF).
        Route("/sign-in", action(console, signed_in=False)(sign_in), methods=["POST"]),
        Route("/sign-out", action(console)(sign_out), methods=["POST"]),
        Route("/thumbnail", thumbnail),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        *jobs_pages.routes(console),
        *verify_pages.routes(console),
        *adapter_pages.routes(console),
        *moderation_page.routes(console),
        *custom_labels_pages.routes(console),
        *review_pages.routes(console),
    ]
    middleware = [
        # The largest upload allowed, and a little more for the form's other fields.
        Middleware(
            BodyLimit,
            max_bytes=settings.max_upload_images * settings.max_upload_bytes + 1024 * 1024,
        ),
        Middleware(
            SessionMiddleware,
            secret_key=session_key,
            session_cookie=SESSION_COOKIE,
            max_age=int(settings.session_seconds),
            path="/console",
            same_site="strict",
            https_only=settings.secure_cookies,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses (413) a request whose body is over ``max_bytes``, declared or as it streams in,
    before a form parser spools it to disk."""

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send) -> None:
        megabytes = self.max_bytes / 1024 / 1024
        response = Response(
            f"The request is over {megabytes:.0f} MB: choose fewer or smaller images.",
            status_code=413,
            media_type="text/plain",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

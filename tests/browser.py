"""Shared helpers for browser tests of the console: Playwright driving the system Chromium.

The browser is Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it), never one that
Playwright downloads. A test module uses the fixtures by naming this module as a plugin::

    pytest_plugins = ["tests.browser"]

    def test_something(page):
        page.goto(...)
        assert page.errors == [] and page.dialogs == []

``page`` records what an XSS test must see nothing of: uncaught script errors and console
errors (CSP violations among them) in ``page.errors``, and every alert, confirm or prompt (each
dismissed) in ``page.dialogs``. ``serve`` runs an ASGI application on a free local port for the
length of a ``with`` block; ``sign_in`` signs in to the console; ``screenshot`` saves the small
PNGs of ``docs/console/`` that the README shows.

PYTEST_DONT_REWRITE: this module asserts nothing, and test modules import it before pytest loads
it as their plugin (which would otherwise warn that it came too late to rewrite it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "SCREENSHOTS",
    "browser",
    "browser_page",
    "launch_browser",
    "page",
    "screenshot",
    "serve",
    "sign_in",
]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Root in containers needs --no-sandbox; there is no GPU, and /dev/shm may be tiny.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SCREENSHOTS = ROOT / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT_HEIGHT = 800
TIMEOUT_MS = 15_000  # any one action or wait; a console page answers in well under a second

_MISSING = (
    f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's package "
    "(apt-get install chromium fonts-dejavu-core; .ci/run installs both)."
)


def launch_browser(playwright):
    """The system Chromium, headless, launched by ``playwright`` (``sync_playwright()``'s)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session. Fails, never skips, where it is missing."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(_MISSING, pytrace=False)
    with sync_playwright() as playwright:
        try:
            launched = launch_browser(playwright)
        except Exception as exc:  # playwright.sync_api.Error, with the browser's own output
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}", pytrace=False)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def browser_page(browser) -> Iterator:
    """A page in a fresh context (no cookies; viewport 1280x900), with ``errors`` (uncaught
    script errors, console errors) and ``dialogs`` (``"alert: message"``, each dismissed): one
    more user, beside the ``page`` fixture's."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    opened.errors = []
    opened.dialogs = []
    opened.on("pageerror", lambda error: opened.errors.append(f"pageerror: {error}"))
    opened.on("console", lambda message: _console_error(message, opened.errors))

    def on_dialog(dialog) -> None:
        opened.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def page(browser):
    """A page of ``browser_page``, for the test's length."""
    with browser_page(browser) as opened:
        yield opened


def _console_error(message, errors: list[str]) -> None:
    if message.type != "error":
        return
    # Chromium asks every site for /favicon.ico by itself; a 404 there is no page's error.
    location = message.location.get("url", "") if message.location else ""
    if urllib.parse.urlsplit(location).path == "/favicon.ico":
        return
    errors.append(f"console: {message.text}" + (f" ({location})" if location else ""))


def screenshot(page, name: str) -> Path:
    """Saves the top of the page's viewport (1280x800 at most) as ``docs/console/<name>.png``."""
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size or VIEWPORT
    height = min(size["height"], SCREENSHOT_HEIGHT)
    clip = {"x": 0, "y": 0, "width": size["width"], "height": height}
    page.screenshot(path=str(path), clip=clip, full_page=False, animations="disabled")
    with Image.open(path) as image:
        image.load()
    image.save(path, optimize=True)  # smaller files for the repository, same pixels
    return path


def sign_in(page, base_url: str, key_id: str, secret: str) -> None:
    """Signs in on ``/console/sign-in`` with a key pair; returns once the jobs page is open."""
    page.goto(f"{base_url.rstrip('/')}/console/sign-in")
    page.fill("input[name=user]", key_id)
    page.fill("input[name=secret]", secret)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == "/console/jobs")


@contextlib.contextmanager
def serve(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serves the ASGI ``app`` with uvicorn in a thread on a free port: yields its base URL."""
    import uvicorn

    sock = socket.create_server((host, 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        port = sock.getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()

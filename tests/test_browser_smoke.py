"""The browser tests' footing: the system Chromium starts, runs scripts, and renders a page that
a real HTTP server (uvicorn, as the console's) sends; ``page`` records errors and dialogs."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.browser import serve

pytest_plugins = ["tests.browser"]

_PAGE = "<!doctype html><title>Smoke</title><p id=greeting>hi</p>"


async def _home(request):
    return HTMLResponse(_PAGE)


def test_chromium_renders_a_served_page(page):
    with serve(Starlette(routes=[Route("/", _home)])) as url:
        page.goto(f"{url}/")
        assert page.title() == "Smoke"
        assert page.text_content("#greeting") == "hi"
        assert page.evaluate("1 + 1") == 2
        box = page.locator("#greeting").bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0  # real fonts render
    assert page.errors == [] and page.dialogs == []


def test_page_records_errors_and_dialogs(page):
    page.set_content("<p>hi</p>")
    page.evaluate("() => { alert('one'); console.error('two'); }")
    page.evaluate("() => setTimeout(() => { throw new Error('three'); })")
    page.wait_for_timeout(200)
    assert page.dialogs == ["alert: one"]
    assert page.errors[0].startswith("console: two")
    assert any("three" in error for error in page.errors[1:])

"""The console's safety, against the real server and moto over HTTP: sign-in and its throttle,
signed expiring cookies, CSRF tokens on every state-changing request, escaping of every string
that came from users or data (checked in Chromium: nothing runs), uploads checked before they
are stored, and thumbnails that read nothing outside the allowed locations."""

from __future__ import annotations

import io
import re
import threading
import time
import urllib.parse

import pytest
import requests
from PIL import Image

from tests.browser import sign_in
from tests.conftest import API_KEY_ID, API_SECRET
from tests.console_server import console_flags, register_job, results_line

pytest_plugins = ["tests.browser"]

OTHER_KEY_ID, OTHER_SECRET = "AKIDMODERATION0002", "moderation-secret-0002"

# Each would run script if it reached the page unescaped, in text or in an attribute.
PAYLOADS = (
    "<script>alert('xss-script')</script>",
    '"><img src=x onerror=alert("xss-img")>',
    "' onmouseover='alert(1)' data-x='",
    '"onerror="alert(2)',
    "</script><script>alert('xss-close')</script>",
    "javascript:alert('xss-url')",
)


class Console:
    def __init__(self, server, base: str, registry: str, s3):
        self.server, self.base, self.registry, self.s3 = server, base, registry, s3

    def url(self, path: str) -> str:
        return self.base + path


def _start(tmp_path, moto_server, *extra: str):
    from tests.conftest import start_api_server

    return start_api_server(console_flags(str(tmp_path / "jobs.sqlite"), moto_server, *extra))


@pytest.fixture
def console(tmp_path, s3, moto_server, monkeypatch):
    monkeypatch.setenv(
        "BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET},{OTHER_KEY_ID}:{OTHER_SECRET}"
    )
    for bucket in ("in-bucket", "out-bucket", "elsewhere"):
        s3.create_bucket(Bucket=bucket)
    server, base = _start(tmp_path, moto_server)
    yield Console(server, base, str(tmp_path / "jobs.sqlite"), s3)
    server.shutdown()
    server.server_close()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html)[1]


def _signed_in(base: str, key_id: str = API_KEY_ID, secret: str = API_SECRET):
    session = requests.Session()
    form = session.get(f"{base}/console/sign-in", timeout=30).text
    answer = session.post(
        f"{base}/console/sign-in",
        data={"csrf_token": _csrf(form), "user": key_id, "secret": secret},
        timeout=30,
    )
    assert answer.url.endswith("/console/jobs"), answer.text[:500]
    return session, _csrf(answer.text)


def _jpeg(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="JPEG")
    return buffer.getvalue()


# Sessions.


def test_pages_send_a_visitor_without_a_session_to_sign_in_and_back(console, page):
    target = "/console/adapters"
    page.goto(console.url(target))
    assert urllib.parse.urlsplit(page.url).path == "/console/sign-in"
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["next"] == [target]
    page.fill("input[name=user]", API_KEY_ID)
    page.fill("input[name=secret]", API_SECRET)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == target)
    for path in ("/console/jobs/new", "/console/moderate", "/console/thumbnail?ref=x"):
        answer = requests.get(console.url(path), allow_redirects=False, timeout=30)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/sign-in")
    assert page.errors == [] and page.dialogs == []


def test_a_wrong_secret_is_refused_and_next_never_leaves_the_console(console):
    session = requests.Session()
    form = session.get(console.url("/console/sign-in"), timeout=30).text
    wrong = session.post(
        console.url("/console/sign-in"),
        data={"csrf_token": _csrf(form), "user": API_KEY_ID, "secret": "nope"},
        timeout=30,
    )
    assert wrong.status_code == 401
    assert "do not match" in wrong.text
    for target in ("https://evil.example/", "//evil.example/x", "/elsewhere", "/console/../x"):
        session = requests.Session()  # signing in starts a new session, with a new token
        form = session.get(console.url("/console/sign-in"), timeout=30).text
        answer = session.post(
            console.url("/console/sign-in"),
            data={
                "csrf_token": _csrf(form),
                "user": API_KEY_ID,
                "secret": API_SECRET,
                "next": target,
            },
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/console/") and ".." not in location, location


def test_failed_sign_ins_are_slowed_down(console):
    session = requests.Session()
    token = _csrf(session.get(console.url("/console/sign-in"), timeout=30).text)
    statuses = []
    for _ in range(6):
        answer = session.post(
            console.url("/console/sign-in"),
            data={"csrf_token": token, "user": API_KEY_ID, "secret": "guess"},
            timeout=30,
        )
        statuses.append(answer.status_code)
    assert statuses == [401] * 5 + [429]
    # Even the right secret waits its turn now.
    answer = session.post(
        console.url("/console/sign-in"),
        data={"csrf_token": token, "user": API_KEY_ID, "secret": API_SECRET},
        timeout=30,
    )
    assert answer.status_code == 429
    assert "Try again in" in answer.text
    # Another user from another session is slowed too: the address is the same.
    other = requests.Session()
    other_token = _csrf(other.get(console.url("/console/sign-in"), timeout=30).text)
    answer = other.post(
        console.url("/console/sign-in"),
        data={"csrf_token": other_token, "user": OTHER_KEY_ID, "secret": OTHER_SECRET},
        timeout=30,
    )
    assert answer.status_code == 429


def test_the_session_cookie_is_signed_httponly_strict_and_expires(
    tmp_path, s3, moto_server, monkeypatch
):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    s3.create_bucket(Bucket="in-bucket")
    s3.create_bucket(Bucket="out-bucket")
    server, base = _start(tmp_path, moto_server, "--console_session_hours=0.0006", "--behind_tls")
    try:
        session = requests.Session()
        answer = session.get(f"{base}/console/sign-in", timeout=30)
        cookie = answer.headers["set-cookie"]
        assert "console_session=" in cookie
        for flag in ("httponly", "samesite=strict", "secure", "path=/console", "max-age=2"):
            assert flag in cookie.lower(), cookie
        # requests keeps Secure cookies for https only: send it by hand over plain HTTP.
        value = re.search(r"console_session=([^;]+)", cookie)[1]
        answer = requests.post(
            f"{base}/console/sign-in",
            data={"csrf_token": _csrf(answer.text), "user": API_KEY_ID, "secret": API_SECRET},
            cookies={"console_session": value},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 303
        signed_in = re.search(r"console_session=([^;]+)", answer.headers["set-cookie"])[1]
        jobs = requests.get(
            f"{base}/console/jobs",
            cookies={"console_session": signed_in},
            allow_redirects=False,
            timeout=30,
        )
        assert jobs.status_code == 200
        tampered = signed_in[:-3] + ("aaa" if not signed_in.endswith("aaa") else "bbb")
        refused = requests.get(
            f"{base}/console/jobs",
            cookies={"console_session": tampered},
            allow_redirects=False,
            timeout=30,
        )
        assert refused.status_code == 303
        time.sleep(3.2)
        expired = requests.get(
            f"{base}/console/jobs",
            cookies={"console_session": signed_in},
            allow_redirects=False,
            timeout=30,
        )
        assert expired.status_code == 303
        assert expired.headers["location"].startswith("/console/sign-in")
    finally:
        server.shutdown()
        server.server_close()


# CSRF.


def test_every_state_changing_request_needs_the_csrf_token(console):
    job_id = register_job(console.registry, console.s3, [results_line("s3://in-bucket/a.jpg")])
    session, token = _signed_in(console.base)
    forms = [
        (
            "/console/jobs",
            {
                "source": "manifest",
                "manifest_uri": "s3://in-bucket/m.jsonl",
                "min_confidence": "50",
            },
        ),
        ("/console/moderate", {"s3_uri": "s3://in-bucket/a.jpg", "min_confidence": "50"}),
        (f"/console/jobs/{job_id}/train", {"new_project": "p", "version_name": "v"}),
        ("/console/adapters/p/v/delete", {}),
        ("/console/adapters/p/delete", {}),
        (f"/console/jobs/{job_id}/export", {}),
        (
            "/console/custom-labels",
            {"new_project": "p", "version_name": "v", "training_manifest": "s3://in-bucket/m"},
        ),
        ("/console/custom-labels/p/v/start", {"min_inference_units": "1"}),
        ("/console/custom-labels/p/v/stop", {}),
        ("/console/custom-labels/p/v/delete", {}),
        ("/console/custom-labels/p/v/detect", {"s3_uri": "s3://in-bucket/a.jpg"}),
        ("/console/sign-out", {}),
    ]
    for path, data in forms:
        for sent in ({}, {"csrf_token": "forged-" + token[7:]}):
            answer = session.post(console.url(path), data={**data, **sent}, timeout=30)
            assert answer.status_code == 403, (path, sent, answer.status_code)
            assert "security token" in answer.text
    decision = {
        "decisions": [{"sourceRef": "s3://in-bucket/a.jpg", "labels": {}, "expectedRevision": 0}]
    }
    for path, body in (
        (f"/console/jobs/{job_id}/decisions", decision),
        (
            f"/console/jobs/{job_id}/decisions/withdraw",
            {"sourceRef": "s3://in-bucket/a.jpg", "expectedRevision": 1},
        ),
        (f"/console/jobs/{job_id}/custom-labels", {"name": "Mine", "parent": ""}),
    ):
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            answer = session.post(console.url(path), json=body, headers=headers, timeout=30)
            assert answer.status_code == 403, (path, headers)
    # Nothing happened: no job started, no decision saved, still signed in.
    assert [j for j in console.server.api.registry.list()[0] if j.job_id != job_id] == []
    assert (
        session.get(console.url(f"/console/jobs/{job_id}/verification.json"), timeout=30).json()[
            "reviewed"
        ]
        == 0
    )
    # With the token the same decision is saved.
    answer = session.post(
        console.url(f"/console/jobs/{job_id}/decisions"),
        json=decision,
        headers={"X-CSRF-Token": token},
        timeout=30,
    )
    assert answer.status_code == 200 and len(answer.json()["saved"]) == 1


# Escaping: nothing that came from users or data runs.


def test_hostile_strings_are_shown_as_text_and_never_run(console, page):
    refs = [f"s3://in-bucket/x/{payload}.jpg" for payload in PAYLOADS]
    for ref in refs:
        console.s3.put_object(Bucket="in-bucket", Key=ref[len("s3://in-bucket/") :], Body=_jpeg())
    hostile_label = "<script>alert('xss-label')</script>"
    lines = [
        results_line(
            ref,
            [("Weapons", 91.0, "Violence", 2), ("Violence", 91.0, "", 1)],
            [(PAYLOADS[1], 80.0)],
        )
        for ref in refs
    ]
    lines.append(results_line("s3://in-bucket/x/label.jpg", [(hostile_label, 77.0, "", 1)]))
    errors = [
        {"line-numer": 8 + i, "source-ref": payload, "code": "INVALID_IMAGE", "message": payload}
        for i, payload in enumerate(PAYLOADS)
    ]
    job_id = register_job(console.registry, console.s3, lines, errors=errors, name="hostile")
    console.s3.put_object(Bucket="in-bucket", Key="x/label.jpg", Body=_jpeg())
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    sign_in(page, console.base, API_KEY_ID, API_SECRET)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    for payload in PAYLOADS[:2]:
        answer = page.request.post(
            console.url(f"/console/jobs/{job_id}/custom-labels"),
            data={"name": payload, "parent": ""},
            headers={"X-CSRF-Token": token},
        )
        assert answer.status == 200, answer.text()

    def visit(path: str, *shown: str) -> None:
        page.goto(console.url(path))
        page.wait_for_load_state("networkidle")
        text = page.locator("body").inner_text()
        for value in shown:
            assert value in text, (path, value)

    visit("/console/jobs")
    visit(f"/console/jobs/{job_id}")
    visit(f"/console/jobs/{job_id}/results", *PAYLOADS[:3], hostile_label)
    visit(
        f"/console/jobs/{job_id}/results?"
        + urllib.parse.urlencode({"label": PAYLOADS[0], "type": PAYLOADS[1]}),
    )
    visit(f"/console/jobs/{job_id}/results?min=" + urllib.parse.quote(PAYLOADS[0]), PAYLOADS[0])
    visit(f"/console/jobs/{job_id}/verify")
    visit(f"/console/jobs/{job_id}/verify?position=1")
    page.keyboard.press("a")
    page.keyboard.type("xss")
    visit(f"/console/jobs/{job_id}/train")
    visit("/console/moderate")
    page.fill("input[name=s3_uri]", f"s3://elsewhere/{PAYLOADS[0]}")
    page.click("#moderate-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert PAYLOADS[0] in page.locator(".error").inner_text()
    # A job name is checked against the API's own pattern; the refusal quotes it as text.
    visit("/console/jobs/new")
    page.evaluate("document.querySelector('input[name=job_name]').removeAttribute('pattern')")
    page.fill("input[name=job_name]", "<b>x</b>")
    page.check("input[value=manifest]")
    page.fill("input[name=manifest_uri]", "s3://in-bucket/m.jsonl")
    page.click("#new-job button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "<b>x</b>" in page.locator(".error").inner_text()
    assert page.locator("main b").count() == 0
    assert page.dialogs == [], page.dialogs
    # The two refused forms answer 400 (Chromium logs it); every other response succeeded.
    assert [f for f in failed if not f.startswith("400 ")] == []
    assert [e for e in page.errors if "Failed to load resource" not in e] == []


# Thumbnails and uploads.


def test_thumbnails_read_only_allowed_s3_locations(console, page):
    console.s3.put_object(Bucket="in-bucket", Key="ok.jpg", Body=_jpeg())
    console.s3.put_object(Bucket="elsewhere", Key="secret.jpg", Body=_jpeg())
    sign_in(page, console.base, API_KEY_ID, API_SECRET)

    def fetch(ref: str):
        query = urllib.parse.urlencode({"ref": ref, "size": 160})
        return page.request.get(console.url(f"/console/thumbnail?{query}"))

    allowed = fetch("s3://in-bucket/ok.jpg")
    assert allowed.status == 200 and allowed.headers["content-type"] == "image/jpeg"
    for ref in (
        "s3://elsewhere/secret.jpg",
        "/etc/passwd",
        "file:///etc/passwd",
        "../../../../etc/passwd",
        "s3://in-bucket/../elsewhere/secret.jpg",
        str(console.registry),
        "http://127.0.0.1:1/x.jpg",
    ):
        answer = fetch(ref)
        assert answer.status == 403, (ref, answer.status)
    assert fetch("s3://in-bucket/missing.jpg").status == 404
    page.goto(console.url("/console/thumbnail?ref=s3://elsewhere/secret.jpg&size=160"))
    assert (
        "outside" in page.locator("body").inner_text() or "not" in page.locator("body").inner_text()
    )


def test_uploads_are_checked_before_anything_is_stored(tmp_path, s3, moto_server, monkeypatch):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    server, base = _start(tmp_path, moto_server, "--max_upload_images=2", "--max_upload_mb=0.05")
    try:
        session, token = _signed_in(base)

        def upload(files):
            return session.post(
                f"{base}/console/jobs",
                data={"csrf_token": token, "source": "upload", "min_confidence": "50"},
                files=[("images", file) for file in files],
                timeout=60,
            )

        cases = [
            ([("notes.jpg", b"just text", "image/jpeg")], "is not a JPEG or PNG image"),
            ([("a.jpg", _jpeg(), "image/jpeg")] * 3, "at most 2"),
            ([("big.png", b"\x89PNG" + b"0" * 60_000, "image/png")], "the limit is"),
            ([("cut.jpg", _jpeg()[:200], "image/jpeg")], "cut.jpg"),
        ]
        for files, message in cases:
            answer = upload(files)
            assert answer.status_code == 400, answer.text[:300]
            assert message in answer.text, (message, answer.text[:2000])
        # Over the whole limit (2 x 0.05 MB + 1 MB for the form): refused before it is read,
        # declared or streamed in chunks.
        big = [("huge.jpg", b"\xff" * 1_300_000, "image/jpeg")]
        assert upload(big).status_code == 413
        head = b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        chunks = (head if i == 0 else b"x" * 65536 for i in range(40))
        streamed = session.post(
            f"{base}/console/jobs",
            data=chunks,
            headers={"Content-Type": "multipart/form-data; boundary=b", "X-CSRF-Token": token},
            timeout=60,
        )
        assert streamed.status_code == 413
        assert s3.list_objects_v2(Bucket="out-bucket").get("KeyCount", 0) == 0
        assert server.api.registry.list()[0] == []
    finally:
        server.shutdown()
        server.server_close()


def test_sessions_of_two_reviewers_do_not_mix(console):
    first, _ = _signed_in(console.base)
    second, _ = _signed_in(console.base, OTHER_KEY_ID, OTHER_SECRET)
    results = {}

    def who(name, session):
        results[name] = re.search(
            r'class="who">([^<]+)<', session.get(console.url("/console/jobs"), timeout=30).text
        )[1]

    threads = [
        threading.Thread(target=who, args=item) for item in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"first": API_KEY_ID, "second": OTHER_KEY_ID}

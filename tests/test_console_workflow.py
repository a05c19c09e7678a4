"""The console's whole loop in Chromium, against the real server (default base model) and moto
over HTTP: sign in, start a job by uploading 12 images and watch it succeed, filter its results;
start a job on 115 images from S3, verify every one of them by keyboard alone (reloading half-way
and restarting the server, every decision kept) with a custom label, "Hand Gestures", that the
base model does not have; train an adapter once the minimum is met, read its evaluation, and
find the custom label in Image moderation with the new adapter. Each page is saved as a
screenshot for the README (docs/console/).
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from playwright.sync_api import expect

from tests.browser import screenshot, sign_in
from tests.conftest import API_KEY_ID, API_SECRET, start_api_server
from tests.gesture_images import HAND_GESTURES, PARENT, gesture_dataset

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow

IMAGES, CONSOLE = "images", "console-bucket"
JOB_TIMEOUT_MS = 300_000
TRAINING_TIMEOUT_MS = 600_000


class Server:
    """The API server with its console; ``restart`` stops it and starts another on the same
    registry (a new port: the session cookie, kept per host, stays valid)."""

    def __init__(self, flags: list[str]):
        self.flags = flags
        self.httpd, self.base = start_api_server(flags)

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def restart(self) -> None:
        self.stop()
        self.httpd, self.base = start_api_server(self.flags)


@pytest.fixture
def server(tmp_path, s3, moto_server, monkeypatch):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    s3.create_bucket(Bucket=IMAGES)
    s3.create_bucket(Bucket=CONSOLE)
    running = Server(
        [
            f"--registry={tmp_path / 'jobs.sqlite'}",
            f"--allowed_locations={IMAGES},{CONSOLE}",
            f"--console_storage={CONSOLE}/console",
            "--components=open_nsfw",
            f"--s3_endpoint_url={moto_server}",
            "--s3_region_name=us-east-1",
            f"--kms_endpoint_url={moto_server}",
        ]
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gestures():
    """(training images, held-out images): ``[(name, PNG bytes, is a gesture)]``; 70 gestures and
    45 others to verify and train on (the automatic split trains on 80 %: 56 gestures, over the
    minimum of 50 false negatives), 6 and 15 held out."""
    items = gesture_dataset(76, 60, seed=3)
    positives = [item for item in items if item[2]]
    negatives = [item for item in items if not item[2]]
    return positives[:70] + negatives[:45], positives[70:] + negatives[45:]


def _wait_for_job(page) -> None:
    """On a job's page (which reloads itself while the job runs): until it SUCCEEDED."""
    page.wait_for_selector("#job-status:text-matches('SUCCEEDED|FAILED')", timeout=JOB_TIMEOUT_MS)
    status = page.locator("#job-status").inner_text()
    assert status == "SUCCEEDED", page.locator("main").inner_text()


def _reviewed(page) -> int:
    return int(re.match(r"(\d+) of", page.locator("#progress-count").inner_text())[1])


def _wait_reviewed(page, count: int) -> None:
    try:
        page.wait_for_function(
            "n => (document.querySelector('#progress-count')?.textContent || '')"
            ".startsWith(n + ' of')",
            arg=count,
        )
    except Exception as exc:
        raise AssertionError(
            f"waited for {count} reviewed: {page.locator('#progress-count').inner_text()!r}, "
            f"{page.url}, {page.locator('#notice').all_inner_texts()}, "
            f"{page.locator('#one-image').inner_text()[:500]!r}"
        ) from exc


def test_the_console_loop_from_upload_to_adapter(server, s3, page, gestures, tmp_path):
    training, held_out = gestures
    page.goto(server.url("/console/jobs"))
    screenshot(page, "sign-in")
    sign_in(page, server.base, API_KEY_ID, API_SECRET)

    # 1. A job on 12 images uploaded from the computer.
    uploads = []
    for name, data, _is_gesture in held_out[:6] + held_out[-6:]:
        path = tmp_path / name
        path.write_bytes(data)
        uploads.append(str(path))
    page.click("text=Start bulk analysis")
    page.fill("input[name=job_name]", "uploaded-12")
    page.check("input[value=upload]")
    page.set_input_files("input[name=images]", uploads)
    screenshot(page, "start-job")
    page.click("#new-job button[type=submit]")
    page.wait_for_url(re.compile(r"/console/jobs/[0-9a-f]{64}$"))
    _wait_for_job(page)
    page.wait_for_load_state("networkidle")
    screenshot(page, "job")
    page.click("text=Results")
    assert page.locator("#results .card").count() == 12
    refs = page.locator("#results .card .ref").all_inner_texts()
    assert all(ref.startswith(f"s3://{CONSOLE}/console/uploads/") for ref in refs)
    assert {ref.rsplit("/", 1)[1] for ref in refs} == {p.rsplit("/", 1)[1] for p in uploads}
    page.wait_for_load_state("networkidle")
    screenshot(page, "results")
    without_labels = page.locator("#results .card:has(.labels .none)").count()
    illustrated = page.locator("#results .card:has(.types li:text-matches('^Illustrated'))")
    drawings = illustrated.count()
    assert 0 < drawings < 12  # the emoji drawings, not the photos
    page.select_option("select[name=type]", "Illustrated")
    page.check("input[name=none]")
    page.click("#filters button[type=submit]")
    page.wait_for_load_state("load")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["none"] == ["1"] and query["type"] == ["Illustrated"]
    shown = page.locator("#results .card")
    assert 0 < shown.count() <= min(drawings, without_labels)
    assert page.locator("#results .card .labels li:not(.none)").count() == 0
    assert illustrated.count() == shown.count()
    page.click("text=Clear")
    page.wait_for_load_state("load")
    assert page.locator("#results .card").count() == 12

    # 2. A job on 115 images in S3, from its manifest.
    lines = []
    for name, data, _is_gesture in training:
        s3.put_object(Bucket=IMAGES, Key=f"train/{name}", Body=data)
        lines.append(json.dumps({"source-ref": f"s3://{IMAGES}/train/{name}"}) + "\n")
    s3.put_object(Bucket=IMAGES, Key="train/manifest.jsonl", Body="".join(lines).encode())
    page.goto(server.url("/console/jobs/new"))
    page.fill("input[name=job_name]", "gestures-115")
    page.check("input[value=manifest]")
    page.fill("input[name=manifest_uri]", f"s3://{IMAGES}/train/manifest.jsonl")
    page.click("#new-job button[type=submit]")
    page.wait_for_url(re.compile(r"/console/jobs/[0-9a-f]{64}$"))
    job_url = urllib.parse.urlsplit(page.url).path
    _wait_for_job(page)
    page.goto(server.url("/console/jobs"))
    assert page.locator("#jobs tbody tr").count() == 2
    page.wait_for_load_state("networkidle")
    screenshot(page, "jobs")

    # 3. Verify all 115 by keyboard alone, in the one-image view; the custom label first.
    page.goto(server.url(f"{job_url}/verify"))
    page.wait_for_selector("#verify-grid .card")
    page.wait_for_load_state("networkidle")
    screenshot(page, "verify-grid")
    declare_custom_label(page, HAND_GESTURES, PARENT)
    page.keyboard.press("Enter")  # opens the focused (first) image
    page.wait_for_selector("#one-image")
    assert _reviewed(page) == 0

    shown = {"ref": ""}

    def verify(count: int) -> None:
        for _ in range(count):
            done = _reviewed(page)
            # The next image, once the view shows it (keys pressed before are replayed on it).
            page.wait_for_function(
                "last => { const ref = document.querySelector('#one-image .full-ref');"
                " return ref && ref.textContent && ref.textContent !== last; }",
                arg=shown["ref"],
            )
            shown["ref"] = page.locator("#one-image .full-ref").inner_text()
            if "/gesture-" in shown["ref"]:
                page.keyboard.press("a")
                page.wait_for_selector("#picker-search")
                page.keyboard.type(HAND_GESTURES)
                page.keyboard.press("Enter")
                page.wait_for_selector(f"#labels .toggle[data-name='{HAND_GESTURES}']")
            page.keyboard.press("Enter")  # confirm as shown, then the next image
            _wait_reviewed(page, done + 1)

    verify(40)
    page.wait_for_load_state("networkidle")
    screenshot(page, "verify-image")
    page.reload()
    page.wait_for_selector("#one-image")
    assert _reviewed(page) == 40
    verify(20)
    server.restart()
    page.goto(server.url(f"{job_url}/verify?position=61"))
    page.wait_for_selector("#one-image")
    assert _reviewed(page) == 60
    verify(55)
    assert _reviewed(page) == 115
    row = page.locator(f"#stats tr[data-label='{HAND_GESTURES}']")
    # The counts refresh a moment after the last decision (debounced): wait for them.
    expect(row.locator(".fn")).to_have_text("70")
    assert row.locator(".missing").inner_text().strip() in ("", "Met", "met")

    # 4. Train an adapter on the custom label; read its evaluation.
    page.goto(server.url(f"{job_url}/train"))
    readiness = page.locator(f"#readiness tr[data-label='{HAND_GESTURES}']")
    assert "Met" in readiness.inner_text()
    page.select_option("select[name=project]", "")
    page.fill("input[name=new_project]", "gestures")
    page.fill("input[name=version_name]", "v1")
    page.wait_for_load_state("networkidle")
    screenshot(page, "train")
    page.click("#train-form button[type=submit]")
    page.wait_for_url(re.compile(r"/console/adapters/gestures/v1$"))
    page.wait_for_selector(
        "#adapter-status:text-matches('TRAINING_COMPLETED|TRAINING_FAILED')",
        timeout=TRAINING_TIMEOUT_MS,
    )
    assert page.locator("#adapter-status").inner_text() == "TRAINING_COMPLETED", page.locator(
        "main"
    ).inner_text()
    evaluation = page.locator(f"#evaluation tr[data-label='{HAND_GESTURES}'] td")
    cells = evaluation.all_inner_texts()
    base_f1, adapter_f1 = float(cells[5].replace("–", "0")), float(cells[6])
    assert adapter_f1 > base_f1
    page.wait_for_load_state("networkidle")
    screenshot(page, "adapter")
    page.goto(server.url("/console/adapters"))
    assert page.locator("[data-project=gestures] [data-version=v1]").count() == 1
    page.wait_for_load_state("networkidle")
    screenshot(page, "adapters")

    # 5. One held-out gesture through Image moderation with the adapter.
    gesture = next(item for item in held_out if item[2])
    path = tmp_path / f"check-{gesture[0]}"
    path.write_bytes(gesture[1])
    page.goto(server.url("/console/moderate"))
    page.set_input_files("input[name=image]", str(path))
    page.select_option("select[name=adapter]", label="gestures / v1")
    page.click("#moderate-form button[type=submit]")
    page.wait_for_selector("#moderation-result")
    tree = page.locator("#label-tree").inner_text()
    assert HAND_GESTURES in tree and PARENT in tree
    assert json.loads(page.locator("#response-json").inner_text())["ProjectVersion"].endswith(
        tuple("0123456789")
    )
    page.wait_for_load_state("networkidle")
    screenshot(page, "moderation")
    assert page.errors == [] and page.dialogs == []


def declare_custom_label(page, name: str, parent: str) -> None:
    """Declares a custom label on the verify page, through its form."""
    page.click("#custom-label-open")
    page.fill("#custom-label-name", name)
    page.select_option("#custom-label-parent", parent)
    page.click("#custom-label-form button[type=submit]")
    page.wait_for_selector(f"#custom-labels :text('{name}')")

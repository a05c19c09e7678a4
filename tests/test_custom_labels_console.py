"""The console's Custom Labels pages in Chromium, against the real server and moto over HTTP:
train a detector from a Ground Truth manifest in S3, watch it train, read its evaluation,
start it, try it on an image (its boxes drawn over the image), stop it."""

from __future__ import annotations

import json

import pytest

from tests.browser import screenshot, sign_in
from tests.conftest import API_KEY_ID, API_SECRET, rekognition_client, start_api_server
from tests.console_server import console_flags
from training.custom_labels_samples import upload, write_detection_set

pytest_plugins = ["tests.browser"]


@pytest.fixture
def console(tmp_path, s3, moto_server, monkeypatch):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    server, base = start_api_server(console_flags(str(tmp_path / "jobs.sqlite"), moto_server))
    yield base
    server.shutdown()
    server.server_close()


def test_the_pages_refuse_what_cannot_be_trained(console, page):
    sign_in(page, console, API_KEY_ID, API_SECRET)
    page.click("nav >> text=Custom Labels")
    assert "No Custom Labels projects yet" in page.inner_text("main")
    page.fill("input[name=new_project]", "logos")
    page.fill("input[name=version_name]", "v1")
    page.fill("input[name=training_manifest]", "/local/train.manifest")
    page.click("#train-form button[type=submit]")
    assert "must be an s3://bucket/key URI" in page.inner_text(".error")
    # The browser would refuse the name itself: the server must too.
    page.eval_on_selector("input[name=new_project]", "input => input.removeAttribute('pattern')")
    page.fill("input[name=new_project]", "<b>bad name</b>")
    page.fill("input[name=training_manifest]", "s3://in-bucket/train.manifest")
    page.click("#train-form button[type=submit]")
    assert "Project name must be" in page.inner_text(".error")
    assert page.locator("main b").count() == 0  # escaped, never markup
    page.goto(f"{console}/console/custom-labels/none/v1")
    assert "No model none / v1." in page.inner_text("main")
    # The refusals are answered 400 and 404, which the browser logs; nothing else went wrong.
    assert [error for error in page.errors if "status of 40" not in error] == []


@pytest.mark.slow
def test_train_start_detect_and_stop_a_detector_in_the_browser(console, s3, page, tmp_path):
    samples = write_detection_set(tmp_path / "set", images=100, seed=3)
    uploaded = upload(samples, s3, "in-bucket", "detection")
    sign_in(page, console, API_KEY_ID, API_SECRET)
    page.click("nav >> text=Custom Labels")
    page.fill("input[name=new_project]", "sprites")
    page.fill("input[name=version_name]", "v1")
    page.fill("input[name=training_manifest]", uploaded.train_manifest)
    page.fill("input[name=testing_manifest]", uploaded.test_manifest)
    page.click("#train-form button[type=submit]")
    page.wait_for_url("**/console/custom-labels/sprites/v1")
    # The page refreshes itself until the training ends.
    page.wait_for_selector("#model-status:text('TRAINING_COMPLETED')", timeout=600_000)
    rows = page.locator("#evaluation tbody tr[data-label]")
    assert sorted(rows.evaluate_all("rows => rows.map(row => row.dataset.label)")) == sorted(
        samples.labels
    )
    assert float(page.inner_text("#map")) > 0.3

    page.click("#start-form button[type=submit]")
    page.wait_for_selector("#model-status:text('RUNNING')", timeout=120_000)
    client = rekognition_client(console)
    project = client.describe_projects(ProjectNames=["sprites"])["ProjectDescriptions"][0]
    version = client.describe_project_versions(ProjectArn=project["ProjectArn"])[
        "ProjectVersionDescriptions"
    ][0]
    assert version["Status"] == "RUNNING"

    first_test_image = json.loads(open(samples.test_manifest).readline())["source-ref"]
    page.set_input_files("#detect-form input[name=image]", first_test_image)
    page.click("#detect-form button[type=submit]")
    page.wait_for_selector("#detection-result", timeout=60_000)
    response = json.loads(page.inner_text("#response-json"))
    assert response["CustomLabels"], "the detector finds the pasted sprites"
    drawn = page.locator("svg.boxes rect")
    assert drawn.count() == len(response["CustomLabels"])
    listed = page.locator("#custom-labels li[data-label]").evaluate_all(
        "items => items.map(item => item.dataset.label)"
    )
    assert listed == [entry["Name"] for entry in response["CustomLabels"]]
    page.locator("#evaluation").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('evaluation').scrollIntoView()")
    screenshot(page, "custom-labels")

    page.click("#stop-form button[type=submit]")
    page.wait_for_selector("#model-status:text('STOPPED')", timeout=60_000)
    assert page.locator("#detect-form").count() == 0
    assert page.errors == []

"""Console pages in Chromium against the real server and moto over HTTP, beyond the whole loop of
test_console_workflow: the jobs list's paging, a running job's page refreshing itself, results
and errors paged server-side, deleting an adapter project, Image moderation from an S3 URI, a
job started with a human review flow."""

from __future__ import annotations

import io
import json
import re
import time

import boto3
import pytest
from PIL import Image

from service.registry import JobRegistry
from tests.browser import sign_in
from tests.conftest import API_KEY_ID, API_SECRET, start_api_server
from tests.console_server import console_flags, register_job, results_line

pytest_plugins = ["tests.browser"]


@pytest.fixture
def console(tmp_path, s3, moto_server, monkeypatch):
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    registry = str(tmp_path / "jobs.sqlite")
    server, base = start_api_server(console_flags(registry, moto_server))
    yield base, registry
    server.shutdown()
    server.server_close()


def _jpeg(size=(96, 64), color=(30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_jobs_are_listed_newest_first_twenty_a_page(console, s3, page):
    base, registry = console
    names = [f"job-{i:02d}" for i in range(23)]
    for name in names:
        register_job(registry, s3, [results_line("s3://in-bucket/a.jpg")], name=name)
    sign_in(page, base, API_KEY_ID, API_SECRET)
    first = page.locator("#jobs tbody tr td:first-child").all_inner_texts()
    assert first == names[::-1][:20]
    page.click("text=Next page")
    assert page.locator("#jobs tbody tr td:first-child").all_inner_texts() == names[::-1][20:]
    assert page.locator("text=Next page").count() == 0
    page.click("text=First page")
    assert page.locator("#jobs tbody tr").count() == 20
    row = page.locator("#jobs tbody tr").first.inner_text()
    assert "SUCCEEDED" in row and "job-22" in row


def test_a_running_jobs_page_refreshes_itself_until_it_ends(console, s3, page):
    base, registry = console
    jobs = JobRegistry(registry)
    job, _ = jobs.start(
        {
            "JobName": "running",
            "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
            "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "m.jsonl"}},
            "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        }
    )
    jobs.mark_queued(job.job_id)
    jobs.mark_in_progress(job.job_id)
    sign_in(page, base, API_KEY_ID, API_SECRET)
    page.goto(f"{base}/console/jobs/{job.job_id}")
    assert page.locator("#job-status").inner_text() == "IN_PROGRESS"
    assert "refreshes itself" in page.locator("#progress").inner_text()
    jobs.mark_failed(job.job_id, "INTERNAL_ERROR", "The job's process exited with status 1.")
    page.wait_for_selector("#job-status:text('FAILED')", timeout=20_000)
    assert "INTERNAL_ERROR" in page.locator(".error").inner_text()
    assert page.locator("#progress").count() == 0
    assert page.errors == []


def test_results_and_errors_are_paged_on_the_server(console, s3, page):
    base, registry = console
    lines = [
        results_line(
            f"s3://in-bucket/{i:03d}.jpg",
            [("Pills", 80.0 + i % 20, "Products", 3), ("Products", 80.0, "Drugs & Tobacco", 2)]
            if i % 3 == 0
            else [],
        )
        for i in range(1, 121)
    ]
    errors = [
        {"line-numer": 200 + i, "code": "IMAGE_NOT_FOUND", "message": f"missing {i}"}
        for i in range(60)
    ]
    job_id = register_job(registry, s3, lines, errors=errors)
    for i in range(1, 121):
        s3.put_object(Bucket="in-bucket", Key=f"{i:03d}.jpg", Body=_jpeg())
    s3.delete_object(Bucket="in-bucket", Key="002.jpg")  # deleted since the job ran
    sign_in(page, base, API_KEY_ID, API_SECRET)
    page.goto(f"{base}/console/jobs/{job_id}/results")
    page.wait_for_selector("#results .card[data-position='2'] .thumb-missing")
    assert page.locator("#results .thumb-missing:visible").count() == 1
    assert page.locator("#result-count").inner_text().startswith("120 images: 1–48")
    assert page.locator("#results .card").count() == 48
    assert page.locator("#errors tbody tr").count() == 50
    page.click("text=More errors")
    assert page.locator("#errors tbody tr").count() == 10
    assert page.locator("#errors tbody tr").first.locator("td").first.inner_text() == "250"
    page.goto(f"{base}/console/jobs/{job_id}/results")
    page.click("#results + .pager >> text=Next")
    assert page.locator("#result-count").inner_text().startswith("120 images: 49–96")
    # A level-1 label finds the images that have only its descendants listed.
    page.select_option("select[name=label]", "Drugs & Tobacco")
    page.fill("input[name=min]", "90")
    page.click("#filters button[type=submit]")
    count = page.locator("#result-count").inner_text()
    expected = sum(1 for i in range(1, 121) if i % 3 == 0 and 80.0 + i % 20 >= 90)
    assert count.startswith(f"{expected} images match")
    page.fill("input[name=min]", "95")
    page.fill("input[name=max]", "90")
    page.click("#filters button[type=submit]")
    assert page.locator(".error[role=alert]").count() == 1
    # The only failures: the deleted image's thumbnail (each time page 1 was shown).
    assert [e for e in page.errors if "002.jpg" not in e] == []


def test_an_adapter_project_without_versions_is_deleted(console, page):
    base, _registry = console
    client = boto3.client(
        "rekognition",
        endpoint_url=base,
        region_name="us-east-1",
        aws_access_key_id=API_KEY_ID,
        aws_secret_access_key=API_SECRET,
    )
    client.create_project(ProjectName="unused", Feature="CONTENT_MODERATION", AutoUpdate="DISABLED")
    sign_in(page, base, API_KEY_ID, API_SECRET)
    page.click("nav >> text=Adapters")
    section = page.locator("[data-project=unused]")
    assert "No versions." in section.inner_text()
    page.evaluate("window.confirm = () => true")
    section.locator("button:text('Delete project')").click()
    page.wait_for_selector(".notice:text('Project deleted.')")
    assert page.locator("[data-project=unused]").count() == 0
    found = client.describe_projects(Features=["CONTENT_MODERATION"])["ProjectDescriptions"]
    assert found == []


def test_image_moderation_from_an_s3_uri(console, s3, page, sample_photos):
    base, _registry = console
    with open(sample_photos["astronaut.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="photos/astronaut.jpg", Body=f.read())
    sign_in(page, base, API_KEY_ID, API_SECRET)
    page.click("nav >> text=Image moderation")
    page.fill("input[name=s3_uri]", "s3://in-bucket/photos/astronaut.jpg")
    page.fill("input[name=min_confidence]", "0")
    page.click("#moderate-form button[type=submit]")
    page.wait_for_selector("#moderation-result", timeout=120_000)
    response = json.loads(page.locator("#response-json").inner_text())
    assert set(response) >= {"ModerationLabels", "ModerationModelVersion", "ContentTypes"}
    assert re.search(r"open_nsfw", response["ModerationModelVersion"])
    preview = page.locator("img.preview")
    assert preview.evaluate("image => image.complete && image.naturalWidth > 0")
    shown = page.locator("#label-tree li[data-label]").evaluate_all(
        "nodes => nodes.map(node => node.dataset.label)"
    )
    assert shown == [label["Name"] for label in response["ModerationLabels"]] or sorted(
        shown
    ) == sorted(label["Name"] for label in response["ModerationLabels"])
    assert page.errors == []


def test_a_job_started_with_a_human_review_flow_gets_its_loops(console, s3, page, sample_photos):
    from tests.test_bulk_review import EVERY_LABEL_UNDER_99, _clients, _flow, _loops

    base, _registry = console
    with open(sample_photos["coffee.jpg"], "rb") as f:
        s3.put_object(Bucket="in-bucket", Key="coffee.jpg", Body=f.read())
    s3.put_object(
        Bucket="in-bucket",
        Key="one.jsonl",
        Body=json.dumps({"source-ref": "s3://in-bucket/coffee.jpg"}).encode() + b"\n",
    )
    sagemaker, runtime = _clients(base)
    flow_arn = _flow(sagemaker, "console-review", EVERY_LABEL_UNDER_99)
    sign_in(page, base, API_KEY_ID, API_SECRET)
    page.goto(f"{base}/console/jobs/new")
    page.check("input[value=manifest]")
    page.fill("input[name=manifest_uri]", "s3://in-bucket/one.jsonl")
    page.fill("input[name=min_confidence]", "0")
    page.select_option("select[name=flow]", label="console-review")
    page.click("#new-job button[type=submit]")
    page.wait_for_selector("#job-status:text-matches('SUCCEEDED|FAILED')", timeout=300_000)
    assert page.locator("#job-status").inner_text() == "SUCCEEDED"
    assert "console-review" in page.locator(".facts").inner_text()
    deadline = time.monotonic() + 30
    while not _loops(runtime, flow_arn) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_loops(runtime, flow_arn)) == 1

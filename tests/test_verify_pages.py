"""The console's Verify predictions page: its JSON endpoints over HTTP, and a reviewer verifying
a job of 60 images in Chromium by keyboard alone, against a real server over moto S3."""

from __future__ import annotations

import functools
import io
import json
import re

import pytest
import requests
from PIL import Image, ImageDraw

from model.taxonomy import TAXONOMY
from service.registry import JobRegistry
from tests.conftest import (
    API_KEY_ID,
    API_SECRET,
    SAMPLE_PHOTOS,
    moto_client,
    reset_moto,
    start_api_server,
)

pytest_plugins = ["tests.browser"]

REVIEWER_ID, REVIEWER_SECRET = "AKIDREVIEWER0002", "reviewer-secret-0002"
IMAGES = 60
THRESHOLD = 50.0
XSS_REF_KEY = 'images/"><img src=x onerror=alert(7)>.jpg'
XSS_LABEL = "<script>alert(9)</script>Knife"  # no "=": the CLI's NAME=PARENT splits there

# Which images have which predictions (each with its parents, as the model answers).
CHAINS = {
    "Weapons": ["Weapons", "Violence"],
    "Alcoholic Beverages": ["Alcoholic Beverages", "Alcohol"],
    "Pills": ["Pills", "Products", "Drugs & Tobacco"],
    "Gambling": ["Gambling"],
}


def image_key(number: int) -> str:
    return XSS_REF_KEY if number == 7 else f"images/img-{number:02d}.jpg"


def image_ref(number: int) -> str:
    return f"s3://in-bucket/{image_key(number)}"


def predictions(number: int) -> list[tuple[str, float]]:
    """``(label, confidence)`` of image ``number``: most images are benign."""
    if number == 9:
        return [("Weapons", 88.0), (XSS_LABEL, 70.0)]
    if number == 11:
        return [("Gambling", 30.0)]  # below the job's threshold: not predicted
    return {
        1: [("Weapons", 91.0)],
        3: [("Alcoholic Beverages", 85.0)],
        5: [("Pills", 77.0)],
    }.get(number % 10, [])


def _labels(number: int) -> list[dict]:
    entries = []
    for name, confidence in predictions(number):
        if name == XSS_LABEL:
            entries.append(
                {
                    "Confidence": confidence,
                    "Name": name,
                    "ParentName": "Weapons",
                    "TaxonomyLevel": 3,
                }
            )
            continue
        for link in CHAINS[name]:
            entry = TAXONOMY[link]
            entries.append(
                {
                    "Confidence": confidence,
                    "Name": link,
                    "ParentName": entry.parent,
                    "TaxonomyLevel": entry.level,
                }
            )
    return entries


@functools.cache
def _photo(number: int) -> Image.Image:
    """One of scikit-image's benign photos, at most 480 pixels wide."""
    import skimage.data

    name = SAMPLE_PHOTOS[number % len(SAMPLE_PHOTOS)]
    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image.thumbnail((480, 480))
    return image


def _jpeg(number: int) -> bytes:
    image = _photo(number % len(SAMPLE_PHOTOS)).copy()
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 92, 22), fill=(20, 20, 20))
    draw.text((6, 5), f"image {number}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def make_job_files(s3, registry_path: str, count: int = IMAGES, name: str = "verify-test") -> str:
    """A SUCCEEDED job of ``count`` images registered in ``registry_path``: its images, its
    results.jsonl and manifest-summary.json in moto. Returns its id."""
    registry = JobRegistry(registry_path)
    request = {
        "JobName": name,
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": THRESHOLD}},
        "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
        "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
    }
    job, _ = registry.start(request)
    lines = []
    for number in range(count):
        s3.put_object(Bucket="in-bucket", Key=image_key(number), Body=_jpeg(number))
        response = {
            "ModerationLabels": _labels(number),
            "ModerationModelVersion": "7.0",
            "ContentTypes": [{"Confidence": 88.0, "Name": "Illustrated"}] if number == 4 else [],
        }
        lines.append(
            json.dumps({"source-ref": image_ref(number), "detect-moderation-labels": response})
        )
    results_key = f"results/{job.job_id}/results.jsonl"
    summary_key = f"results/{job.job_id}/manifest-summary.json"
    s3.put_object(Bucket="out-bucket", Key=results_key, Body="".join(f"{x}\n" for x in lines))
    summary = {
        "version": "1.0",
        "statistics": {
            "total-json-lines": count,
            "valid-json-lines": count,
            "invalid-json-lines": 0,
        },
        "errors": [],
    }
    s3.put_object(Bucket="out-bucket", Key=summary_key, Body=json.dumps(summary))
    registry.mark_queued(job.job_id)
    registry.mark_in_progress(job.job_id)
    registry.mark_succeeded(
        job.job_id, results_key=results_key, summary_key=summary_key, model_version="7.0"
    )
    return job.job_id


# --- The server ----------------------------------------------------------------------------------


class ConsoleServer:
    """The API server with its console, its registry file and the moto S3 client."""

    def __init__(self, url: str, registry: str, s3):
        self.url = url
        self.registry = registry
        self.s3 = s3

    def job(self, count: int = IMAGES, name: str = "verify-test") -> str:
        return make_job_files(self.s3, self.registry, count, name)


@pytest.fixture(scope="module")
def console_server(moto_server, tmp_path_factory):
    """One server for the module (jobs are made per test), with two reviewers' key pairs."""
    keys = f"{API_KEY_ID}:{API_SECRET},{REVIEWER_ID}:{REVIEWER_SECRET}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BEAM_MODERATION_ACCESS_KEYS", keys)
        reset_moto(moto_server)
        s3 = moto_client("s3", moto_server)
        for bucket in ("in-bucket", "out-bucket"):
            s3.create_bucket(Bucket=bucket)
        registry = str(tmp_path_factory.mktemp("verify") / "jobs.sqlite")
        httpd, url = start_api_server(
            [
                f"--registry={registry}",
                "--allowed_locations=in-bucket,out-bucket/results",
                "--console_storage=out-bucket/results/console",
                "--components=open_nsfw",
                "--backbone=none",
                f"--s3_endpoint_url={moto_server}",
                "--s3_region_name=us-east-1",
                f"--kms_endpoint_url={moto_server}",
            ]
        )
    try:
        yield ConsoleServer(url, registry, s3)
    finally:
        httpd.shutdown()
        httpd.server_close()


_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Reviewer:
    """A signed-in console session over plain HTTP, for the JSON endpoints."""

    def __init__(self, base: str, key_id: str, secret: str):
        self.base = base
        self.http = requests.Session()
        form = self.http.get(f"{base}/console/sign-in", timeout=30)
        token = _CSRF.search(form.text).group(1)
        answer = self.http.post(
            f"{base}/console/sign-in",
            data={"user": key_id, "secret": secret, "next": "/console/jobs", "csrf_token": token},
            timeout=30,
        )
        assert answer.ok and answer.url.endswith("/console/jobs")
        self.csrf = _CSRF.search(answer.text).group(1)

    def get(self, path: str, **params):
        return self.http.get(f"{self.base}/console{path}", params=params, timeout=30)

    def post(self, path: str, body, *, csrf: bool = True):
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
        return self.http.post(f"{self.base}/console{path}", data=data, headers=headers, timeout=30)

    def decide(self, job: str, *entries: tuple[int, dict, int]):
        """Saves ``(image number, labels, expected revision)`` decisions; the JSON answer."""
        body = {
            "decisions": [
                {"sourceRef": image_ref(n), "labels": labels, "expectedRevision": revision}
                for n, labels, revision in entries
            ]
        }
        answer = self.post(f"/jobs/{job}/decisions", body)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def alice(console_server):
    return Reviewer(console_server.url, API_KEY_ID, API_SECRET)


@pytest.fixture
def bob(console_server):
    return Reviewer(console_server.url, REVIEWER_ID, REVIEWER_SECRET)


def page_data(html: str) -> dict:
    """The JSON the verify page embeds for its script."""
    found = re.search(
        r'<script type="application/json" id="verify-data">(.*?)</script>', html, re.S
    )
    assert found, "the page embeds no verify-data"
    return json.loads(found.group(1))


# --- The JSON endpoints --------------------------------------------------------------------------


def test_the_page_embeds_its_data_as_inert_json(console_server, alice):
    job = console_server.job()
    answer = alice.get(f"/jobs/{job}/verify")
    assert answer.status_code == 200
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = answer.text
    assert '<script src="/console/static/verify.js" defer></script>' in html
    embedded = html.split('id="verify-data">')[1].split("</script>")[0]
    assert "<" not in embedded and ">" not in embedded and "&" not in embedded  # tojson's escapes
    assert "<img src=x" not in html  # the payload in a source-ref is escaped everywhere
    data = page_data(html)
    assert (data["jobId"], data["jobName"], data["threshold"]) == (job, "verify-test", THRESHOLD)
    assert (data["view"], data["total"], data["offset"], data["limit"]) == ("grid", IMAGES, 0, 48)
    assert (data["reviewed"], data["images"]) == (0, IMAGES)
    assert [item["position"] for item in data["items"]] == list(range(1, 49))
    assert data["items"][7]["sourceRef"] == image_ref(7)
    weapons = data["items"][1]
    assert weapons["decision"] is None
    assert [(x["name"], x["parent"], x["level"], x["predicted"]) for x in weapons["labels"]] == [
        ("Weapons", "Violence", 2, True),
        ("Violence", "", 1, True),
    ]
    assert data["items"][11]["labels"][0]["predicted"] is False  # Gambling at 30 < 50
    assert data["items"][4]["contentTypes"] == [{"name": "Illustrated", "confidence": 88.0}]
    assert {"name": "Pills", "parent": "Products", "level": 3} in data["taxonomy"]
    assert data["stats"]["labels"] == [] and data["stats"]["canTrain"] is False

    second = page_data(alice.get(f"/jobs/{job}/verify", offset="48").text)
    assert [item["position"] for item in second["items"]] == list(range(49, 61))
    one = page_data(alice.get(f"/jobs/{job}/verify", position="12", label="Violence").text)
    assert one["view"] == "image" and [i["position"] for i in one["items"]] == [12]
    # Stepping through the images with Violence (lines 2, 10, 22, 32, 42, 52) from line 12.
    assert one["neighbours"] == {"previous": 10, "next": 22}
    assert one["total"] == 6 and one["filters"] == {"label": "Violence"}
    assert alice.get(f"/jobs/{job}/verify", position="999").status_code == 404


def test_items_json_pages_and_steps_without_a_reload(console_server, alice):
    job = console_server.job()
    answer = alice.get(f"/jobs/{job}/verify/items.json", offset="48")
    assert answer.status_code == 200
    data = answer.json()
    assert [item["position"] for item in data["items"]] == list(range(49, 61))
    data = alice.get(f"/jobs/{job}/verify/items.json", position="2", label="Weapons").json()
    assert data["neighbours"] == {"previous": None, "next": 10}
    assert alice.get(f"/jobs/{job}/verify/items.json", min="200").status_code == 400
    assert alice.get("/jobs/nope/verify/items.json").status_code == 404
    signed_out = requests.get(f"{console_server.url}/console/jobs/{job}/verify/items.json")
    assert signed_out.status_code == 401


def test_decisions_are_saved_checked_and_compare_and_set(console_server, alice, bob):
    job = console_server.job()
    weapons_absent = {"Violence": False, "Weapons": False}
    answer = alice.decide(job, (1, weapons_absent, 0), (0, {}, 0))
    assert [d["sourceRef"] for d in answer["saved"]] == [image_ref(1), image_ref(0)]
    saved = answer["saved"][0]
    assert (saved["labels"], saved["reviewer"], saved["revision"]) == (
        weapons_absent,
        API_KEY_ID,
        1,
    )
    assert answer["stale"] == [] and answer["invalid"] == [] and answer["reviewed"] == 2

    # Bob saw image 1 not reviewed: his save is stale, and he is told what Alice saved.
    answer = bob.decide(job, (1, {"Weapons": True}, 0), (2, {"Gambling": True}, 0))
    assert answer["stale"] == [{"sourceRef": image_ref(1), "current": saved}]
    assert [d["sourceRef"] for d in answer["saved"]] == [image_ref(2)]
    assert answer["saved"][0]["reviewer"] == REVIEWER_ID
    # Having seen revision 1, he may change it.
    answer = bob.decide(job, (1, {"Violence": True, "Weapons": False}, 1))
    assert answer["saved"][0]["revision"] == 2

    answer = alice.decide(
        job,
        (3, {"Alcohol": False}, 0),  # absent while Alcoholic Beverages below it stays predicted
        (4, {"No Such Label": True}, 0),
        (5, {"Pills": "yes"}, 0),
        (6, {}, -1),
        (8, [], 0),
    )
    assert answer["saved"] == [] and answer["stale"] == []
    messages = {entry["sourceRef"]: entry["message"] for entry in answer["invalid"]}
    assert "'Alcohol' is marked absent but 'Alcoholic Beverages'" in messages[image_ref(3)]
    assert "unknown label 'No Such Label'" in messages[image_ref(4)]
    assert "must be true (present) or false (absent)" in messages[image_ref(5)]
    assert "expectedRevision" in messages[image_ref(6)]
    assert '"labels" must be an object' in messages[image_ref(8)]

    body = {
        "decisions": [
            {"sourceRef": "s3://in-bucket/other.jpg", "labels": {}, "expectedRevision": 0}
        ]
    }
    answer = alice.post(f"/jobs/{job}/decisions", body).json()
    assert answer["invalid"][0]["message"] == "s3://in-bucket/other.jpg is not an image of this job"

    for malformed in (b"not json", [], {"decisions": {}}, {"decisions": []}, {"decisions": [1]}):
        answer = alice.post(f"/jobs/{job}/decisions", malformed)
        assert answer.status_code == 400 and answer.json()["error"]
    too_many = {"decisions": [{"sourceRef": image_ref(0)}] * 501}
    assert alice.post(f"/jobs/{job}/decisions", too_many).status_code == 400
    assert alice.post(f"/jobs/{job}/decisions", {"decisions": []}, csrf=False).status_code == 403
    assert (
        alice.post("/jobs/nope/decisions", {"decisions": [{"sourceRef": "x"}]}).status_code == 404
    )
    assert alice.get(f"/jobs/{job}/verification.json").json()["reviewed"] == 3


def test_an_adapters_own_label_is_declared_as_the_results_give_it(console_server, alice):
    job = console_server.job()
    answer = alice.decide(job, (9, {XSS_LABEL: False}, 0))
    assert answer["invalid"] == [] and answer["saved"][0]["labels"] == {XSS_LABEL: False}
    assert answer["customLabels"] == [{"name": XSS_LABEL, "parent": "Weapons", "level": 3}]


def test_withdraw_takes_a_first_decision_back(console_server, alice, bob):
    job = console_server.job()
    alice.decide(job, (0, {}, 0))
    path = f"/jobs/{job}/decisions/withdraw"
    stale = bob.post(path, {"sourceRef": image_ref(0), "expectedRevision": 0})
    assert stale.status_code == 409 and stale.json()["current"]["reviewer"] == API_KEY_ID
    answer = alice.post(path, {"sourceRef": image_ref(0), "expectedRevision": 1})
    assert answer.status_code == 200
    assert answer.json() == {"withdrawn": image_ref(0), "reviewed": 0}
    again = alice.post(path, {"sourceRef": image_ref(0), "expectedRevision": 0})
    assert again.status_code == 400 and "nothing to undo" in again.json()["error"]
    # Withdrawn, the image is not reviewed: a new first decision expects revision 0.
    assert alice.decide(job, (0, {}, 0))["saved"][0]["revision"] == 3
    assert alice.post(path, {"expectedRevision": 1}).status_code == 400
    assert (
        alice.post(path, {"sourceRef": image_ref(0), "expectedRevision": 3}, csrf=False).status_code
        == 403
    )


def test_custom_labels_are_declared_as_the_command_line_declares_them(console_server, alice):
    job = console_server.job()
    path = f"/jobs/{job}/custom-labels"
    answer = alice.post(
        path, {"name": "Vape Pens", "parent": "Drugs & Tobacco Paraphernalia & Use"}
    )
    assert answer.status_code == 200
    level_one = alice.post(path, {"name": "Spam", "parent": ""}).json()
    assert level_one["customLabels"] == [
        {"name": "Vape Pens", "parent": "Drugs & Tobacco Paraphernalia & Use", "level": 3},
        {"name": "Spam", "parent": "", "level": 1},
    ]
    for body, message in (
        ({"name": "Deep", "parent": "Pills"}, "level 4"),
        ({"name": "Alcohol", "parent": ""}, "already a taxonomy label"),
        ({"name": "Vape Pens", "parent": "Alcohol"}, "already declared"),
        ({"name": "Orphan", "parent": "Nowhere"}, "not a taxonomy label"),
        ({"name": "", "parent": ""}, "needs a name"),
        ({"name": 3, "parent": ""}, "needs a name"),
    ):
        answer = alice.post(path, body)
        assert answer.status_code == 400 and message in answer.json()["error"], body
    # A declared label may be verified present; its ground truth carries its parent.
    assert alice.decide(job, (0, {"Vape Pens": True}, 0))["invalid"] == []
    truth = alice.get(f"/jobs/{job}/groundtruth.jsonl")
    assert json.loads(truth.content)["content-moderation-groundtruth"]["ModerationLabels"] == [
        {"Name": "Vape Pens", "ParentName": "Drugs & Tobacco Paraphernalia & Use"}
    ]


def test_statistics_downloads_and_export_agree_with_the_command_line(
    console_server, alice, tmp_path
):
    job = console_server.job()
    # Nothing verified: nothing to export.
    empty = alice.http.post(
        f"{console_server.url}/console/jobs/{job}/export", data={"csrf_token": alice.csrf}
    )
    assert "Nothing to export" in empty.text
    alice.decide(
        job,
        (1, {"Violence": False, "Weapons": False}, 0),  # a false positive of both
        (2, {"Gambling": True}, 0),  # a false negative
        (3, {}, 0),  # confirmed: true positives
        (11, {"Gambling": True}, 0),  # predicted below the threshold: a false negative
    )
    stats = alice.get(f"/jobs/{job}/verification.json").json()
    assert (stats["reviewed"], stats["images"], stats["canTrain"]) == (4, IMAGES, False)
    rows = {row["name"]: row for row in stats["labels"]}
    assert set(rows) == {"Violence", "Weapons", "Gambling", "Alcohol", "Alcoholic Beverages"}
    assert (rows["Weapons"]["false_positives"], rows["Weapons"]["missing"]) == (
        1,
        "19 more false positives or 50 more false negatives",
    )
    assert rows["Gambling"]["false_negatives"] == 2
    assert rows["Alcohol"]["true_positives"] == 1

    truth = alice.get(f"/jobs/{job}/groundtruth.jsonl")
    assert truth.status_code == 200
    assert truth.headers["Content-Disposition"].startswith("attachment;")
    verifications = alice.get(f"/jobs/{job}/verifications.jsonl")
    assert [json.loads(line)["source-ref"] for line in verifications.text.splitlines()] == [
        image_ref(n) for n in (1, 2, 3, 11)
    ]

    exported = alice.http.post(
        f"{console_server.url}/console/jobs/{job}/export",
        data={"csrf_token": alice.csrf, "back": "?offset=48"},
    )
    assert exported.url.endswith(f"/console/jobs/{job}/verify?offset=48")
    prefix = f"results/console/verifications/{job}"
    ground_truth_uri = f"s3://out-bucket/{prefix}/groundtruth.jsonl"
    assert ground_truth_uri in exported.text
    s3 = console_server.s3
    stored_truth = s3.get_object(Bucket="out-bucket", Key=f"{prefix}/groundtruth.jsonl")
    assert stored_truth["Body"].read() == truth.content
    stored_lines = s3.get_object(Bucket="out-bucket", Key=f"{prefix}/verifications.jsonl")
    assert stored_lines["Body"].read() == verifications.content

    # The adapter's own label of image 9 is declared for the job, and given to the command.
    assert "training.verification --results s3://out-bucket/results/" in exported.text
    custom = [f"{XSS_LABEL}=Weapons"]
    made = _command_line(console_server, job, verifications.content, tmp_path, custom)
    assert made == truth.content
    refused = alice.http.post(f"{console_server.url}/console/jobs/{job}/export", data={})
    assert refused.status_code == 403


def _command_line(server: ConsoleServer, job: str, verifications: bytes, folder, custom=()):
    """What ``python -m training.verification`` makes of the job's results and these
    verification lines (local copies), with these ``--custom_label NAME=PARENT``."""
    from training.verification import main

    record = JobRegistry(server.registry).get(job)
    results = folder / "results.jsonl"
    results.write_bytes(
        server.s3.get_object(Bucket="out-bucket", Key=record.results_key)["Body"].read()
    )
    lines = folder / "verifications.jsonl"
    lines.write_bytes(verifications)
    output = folder / "groundtruth.jsonl"
    argv = [
        f"--results={results}",
        f"--verifications={lines}",
        f"--output={output}",
        f"--confidence_threshold={THRESHOLD}",
        "--format=json",
    ]
    argv += [f"--custom_label={spec}" for spec in custom]
    assert main(argv) == 0
    return output.read_bytes()


def test_a_job_without_results_has_nothing_to_verify(console_server, alice):
    registry = JobRegistry(console_server.registry)
    job, _ = registry.start(
        {
            "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50}},
            "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
            "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        }
    )
    registry.mark_queued(job.job_id)
    page = alice.get(f"/jobs/{job.job_id}/verify")
    assert page.status_code == 409 and "QUEUED" in page.text
    assert alice.get(f"/jobs/{job.job_id}/verification.json").status_code == 409
    assert alice.get("/jobs/nope/verify").status_code == 404
    signed_out = requests.get(
        f"{console_server.url}/console/jobs/{job.job_id}/verify", allow_redirects=False
    )
    assert signed_out.status_code == 303 and "/console/sign-in" in signed_out.headers["location"]


# --- In the browser ------------------------------------------------------------------------------

REVIEWED = re.compile(r"\breviewed\b")


def _watch(page) -> list[str]:
    """Uncaught errors and console errors of a page made outside the ``page`` fixture."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "favicon" not in str(message.location)
            else None
        ),
    )
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return errors


def test_a_reviewer_verifies_a_job_by_keyboard_alone(console_server, page, browser, tmp_path):
    from playwright.sync_api import expect

    from service.console.decisions import VerificationStore
    from tests.browser import VIEWPORT, sign_in

    url, job = console_server.url, console_server.job()
    store = VerificationStore(console_server.registry)
    press = page.keyboard.press
    card = lambda n: page.locator(f'#verify-grid .card[data-position="{n + 1}"]')  # noqa: E731
    toggle = lambda name: page.locator(f'#labels .toggle[data-name="{name}"]')  # noqa: E731

    def showing(number: int) -> None:
        expect(page.locator("#one-image .full-ref")).to_have_text(image_ref(number))

    def saved() -> None:
        expect(page.locator("#save-state")).to_have_text("All decisions saved")

    sign_in(page, url, API_KEY_ID, API_SECRET)
    page.goto(f"{url}/console/jobs/{job}/verify")
    expect(page.locator("#verify-grid .card[data-position]")).to_have_count(48)
    expect(page.locator("#progress-count")).to_have_text("0 of 60 reviewed")
    # An XSS payload in a source-ref and in a label name stays text.
    expect(card(7).locator(".ref")).to_have_text('"><img src=x onerror=alert(7)>.jpg')
    expect(card(9).locator(f'.toggle[data-name="{XSS_LABEL}"] .label-name')).to_have_text(XSS_LABEL)

    # The grid: c confirms the focused image (benign) and moves on; Enter opens the next.
    press("c")
    expect(card(0)).to_have_class(REVIEWED)
    press("Enter")
    showing(1)
    expect(page.locator("#labels .toggle")).to_have_count(2)
    press("2")  # Weapons absent; Violence above it stays present
    expect(toggle("Weapons")).to_have_attribute("aria-pressed", "false")
    expect(toggle("Violence")).to_have_attribute("aria-pressed", "true")
    saved()
    # The statistics follow each save: Weapons predicted and verified absent is a false positive.
    expect(page.locator('#stats tr[data-label="Weapons"] .fp')).to_have_text("1")
    expect(page.locator('#stats tr[data-label="Violence"] .tp')).to_have_text("1")
    press("Enter")
    showing(2)
    press("a")  # a label the model missed, from the picker
    expect(page.locator("#picker")).to_be_visible()
    page.keyboard.type("alcoholic")
    press("Enter")
    expect(page.locator("#picker")).to_be_hidden()
    expect(toggle("Alcoholic Beverages")).to_have_attribute("aria-pressed", "true")
    expect(toggle("Alcohol")).to_have_attribute("aria-pressed", "true")  # its parent
    press("Enter")
    showing(3)
    press("1")  # Alcohol absent: Alcoholic Beverages below it too
    expect(toggle("Alcohol")).to_have_attribute("aria-pressed", "false")
    expect(toggle("Alcoholic Beverages")).to_have_attribute("aria-pressed", "false")
    press("Enter")
    showing(4)
    press("/")  # a custom label: a new name, then its parent, in the picker
    page.keyboard.type("Vape Pens")
    press("Enter")
    expect(page.locator("#picker-title")).to_contain_text("Parent")
    page.keyboard.type("Paraphernalia")
    press("Enter")
    expect(toggle("Vape Pens")).to_have_attribute("aria-pressed", "true")
    expect(toggle("Drugs & Tobacco")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#custom-labels")).to_contain_text("Vape Pens")
    press("Enter")
    showing(5)
    press("c")  # confirmed as predicted
    showing(6)
    press("k")
    showing(5)
    expect(page.locator("#image-review")).to_contain_text(API_KEY_ID)
    press("g")
    expect(page.locator("#verify-grid")).to_be_visible()
    expect(page.locator("#progress-count")).to_have_text("6 of 60 reviewed")
    saved()

    expected = {
        0: {},
        1: {"Violence": True, "Weapons": False},
        2: {"Alcoholic Beverages": True, "Alcohol": True},
        3: {"Alcoholic Beverages": False, "Alcohol": False},
        4: {
            "Vape Pens": True,
            "Drugs & Tobacco Paraphernalia & Use": True,
            "Drugs & Tobacco": True,
        },
        5: {"Pills": True, "Products": True, "Drugs & Tobacco": True},
    }
    stored = store.get(job, [image_ref(n) for n in range(IMAGES)])
    assert {n: stored[image_ref(n)].labels for n in range(IMAGES) if image_ref(n) in stored} == (
        expected
    )

    # Half-way, a reload: every decision is kept, and shown.
    page.reload()
    expect(page.locator("#verify-grid .card.reviewed")).to_have_count(6)
    for number in expected:
        expect(card(number)).to_have_class(REVIEWED)
    weapons = card(1).locator('.toggle[data-name="Weapons"]')
    expect(weapons).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#progress-count")).to_have_text("6 of 60 reviewed")
    expect(page.locator('#stats tr[data-label="Weapons"] .fp')).to_have_text("1")
    expect(page.locator('#stats tr[data-label="Alcohol"] .fn')).to_have_text("1")

    # Shift+C: the page's other 42 images, as predicted, in one request; u undoes them all.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    press("Shift+C")
    expect(page.locator("#verify-grid .card.reviewed")).to_have_count(48)
    expect(page.locator("#progress-count")).to_have_text("48 of 60 reviewed")
    saved()
    assert [u.rsplit("/", 1)[-1] for u in posts] == ["decisions"]
    expect(page.locator("#custom-labels")).to_contain_text(XSS_LABEL)  # image 9's adapter label
    press("u")
    expect(page.locator("#progress-count")).to_have_text("6 of 60 reviewed")
    expect(page.locator("#verify-grid .card.reviewed")).to_have_count(6)
    press("u")
    expect(page.locator("#notice")).to_contain_text("Nothing to undo")
    press("n")
    expect(page.locator("#verify-grid .card[data-position]")).to_have_count(12)
    press("Shift+C")
    expect(page.locator("#progress-count")).to_have_text("18 of 60 reviewed")
    saved()
    press("p")
    expect(page.locator("#verify-grid .card[data-position]")).to_have_count(48)

    # Another reviewer opens the page; then this one changes image 0, and theirs is stale.
    context = browser.new_context(viewport=VIEWPORT)
    try:
        other = context.new_page()
        other_errors = _watch(other)
        sign_in(other, url, REVIEWER_ID, REVIEWER_SECRET)
        other.goto(f"{url}/console/jobs/{job}/verify")
        first = other.locator('#verify-grid .card[data-position="1"]')
        expect(first).to_have_class(REVIEWED)

        press("Home")
        press("x")  # selected: a adds to the selected images
        expect(card(0)).to_have_class(re.compile(r"\bselected\b"))
        press("a")
        page.keyboard.type("Gambling")
        press("Enter")
        expect(card(0).locator('.toggle[data-name="Gambling"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        saved()

        other.keyboard.press("a")
        other.keyboard.type("Weapons")
        other.keyboard.press("Enter")
        notice = other.locator("#notice")
        expect(notice).to_contain_text(f"{API_KEY_ID} changed this image at")
        expect(notice).to_contain_text("their decision is shown")
        expect(first.locator('.toggle[data-name="Gambling"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(first.locator('.toggle[data-name="Weapons"]')).to_have_count(0)
        assert other_errors == []
    finally:
        context.close()
    decision = store.decision(job, image_ref(0))
    assert (decision.labels, decision.reviewer) == ({"Gambling": True}, API_KEY_ID)

    # e exports; the ground truth is what the command line makes of the exported verifications.
    press("e")
    truth_uri = f"s3://out-bucket/results/console/verifications/{job}/groundtruth.jsonl"
    expect(page.locator("#export-groundtruth")).to_have_text(truth_uri)
    expect(page.locator("#progress-count")).to_have_text("18 of 60 reviewed")
    prefix = f"results/console/verifications/{job}"
    s3 = console_server.s3
    exported = s3.get_object(Bucket="out-bucket", Key=f"{prefix}/groundtruth.jsonl")["Body"].read()
    lines = s3.get_object(Bucket="out-bucket", Key=f"{prefix}/verifications.jsonl")["Body"].read()
    assert len(lines.splitlines()) == len(exported.splitlines()) == 18
    custom = [f"{name}={parent}" for name, parent in store.custom_labels(job).items()]
    assert custom == [f"{XSS_LABEL}=Weapons", "Vape Pens=Drugs & Tobacco Paraphernalia & Use"]
    assert _command_line(console_server, job, lines, tmp_path, custom) == exported
    download = page.request.get(f"{url}/console/jobs/{job}/groundtruth.jsonl")
    assert download.ok and download.body() == exported
    assert page.errors == [] and page.dialogs == []


def test_a_save_that_fails_is_shown_and_can_be_made_again(console_server, page):
    from playwright.sync_api import expect

    from tests.browser import sign_in

    url, job = console_server.url, console_server.job(count=12, name="offline")
    sign_in(page, url, API_KEY_ID, API_SECRET)
    page.goto(f"{url}/console/jobs/{job}/verify")
    first = page.locator('#verify-grid .card[data-position="1"]')
    expect(first).to_be_visible()
    page.route("**/decisions", lambda route: route.abort("internetdisconnected"))
    page.keyboard.press("c")
    expect(page.locator("#notice")).to_contain_text("img-00.jpg is not saved")
    expect(page.locator("#save-state")).to_have_text("Not saved")
    expect(first).to_have_class(re.compile(r"\bfailed\b"))
    expect(first).not_to_have_class(REVIEWED)
    page.unroute("**/decisions")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("c")
    expect(first).to_have_class(REVIEWED)
    expect(page.locator("#save-state")).to_have_text("All decisions saved")
    expect(page.locator("#progress-count")).to_have_text("1 of 12 reviewed")
    # ? shows the shortcuts; keys typed into a field are text, not shortcuts.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    expect(page.locator("#help")).to_contain_text("Confirm every image of this page")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.click("#custom-label-open")
    page.keyboard.type("cxa/u")
    expect(page.locator("#custom-label-name")).to_have_value("cxa/u")
    expect(page.locator("#picker")).to_be_hidden()
    expect(page.locator("#progress-count")).to_have_text("1 of 12 reviewed")
    page.keyboard.press("Escape")
    expect(page.locator("#custom-label-form")).to_be_hidden()
    # The aborted request is the one console error; nothing else went wrong.
    assert [e for e in page.errors if "ERR_INTERNET_DISCONNECTED" not in e] == []
    assert page.dialogs == []

"""The console's Human review page: reviewers answering human loops in Chromium, against the real
server over the moto S3 server, the loops made by the real boto3 clients (SageMaker's
CreateFlowDefinition, Rekognition's DetectModerationLabels with a HumanLoopConfig, the A2I
runtime's StartHumanLoop), and what they write (output.json, DescribeHumanLoop); work teams
(``--review_teams_file``); the answer endpoint over HTTP; and the pure parts (teams, answers).
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse

import boto3
import pytest
import requests

from service.console.review_pages import answer_content, loop_image, loop_labels
from service.console.settings import ReviewTeams, team_name
from service.review.flows import REKOGNITION_SOURCE
from tests.browser import browser_page, screenshot, sign_in
from tests.conftest import API_KEY_ID, API_SECRET, start_api_server
from tests.console_server import console_flags

pytest_plugins = ["tests.browser"]

ALICE = (API_KEY_ID, API_SECRET)
BOB = ("AKIDREVIEWERBOB002", "bob-secret-0002")
CAROL = ("AKIDREVIEWERCAROL3", "carol-secret-0003")
DAVE = ("AKIDOUTSIDERDAVE04", "dave-secret-0004")  # of the legal team only
ACCOUNT = "000000000000"
WORKTEAM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/moderators"
LEGAL_TEAM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/legal"
TASK_UI = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/moderation"
OUTPUT_PATH = "s3://out-bucket/reviews"
# open_nsfw gives a benign photo a low confidence: any label under 99 activates.
LOW_CONFIDENCE = {
    "Conditions": [
        {
            "ConditionType": "ModerationLabelConfidenceCheck",
            "ConditionParameters": {"ModerationLabelName": "*", "ConfidenceLessThan": 99},
        }
    ]
}
XSS_TITLE = '<script>alert("title")</script>Review'
XSS_DESCRIPTION = "\"><img src=x onerror=alert('description')> Is it unsafe?"
XSS_LABEL = "<img src=x onerror=alert(3)>Knife"
XSS_CONDITION = "<script>alert(4)</script>"


# --- The server ----------------------------------------------------------------------------------


class ReviewServer:
    """The API server with its console, and clients of it signed by Alice."""

    def __init__(self, httpd, url: str):
        self.httpd = httpd
        self.url = url
        self.sagemaker = _client("sagemaker", url)
        self.a2i = _client("sagemaker-a2i-runtime", url)
        self.rekognition = _client("rekognition", url)

    def flow(
        self,
        name: str,
        *,
        task_count: int = 1,
        time_limit: int = 300,
        title: str = "Is this image safe?",
        description: str = "Mark each label present or absent; add a label the model missed.",
        team: str = WORKTEAM,
    ) -> str:
        return self.sagemaker.create_flow_definition(
            FlowDefinitionName=name,
            HumanLoopRequestSource={"AwsManagedHumanLoopRequestSource": REKOGNITION_SOURCE},
            HumanLoopActivationConfig={
                "HumanLoopActivationConditionsConfig": {
                    "HumanLoopActivationConditions": json.dumps(LOW_CONFIDENCE)
                }
            },
            HumanLoopConfig={
                "WorkteamArn": team,
                "HumanTaskUiArn": TASK_UI,
                "TaskTitle": title,
                "TaskDescription": description,
                "TaskCount": task_count,
                "TaskTimeLimitInSeconds": time_limit,
                "TaskAvailabilityLifetimeInSeconds": 3600,
            },
            OutputConfig={"S3OutputPath": OUTPUT_PATH},
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/a2i-reviews",
        )["FlowDefinitionArn"]

    def start(self, name: str, flow_arn: str, content: dict) -> str:
        return self.a2i.start_human_loop(
            HumanLoopName=name,
            FlowDefinitionArn=flow_arn,
            HumanLoopInput={"InputContent": json.dumps(content)},
        )["HumanLoopArn"]


def _client(service: str, url: str, key: tuple[str, str] = ALICE):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


@pytest.fixture
def start_review_server(tmp_path, s3, moto_server, monkeypatch):
    """Starts the server (four key pairs; a fast sweeper; ``teams`` as --review_teams_file when
    given); buckets ``in-bucket`` and ``out-bucket`` exist."""
    keys = ",".join(f"{key}:{secret}" for key, secret in (ALICE, BOB, CAROL, DAVE))
    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", keys)
    for bucket in ("in-bucket", "out-bucket"):
        s3.create_bucket(Bucket=bucket)
    running = []

    def start(teams: dict | None) -> ReviewServer:
        flags = ["--review_sweep_secs=0.3"]
        if teams is not None:
            path = tmp_path / "teams.json"
            path.write_text(json.dumps(teams))
            flags.append(f"--review_teams_file={path}")
        registry = str(tmp_path / "jobs.sqlite")
        httpd, url = start_api_server(console_flags(registry, moto_server, *flags))
        running.append(httpd)
        return ReviewServer(httpd, url)

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


TEAMS = {"teams": {"moderators": [ALICE[0], BOB[0], CAROL[0]], LEGAL_TEAM: [DAVE[0]]}}


@pytest.fixture
def review(start_review_server):
    """The server, with the moderators (Alice, Bob, Carol) and the legal team (Dave)."""
    return start_review_server(TEAMS)


def _photo(sample_photos, name: str) -> bytes:
    with open(sample_photos[name], "rb") as f:
        return f.read()


def _bytes_content(image: bytes, labels: list[dict], conditions: list | None = None) -> dict:
    """A StartHumanLoop input with the shape of a Rekognition loop's inputContent."""
    content = {
        "aiServiceRequest": {
            "image": {"bytes": base64.b64encode(image).decode()},
            "minConfidence": 0,
        },
        "aiServiceResponse": {"moderationLabels": labels, "moderationModelVersion": "7.0"},
    }
    if conditions is not None:
        content["humanTaskActivationConditionResults"] = {"Conditions": conditions}
    return content


def _label(name: str, confidence: float, parent: str, level: int) -> dict:
    return {"name": name, "confidence": confidence, "parentName": parent, "taxonomyLevel": level}


ALCOHOL = [
    _label("Alcoholic Beverages", 62.0, "Alcohol", 2),
    _label("Alcohol", 62.0, "", 1),
]


def _path(page) -> str:
    return urllib.parse.urlsplit(page.url).path


def _wait_for_path(page, path: str) -> None:
    page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == path)


def _open_task(page, base: str, name: str) -> None:
    """Opens a task: the page claims it (a POST with the CSRF token) and shows it claimed."""
    page.goto(f"{base}/console/review/{name}")
    page.wait_for_selector("#claim-state")
    page.wait_for_selector("#labels li")


def _shown(page) -> dict[str, bool]:
    """The task's labels as shown: name -> present."""
    return dict(
        page.locator("#labels .toggle").evaluate_all(
            "nodes => nodes.map(n => [n.dataset.name, n.getAttribute('aria-pressed') === 'true'])"
        )
    )


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _output(s3, uri: str) -> dict:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _present(answer: dict) -> list[str]:
    return [entry["name"] for entry in answer[REKOGNITION_SOURCE]["moderationLabels"]]


def _unexpected(errors: list[str], *refused: int) -> list[str]:
    """The errors but the console's notes of the pages a test was meant to be refused."""
    notes = tuple(f"status of {status} " for status in refused)
    return [error for error in errors if not any(note in error for note in notes)]


def _csrf(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


# --- Two reviewers, by keyboard ------------------------------------------------------------------


def test_two_reviewers_answer_by_keyboard_and_the_loops_complete(
    review, s3, sample_photos, browser, page
):
    base = review.url
    flow_arn = review.flow("moderation", task_count=2)
    s3.put_object(
        Bucket="in-bucket",
        Key="photos/astronaut.jpg",
        Body=_photo(sample_photos, "astronaut.jpg"),
    )
    detected = review.rekognition.detect_moderation_labels(
        Image={"S3Object": {"Bucket": "in-bucket", "Name": "photos/astronaut.jpg"}},
        MinConfidence=0,
        HumanLoopConfig={"HumanLoopName": "astronaut", "FlowDefinitionArn": flow_arn},
    )
    activation = detected["HumanLoopActivationOutput"]
    assert activation["HumanLoopArn"].endswith(":human-loop/astronaut")
    model_labels = [label["Name"] for label in detected["ModerationLabels"]]
    assert model_labels
    review.start("coffee", flow_arn, _bytes_content(_photo(sample_photos, "coffee.jpg"), ALCOHOL))

    # Alice: the list, grouped by flow definition, then both tasks by keyboard.
    sign_in(page, base, *ALICE)
    page.click("nav >> text=Human review")
    _wait_for_path(page, "/console/review")
    group = page.locator("section.review-flow[data-flow=moderation]")
    assert group.locator(".flow-title").inner_text() == "Is this image safe?"
    assert "Mark each label present or absent" in group.inner_text()
    rows = group.locator("tr[data-loop]")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.loop)") == ["astronaut", "coffee"]
    assert rows.first.locator("td.answers").inner_text() == "0 of 2"
    assert "59 min" in rows.first.inner_text()  # of its hour of TaskAvailabilityLifetime
    screenshot(page, "review-list")
    page.click("#start-reviewing")
    _wait_for_path(page, "/console/review/astronaut")
    page.wait_for_selector("#labels .toggle")
    image = page.locator("#task-image")
    image.evaluate("img => img.complete || new Promise(done => img.onload = done)")
    assert image.evaluate("img => img.naturalWidth") > 0
    assert "ref=s3%3A%2F%2Fin-bucket%2Fphotos%2Fastronaut.jpg" in image.get_attribute("src")
    assert sorted(_shown(page)) == sorted(model_labels)
    assert "Any label with a confidence below 99%" in page.locator("#reasons").inner_text()
    assert "left to answer" in page.locator("#claim-state").inner_text()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()
    page.keyboard.press("a")
    page.keyboard.type("Weapons")
    page.keyboard.press("Enter")  # Weapons present, and Violence above it
    page.wait_for_selector("#labels .toggle[data-name=Weapons][aria-pressed=true]")
    assert _shown(page)["Violence"] is True
    screenshot(page, "review-task")
    first = list(_shown(page))[0]
    before = _shown(page)[first]
    page.keyboard.press("1")
    assert _shown(page)[first] is (not before)
    alice_astronaut = {name for name, present in _shown(page).items() if present}
    page.keyboard.press("Enter")
    _wait_for_path(page, "/console/review/coffee")
    page.wait_for_selector("#labels .toggle")
    image = page.locator("#task-image")
    image.evaluate("img => img.complete || new Promise(done => img.onload = done)")
    assert image.evaluate("img => img.naturalWidth") > 0  # the loop's own bytes
    assert image.get_attribute("src") == "/console/review/coffee/image"
    assert _shown(page) == {"Alcohol": True, "Alcoholic Beverages": True}
    page.keyboard.press("1")  # Alcohol absent, and Alcoholic Beverages below it
    assert _shown(page) == {"Alcohol": False, "Alcoholic Beverages": False}
    page.keyboard.press("Enter")
    _wait_for_path(page, "/console/review")
    assert "no other open task" in page.locator("#review-notice").inner_text()
    assert page.locator("#no-open-tasks").count() == 1  # both answered by her

    # Bob, in a browser of his own, confirms both as shown.
    with browser_page(browser) as bob:
        sign_in(bob, base, *BOB)
        bob.goto(f"{base}/console/review")
        answers = bob.locator("tr[data-loop] td.answers").all_inner_texts()
        assert answers == ["1 of 2", "1 of 2"]
        bob.click("#start-reviewing")
        _wait_for_path(bob, "/console/review/astronaut")
        bob.wait_for_selector("#labels .toggle")
        bob_astronaut = {name for name, present in _shown(bob).items() if present}
        bob.keyboard.press("Enter")
        _wait_for_path(bob, "/console/review/coffee")
        bob.wait_for_selector("#labels .toggle")
        bob.keyboard.press("Enter")
        _wait_for_path(bob, "/console/review")
        assert bob.errors == [] and bob.dialogs == []

    # Completed: output.json with both answers, where DescribeHumanLoop says it is.
    def completed(name: str) -> dict | None:
        found = review.a2i.describe_human_loop(HumanLoopName=name)
        return found if found.get("HumanLoopOutput") else None

    described = _wait_for(lambda: completed("astronaut"))
    assert described["HumanLoopStatus"] == "Completed"
    uri = described["HumanLoopOutput"]["OutputS3Uri"]
    assert re.fullmatch(
        r"s3://out-bucket/reviews/moderation/\d{4}/\d\d/\d\d/\d\d/\d\d/\d\d/astronaut/output\.json",
        uri,
    )
    output = _output(s3, uri)
    assert output["flowDefinitionArn"] == flow_arn and output["humanLoopName"] == "astronaut"
    assert output["awsManagedHumanLoopRequestSource"] == REKOGNITION_SOURCE
    by_worker = {entry["workerId"]: entry for entry in output["humanAnswers"]}
    assert set(by_worker) == {ALICE[0], BOB[0]}
    assert set(_present(by_worker[ALICE[0]]["answerContent"])) == alice_astronaut
    assert {"Weapons", "Violence"} <= alice_astronaut
    assert set(_present(by_worker[BOB[0]]["answerContent"])) == bob_astronaut
    weapons = next(
        entry
        for entry in by_worker[ALICE[0]]["answerContent"][REKOGNITION_SOURCE]["moderationLabels"]
        if entry["name"] == "Weapons"
    )
    assert weapons == {"name": "Weapons", "parentName": "Violence"}
    assert output["inputContent"]["aiServiceResponse"]["moderationLabels"]
    coffee = _output(s3, _wait_for(lambda: completed("coffee"))["HumanLoopOutput"]["OutputS3Uri"])
    coffee_answers = {e["workerId"]: e["answerContent"] for e in coffee["humanAnswers"]}
    assert _present(coffee_answers[ALICE[0]]) == []
    assert _present(coffee_answers[BOB[0]]) == ["Alcohol", "Alcoholic Beverages"]

    # The Completed tab: who answered what, when, and where the output is.
    page.click("#tab-completed")
    _wait_for_path(page, "/console/review")
    row = page.locator("section[data-flow=moderation] tr[data-loop=astronaut]")
    assert row.locator(".output-uri").inner_text() == uri
    workers = row.locator("li[data-worker]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.worker)"
    )
    assert sorted(workers) == sorted([ALICE[0], BOB[0]])
    assert "Weapons" in row.locator(f"li[data-worker={ALICE[0]}]").inner_text()
    coffee_row = page.locator("tr[data-loop=coffee]")
    assert "no label" in coffee_row.locator(f"li[data-worker={ALICE[0]}]").inner_text()
    # A completed loop's page is read-only, with its answers.
    page.goto(f"{base}/console/review/astronaut")
    assert "Completed" in page.locator("#unavailable").inner_text()
    assert page.locator("#answers li").count() == 2
    assert page.locator("#labels").count() == 0
    assert page.errors == [] and page.dialogs == []


# --- Claims ---------------------------------------------------------------------------------------


def test_an_abandoned_claim_returns_to_the_queue_after_its_time_limit(
    review, s3, sample_photos, browser, page
):
    base = review.url
    flow_arn = review.flow("quick", task_count=1, time_limit=30)  # the model's least
    s3.put_object(Bucket="in-bucket", Key="left.jpg", Body=_photo(sample_photos, "rocket.jpg"))
    content = {
        "aiServiceRequest": {"image": {"s3Object": {"bucket": "in-bucket", "name": "left.jpg"}}},
        "aiServiceResponse": {"moderationLabels": [_label("Explicit", 12.5, "", 1)]},
    }
    review.start("left-behind", flow_arn, content)
    sign_in(page, base, *ALICE)
    _open_task(page, base, "left-behind")
    claimed = time.monotonic()
    assert re.match(r"0:[23]\d left to answer", page.locator("#claim-state").inner_text())
    assert _shown(page) == {"Explicit": False}  # 12.5% < 50%: starts absent

    with browser_page(browser) as bob, browser_page(browser) as carol:
        # The only task slot is Alice's: Bob sees nothing, and cannot take it.
        sign_in(bob, base, *BOB)
        bob.goto(f"{base}/console/review")
        assert bob.locator("tr[data-loop]").count() == 0
        refused = bob.goto(f"{base}/console/review/left-behind")
        assert refused.status == 409
        assert "claimed by another reviewer" in bob.locator("#unavailable").inner_text()

        # Alice walks away; her claim runs out, and the page says so.
        page.wait_for_selector("#claim-state.expired", timeout=45_000)
        assert time.monotonic() - claimed >= 25
        assert page.locator("#claim-again").is_visible()
        # The task is back in the queue: a third reviewer sees it.
        sign_in(carol, base, *CAROL)
        carol.goto(f"{base}/console/review")
        assert carol.locator("tr[data-loop=left-behind]").count() == 1

        # Answering without a live claim is refused and offers to claim again.
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_selector("#notice:has-text('nothing was saved')")
        assert _path(page) == "/console/review/left-behind"
        page.click("#claim-again")
        page.wait_for_selector("#notice:has-text('Claimed again')")
        assert "left to answer" in page.locator("#claim-state").inner_text()
        carol.reload()
        assert carol.locator("tr[data-loop=left-behind]").count() == 0
        page.keyboard.press("Enter")
        _wait_for_path(page, "/console/review")
        assert _unexpected(bob.errors, 409) == [] and carol.errors == []

    found = review.a2i.describe_human_loop(HumanLoopName="left-behind")
    assert found["HumanLoopStatus"] == "Completed"
    uri = _wait_for(
        lambda: (
            review.a2i.describe_human_loop(HumanLoopName="left-behind")
            .get("HumanLoopOutput", {})
            .get("OutputS3Uri")
        )
    )
    output = _output(s3, uri)
    assert [entry["workerId"] for entry in output["humanAnswers"]] == [ALICE[0]]
    assert _present(output["humanAnswers"][0]["answerContent"]) == ["Explicit"]
    assert _unexpected(page.errors, 409) == [] and page.dialogs == []


# --- Teams ---------------------------------------------------------------------------------------


def test_a_reviewer_outside_the_team_sees_nothing_and_is_refused(review, sample_photos, page):
    base = review.url
    moderation = review.flow("moderation")
    legal = review.flow("legal", title="Legal review", team=LEGAL_TEAM)
    coffee = _photo(sample_photos, "coffee.jpg")
    review.start("for-moderators", moderation, _bytes_content(coffee, ALCOHOL))
    review.start("for-legal", legal, _bytes_content(coffee, ALCOHOL))

    # Dave is of the legal team (listed by its full WorkteamArn) only.
    sign_in(page, base, *DAVE)
    page.goto(f"{base}/console/review")
    assert page.locator("tr[data-loop]").evaluate_all("r => r.map(x => x.dataset.loop)") == [
        "for-legal"
    ]
    assert page.locator("section[data-flow=moderation]").count() == 0
    refused = page.goto(f"{base}/console/review/for-moderators")
    assert refused.status == 403
    assert "not in the work team" in page.locator(".error").inner_text()
    assert page.request.get(f"{base}/console/review/for-moderators/image").status == 403
    page.goto(f"{base}/console/review")
    token = _csrf(page)
    for path in ("answer", "claim"):
        answer = page.request.post(
            f"{base}/console/review/for-moderators/{path}",
            data=json.dumps({"labels": {}}),
            headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
        )
        assert answer.status == 403, answer.text()
    page.goto(f"{base}/console/review?status=Completed")
    assert page.locator("#no-completed").count() == 1
    assert _unexpected(page.errors, 403) == [] and page.dialogs == []

    # Alice, a moderator, sees the moderators' loop only.
    alice = requests.Session()
    _sign_in_http(alice, base, *ALICE)
    listing = alice.get(f"{base}/console/review", timeout=30).text
    assert 'data-loop="for-moderators"' in listing and 'data-loop="for-legal"' not in listing
    assert alice.get(f"{base}/console/review/for-legal", timeout=30).status_code == 403


_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _sign_in_http(session: requests.Session, base: str, key: str, secret: str) -> str:
    """Signs ``session`` in to the console; returns its CSRF token."""
    form = session.get(f"{base}/console/sign-in", timeout=30)
    token = _CSRF.search(form.text).group(1)
    answer = session.post(
        f"{base}/console/sign-in",
        data={"user": key, "secret": secret, "next": "/console/review", "csrf_token": token},
        timeout=30,
    )
    assert answer.ok and answer.url.endswith("/console/review"), answer.text
    return _CSRF.search(answer.text).group(1)


def test_without_a_teams_file_everyone_reviews_every_flow_and_answers_are_checked(
    start_review_server, sample_photos
):
    review = start_review_server(None)
    base = review.url
    moderation = review.flow("moderation", task_count=2)
    legal = review.flow("legal", team=LEGAL_TEAM)
    coffee = _photo(sample_photos, "coffee.jpg")
    review.start("one", moderation, _bytes_content(coffee, ALCOHOL))
    review.start("two", legal, _bytes_content(coffee, [_label(XSS_LABEL, 80.0, "Weapons", 3)]))
    dave = requests.Session()
    token = _sign_in_http(dave, base, *DAVE)
    listing = dave.get(f"{base}/console/review", timeout=30).text
    assert 'data-loop="one"' in listing and 'data-loop="two"' in listing

    def post(name: str, body, *, csrf: str | None = token, action: str = "answer"):
        headers = {"Content-Type": "application/json"}
        if csrf:
            headers["X-CSRF-Token"] = csrf
        data = body if isinstance(body, str) else json.dumps(body)
        return dave.post(
            f"{base}/console/review/{name}/{action}", data=data, headers=headers, timeout=30
        )

    # No claim yet: the answer is refused, and a claim offered.
    refused = post("one", {"labels": {}})
    assert refused.status_code == 409 and refused.json()["claimAgain"] is True
    assert post("one", {"labels": {}}, csrf=None).status_code == 403
    assert post("one", "not json").status_code == 400
    assert post("nope", {"labels": {}}).status_code == 404
    claim = post("one", {}, action="claim").json()["claim"]
    assert claim["expiresAt"] == pytest.approx(claim["claimedAt"] + 300)
    assert dave.get(f"{base}/console/review/one", timeout=30).status_code == 200  # same claim
    for body, message in (
        ({"labels": {"Knife": True}}, "neither a label of the taxonomy"),
        ({"labels": {"Alcohol": "yes"}}, "must be true (present) or false (absent)"),
        ({"labels": {"Alcoholic Beverages": True, "Alcohol": False}}, "above it is absent"),
        ({"labels": []}, '"labels" must be an object'),
    ):
        answer = post("one", body)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    answer = post("one", {"labels": {"Alcoholic Beverages": True, "Gambling": True}})
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    assert (saved["status"], saved["answers"], saved["taskCount"]) == ("InProgress", 1, 2)
    assert saved["answer"] == {
        REKOGNITION_SOURCE: {
            "moderationLabels": [
                {"name": "Alcohol", "parentName": ""},
                {"name": "Alcoholic Beverages", "parentName": "Alcohol"},
                {"name": "Gambling", "parentName": ""},
            ]
        }
    }
    assert saved["next"] == "/console/review/two"
    again = post("one", {"labels": {}})
    assert again.status_code == 409 and "claimAgain" not in again.json()  # answered already
    page = dave.get(f"{base}/console/review/one", timeout=30)
    assert page.status_code == 200 and "answered this task already" in page.text
    # A label the loop's response had is allowed, though not of the taxonomy.
    assert post("two", {}, action="claim").status_code == 200
    answer = post("two", {"labels": {XSS_LABEL: True}})
    assert answer.status_code == 200, answer.text
    assert _present(answer.json()["answer"]) == ["Violence", "Weapons", XSS_LABEL]
    assert answer.json()["status"] == "Completed" and answer.json()["outputUri"]
    assert answer.json()["next"] is None


# --- Hostile data ---------------------------------------------------------------------------------


def test_hostile_titles_descriptions_and_label_names_stay_inert(review, s3, sample_photos, page):
    base = review.url
    flow_arn = review.flow("hostile", title=XSS_TITLE, description=XSS_DESCRIPTION)
    labels = [_label("Weapons", 91.0, "Violence", 2), _label(XSS_LABEL, 80.0, "Weapons", 3)]
    conditions = [
        {
            "ConditionParameters": {
                "ConfidenceGreaterThan": 50,
                "ModerationLabelName": XSS_CONDITION,
            },
            "ConditionType": "ModerationLabelConfidenceCheck",
            "EvaluationResult": True,
        }
    ]
    content = _bytes_content(_photo(sample_photos, "camera.jpg"), labels, conditions)
    review.start("hostile-loop", flow_arn, content)
    sign_in(page, base, *ALICE)
    page.goto(f"{base}/console/review")
    assert page.locator("section[data-flow=hostile] .flow-title").inner_text() == XSS_TITLE
    assert XSS_DESCRIPTION in page.locator("section[data-flow=hostile]").inner_text()
    _open_task(page, base, "hostile-loop")
    assert page.locator("#task-title").inner_text() == XSS_TITLE
    assert page.locator("#task-description").inner_text() == XSS_DESCRIPTION
    assert XSS_CONDITION in page.locator("#reasons").inner_text()
    assert _shown(page) == {"Violence": True, "Weapons": True, XSS_LABEL: True}
    page.keyboard.press("a")
    page.keyboard.type("<img")
    assert page.locator("#picker-list .option").first.get_attribute("data-name") == XSS_LABEL
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    _wait_for_path(page, "/console/review")
    page.click("#tab-completed")
    row = page.locator("tr[data-loop=hostile-loop]")
    assert XSS_LABEL in row.inner_text()
    uri = row.locator(".output-uri").inner_text()
    output = _output(s3, uri)
    assert _present(output["humanAnswers"][0]["answerContent"]) == [
        "Violence",
        "Weapons",
        XSS_LABEL,
    ]
    assert page.locator("img[src=x]").count() == 0
    assert page.errors == [] and page.dialogs == []


# --- The pure parts ------------------------------------------------------------------------------


def test_review_teams_are_read_by_team_name_or_workteam_arn(tmp_path):
    teams = ReviewTeams.from_document(TEAMS)
    assert team_name(WORKTEAM) == "moderators"
    assert teams.may_review(ALICE[0], WORKTEAM) and not teams.may_review(DAVE[0], WORKTEAM)
    assert teams.may_review(DAVE[0], LEGAL_TEAM) and not teams.may_review(ALICE[0], LEGAL_TEAM)
    other = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/unlisted"
    assert teams.members(other) == frozenset()
    path = tmp_path / "teams.json"
    path.write_text(json.dumps(TEAMS))
    assert ReviewTeams.load(str(path)) == teams
    for text, problem in (
        ("{", "is not JSON"),
        ("[]", 'must be a JSON object {"teams"'),
        ('{"teams": {"moderators": "AKID"}}', "must be a list of access key ids"),
        ('{"teams": {"moderators": [""]}}', "must be a list of access key ids"),
        ('{"teams": {" ": []}}', "is empty or padded"),
        ('{"teams": {}, "team": {}}', "unknown key(s) 'team'"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(problem)) as error:
            ReviewTeams.load(str(path))
        assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="cannot be read"):
        ReviewTeams.load(str(tmp_path / "missing.json"))


def test_the_server_refuses_to_start_with_a_bad_teams_file(tmp_path, moto_server, monkeypatch):
    from service.server import build_server

    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{ALICE[0]}:{ALICE[1]}")
    path = tmp_path / "teams.json"
    path.write_text('{"teams": {"moderators": "AKID"}}')
    flags = console_flags(str(tmp_path / "jobs.sqlite"), moto_server, f"--review_teams_file={path}")
    # service.server.main prints "error: <message>" for it and exits with status 2.
    with pytest.raises(ValueError, match="the members of team 'moderators' must be a list"):
        build_server(["--port=0", *flags])


def test_answers_have_the_shape_of_a2i_rekognition_answers():
    labels = loop_labels(
        {
            "aiServiceResponse": {
                "ModerationLabels": [  # as a client gives the API's response to StartHumanLoop
                    {"Name": "Weapons", "Confidence": 40.0, "ParentName": "Violence"},
                    {"Name": "Weapons", "Confidence": 70.0, "ParentName": "Violence"},
                    {
                        "Name": "Mine",
                        "Confidence": 99.0,
                        "ParentName": "Weapons",
                        "TaxonomyLevel": 3,
                    },
                ]
            },
            "selectedAiServiceResponse": {"moderationLabels": [{"name": "Mine"}]},
        }
    )
    assert [(x["name"], x["confidence"], x["parent"], x["present"]) for x in labels] == [
        ("Weapons", 70.0, "Violence", True),
        ("Mine", 99.0, "Weapons", True),
    ]
    assert [x["selected"] for x in labels] == [False, True]
    answer = answer_content(labels, {"Mine": True, "Explicit": False, "Weapons": True})
    assert _present(answer) == ["Violence", "Weapons", "Mine"]
    assert answer_content(labels, {})[REKOGNITION_SOURCE] == {"moderationLabels": []}
    assert loop_image({"taskObject": "s3://in-bucket/a.jpg"}) == {
        "kind": "s3",
        "ref": "s3://in-bucket/a.jpg",
    }
    image = {"s3Object": {"bucket": "b", "name": "k.jpg", "version": "v1"}}
    assert loop_image({"aiServiceRequest": {"image": image}})["ref"] == "s3://b/k.jpg?versionId=v1"
    assert loop_image({"text": "no image"}) is None


def test_showing_a_task_claims_nothing_until_the_page_posts_its_claim(review, sample_photos, page):
    base = review.url
    flow_arn = review.flow("get-safe", task_count=1)
    content = {
        "aiServiceRequest": {"image": {"s3Object": {"bucket": "in-bucket", "name": "x.jpg"}}},
        "aiServiceResponse": {"moderationLabels": [_label("Explicit", 60.0, "", 1)]},
    }
    review.start("get-safe", flow_arn, content)
    sign_in(page, base, *ALICE)
    page.route("**/console/review/get-safe/claim", lambda route: route.abort())
    page.goto(f"{base}/console/review/get-safe")
    page.wait_for_selector("#claim-needed.error")
    store = review.httpd.api.loops
    assert store.claims("get-safe") == []
    page.unroute("**/console/review/get-safe/claim")
    _open_task(page, base, "get-safe")
    assert [claim.reviewer for claim in store.claims("get-safe")] == [ALICE[0]]

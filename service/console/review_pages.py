"""Human review: where the people of a flow definition's work team answer the human loops that
A2I-compatible flow definitions start (``service.review``), from DetectModerationLabels'
``HumanLoopConfig`` or the A2I runtime's StartHumanLoop.

- ``GET /review``: the open loops the signed-in user may work on now, grouped per flow definition
  (its TaskTitle and TaskDescription; each loop's age, the time left of its
  TaskAvailabilityLifetimeInSeconds, how many of its TaskCount answers it has);
  ``?status=Completed`` lists completed loops with their answers and their ``output.json``.
- ``GET /review/{loop}``: claims a task slot of the loop for the user (``HumanLoopStore.claim``,
  for the flow's TaskTimeLimitInSeconds; an abandoned claim runs out and the task returns to the
  queue) and shows the image, the model's labels with their confidences, why the loop started
  (its activation results), and the answer controls of Verify predictions: present/absent
  toggles, the label picker and the same keyboard shortcuts (``static/review.js``). A loop no
  longer in progress is shown read-only, with its answers.
- ``POST /review/{loop}/answer`` (``{"labels": {name: bool}}``: labels of the taxonomy or of the
  loop's response) records the answer as A2I's output data shows a Rekognition task's
  (``answer_content``); with the last of the flow's TaskCount answers the loop is Completed and its
  ``output.json`` is written at once (``service.review.output``; the sweeper writes it otherwise).
  The answer names the next open loop, which the page goes on to. Without a live claim (it ran
  out) the answer is refused with ``claimAgain``, and ``POST /review/{loop}/claim`` claims again.
- ``GET /review/{loop}/image``: the image of a loop whose request carried the image's bytes
  (``Image.Bytes``), re-encoded as a JPEG; an image in S3 goes through ``/thumbnail``.

Who may review a flow is ``ConsoleSettings.review_teams`` (``--review_teams_file``): the team its
WorkteamArn names. A user outside it sees none of its loops and is refused (403) each of them;
without the file every user reviews every flow. The loops of a deleted flow definition, whose
team is no longer known, are then for nobody.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from model.taxonomy import TAXONOMY
from service.console.images import ImageUnavailable, render_thumbnail
from service.console.web import (
    SECURITY_HEADERS,
    Console,
    json_action,
    json_body,
    page,
)
from service.review.flows import REKOGNITION_SOURCE, FlowDefinition, FlowNotFound
from service.review.loops import HumanLoop, LoopNotFound, LoopNotOpen, a2i_time
from service.review.output import write_output
from storage.reading import VERSION_QUERY

__all__ = [
    "COMPLETED_PER_FLOW",
    "MAX_LABELS_PER_ANSWER",
    "PRESENT_AT",
    "answer_content",
    "loop_image",
    "loop_labels",
    "routes",
]

_LOGGER = logging.getLogger(__name__)

# A label the model gave at least this confidence (Rekognition's default MinConfidence) starts
# marked present; the others start absent.
PRESENT_AT = 50.0
MAX_LABELS_PER_ANSWER = 500
COMPLETED_PER_FLOW = 50  # the newest completed loops listed per flow definition
OPEN_LISTED = 500  # open loops listed at most
IMAGE_SIZE = 1024
_NOTICE = "review_notice"  # the session key of the notice the list shows after the last task
_IN_PROGRESS, _COMPLETED = "InProgress", "Completed"
_TAXONOMY_ORDER = {name: index for index, name in enumerate(TAXONOMY)}


class _Refused(Exception):
    """A loop the user may not see: ``status`` (403, 404) and a message for them."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# Reading a loop's input content: A2I's camelCase, or the PascalCase of the Rekognition API for
# what StartHumanLoop was given as it came from a client.


def _member(mapping: Any, name: str) -> Any:
    if not isinstance(mapping, Mapping):
        return None
    if name in mapping:
        return mapping[name]
    return mapping.get(name[:1].upper() + name[1:])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def loop_image(content: Mapping[str, Any]) -> dict[str, str] | None:
    """Where the loop's image is: ``{"kind": "s3", "ref": "s3://..."}`` for
    ``aiServiceRequest.image.s3Object`` (or a ``taskObject`` / ``source-ref`` S3 URI),
    ``{"kind": "bytes"}`` for ``aiServiceRequest.image.bytes``; None when it has none."""
    image = _member(_member(content, "aiServiceRequest"), "image")
    location = _member(image, "s3Object")
    bucket, key = _text(_member(location, "bucket")), _text(_member(location, "name"))
    if bucket and key:
        ref = f"s3://{bucket}/{key}"
        version = _text(_member(location, "version"))
        if version:
            ref += f"{VERSION_QUERY}{version}"
        return {"kind": "s3", "ref": ref}
    if _text(_member(image, "bytes")):
        return {"kind": "bytes"}
    for name in ("taskObject", "source-ref"):
        ref = _text(_member(content, name))
        if ref.startswith("s3://"):
            return {"kind": "s3", "ref": ref}
    return None


def _image_bytes(content: Mapping[str, Any]) -> bytes | None:
    text = _text(_member(_member(_member(content, "aiServiceRequest"), "image"), "bytes"))
    try:
        return base64.b64decode(text, validate=True) if text else None
    except (binascii.Error, ValueError):
        return None


def loop_labels(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's labels of the loop's response (``aiServiceResponse.moderationLabels``), each
    ``{"name", "confidence", "parent", "level", "present", "selected"}``: ``present`` when its
    confidence is at least ``PRESENT_AT``, ``selected`` when the activation conditions picked it
    (``selectedAiServiceResponse``). A name listed twice keeps its highest confidence."""
    entries = _member(_member(content, "aiServiceResponse"), "moderationLabels")
    picked = _member(_member(content, "selectedAiServiceResponse"), "moderationLabels")
    selected = (
        {_text(_member(entry, "name")) for entry in picked if isinstance(entry, Mapping)}
        if isinstance(picked, list)
        else set()
    )
    labels: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        name = _text(_member(entry, "name"))
        if not name:
            continue
        confidence = _number(_member(entry, "confidence"))
        known = TAXONOMY.get(name)
        level = _member(entry, "taxonomyLevel")
        label = {
            "name": name,
            "confidence": confidence,
            "parent": known.parent if known else _text(_member(entry, "parentName")),
            "level": known.level
            if known
            else (level if isinstance(level, int) and not isinstance(level, bool) else 1),
            "present": confidence is not None and confidence >= PRESENT_AT,
            "selected": name in selected,
        }
        earlier = labels.get(name)
        if earlier is None or (confidence or 0) > (earlier["confidence"] or 0):
            labels[name] = label
    return list(labels.values())


def _content_types(content: Mapping[str, Any]) -> list[str]:
    entries = _member(_member(content, "aiServiceResponse"), "contentTypes")
    shown = []
    for entry in entries if isinstance(entries, list) else []:
        name = _text(_member(entry, "name"))
        confidence = _number(_member(entry, "confidence"))
        if name:
            shown.append(name if confidence is None else f"{name} {confidence:.0f}%")
    return shown


_COMPARISON_WORDS = {
    "ConfidenceEquals": "of exactly",
    "ConfidenceLessThan": "below",
    "ConfidenceLessThanEquals": "of at most",
    "ConfidenceLessThanOrEqual": "of at most",
    "ConfidenceGreaterThan": "above",
    "ConfidenceGreaterThanEquals": "of at least",
    "ConfidenceGreaterThanOrEqual": "of at least",
}


def _condition_text(kind: Any, parameters: Any) -> str:
    parameters = parameters if isinstance(parameters, Mapping) else {}
    if kind == "Sampling":
        return f"A random sample of {parameters.get('RandomSamplingPercentage')}% of requests"
    if kind == "ModerationLabelConfidenceCheck":
        name = parameters.get("ModerationLabelName")
        subject = "Any label" if name == "*" else f"The label {name}"
        bounds = [
            f"{words} {parameters[key]}%"
            for key, words in _COMPARISON_WORDS.items()
            if key in parameters
        ]
        return f"{subject} with a confidence {' and '.join(bounds)}"
    return f"{kind}"


def _reasons(loop: HumanLoop) -> list[dict[str, Any]]:
    """Why the loop started, one line per condition (``{"text", "met", "depth"}``), from its
    ``humanTaskActivationConditionResults``."""
    results = _member(loop.input_content, "humanTaskActivationConditionResults")
    conditions = _member(results, "conditions")
    if not isinstance(conditions, list):
        if loop.request_source is None:
            text = "Started with the A2I runtime's StartHumanLoop."
        else:
            text = "The loop's request carries no activation results."
        return [{"text": text, "met": True, "depth": 0}]
    if not conditions:
        text = "The flow definition has no activation conditions: every request is reviewed."
        return [{"text": text, "met": True, "depth": 0}]
    lines: list[dict[str, Any]] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, Mapping) or len(lines) > 100:
            return
        met = node.get("EvaluationResult") is True
        for operator, words in (("And", "All of"), ("Or", "Any of")):
            if isinstance(node.get(operator), list):
                lines.append({"text": f"{words}:", "met": met, "depth": depth})
                for member in node[operator]:
                    walk(member, depth + 1)
                return
        text = _condition_text(node.get("ConditionType"), node.get("ConditionParameters"))
        lines.append({"text": text, "met": met, "depth": depth})

    for condition in conditions:
        walk(condition, 0)
    return lines


def answer_content(labels: list[dict[str, Any]], verdicts: Any) -> dict[str, Any]:
    """The answer to store for ``verdicts`` (``{name: bool}``) on a loop whose response has
    ``labels`` (``loop_labels``), as A2I's output data shows a Rekognition task's answer:
    ``{"AWS/Rekognition/DetectModerationLabels/Image/V3": {"moderationLabels": [{"name",
    "parentName"}, ...]}}``, the labels marked present with every label above them, in the
    taxonomy's order.

    ValueError, for the reviewer, for a malformed body, a label neither of the taxonomy nor of the
    response, or a label present below one marked absent."""
    if not isinstance(verdicts, dict):
        raise ValueError('"labels" must be an object such as {"Explicit": false}.')
    if len(verdicts) > MAX_LABELS_PER_ANSWER:
        raise ValueError(f"At most {MAX_LABELS_PER_ANSWER} labels per answer.")
    answered = {entry["name"]: entry for entry in labels}
    for name, verdict in verdicts.items():
        if not isinstance(verdict, bool):
            raise ValueError(f"{name!r} must be true (present) or false (absent).")
        if name not in TAXONOMY and name not in answered:
            raise ValueError(
                f"{name!r} is neither a label of the taxonomy nor one the model gave this image."
            )

    def parent_of(name: str) -> str:
        if name in TAXONOMY:
            return TAXONOMY[name].parent
        entry = answered.get(name)
        return entry["parent"] if entry else ""

    present: list[str] = []
    for name, verdict in verdicts.items():
        if not verdict:
            continue
        chain = [name]
        parent = parent_of(name)
        while parent and parent not in chain and len(chain) < 8:
            chain.append(parent)
            parent = parent_of(parent)
        for above in chain[1:]:
            if verdicts.get(above) is False:
                raise ValueError(f"{name} is marked present, but {above} above it is absent.")
        present.extend(link for link in reversed(chain) if link not in present)
    position = {name: index for index, name in enumerate(answered)}
    present.sort(
        key=lambda name: (
            _TAXONOMY_ORDER.get(name, len(_TAXONOMY_ORDER) + position.get(name, 0)),
            name,
        )
    )
    entries = [{"name": name, "parentName": parent_of(name)} for name in present]
    return {REKOGNITION_SOURCE: {"moderationLabels": entries}}


def _answered_labels(answer: Mapping[str, Any]) -> list[str] | None:
    """The label names of an answer in ``answer_content``'s shape; None for another shape."""
    entries = _member(answer.get(REKOGNITION_SOURCE), "moderationLabels")
    if not isinstance(entries, list):
        return None
    return [_text(_member(entry, "name")) for entry in entries]


def _duration(seconds: float) -> str:
    """A span for a reviewer: ``45 s``, ``12 min``, ``3 h 5 min``, ``9 days 4 h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"


# Who reviews what.


def _all_flows(console: Console) -> list[FlowDefinition]:
    """Every flow definition, newest first."""
    flows: list[FlowDefinition] = []
    token = None
    while True:
        found, token = console.api.flows.list(max_results=100, next_token=token)
        flows.extend(found)
        if not token:
            return flows


def _may_review(console: Console, user: str, flow: FlowDefinition | None) -> bool:
    teams = console.settings.review_teams
    if teams is None:
        return True
    return flow is not None and teams.may_review(user, flow.workteam_arn)


def _reviewable_flows(console: Console, user: str) -> list[FlowDefinition]:
    return [flow for flow in _all_flows(console) if _may_review(console, user, flow)]


def _flow_of(console: Console, loop: HumanLoop) -> FlowDefinition | None:
    try:
        return console.api.flows.get(loop.flow_definition_arn)
    except FlowNotFound:
        return None


def _loop_for(console: Console, user: str, name: str) -> tuple[HumanLoop, FlowDefinition | None]:
    """The loop and its flow (None once deleted); _Refused if there is no such loop or the user
    may not review it."""
    if console.api.loops is None or console.api.flows is None:
        raise _Refused(404, "This server does not run human review.")
    try:
        loop = console.api.loops.get(name)
    except LoopNotFound:
        raise _Refused(404, f"There is no human loop named {name}.") from None
    flow = _flow_of(console, loop)
    if not _may_review(console, user, flow):
        raise _Refused(403, f"You are not in the work team that reviews the human loop {name}.")
    return loop, flow


def _next_open(console: Console, user: str, after: str) -> str | None:
    """The oldest loop (not ``after``) the user may work on now."""
    teams = console.settings.review_teams
    arns = None if teams is None else [flow.arn for flow in _reviewable_flows(console, user)]
    for loop in console.api.loops.open_loops(user, flow_arns=arns, limit=5):
        if loop.name != after:
            return loop.name
    return None


# The pages' data (blocking: SQLite).


def _flow_group(flow: FlowDefinition | None, loop: HumanLoop | None = None) -> dict[str, Any]:
    if flow is None:
        return {
            "name": loop.flow_name if loop else "",
            "title": "",
            "description": "",
            "taskCount": loop.task_count if loop else 0,
            "timeLimit": _duration(loop.time_limit_secs) if loop else "",
            "deleted": True,
            "loops": [],
        }
    return {
        "name": flow.name,
        "title": flow.task_title,
        "description": flow.task_description,
        "taskCount": flow.task_count,
        "timeLimit": _duration(flow.time_limit_secs),
        "deleted": False,
        "loops": [],
    }


def _open_view(console: Console, user: str) -> dict[str, Any]:
    loops_store = console.api.loops
    flows = _reviewable_flows(console, user)
    teams = console.settings.review_teams
    groups = {flow.arn: _flow_group(flow) for flow in flows}
    arns = None if teams is None else list(groups)
    now = time.time()
    found = loops_store.open_loops(user, flow_arns=arns, limit=OPEN_LISTED)
    for loop in found:
        group = groups.get(loop.flow_definition_arn)
        if group is None:  # a deleted flow's loop (no teams file)
            group = groups[loop.flow_definition_arn] = _flow_group(None, loop)
        mine = [claim for claim in loops_store.claims(loop.name) if claim.reviewer == user]
        group["loops"].append(
            {
                "name": loop.name,
                "age": _duration(now - loop.created),
                "left": _duration(loop.expires_at - now),
                "answers": len(loop.answers),
                "taskCount": loop.task_count,
                "claimLeft": _duration(mine[0].expires_at - now) if mine else "",
            }
        )
    busy = [group for group in groups.values() if group["loops"]]
    idle = [group for group in groups.values() if not group["loops"]]
    return {
        "groups": busy,
        "idle": idle,
        "open_count": len(found),
        "first_task": found[0].name if found else "",
        "flow_count": len(flows),
    }


def _answer_rows(loop: HumanLoop) -> list[dict[str, Any]]:
    rows = []
    for entry in loop.answers:
        content = entry.get("answerContent")
        labels = _answered_labels(content) if isinstance(content, Mapping) else None
        rows.append(
            {
                "worker": entry.get("workerId", ""),
                "submitted": entry.get("submissionTime", ""),
                "seconds": entry.get("timeSpentInSeconds"),
                "labels": labels,
                "raw": "" if labels is not None else repr(content),
            }
        )
    return rows


def _completed_view(console: Console, user: str) -> dict[str, Any]:
    groups = []
    total = 0
    for flow in _reviewable_flows(console, user):
        found: list[HumanLoop] = []
        token = None
        for _ in range(20):  # the newest first, until enough are found
            listed, token = console.api.loops.list(
                flow.arn, sort_order="Descending", max_results=100, next_token=token
            )
            found.extend(loop for loop in listed if loop.status == _COMPLETED)
            if not token or len(found) >= COMPLETED_PER_FLOW:
                break
        found = sorted(found, key=lambda loop: loop.completed or 0, reverse=True)
        group = _flow_group(flow)
        group["loops"] = [
            {
                "name": loop.name,
                "created": a2i_time(loop.created),
                "completed": a2i_time(loop.completed) if loop.completed else "",
                "outputUri": loop.output_uri or "",
                "answers": _answer_rows(loop),
            }
            for loop in found[:COMPLETED_PER_FLOW]
        ]
        total += len(group["loops"])
        if group["loops"]:
            groups.append(group)
    return {"groups": groups, "completed_count": total}


def _image_view(loop: HumanLoop) -> dict[str, str] | None:
    image = loop_image(loop.input_content)
    if image is None:
        return None
    if image["kind"] == "bytes":
        return {"url": f"/console/review/{loop.name}/image", "ref": ""}
    query = urlencode({"ref": image["ref"], "size": IMAGE_SIZE})
    return {"url": f"/console/thumbnail?{query}", "ref": image["ref"]}


def _task_view(console: Console, user: str, name: str) -> tuple[int, dict[str, Any]]:
    """The task page's status and context: a claimed task, or the loop read-only (with why)."""
    loop, flow = _loop_for(console, user, name)
    loops_store = console.api.loops
    claim = None
    claim_needed = False
    unavailable = ""
    status = 200
    if loop.status != _IN_PROGRESS:
        unavailable = f"This human loop is {loop.status}: it takes no more answers."
    else:
        # Showing the page claims nothing: a free slot is claimed by the page's script, a POST
        # with the CSRF token (review_pages.claim), and the page shown again with the claim.
        live = loops_store.claims(name)
        claim = next((held for held in live if held.reviewer == user), None)
        answered = any(entry.get("workerId") == user for entry in loop.answers)
        free = loop.task_count - len(loop.answers) - len(live)
        claim_needed = claim is None and not answered and free > 0
        try:
            if claim is None and not claim_needed:
                # Says why not (the slots are taken, or this reviewer answered already).
                loops_store.claim(
                    name, user, time_limit_secs=flow.time_limit_secs if flow else None
                )
        except LoopNotOpen as exc:
            status = 409
            loop = loops_store.get(name)
            if any(entry.get("workerId") == user for entry in loop.answers):
                unavailable = "You have answered this task already: it waits for other reviewers."
                status = 200
            elif loop.status != _IN_PROGRESS:
                unavailable = f"This human loop is {loop.status}: it takes no more answers."
            else:
                unavailable = f"{exc} It may return to the queue when a claim runs out."
    labels = loop_labels(loop.input_content)
    now = time.time()
    context: dict[str, Any] = {
        "loop": {
            "name": loop.name,
            "status": loop.status,
            "created": a2i_time(loop.created),
            "age": _duration(now - loop.created),
            "left": _duration(loop.expires_at - now),
            "answers": len(loop.answers),
            "taskCount": loop.task_count,
            "outputUri": loop.output_uri or "",
        },
        "flow": _flow_group(flow, loop),
        "image": _image_view(loop),
        "labels": labels,
        "reasons": _reasons(loop),
        "content_types": _content_types(loop.input_content),
        "answers": _answer_rows(loop) if loop.status != _IN_PROGRESS else [],
        "unavailable": unavailable,
        "present_at": PRESENT_AT,
        "data": None,
        "claim_url": f"/console/review/{loop.name}/claim" if claim_needed else "",
    }
    if claim is not None:
        context["data"] = {
            "loopName": loop.name,
            "answerUrl": f"/console/review/{loop.name}/answer",
            "claimUrl": f"/console/review/{loop.name}/claim",
            "listUrl": "/console/review",
            "labels": labels,
            "taxonomy": [
                {"name": e["name"], "parent": e["parent"], "level": e["level"]}
                for e in console.taxonomy
            ],
            "claim": {"claimedAt": claim.claimed_at, "expiresAt": claim.expires_at},
            "now": now,
            "user": user,
        }
    return status, context


def _write_now(console: Console, loop: HumanLoop) -> str:
    """Writes a completed loop's output.json now; "" when that failed (the sweeper tries
    again)."""
    try:
        uri = write_output(loop, None, console.api.runner.settings.s3)
        console.api.loops.set_output(loop.name, uri)
    except Exception:
        _LOGGER.exception(
            "Writing the output of human loop %s failed; the sweeper retries", loop.name
        )
        return ""
    return uri


def _error(message: str, status: int, **more: Any) -> JSONResponse:
    return JSONResponse({"error": message, **more}, status_code=status)


def routes(console: Console) -> list[Route]:
    def enabled() -> bool:
        return console.api.loops is not None and console.api.flows is not None

    @page(console)
    async def review_list(request: Request) -> Response:
        user = request.session["user"]
        completed = request.query_params.get("status") == _COMPLETED
        context: dict[str, Any] = {
            "status": "completed" if completed else "open",
            "enabled": enabled(),
            "groups": [],
            "idle": [],
            "open_count": 0,
            "completed_count": 0,
            "first_task": "",
            "flow_count": 0,
            "teams": console.settings.review_teams is not None,
            "notice": request.session.pop(_NOTICE, None) or "",
        }
        if context["enabled"]:
            if completed:
                context.update(await run_in_threadpool(_completed_view, console, user))
            else:
                context.update(await run_in_threadpool(_open_view, console, user))
        return console.render(request, "review.html", section="review", **context)

    @page(console)
    async def task(request: Request) -> Response:
        name = request.path_params["loop_name"]
        try:
            status, context = await run_in_threadpool(
                _task_view, console, request.session["user"], name
            )
        except _Refused as refused:
            return console.error_page(request, refused.status, "Human review", refused.message)
        return console.render(request, "review_task.html", status, section="review", **context)

    @page(console)
    async def image(request: Request) -> Response:
        name = request.path_params["loop_name"]

        def make() -> bytes:
            loop, _ = _loop_for(console, request.session["user"], name)
            data = _image_bytes(loop.input_content)
            if data is None:
                raise ImageUnavailable(f"The human loop {name} carries no image bytes.")
            return render_thumbnail(data, IMAGE_SIZE, f"The image of the human loop {name}")

        try:
            data = await run_in_threadpool(make)
        except _Refused as refused:
            return Response(refused.message, refused.status, media_type="text/plain")
        except ImageUnavailable as exc:
            return Response(str(exc), 404, media_type="text/plain")
        headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"}
        return Response(data, media_type="image/jpeg", headers=headers)

    @json_action(console)
    async def answer(request: Request) -> Response:
        name = request.path_params["loop_name"]
        user = request.session["user"]
        try:
            body = await json_body(request)
        except ValueError as exc:
            return _error(str(exc), 400)

        def record() -> Response:
            try:
                loop, _ = _loop_for(console, user, name)
            except _Refused as refused:
                return _error(refused.message, refused.status)
            try:
                content = answer_content(loop_labels(loop.input_content), body.get("labels"))
            except ValueError as exc:
                return _error(str(exc), 400)
            try:
                done = console.api.loops.answer(name, user, content)
            except LoopNotOpen as exc:
                current = console.api.loops.get(name)
                answered = any(entry.get("workerId") == user for entry in current.answers)
                if current.status == _IN_PROGRESS and not answered:
                    return _error(
                        "Your claim on this task ran out, and the task went back to the queue: "
                        "nothing was saved. Claim it again to answer.",
                        409,
                        claimAgain=True,
                    )
                return _error(str(exc), 409)
            uri = done.output_uri or ""
            if done.status == _COMPLETED and not uri:
                uri = _write_now(console, done)
            following = _next_open(console, user, name)
            if following is None:
                request.session[_NOTICE] = (
                    f"Your answer to {name} is saved. There is no other open task for you."
                )
            return JSONResponse(
                {
                    "status": done.status,
                    "answers": len(done.answers),
                    "taskCount": done.task_count,
                    "outputUri": uri,
                    "answer": content,
                    "next": f"/console/review/{following}" if following else None,
                }
            )

        return await run_in_threadpool(record)

    @json_action(console)
    async def claim(request: Request) -> Response:
        name = request.path_params["loop_name"]
        user = request.session["user"]

        def take() -> Response:
            try:
                _, flow = _loop_for(console, user, name)
            except _Refused as refused:
                return _error(refused.message, refused.status)
            try:
                held = console.api.loops.claim(
                    name, user, time_limit_secs=flow.time_limit_secs if flow else None
                )
            except LoopNotOpen as exc:
                return _error(str(exc), 409)
            return JSONResponse(
                {
                    "claim": {"claimedAt": held.claimed_at, "expiresAt": held.expires_at},
                    "now": time.time(),
                }
            )

        return await run_in_threadpool(take)

    return [
        Route("/review", review_list, methods=["GET"]),
        Route("/review/{loop_name}", task, methods=["GET"]),
        Route("/review/{loop_name}/image", image, methods=["GET"]),
        Route("/review/{loop_name}/answer", answer, methods=["POST"]),
        Route("/review/{loop_name}/claim", claim, methods=["POST"]),
    ]

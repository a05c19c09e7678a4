"""Verify predictions: a reviewer confirms or corrects a finished job's predicted labels, image
by image or a grid page at a time, and exports the verified ground truth an adapter trains on.

The page (``verify.html`` and ``static/verify.js``) is a frame the server renders; what the
script shows (the page's items, their stored decisions, the taxonomy, the job's custom labels,
the counts) is embedded in it as JSON, and paging or stepping from image to image fetches the
same data from ``verify/items.json`` without a reload.

Every decision is saved the moment it is made (``POST decisions``), as a compare-and-set on
the image's revision in ``VerificationStore``: two reviewers on one job never overwrite each
other silently, the second is told (``stale``) and shown what the first saved. Each decision is
first checked with ``check_decision`` against the image's results line, so what is stored can
always be exported: the statistics (``verification.json``), the ground truth
(``groundtruth.jsonl``) and the export to S3 go through ``training.verification_report``, the
same code as ``python -m training.verification``, and the exported ``verifications.jsonl`` given
to that command (with the job's custom labels as ``--custom_label``) makes the same manifest.

Labels an adapter predicted that are not in the taxonomy are declared as the job's custom labels
(under the ``ParentName`` the results give them) when the page opens, an export is made, or a
decision on such an image is saved; the export's notice gives the command line, its
``--custom_label`` flags included, that turns the exported verifications into the same manifest.

``verification_state`` and ``export_ground_truth`` (coroutines: their SQLite and S3 work runs in
the thread pool) are shared with the *Train an adapter* page.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from model.taxonomy import TAXONOMY, custom_label
from service.console.decisions import (
    Decision,
    InvalidDecision,
    StaleDecision,
    can_train,
    check_decision,
    training_readiness,
    verification_report,
)
from service.console.jobs_pages import (
    NoResults,
    ensure_indexed,
    finished_job,
    job_view,
    query_filters,
    query_offset,
)
from service.console.results_index import ResultFilters, ResultItem
from service.console.web import (
    SECURITY_HEADERS,
    Console,
    action,
    api_message,
    json_action,
    json_body,
    json_page,
    page,
)
from service.errors import RequestError
from training.verification_report import VerificationReport

__all__ = [
    "GRID_PAGE",
    "MAX_DECISIONS_PER_REQUEST",
    "command_line",
    "export_ground_truth",
    "export_verification",
    "routes",
    "verification_lines",
    "verification_state",
]

GRID_PAGE = 48  # images per grid page
MAX_DECISIONS_PER_REQUEST = 500
_NOTICE = "verify_notice"  # the session key of the notice shown after an export


# Shared with the Train an adapter page.


def _verification_state(
    console: Console, job_id: str, threshold: float
) -> tuple[VerificationReport, list[dict[str, Any]]]:
    decisions = list(console.decisions.decisions(job_id))
    documents = console.index.documents(job_id, [d.source_ref for d in decisions])
    report = verification_report(
        documents,
        decisions,
        confidence_threshold=threshold,
        custom_labels=console.decisions.custom_labels(job_id),
    )
    return report, training_readiness(report)


async def verification_state(
    console: Console, job_id: str, threshold: float
) -> tuple[VerificationReport, list[dict[str, Any]]]:
    """The job's verification report over every stored decision, and its
    ``training_readiness`` rows (per label: TP, FP, FN, what is missing for the training
    minimum). ``threshold`` is the job's MinConfidence."""
    return await run_in_threadpool(_verification_state, console, job_id, threshold)


def verification_lines(decisions: Sequence[Decision]) -> bytes:
    """The decisions as the verification lines ``python -m training.verification`` reads."""
    return b"".join(
        json.dumps(d.to_line(), ensure_ascii=False).encode("utf-8") + b"\n" for d in decisions
    )


def _export_uri(console: Console, job_id: str, name: str) -> tuple[str, str]:
    key = console.settings.key("verifications", job_id, name)
    return key, console.settings.uri("verifications", job_id, name)


def _export(console: Console, job_id: str, threshold: float) -> tuple[str, str]:
    _declare_adapter_labels(console, job_id)
    decisions = list(console.decisions.decisions(job_id))
    if not decisions:
        raise ValueError("Nothing to export: no image of this job has been verified yet.")
    documents = console.index.documents(job_id, [d.source_ref for d in decisions])
    report = verification_report(
        documents,
        decisions,
        confidence_threshold=threshold,
        custom_labels=console.decisions.custom_labels(job_id),
    )
    if report.errors:
        count = len(report.errors)
        raise ValueError(
            f"{count} decision{'' if count == 1 else 's'} cannot be exported: {report.errors[0]}"
        )
    bucket = console.settings.storage_bucket
    written = []
    for name, data in (
        ("groundtruth.jsonl", report.ground_truth_jsonl()),
        ("verifications.jsonl", verification_lines(decisions)),
    ):
        key, uri = _export_uri(console, job_id, name)
        console.api.s3_client.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType="application/jsonl"
        )
        written.append(uri)
    return written[0], written[1]


async def export_verification(console: Console, job_id: str, threshold: float) -> tuple[str, str]:
    """Writes the job's ``groundtruth.jsonl`` and ``verifications.jsonl`` to the console's
    storage (``verifications/<job id>/``); returns their S3 URIs. ValueError (with a message for
    the reviewer) when nothing is verified yet or a decision cannot be exported."""
    return await run_in_threadpool(_export, console, job_id, threshold)


async def export_ground_truth(console: Console, job_id: str, threshold: float) -> str:
    """Exports the job's verified ground truth (see ``export_verification``); returns the S3 URI
    of ``groundtruth.jsonl``. ValueError when there is nothing to export."""
    return (await export_verification(console, job_id, threshold))[0]


# What the script is given.


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _item_json(item: ResultItem, threshold: float, decision: Decision | None) -> dict[str, Any]:
    labels = []
    for entry in item.labels:
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
            continue
        name = entry["Name"]
        confidence = _number(entry.get("Confidence"))
        known = TAXONOMY.get(name)
        parent = known.parent if known else entry.get("ParentName")
        level = known.level if known else entry.get("TaxonomyLevel")
        labels.append(
            {
                "name": name,
                "confidence": confidence,
                "parent": parent if isinstance(parent, str) else "",
                "level": level if isinstance(level, int) and not isinstance(level, bool) else 1,
                "predicted": confidence is not None and confidence >= threshold,
            }
        )
    types = [
        {"name": entry["Name"], "confidence": _number(entry.get("Confidence"))}
        for entry in item.content_types
        if isinstance(entry, dict) and isinstance(entry.get("Name"), str)
    ]
    return {
        "position": item.position,
        "sourceRef": item.source_ref,
        "labels": labels,
        "contentTypes": types,
        "decision": None if decision is None else decision.to_json(),
    }


def _custom_json(custom: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "parent": parent, "level": custom_label(name, parent).level}
        for name, parent in custom.items()
    ]


def _stats_json(console: Console, job_id: str, threshold: float) -> dict[str, Any]:
    report, rows = _verification_state(console, job_id, threshold)
    ready, reason = can_train(report)
    return {
        "reviewed": report.images_reviewed,
        "images": console.index.image_count(job_id),
        "labels": rows,
        "canTrain": ready,
        "reason": reason,
        "errors": [str(error) for error in report.errors[:20]],
    }


def _view_data(
    console: Console,
    job: dict[str, Any],
    filters: ResultFilters,
    *,
    offset: int,
    position: int | None,
) -> dict[str, Any]:
    """The data of a grid page (``position`` None) or of the one-image view. Blocking."""
    job_id = job["id"]
    threshold = job["min_confidence"]
    neighbours = None
    if position is None:
        found = console.index.page(job_id, filters, offset=offset, limit=GRID_PAGE)
        items, total = found.items, found.total
    else:
        item = console.index.item(job_id, position)
        items = [item] if item is not None else []
        previous, following = console.index.neighbours(job_id, position, filters)
        neighbours = {"previous": previous, "next": following}
        total = console.index.page(job_id, filters, offset=0, limit=0).total
    decisions = console.decisions.get(job_id, [item.source_ref for item in items])
    return {
        "view": "grid" if position is None else "image",
        "items": [_item_json(i, threshold, decisions.get(i.source_ref)) for i in items],
        "total": total,
        "offset": offset,
        "limit": GRID_PAGE,
        "position": position,
        "neighbours": neighbours,
        "filters": filters.to_query(),
        "customLabels": _custom_json(console.decisions.custom_labels(job_id)),
        "reviewed": console.decisions.count(job_id),
        "images": console.index.image_count(job_id),
    }


# Reading a request.


def _position(request: Request) -> int | None:
    value = request.query_params.get("position", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _merged(documents: list[tuple[int, dict]]) -> dict[str, dict]:
    """Each source-ref's results line; lines sharing one are merged (their labels together),
    as the ground-truth builder takes them for one image."""
    merged: dict[str, dict] = {}
    for _, document in documents:
        ref = document["source-ref"]
        if ref not in merged:
            merged[ref] = document
            continue
        first = merged[ref].get("detect-moderation-labels")
        more = document.get("detect-moderation-labels")
        if isinstance(first, dict) and isinstance(more, dict):
            labels = [*first.get("ModerationLabels", []), *more.get("ModerationLabels", [])]
            merged[ref] = {
                **merged[ref],
                "detect-moderation-labels": {**first, "ModerationLabels": labels},
            }
    return merged


def _declare_predicted(console: Console, job_id: str, document: Mapping[str, Any]) -> None:
    """Declares the adapter's labels of a results line that the job does not know yet, under
    the ParentName the line gives them (a bad declaration is left for check_decision to
    report)."""
    response = document.get("detect-moderation-labels")
    entries = response.get("ModerationLabels") if isinstance(response, dict) else None
    if not isinstance(entries, list):
        return
    declared = console.decisions.custom_labels(job_id)
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
            continue
        name = entry["Name"]
        if name in TAXONOMY or name in declared:
            continue
        parent = entry.get("ParentName") or ""
        try:
            console.decisions.declare_custom_label(
                job_id, name, parent if isinstance(parent, str) else ""
            )
        except InvalidDecision:
            continue
        declared = console.decisions.custom_labels(job_id)


def _declare_adapter_labels(console: Console, job_id: str) -> None:
    """Declares every label of the job's results that is neither of the taxonomy nor declared
    (an adapter's own), under the ParentName of a results line that has it: the exported
    verifications then go with the job's ``--custom_label`` flags to the command line."""
    declared = console.decisions.custom_labels(job_id)
    for name in console.index.label_names(job_id):
        if name in TAXONOMY or name in declared:
            continue
        for item in console.index.page(job_id, ResultFilters(label=name), limit=1).items:
            _declare_predicted(console, job_id, item.document)
        declared = console.decisions.custom_labels(job_id)


def command_line(console: Console, job_id: str, threshold: float, verifications: str) -> str:
    """The ``python -m training.verification`` command that makes the job's ground truth from
    its exported ``verifications`` (an S3 URI), with the job's custom labels."""
    record = console.api.registry.get(job_id)
    bucket = record.request["OutputConfig"]["S3Bucket"]
    words = [
        "python",
        "-m",
        "training.verification",
        "--results",
        f"s3://{bucket}/{record.results_key}",
        "--verifications",
        verifications,
        "--output",
        "groundtruth.jsonl",
        "--confidence_threshold",
        f"{threshold:g}",
    ]
    custom = console.decisions.custom_labels(job_id)
    for name, parent in custom.items():
        words += ["--custom_label", f"{name}={parent}"]
    command = shlex.join(words)
    unsayable = [name for name in custom if "=" in name]
    if unsayable:
        # NAME=PARENT splits at the first "=": such a name cannot be declared on the command line.
        command += f"  (the command line cannot declare {', '.join(map(repr, unsayable))}: "
        command += 'a --custom_label name holds no "=")'
    return command


def _entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's decisions; ValueError for a malformed body."""
    entries = body.get("decisions")
    if not isinstance(entries, list) or not entries:
        raise ValueError('"decisions" must be a non-empty list.')
    if len(entries) > MAX_DECISIONS_PER_REQUEST:
        raise ValueError(f"At most {MAX_DECISIONS_PER_REQUEST} decisions per request.")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("sourceRef"), str):
            raise ValueError('Each decision must be an object with a "sourceRef" string.')
    return entries


def _save(
    console: Console, job_id: str, threshold: float, reviewer: str, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """Checks and saves each decision; what was saved, stale or invalid. Blocking."""
    saved: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    documents = _merged(console.index.documents(job_id, [e["sourceRef"] for e in entries]))
    for entry in entries:
        ref = entry["sourceRef"]
        labels = entry.get("labels")
        revision = entry.get("expectedRevision")
        document = documents.get(ref)
        try:
            if document is None:
                raise InvalidDecision(f"{ref} is not an image of this job")
            if not isinstance(labels, dict):
                raise InvalidDecision('"labels" must be an object such as {"Alcohol": true}')
            if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
                raise InvalidDecision('"expectedRevision" must be the revision read (0: none)')
            _declare_predicted(console, job_id, document)
            check_decision(
                document,
                labels,
                confidence_threshold=threshold,
                custom_labels=console.decisions.custom_labels(job_id),
            )
            decision = console.decisions.decide(
                job_id, ref, labels, reviewer=reviewer, expected_revision=revision
            )
        except InvalidDecision as exc:
            invalid.append({"sourceRef": ref, "message": str(exc)})
        except StaleDecision as exc:
            current = None if exc.current is None else exc.current.to_json()
            stale.append({"sourceRef": ref, "current": current})
        else:
            saved.append(decision.to_json())
    return {
        "saved": saved,
        "stale": stale,
        "invalid": invalid,
        "reviewed": console.decisions.count(job_id),
        "customLabels": _custom_json(console.decisions.custom_labels(job_id)),
    }


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def routes(console: Console) -> list[Route]:
    async def load_job(job_id: str) -> dict[str, Any]:
        """The job's view; RequestError if there is no such job."""
        return job_view(await console.call("GetMediaAnalysisJob", {"JobId": job_id}))

    async def json_job(job_id: str) -> dict[str, Any] | JSONResponse:
        """The job, indexed; or the JSON error to answer."""
        try:
            job = await load_job(job_id)
        except RequestError as exc:
            return _error(api_message(exc), 404)
        if not await ensure_indexed(console, job_id):
            return _error(f"The job is {job['status']}: it has no results to verify.", 409)
        return job

    @page(console)
    async def verify(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await finished_job(console, request, "Verify predictions")
        except NoResults as missing:
            return missing.response
        filters, filter_error = query_filters(request)
        offset, position = query_offset(request), _position(request)
        threshold = job["min_confidence"]

        def gather() -> dict[str, Any]:
            _declare_adapter_labels(console, job_id)
            data = _view_data(console, job, filters, offset=offset, position=position)
            data["stats"] = _stats_json(console, job_id, threshold)
            return data

        data = await run_in_threadpool(gather)
        if position is not None and not data["items"]:
            return console.error_page(
                request, 404, "Verify predictions", f"The job has no results line {position}."
            )
        data.update(
            jobId=job_id,
            jobName=job["name"],
            threshold=threshold,
            user=request.session.get("user", ""),
            taxonomy=[
                {"name": e["name"], "parent": e["parent"], "level": e["level"]}
                for e in console.taxonomy
            ],
        )
        notice = request.session.pop(_NOTICE, None)
        return console.render(
            request,
            "verify.html",
            section="jobs",
            job=job,
            data=data,
            filters=filters,
            query=filters.to_query(),
            filter_error=filter_error,
            labels=console.taxonomy,
            seen_labels=console.index.label_names(job_id),
            content_types=console.index.content_type_names(job_id),
            notice=notice if isinstance(notice, dict) else None,
            grid_page=GRID_PAGE,
        )

    @json_page(console)
    async def items(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await json_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        filters, problem = query_filters(request)
        if problem:
            return _error(problem, 400)
        offset, position = query_offset(request), _position(request)
        data = await run_in_threadpool(
            _view_data, console, job, filters, offset=offset, position=position
        )
        if position is not None and not data["items"]:
            return _error(f"The job has no results line {position}.", 404)
        return JSONResponse(data)

    @json_action(console)
    async def decide(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            entries = _entries(await json_body(request))
        except ValueError as exc:
            return _error(str(exc), 400)
        job = await json_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        answer = await run_in_threadpool(
            _save, console, job_id, job["min_confidence"], request.session["user"], entries
        )
        return JSONResponse(answer)

    @json_action(console)
    async def withdraw(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            body = await json_body(request)
        except ValueError as exc:
            return _error(str(exc), 400)
        ref, revision = body.get("sourceRef"), body.get("expectedRevision")
        if not isinstance(ref, str) or not ref:
            return _error('"sourceRef" must be the image\'s source-ref.', 400)
        job = await json_job(job_id)
        if isinstance(job, JSONResponse):
            return job

        def take_back() -> Response:
            try:
                console.decisions.withdraw(
                    job_id, ref, reviewer=request.session["user"], expected_revision=revision
                )
            except StaleDecision as exc:
                current = None if exc.current is None else exc.current.to_json()
                return JSONResponse(
                    {"error": str(exc), "sourceRef": ref, "current": current}, status_code=409
                )
            except InvalidDecision as exc:
                return _error(str(exc), 400)
            return JSONResponse({"withdrawn": ref, "reviewed": console.decisions.count(job_id)})

        return await run_in_threadpool(take_back)

    @json_action(console)
    async def declare(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            body = await json_body(request)
        except ValueError as exc:
            return _error(str(exc), 400)
        job = await json_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        name, parent = body.get("name"), body.get("parent", "")
        parent = "" if parent is None else parent

        def add() -> Response:
            try:
                console.decisions.declare_custom_label(job_id, name, parent)
            except InvalidDecision as exc:
                return _error(str(exc), 400)
            custom = console.decisions.custom_labels(job_id)
            return JSONResponse({"customLabels": _custom_json(custom)})

        return await run_in_threadpool(add)

    @json_page(console)
    async def verification(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await json_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        stats = await run_in_threadpool(_stats_json, console, job_id, job["min_confidence"])
        return JSONResponse(stats)

    async def download(request: Request, name: str, make) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await finished_job(console, request, "Download")
        except NoResults as missing:
            return missing.response
        try:
            data = await run_in_threadpool(make, job_id, job["min_confidence"])
        except ValueError as exc:
            return console.error_page(request, 409, "Download", str(exc))
        filename = f"{name}-{job_id[:12]}.jsonl"
        return Response(
            data,
            media_type="application/jsonl",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    def ground_truth_bytes(job_id: str, threshold: float) -> bytes:
        report, _ = _verification_state(console, job_id, threshold)
        if report.errors:
            raise ValueError(
                f"{len(report.errors)} decision(s) cannot be exported: {report.errors[0]}"
            )
        return report.ground_truth_jsonl()

    def verifications_bytes(job_id: str, threshold: float) -> bytes:
        return verification_lines(list(console.decisions.decisions(job_id)))

    @page(console)
    async def ground_truth(request: Request) -> Response:
        return await download(request, "groundtruth", ground_truth_bytes)

    @page(console)
    async def verifications(request: Request) -> Response:
        return await download(request, "verifications", verifications_bytes)

    @action(console)
    async def export(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await finished_job(console, request, "Export")
        except NoResults as missing:
            return missing.response
        try:
            truth, lines = await export_verification(console, job_id, job["min_confidence"])
        except ValueError as exc:
            notice = {"kind": "error", "text": str(exc)}
        except Exception as exc:  # S3 refused or unreachable: say so, keep the page
            notice = {"kind": "error", "text": f"The export could not be written: {exc}"}
        else:
            command = await run_in_threadpool(
                command_line, console, job_id, job["min_confidence"], lines
            )
            notice = {
                "kind": "ok",
                "text": "Exported.",
                "groundTruth": truth,
                "verifications": lines,
                "command": command,
            }
        request.session[_NOTICE] = notice
        form = await request.form()
        back = str(form.get("back", ""))
        target = f"/console/jobs/{job_id}/verify"
        if back.startswith("?") and "\n" not in back and "\r" not in back:
            target += back
        return RedirectResponse(target, status_code=303)

    base = "/jobs/{job_id}"
    return [
        Route(f"{base}/verify", verify, methods=["GET"]),
        Route(f"{base}/verify/items.json", items, methods=["GET"]),
        Route(f"{base}/decisions", decide, methods=["POST"]),
        Route(f"{base}/decisions/withdraw", withdraw, methods=["POST"]),
        Route(f"{base}/custom-labels", declare, methods=["POST"]),
        Route(f"{base}/verification.json", verification, methods=["GET"]),
        Route(f"{base}/groundtruth.jsonl", ground_truth, methods=["GET"]),
        Route(f"{base}/verifications.jsonl", verifications, methods=["GET"]),
        Route(f"{base}/export", export, methods=["POST"]),
    ]

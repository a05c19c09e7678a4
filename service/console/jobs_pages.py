"""Bulk analysis pages: the jobs (newest first, paged), starting a job from a manifest in S3 or
from images uploaded from the computer, a job's page (its progress, refreshed while it runs),
and its results (thumbnails with labels, filters, the summary's errors), paged server-side from
the results index."""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from model.confidence import DEFAULT_MIN_CONFIDENCE
from service.console.images import UploadRefused, check_upload, unique_names
from service.console.results_index import ResultFilters, index_job
from service.console.web import Console, action, api_message, json_page, page
from service.errors import RequestError
from service.registry import ACTIVE_STATUSES
from service.review.bulk import FLOW_KEY
from storage.reading import split_s3_uri

__all__ = [
    "NoResults",
    "adapter_name",
    "ensure_indexed",
    "finished_job",
    "job_view",
    "query_filters",
    "query_offset",
    "routes",
]

JOBS_PER_PAGE = 20
RESULTS_PER_PAGE = 48
ERRORS_PER_PAGE = 50
_indexing = threading.Lock()


def adapter_name(arn: str | None) -> str:
    """``project / version`` of an adapter's ARN ("" for none)."""
    if not arn:
        return ""
    parts = arn.split(":", 5)[-1].split("/")
    if len(parts) >= 4 and parts[0] == "project" and parts[2] == "version":
        return f"{parts[1]} / {parts[3]}"
    return arn


def _flows(console: Console) -> list[dict[str, str]]:
    """The human review flow definitions a job may attach: ``[{"arn", "name"}]``."""
    store = console.api.flows
    if store is None:
        return []
    found, token = store.list(max_results=100)
    while token:
        more, token = store.list(max_results=100, next_token=token)
        found += more
    return [{"arn": flow.arn, "name": flow.name} for flow in found]


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the pages show of a GetMediaAnalysisJob answer."""
    config = job["OperationsConfig"].get("DetectModerationLabels", {})
    manifest = job["Input"]["S3Object"]
    output = job["OutputConfig"]
    return {
        "id": job["JobId"],
        "name": job.get("JobName", ""),
        "status": job["Status"],
        "active": job["Status"] in ACTIVE_STATUSES,
        "created": job["CreationTimestamp"],
        "completed": job.get("CompletionTimestamp"),
        "failure": job.get("FailureDetails"),
        "manifest": f"s3://{manifest['Bucket']}/{manifest['Name']}",
        "output": f"s3://{output['S3Bucket']}/{output.get('S3KeyPrefix', '')}",
        "min_confidence": config.get("MinConfidence", DEFAULT_MIN_CONFIDENCE),
        "adapter_arn": config.get("ProjectVersion", ""),
        "adapter": adapter_name(config.get("ProjectVersion")),
    }


async def ensure_indexed(console: Console, job_id: str) -> bool:
    """Whether the job's results are indexed, indexing them now if it SUCCEEDED and they are not
    (a job that ended before the console existed, or whose indexing failed)."""
    if console.index.is_indexed(job_id):
        return True
    record = console.api.registry.get(job_id)
    if record.status != "SUCCEEDED":
        return False

    def index() -> None:
        with _indexing:
            if not console.index.is_indexed(job_id):
                index_job(console.index, record, console.api.s3_client)

    await run_in_threadpool(index)
    return True


class NoResults(Exception):
    """The job of a page is missing or has no results yet; ``response`` is the page saying so."""

    def __init__(self, response: Response):
        super().__init__("no results")
        self.response = response


async def finished_job(console: Console, request: Request, title: str) -> dict[str, Any]:
    """The ``job_view`` of the job the request's path names, its results indexed; NoResults
    (with the error page: 404 no such job, 409 not SUCCEEDED) otherwise."""
    job_id = request.path_params["job_id"]
    try:
        job = job_view(await _job(console, job_id))
    except RequestError as exc:
        raise NoResults(console.error_page(request, 404, title, api_message(exc))) from None
    if not await ensure_indexed(console, job_id):
        message = f"The job is {job['status']}: it has no results yet."
        raise NoResults(console.error_page(request, 409, title, message))
    return job


async def _job(console: Console, job_id: str) -> dict[str, Any]:
    return await console.call("GetMediaAnalysisJob", {"JobId": job_id})


def routes(console: Console) -> list[Route]:
    async def trained_adapters() -> list[dict[str, str]]:
        from service.console.adapter_pages import trained_adapters

        return await trained_adapters(console)

    @page(console)
    async def jobs(request: Request) -> Response:
        params: dict[str, Any] = {"MaxResults": JOBS_PER_PAGE}
        token = request.query_params.get("token")
        if token:
            params["NextToken"] = token
        try:
            answer = await console.call("ListMediaAnalysisJobs", params)
        except RequestError as exc:
            return console.error_page(request, 400, "Jobs", api_message(exc))
        rows = []
        for job in answer["MediaAnalysisJobs"]:
            row = job_view(job)
            row["statistics"] = console.index.statistics(job["JobId"])
            rows.append(row)
        return console.render(
            request,
            "jobs.html",
            section="jobs",
            jobs=rows,
            next_token=answer.get("NextToken", ""),
            first_page=not token,
        )

    async def new_job_form(request: Request, status: int = 200, **values: Any) -> Response:
        defaults = {
            "job_name": "",
            "source": "upload",
            "manifest_uri": "",
            "adapter": "",
            "flow": "",
            "min_confidence": DEFAULT_MIN_CONFIDENCE,
            "error": "",
        }
        defaults.update(values)
        return console.render(
            request,
            "job_new.html",
            status,
            section="jobs",
            adapters=await trained_adapters(),
            flows=await run_in_threadpool(_flows, console),
            max_images=console.settings.max_upload_images,
            max_mb=round(console.settings.max_upload_bytes / 1024 / 1024, 1),
            **defaults,
        )

    @page(console)
    async def new_job(request: Request) -> Response:
        return await new_job_form(request)

    async def store_uploads(files: list[UploadFile]) -> tuple[str, str]:
        """The uploads checked, stored and listed in a manifest: (bucket, manifest key)."""
        settings = console.settings
        if not files:
            raise UploadRefused("Choose at least one image to upload.")
        if len(files) > settings.max_upload_images:
            raise UploadRefused(
                f"{len(files)} images were chosen; one upload takes at most "
                f"{settings.max_upload_images}."
            )
        checked = []
        for upload in files:
            data = await upload.read(settings.max_upload_bytes + 1)
            name = upload.filename or "image"
            checked.append(check_upload(name, data, max_bytes=settings.max_upload_bytes))
        folder = settings.key("uploads", secrets.token_hex(8))
        bucket = settings.storage_bucket
        lines = []

        def put_all() -> None:
            for item, name in zip(checked, unique_names(checked)):
                key = f"{folder}/{name}"
                content_type = "image/jpeg" if item.format == "JPEG" else "image/png"
                console.api.s3_client.put_object(
                    Bucket=bucket, Key=key, Body=item.data, ContentType=content_type
                )
                lines.append(json.dumps({"source-ref": f"s3://{bucket}/{key}"}) + "\n")
            console.api.s3_client.put_object(
                Bucket=bucket, Key=f"{folder}/manifest.jsonl", Body="".join(lines).encode()
            )

        await run_in_threadpool(put_all)
        return bucket, f"{folder}/manifest.jsonl"

    @action(console)
    async def start_job(request: Request) -> Response:
        settings = console.settings
        # The body's size is bounded before it is read (app.BodyLimit); the form was parsed
        # when its CSRF token was checked.
        form = await request.form(max_files=2 * settings.max_upload_images, max_fields=50)
        values = {
            "job_name": str(form.get("job_name", "")).strip(),
            "source": str(form.get("source", "upload")),
            "manifest_uri": str(form.get("manifest_uri", "")).strip(),
            "adapter": str(form.get("adapter", "")),
            "flow": str(form.get("flow", "")),
        }
        try:
            values["min_confidence"] = float(str(form.get("min_confidence", "")) or "nan")
        except ValueError:
            values["min_confidence"] = float("nan")
        if not 0 <= values["min_confidence"] <= 100:
            values["min_confidence"] = DEFAULT_MIN_CONFIDENCE
            return await new_job_form(
                request, 400, **values, error="Minimum confidence must be a number from 0 to 100."
            )
        try:
            if values["source"] == "manifest":
                uri = values["manifest_uri"]
                bucket, key = split_s3_uri(uri) if uri.startswith("s3://") else ("", "")
                if not bucket or not key:
                    raise UploadRefused(
                        "Give the manifest as an S3 URI: s3://bucket/path/manifest.jsonl."
                    )
            else:
                files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
                files = [f for f in files if f.filename]
                bucket, key = await store_uploads(files)
        except UploadRefused as exc:
            return await new_job_form(request, 400, **values, error=str(exc))
        config: dict[str, Any] = {"MinConfidence": values["min_confidence"]}
        if values["adapter"]:
            config["ProjectVersion"] = values["adapter"]
        params: dict[str, Any] = {
            "OperationsConfig": {"DetectModerationLabels": config},
            "Input": {"S3Object": {"Bucket": bucket, "Name": key}},
            "OutputConfig": {
                "S3Bucket": settings.storage_bucket,
                "S3KeyPrefix": settings.key("jobs"),
            },
            "ClientRequestToken": secrets.token_hex(16),
        }
        if values["job_name"]:
            params["JobName"] = values["job_name"]
        extensions = {FLOW_KEY: values["flow"]} if values["flow"] else None
        try:
            answer = await console.call("StartMediaAnalysisJob", params, extensions)
        except RequestError as exc:
            return await new_job_form(request, 400, **values, error=api_message(exc))
        return RedirectResponse(f"/console/jobs/{answer['JobId']}", status_code=303)

    @page(console)
    async def job_page(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = job_view(await _job(console, job_id))
        except RequestError as exc:
            return console.error_page(request, 404, "Job", api_message(exc))
        indexed = job["status"] == "SUCCEEDED" and await ensure_indexed(console, job_id)
        flow = console.api.registry.get(job_id).request.get(FLOW_KEY, "")
        return console.render(
            request,
            "job.html",
            section="jobs",
            job=job,
            progress=console.api.runner.progress(job_id),
            flow=flow.rsplit("/", 1)[-1] if flow else "",
            statistics=console.index.statistics(job_id) if indexed else None,
            reviewed=console.decisions.count(job_id) if indexed else 0,
            images=console.index.image_count(job_id) if indexed else 0,
        )

    @json_page(console)
    async def job_status(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = job_view(await _job(console, job_id))
        except RequestError as exc:
            return JSONResponse({"error": api_message(exc)}, status_code=404)
        progress = console.api.runner.progress(job_id)
        return JSONResponse(
            {
                "status": job["status"],
                "active": job["active"],
                "progress": {"done": progress[0], "total": progress[1]} if progress else None,
            }
        )

    @page(console)
    async def results(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await finished_job(console, request, "Results")
        except NoResults as missing:
            return missing.response
        filters, error = query_filters(request)
        offset = query_offset(request)
        errors_offset = query_offset(request, "errors_offset")
        found = console.index.page(job_id, filters, offset=offset, limit=RESULTS_PER_PAGE)
        errors, errors_total = console.index.errors(
            job_id, offset=errors_offset, limit=ERRORS_PER_PAGE
        )
        return console.render(
            request,
            "results.html",
            section="jobs",
            job=job,
            filters=filters,
            query=filters.to_query(),
            filter_error=error,
            page=found,
            labels=console.taxonomy,
            seen_labels=console.index.label_names(job_id),
            content_types=console.index.content_type_names(job_id),
            errors=errors,
            errors_total=errors_total,
            errors_offset=errors_offset,
            errors_per_page=ERRORS_PER_PAGE,
            statistics=console.index.statistics(job_id),
        )

    return [
        Route("/jobs", jobs, methods=["GET"]),
        Route("/jobs", start_job, methods=["POST"]),
        Route("/jobs/new", new_job, methods=["GET"]),
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Route("/jobs/{job_id}/status.json", job_status, methods=["GET"]),
        Route("/jobs/{job_id}/results", results, methods=["GET"]),
    ]


def query_offset(request: Request, name: str = "offset") -> int:
    """A paging offset of the query (0 when missing or not a number)."""
    value = request.query_params.get(name, "0")
    return int(value) if value.isdigit() else 0


def query_filters(request: Request) -> tuple[ResultFilters, str]:
    """The result filters of the query, and "" or what is wrong with them (then no filters)."""
    try:
        return ResultFilters.from_query(request.query_params), ""
    except ValueError as exc:
        return ResultFilters(), str(exc)

"""Adapter pages: the Custom Moderation projects and their versions (status, evaluation,
delete), and *Train an adapter* from a job's verified predictions.

Training goes through ``CreateProject`` and ``CreateProjectVersion`` (``Console.call``): the same
path, checks and errors as a boto3 client's request. The ground truth it trains on is exported
from the job's decisions by ``verify_pages.export_ground_truth``, the code the CLI shares.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.console.jobs_pages import NoResults, ensure_indexed, finished_job, job_view
from service.console.web import Console, action, api_message, page
from service.errors import RequestError
from training.label_selection import MIN_TEST_IMAGES

__all__ = [
    "all_pages",
    "find_version",
    "name_problem",
    "projects_with_versions",
    "read_summary",
    "routes",
    "s3_asset",
    "trained_adapters",
]

FEATURE = "CONTENT_MODERATION"
_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")


async def all_pages(console: Console, operation: str, params: dict, key: str) -> list[dict]:
    """Every item of a paginated operation's ``key``, all pages read."""
    items: list[dict] = []
    params = dict(params)
    while True:
        answer = await console.call(operation, params)
        items += answer[key]
        if not answer.get("NextToken"):
            return items
        params["NextToken"] = answer["NextToken"]


def _name_of(arn: str, marker: str) -> str:
    return arn.split(marker, 1)[1].split("/")[0]


async def projects_with_versions(console: Console, feature: str) -> list[dict[str, Any]]:
    """Every project of ``feature`` (CONTENT_MODERATION, CUSTOM_LABELS) with its versions,
    newest first, each with its ``Name``."""
    projects = await all_pages(
        console,
        "DescribeProjects",
        {"Features": [feature], "MaxResults": 100},
        "ProjectDescriptions",
    )
    for project in projects:
        project["Name"] = _name_of(project["ProjectArn"], ":project/")
        versions = await all_pages(
            console,
            "DescribeProjectVersions",
            {"ProjectArn": project["ProjectArn"], "MaxResults": 100},
            "ProjectVersionDescriptions",
        )
        for version in versions:
            version["Name"] = _name_of(version["ProjectVersionArn"], "/version/")
        project["Versions"] = versions
    return projects


async def find_version(
    console: Console, feature: str, project_name: str, version_name: str
) -> dict[str, Any] | None:
    """The version of that name in the project of that name (with its ``ProjectArn``)."""
    for project in await projects_with_versions(console, feature):
        if project["Name"] == project_name:
            for version in project["Versions"]:
                if version["Name"] == version_name:
                    return {**version, "ProjectArn": project["ProjectArn"]}
    return None


async def adapter_projects(console: Console) -> list[dict[str, Any]]:
    """Every Custom Moderation project with its versions, newest first."""
    return await projects_with_versions(console, FEATURE)


async def trained_adapters(console: Console) -> list[dict[str, str]]:
    """The adapters a job or DetectModerationLabels can use: ``[{"arn", "name"}]``."""
    found = []
    for project in await adapter_projects(console):
        for version in project["Versions"]:
            if version["Status"] == "TRAINING_COMPLETED":
                found.append(
                    {
                        "arn": version["ProjectVersionArn"],
                        "name": f"{project['Name']} / {version['Name']}",
                    }
                )
    return found


def read_summary(console: Console, version: dict[str, Any]) -> dict[str, Any] | None:
    """A version's evaluation summary (JSON in S3); None when it has none or it cannot be read."""
    location = version.get("EvaluationResult", {}).get("Summary", {}).get("S3Object")
    if not location:
        return None
    try:
        body = console.api.s3_client.get_object(Bucket=location["Bucket"], Key=location["Name"])
        return json.loads(body["Body"].read())
    except (ClientError, BotoCoreError, ValueError):
        return None


def _evaluation_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per adapted label: the base model's and the adapter's precision, recall and F1."""
    rows = []
    for entry in [
        *summary.get("Labels", []),
        {"Name": "All adapted labels", **summary.get("Overall", {})},
    ]:
        base, adapted = entry.get("BaseModel", {}), entry.get("Adapter", {})
        row = {"name": entry["Name"], "custom": entry.get("Custom", False), "metrics": []}
        for metric in ("Precision", "Recall", "F1Score"):
            before, after = base.get(metric), adapted.get(metric)
            change = ""
            if before is not None and after is not None:
                change = "better" if after > before else "worse" if after < before else ""
            row["metrics"].append({"base": before, "adapter": after, "change": change})
        rows.append(row)
    return rows


def routes(console: Console) -> list[Route]:
    @page(console)
    async def adapters(request: Request) -> Response:
        try:
            projects = await adapter_projects(console)
        except RequestError as exc:
            return console.error_page(request, 400, "Adapters", api_message(exc))
        return console.render(
            request,
            "adapters.html",
            section="adapters",
            projects=projects,
            notice=request.query_params.get("notice", ""),
        )

    @page(console)
    async def adapter(request: Request) -> Response:
        project_name = request.path_params["project"]
        version_name = request.path_params["version"]
        version = await find_version(console, FEATURE, project_name, version_name)
        if version is None:
            return console.error_page(
                request, 404, "Adapter", f"No adapter {project_name} / {version_name}."
            )
        summary = await run_in_threadpool(read_summary, console, version)
        return console.render(
            request,
            "adapter.html",
            section="adapters",
            project_name=project_name,
            version_name=version_name,
            version=version,
            summary=summary,
            evaluation=_evaluation_rows(summary) if summary else [],
        )

    @action(console)
    async def delete_version(request: Request) -> Response:
        version = await find_version(
            console, FEATURE, request.path_params["project"], request.path_params["version"]
        )
        if version is None:
            return console.error_page(request, 404, "Adapter", "No such adapter.")
        try:
            await console.call(
                "DeleteProjectVersion", {"ProjectVersionArn": version["ProjectVersionArn"]}
            )
        except RequestError as exc:
            return console.error_page(request, 400, "Adapter", api_message(exc))
        return RedirectResponse("/console/adapters?notice=Adapter+deleted.", status_code=303)

    @action(console)
    async def delete_project(request: Request) -> Response:
        name = request.path_params["project"]
        projects = [p for p in await adapter_projects(console) if p["Name"] == name]
        if not projects:
            return console.error_page(request, 404, "Adapter project", f"No project {name}.")
        try:
            await console.call("DeleteProject", {"ProjectArn": projects[0]["ProjectArn"]})
        except RequestError as exc:
            return console.error_page(request, 400, "Adapter project", api_message(exc))
        return RedirectResponse("/console/adapters?notice=Project+deleted.", status_code=303)

    async def train_page(request: Request, status: int = 200, **values: Any) -> Response:
        from service.console.verify_pages import verification_state

        job_id = request.path_params["job_id"]
        try:
            job = await finished_job(console, request, "Train an adapter")
        except NoResults as missing:
            return missing.response
        report, rows = await verification_state(console, job_id, job["min_confidence"])
        ready = any(row["meets_training_minimum"] for row in rows)
        jobs = await console.call("ListMediaAnalysisJobs", {"MaxResults": 100})
        test_jobs = [
            {**job_view(other), "reviewed": console.decisions.count(other["JobId"])}
            for other in jobs["MediaAnalysisJobs"]
            if other["JobId"] != job_id and other["Status"] == "SUCCEEDED"
        ]
        test_jobs = [other for other in test_jobs if other["reviewed"]]
        defaults = {
            "project": "",
            "new_project": "",
            "version_name": "",
            "test_set": "auto",
            "test_job": "",
            "error": "",
        }
        defaults.update(values)
        return console.render(
            request,
            "train.html",
            status,
            section="jobs",
            job=job,
            rows=rows,
            ready=ready,
            reviewed=report.images_reviewed,
            projects=await adapter_projects(console),
            test_jobs=test_jobs,
            min_test_images=MIN_TEST_IMAGES,
            **defaults,
        )

    @page(console)
    async def train_form(request: Request) -> Response:
        return await train_page(request)

    @action(console)
    async def train(request: Request) -> Response:
        from service.console.verify_pages import export_ground_truth

        job_id = request.path_params["job_id"]
        form = await request.form()
        values = {
            name: str(form.get(name, "")).strip()
            for name in ("project", "new_project", "version_name", "test_set", "test_job")
        }
        project_name = values["new_project"] if values["project"] == "" else values["project"]
        problem = name_problem(project_name, values["version_name"])
        if problem:
            return await train_page(request, 400, **values, error=problem)
        try:
            job = job_view(await console.call("GetMediaAnalysisJob", {"JobId": job_id}))
            training_uri = await export_ground_truth(console, job_id, job["min_confidence"])
            if values["test_set"] == "job":
                test_job = job_view(
                    await console.call("GetMediaAnalysisJob", {"JobId": values["test_job"]})
                )
                await ensure_indexed(console, test_job["id"])
                testing: dict[str, Any] = {
                    "Assets": [
                        s3_asset(
                            await export_ground_truth(
                                console, test_job["id"], test_job["min_confidence"]
                            )
                        )
                    ]
                }
            else:
                testing = {"AutoCreate": True}
            existing = [p for p in await adapter_projects(console) if p["Name"] == project_name]
            if existing:
                project_arn = existing[0]["ProjectArn"]
            else:
                created = await console.call(
                    "CreateProject",
                    {"ProjectName": project_name, "Feature": FEATURE, "AutoUpdate": "DISABLED"},
                )
                project_arn = created["ProjectArn"]
            await console.call(
                "CreateProjectVersion",
                {
                    "ProjectArn": project_arn,
                    "VersionName": values["version_name"],
                    "OutputConfig": {
                        "S3Bucket": console.settings.storage_bucket,
                        "S3KeyPrefix": console.settings.key("adapters"),
                    },
                    "TrainingData": {"Assets": [s3_asset(training_uri)]},
                    "TestingData": testing,
                    "VersionDescription": f"Trained in the console from job {job_id}",
                },
            )
        except (RequestError, ValueError) as exc:
            message = api_message(exc) if isinstance(exc, RequestError) else str(exc)
            return await train_page(request, 400, **values, error=message)
        return RedirectResponse(
            f"/console/adapters/{project_name}/{values['version_name']}", status_code=303
        )

    return [
        Route("/adapters", adapters, methods=["GET"]),
        Route("/adapters/{project}/delete", delete_project, methods=["POST"]),
        Route("/adapters/{project}/{version}", adapter, methods=["GET"]),
        Route("/adapters/{project}/{version}/delete", delete_version, methods=["POST"]),
        Route("/jobs/{job_id}/train", train_form, methods=["GET"]),
        Route("/jobs/{job_id}/train", train, methods=["POST"]),
    ]


def name_problem(project_name: str, version_name: str) -> str:
    """What is wrong with a project's or a version's name as a form gave them ("" if nothing):
    the API's own rule for both."""
    for what, name in (("Project name", project_name), ("Version name", version_name)):
        if not _NAME.match(name):
            return f"{what} must be 1 to 255 letters, digits, '-', '_' or '.'."
    return ""


def s3_asset(uri: str) -> dict[str, Any]:
    """A ground-truth manifest asset of CreateProjectVersion; ValueError unless ``uri`` is an
    ``s3://bucket/key`` URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ValueError(f"A manifest must be an s3://bucket/key URI, not {uri!r}.")
    return {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}

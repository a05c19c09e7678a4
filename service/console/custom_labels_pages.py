"""Custom Labels pages: the projects and their models (status, evaluation per label), *Train a
model* from Ground Truth manifests in S3, start and stop a model, and *Try it on an image*,
its labels and boxes drawn over the image.

Everything goes through the API's operations (``Console.call``): CreateProject,
CreateProjectVersion, StartProjectVersion, StopProjectVersion, DetectCustomLabels, exactly as a
boto3 client's requests.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.console.adapter_pages import (
    find_version,
    name_problem,
    projects_with_versions,
    read_summary,
    s3_asset,
)
from service.console.moderation_page import image_from_form
from service.console.web import Console, action, api_message, page
from service.errors import RequestError

__all__ = ["custom_labels_projects", "routes"]

FEATURE = "CUSTOM_LABELS"
# Statuses a page refreshes itself through, until the model settles.
_CHANGING = ("TRAINING_IN_PROGRESS", "STARTING", "STOPPING")


async def custom_labels_projects(console: Console) -> list[dict[str, Any]]:
    """Every Custom Labels project with its versions, newest first."""
    return await projects_with_versions(console, FEATURE)


def _label_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per label of an evaluation summary (AWS's shape): its test images, precision, recall, F1
    and assumed threshold (0-100)."""
    rows = []
    for entry in summary.get("LabelEvaluationResults", []):
        metrics = entry.get("Metrics", {})
        threshold = metrics.get("Threshold")
        rows.append(
            {
                "name": entry.get("Label", ""),
                "images": entry.get("NumberOfTestingImages"),
                "precision": metrics.get("Precision"),
                "recall": metrics.get("Recall"),
                "f1": metrics.get("F1Score"),
                "threshold": None if threshold is None else 100.0 * threshold,
            }
        )
    return rows


def _boxes(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The response's boxes in percent of the image, numbered as the labels are listed."""
    boxes = []
    for number, entry in enumerate(response.get("CustomLabels", []), start=1):
        box = entry.get("Geometry", {}).get("BoundingBox")
        if box:
            boxes.append(
                {
                    "number": number,
                    "name": entry["Name"],
                    "x": 100.0 * box["Left"],
                    "y": 100.0 * box["Top"],
                    "width": 100.0 * box["Width"],
                    "height": 100.0 * box["Height"],
                }
            )
    return boxes


def routes(console: Console) -> list[Route]:
    def version_url(project_name: str, version_name: str, notice: str = "") -> str:
        url = (
            f"/console/custom-labels/{urllib.parse.quote(project_name, safe='')}/"
            f"{urllib.parse.quote(version_name, safe='')}"
        )
        return f"{url}?{urllib.parse.urlencode({'notice': notice})}" if notice else url

    async def list_page(request: Request, status: int = 200, **values: Any) -> Response:
        try:
            projects = await custom_labels_projects(console)
        except RequestError as exc:
            return console.error_page(request, 400, "Custom Labels", api_message(exc))
        form = {
            "project": "",
            "new_project": "",
            "version_name": "",
            "training_manifest": "",
            "testing_manifest": "",
            "error": "",
        }
        form.update(values)
        return console.render(
            request,
            "custom_labels.html",
            status,
            section="custom-labels",
            projects=projects,
            changing=any(
                version["Status"] in _CHANGING
                for project in projects
                for version in project["Versions"]
            ),
            notice=request.query_params.get("notice", ""),
            **form,
        )

    @page(console)
    async def projects_page(request: Request) -> Response:
        return await list_page(request)

    @action(console)
    async def train(request: Request) -> Response:
        form = await request.form(max_fields=20)
        values = {
            name: str(form.get(name, "")).strip()
            for name in (
                "project",
                "new_project",
                "version_name",
                "training_manifest",
                "testing_manifest",
            )
        }
        project_name = values["project"] or values["new_project"]
        problem = name_problem(project_name, values["version_name"])
        if problem:
            return await list_page(request, 400, **values, error=problem)
        try:
            training = {"Assets": [s3_asset(values["training_manifest"])]}
            testing: dict[str, Any] = (
                {"Assets": [s3_asset(values["testing_manifest"])]}
                if values["testing_manifest"]
                else {"AutoCreate": True}
            )
            existing = [
                p for p in await custom_labels_projects(console) if p["Name"] == project_name
            ]
            if existing:
                project_arn = existing[0]["ProjectArn"]
            else:
                created = await console.call("CreateProject", {"ProjectName": project_name})
                project_arn = created["ProjectArn"]
            await console.call(
                "CreateProjectVersion",
                {
                    "ProjectArn": project_arn,
                    "VersionName": values["version_name"],
                    "OutputConfig": {
                        "S3Bucket": console.settings.storage_bucket,
                        "S3KeyPrefix": console.settings.key("custom-labels"),
                    },
                    "TrainingData": training,
                    "TestingData": testing,
                    "VersionDescription": "Trained in the console",
                },
            )
        except (RequestError, ValueError) as exc:
            message = api_message(exc) if isinstance(exc, RequestError) else str(exc)
            return await list_page(request, 400, **values, error=message)
        return RedirectResponse(version_url(project_name, values["version_name"]), status_code=303)

    async def version_page(request: Request, status: int = 200, **values: Any) -> Response:
        project_name = request.path_params["project"]
        version_name = request.path_params["version"]
        version = await find_version(console, FEATURE, project_name, version_name)
        if version is None:
            return console.error_page(
                request, 404, "Custom Labels", f"No model {project_name} / {version_name}."
            )
        summary = await run_in_threadpool(read_summary, console, version)
        context: dict[str, Any] = {
            "min_confidence": "",
            "max_results": "",
            "s3_uri": "",
            "error": "",
            "response": None,
            "response_json": "",
            "preview": "",
            "boxes": [],
        }
        context.update(values)
        return console.render(
            request,
            "custom_labels_version.html",
            status,
            section="custom-labels",
            project_name=project_name,
            version_name=version_name,
            version=version,
            summary=summary or {},
            labels=_label_rows(summary or {}),
            changing=version["Status"] in _CHANGING,
            notice=request.query_params.get("notice", ""),
            **context,
        )

    @page(console)
    async def version_details(request: Request) -> Response:
        return await version_page(request)

    async def version_action(request: Request, operation: str, params: dict, notice: str):
        project_name = request.path_params["project"]
        version_name = request.path_params["version"]
        version = await find_version(console, FEATURE, project_name, version_name)
        if version is None:
            return console.error_page(request, 404, "Custom Labels", "No such model.")
        try:
            await console.call(
                operation, {"ProjectVersionArn": version["ProjectVersionArn"], **params}
            )
        except RequestError as exc:
            return await version_page(request, 400, error=api_message(exc))
        if operation == "DeleteProjectVersion":
            return RedirectResponse("/console/custom-labels?notice=Model+deleted.", status_code=303)
        return RedirectResponse(version_url(project_name, version_name, notice), status_code=303)

    @action(console)
    async def start(request: Request) -> Response:
        form = await request.form(max_fields=10)
        try:
            units = int(str(form.get("min_inference_units", "1")))
        except ValueError:
            return await version_page(request, 400, error="Inference units must be a number.")
        return await version_action(
            request, "StartProjectVersion", {"MinInferenceUnits": units}, "Starting the model."
        )

    @action(console)
    async def stop(request: Request) -> Response:
        return await version_action(request, "StopProjectVersion", {}, "Stopping the model.")

    @action(console)
    async def delete(request: Request) -> Response:
        return await version_action(request, "DeleteProjectVersion", {}, "")

    @action(console)
    async def detect(request: Request) -> Response:
        version = await find_version(
            console, FEATURE, request.path_params["project"], request.path_params["version"]
        )
        if version is None:
            return console.error_page(request, 404, "Custom Labels", "No such model.")
        form = await request.form(max_files=1, max_fields=20)
        values: dict[str, Any] = {
            name: str(form.get(name, "")).strip()
            for name in ("min_confidence", "max_results", "s3_uri")
        }
        params: dict[str, Any] = {"ProjectVersionArn": version["ProjectVersionArn"]}
        try:
            if values["min_confidence"]:
                params["MinConfidence"] = float(values["min_confidence"])
            if values["max_results"]:
                params["MaxResults"] = int(values["max_results"])
        except ValueError:
            return await version_page(
                request, 400, **values, error="Minimum confidence and most labels must be numbers."
            )
        image, preview, problem = await image_from_form(form, values["s3_uri"])
        if problem:
            return await version_page(request, 400, **values, error=problem)
        params["Image"] = image
        try:
            response = await console.call("DetectCustomLabels", params)
        except RequestError as exc:
            return await version_page(request, 400, **values, error=api_message(exc))
        return await version_page(
            request,
            **values,
            response=response,
            response_json=json.dumps(response, indent=2, ensure_ascii=False),
            preview=preview,
            boxes=_boxes(response),
        )

    return [
        Route("/custom-labels", projects_page, methods=["GET"]),
        Route("/custom-labels", train, methods=["POST"]),
        Route("/custom-labels/{project}/{version}", version_details, methods=["GET"]),
        Route("/custom-labels/{project}/{version}/start", start, methods=["POST"]),
        Route("/custom-labels/{project}/{version}/stop", stop, methods=["POST"]),
        Route("/custom-labels/{project}/{version}/delete", delete, methods=["POST"]),
        Route("/custom-labels/{project}/{version}/detect", detect, methods=["POST"]),
    ]

"""*Image moderation*: one image (uploaded, or an S3 URI) through ``DetectModerationLabels``, with
an adapter and a minimum confidence; the labels as a tree with confidence bars, the content
types, and the response as JSON, exactly as a boto3 client gets it."""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
from typing import Any

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from model.confidence import DEFAULT_MIN_CONFIDENCE
from service.console.web import Console, action, api_message, page
from service.errors import RequestError
from storage.reading import split_s3_uri, split_versioned_uri

__all__ = ["image_from_form", "label_tree", "routes"]

# DetectModerationLabels takes at most 5 MB of image bytes.
MAX_IMAGE_BYTES = 5 * 1024 * 1024


def label_tree(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response's labels nested under their parents: ``[{"label", "children"}]``; a label
    whose parent is not in the response sits at the top."""
    nodes = {entry["Name"]: {"label": entry, "children": []} for entry in labels}
    roots = []
    for entry in labels:
        parent = nodes.get(entry.get("ParentName") or "")
        (parent["children"] if parent else roots).append(nodes[entry["Name"]])
    return roots


def _preview(data: bytes) -> str:
    """A small JPEG of the uploaded image as a data: URL (nothing is stored)."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((480, 480))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


async def image_from_form(form, s3_uri: str) -> tuple[dict[str, Any], str, str]:
    """The ``Image`` parameter a form gives (its ``image`` file, else ``s3_uri``), the preview
    to show (a data: URL of the upload, or the console's thumbnail of the S3 object), and what
    is wrong when neither was given ("" otherwise)."""
    upload = form.get("image")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_IMAGE_BYTES + 1)
        try:
            preview = await run_in_threadpool(_preview, data)
        except Exception:  # the API says what is wrong with it
            preview = ""
        return {"Bytes": base64.b64encode(data).decode()}, preview, ""
    if s3_uri.startswith("s3://"):
        uri, version = split_versioned_uri(s3_uri)
        bucket, key = split_s3_uri(uri)
        location = {"Bucket": bucket, "Name": key}
        if version:
            location["Version"] = version
        preview = "/console/thumbnail?" + urllib.parse.urlencode({"ref": s3_uri, "size": 1024})
        return {"S3Object": location}, preview, ""
    return {}, "", "Choose an image file, or give an s3:// URI."


def routes(console: Console) -> list[Route]:
    async def render(request: Request, status: int = 200, **values: Any) -> Response:
        from service.console.adapter_pages import trained_adapters

        context = {
            "adapter": request.query_params.get("adapter", ""),
            "min_confidence": DEFAULT_MIN_CONFIDENCE,
            "s3_uri": "",
            "error": "",
            "response": None,
            "tree": [],
            "response_json": "",
            "preview": "",
        }
        context.update(values)
        return console.render(
            request,
            "moderate.html",
            status,
            section="moderate",
            adapters=await trained_adapters(console),
            **context,
        )

    @page(console)
    async def form(request: Request) -> Response:
        return await render(request)

    @action(console)
    async def moderate(request: Request) -> Response:
        form = await request.form(max_files=1, max_fields=20)
        values: dict[str, Any] = {
            "adapter": str(form.get("adapter", "")),
            "s3_uri": str(form.get("s3_uri", "")).strip(),
        }
        try:
            values["min_confidence"] = float(str(form.get("min_confidence", "")))
        except ValueError:
            return await render(
                request, 400, **values, error="Minimum confidence must be a number."
            )
        params: dict[str, Any] = {"MinConfidence": values["min_confidence"]}
        if values["adapter"]:
            params["ProjectVersion"] = values["adapter"]
        image, preview, problem = await image_from_form(form, values["s3_uri"])
        if problem:
            return await render(request, 400, **values, error=problem)
        params["Image"] = image
        try:
            response = await console.call("DetectModerationLabels", params)
        except RequestError as exc:
            return await render(request, 400, **values, error=api_message(exc))
        return await render(
            request,
            **values,
            response=response,
            tree=label_tree(response.get("ModerationLabels", [])),
            response_json=json.dumps(response, indent=2, ensure_ascii=False),
            preview=preview,
        )

    return [
        Route("/moderate", form, methods=["GET"]),
        Route("/moderate", moderate, methods=["POST"]),
    ]

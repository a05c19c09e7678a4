"""``--custom_labels_model``: the folder of the Custom Labels model a job runs, from an ARN too.

A ProjectVersion ARN is resolved through the Rekognition API that trained it (boto3, so the
AWS environment's credentials and ``AWS_ENDPOINT_URL_REKOGNITION`` apply), using only what
Rekognition's own responses say: the project by its name (DescribeProjects), the version
(DescribeProjectVersions), and its evaluation summary's location. A training writes the model's
folder, ``model/``, beside that summary.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

from model.custom_labels_model import MODEL_FOLDER

__all__ = ["model_folder_of", "resolve_custom_labels_model"]

_LOGGER = logging.getLogger(__name__)

# The versions whose training completed: they have a model, whether it is being served or not.
_TRAINED = ("TRAINING_COMPLETED", "STARTING", "RUNNING", "FAILED", "STOPPING", "STOPPED")


def model_folder_of(version: dict[str, Any]) -> str:
    """The model folder of a DescribeProjectVersions entry of a trained Custom Labels model;
    ValueError saying why there is none."""
    arn = version["ProjectVersionArn"]
    if version.get("Feature", "CUSTOM_LABELS") != "CUSTOM_LABELS":
        raise ValueError(
            f"{arn} is a Custom Moderation adapter, not a Custom Labels model: pass its folder "
            "as --adapter instead"
        )
    status = version.get("Status")
    if status not in _TRAINED:
        raise ValueError(
            f"{arn} has no trained model (Status {status}: {version.get('StatusMessage', '')})"
        )
    summary = version.get("EvaluationResult", {}).get("Summary", {}).get("S3Object")
    if not summary:
        raise ValueError(f"{arn} reports no evaluation summary, so its model cannot be found")
    folder = posixpath.dirname(summary["Name"])
    prefix = f"{folder}/" if folder else ""
    return f"s3://{summary['Bucket']}/{prefix}{MODEL_FOLDER}/"


def resolve_custom_labels_model(value: str, endpoint_url: str | None = None, client=None) -> str:
    """The model folder ``--custom_labels_model`` names: ``value`` itself unless it is an ARN,
    which is looked up through the Rekognition API. ValueError names what is wrong."""
    if not value.startswith("arn:"):
        return value
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    # arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/EPOCH
    region = value.split(":")[3]
    project_name, version_name = value.split(":project/", 1)[1].split("/")[0:3:2]
    if client is None:
        client = boto3.client("rekognition", region_name=region, endpoint_url=endpoint_url)
    try:
        projects = client.describe_projects(ProjectNames=[project_name])["ProjectDescriptions"]
        if not projects:
            raise ValueError(f"--custom_labels_model {value}: no project named {project_name}")
        versions = client.describe_project_versions(
            ProjectArn=projects[0]["ProjectArn"], VersionNames=[version_name]
        )["ProjectVersionDescriptions"]
    except (BotoCoreError, ClientError) as exc:
        raise ValueError(f"--custom_labels_model {value} cannot be looked up: {exc}") from exc
    version = next((v for v in versions if v["ProjectVersionArn"] == value), None)
    if version is None:
        raise ValueError(f"--custom_labels_model {value}: no such project version")
    try:
        folder = model_folder_of(version)
    except ValueError as exc:
        raise ValueError(f"--custom_labels_model: {exc}") from None
    _LOGGER.info("Custom Labels model %s is %s", value, folder)
    return folder

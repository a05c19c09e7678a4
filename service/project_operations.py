"""The project operations: Create, Describe and Delete Project and ProjectVersion, for Custom
Moderation adapters and Custom Labels models."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from service.adapters import LoadedAdapters
from service.errors import RequestError
from service.preflight import is_allowed
from service.project_records import CONTENT_MODERATION, CUSTOM_LABELS, version_folder
from service.projects import ProjectRegistry
from service.store import page_answer
from service.training import TrainingRunner

__all__ = ["ProjectOperations"]

_LOGGER = logging.getLogger(__name__)

_ASSETS_SHAPE = "[{GroundTruthManifest={S3Object={Bucket=...,Name=...}}}]"
_MANIFEST_SHAPE = f"{{Assets={_ASSETS_SHAPE}}}"


def _invalid(message: str) -> RequestError:
    return RequestError("InvalidParameterException", message)


class ProjectOperations:
    """The project and version operations of ``service.api.RekognitionApi``, over its project
    registry and training runner. A ``Feature=CONTENT_MODERATION`` project's versions train
    adapters, whose ARNs jobs and DetectModerationLabels take as ``ProjectVersion``; a
    ``Feature=CUSTOM_LABELS`` project's (the default) train Custom Labels models, which
    StartProjectVersion serves to DetectCustomLabels (``service.custom_labels_operations``).

    Registry errors (ProjectNotFound, ResourceInUse, ...) reach the client through the API's
    table of error codes.
    """

    projects: ProjectRegistry
    trainer: TrainingRunner
    adapters: LoadedAdapters
    allowed_locations: Collection[str] | None

    def create_project(self, params: dict) -> dict:
        feature = params.get("Feature", CUSTOM_LABELS)
        if feature == CUSTOM_LABELS and "AutoUpdate" in params:
            raise _invalid(
                "AutoUpdate applies to Custom Moderation adapters only: pass "
                "Feature=CONTENT_MODERATION for an adapter project, or leave AutoUpdate out for a "
                "Custom Labels project (Feature=CUSTOM_LABELS, the default)."
            )
        if feature == CONTENT_MODERATION and "AutoUpdate" not in params:
            raise _invalid(
                "AutoUpdate is required with Feature=CONTENT_MODERATION: pass ENABLED or DISABLED."
            )
        project = self.projects.create_project(
            params["ProjectName"],
            feature=feature,
            auto_update=params.get("AutoUpdate"),
            tags=params.get("Tags"),
        )
        return {"ProjectArn": project.arn}

    def describe_projects(self, params: dict) -> dict:
        projects, token = self.projects.list_projects(
            params.get("MaxResults", 100),
            params.get("NextToken"),
            names=params.get("ProjectNames"),
            # As in Rekognition: without Features, only Custom Labels projects are listed.
            features=params.get("Features", ["CUSTOM_LABELS"]),
        )
        return page_answer("ProjectDescriptions", [p.to_api() for p in projects], token)

    def delete_project(self, params: dict) -> dict:
        self.projects.delete_project(params["ProjectArn"])
        return {"Status": "DELETING"}

    def create_project_version(self, params: dict) -> dict:
        project = self.projects.get_project(params["ProjectArn"])
        artifact = "adapter" if project.feature == CONTENT_MODERATION else "model"
        _check_training_data(params, artifact)
        if project.feature == CUSTOM_LABELS and "FeatureConfig" in params:
            raise _invalid(
                "FeatureConfig applies to Custom Moderation adapters only: leave it out for the "
                f"Custom Labels project {project.name}."
            )
        for data in (params["TrainingData"], params["TestingData"]):
            for asset in data.get("Assets", []):
                location = asset["GroundTruthManifest"]["S3Object"]
                if not is_allowed(location["Bucket"], location["Name"], self.allowed_locations):
                    raise RequestError(
                        "AccessDeniedException",
                        f"This server may not read s3://{location['Bucket']}/{location['Name']}.",
                    )
        # Training writes under <S3KeyPrefix>/<project>/<version>/<ms>: that folder must be allowed.
        bucket, folder = version_folder(params["OutputConfig"], project.name, params["VersionName"])
        if not is_allowed(bucket, folder + "/", self.allowed_locations):
            raise RequestError(
                "AccessDeniedException", f"This server may not write under s3://{bucket}/{folder}/."
            )
        version = self.projects.create_version(project.arn, params)
        self.trainer.submit(version)
        return {"ProjectVersionArn": version.arn}

    def describe_project_versions(self, params: dict) -> dict:
        versions, token = self.projects.list_versions(
            params["ProjectArn"],
            params.get("MaxResults", 100),
            params.get("NextToken"),
            names=params.get("VersionNames"),
        )
        return page_answer("ProjectVersionDescriptions", [v.to_api() for v in versions], token)

    def delete_project_version(self, params: dict) -> dict:
        # A RUNNING model must be stopped first: the registry refuses it (ResourceInUse).
        arn = params["ProjectVersionArn"]
        self.projects.delete_version(arn)
        self.adapters.forget(arn)
        return {"Status": "DELETING"}


def _check_training_data(params: Mapping[str, Any], artifact: str) -> None:
    """CreateProjectVersion's data rules: training manifests, and test manifests or an automatic
    split of the training data (never both, never neither). ``artifact`` names what is trained
    (adapter, model)."""
    if not params["OutputConfig"].get("S3Bucket"):
        raise _invalid(
            f"OutputConfig.S3Bucket is required: the bucket the {artifact} and its evaluation are "
            "written to."
        )
    training = params.get("TrainingData")
    if not training or not training.get("Assets"):
        raise _invalid(
            f"TrainingData is required: pass TrainingData={_MANIFEST_SHAPE} with the ground-truth "
            "manifest of the images to train on."
        )
    testing = params.get("TestingData")
    if testing is None:
        raise _invalid(
            "With TrainingData, pass TestingData too: TestingData={AutoCreate=true} to test on 20% "
            f"of the training data, or TestingData={_MANIFEST_SHAPE} with a test manifest."
        )
    has_assets, auto_create = bool(testing.get("Assets")), bool(testing.get("AutoCreate"))
    if has_assets and auto_create:
        raise _invalid("TestingData takes Assets or AutoCreate=true, not both: pass one of them.")
    if not has_assets and not auto_create:
        raise _invalid(
            f"TestingData needs Assets={_ASSETS_SHAPE} (a test manifest) or AutoCreate=true."
        )
    for name, data in (("TrainingData", training), ("TestingData", testing)):
        for asset in data.get("Assets", []):
            location = asset.get("GroundTruthManifest", {}).get("S3Object", {})
            if not location.get("Bucket") or not location.get("Name"):
                raise _invalid(
                    f"Each {name} asset needs GroundTruthManifest.S3Object with a Bucket and a "
                    "Name."
                )

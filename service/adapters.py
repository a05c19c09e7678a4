"""Adapters at inference: which version a ``ProjectVersion`` ARN names, and whether it applies."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.project_records import (
    DEPRECATED,
    EXPIRED,
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    TRAINING_IN_PROGRESS,
    VersionNotFound,
    VersionRecord,
)
from storage.settings import S3Settings

if TYPE_CHECKING:
    from service.projects import ProjectRegistry

__all__ = [
    "ADAPTER_CACHE_SIZE",
    "AdapterNotReady",
    "LoadedAdapters",
    "ResolvedAdapter",
    "reported",
    "usable_adapter",
]

_LOGGER = logging.getLogger(__name__)

# Adapters kept loaded for DetectModerationLabels, the least recently used dropped first.
ADAPTER_CACHE_SIZE = 8


class AdapterNotReady(RuntimeError):
    """The version exists but has no adapter to apply: it is training, or its training failed
    (or its artifact could not be loaded)."""


@dataclass(frozen=True)
class ResolvedAdapter:
    """What inference needs of a usable adapter version (TRAINING_COMPLETED, DEPRECATED or
    EXPIRED; an EXPIRED one is ignored)."""

    arn: str
    status: str
    adapter_uri: str

    @property
    def expired(self) -> bool:
        return self.status == EXPIRED


def reported(
    version: VersionRecord, base_model_version: str | None, backbone_version: str | None
) -> VersionRecord:
    """The version as reported against the server's base model and backbone (None: unknown).

    An adapter is tied to the base model it was trained on. When the server's base model changes
    but its backbone does not, a trained adapter is reported DEPRECATED and still applied; when
    the backbone changes, the embedding the adapter reads no longer exists: it is EXPIRED and
    ignored.
    """
    if version.status != TRAINING_COMPLETED:
        return version
    if backbone_version and version.backbone_version != backbone_version:
        return dataclasses.replace(
            version,
            status=EXPIRED,
            status_message=(
                f"This adapter was trained on the backbone {version.backbone_version}; the "
                f"server now runs {backbone_version}, so the adapter is ignored at "
                "inference. Train a new version."
            ),
        )
    if base_model_version and version.base_model_version != base_model_version:
        return dataclasses.replace(
            version,
            status=DEPRECATED,
            status_message=(
                f"This adapter was trained on the base model {version.base_model_version}; "
                f"the server now runs {base_model_version}. It still applies; train a "
                "new version to adapt the current base model."
            ),
        )
    return version


def usable_adapter(version: VersionRecord) -> ResolvedAdapter:
    """The adapter of a version as reported, ready to apply (or EXPIRED, to ignore).

    AdapterNotReady if it is training or its training failed.
    """
    arn = version.arn
    if version.status == TRAINING_IN_PROGRESS:
        raise AdapterNotReady(
            f"The adapter {arn} is still training: wait for TRAINING_COMPLETED "
            "(DescribeProjectVersions, or the project_version_training_completed waiter)."
        )
    if version.status == TRAINING_FAILED or not version.adapter_uri:
        raise AdapterNotReady(
            f"The adapter {arn} has no trained model: its training failed "
            f"({version.status_message}). Fix the training data and create a new version."
        )
    return ResolvedAdapter(arn=arn, status=version.status, adapter_uri=version.adapter_uri)


class LoadedAdapters:
    """The adapters requests name, resolved through the project registry, the last
    ``ADAPTER_CACHE_SIZE`` applied kept loaded."""

    def __init__(self, projects: ProjectRegistry, s3: S3Settings) -> None:
        self._projects = projects
        self._s3 = s3
        self._loaded: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, arn: str) -> ResolvedAdapter:
        """The adapter ``arn`` names; VersionNotFound (naming the adapter) or AdapterNotReady."""
        try:
            return self._projects.resolve_adapter(arn)
        except VersionNotFound:
            raise VersionNotFound(f"The adapter {arn} does not exist.") from None

    def load(self, resolved: ResolvedAdapter):
        """The loaded adapter (``model.adapter.Adapter``); AdapterNotReady if it cannot be."""
        from model.adapter import Adapter

        with self._lock:
            adapter = self._loaded.get(resolved.arn)
            if adapter is not None:
                self._loaded.move_to_end(resolved.arn)
                return adapter
            try:
                adapter = Adapter.load(resolved.adapter_uri, s3=self._s3)
            except Exception as exc:
                _LOGGER.exception("Unable to load the adapter %s", resolved.arn)
                raise AdapterNotReady(
                    f"The adapter {resolved.arn} could not be loaded from "
                    f"{resolved.adapter_uri}: {exc}"
                ) from None
            self._loaded[resolved.arn] = adapter
            while len(self._loaded) > ADAPTER_CACHE_SIZE:
                self._loaded.popitem(last=False)
            return adapter

    def forget(self, arn: str) -> None:
        """Drops the loaded adapter of a deleted version."""
        with self._lock:
            self._loaded.pop(arn, None)

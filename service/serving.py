"""Custom Labels models on inference units: started, served in micro-batches, scaled, stopped.

One inference unit is one model replica on its own thread, batching up to --detect_batch_size
images: a ``model.custom_labels_model.CustomLabelsModel`` loaded into its own
``service.inference_queue.InferenceQueue``. StartProjectVersion loads ``MinInferenceUnits``
replicas in the background (the version is STARTING), then reports the model RUNNING; a model
that cannot be loaded is FAILED with the reason. Each DetectCustomLabels request goes to the
replica with the fewest requests in hand. When every replica already holds a full batch, one more
is loaded, up to ``MaxInferenceUnits`` (given no MaxInferenceUnits, the model does not scale);
replicas added so stay until the model is stopped. StopProjectVersion stops the replicas (their
memory goes with them) and reports the model STOPPED.

The registry (``service.projects.ProjectRegistry``) keeps each model's serving status, so a
restarted server starts again the models it served.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from service.inference_queue import BatchingSettings, InferenceQueue
from service.project_records import VersionRecord
from service.projects import ProjectRegistry
from storage.settings import S3Settings

__all__ = ["ModelReplica", "ModelServing", "load_custom_labels_model"]

_LOGGER = logging.getLogger(__name__)


def load_custom_labels_model(uri: str, s3: S3Settings, threads: int) -> Any:
    """The Custom Labels model in the folder ``uri``, its inference on ``threads`` threads."""
    from model.custom_labels_model import CustomLabelsModel

    return CustomLabelsModel.load(uri, s3=s3, intra_op_threads=threads)


class ModelReplica(InferenceQueue):
    """One inference unit: a loaded model behind its own queue and thread. ``in_hand`` counts
    the requests it has been given and not yet answered (queued or in the running batch)."""

    def __init__(self, model: Any, settings: BatchingSettings, *, name: str) -> None:
        loaded = [model]
        # The queue's thread takes the model over; the replica keeps no other reference, so the
        # model's memory is released when the thread ends.
        super().__init__(loaded.pop, settings, name=name)
        self._count_lock = threading.Lock()
        self.in_hand = 0

    def submit(self, image: Any, min_confidence: float | None, adapter: Any = None):
        with self._count_lock:
            self.in_hand += 1
        try:
            future = super().submit(image, min_confidence, adapter)
        except BaseException:
            self._answered(None)
            raise
        future.add_done_callback(self._answered)
        return future

    def _answered(self, _future) -> None:
        with self._count_lock:
            self.in_hand -= 1


class _Deployment:
    """One model's replicas, and the thread that loads them."""

    def __init__(self, version: VersionRecord, min_units: int, max_units: int) -> None:
        self.arn = version.arn
        self.model_uri = version.model_uri
        self.version_name = version.version_name
        self.min_units = min_units
        self.max_units = max_units
        self.replicas: list[ModelReplica] = []
        self.running = False
        self.scaling = False
        self.cancelled = threading.Event()
        self.loader: threading.Thread | None = None
        self.turn = itertools.count()


class ModelServing:
    """The Custom Labels models this server runs, by version ARN, over the project registry.

    ``batching`` applies to every replica (the server's --detect_* flags). Models load from S3
    with ``s3``; each replica's inference uses ``threads_per_unit`` threads (default: the
    machine's cores shared among the model's maximum units).
    """

    def __init__(
        self,
        projects: ProjectRegistry,
        s3: S3Settings,
        batching: BatchingSettings | None = None,
        *,
        threads_per_unit: int | None = None,
        load: Callable[[str, S3Settings, int], Any] | None = None,
    ) -> None:
        self.projects = projects
        self.s3 = s3
        self.batching = batching or BatchingSettings()
        self.threads_per_unit = threads_per_unit
        self._load = load
        self._deployments: dict[str, _Deployment] = {}
        self._stoppers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    # What the operations call.

    def start(self, version: VersionRecord) -> None:
        """Loads a model marked STARTING (``ProjectRegistry.begin_start``) on its minimum units
        in the background, then marks it RUNNING (or FAILED)."""
        min_units = version.min_inference_units or 1
        max_units = max(version.max_inference_units or min_units, min_units)
        deployment = _Deployment(version, min_units, max_units)
        with self._lock:
            if self._closed:
                return
            previous = self._stoppers.get(version.arn)
            self._deployments[version.arn] = deployment
            deployment.loader = threading.Thread(
                target=self._deploy,
                args=(deployment, previous),
                name=f"start-{version.version_name[:16]}",
                daemon=True,
            )
            deployment.loader.start()

    def stop(self, arn: str) -> None:
        """Stops a model marked STOPPING (``ProjectRegistry.begin_stop``) in the background: its
        replicas end, then it is marked STOPPED."""
        with self._lock:
            deployment = self._deployments.pop(arn, None)
            stopper = threading.Thread(
                target=self._undeploy, args=(arn, deployment), name="stop-model", daemon=True
            )
            self._stoppers[arn] = stopper
            stopper.start()

    def replica(self, arn: str) -> ModelReplica | None:
        """The replica of a RUNNING model with the fewest requests in hand (ties taken in
        turn), or None when the model is not served here. Asks for one more replica when even
        that one holds a full batch."""
        with self._lock:
            deployment = self._deployments.get(arn)
            if deployment is None or not deployment.running:
                return None
            replicas = deployment.replicas
            offset = next(deployment.turn) % len(replicas)
            turned = replicas[offset:] + replicas[:offset]
            chosen = min(turned, key=lambda replica: replica.in_hand)
            if (
                chosen.in_hand >= self.batching.max_batch_size
                and len(replicas) < deployment.max_units
                and not deployment.scaling
            ):
                deployment.scaling = True
                threading.Thread(
                    target=self._scale_up, args=(deployment,), name="scale-model", daemon=True
                ).start()
            return chosen

    def units(self, arn: str) -> int:
        """How many replicas of the model serve now (0: not served here)."""
        with self._lock:
            deployment = self._deployments.get(arn)
            return len(deployment.replicas) if deployment and deployment.running else 0

    def recover(self) -> list[str]:
        """At server start: starts again every model the previous server served; returns their
        ARNs."""
        versions = self.projects.models_to_serve()
        for version in versions:
            self.start(version)
        return [version.arn for version in versions]

    def wait(self, arn: str, timeout: float | None = None) -> None:
        """Waits until the model's start or stop under way has ended."""
        with self._lock:
            deployment = self._deployments.get(arn)
            threads = [self._stoppers.get(arn), deployment.loader if deployment else None]
        for thread in threads:
            if thread is not None:
                thread.join(timeout)

    def close(self) -> None:
        """The server is closing: every replica stops, the registry keeps each model's status
        (a restarted server starts the RUNNING ones again)."""
        with self._lock:
            self._closed = True
            deployments = list(self._deployments.values())
            self._deployments.clear()
        for deployment in deployments:
            deployment.cancelled.set()
        for deployment in deployments:
            if deployment.loader is not None:
                deployment.loader.join(30)
            self._stop_replicas(deployment)

    # Internals.

    def _threads(self, deployment: _Deployment) -> int:
        if self.threads_per_unit:
            return self.threads_per_unit
        return max(1, (os.cpu_count() or 1) // deployment.max_units)

    def _replica(self, deployment: _Deployment) -> ModelReplica:
        load = self._load or load_custom_labels_model
        model = load(deployment.model_uri, self.s3, self._threads(deployment))
        index = len(deployment.replicas)
        name = f"custom-labels-{deployment.version_name[:16]}-{index}"
        replica = ModelReplica(model, self.batching, name=name)
        replica.start()
        return replica

    def _deploy(self, deployment: _Deployment, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # a stop of the same model still releasing its replicas
        arn = deployment.arn
        try:
            if not deployment.model_uri:
                raise ValueError("the version has no trained model")
            while len(deployment.replicas) < deployment.min_units:
                if deployment.cancelled.is_set():
                    break
                deployment.replicas.append(self._replica(deployment))
        except Exception as exc:  # noqa: BLE001 - the version reports why
            _LOGGER.exception("Starting the model %s failed", arn)
            self._stop_replicas(deployment)
            with self._lock:
                if self._deployments.get(arn) is deployment:
                    del self._deployments[arn]
            if not deployment.cancelled.is_set():
                self.projects.mark_start_failed(
                    arn, f"The model could not be loaded from {deployment.model_uri}: {exc}"
                )
            return
        with self._lock:
            if deployment.cancelled.is_set() or self._deployments.get(arn) is not deployment:
                return  # stopped meanwhile: the stop releases the replicas
            deployment.running = True
        if not self.projects.mark_running(arn, len(deployment.replicas)):
            _LOGGER.info("The model %s was stopped while it started", arn)
        else:
            _LOGGER.info("The model %s runs on %d unit(s)", arn, len(deployment.replicas))

    def _scale_up(self, deployment: _Deployment) -> None:
        try:
            replica = self._replica(deployment)
        except Exception:  # noqa: BLE001 - the units already running go on serving
            _LOGGER.exception("Adding an inference unit to %s failed", deployment.arn)
            replica = None
        with self._lock:
            deployment.scaling = False
            if replica is not None and not deployment.cancelled.is_set():
                deployment.replicas.append(replica)
                _LOGGER.info(
                    "The model %s scaled to %d unit(s)", deployment.arn, len(deployment.replicas)
                )
                return
        if replica is not None:
            replica.stop()

    def _undeploy(self, arn: str, deployment: _Deployment | None) -> None:
        if deployment is not None:
            deployment.cancelled.set()
            if deployment.loader is not None:
                deployment.loader.join()  # a replica being loaded cannot be interrupted
            self._stop_replicas(deployment)
        self.projects.mark_stopped(arn)

    def _stop_replicas(self, deployment: _Deployment) -> None:
        with self._lock:
            replicas, deployment.replicas = list(deployment.replicas), []
            deployment.running = False
        for replica in replicas:
            replica.stop()

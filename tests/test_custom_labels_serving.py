"""``service.serving.ModelServing`` on its own: replicas, routing to the least loaded, scaling
between the minimum and maximum units, stopping; with a registry file and a model of the test's
own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from service.inference_queue import BatchingSettings
from service.projects import ProjectRegistry
from service.serving import ModelServing
from storage.settings import S3Settings

MODEL_URI = "s3://models/stand-in/"


class HeldModel:
    """Answers each image with its replica's number; holds every batch while ``hold`` is set."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.hold = threading.Event()
        self.release = threading.Event()
        self.running = threading.Event()

    def analyse(self, images):
        self.running.set()
        if self.hold.is_set():
            assert self.release.wait(30)
        return [self.number for _ in images]

    def respond(self, analyses, min_confidence, adapter=None):
        return [{"CustomLabels": [], "Replica": number} for number in analyses]


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def registry(tmp_path) -> ProjectRegistry:
    return ProjectRegistry(str(tmp_path / "jobs.sqlite"))


def _trained(registry: ProjectRegistry, name: str = "v1") -> str:
    project = registry.create_project(f"p-{name}", feature="CUSTOM_LABELS").arn
    request = {
        "VersionName": name,
        "OutputConfig": {"S3Bucket": "out"},
        "TrainingData": {"Assets": []},
        "TestingData": {"AutoCreate": True},
    }
    arn = registry.create_version(project, request).arn
    registry.mark_model_trained(
        arn,
        status_message="trained",
        billable_secs=1,
        f1=1.0,
        summary_bucket="out",
        summary_name="summary.json",
        model_uri=MODEL_URI,
        model_kind="CLASSIFICATION",
        labels=["a", "b"],
    )
    return arn


def _serving(registry, models: list[HeldModel], **batching) -> ModelServing:
    def load(uri: str, s3: S3Settings, threads: int) -> HeldModel:
        assert uri == MODEL_URI
        model = HeldModel(len(models))
        models.append(model)
        return model

    return ModelServing(registry, S3Settings(), BatchingSettings(**batching), load=load)


def _start(serving: ModelServing, registry: ProjectRegistry, arn: str, low: int, high: int):
    serving.start(registry.begin_start(arn, low, high))
    serving.wait(arn, 30)
    assert registry.get_version(arn).status == "RUNNING"


def test_requests_go_to_the_least_loaded_replica(registry):
    models: list[HeldModel] = []
    serving = _serving(registry, models, max_batch_size=1, max_wait_secs=0)
    arn = _trained(registry)
    try:
        _start(serving, registry, arn, 2, 2)
        assert serving.units(arn) == 2
        # Idle replicas are taken in turn.
        answers = {serving.replica(arn).predict("image", None)["Replica"] for _ in range(4)}
        assert answers == {0, 1}
        models[0].hold.set()
        models[1].hold.set()
        first = serving.replica(arn)
        held = first.submit("image", None)
        _wait_until(lambda: first.in_hand == 1)
        # While one replica holds a request, the other gets the next ones.
        second = serving.replica(arn)
        assert second is not first
        for model in models:
            model.release.set()
        assert held.result(30)["Replica"] in (0, 1)
        _wait_until(lambda: first.in_hand == 0)
    finally:
        serving.close()


def test_a_model_scales_up_to_its_maximum_units(registry):
    models: list[HeldModel] = []
    serving = _serving(registry, models, max_batch_size=1, max_wait_secs=0)
    arn = _trained(registry)
    try:
        _start(serving, registry, arn, 1, 2)
        assert serving.units(arn) == 1
        models[0].hold.set()
        held = serving.replica(arn).submit("image", None)
        _wait_until(models[0].running.is_set)
        # A replica holding a full batch: the next request asks for one more unit.
        serving.replica(arn)
        _wait_until(lambda: serving.units(arn) == 2)
        assert serving.replica(arn).predict("image", None)["Replica"] == 1
        # Both units busy, at the maximum: no more is loaded.
        models[1].hold.set()
        also_held = serving.replica(arn).submit("image", None)
        _wait_until(models[1].running.is_set)
        serving.replica(arn)
        time.sleep(0.3)
        assert serving.units(arn) == 2 and len(models) == 2
        for model in models:
            model.release.set()
        assert held.result(30)["Replica"] == 0
        assert also_held.result(30)["Replica"] == 1
    finally:
        serving.close()


def test_stopping_ends_the_replicas_and_marks_the_model_stopped(registry):
    models: list[HeldModel] = []
    serving = _serving(registry, models)
    arn = _trained(registry)
    try:
        _start(serving, registry, arn, 2, 2)
        replicas = [serving.replica(arn) for _ in range(2)]
        registry.begin_stop(arn)
        serving.stop(arn)
        serving.wait(arn, 30)
        assert registry.get_version(arn).status == "STOPPED"
        assert serving.replica(arn) is None and serving.units(arn) == 0
        assert not any(replica.running for replica in replicas)
        assert not any(replica.loaded for replica in replicas)  # the models' memory is released
    finally:
        serving.close()


def test_a_stop_during_the_start_wins(registry):
    release = threading.Event()

    def slow_load(uri: str, s3: S3Settings, threads: int) -> HeldModel:
        assert release.wait(30)
        return HeldModel(0)

    serving = ModelServing(registry, S3Settings(), load=slow_load)
    arn = _trained(registry)
    try:
        serving.start(registry.begin_start(arn, 1, 1))
        assert registry.get_version(arn).status == "STARTING"
        registry.begin_stop(arn)
        serving.stop(arn)
        release.set()
        serving.wait(arn, 30)
        _wait_until(lambda: registry.get_version(arn).status == "STOPPED")
        assert serving.replica(arn) is None
    finally:
        serving.close()


def test_closing_keeps_the_registry_status(registry):
    models: list[HeldModel] = []
    serving = _serving(registry, models)
    arn = _trained(registry)
    _start(serving, registry, arn, 1, 1)
    replica = serving.replica(arn)
    serving.close()
    assert not replica.running
    assert registry.get_version(arn).status == "RUNNING"
    # The next server starts it again.
    again = _serving(registry, models)
    try:
        assert again.recover() == [arn]
        again.wait(arn, 30)
        assert registry.get_version(arn).status == "RUNNING"
        assert again.units(arn) == 1
    finally:
        again.close()

"""DetectModerationLabels in batches: the queue with a model object of the test's own, then the
real server with the real boto3 client."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.errors import RequestError
from service.flags import detect_batching, flag_parser
from service.image_operations import THROTTLING_HTTP_STATUS, SharedModel
from service.inference_queue import BatchingSettings, InferenceQueue, QueueFull, QueueStopped

HOLD, POISON = "hold", "poison"


class RecordingModel:
    """``analyse`` and ``respond`` over images that are strings: it records each batch, holds a
    batch that has ``HOLD`` in it until ``release`` is set, and fails one with ``POISON``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def analyse(self, images: Sequence[str]) -> list[dict[str, str]]:
        self.batches.append(list(images))
        if HOLD in images:
            self.holding.set()
            assert self.release.wait(10)
        if POISON in images:
            raise ValueError("the model failed on this batch")
        return [{"image": image} for image in images]

    def respond(self, analyses, min_confidence: float, adapter=None) -> list[dict[str, Any]]:
        return [
            {"Image": analysis["image"], "MinConfidence": min_confidence, "Adapter": adapter}
            for analysis in analyses
        ]


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _queue(model, **settings) -> InferenceQueue:
    queue = InferenceQueue(lambda: model, BatchingSettings(**settings))
    queue.start()
    _wait_until(lambda: queue.loaded)
    return queue


def _held(queue: InferenceQueue, model: RecordingModel):
    """Submits HOLD and waits until the model runs it: what is submitted next queues up."""
    held = queue.submit(HOLD, 50)
    assert model.holding.wait(10)
    return held


def test_concurrent_requests_share_a_batch():
    model = RecordingModel()
    queue = _queue(model, max_batch_size=16, max_wait_secs=0.005)
    try:
        held = _held(queue, model)
        futures = [queue.submit(f"image-{i}", 50) for i in range(7)]
        model.release.set()
        assert held.result(10)["Image"] == HOLD
        assert [f.result(10)["Image"] for f in futures] == [f"image-{i}" for i in range(7)]
        assert model.batches == [[HOLD], [f"image-{i}" for i in range(7)]]
    finally:
        queue.stop()


def test_callers_on_threads_are_batched():
    model = RecordingModel()
    queue = _queue(model, max_batch_size=16, max_wait_secs=0.05)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: queue.predict(f"image-{i}", 50), range(8)))
        assert [answer["Image"] for answer in answers] == [f"image-{i}" for i in range(8)]
        assert max(len(batch) for batch in model.batches) > 1
    finally:
        queue.stop()


def test_batches_are_at_most_max_batch_size():
    model = RecordingModel()
    queue = _queue(model, max_batch_size=4, max_wait_secs=0)
    try:
        held = _held(queue, model)
        futures = [queue.submit(f"image-{i}", 50) for i in range(10)]
        model.release.set()
        held.result(10)
        for future in futures:
            future.result(10)
        assert [len(batch) for batch in model.batches] == [1, 4, 4, 2]
    finally:
        queue.stop()


def test_a_full_batch_does_not_wait():
    model = RecordingModel()
    queue = _queue(model, max_batch_size=2, max_wait_secs=30)
    try:
        started = time.monotonic()
        first, second = queue.submit("a", 50), queue.submit("b", 50)
        assert first.result(10)["Image"] == "a" and second.result(10)["Image"] == "b"
        assert time.monotonic() - started < 5
    finally:
        queue.stop()


def test_a_lone_request_waits_at_most_the_wait():
    model = RecordingModel()
    queue = _queue(model, max_batch_size=16, max_wait_secs=0.2)
    try:
        started = time.monotonic()
        assert queue.predict("alone", 50)["Image"] == "alone"
        assert 0.19 <= time.monotonic() - started < 5
    finally:
        queue.stop()


def test_each_request_gets_its_own_min_confidence_and_adapter():
    model = RecordingModel()
    queue = _queue(model)
    first_adapter, second_adapter = object(), object()
    asked = [
        ("a", 10, None),
        ("b", 90, first_adapter),
        ("c", 10, first_adapter),
        ("d", 90, None),
        ("e", 10, second_adapter),
        ("f", 10, None),
    ]
    try:
        held = _held(queue, model)
        futures = [queue.submit(image, minimum, adapter) for image, minimum, adapter in asked]
        model.release.set()
        held.result(10)
        answers = [future.result(10) for future in futures]
        assert model.batches[1] == ["a", "b", "c", "d", "e", "f"]  # one batch for them all
        assert [(a["Image"], a["MinConfidence"], a["Adapter"]) for a in answers] == asked
    finally:
        queue.stop()


def test_a_full_queue_is_a_throttling_exception():
    model = RecordingModel()
    shared = SharedModel(lambda: model, BatchingSettings(max_batch_size=1, max_queued=2))
    shared.start()
    try:
        held = _held(shared, model)
        waiting = [shared.submit(f"image-{i}", 50) for i in range(2)]
        with pytest.raises(QueueFull):
            shared.submit("one too many", 50)
        for refused in (shared.check_room, lambda: shared.predict("one too many", 50)):
            with pytest.raises(RequestError) as error:
                refused()
            assert error.value.code == "ThrottlingException"
            assert error.value.http_status == THROTTLING_HTTP_STATUS
            assert error.value.to_body()["__type"] == "ThrottlingException"
        assert shared.stats.refused == 3
        model.release.set()
        # Those queued before it are answered; then there is room again.
        assert [f.result(10)["Image"] for f in (held, *waiting)] == [HOLD, "image-0", "image-1"]
        assert shared.predict("later", 50)["Image"] == "later"
        assert "one too many" not in sum(model.batches, [])
    finally:
        shared.stop()


def test_a_model_error_fails_only_its_batch():
    model = RecordingModel()
    queue = _queue(model)
    try:
        held = _held(queue, model)
        doomed = [queue.submit(POISON, 50), queue.submit("beside the poison", 50)]
        model.release.set()
        assert held.result(10)["Image"] == HOLD
        for future in doomed:
            with pytest.raises(ValueError, match="failed on this batch"):
                future.result(10)
        assert queue.predict("next", 50)["Image"] == "next"
        assert model.batches == [[HOLD], [POISON, "beside the poison"], ["next"]]
    finally:
        queue.stop()


def test_a_respond_error_fails_only_its_group():
    class FailingAdapterModel(RecordingModel):
        def respond(self, analyses, min_confidence, adapter=None):
            if adapter == "broken":
                raise KeyError("broken adapter")
            return super().respond(analyses, min_confidence, adapter)

    model = FailingAdapterModel()
    queue = _queue(model)
    try:
        held = _held(queue, model)
        broken = queue.submit("a", 50, "broken")
        fine = queue.submit("b", 50, "fine")
        model.release.set()
        held.result(10)
        with pytest.raises(KeyError):
            broken.result(10)
        assert fine.result(10)["Adapter"] == "fine"
    finally:
        queue.stop()


def test_the_model_loads_once_with_callers_waiting():
    loads, model, loading = [], RecordingModel(), threading.Event()

    def slow_load():
        loads.append(time.monotonic())
        loading.set()
        time.sleep(0.5)
        return model

    shared = SharedModel(slow_load)
    shared.start()
    try:
        assert loading.wait(10)
        assert not shared.loaded
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: shared.predict(f"image-{i}", 50), range(6)))
        assert [answer["Image"] for answer in answers] == [f"image-{i}" for i in range(6)]
        assert shared.predict("again", 50)["Image"] == "again"
        assert len(loads) == 1
    finally:
        shared.stop()


def test_the_model_loads_on_first_use_without_start():
    loads = []
    shared = SharedModel(lambda: loads.append(1) or RecordingModel())
    try:
        assert not shared.loaded and not loads
        assert shared.predict("first", 50)["Image"] == "first"
        assert shared.predict("second", 50)["Image"] == "second"
        assert loads == [1]
    finally:
        shared.stop()


def test_a_failed_load_fails_its_waiting_callers_and_the_next_request_loads_again():
    attempts, model = [], RecordingModel()

    def load_fails_once():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("weights not found")
        return model

    shared = SharedModel(load_fails_once)
    try:
        with pytest.raises(OSError, match="weights not found"):
            shared.predict("first", 50)
        assert shared.predict("second", 50)["Image"] == "second"
        assert shared.predict("third", 50)["Image"] == "third"
        assert len(attempts) == 2
    finally:
        shared.stop()


def test_stop_ends_the_thread_and_fails_what_was_queued():
    model = RecordingModel()
    shared = SharedModel(lambda: model, BatchingSettings(max_batch_size=1))
    shared.start()
    held = _held(shared, model)
    queued = shared.submit("queued", 50)
    assert not shared.stop(timeout=0.05)  # the batch it runs is finished first
    with pytest.raises(QueueStopped):
        queued.result(10)
    with pytest.raises(RequestError) as after_stop:
        shared.predict("after stop", 50)
    assert after_stop.value.code == "InternalServerError"
    model.release.set()
    assert held.result(10)["Image"] == HOLD
    assert shared.stop(timeout=10)
    assert not shared.loaded
    assert "queued" not in sum(model.batches, [])


def test_stop_without_start_and_twice():
    shared = SharedModel(RecordingModel)
    assert shared.stop() and shared.stop()


def test_the_flags_and_their_ranges(capsys):
    parser = flag_parser()
    defaults = detect_batching(parser.parse_args(["--allowed_locations=*"]))
    assert defaults == BatchingSettings(max_batch_size=16, max_wait_secs=0.005, max_queued=64)
    chosen = parser.parse_args(
        [
            "--allowed_locations=*",
            "--detect_batch_size=1",
            "--detect_batch_wait_ms=0",
            "--detect_queue_size=3",
        ]
    )
    assert detect_batching(chosen) == BatchingSettings(1, 0.0, 3)
    for flag in (
        "--detect_batch_size=0",
        "--detect_batch_size=257",
        "--detect_batch_size=two",
        "--detect_batch_wait_ms=-1",
        "--detect_batch_wait_ms=1001",
        "--detect_batch_wait_ms=nan",
        "--detect_queue_size=0",
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["--allowed_locations=*", flag])
        assert flag.split("=")[0] in capsys.readouterr().err


# --- Through the server, with boto3 and the real model (open_nsfw, no backbone) -------------


@pytest.fixture
def detect_server(tmp_path, s3, moto_server, monkeypatch):
    """Starts API servers with extra flags: ``start(*flags) -> (server, endpoint)``; each is
    stopped at the end of the test."""
    from tests.conftest import API_KEY_ID, API_SECRET, start_api_server

    monkeypatch.setenv("BEAM_MODERATION_ACCESS_KEYS", f"{API_KEY_ID}:{API_SECRET}")
    started = []

    def start(*flags: str):
        httpd, endpoint = start_api_server(
            [
                f"--registry={tmp_path / f'jobs-{len(started)}.sqlite'}",
                "--allowed_locations=in-bucket",
                "--components=open_nsfw",
                "--backbone=none",
                f"--s3_endpoint_url={moto_server}",
                "--s3_region_name=us-east-1",
                f"--kms_endpoint_url={moto_server}",
                *flags,
            ]
        )
        started.append(httpd)
        return httpd, endpoint

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()
        assert not httpd.api.model.running


def _photos(sample_photos) -> dict[str, bytes]:
    photos = {}
    for name, path in sorted(sample_photos.items()):
        with open(path, "rb") as f:
            photos[name] = f.read()
    return photos


def _client(endpoint: str, **retries):
    import boto3
    from botocore.config import Config

    from tests.conftest import API_KEY_ID, API_SECRET

    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=API_KEY_ID,
        aws_secret_access_key=API_SECRET,
        config=Config(retries=retries or {"total_max_attempts": 1}, read_timeout=120),
    )


def _same_answer(answer: dict, expected: dict) -> None:
    assert answer["ModerationModelVersion"] == expected["ModerationModelVersion"]
    assert [label["Name"] for label in answer["ModerationLabels"]] == [
        label["Name"] for label in expected["ModerationLabels"]
    ]
    for label, wanted in zip(answer["ModerationLabels"], expected["ModerationLabels"]):
        assert label["Confidence"] == pytest.approx(wanted["Confidence"], abs=0.01)
    assert answer["ContentTypes"] == expected["ContentTypes"]


@pytest.mark.slow
def test_concurrent_boto3_calls_are_batched_and_answered_each_its_own(detect_server, sample_photos):
    httpd, endpoint = detect_server("--detect_batch_wait_ms=20")
    _wait_until(lambda: httpd.api.model.loaded, timeout=60)  # loaded at start, unasked
    photos = _photos(sample_photos)
    sequential = _client(endpoint)
    expected = {
        (name, minimum): sequential.detect_moderation_labels(
            Image={"Bytes": data}, MinConfidence=minimum
        )
        for name, data in photos.items()
        for minimum in (0, 50)
    }
    before = dataclasses.replace(httpd.api.model.stats)
    calls = [(name, minimum) for name in photos for minimum in (0, 50)] * 2
    clients = [_client(endpoint) for _ in range(8)]

    def call(index: int) -> dict:
        name, minimum = calls[index]
        return clients[index % len(clients)].detect_moderation_labels(
            Image={"Bytes": photos[name]}, MinConfidence=minimum
        )

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(call, range(len(calls))))
    for (name, minimum), answer in zip(calls, answers):
        _same_answer(answer, expected[name, minimum])
    assert any(answer["ModerationLabels"] for answer in answers)  # MinConfidence=0 finds some
    stats = httpd.api.model.stats
    assert stats.images - before.images == len(calls)
    assert stats.batches - before.batches < len(calls)  # some shared a batch


@pytest.mark.slow
def test_a_tiny_queue_throttles_boto3_and_nothing_else_fails(detect_server, sample_photos):
    from botocore.exceptions import ClientError

    httpd, endpoint = detect_server(
        "--detect_batch_size=1", "--detect_batch_wait_ms=0", "--detect_queue_size=1"
    )
    photos = list(_photos(sample_photos).values())
    expected = [_client(endpoint).detect_moderation_labels(Image={"Bytes": p}) for p in photos]
    outcomes: list[tuple[str, int | None]] = []
    start = threading.Barrier(16)

    def storm(seat: int) -> None:
        client = _client(endpoint)
        start.wait()
        for call in range(4):
            index = (seat + call) % len(photos)
            try:
                answer = client.detect_moderation_labels(Image={"Bytes": photos[index]})
            except ClientError as exc:
                status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                outcomes.append((exc.response["Error"]["Code"], status))
            else:
                _same_answer(answer, expected[index])
                outcomes.append(("answered", None))

    retried: list[dict] = []

    def patient() -> None:
        client = _client(endpoint, mode="standard", max_attempts=20)
        start.wait()
        retried.extend(client.detect_moderation_labels(Image={"Bytes": p}) for p in photos[:3])

    threads = [threading.Thread(target=storm, args=(seat,)) for seat in range(15)]
    threads.append(threading.Thread(target=patient))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 15 * 4
    codes = {code for code, _ in outcomes}
    assert ("ThrottlingException", THROTTLING_HTTP_STATUS) in outcomes
    assert codes <= {"answered", "ThrottlingException"}, outcomes
    assert ("answered", None) in outcomes
    # A client that retries (boto3's own backoff) gets every answer.
    for answer, wanted in zip(retried, expected[:3], strict=True):
        _same_answer(answer, wanted)

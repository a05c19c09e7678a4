"""The job registry on its own: start/get/list semantics, idempotency, limits, tokens, retention."""

from __future__ import annotations

import threading

import pytest

from service.registry import (
    RETENTION_SECS,
    IdempotentParameterMismatch,
    InvalidPaginationToken,
    JobLimitExceeded,
    JobNotFound,
    JobRegistry,
)


class Clock:
    def __init__(self, now: float = 1_790_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _request(token: str | None = None, **overrides) -> dict:
    request = {
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
        "Input": {"S3Object": {"Bucket": "in", "Name": "manifest.jsonl"}},
        "OutputConfig": {"S3Bucket": "out", "S3KeyPrefix": "results"},
    }
    if token:
        request["ClientRequestToken"] = token
    request.update(overrides)
    return request


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(tmp_path, clock):
    return JobRegistry(str(tmp_path / "jobs.sqlite"), max_active_jobs=3, clock=clock)


def test_a_started_job_reads_back_in_the_api_shape(registry, clock):
    job, created = registry.start(_request("t1", JobName="nightly.batch-1"))
    assert created
    assert len(job.job_id) == 64 and int(job.job_id, 16) >= 0
    api = registry.get(job.job_id).to_api()
    assert api == {
        "JobId": job.job_id,
        "JobName": "nightly.batch-1",
        "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": 50.0}},
        "Status": "CREATED",
        "CreationTimestamp": clock.now,
        "Input": {"S3Object": {"Bucket": "in", "Name": "manifest.jsonl"}},
        "OutputConfig": {"S3Bucket": "out", "S3KeyPrefix": "results"},
    }


def test_a_job_goes_through_its_statuses_to_success(registry, clock):
    job, _ = registry.start(_request("t1", KmsKeyId="alias/results"))
    registry.mark_queued(job.job_id)
    assert registry.get(job.job_id).status == "QUEUED"
    registry.mark_in_progress(job.job_id, worker_pid=1234)
    assert registry.get(job.job_id).worker_pid == 1234
    clock.now += 60
    registry.mark_succeeded(
        job.job_id,
        results_key=f"results/{job.job_id}/results.jsonl",
        summary_key=f"results/{job.job_id}/manifest-summary.json",
        model_version="beam-moderation-0.2.0/x",
    )
    api = registry.get(job.job_id).to_api()
    assert api["Status"] == "SUCCEEDED"
    assert api["CompletionTimestamp"] == clock.now
    assert api["KmsKeyId"] == "alias/results"
    assert api["Results"] == {
        "S3Object": {"Bucket": "out", "Name": f"results/{job.job_id}/results.jsonl"},
        "ModelVersions": {"Moderation": "beam-moderation-0.2.0/x"},
    }
    assert api["ManifestSummary"] == {
        "S3Object": {"Bucket": "out", "Name": f"results/{job.job_id}/manifest-summary.json"}
    }
    assert "FailureDetails" not in api
    with pytest.raises(ValueError, match="is SUCCEEDED; it cannot become FAILED"):
        registry.mark_failed(job.job_id, "INTERNAL_ERROR", "late")


def test_a_failed_job_carries_its_code_and_message(registry):
    job, _ = registry.start(_request("t1"))
    registry.mark_failed(job.job_id, "INVALID_MANIFEST", "The manifest is empty.")
    api = registry.get(job.job_id).to_api()
    assert api["Status"] == "FAILED"
    assert api["FailureDetails"] == {
        "Code": "INVALID_MANIFEST",
        "Message": "The manifest is empty.",
    }
    with pytest.raises(ValueError, match="unknown failure code"):
        registry.mark_failed(job.job_id, "OOPS", "x")


def test_the_same_token_and_parameters_give_the_same_job(registry):
    first, created = registry.start(_request("token-1"))
    again, created_again = registry.start(_request("token-1"))
    assert created and not created_again
    assert again.job_id == first.job_id
    assert len(registry.list()[0]) == 1


def test_the_same_token_with_other_parameters_is_a_mismatch(registry):
    registry.start(_request("token-1"))
    with pytest.raises(IdempotentParameterMismatch):
        registry.start(_request("token-1", JobName="other"))


def test_no_token_always_starts_a_new_job(registry):
    first, _ = registry.start(_request())
    second, _ = registry.start(_request())
    assert first.job_id != second.job_id


def test_the_number_of_active_jobs_is_limited(registry):
    jobs = [registry.start(_request(f"t{i}"))[0] for i in range(3)]
    with pytest.raises(JobLimitExceeded, match="limit is 3"):
        registry.start(_request("t3"))
    registry.mark_failed(jobs[0].job_id, "INTERNAL_ERROR", "x")
    registry.start(_request("t3"))  # a finished job frees its place
    # A retry of an existing job is not a new job, whatever the limit.
    assert registry.start(_request("t1"))[0].job_id == jobs[1].job_id


def test_unknown_jobs_are_not_found(registry):
    with pytest.raises(JobNotFound):
        registry.get("0" * 64)
    with pytest.raises(JobNotFound):
        registry.mark_queued("0" * 64)


def test_listing_is_newest_first_and_pages_without_gaps(tmp_path, clock):
    registry = JobRegistry(str(tmp_path / "jobs.sqlite"), max_active_jobs=100, clock=clock)
    started = []
    for i in range(7):
        clock.now += 1 if i != 4 else 0  # two jobs share a creation time
        started.append(registry.start(_request(f"t{i}"))[0].job_id)
    seen, token, pages = [], None, 0
    while True:
        page, token = registry.list(max_results=3, next_token=token)
        seen += [job.job_id for job in page]
        pages += 1
        if token is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(started) and len(set(seen)) == 7
    created = [registry.get(job_id).created for job_id in seen]
    assert created == sorted(created, reverse=True)
    whole, last_token = registry.list()
    assert [job.job_id for job in whole] == seen and last_token is None


def test_tokens_cannot_be_forged_reused_elsewhere_or_kept_forever(tmp_path, registry, clock):
    for i in range(3):
        clock.now += 1
        registry.start(_request(f"t{i}"))
    _, token = registry.list(max_results=1)
    with pytest.raises(InvalidPaginationToken):
        registry.list(max_results=1, next_token="not-a-token")
    with pytest.raises(InvalidPaginationToken):
        registry.list(max_results=1, next_token=token[:-4] + "AAAA")
    with pytest.raises(InvalidPaginationToken, match="another MaxResults"):
        registry.list(max_results=2, next_token=token)
    other = JobRegistry(str(tmp_path / "other.sqlite"), clock=clock)
    with pytest.raises(InvalidPaginationToken):
        other.list(max_results=1, next_token=token)
    clock.now += 2 * 24 * 3600
    with pytest.raises(InvalidPaginationToken, match="expired"):
        registry.list(max_results=1, next_token=token)


def test_records_survive_a_restart_and_orphans_fail(tmp_path, clock):
    path = str(tmp_path / "jobs.sqlite")
    registry = JobRegistry(path, clock=clock)
    running, _ = registry.start(_request("a"))
    registry.mark_in_progress(running.job_id, worker_pid=999_999)
    alive, _ = registry.start(_request("b"))
    registry.mark_in_progress(alive.job_id, worker_pid=4242)
    done, _ = registry.start(_request("c"))
    registry.mark_failed(done.job_id, "INTERNAL_ERROR", "x")

    restarted = JobRegistry(path, clock=clock)
    assert restarted.get(done.job_id).status == "FAILED"
    orphans = restarted.fail_orphans(is_alive=lambda pid: pid == 4242)
    assert orphans == [running.job_id]
    failed = restarted.get(running.job_id).to_api()
    assert failed["Status"] == "FAILED"
    assert failed["FailureDetails"]["Code"] == "INTERNAL_ERROR"
    assert "server restarted" in failed["FailureDetails"]["Message"]
    assert restarted.get(alive.job_id).status == "IN_PROGRESS"


def test_jobs_older_than_a_year_are_purged(registry, clock):
    old, _ = registry.start(_request("old"))
    registry.mark_failed(old.job_id, "INTERNAL_ERROR", "x")
    clock.now += RETENTION_SECS + 1
    recent, _ = registry.start(_request("recent"))
    assert registry.purge() == 1
    with pytest.raises(JobNotFound):
        registry.get(old.job_id)
    assert registry.get(recent.job_id).status == "CREATED"


def test_readers_and_a_writer_in_threads(tmp_path, clock):
    registry = JobRegistry(str(tmp_path / "jobs.sqlite"), max_active_jobs=1000, clock=clock)
    errors: list[BaseException] = []

    def write():
        try:
            for i in range(100):
                registry.start(_request(f"w{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read():
        try:
            for _ in range(100):
                registry.list(max_results=10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(registry.list()[0]) == 100

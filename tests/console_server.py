"""A console to test against: the real server (API and console in one process) over the moto S3
server, and jobs registered as SUCCEEDED with whatever results and summary a test writes.

``register_job`` puts a ``results.jsonl`` and a ``manifest-summary.json`` in S3 and moves a job
through the registry as a job process would, so that pages can be tested on results of any
shape (hostile ones included) without running the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from service.registry import JobRegistry

__all__ = ["console_flags", "register_job", "results_line"]


def console_flags(registry: str, moto_server: str, *extra: str) -> list[str]:
    """The server's flags: registry file, allowed ``in-bucket`` and ``out-bucket``, open_nsfw
    without a backbone, moto for S3 and KMS; the console keeps its files in out-bucket/console."""
    return [
        f"--registry={registry}",
        "--allowed_locations=in-bucket,out-bucket",
        "--console_storage=out-bucket/console",
        "--components=open_nsfw",
        "--backbone=none",
        f"--s3_endpoint_url={moto_server}",
        "--s3_region_name=us-east-1",
        f"--kms_endpoint_url={moto_server}",
        *extra,
    ]


def results_line(
    source_ref: str, labels: Iterable[tuple[str, float, str, int]] = (), content_types=()
) -> dict[str, Any]:
    """A results line: labels as ``(name, confidence, parent, level)``, content types as
    ``(name, confidence)``."""
    return {
        "source-ref": source_ref,
        "detect-moderation-labels": {
            "ModerationLabels": [
                {"Confidence": c, "Name": n, "ParentName": p, "TaxonomyLevel": level}
                for n, c, p, level in labels
            ],
            "ModerationModelVersion": "test",
            "ContentTypes": [{"Confidence": c, "Name": n} for n, c in content_types],
        },
    }


def register_job(
    registry_path: str,
    s3,
    lines: Iterable[Mapping[str, Any] | str],
    *,
    errors: Iterable[Mapping[str, Any]] = (),
    name: str = "test-job",
    min_confidence: float = 50.0,
) -> str:
    """A SUCCEEDED job whose outputs in ``out-bucket`` are these results lines (objects, or
    text as it is) and a summary with these errors; returns its id."""
    registry = JobRegistry(registry_path, max_active_jobs=1000)
    job, _ = registry.start(
        {
            "JobName": name,
            "OperationsConfig": {"DetectModerationLabels": {"MinConfidence": min_confidence}},
            "Input": {"S3Object": {"Bucket": "in-bucket", "Name": "manifest.jsonl"}},
            "OutputConfig": {"S3Bucket": "out-bucket", "S3KeyPrefix": "results"},
        }
    )
    prefix = f"results/{job.job_id}"
    body = "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
    ).encode()
    valid = body.count(b"\n")
    errors = list(errors)
    summary = {
        "version": "1.0",
        "statistics": {
            "total-json-lines": valid + len(errors),
            "valid-json-lines": valid,
            "invalid-json-lines": len(errors),
        },
        "errors": errors,
    }
    s3.put_object(Bucket="out-bucket", Key=f"{prefix}/results.jsonl", Body=body)
    s3.put_object(
        Bucket="out-bucket", Key=f"{prefix}/manifest-summary.json", Body=json.dumps(summary)
    )
    registry.mark_queued(job.job_id)
    registry.mark_in_progress(job.job_id)
    registry.mark_succeeded(
        job.job_id,
        results_key=f"{prefix}/results.jsonl",
        summary_key=f"{prefix}/manifest-summary.json",
        model_version="test",
    )
    return job.job_id

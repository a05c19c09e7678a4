"""What a scheduled run did with each manifest version: the actions, outcomes and their counts."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

from scheduler.manifests import ManifestVersion

__all__ = ["ACTIONS", "FAILED", "SKIPPED", "STARTED", "WOULD_START", "Outcome", "summarize"]

# Actions, in the order the summary counts them.
STARTED, SKIPPED, FAILED, WOULD_START = "started", "skipped", "failed", "would_start"
ACTIONS = (STARTED, SKIPPED, FAILED, WOULD_START)


@dataclasses.dataclass
class Outcome:
    """What this run did with one manifest version."""

    manifest: ManifestVersion
    action: str  # one of ACTIONS
    job_id: str | None = None
    output: str | None = None
    reason: str | None = None
    client_request_token: str | None = None
    started_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest.uri,
            "bucket": self.manifest.bucket,
            "key": self.manifest.key,
            "etag": self.manifest.etag,
            "version_id": self.manifest.version_id,
            "action": self.action,
            "job_id": self.job_id,
            "output": self.output,
            "started_at": self.started_at,
            "client_request_token": self.client_request_token,
            "reason": self.reason,
        }

    def line(self) -> str:
        head = f"{self.manifest.uri} (ETag {self.manifest.etag[:12]})"
        if self.action == STARTED:
            where = f", output {self.output}" if self.output else ""
            return f"{head}: started {self.job_id}{where}"
        if self.action == SKIPPED:
            return f"{head}: skipped ({self.reason})"
        if self.action == WOULD_START:
            where = f" to {self.output}" if self.output else ""
            return f"{head}: would start{where} (dry run)"
        return f"{head}: failed: {self.reason}"


def summarize(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = collections.Counter(outcome.action for outcome in outcomes)
    return {**{action: counts.get(action, 0) for action in ACTIONS}, "total": len(outcomes)}

"""One scheduled run: list the manifests, skip, start or fail each version, record the starts."""

from __future__ import annotations

import os
from typing import Any

from scheduler.errors import ScheduleError, UsageError
from scheduler.local_runs import already_done, run_locally
from scheduler.manifests import (
    ManifestVersion,
    current_version,
    list_manifests,
    local_output,
    relative_name,
)
from scheduler.outcomes import FAILED, SKIPPED, STARTED, WOULD_START, Outcome
from scheduler.plan import Plan
from scheduler.state import ScheduleState
from scheduler.submission import client_request_token, rekognition_client, start_through_api
from storage.outputs import join
from transforms.output import SUMMARY_FILE

__all__ = ["schedule"]


class _Run:
    """One run's decisions: skip, start or fail, manifest by manifest, recording each start."""

    def __init__(self, plan: Plan, s3_client: Any, api_client: Any, state: ScheduleState) -> None:
        self.plan = plan
        self.args = plan.args
        self.local = not plan.args.endpoint_url
        self.s3_client = s3_client
        self.api_client = api_client
        self.state = state
        self.errors: list[str] = []
        self._unreachable: str | None = None  # why the API cannot be asked, once it failed so

    def one(self, listed: ManifestVersion) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        args, plan = self.args, self.plan
        name = relative_name(listed, plan.prefix, args.suffix)
        record = self.state.get(listed)
        if record is not None:
            return Outcome(
                listed,
                SKIPPED,
                job_id=record.get("job_id"),
                output=record.get("output"),
                started_at=record.get("started_at"),
                reason=f"already started as {record.get('job_id')} at {record.get('started_at')}",
            )
        output = local_output(args.output, name, listed.etag) if self.local else None
        if self.local:
            marker = join(output, SUMMARY_FILE)
            try:
                done = already_done(output)
            except Exception as exc:  # any filesystem's error
                return Outcome(
                    listed, FAILED, output=output, reason=f"cannot check {marker}: {exc}"
                )
            if done:
                job = os.path.basename(output)
                if not args.dry_run:
                    self.state.record(listed, job, output)
                return Outcome(
                    listed,
                    SKIPPED,
                    job_id=job,
                    output=output,
                    reason=f"already done: {marker} exists",
                )
        if args.dry_run:
            token = (
                None
                if self.local
                else client_request_token(listed, plan.output_bucket, plan.output_prefix)
            )
            return Outcome(listed, WOULD_START, output=output, client_request_token=token)
        if self._unreachable:
            return Outcome(listed, FAILED, reason=self._unreachable)
        try:
            manifest = current_version(self.s3_client, listed)
        except (ClientError, BotoCoreError) as exc:
            return Outcome(listed, FAILED, reason=f"cannot read the manifest: {exc}")
        if manifest is None:
            return Outcome(listed, SKIPPED, reason="deleted since it was listed; nothing to do")
        if self.local:
            outcome = run_locally(plan, manifest, output)
        else:
            try:
                outcome = start_through_api(plan, self.api_client, manifest, name)
            except BotoCoreError as exc:
                self._unreachable = f"the API at {args.endpoint_url} cannot be reached: {exc}"
                return Outcome(manifest, FAILED, reason=self._unreachable)
        if outcome.action == STARTED:
            record = self.state.record(manifest, outcome.job_id, outcome.output)
            outcome.started_at = record["started_at"]
            if self.local:
                self.save()  # a local run takes minutes: keep each one recorded at once
        return outcome

    def save(self) -> None:
        """Saves the state; a failure is reported, not raised: the jobs were started."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.state.save()
        except (ScheduleError, ValueError, ClientError, BotoCoreError) as exc:
            then = (
                f"finished runs are still skipped by their {SUMMARY_FILE}"
                if self.local
                else "the next run asks the API again, which answers with the same jobs"
            )
            message = f"the state could not be saved ({exc}); {then}"
            if message not in self.errors:
                self.errors.append(message)


def schedule(
    plan: Plan, *, s3_client: Any = None, api_client: Any = None
) -> tuple[list[Outcome], list[str]]:
    """Lists, decides and starts: ``(one outcome per manifest, run-level errors)``.

    Raises UsageError or ScheduleError when nothing can be done (the listing or the state
    cannot be read).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    args = plan.args
    s3_client = s3_client or plan.s3.client()
    try:
        manifests = list_manifests(s3_client, plan.bucket, plan.prefix, args.suffix)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise UsageError(
                f"--manifests {args.manifests}: bucket {plan.bucket!r} does not exist"
            ) from None
        raise ScheduleError(f"--manifests {args.manifests} cannot be listed: {exc}") from exc
    except BotoCoreError as exc:
        raise ScheduleError(f"--manifests {args.manifests} cannot be listed: {exc}") from exc
    state = ScheduleState(plan.state_location, s3_client)
    try:
        state.load()
    except (ClientError, BotoCoreError) as exc:
        raise ScheduleError(f"--state {plan.state_location} cannot be read: {exc}") from exc
    if args.endpoint_url and not args.dry_run and api_client is None:
        api_client = rekognition_client(args)

    run = _Run(plan, s3_client, api_client, state)
    outcomes: list[Outcome] = []
    try:
        for listed in manifests:
            outcomes.append(run.one(listed))
    finally:
        if not args.dry_run:
            run.save()
    return outcomes, run.errors

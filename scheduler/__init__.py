"""Scheduled batch runs: start a moderation job for every new manifest under an S3 prefix.

Usage (from cron, Cloud Scheduler or any timer; see docs/scheduling.md)::

    python -m scheduler --manifests s3://in-bucket/manifests/ \\
        --output s3://out-bucket/results [--endpoint_url http://127.0.0.1:8642] \\
        [--suffix .jsonl] [--state s3://out-bucket/schedule-state.json | PATH] \\
        [--min_confidence 50] [--project_version ARN] [--job_name_prefix scheduled] \\
        [--dry_run] [--format text|json] [--s3_endpoint_url URL ...]

Each run lists the objects under ``--manifests`` (every page), keeps those whose key ends with
``--suffix``, and starts one job for each manifest version it has not started before. A
manifest version is ``(bucket, key, ETag)``: re-uploading a manifest with other content gives it
a new ETag and so a new job; an unchanged one is skipped; a deleted one is left alone.

Exactly once, in two layers:

- With ``--endpoint_url``, jobs start through the Rekognition API (StartMediaAnalysisJob). The
  ``ClientRequestToken`` is the SHA-256 of the manifest's bucket, key, ETag (and VersionId, in a
  versioned bucket) and the output location, so a rerun, a second scheduler racing this one, or
  a run after the state was lost asks for the same token with the same parameters, and the API
  answers with the JobId it started the first time.
- The state (``--state``, default ``<output>/schedule-state.json``) records each started version
  with its job id and time, so a rerun skips it without calling the API. On S3 it is written
  with a conditional put (``If-Match`` / ``If-None-Match``), merging with a concurrent writer's
  records; it is a cache of what the API already guarantees.

Without ``--endpoint_url`` the job runs here, one ``python -m pipeline.run`` process after the
other, writing to ``<output>/<manifest name>-<ETag[:12]>``; a version whose output already holds
``manifest-summary.json`` is done and skipped, even when the state was lost.

Exit status: 0 when nothing failed; 1 when some manifest could not be started or run (the others
still were; the failed ones are tried again on the next run) or the listing or the state failed;
2 for bad arguments.
"""

__all__: list[str] = []

"""Submission: starting a manifest version's job through the Rekognition API, exactly once."""

from __future__ import annotations

import argparse
import hashlib
import os
from typing import Any

from scheduler.errors import UsageError
from scheduler.manifests import ManifestVersion, job_name
from scheduler.outcomes import FAILED, STARTED, Outcome
from scheduler.plan import Plan

__all__ = [
    "API_KEY_ID_ENV",
    "API_SECRET_ENV",
    "client_request_token",
    "rekognition_client",
    "start_through_api",
]

# Environment variables holding the key pair the API server knows (its --access_keys_file or
# BEAM_MODERATION_ACCESS_KEYS), so that it need not be the AWS key pair that reads S3.
API_KEY_ID_ENV = "BEAM_MODERATION_API_ACCESS_KEY_ID"
API_SECRET_ENV = "BEAM_MODERATION_API_SECRET_ACCESS_KEY"


def client_request_token(manifest: ManifestVersion, output_bucket: str, output_prefix: str) -> str:
    """The StartMediaAnalysisJob ``ClientRequestToken`` of this manifest version and output.

    64 hex characters (the API's limit and pattern ``^[a-zA-Z0-9-_]+$``): the same manifest
    version sent to the same output always gets the same token, so the API answers with the job
    it started the first time.
    """
    parts = (
        "beam-moderation-schedule/1",
        manifest.bucket,
        manifest.key,
        manifest.etag,
        manifest.version_id or "",
        output_bucket,
        output_prefix,
    )
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def rekognition_client(args: argparse.Namespace) -> Any:
    """The client of the API at ``--endpoint_url``, signing with the API's key pair."""
    import boto3
    from botocore.config import Config

    region = (
        args.api_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    key_id, secret = os.environ.get(API_KEY_ID_ENV), os.environ.get(API_SECRET_ENV)
    if bool(key_id) != bool(secret):
        raise UsageError(f"set both {API_KEY_ID_ENV} and {API_SECRET_ENV}, or neither")
    if key_id:
        session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret)
    else:
        session = boto3.Session(profile_name=args.api_profile)
    return session.client(
        "rekognition",
        endpoint_url=args.endpoint_url,
        region_name=region,
        config=Config(retries={"mode": "standard"}),
    )


_MISMATCH_HINT = (
    "this manifest version was started before for this output with other settings "
    "(--min_confidence, --project_version or --job_name_prefix changed since) and the state has "
    "no record of that job (see ListMediaAnalysisJobs); restore the state or the old settings, "
    "or re-upload the manifest to process it again"
)


def start_through_api(plan: Plan, client: Any, manifest: ManifestVersion, name: str) -> Outcome:
    """Starts the job of ``manifest`` (StartMediaAnalysisJob); a refusal is a failed outcome."""
    from botocore.exceptions import ClientError

    args = plan.args
    token = client_request_token(manifest, plan.output_bucket, plan.output_prefix)
    operations: dict[str, Any] = {"MinConfidence": args.min_confidence}
    if args.project_version:
        operations["ProjectVersion"] = args.project_version
    s3_object = {"Bucket": manifest.bucket, "Name": manifest.key}
    if manifest.version_id:
        s3_object["Version"] = manifest.version_id
    output_config = {"S3Bucket": plan.output_bucket}
    if plan.output_prefix:
        output_config["S3KeyPrefix"] = plan.output_prefix
    outcome = Outcome(manifest, FAILED, client_request_token=token)
    try:
        answer = client.start_media_analysis_job(
            ClientRequestToken=token,
            JobName=job_name(args.job_name_prefix, name, manifest.etag),
            OperationsConfig={"DetectModerationLabels": operations},
            Input={"S3Object": s3_object},
            OutputConfig=output_config,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(exc))
        outcome.reason = f"{code}: {message}"
        if code == "IdempotentParameterMismatchException":
            outcome.reason += f" ({_MISMATCH_HINT})"
        elif code in ("LimitExceededException", "ThrottlingException", "InternalServerError"):
            outcome.reason += " (tried again on the next run)"
        return outcome
    job_id = answer["JobId"]
    prefix = f"{plan.output_prefix}/{job_id}" if plan.output_prefix else job_id
    outcome.action, outcome.job_id = STARTED, job_id
    outcome.output = f"s3://{plan.output_bucket}/{prefix}"
    return outcome

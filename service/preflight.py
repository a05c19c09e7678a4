"""Checks a StartMediaAnalysisJob request's S3 and KMS resources before its job is run.

Each problem maps to the ``FailureDetails.Code`` Rekognition reports for it, with a message that
says what to fix. The checks use the same S3 (and KMS) endpoint as the jobs, so they see what
the job would see.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

__all__ = ["DEFAULT_MAX_MANIFEST_BYTES", "PreflightProblem", "check_job_resources", "is_allowed"]

# A manifest line is a short JSON object: 1 GiB holds several million images.
DEFAULT_MAX_MANIFEST_BYTES = 1 << 30

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled"}


class PreflightProblem(NamedTuple):
    code: str  # a FailureDetails.Code
    message: str


def is_allowed(bucket: str, key: str, allowed: Collection[str] | None) -> bool:
    """Whether ``s3://bucket/key`` falls under one of the ``bucket`` or ``bucket/prefix`` entries.

    ``None`` allows everything; an empty collection allows nothing.
    """
    if allowed is None:
        return True
    for entry in allowed:
        entry_bucket, _, prefix = entry.partition("/")
        if entry_bucket == bucket and key.startswith(prefix):
            return True
    return False


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def check_job_resources(
    request: Mapping[str, Any],
    s3_client,
    kms_client=None,
    *,
    allowed_locations: Collection[str] | None = None,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
) -> PreflightProblem | None:
    """The first problem found with the job's manifest, output location or KMS key, or None."""
    manifest = request["Input"]["S3Object"]
    bucket, name = manifest["Bucket"], manifest["Name"]
    output = request["OutputConfig"]
    out_bucket, prefix = output["S3Bucket"], output.get("S3KeyPrefix", "")

    if not is_allowed(bucket, name, allowed_locations):
        return PreflightProblem("ACCESS_DENIED", f"This server may not read s3://{bucket}/{name}.")
    if not is_allowed(out_bucket, prefix, allowed_locations):
        return PreflightProblem(
            "ACCESS_DENIED", f"This server may not write under s3://{out_bucket}/{prefix}."
        )

    head_args = {"Bucket": bucket, "Key": name}
    if manifest.get("Version"):
        head_args["VersionId"] = manifest["Version"]
    try:
        head = s3_client.head_object(**head_args)
    except ClientError as exc:
        code = _error_code(exc)
        if code in _MISSING:
            return PreflightProblem(
                "INVALID_S3_OBJECT", f"The manifest s3://{bucket}/{name} does not exist."
            )
        if code in _DENIED:
            return PreflightProblem(
                "ACCESS_DENIED", f"Access to the manifest s3://{bucket}/{name} was denied."
            )
        raise
    size = int(head.get("ContentLength", 0))
    if size == 0:
        return PreflightProblem("INVALID_MANIFEST", f"The manifest s3://{bucket}/{name} is empty.")
    if size > max_manifest_bytes:
        return PreflightProblem(
            "INVALID_MANIFEST",
            f"The manifest s3://{bucket}/{name} is {size} bytes; the limit is "
            f"{max_manifest_bytes}. Split it into several jobs.",
        )

    problem = _check_output(s3_client, out_bucket, prefix)
    if problem:
        return problem
    if request.get("KmsKeyId"):
        return _check_kms_key(kms_client, request["KmsKeyId"])
    return None


def _check_output(s3_client, bucket: str, prefix: str) -> PreflightProblem | None:
    try:
        s3_client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) in _MISSING:
            return PreflightProblem(
                "INVALID_OUTPUT_CONFIG", f"The output bucket {bucket} does not exist."
            )
        if _error_code(exc) in _DENIED:
            return PreflightProblem(
                "INVALID_OUTPUT_CONFIG", f"Access to the output bucket {bucket} was denied."
            )
        raise
    # Writing is what the job will do: prove it can, then leave nothing behind.
    probe = f"{prefix.rstrip('/')}/.write-check-{secrets.token_hex(8)}".lstrip("/")
    try:
        s3_client.put_object(Bucket=bucket, Key=probe, Body=b"")
        s3_client.delete_object(Bucket=bucket, Key=probe)
    except ClientError as exc:
        return PreflightProblem(
            "INVALID_OUTPUT_CONFIG",
            f"Results cannot be written under s3://{bucket}/{prefix}: {_error_code(exc)}.",
        )
    return None


def _check_kms_key(kms_client, key_id: str) -> PreflightProblem | None:
    if kms_client is None:
        return PreflightProblem(
            "INVALID_KMS_KEY", "KmsKeyId was given but this server has no KMS endpoint configured."
        )
    try:
        key = kms_client.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        return PreflightProblem(
            "INVALID_KMS_KEY", f"The KMS key {key_id} cannot be used: {_error_code(exc)}."
        )
    if not key.get("Enabled", True) or key.get("KeyState") not in (None, "Enabled"):
        return PreflightProblem(
            "INVALID_KMS_KEY", f"The KMS key {key_id} is {key.get('KeyState', 'disabled')}."
        )
    if key.get("KeyUsage") not in (None, "ENCRYPT_DECRYPT"):
        return PreflightProblem(
            "INVALID_KMS_KEY", f"The KMS key {key_id} is not an encryption key."
        )
    return None

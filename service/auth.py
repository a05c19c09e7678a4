"""AWS Signature Version 4 verification for requests to the Rekognition-compatible API.

The real boto3 client and AWS CLI sign every request with SigV4 (service name ``rekognition``).
``verify_sigv4`` checks the Authorization header's form, date and credential scope itself, then
has botocore's own signer (``botocore.auth.SigV4Auth``) sign what arrived on the wire (the
headers the client signed, the exact body) with the secret configured for the caller's access key
id, and compares. Failures raise ``AuthError`` with
the error code, message and HTTP status that AWS JSON (Coral) services answer, so a client sees
the same ``ClientError`` it would see from AWS.

Codes and messages follow responses captured from AWS JSON services (architect/dynalite's
``index.js`` records them for DynamoDB; the expiry wording is that of the "Signature expired:
... is now earlier than ... (... - 15 min.)" replies quoted in aws/aws-sdk-js issue #254).

``X-Amz-Security-Token`` is not checked: this server holds only long-term key pairs, and the
token, when the client signs it, is covered by the signature like any other header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from service.errors import RequestError

__all__ = [
    "ACCESS_KEYS_ENV_VAR",
    "AccessKeys",
    "AuthError",
    "verify_sigv4",
]

_LOGGER = logging.getLogger(__name__)

ACCESS_KEYS_ENV_VAR = "BEAM_MODERATION_ACCESS_KEYS"

_ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")

# Error codes as AWS JSON services spell them in "__type".
MISSING_AUTHENTICATION_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"

_MSG_MISSING_TOKEN = "Request is missing Authentication Token"
_MSG_UNRECOGNIZED_CLIENT = "The security token included in the request is invalid."
_MSG_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class AuthError(RequestError):
    """A request failed authentication; carries the AWS error code, message and HTTP status."""


@dataclass(frozen=True)
class AccessKeys:
    """The access key pairs the server accepts: access key id -> secret access key."""

    _secrets: Mapping[str, str] = field(repr=False)

    def __repr__(self) -> str:
        # Secrets never appear in reprs, logs or tracebacks.
        return f"AccessKeys(access_key_ids={sorted(self._secrets)!r})"

    def __len__(self) -> int:
        return len(self._secrets)

    @property
    def access_key_ids(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def secret_for(self, access_key_id: str) -> str | None:
        """The secret access key for ``access_key_id``, or None when it is not configured."""
        return self._secrets.get(access_key_id)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], *, source: str = "pairs") -> AccessKeys:
        """Build from ``(access_key_id, secret_access_key)`` pairs; ``source`` names them in
        error messages."""
        secrets: dict[str, str] = {}
        for index, (key_id, secret) in enumerate(pairs):
            if not isinstance(key_id, str) or not key_id.strip():
                raise ValueError(f"{source}: access key #{index + 1} has an empty access key id")
            if not isinstance(secret, str) or not secret:
                raise ValueError(f"{source}: access key {key_id!r} has an empty secret access key")
            key_id = key_id.strip()
            if key_id in secrets:
                raise ValueError(f"{source}: access key id {key_id!r} is listed more than once")
            secrets[key_id] = secret
        if not secrets:
            raise ValueError(f"{source}: no access keys are configured")
        return cls(secrets)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AccessKeys:
        """Read ``{"access_keys": [{"access_key_id": ..., "secret_access_key": ...}, ...]}``."""
        source = f"access keys file {os.fspath(path)!r}"
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"Unable to read {source}: {error.strerror or error}") from error
        except UnicodeDecodeError:
            raise ValueError(f"{source} is not UTF-8 text") from None
        except json.JSONDecodeError as error:
            # Only the reason and position: the document itself holds secrets.
            raise ValueError(
                f"{source} is not valid JSON: {error.msg} "
                f"(line {error.lineno}, column {error.colno})"
            ) from None
        entries = document.get("access_keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f'{source} must hold an object with an "access_keys" list')
        pairs = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not {"access_key_id", "secret_access_key"} <= set(
                entry
            ):
                raise ValueError(
                    f"{source}: access_keys[{index}] must be an object with "
                    '"access_key_id" and "secret_access_key"'
                )
            pairs.append((entry["access_key_id"], entry["secret_access_key"]))
        return cls.from_pairs(pairs, source=source)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AccessKeys:
        """Read ``BEAM_MODERATION_ACCESS_KEYS="ID1:SECRET1,ID2:SECRET2"``."""
        source = f"environment variable {ACCESS_KEYS_ENV_VAR}"
        value = environ.get(ACCESS_KEYS_ENV_VAR, "")
        if not value.strip():
            raise ValueError(f"{source} is not set (expected ID1:SECRET1,ID2:SECRET2)")
        pairs = []
        for index, item in enumerate(value.split(",")):
            key_id, sep, secret = item.strip().partition(":")
            if not sep:
                raise ValueError(
                    f"{source}: entry #{index + 1} is not ACCESS_KEY_ID:SECRET_ACCESS_KEY"
                )
            pairs.append((key_id, secret))
        return cls.from_pairs(pairs, source=source)


@dataclass(frozen=True)
class _Authorization:
    algorithm: str
    credential: str
    signed_headers: list[str]
    signature: str


def verify_sigv4(
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: AccessKeys,
    *,
    now: datetime | None = None,
    service: str = "rekognition",
    max_skew: timedelta = timedelta(minutes=15),
) -> str:
    """Check the SigV4 ``Authorization`` header of a request and return the caller's access key id.

    ``path`` and ``query_string`` are as received on the wire (still percent-encoded), ``headers``
    as received (names in any case), ``body`` the exact bytes. Raises ``AuthError`` otherwise.
    """
    lower_headers = {name.lower(): value for name, value in headers.items()}
    auth_header = lower_headers.get("authorization", "")
    if not auth_header.strip().startswith("AWS4-"):
        raise AuthError(MISSING_AUTHENTICATION_TOKEN, _MSG_MISSING_TOKEN)

    amz_date = lower_headers.get("x-amz-date", "").strip()
    authorization = _parse_authorization(auth_header, has_date=bool(amz_date))

    if not _AMZ_DATE_PATTERN.match(amz_date):
        raise AuthError(
            INCOMPLETE_SIGNATURE,
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        )
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthError(
            INCOMPLETE_SIGNATURE,
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        ) from None
    _check_skew(amz_date, signed_at, now, max_skew)

    for required in ("host", "x-amz-date"):
        if required not in authorization.signed_headers:
            name = "Host" if required == "host" else "X-Amz-Date"
            raise AuthError(
                INVALID_SIGNATURE, f"'{name}' must be a 'SignedHeader' in the AWS Authorization."
            )
    if authorization.algorithm != _ALGORITHM:
        raise AuthError(
            INCOMPLETE_SIGNATURE,
            f"Unsupported AWS 'algorithm': '{authorization.algorithm}' "
            f"(only {_ALGORITHM} for now). ",
        )

    access_key_id, scope = _check_credential(authorization.credential, amz_date, service)
    secret = keys.secret_for(access_key_id)
    if secret is None:
        _LOGGER.info("Rejected a request signed with unknown access key id %r", access_key_id)
        raise AuthError(UNRECOGNIZED_CLIENT, _MSG_UNRECOGNIZED_CLIENT)

    payload_hash = hashlib.sha256(body).hexdigest()
    claimed_hash = lower_headers.get("x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash.strip().lower() != payload_hash:
        _LOGGER.info("Rejected a request whose X-Amz-Content-SHA256 does not match its body")
        raise AuthError(INVALID_SIGNATURE, _MSG_SIGNATURE_MISMATCH)

    date_stamp, region, scope_service, _ = scope.split("/")
    expected = _expected_signature(
        method,
        path,
        query_string,
        {name: lower_headers.get(name, "") for name in authorization.signed_headers},
        body,
        Credentials(access_key_id, secret),
        amz_date,
        region,
        scope_service,
    )
    # Bytes, not str: compare_digest refuses non-ASCII str, and the signature is untrusted input.
    if not hmac.compare_digest(expected.encode(), authorization.signature.encode("utf-8")):
        _LOGGER.info("Rejected a request with a wrong signature for key id %r", access_key_id)
        raise AuthError(INVALID_SIGNATURE, _MSG_SIGNATURE_MISMATCH)
    return access_key_id


def _parse_authorization(auth_header: str, *, has_date: bool) -> _Authorization:
    auth_header = auth_header.strip()
    algorithm, _, rest = auth_header.partition(" ")
    params: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise AuthError(
                INCOMPLETE_SIGNATURE,
                f"'{key}' not a valid key=value pair (missing equal-sign) in Authorization "
                f"header: '{auth_header}'.",
            )
        params[key.strip()] = value.strip()
    problems = [
        f"Authorization header requires '{name}' parameter. "
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if not has_date:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        )
    if problems:
        raise AuthError(INCOMPLETE_SIGNATURE, "".join(problems) + f"Authorization={auth_header}")
    return _Authorization(
        algorithm=algorithm,
        credential=params["Credential"],
        signed_headers=[name.strip().lower() for name in params["SignedHeaders"].split(";")],
        signature=params["Signature"],
    )


def _check_skew(
    amz_date: str, signed_at: datetime, now: datetime | None, max_skew: timedelta
) -> None:
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    minutes = f"{max_skew.total_seconds() / 60:g} min."
    if signed_at < now - max_skew:
        raise AuthError(
            INVALID_SIGNATURE,
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - max_skew).strftime(_AMZ_DATE_FORMAT)} "
            f"({now.strftime(_AMZ_DATE_FORMAT)} - {minutes})",
        )
    if signed_at > now + max_skew:
        raise AuthError(
            INVALID_SIGNATURE,
            f"Signature not yet current: {amz_date} is still later than "
            f"{(now + max_skew).strftime(_AMZ_DATE_FORMAT)} "
            f"({now.strftime(_AMZ_DATE_FORMAT)} + {minutes})",
        )


def _check_credential(credential: str, amz_date: str, service: str) -> tuple[str, str]:
    """Split ``keyid/date/region/service/aws4_request``; return the key id and the scope."""
    parts = credential.rstrip("/").split("/")
    if len(parts) != 5:
        raise AuthError(
            INCOMPLETE_SIGNATURE,
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'",
        )
    access_key_id, date_stamp, region, scope_service, terminator = parts
    problems = []
    # Any region is accepted (the client's choice is covered by the signature), but not none.
    if not region:
        problems.append(f"Credential should be scoped to a valid region, not '{region}'. ")
    if scope_service != service:
        problems.append(f"Credential should be scoped to correct service: '{service}'. ")
    if terminator != _TERMINATOR:
        problems.append(
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not '{terminator}'. "
        )
    if date_stamp != amz_date[:8]:
        problems.append(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date_stamp}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if problems:
        raise AuthError(INVALID_SIGNATURE, "".join(problems).rstrip())
    return access_key_id, "/".join(parts[1:])


def _expected_signature(
    method: str,
    path: str,
    query_string: str,
    signed_headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    amz_date: str,
    region: str,
    service: str,
) -> str:
    """The signature botocore's own signer gives this request: the clients are botocore, so
    their canonicalisation is the one to agree with. Only the headers the client signed are
    given to it, each with the value that arrived."""
    host = signed_headers.get("host", "")
    query = f"?{query_string.lstrip('?')}" if query_string.lstrip("?") else ""
    request = AWSRequest(
        method=method.upper(),
        url=f"http://{host}{path or '/'}{query}",
        headers=dict(signed_headers),
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(credentials, service, region)
    canonical_request = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical_request), request)

"""The schedule state: which manifest versions were started, saved with conditional puts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from typing import Any

from scheduler.errors import ScheduleError, UsageError
from scheduler.manifests import ManifestVersion, split_s3_uri

__all__ = ["DEFAULT_STATE_NAME", "STATE_FORMAT_VERSION", "ScheduleState"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_STATE_NAME = "schedule-state.json"
STATE_FORMAT_VERSION = 1
_STATE_WRITE_ATTEMPTS = 5


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ScheduleState:
    """Which manifest versions were started: a small JSON document on S3 or on local disk.

    ``{"version": 1, "started": {"s3://bucket/key": {"<ETag>": {"job_id": ..., "output": ...,
    "started_at": "2026-01-01T00:00:00Z"}}}}``

    Saving merges with what another scheduler wrote meanwhile: on S3 through a conditional put
    (``If-Match`` the ETag read, or ``If-None-Match: *`` for a new file), re-read and retried on
    a conflict; a store that does not implement conditional writes gets a plain put.
    """

    def __init__(self, location: str, s3_client: Any = None) -> None:
        self.location = location
        self._s3 = s3_client
        self._started: dict[str, dict[str, dict[str, Any]]] = {}
        self._added: dict[tuple[str, str], dict[str, Any]] = {}
        self._etag: str | None = None  # of the S3 object read, None when there was none

    @property
    def on_s3(self) -> bool:
        return self.location.startswith("s3://")

    # Reading.

    def load(self) -> ScheduleState:
        text = self._read()
        self._started = self._parse(text) if text is not None else {}
        for (uri, etag), record in self._added.items():
            self._started.setdefault(uri, {})[etag] = record
        return self

    def _read(self) -> str | None:
        if self.on_s3:
            from botocore.exceptions import ClientError

            bucket, key = split_s3_uri(self.location, "--state")
            try:
                answer = self._s3.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    self._etag = None
                    return None
                raise ScheduleError(f"--state {self.location} cannot be read: {exc}") from exc
            self._etag = answer["ETag"]
            return answer["Body"].read().decode("utf-8")
        try:
            with open(self.location, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScheduleError(f"--state {self.location} cannot be read: {exc}") from exc

    def _parse(self, text: str) -> dict[str, dict[str, dict[str, Any]]]:
        problem = (
            f"--state {self.location} is not a schedule state file; fix it, point --state "
            "elsewhere, or delete it (the API's ClientRequestToken keeps jobs exactly-once "
            "without it)"
        )
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{problem}: {exc}") from exc
        if (
            not isinstance(document, dict)
            or document.get("version") != STATE_FORMAT_VERSION
            or not isinstance(document.get("started"), dict)
        ):
            raise UsageError(f'{problem}: expected {{"version": 1, "started": {{...}}}}')
        started = document["started"]
        if not all(
            isinstance(versions, dict) and all(isinstance(r, dict) for r in versions.values())
            for versions in started.values()
        ):
            raise UsageError(f"{problem}: every manifest must map ETags to records")
        return started

    def get(self, manifest: ManifestVersion) -> dict[str, Any] | None:
        return self._started.get(manifest.uri, {}).get(manifest.etag)

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._started.values())

    # Writing.

    def record(self, manifest: ManifestVersion, job_id: str, output: str | None) -> dict[str, Any]:
        record = {"job_id": job_id, "output": output, "started_at": _now()}
        if manifest.version_id:
            record["version_id"] = manifest.version_id
        self._added[(manifest.uri, manifest.etag)] = record
        self._started.setdefault(manifest.uri, {})[manifest.etag] = record
        return record

    def _document(self) -> bytes:
        document = {"version": STATE_FORMAT_VERSION, "started": self._started}
        return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")

    def save(self) -> None:
        """Writes the records, merged with any written meanwhile; ScheduleError if it cannot."""
        if not self._added:
            return
        if self.on_s3:
            self._save_s3()
        else:
            self._save_local()

    def _save_s3(self) -> None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(self.location, "--state")
        conditional = True
        for _ in range(_STATE_WRITE_ATTEMPTS):
            condition = {}
            if conditional:
                condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
            try:
                answer = self._s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=self._document(),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                    409,
                    412,
                ):
                    self.load()  # another scheduler wrote it: merge with its records, retry
                    continue
                if conditional and (code == "NotImplemented" or status == 501):
                    _LOGGER.warning(
                        "The store has no conditional writes; writing %s unconditionally",
                        self.location,
                    )
                    conditional = False
                    continue
                raise ScheduleError(f"--state {self.location} cannot be written: {exc}") from exc
            self._etag = answer.get("ETag")
            self._added.clear()
            return
        raise ScheduleError(
            f"--state {self.location} kept changing under this run ({_STATE_WRITE_ATTEMPTS} "
            "conflicting writes): are many schedulers sharing it?"
        )

    def _save_local(self) -> None:
        self.load()  # merge with what another run wrote meanwhile
        folder = os.path.dirname(os.path.abspath(self.location))
        try:
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".schedule-state-", dir=folder)
            try:
                with os.fdopen(handle, "wb") as f:
                    f.write(self._document())
                os.replace(temporary, self.location)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise ScheduleError(f"--state {self.location} cannot be written: {exc}") from exc
        self._added.clear()

"""Jobs run on Google Cloud Dataflow: launched from the Flex Template, then watched to the end.

The server calls Dataflow's REST API (v1b3) directly:
``POST /v1b3/projects/{project}/locations/{region}/flexTemplates:launch`` with a
``LaunchFlexTemplateRequest`` whose ``parameters`` are the job's flags (the names of
``templates/metadata.json``), then ``GET .../jobs/{jobId}`` until the job's ``currentState`` is
terminal, and on failure ``GET .../jobs/{jobId}/messages`` for the reason. The template itself is
built and staged as the README says (``gcloud dataflow flex-template build``).

Credentials: the bearer token comes from ``$BEAM_MODERATION_DATAFLOW_TOKEN`` when set (a token
minted elsewhere, e.g. ``gcloud auth print-access-token``), else from Google's Application
Default Credentials (google-auth, which the ``gcp`` extra installs: ``pip install '.[gcp]'``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATAFLOW_API",
    "TERMINAL_STATES",
    "DataflowClient",
    "DataflowError",
    "DataflowSettings",
    "access_token_provider",
    "dataflow_job_name",
]

DATAFLOW_API = "https://dataflow.googleapis.com"
TOKEN_VARIABLE = "BEAM_MODERATION_DATAFLOW_TOKEN"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SUCCEEDED_STATE = "JOB_STATE_DONE"
TERMINAL_STATES = frozenset(
    {
        "JOB_STATE_DONE",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_UPDATED",
        "JOB_STATE_DRAINED",
    }
)


class DataflowError(Exception):
    """Dataflow refused a request, or could not be reached; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DataflowSettings:
    """Where jobs go: ``template`` is the ``gs://`` path of the built Flex Template's spec;
    ``environment`` is a ``FlexTemplateRuntimeEnvironment`` (maxWorkers, machineType,
    serviceAccountEmail, tempLocation, additionalExperiments, ...)."""

    project: str
    region: str
    template: str
    api_root: str = DATAFLOW_API
    environment: Mapping[str, Any] = field(default_factory=dict)
    poll_interval_secs: float = 15.0
    # Consecutive failed status checks (network, 5xx) after which the job is given up on.
    max_status_failures: int = 20


def dataflow_job_name(job_id: str) -> str:
    """A Dataflow job name (``[a-z]([-a-z0-9]*[a-z0-9])?``) for one of our job ids."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"moderation-{job_id}".lower()).strip("-")
    return name[:1000]


def access_token_provider() -> Callable[[], str]:
    """Returns a function giving a current OAuth2 bearer token for Dataflow."""
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        return lambda: token
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError as exc:
        raise DataflowError(
            "Submitting to Dataflow needs credentials: install the gcp extra (pip install "
            "'.[gcp]', which brings google-auth) for Application Default Credentials, or set "
            f"${TOKEN_VARIABLE}."
        ) from exc
    credentials, _project = google.auth.default(scopes=[_SCOPE])
    lock = threading.Lock()

    def current() -> str:
        with lock:
            if not credentials.valid:
                credentials.refresh(google.auth.transport.requests.Request())
            return credentials.token

    return current


class DataflowClient:
    """The three calls the job runner needs: launch, get, and the job's error messages."""

    def __init__(self, settings: DataflowSettings, token: Callable[[], str] | None = None):
        self.settings = settings
        self._token = token or access_token_provider()
        location = (
            f"{settings.api_root.rstrip('/')}/v1b3/projects/{urllib.parse.quote(settings.project)}"
            f"/locations/{urllib.parse.quote(settings.region)}"
        )
        self._location = location

    def launch(self, job_name: str, parameters: Mapping[str, str]) -> str:
        """Launches the template with these parameters; returns Dataflow's job id."""
        body = {
            "launchParameter": {
                "jobName": job_name,
                "containerSpecGcsPath": self.settings.template,
                "parameters": dict(parameters),
                "environment": dict(self.settings.environment),
            }
        }
        answer = self._call("POST", f"{self._location}/flexTemplates:launch", body)
        try:
            return answer["job"]["id"]
        except (KeyError, TypeError):
            raise DataflowError(f"Dataflow's launch answer names no job: {answer}") from None

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"{self._location}/jobs/{urllib.parse.quote(job_id)}")

    def error_messages(self, job_id: str) -> list[str]:
        query = urllib.parse.urlencode({"minimumImportance": "JOB_MESSAGE_ERROR"})
        answer = self._call(
            "GET", f"{self._location}/jobs/{urllib.parse.quote(job_id)}/messages?{query}"
        )
        return [m.get("messageText", "") for m in answer.get("jobMessages", [])]

    def wait(self, job_id: str, sleep: Callable[[float], None] = time.sleep) -> dict:
        """Polls the job until its state is terminal; returns the job. Raises DataflowError
        after ``max_status_failures`` failed checks in a row."""
        failures = 0
        while True:
            try:
                job = self.job(job_id)
                failures = 0
            except DataflowError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    raise
                failures += 1
                if failures >= self.settings.max_status_failures:
                    raise DataflowError(
                        f"Dataflow job {job_id}'s state could not be read {failures} times in a "
                        f"row: {exc}"
                    ) from exc
                sleep(self.settings.poll_interval_secs)
                continue
            if job.get("currentState") in TERMINAL_STATES:
                return job
            sleep(self.settings.poll_interval_secs)

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token()}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise DataflowError(f"Dataflow answered {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataflowError(f"Dataflow could not be reached at {url}: {exc}") from None

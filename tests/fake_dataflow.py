"""A stand-in for Dataflow's REST API (v1b3), over HTTP, for the job runner's Dataflow path.

Dataflow cannot be reached from here. This server answers the three calls the job runner makes,
with the shapes of Dataflow's documentation, and checks what Dataflow checks of a Flex Template
launch: the bearer token, the job name's pattern, the template path, and that the parameters
are those of ``templates/metadata.json`` (required ones present, values matching its regexes).
It then does what the template's launcher does: runs ``templates/main.py`` with the parameters
as ``--name=value`` flags (on DirectRunner, with ``runner_flags`` for the "workers'" S3), and
reports the job ``JOB_STATE_RUNNING``, then ``JOB_STATE_DONE`` or ``JOB_STATE_FAILED`` with
the launcher's last error line as a ``JOB_MESSAGE_ERROR``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")
_LOCATION = re.compile(r"^/v1b3/projects/([^/]+)/locations/([^/]+)/(.*)$")


def _metadata() -> dict:
    with open(os.path.join(REPO, "templates", "metadata.json"), encoding="utf-8") as f:
        return json.load(f)


class FakeDataflow:
    def __init__(self, token: str, runner_flags: list[str]):
        self.token = token
        self.runner_flags = runner_flags
        self.launches: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _problem(self, body: dict) -> str | None:
        launch = body.get("launchParameter") or {}
        if not _JOB_NAME.match(launch.get("jobName", "")):
            return f"Invalid job name {launch.get('jobName')!r}"
        if not str(launch.get("containerSpecGcsPath", "")).startswith("gs://"):
            return "containerSpecGcsPath must be a gs:// path"
        declared = {p["name"]: p for p in _metadata()["parameters"]}
        parameters = launch.get("parameters") or {}
        for name, value in parameters.items():
            if name not in declared:
                return f"The template parameters are invalid: {name} is not a parameter"
            if not isinstance(value, str):
                return f"The template parameters are invalid: {name} must be a string"
            for regex in declared[name].get("regexes", []):
                if not re.match(regex, value):
                    return f"The template parameters are invalid: {name}={value!r}"
        for name, parameter in declared.items():
            if not parameter.get("isOptional") and name not in parameters:
                return f"The template parameters are invalid: {name} is required"
        return None

    def _launch(self, project: str, body: dict) -> dict:
        job_id = f"2026-11-21_00_00_00-{uuid.uuid4().int % 10**19}"
        launch = body["launchParameter"]
        job = {
            "id": job_id,
            "projectId": project,
            "name": launch["jobName"],
            "currentState": "JOB_STATE_QUEUED",
            "messages": [],
        }
        with self._lock:
            self.launches.append(body)
            self.jobs[job_id] = job
        flags = [f"--{name}={value}" for name, value in launch["parameters"].items()]
        threading.Thread(target=self._execute, args=(job, flags), daemon=True).start()
        return {k: v for k, v in job.items() if k != "messages"}

    def _execute(self, job: dict, flags: list[str]) -> None:
        job["currentState"] = "JOB_STATE_RUNNING"
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "templates", "main.py"), *flags]
            + self.runner_flags,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            job["currentState"] = "JOB_STATE_DONE"
            return
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        job["messages"].append(
            {
                "id": "1",
                "messageImportance": "JOB_MESSAGE_ERROR",
                "messageText": (lines or ["the launcher failed"])[-1],
            }
        )
        job["currentState"] = "JOB_STATE_FAILED"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._answer(status, {"error": {"code": status, "message": message}})

            def _route(self):
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._error(401, "Request had invalid authentication credentials.")
                    return None
                match = _LOCATION.match(self.path.split("?", 1)[0])
                if not match:
                    self._error(404, "Not found")
                    return None
                return match.groups()

            def do_POST(self):  # noqa: N802
                route = self._route()
                if route is None:
                    return
                project, _region, rest = route
                if rest != "flexTemplates:launch":
                    self._error(404, "Not found")
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                problem = fake._problem(body)
                if problem:
                    self._error(400, problem)
                    return
                self._answer(200, {"job": fake._launch(project, body)})

            def do_GET(self):  # noqa: N802
                route = self._route()
                if route is None:
                    return
                _project, _region, rest = route
                parts = rest.split("/")
                job = fake.jobs.get(parts[1]) if len(parts) >= 2 and parts[0] == "jobs" else None
                if job is None:
                    self._error(404, "Job not found")
                elif len(parts) == 2:
                    self._answer(200, {k: v for k, v in job.items() if k != "messages"})
                elif parts[2:] == ["messages"]:
                    self._answer(200, {"jobMessages": list(job["messages"])})
                else:
                    self._error(404, "Not found")

        return Handler

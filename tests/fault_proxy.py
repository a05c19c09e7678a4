"""A fault-injecting HTTP proxy in front of the moto S3 server, for the fault tests.

Every request is forwarded to the upstream server as it came (method, target, headers, body);
its response comes back as it went (status, reason, headers, body). A *rule* sees each request
first and may answer it with a ``Fault`` instead:

- ``error(503, "SlowDown")``: an S3 XML error response, the request is not forwarded;
- ``delay(3.0)``: wait, then forward;
- ``drop(0.5)``: forward, send the real headers (the full Content-Length) and the first half of
  the body, then close the connection: a connection lost mid-body. A response without a body
  (a PUT's, a HEAD's) is not sent at all: the request took effect, its answer was lost.

``Request.attempt`` counts the requests for one ``(method, path)`` (1 for the first), so that a
rule can fail the first tries of an object and let the next one through. ``seeded_mix`` makes a
rule that faults a fraction of requests; whether a request is faulted depends only on the seed,
the method, the path and the attempt, never on the order in which threads arrive.

Standard library only (``http.server`` in a thread, ``http.client`` upstream), on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["Fault", "FaultProxy", "Request", "delay", "drop", "error", "seeded_mix"]

# Headers about one hop, not the message: never copied from one connection to the other.
# (Expect is answered by the handler itself, with "100 Continue", before the body is read.)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str  # as sent, still percent-encoded: "/bucket/some/key.jpg"
    query: str  # "uploadId=...&partNumber=1", "delete", ""
    headers: Message
    body: bytes  # already de-chunked when the client sent it chunked
    attempt: int  # 1 for the first request with this method and path, 2 for the next, ...


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str  # "error", "delay" or "drop"
    status: int = 0
    code: str = ""
    seconds: float = 0.0
    fraction: float = 0.5


def error(status: int, code: str = "") -> Fault:
    default = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}.get(status, "Error")
    return Fault("error", status=status, code=code or default)


def delay(seconds: float) -> Fault:
    return Fault("delay", seconds=seconds)


def drop(fraction: float = 0.5) -> Fault:
    return Fault("drop", fraction=fraction)


_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "AccessDenied": "Access Denied",
}

_REQUEST_IDS = itertools.count(1)

Rule = Callable[[Request], "Fault | None"]


def seeded_mix(
    seed: int,
    fraction: float,
    faults: Sequence[Fault],
    *,
    applies: Callable[[Request], bool] = lambda request: True,
    max_attempt: int = 1,
) -> Rule:
    """A rule faulting about ``fraction`` of the requests that ``applies`` selects, with one of
    ``faults``, on attempts up to ``max_attempt`` (later ones always pass: the faults are
    transient). The choice is a pure function of (seed, method, path, attempt)."""

    def rule(request: Request) -> Fault | None:
        if request.attempt > max_attempt or not applies(request):
            return None
        draw = random.Random(f"{seed}|{request.method}|{request.path}|{request.attempt}")
        if draw.random() >= fraction:
            return None
        return draw.choice(list(faults))

    return rule


class FaultProxy:
    """``with FaultProxy("http://127.0.0.1:PORT", rule) as proxy: ... proxy.url ...``

    ``rule`` may be replaced at any time; ``log`` holds ``(method, path, query, attempt,
    fault kind or None)`` for every request, in arrival order.
    """

    def __init__(self, upstream: str, rule: Rule | None = None):
        split = urlsplit(upstream)
        self.upstream = (split.hostname, split.port)
        self.rule = rule
        self.log: list[tuple[str, str, str, int, str | None]] = []
        self._attempts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def injected(self, kind: str | None = None, path: str = "") -> list[tuple]:
        """The logged requests that got a fault (of ``kind``) on a path containing ``path``."""
        with self._lock:
            return [
                entry
                for entry in self.log
                if entry[4] and (kind is None or entry[4] == kind) and path in entry[1]
            ]

    def requests(self, method: str, path: str = "") -> list[tuple]:
        with self._lock:
            return [entry for entry in self.log if entry[0] == method and path in entry[1]]

    def _decide(self, method: str, target: str, headers: Message, body: bytes):
        split = urlsplit(target)
        with self._lock:
            attempt = self._attempts.get((method, split.path), 0) + 1
            self._attempts[(method, split.path)] = attempt
        request = Request(method, split.path, split.query, headers, body, attempt)
        fault = self.rule(request) if self.rule else None
        with self._lock:
            self.log.append((method, split.path, split.query, attempt, fault and fault.kind))
        return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like S3; also makes Expect: 100-continue work
    server: ThreadingHTTPServer

    def log_message(self, format, *args):  # noqa: A002 - quiet: the proxy keeps its own log
        pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body = self._read_chunked() if chunked else self._read_sized()
        fault = proxy._decide(self.command, self.path, self.headers, body)
        if fault and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault and fault.kind == "error":
            self._send_s3_error(fault)
            return
        status, reason, headers, payload = self._forward(proxy.upstream, body, chunked)
        if fault and fault.kind == "drop" and not payload:
            self._hang_up()  # the request took effect upstream; its answer is lost
            return
        self.send_response_only(status, reason)  # no Server/Date of our own: upstream's pass
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if fault and fault.kind == "drop":
            # The headers promised len(payload) bytes; send part of them and hang up. What no
            # library does: a server that dies mid-response.
            self.wfile.write(payload[: int(len(payload) * fault.fraction)])
            self._hang_up()
            return
        self.wfile.write(payload)

    def _hang_up(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the end of the stream now

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    def _read_sized(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        # http.server leaves Transfer-Encoding: chunked to the handler: decode it here.
        # (aws-chunked framing, a Content-Encoding, sits inside these bytes: passed verbatim.)
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailer fields, if any
            pass
        return b"".join(parts)

    def _forward(self, upstream, body: bytes, chunked: bool):
        """The upstream's answer to this request: (status, reason, headers, body)."""
        connection = http.client.HTTPConnection(*upstream, timeout=60)
        try:
            # The Host header (which the client signed) goes as the client sent it.
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            if chunked:
                # Transfer-Encoding is hop-by-hop: the body goes on whole, with its length
                # (moto's server stores an empty object for a chunked request body).
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()  # empty for HEAD: http.client knows
            headers = [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP]
            has_length = any(n.lower() == "content-length" for n, _ in headers)
            if not has_length and self.command != "HEAD" and response.status not in (204, 304):
                headers.append(("Content-Length", str(len(payload))))  # it came chunked
            return response.status, response.reason, headers, payload
        finally:
            connection.close()

    def _send_s3_error(self, fault: Fault) -> None:
        message = _MESSAGES.get(fault.code, fault.code)
        request_id = f"FAULT{next(_REQUEST_IDS):011d}"
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>{message}</Message>"
            f"<Resource>{self.path}</Resource><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        if self.command == "HEAD":  # a HEAD response has no body; S3 sends none
            payload = b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

"""Console sign-in: who may sign in, how failed attempts slow down, and the CSRF token.

A reviewer signs in with one of the server's access key pairs (the key id is the user name, the
secret the password): the same pairs that sign API requests, so one file says who may use the
server. The session itself is a cookie signed by Starlette's ``SessionMiddleware`` (itsdangerous),
HttpOnly, SameSite=Strict, Secure behind TLS, that expires; its signing key is kept in the
registry file so that sessions outlive a restart. Each session carries a random CSRF token that
every state-changing request must send back (a form field or the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from service.auth import AccessKeys

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SignInThrottle",
    "check_credentials",
    "csrf_token",
    "csrf_matches",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def check_credentials(keys: AccessKeys, user: str, secret: str) -> bool:
    """Whether ``secret`` is the secret of the key id ``user`` (compared in constant time)."""
    expected = keys.secret_for(user)
    # Compared even for an unknown user, so that timing does not tell which ids exist.
    matches = hmac.compare_digest(
        (expected or secrets.token_hex(16)).encode(), secret.encode("utf-8", "replace")
    )
    return expected is not None and matches


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_matches(session: Mapping, sent: str | None) -> bool:
    token = session.get("csrf")
    return bool(isinstance(token, str) and sent and hmac.compare_digest(token, sent))


class SignInThrottle:
    """Failed sign-ins, by client address and by user name: after ``free`` failures within
    ``window`` seconds, each further attempt must wait, twice as long each time (at most
    ``max_wait`` seconds). A success clears the user's and the address's failures."""

    def __init__(
        self,
        *,
        free: int = 5,
        window: float = 15 * 60,
        max_wait: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._free = free
        self._window = window
        self._max_wait = max_wait
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] < now - self._window:
            failures.popleft()
        return failures

    def wait_for(self, address: str, user: str) -> float:
        """Seconds before another attempt from ``address`` or for ``user`` is heard; 0 now."""
        now = self._clock()
        with self._lock:
            wait = 0.0
            for key in (f"addr:{address}", f"user:{user}"):
                failures = self._recent(key, now)
                extra = len(failures) - self._free
                if extra >= 0:
                    delay = min(self._max_wait, 2.0**extra)
                    wait = max(wait, failures[-1] + delay - now)
            return max(0.0, wait)

    def failed(self, address: str, user: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (f"addr:{address}", f"user:{user}"):
                self._recent(key, now).append(now)
            # Bounded memory: forget keys whose failures have all expired.
            if len(self._failures) > 10_000:
                for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                    del self._failures[key]

    def succeeded(self, address: str, user: str) -> None:
        with self._lock:
            self._failures.pop(f"addr:{address}", None)
            self._failures.pop(f"user:{user}", None)

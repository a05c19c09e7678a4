"""The server's SQLite file: thread-local connections, write transactions, signed page tokens.

``JobRegistry`` and ``ProjectRegistry`` keep their tables in one file, each through a
``SqliteStore``. WAL mode lets readers go on while one writer commits, across threads and
processes; a listing's NextToken is signed with a key kept in the file, so a token is good only
for the listing (and page size) it was issued for, on the server that issued it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["InvalidPaginationToken", "SqliteStore", "listing_scope", "page_answer"]

# A listing's NextToken stays usable this long.
TOKEN_LIFETIME_SECS = 24 * 3600

_SETTINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class InvalidPaginationToken(ValueError):
    """The NextToken was not issued by this server for this listing, or has expired."""


def listing_scope(kind: str, **filters: Any) -> str:
    """The scope of a listing's tokens: a token is good only for the listing (and filters) it
    was issued for."""
    digest = hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def page_answer(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """One page of a listing as the API answers it: the items under ``key``, and the NextToken
    of the next page unless this is the last."""
    answer: dict[str, Any] = {key: items}
    if token:
        answer["NextToken"] = token
    return answer


class SqliteStore:
    """Tables in one SQLite file; safe to share between threads, and between processes."""

    def __init__(self, path: str, schema: str, *, clock: Callable[[], float] = time.time):
        self.path = path
        self._clock = clock
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SETTINGS_SCHEMA + schema)
            db.execute(
                "INSERT OR IGNORE INTO settings VALUES ('token_key', ?)", (secrets.token_hex(32),)
            )
            (key,) = db.execute("SELECT value FROM settings WHERE name = 'token_key'").fetchone()
        self._token_key = bytes.fromhex(key)

    def setting(self, name: str, make: Callable[[], str]) -> str:
        """A value kept in the file under ``name``: made by ``make`` the first time it is asked
        for, the same ever after (across threads, processes and restarts)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (name, make()))
            (value,) = db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return value

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            self._local.db = db
        yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # Page tokens: the sort key of the last row given, signed with the listing it belongs to.

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._token_key, payload, hashlib.sha256).digest()

    def _issue_token(self, after: tuple[float, str], max_results: int, scope: str = "") -> str:
        content = {
            "after": list(after),
            "max": max_results,
            "expires": self._clock() + TOKEN_LIFETIME_SECS,
        }
        if scope:
            content["scope"] = scope
        payload = json.dumps(content, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._sign(payload) + payload).decode()

    def _read_token(self, token: str, max_results: int, scope: str = "") -> tuple[float, str]:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError) as exc:
            raise InvalidPaginationToken("NextToken is not a token this service issued") from exc
        signature, payload = raw[:32], raw[32:]
        if len(raw) <= 32 or not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidPaginationToken("NextToken is not a token this service issued")
        content = json.loads(payload)
        if content.get("scope", "") != scope:
            raise InvalidPaginationToken(
                "NextToken belongs to another listing; start this listing again"
            )
        if content["max"] != max_results:
            raise InvalidPaginationToken(
                "NextToken belongs to a listing with another MaxResults; start the listing again"
            )
        if content["expires"] < self._clock():
            raise InvalidPaginationToken("NextToken has expired; start the listing again")
        created, key = content["after"]
        return float(created), str(key)

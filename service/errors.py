"""The error every part of the API raises: an AWS error code, a message and an HTTP status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RequestError"]


class RequestError(Exception):
    """A request the API refuses, carried to the client as an AWS JSON 1.1 error body.

    ``fields`` are members of the error's shape beyond its message (e.g. the ``ResourceType``,
    ``QuotaCode`` and ``ServiceCode`` of ``HumanLoopQuotaExceededException``): they go into the
    body, where botocore puts them into the error response.
    """

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int = 400,
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.fields = dict(fields or {})

    def to_body(self) -> dict[str, Any]:
        """The JSON error body botocore parses (`__type` gives the code, `Message` the text)."""
        return {"__type": self.code, "Message": self.message, "Code": self.code, **self.fields}

"""The error every part of the API raises: an AWS error code, a message and an HTTP status."""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(Exception):
    """A request the API refuses, carried to the client as an AWS JSON 1.1 error body."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status

    def to_body(self) -> dict[str, str]:
        """The JSON error body botocore parses (`__type` gives the code, `Message` the text)."""
        return {"__type": self.code, "Message": self.message, "Code": self.code}

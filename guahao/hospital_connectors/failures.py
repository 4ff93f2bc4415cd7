"""Connector failures, retryable or permanent by type.

A retryable failure (the HIS is down, timed out, answered 5xx or 429) is tried again later with
backoff; a permanent one (the HIS refused, its data breaks the specification) is not, and is
reported with a stable code and the exact place in the message that caused it.
"""

from __future__ import annotations

from typing import Any

from guahao.platform.error_codes import CODES

__all__ = ["ConnectorError", "MappingError", "PermanentError", "RetryableError"]


class ConnectorError(Exception):
    """Something went wrong between the platform and a hospital's system."""

    retryable = False

    def __init__(self, code: str, reason: str, **detail: Any) -> None:
        if code not in CODES:
            raise ValueError(f"uncatalogued code {code}")
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.detail = detail


class RetryableError(ConnectorError):
    """Try again later: the HIS was unreachable or overloaded."""

    retryable = True


class PermanentError(ConnectorError):
    """Trying again will not help: the HIS refused, or its data is wrong."""


class MappingError(PermanentError):
    """A resource or message cannot be mapped; ``path`` says where (``Slot/1.start``)."""

    def __init__(self, code: str, path: str, reason: str) -> None:
        super().__init__(code, reason, path=path)
        self.path = path

    def __str__(self) -> str:
        return f"{self.code}: {self.path}: {self.reason}"

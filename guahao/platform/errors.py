"""One exception hierarchy for the platform: errors are data with a stable code.

A domain error never knows its HTTP status; ``guahao.web.errors`` maps each code to one
status in a single table. Every code has a Chinese and an English message so that the web
layer, the CLI and connectors all tell people the same thing.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "GuahaoError",
    "InvalidInputError",
    "NotFoundError",
    "RateLimitedError",
    "SlotNotLoadedError",
    "UnavailableError",
]


class GuahaoError(Exception):
    """Root of every error the platform raises on purpose.

    Subclasses name a *kind* (not found, conflict, …); the ``code`` names the exact refusal.
    """

    kind: ClassVar[str] = "error"

    def __init__(
        self,
        code: str,
        message_zh: str,
        message_en: str,
        **detail: Any,
    ) -> None:
        super().__init__(f"{code}: {message_en}")
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        self.detail: dict[str, Any] = detail


class NotFoundError(GuahaoError):
    """The thing named does not exist (or is not visible to the caller)."""

    kind = "not_found"


class ConflictError(GuahaoError):
    """The request is well formed but the current state refuses it (sold out, wrong state)."""

    kind = "conflict"


class InvalidInputError(GuahaoError):
    """The request itself is malformed or violates a field constraint."""

    kind = "invalid"


class ForbiddenError(GuahaoError):
    """The caller may not do this (someone else's hold, blacklisted person)."""

    kind = "forbidden"


class RateLimitedError(GuahaoError):
    """Too many attempts; try later."""

    kind = "rate_limited"


class UnavailableError(GuahaoError):
    """A dependency (Redis, a gateway, a HIS) did not answer; the request may be retried."""

    kind = "unavailable"


class SlotNotLoadedError(UnavailableError):
    """The hot pool does not know this slot (Redis restarted, failed over, or never loaded it).

    Not a refusal: SQL is the record, so the caller loads the slot from it and repeats the
    step once (``InventorySync.with_slot_loaded``). Its own type, not a bare ``KeyError``, so
    that a mistyped dictionary key elsewhere is never mistaken for a lost slot. Should it
    reach a client after all (the reload failed too) it says "unavailable, retry" (503).
    """

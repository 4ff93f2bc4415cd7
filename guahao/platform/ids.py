"""Identifiers: random, unguessable, sortable enough for humans reading logs."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

__all__ = ["new_id", "new_order_no"]


def new_id() -> str:
    """A 32-character hex id (UUID4): ids appear in URLs, so they must not be guessable."""
    return uuid.uuid4().hex


def new_order_no(now: datetime, prefix: str = "GH") -> str:
    """A payment or refund number that a person can read over the phone: prefix, time, random.

    >>> from datetime import UTC
    >>> n = new_order_no(datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
    >>> n.startswith("GH20260309080000") and len(n) == 26
    True
    """
    return f"{prefix}{now:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"

"""Identifiers: random, unguessable, sortable enough for humans reading logs."""

from __future__ import annotations

import os
import secrets
from datetime import datetime

__all__ = ["new_id", "new_order_no"]


_VERSION_4 = (0x4 << 76) | (0x2 << 62)
"""The version (4) and variant (RFC 4122) bits of a UUID4."""
_RANDOM_BITS = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))


def new_id() -> str:
    """A 32-character hex id (UUID4): ids appear in URLs, so they must not be guessable.

    ``uuid.uuid4().hex`` spelled out: the same 122 random bits from ``os.urandom`` and the
    same version and variant bits, without the ``UUID`` object (2.0 µs against 0.7, paid by
    every sold-out refusal of a release crowd for its new ``hold_id``).

    >>> import uuid
    >>> made = new_id()
    >>> uuid.UUID(made).hex == made and uuid.UUID(made).version == 4
    True
    """
    return f"{int.from_bytes(os.urandom(16)) & _RANDOM_BITS | _VERSION_4:032x}"


def new_order_no(now: datetime, prefix: str = "GH") -> str:
    """A payment or refund number that a person can read over the phone: prefix, time, random.

    >>> from datetime import UTC
    >>> n = new_order_no(datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
    >>> n.startswith("GH20260309080000") and len(n) == 26
    True
    """
    return f"{prefix}{now:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"

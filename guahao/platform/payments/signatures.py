"""Signing and verifying payment notifications: HMAC-SHA256 over a canonical string.

A payment notification is the one inbound request that moves money-state on the platform, so
it must prove two things: that the gateway sent it (the signature, keyed by a secret shared
with the gateway) and that it was sent recently (the timestamp, inside a freshness window).
The scheme follows the shape real Chinese gateways use (WeChat Pay v3 signs
``timestamp\\nnonce\\nbody\\n``): three headers beside an untouched body, so the platform can
verify the exact bytes it received before decoding anything.

Freshness bounds how long a captured notification stays usable; inside the window a replay
still verifies. The platform closes that gap by recording every ``notification_id`` it has
processed (``PAYMENT_CALLBACK_REPLAYED``); this module is deliberately stateless.

Everything here is pure: no I/O, no clock (``now`` is passed in), no randomness (the caller
brings the nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from guahao.platform.error_codes import refuse

__all__ = [
    "FRESHNESS_WINDOW",
    "NONCE_HEADER",
    "SCHEME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signed_headers",
    "signing_string",
    "verify",
]

TIMESTAMP_HEADER = "Guahao-Pay-Timestamp"
"""Unix seconds at which the gateway signed; decimal ASCII digits."""

NONCE_HEADER = "Guahao-Pay-Nonce"
"""A random token per signing, so two notifications signed in one second never share a MAC."""

SIGNATURE_HEADER = "Guahao-Pay-Signature"
"""Lowercase hex of HMAC-SHA256(secret, signing_string(...))."""

SCHEME = "guahao-pay-hmac-sha256-v1"
"""First line of every signing string.

It separates these MACs from anything else the same secret might ever sign, and lets a future
scheme coexist with this one during a key or algorithm change.
"""

FRESHNESS_WINDOW = timedelta(minutes=5)
"""How far the signing time may lie from ``now``, in either direction.

Five minutes is the common gateway choice: wide enough for ordinary clock skew between the
gateway and our workers and for a retried delivery, narrow enough that a captured request goes
stale quickly. A timestamp in the future is refused as well as one in the past: accepting
future stamps would let a forger (or a badly set clock) mint notifications that stay "fresh"
for longer than the window.
"""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# The nonce sits between two newlines of the signing string. Were a newline allowed in it,
# ("a\nb", body "c") and ("a", body "b\nc") would sign the same bytes; a closed alphabet
# keeps the string unambiguous.
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")


def signing_string(timestamp: int, nonce: str, body: bytes) -> bytes:
    """The exact bytes that are MACed: scheme, timestamp, nonce and body, one per line.

    The body is taken verbatim (never re-encoded) so that the verifier signs what it received.

    >>> signing_string(1767225600, "n0nce-123", b'{"a":1}')
    b'guahao-pay-hmac-sha256-v1\\n1767225600\\nn0nce-123\\n{"a":1}\\n'

    A nonce outside ``[A-Za-z0-9_-]{8,64}`` would make the string ambiguous, so it is refused:

    >>> signing_string(1767225600, "bad\\nnonce", b"")
    Traceback (most recent call last):
    ...
    ValueError: nonce must match [A-Za-z0-9_-]{8,64}
    """
    if timestamp < 0:
        raise ValueError("timestamp must not be negative")
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must match [A-Za-z0-9_-]{8,64}")
    return f"{SCHEME}\n{timestamp}\n{nonce}\n".encode("ascii") + body + b"\n"


def sign(secret: bytes, timestamp: int, nonce: str, body: bytes) -> str:
    """The signature header value for these inputs: lowercase hex HMAC-SHA256.

    >>> sig = sign(b"0123456789abcdef", 1767225600, "n0nce-123", b"{}")
    >>> len(sig), sig == sign(b"0123456789abcdef", 1767225600, "n0nce-123", b"{}")
    (64, True)
    >>> sig == sign(b"another-secret-0", 1767225600, "n0nce-123", b"{}")
    False
    """
    return hmac.new(secret, signing_string(timestamp, nonce, body), hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, *, now: datetime, nonce: str) -> dict[str, str]:
    """The three headers a gateway sends with ``body``, signed at ``now``.

    >>> from datetime import UTC
    >>> headers = signed_headers(
    ...     b"0123456789abcdef", b"{}", now=datetime(2026, 1, 1, tzinfo=UTC), nonce="n0nce-123"
    ... )
    >>> headers[TIMESTAMP_HEADER], headers[NONCE_HEADER]
    ('1767225600', 'n0nce-123')
    """
    timestamp = _epoch_seconds(now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, timestamp, nonce, body),
    }


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    window: timedelta = FRESHNESS_WINDOW,
) -> None:
    """Accept the notification or raise a catalogued refusal.

    Header names are matched case-insensitively, as HTTP requires. The signature is checked
    before the timestamp on purpose: an unauthenticated timestamp says nothing, so a forged
    request is always ``PAYMENT_SIGNATURE_INVALID`` and ``PAYMENT_CALLBACK_STALE`` is only
    ever reported for a notification the gateway really signed (useful to operations: it
    means a clock is off or a delivery was delayed, not an attack). The comparison is
    constant-time so the response time leaks nothing about how much of a guess was right.

    Raises:
        ForbiddenError: ``PAYMENT_SIGNATURE_INVALID`` for a missing, malformed or wrong
            signature header set; ``PAYMENT_CALLBACK_STALE`` when the signing time is more
            than ``window`` away from ``now``, in the past or in the future.

    >>> from datetime import UTC
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> h = signed_headers(b"0123456789abcdef", b"{}", now=at, nonce="n0nce-123")
    >>> verify(b"0123456789abcdef", h, b"{}", now=at + timedelta(minutes=5))
    >>> verify(b"0123456789abcdef", h, b"{ }", now=at)
    Traceback (most recent call last):
    ...
    guahao.platform.errors.ForbiddenError: PAYMENT_SIGNATURE_INVALID: ...
    >>> verify(b"0123456789abcdef", h, b"{}", now=at + timedelta(minutes=5, seconds=1))
    Traceback (most recent call last):
    ...
    guahao.platform.errors.ForbiddenError: PAYMENT_CALLBACK_STALE: ...
    """
    if window < timedelta(0):
        raise ValueError("window must not be negative")
    now_seconds = _epoch_seconds(now)
    found = _lowercased(headers)
    timestamp_text = found.get(TIMESTAMP_HEADER.lower())
    nonce = found.get(NONCE_HEADER.lower())
    signature = found.get(SIGNATURE_HEADER.lower())
    if timestamp_text is None or nonce is None or signature is None:
        missing = [
            name
            for name, value in (
                (TIMESTAMP_HEADER, timestamp_text),
                (NONCE_HEADER, nonce),
                (SIGNATURE_HEADER, signature),
            )
            if value is None
        ]
        refuse("PAYMENT_SIGNATURE_INVALID", reason="missing_header", headers=missing)
    if not _TIMESTAMP.fullmatch(timestamp_text):
        refuse("PAYMENT_SIGNATURE_INVALID", reason="malformed_timestamp")
    if not _NONCE.fullmatch(nonce):
        refuse("PAYMENT_SIGNATURE_INVALID", reason="malformed_nonce")
    timestamp = int(timestamp_text)
    expected = sign(secret, timestamp, nonce, body)
    # Compare bytes, not str: compare_digest refuses non-ASCII str with TypeError, and a
    # header value is attacker-chosen.
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
        refuse("PAYMENT_SIGNATURE_INVALID", reason="signature_mismatch")
    skew = now_seconds - timestamp
    if abs(skew) > window.total_seconds():
        refuse(
            "PAYMENT_CALLBACK_STALE",
            skew_seconds=skew,
            window_seconds=int(window.total_seconds()),
        )


_SIGNED_HEADERS = frozenset(
    name.lower() for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
)


def _epoch_seconds(instant: datetime) -> int:
    """Whole Unix seconds of an aware instant; naive datetimes are a programming error."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("signing and verifying need an aware datetime")
    return int(instant.timestamp())


def _lowercased(headers: Mapping[str, str]) -> dict[str, str]:
    """Our three headers keyed by lowercase name, refusing a name given twice with different values.

    Two spellings of one header with different values cannot both be believed; picking one
    would let a proxy and the verifier disagree about which was signed.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key not in _SIGNED_HEADERS:
            continue
        if key in lowered and lowered[key] != value:
            refuse("PAYMENT_SIGNATURE_INVALID", reason="duplicate_header", header=name)
        lowered[key] = value
    return lowered

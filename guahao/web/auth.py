"""Citizen access tokens: short-lived signed JWTs (HS256) carrying the account id.

A token is checked on every request, twice on writes (the idempotency middleware names the
writer, the guard admits it), and a phone repeats the same token for its whole life: the
account of a token whose signature and claims passed is remembered (per process, bounded),
and only its expiry is checked again on each use.

Tokens are issued with joserfc but verified here with the standard library's HMAC and
msgspec: at a release most tokens are new to a process (each worker sees a different part of
the crowd), and joserfc's general JOSE decoding of one HS256 token cost 26 µs against 10 µs
for the same checks done directly (14 % of a sold-out refusal in
``bench/profiles/10-sold-out-view-sold-out-holds.txt``). The checks are joserfc's for these
tokens: three base64url parts, the signature first (nothing an attacker wrote is parsed
before it is authenticated) and compared in constant time against the canonical encoding, the
header's ``alg`` exactly ``HS256`` and no other header field, ``sub`` a string, ``exp`` an
integer in the future, ``nbf`` and ``iat`` (if any) integers not in the future, ``iss``,
``jti`` and ``aud`` (if any) of their types, and ``scope`` exactly ``citizen``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from itertools import islice
from typing import Any

import msgspec
from joserfc import jwt
from joserfc.jwk import OctKey
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.shared_clock import SharedClock

__all__ = ["HEADERS_KEPT", "VERIFIED_TOKENS_KEPT", "TokenIssuer", "require_account"]

VERIFIED_TOKENS_KEPT = 50_000
"""Verified tokens remembered per process (about 20 MB at most); the oldest go first."""
HEADERS_KEPT = 16
"""Header parts remembered as accepted. Every token this platform issues carries the same
header, so the crowd's new tokens share one; the bound keeps forged variety from growing it."""


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    """The JOSE header of a citizen token; any other field (``crit``, ``kid``, ``jku``) is
    refused, as no token this platform issues carries one."""

    alg: str
    typ: str = "JWT"


class _Claims(msgspec.Struct):
    """The claims a citizen token must carry, and the registered ones it may, typed as
    RFC 7519 (and joserfc) require; unregistered others are ignored."""

    sub: str
    exp: int
    scope: str
    iat: int | None = None
    nbf: int | None = None
    iss: str | None = None
    jti: str | None = None
    aud: str | list[str] | None = None


_header_decoder = msgspec.json.Decoder(_Header)
_claims_decoder = msgspec.json.Decoder(_Claims)


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _segment(text: str) -> bytes:
    """A base64url part without padding, strictly (no other character, no ``=``).

    ``base64.b64decode(..., altchars=b"-_", validate=True)`` spelled out: the same
    translation and the same strict decoding, without its regular-expression check (which
    strict decoding makes again).

    >>> _segment("eyJhIjoxfQ"), _segment("-_8")
    (b'{"a":1}', b'\\xfb\\xff')
    """
    if "=" in text:
        raise ValueError("padded base64url")
    padded = (text + "=" * (-len(text) % 4)).encode("ascii").translate(_URLSAFE)
    return binascii.a2b_base64(padded, strict_mode=True)


class TokenIssuer:
    """Issues and checks access tokens with one symmetric key."""

    def __init__(self, secret: str, minutes: int, *, kept: int = VERIFIED_TOKENS_KEPT) -> None:
        raw = base64.b64decode(secret) if len(secret) >= 44 else secret.encode()
        self._key = OctKey.import_key(raw)
        self._secret = raw
        self._seconds = minutes * 60
        # token -> account id, and token -> expiry in epoch seconds, in two dictionaries of
        # the same keys: only tokens that passed every check. Not one tuple a token: a
        # release crowd's new tokens made one each, and every young collection of the
        # garbage collector walked the tuples made since the last (strings and numbers are
        # nothing it walks; bench/README.md, session 17, "the paced tail").
        self._verified: dict[str, str] = {}
        self._expiries: dict[str, int] = {}
        self._kept = kept
        self._headers: set[str] = set()
        """Header parts that passed the header's checks: a verdict that depends on the text
        alone, so it is made once per process for the header every token shares."""
        self._clock: SharedClock | None = None

    def keep_time_with(self, clock: Clock) -> None:
        """Judge ``iat`` and ``exp`` on the region's shared time when the platform keeps one:
        a token issued by a worker whose host clock runs a few minutes fast must not be
        refused as "issued in the future" by a slow one (test clocks are not followed: tests
        move the platform's clock by days while their tokens stay valid)."""
        self._clock = clock if isinstance(clock, SharedClock) else None

    def _now(self) -> int:
        offset = self._clock.offset.total_seconds() if self._clock is not None else 0.0
        return int(time.time() + offset)

    def issue(self, account_id: str) -> str:
        """A new citizen token for ``account_id``: HS256, ``sub``, ``iat`` and ``exp`` on the
        region's shared time (``keep_time_with``), ``scope`` ``citizen``."""
        now = self._now()
        claims = {"sub": account_id, "iat": now, "exp": now + self._seconds, "scope": "citizen"}
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def account_of(self, token: str) -> str:
        """The account a valid citizen token names; refuses ``UNAUTHENTICATED`` otherwise.

        The same string always verifies the same way, so a verified token's account is
        remembered; its expiry is compared with the clock on every use, exactly as
        ``JWTClaimsRegistry`` would (``exp`` in the past or now is refused)."""
        account = self._verified.get(token)
        if account is not None:
            if self._expiries[token] > self._now():
                return account
            del self._verified[token], self._expiries[token]
            refuse("UNAUTHENTICATED")
        try:
            claims = self._verified_claims(token)
        except (ValueError, UnicodeError, binascii.Error, msgspec.ValidationError):
            refuse("UNAUTHENTICATED")
        now = self._now()
        if (
            claims.scope != "citizen"  # a second safeguard beside the separate keys
            or claims.exp <= now
            or (claims.nbf is not None and claims.nbf > now)
            or (claims.iat is not None and claims.iat > now)
        ):
            refuse("UNAUTHENTICATED")
        verified, expiries = self._verified, self._expiries
        if len(verified) >= self._kept:
            # the oldest eighth at once: a dictionary's front keeps the slots of the keys
            # taken from it until it is resized, and one oldest key a new token walked past
            # all of them (5 µs a new citizen with 50 000 kept, a twentieth of a grant)
            for oldest in list(islice(verified, max(1, self._kept // 8))):
                del verified[oldest], expiries[oldest]
        verified[token] = claims.sub
        expiries[token] = claims.exp
        return claims.sub

    def _verified_claims(self, token: str) -> _Claims:
        """The claims of a token whose signature and header pass (``ValueError`` and its
        kin otherwise); the claims' values are judged by the caller."""
        signing_input, _dot, signature = token.rpartition(".")
        header, dot, payload = signing_input.partition(".")
        if not dot or "." in payload:
            raise ValueError("not three parts")
        digest = hmac.digest(self._secret, signing_input.encode("ascii"), "sha256")
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=")
        if not hmac.compare_digest(expected, signature.encode("ascii")):
            raise ValueError("bad signature")
        if header not in self._headers:
            if _header_decoder.decode(_segment(header)).alg != "HS256":
                raise ValueError("not HS256")
            if len(self._headers) < HEADERS_KEPT:
                self._headers.add(header)
        return _claims_decoder.decode(_segment(payload))


async def require_account(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a valid bearer token; puts the account id in the connection state.

    A coroutine although it never awaits: Litestar runs a plain function guard in a worker
    thread, a thread hop per signed-in request that cost more than the check itself."""
    header = connection.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        refuse("UNAUTHENTICATED")
    issuer: TokenIssuer = connection.app.state.tokens
    connection.state.account_id = issuer.account_of(token.strip())

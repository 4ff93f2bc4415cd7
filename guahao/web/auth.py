"""Citizen access tokens: short-lived signed JWTs (HS256) carrying the account id.

A token is checked on every request, twice on writes (the idempotency middleware names the
writer, the guard admits it), and a phone repeats the same token for its whole life: the
account of a token whose signature and claims passed is remembered (per process, bounded),
and only its expiry is checked again on each use.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from guahao.platform.error_codes import refuse

__all__ = ["VERIFIED_TOKENS_KEPT", "TokenIssuer", "require_account"]

VERIFIED_TOKENS_KEPT = 50_000
"""Verified tokens remembered per process (about 20 MB at most); the oldest go first."""


class TokenIssuer:
    """Issues and checks access tokens with one symmetric key."""

    def __init__(self, secret: str, minutes: int, *, kept: int = VERIFIED_TOKENS_KEPT) -> None:
        self._key = OctKey.import_key(
            base64.b64decode(secret) if len(secret) >= 44 else secret.encode()
        )
        self._seconds = minutes * 60
        # token -> (account id, expiry in epoch seconds); only tokens that passed every check
        self._verified: dict[str, tuple[str, int]] = {}
        self._kept = kept

    def issue(self, account_id: str) -> str:
        now = int(time.time())
        claims = {"sub": account_id, "iat": now, "exp": now + self._seconds, "scope": "citizen"}
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def account_of(self, token: str) -> str:
        """The account a valid citizen token names; refuses ``UNAUTHENTICATED`` otherwise.

        The same string always verifies the same way, so a verified token's account is
        remembered; its expiry is compared with the clock on every use, exactly as
        ``JWTClaimsRegistry`` would (``exp`` in the past or now is refused)."""
        known = self._verified.get(token)
        if known is not None:
            account, expires = known
            if expires > int(time.time()):
                return account
            self._verified.pop(token, None)
            refuse("UNAUTHENTICATED")
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(
                exp={"essential": True},
                sub={"essential": True},
                # a second safeguard beside the separate keys: only citizen tokens pass here
                scope={"essential": True, "value": "citizen"},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            refuse("UNAUTHENTICATED")
        subject: Any = decoded.claims["sub"]
        account = str(subject)
        expiry: Any = decoded.claims["exp"]
        if isinstance(expiry, int):
            while len(self._verified) >= self._kept:  # forget the oldest remembered
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = (account, expiry)
        return account


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

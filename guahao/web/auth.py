"""Citizen access tokens: short-lived signed JWTs (HS256) carrying the account id."""

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

__all__ = ["TokenIssuer", "require_account"]


class TokenIssuer:
    """Issues and checks access tokens with one symmetric key."""

    def __init__(self, secret: str, minutes: int) -> None:
        self._key = OctKey.import_key(
            base64.b64decode(secret) if len(secret) >= 44 else secret.encode()
        )
        self._seconds = minutes * 60

    def issue(self, account_id: str) -> str:
        now = int(time.time())
        claims = {"sub": account_id, "iat": now, "exp": now + self._seconds, "scope": "citizen"}
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def account_of(self, token: str) -> str:
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
        return str(subject)


def require_account(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a valid bearer token; puts the account id in the connection state."""
    header = connection.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        refuse("UNAUTHENTICATED")
    issuer: TokenIssuer = connection.app.state.tokens
    connection.state.account_id = issuer.account_of(token.strip())

"""Staff access tokens and guards, kept apart from citizens' at every step.

Staff tokens are HS256 JWTs like citizens' but signed with a different key (derived from the
same secret with HMAC under a fixed label) and carrying ``scope: staff``, the role and the
hospital. A citizen token therefore fails a staff guard on its signature, and a staff token
fails the citizen guard the same way: neither can be presented as the other. The guard also
reads the staff account on every request, so a deactivation or a role change takes effect
at once rather than when the token expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from guahao.platform.error_codes import refuse
from guahao.platform.services.staff import StaffActor, StaffRole

__all__ = ["StaffGuard", "StaffTokenIssuer", "require_staff", "staff_of"]

_LABEL = b"guahao/staff-access-tokens/v1"

StaffGuard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class StaffTokenIssuer:
    """Issues and checks staff tokens."""

    def __init__(self, secret: str, minutes: int) -> None:
        raw = base64.b64decode(secret) if len(secret) >= 44 else secret.encode()
        self._key = OctKey.import_key(hmac.new(raw, _LABEL, hashlib.sha256).digest())
        self.seconds = minutes * 60

    def issue(self, actor: StaffActor) -> str:
        now = int(time.time())
        claims = {
            "sub": actor.id,
            "iat": now,
            "exp": now + self.seconds,
            "scope": "staff",
            "role": actor.role.value,
            "hospital_id": actor.hospital_id,
        }
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def staff_id_of(self, token: str) -> str:
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(
                exp={"essential": True},
                sub={"essential": True},
                scope={"essential": True, "value": "staff"},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            refuse("UNAUTHENTICATED")
        subject: Any = decoded.claims["sub"]
        return str(subject)


def staff_of(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffActor:
    """The staff member a guard let through."""
    actor: StaffActor = connection.state.staff
    return actor


def require_staff(*roles: StaffRole) -> StaffGuard:
    """Guard: a valid staff bearer token of an active staff account with one of ``roles``
    (any role if none are named); puts the ``StaffActor`` in ``connection.state.staff``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            refuse("UNAUTHENTICATED")
        issuer: StaffTokenIssuer = connection.app.state.staff_tokens
        staff_id = issuer.staff_id_of(token.strip())
        actor = await connection.app.state.platform.staff.actor(staff_id)
        if actor is None:
            refuse("UNAUTHENTICATED")
        if roles and actor.role not in roles:
            refuse("STAFF_ROLE_REQUIRED", role=actor.role.value, needs=[r.value for r in roles])
        connection.state.staff = actor

    return guard

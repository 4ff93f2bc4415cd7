"""OAuth2 client credentials for hospital systems (RFC 6749 §4.4), tokens scoped to one
hospital.

A hospital's client authenticates at ``POST /api/v1/oauth/token`` with HTTP Basic (or
``client_id``/``client_secret`` in the form) and gets a short-lived bearer token naming its
hospital. Every push-API route takes the hospital from the token, never from the request, so
hospital A can never read or change hospital B. Error answers use Authlib's RFC 6749 error
types, which is what a vendor's OAuth2 library expects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import unquote_plus

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnsupportedGrantTypeError,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from litestar import Request, Response, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.client_context import ClientContext
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.services.runtime import Ports

__all__ = ["HospitalTokens", "require_hospital", "token_endpoint"]

AUDIENCE = "guahao-hospital-api"
TOKEN_SECONDS = 3600

TOKENS_PER_ADDRESS = "60/minute"
TOKENS_PER_CLIENT = "20/minute"
"""A HIS asks for a token about once an hour; these let a restart storm through and stop a
client (or an address) guessing secrets, each guess costing the platform a scrypt."""


class HospitalTokens:
    """Signs and checks hospital access tokens with a key derived from the app's secret (so a
    citizen's token can never pass for a hospital's, nor the reverse)."""

    def __init__(self, secret: str) -> None:
        derived = hmac.new(secret.encode(), b"guahao hospital tokens", hashlib.sha256).digest()
        self._key = OctKey.import_key(derived)

    def issue(self, hospital_code: str, client_id: str, scopes: list[str]) -> str:
        now = int(time.time())
        claims = {
            "sub": client_id,
            "hospital": hospital_code,
            "scope": " ".join(scopes),
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
        }
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def principal(self, token: str) -> tuple[str, set[str]]:
        hospital, _client_id, scopes = self.claims(token)
        return hospital, scopes

    def claims(self, token: str) -> tuple[str, str, set[str]]:
        """The hospital, the client id and the scopes of a valid token (``UNAUTHENTICATED``
        otherwise)."""
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(
                exp={"essential": True}, aud={"essential": True, "value": AUDIENCE}
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            refuse("UNAUTHENTICATED")
        return (
            str(decoded.claims["hospital"]),
            str(decoded.claims.get("sub", "")),
            set(str(decoded.claims["scope"]).split()),
        )


async def require_hospital(
    connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler
) -> None:
    """Guard: a hospital bearer token with the route's scope, of a client not revoked; puts
    the hospital in state.

    The client is looked up on every request (one primary-key read), so revoking it stops its
    tokens at once, not when they expire an hour later."""
    header = connection.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        refuse("UNAUTHENTICATED")
    tokens: HospitalTokens = connection.app.state.hospital_tokens
    hospital, client_id, scopes = tokens.claims(token.strip())
    needed = (route.opt or {}).get("scope", "hospital:push")
    if needed not in scopes:
        refuse("HOSPITAL_SCOPE_DENIED", scope=needed)
    connectors: ConnectorHub = connection.app.state.platform.connectors
    if not await connectors.registry.client_active(client_id):
        refuse("UNAUTHENTICATED", reason="client revoked")
    connection.state.hospital_code = hospital


def _oauth_error(error: OAuth2Error, status: int | None = None) -> Response[dict[str, Any]]:
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if isinstance(error, InvalidClientError):
        headers["WWW-Authenticate"] = 'Basic realm="guahao-hospital-api"'
    return Response(
        dict(error.get_body()), status_code=status or error.status_code, headers=headers
    )


@post(
    "/api/v1/oauth/token",
    operation_id="hospitalToken",
    tags=["hospital connectors"],
    status_code=200,
)
async def token_endpoint(
    request: Request[Any, Any, Any],
    connectors: NamedDependency[ConnectorHub],
    ports: NamedDependency[Ports],
    client: NamedDependency[ClientContext],
) -> Response[dict[str, Any]]:
    """Client credentials grant for hospital systems (form-encoded, RFC 6749 §4.4)."""
    limiter = ports.limiter
    raw = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, str] = {}
    for pair in raw.split("&"):
        if "=" in pair:
            key, _, value = pair.partition("=")
            form[unquote_plus(key)] = unquote_plus(value)
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(basic[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return _oauth_error(InvalidClientError(description="malformed Basic credentials"), 401)
        client_id, _, secret = decoded.partition(":")
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if form.get("grant_type") != "client_credentials":
        if not form.get("grant_type"):
            return _oauth_error(InvalidRequestError(description="grant_type is required"))
        return _oauth_error(UnsupportedGrantTypeError(form["grant_type"]))
    if not client_id or not secret:
        return _oauth_error(
            InvalidClientError(description="client authentication is required"), 401
        )
    if limiter is not None:  # before any hashing: a guess costs the platform a scrypt
        await limiter.hit(
            [
                ("hospital_token:ip", TOKENS_PER_ADDRESS, client.ip_hash),
                ("hospital_token:client", TOKENS_PER_CLIENT, client_id),
            ]
        )
    try:
        hospital, allowed = await connectors.registry.authenticate(client_id, secret)
    except GuahaoError:
        return _oauth_error(InvalidClientError(description="unknown client or wrong secret"), 401)
    wanted = form.get("scope", "").split() or allowed
    if not set(wanted) <= set(allowed):
        return _oauth_error(InvalidScopeError(description=f"allowed: {' '.join(allowed)}"))
    tokens: HospitalTokens = request.app.state.hospital_tokens
    return Response(
        {
            "access_token": tokens.issue(hospital, client_id, list(wanted)),
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "scope": " ".join(wanted),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )

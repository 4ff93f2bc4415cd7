"""A citizen session kept as the API's own bearer access token in an HTTP-only cookie.

The OpenID Connect sign-in hands its account to a ``CitizenSessions`` (``guahao.web.oidc``);
this is the implementation used until the pages' cookie session (with CSRF protection) takes
that place. The token is the one ``POST /api/v1/auth/token`` gives, so what it proves is
exactly what a password sign-in proves, and its lifetime is the same setting.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from guahao.web.auth import TokenIssuer

__all__ = ["ACCESS_TOKEN_COOKIE", "BearerCookieSessions"]

ACCESS_TOKEN_COOKIE = "guahao_access_token"


class BearerCookieSessions:
    """Start and end a session by setting and clearing the access-token cookie."""

    def __init__(self, tokens: TokenIssuer, *, minutes: int, secure: bool) -> None:
        self._tokens = tokens
        self._seconds = minutes * 60
        self._secure = secure

    async def start(
        self, request: Request[Any, Any, Any], account_id: str, response: Response[Any]
    ) -> Response[Any]:
        response.set_cookie(
            ACCESS_TOKEN_COOKIE,
            self._tokens.issue(account_id),
            max_age=self._seconds,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def end(self, request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
        response.delete_cookie(ACCESS_TOKEN_COOKIE, path="/")
        return response

"""The citizen pages' session: an HTTP-only cookie naming a session kept in Redis, and CSRF.

The JSON API keeps its bearer tokens; pages are used by browsers, where a cookie is the safe
carrier: ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (not sent by other sites' forms)
and ``Secure`` when the platform is served over https (``Settings.cookie_secure``). The cookie
holds only a random token; Redis keeps what it means (by a hash of it, so a copy of Redis
cannot be replayed as cookies), and every worker process sees the same sessions. Signing in
always starts a new session (no fixation); signing out deletes it everywhere at once.

Every page form and page ``fetch`` carries a CSRF token (double submit: the token in the page
must equal the signed ``guahao_csrf`` cookie, which another site can neither read nor forge).

``start_citizen_session`` is the one way in for every sign-in method (the SMS code here, the
regional OpenID Connect provider's callback elsewhere).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import redis.asyncio as aioredis
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from guahao.config import Settings
from guahao.platform.error_codes import refuse

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "CitizenSessions",
    "check_csrf",
    "citizen_account",
    "csrf_cookie",
    "csrf_token_of",
    "end_citizen_session",
    "start_citizen_session",
]

SESSION_COOKIE = "guahao_session"
CSRF_COOKIE = "guahao_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_KEY = "citizen-session:"


class CitizenSessions:
    """Sessions in Redis keyed by a hash of the cookie's token; idle sessions expire."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._seconds = settings.citizen_session_hours * 3600
        self._secure = settings.secure_cookies()
        self._secret = hashlib.sha256(b"csrf:" + settings.secret("secret_key").encode()).digest()

    @staticmethod
    def _key(token: str) -> str:
        return _KEY + hashlib.sha256(token.encode()).hexdigest()

    async def start(self, account_id: str) -> str:
        token = secrets.token_urlsafe(32)
        await self._redis.set(self._key(token), account_id, ex=self._seconds)
        return token

    async def account_of(self, token: str) -> str | None:
        """The signed-in account, sliding the session's expiry forward."""
        if not token or len(token) > 100:
            return None
        key = self._key(token)
        found = await self._redis.getex(key, ex=self._seconds)
        return found.decode() if isinstance(found, bytes) else found

    async def end(self, token: str) -> None:
        if token:
            await self._redis.delete(self._key(token))

    def cookie(self, token: str) -> Cookie:
        return Cookie(
            key=SESSION_COOKIE,
            value=token,
            max_age=self._seconds,
            path="/",
            httponly=True,
            secure=self._secure,
            samesite="lax",
        )

    def new_csrf(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_valid(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def csrf_cookie(self, token: str) -> Cookie:
        return Cookie(
            key=CSRF_COOKIE,
            value=token,
            path="/",
            httponly=True,
            secure=self._secure,
            samesite="lax",
        )


def sessions_of(connection: ASGIConnection[Any, Any, Any, Any]) -> CitizenSessions:
    """The app's session store (made on first use, once the platform's Redis is open)."""
    state = connection.app.state
    found: CitizenSessions | None = state.get("citizen_sessions")
    if found is None:
        platform = state.platform
        found = CitizenSessions(platform.redis, platform.settings)
        state.citizen_sessions = found
    return found


async def start_citizen_session(
    request: Request[Any, Any, Any], response: Response[Any], account_id: str
) -> None:
    """Sign ``account_id`` in to the pages: a new session, its cookie set on ``response``
    (any session the browser had is ended first), and a fresh CSRF token."""
    store = sessions_of(request)
    await store.end(request.cookies.get(SESSION_COOKIE, ""))
    token = await store.start(account_id)
    response.set_cookie(store.cookie(token))
    response.set_cookie(store.csrf_cookie(store.new_csrf()))


async def end_citizen_session(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    """Sign out: the session is deleted in Redis and its cookie cleared."""
    store = sessions_of(request)
    await store.end(request.cookies.get(SESSION_COOKIE, ""))
    response.delete_cookie(SESSION_COOKIE, path="/")


async def citizen_account(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The account signed in to the pages by this request's cookie, if any."""
    token = connection.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    return await sessions_of(connection).account_of(token)


def csrf_token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, bool]:
    """The browser's CSRF token and whether it is new (and must be set as a cookie)."""
    store = sessions_of(connection)
    token = connection.cookies.get(CSRF_COOKIE, "")
    if token and store.csrf_valid(token):
        return token, False
    return store.new_csrf(), True


def csrf_cookie(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Cookie:
    return sessions_of(connection).csrf_cookie(token)


def check_csrf(connection: ASGIConnection[Any, Any, Any, Any], submitted: str) -> None:
    """Refuse with ``CSRF_TOKEN_INVALID`` unless ``submitted`` equals the signed cookie."""
    cookie = connection.cookies.get(CSRF_COOKIE, "")
    if not (
        cookie
        and submitted
        and hmac.compare_digest(cookie, submitted)
        and sessions_of(connection).csrf_valid(cookie)
    ):
        refuse("CSRF_TOKEN_INVALID")


class PageSessions:
    """The OpenID Connect sign-in's ``CitizenSessions`` (``guahao.web.oidc``): an identity the
    provider vouched for becomes the same cookie session (with its CSRF token) as an SMS-code
    sign-in, so the pages cannot tell the two apart."""

    async def start(
        self, request: Request[Any, Any, Any], account_id: str, response: Response[Any]
    ) -> Response[Any]:
        await start_citizen_session(request, response, account_id)
        return response

    async def end(self, request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
        await end_citizen_session(request, response)
        return response

"""The console's session for staff: a cookie of its own, never a citizen's.

Staff sign in to the pages with their username and password (``StaffService.authenticate``,
wrong ones spaced out); the browser then holds an ``HttpOnly``, ``SameSite=Strict``
cookie (``guahao_staff``) naming a session in Redis under its own prefix, by a hash of the
token. A citizen's session cookie therefore never opens a console page, nor a staff cookie a
citizen page: the two stores share nothing. The session remembers only the staff id; the
account is read again on every request (``StaffService.actor``), so a deactivation or a role
change takes effect at the next click, as it does for staff bearer tokens. Staff sessions
idle out sooner than citizens' (``STAFF_SESSION_MINUTES``): these accounts read personal data.

Forms carry the same double-submit CSRF token as the citizen pages
(``guahao.web.citizen_session.check_csrf``).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import redis.asyncio as aioredis
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from guahao.config import Settings
from guahao.platform.services.staff import StaffActor

__all__ = [
    "STAFF_COOKIE",
    "STAFF_SESSION_MINUTES",
    "StaffSessions",
    "end_staff_session",
    "signed_in_staff",
    "start_staff_session",
]

STAFF_COOKIE = "guahao_staff"
STAFF_SESSION_MINUTES = 120
"""Idle minutes before a staff member signs in again (each request slides it forward)."""
_KEY = "staff-session:"


class StaffSessions:
    """Staff page sessions in Redis keyed by a hash of the cookie's token."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._seconds = STAFF_SESSION_MINUTES * 60
        self._secure = settings.secure_cookies()

    @staticmethod
    def _key(token: str) -> str:
        return _KEY + hashlib.sha256(token.encode()).hexdigest()

    async def start(self, staff_id: str) -> str:
        token = secrets.token_urlsafe(32)
        await self._redis.set(self._key(token), staff_id, ex=self._seconds)
        return token

    async def staff_id_of(self, token: str) -> str | None:
        if not token or len(token) > 100:
            return None
        found = await self._redis.getex(self._key(token), ex=self._seconds)
        return found.decode() if isinstance(found, bytes) else found

    async def end(self, token: str) -> None:
        if token:
            await self._redis.delete(self._key(token))

    def cookie(self, token: str) -> Cookie:
        return Cookie(
            key=STAFF_COOKIE,
            value=token,
            max_age=self._seconds,
            path="/console",
            httponly=True,
            secure=self._secure,
            samesite="strict",
        )


def _store(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffSessions:
    state = connection.app.state
    found: StaffSessions | None = state.get("staff_sessions")
    if found is None:
        platform = state.platform
        found = StaffSessions(platform.redis, platform.settings)
        state.staff_sessions = found
    return found


async def start_staff_session(
    request: Request[Any, Any, Any], response: Response[Any], actor: StaffActor
) -> None:
    """Sign ``actor`` in to the console: a new session (any earlier one ended first)."""
    store = _store(request)
    await store.end(request.cookies.get(STAFF_COOKIE, ""))
    response.set_cookie(store.cookie(await store.start(actor.id)))


async def end_staff_session(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    store = _store(request)
    await store.end(request.cookies.get(STAFF_COOKIE, ""))
    response.delete_cookie(STAFF_COOKIE, path="/console")


async def signed_in_staff(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffActor | None:
    """The staff member this request's cookie names, as the account stands now."""
    token = connection.cookies.get(STAFF_COOKIE, "")
    if not token:
        return None
    staff_id = await _store(connection).staff_id_of(token)
    if staff_id is None:
        return None
    actor: StaffActor | None = await connection.app.state.platform.staff.actor(staff_id)
    return actor

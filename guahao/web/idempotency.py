"""Idempotency keys on every write: a repeated request gets the first answer, never a second
effect. The one mechanism of the API, for citizens, staff and hospital systems alike.

A phone on a bad network repeats requests, and so does a hospital system whose connection
dropped; a repeated "submit", "cancel" or schedule push must not be taken for a new one. Any
POST/PUT/PATCH/DELETE carrying ``Idempotency-Key`` from a signed-in principal (a citizen's
account, a staff member, or a hospital's OAuth2 client) is remembered for 24 hours in Redis,
per principal: the same key with the same request replays the stored response
(``Idempotent-Replayed: true``); the same key with a different request is refused with
``IDEMPOTENCY_KEY_REUSED``; a repeat while the first is still running gets
``REQUEST_IN_PROGRESS``. Only successful answers are remembered: a refusal changed nothing,
so repeating it is safe, and a hold refused before release time must succeed when retried
after it. A route whose writes must carry a key (the hospital push API) says so with
``opt={IDEMPOTENCY_KEY_OPT: "required"}``; a signed-in write there without one is refused
``VALIDATION_FAILED`` before it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from guahao.platform.error_codes import CODES
from guahao.platform.errors import GuahaoError
from guahao.web.request_bodies import BodyTooLargeError, body_limit_of, read_bounded, replaying

__all__ = [
    "IDEMPOTENCY_KEY_OPT",
    "LEASE_SECONDS",
    "IdempotencyMiddleware",
    "claim_lease",
    "kept_leased",
    "pending_fingerprint",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_OPT = "idempotency_key"
"""Route ``opt`` naming whether its writes must carry ``Idempotency-Key`` (``"required"``)."""
MAX_KEY_LENGTH = 100
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LEASE_SECONDS = 5
"""How long a running request's claim on its key lives unless renewed. The worker running it
renews it every ``LEASE_SECONDS / 2``; a worker that dies (killed, crashed, its host gone)
stops renewing, so a retry on another worker is served at most this long after the death
instead of answering ``REQUEST_IN_PROGRESS`` for a minute."""
REMEMBER_SECONDS = 24 * 3600
PENDING = b"pending:"


class _Stored(msgspec.Struct, array_like=True):
    fingerprint: str
    status: int
    content_type: str
    body: bytes


def _error_response(code: str, status: int, **detail: Any) -> tuple[int, bytes]:
    _, zh, en = CODES[code]
    body = msgspec.json.encode({"code": code, "message": {"zh": zh, "en": en}, "detail": detail})
    return status, body


class IdempotencyMiddleware:
    """ASGI middleware; needs ``app.state.platform`` (Redis) and the token issuers in
    ``app.state`` (``tokens``, ``staff_tokens``, ``hospital_tokens``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key", "")
        principal = self._principal(scope, headers.get("authorization", ""))
        if principal is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            route = scope.get("route_handler")
            required = route is not None and route.opt.get(IDEMPOTENCY_KEY_OPT) == "required"
            if required or key:
                reason = "required on these writes" if not key else "at most 100 characters"
                status, payload = _error_response(
                    "VALIDATION_FAILED", 422, field="Idempotency-Key", reason=reason
                )
                await _respond(send, status, "application/json", payload, replayed=False)
                return
            await self.app(scope, receive, send)
            return
        try:
            body, replay_receive = await _buffer(scope, receive)
        except BodyTooLargeError as exc:
            status, payload = _error_response("REQUEST_BODY_TOO_LARGE", 413, limit_bytes=exc.limit)
            await _respond(send, status, "application/json", payload, replayed=False)
            return
        target = scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        fingerprint = hashlib.sha256(method.encode() + b" " + target + b"\n" + body).hexdigest()
        redis = scope["app"].state.platform.redis
        record = f"idem:{{{principal}}}:{hashlib.sha256(key.encode()).hexdigest()}"
        lease = await claim_lease(redis, record, fingerprint)
        if lease is None:
            existing: bytes | None = await redis.get(record)
            if existing is None or existing.startswith(PENDING):
                same = existing is not None and pending_fingerprint(existing) == fingerprint
                status, payload = _error_response(
                    "REQUEST_IN_PROGRESS" if same or existing is None else "IDEMPOTENCY_KEY_REUSED",
                    409,
                )
                await _respond(send, status, "application/json", payload, replayed=False)
                return
            stored = msgspec.msgpack.decode(existing, type=_Stored)
            if stored.fingerprint != fingerprint:
                status, payload = _error_response("IDEMPOTENCY_KEY_REUSED", 409)
                await _respond(send, status, "application/json", payload, replayed=False)
                return
            await _respond(send, stored.status, stored.content_type, stored.body, replayed=True)
            return

        captured: dict[str, Any] = {"status": 500, "type": "application/json", "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        captured["type"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            async with kept_leased(redis, record, lease):
                await self.app(scope, replay_receive, capture)
        finally:
            if 200 <= captured["status"] < 300:
                stored = _Stored(
                    fingerprint, captured["status"], captured["type"], captured["body"]
                )
                await redis.set(record, msgspec.msgpack.encode(stored), ex=REMEMBER_SECONDS)
            else:
                await redis.delete(record)

    @staticmethod
    def _principal(scope: Scope, authorization: str) -> str | None:
        """Who is writing, as the Redis hash tag its keys live under (``acct:…``,
        ``staff:…``, ``hosp:…``); ``None`` without a valid bearer token (the route's guard
        then refuses the request, or it is an anonymous write that nothing remembers)."""
        scheme, _sep, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        token = token.strip()
        state = scope["app"].state
        try:
            return f"acct:{state.tokens.account_of(token)}"
        except GuahaoError:
            pass
        try:
            return f"staff:{state.staff_tokens.staff_id_of(token)}"
        except GuahaoError:
            pass
        try:
            hospital, _scopes = state.hospital_tokens.principal(token)
        except GuahaoError:
            return None
        return f"hosp:{hospital}"


# KEYS[1] the record. ARGV: our lease value, ttl ms. Renews the lease only while it is ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


async def claim_lease(
    redis: aioredis.Redis, record: str, fingerprint: str, *, seconds: float = LEASE_SECONDS
) -> bytes | None:
    """Claim ``record`` for a request now starting: the lease value (``pending:`` + the
    request's fingerprint + a token naming this claim), or None when someone holds it."""
    value = PENDING + fingerprint.encode() + b":" + secrets.token_hex(8).encode()
    claimed = await redis.set(record, value, nx=True, px=int(seconds * 1000))
    return value if claimed else None


def pending_fingerprint(value: bytes) -> str:
    """The fingerprint of the request a ``pending:`` record belongs to."""
    return value[len(PENDING) :].partition(b":")[0].decode()


@contextlib.asynccontextmanager
async def kept_leased(
    redis: aioredis.Redis, record: str, lease: bytes, *, seconds: float = LEASE_SECONDS
) -> AsyncIterator[None]:
    """Renew the lease every half of its ``seconds`` while the body runs; a renewal that
    fails (Redis briefly away) is retried at the next tick, never failing the request."""
    renew = redis.register_script(_RENEW)

    async def keep() -> None:
        while True:
            await asyncio.sleep(seconds / 2)
            try:
                await renew(keys=[record], args=[lease, int(seconds * 1000)])
            except Exception as exc:  # the request goes on; the next tick tries again
                log.warning("idempotency lease %s not renewed: %s", record, exc)

    task = asyncio.create_task(keep(), name="idempotency-lease")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _buffer(scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
    """Read the request body, refused at the route's limit while it arrives (never whole
    before the limit applies), and give the app a ``receive`` that plays it back."""
    body = await read_bounded(scope, receive, body_limit_of(scope))
    return body, replaying(body, receive)


async def _respond(
    send: Send, status: int, content_type: str, body: bytes, *, replayed: bool
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
    ]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

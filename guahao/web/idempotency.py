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

A route whose service already keeps a replay record under the key says so with
``opt={IDEMPOTENCY_KEY_OPT: "kept_by_route"}`` (``POST /api/v1/holds``: the hold pool's own
record, written in the same script as the grant, answers a repeat with its first hold). The
middleware only checks the key there and keeps no record of its own: a second record of the
same fact cost every grant a claim and an answer in Redis, in sequence with the grant
(bench/profiles/grant3-*).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from guahao.platform.error_codes import CODES
from guahao.platform.errors import GuahaoError
from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.web.request_bodies import BodyTooLargeError, body_limit_of, read_bounded, replaying

__all__ = [
    "IDEMPOTENCY_KEY_OPT",
    "KEPT_BY_ROUTE",
    "LEASE_SECONDS",
    "IdempotencyMiddleware",
    "IdempotencyRecords",
    "LeaseKeeper",
    "claim_lease",
    "kept_leased",
    "pending_fingerprint",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_OPT = "idempotency_key"
"""Route ``opt`` naming whether its writes must carry ``Idempotency-Key`` (``"required"``), or
that the route keeps the key's replay record itself (``KEPT_BY_ROUTE``)."""
KEPT_BY_ROUTE = "kept_by_route"
"""``IDEMPOTENCY_KEY_OPT`` of a route whose service answers a repeated key with its first
answer and a concurrent repeat with the same result or ``REQUEST_IN_PROGRESS``, so the
middleware keeps no record for it."""
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
        self._records: IdempotencyRecords | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key", "")
        route = scope.get("route_handler")
        if route is not None and route.opt.get(IDEMPOTENCY_KEY_OPT) == KEPT_BY_ROUTE:
            await self._pass_kept_by_route(scope, receive, send, key, headers)
            return
        principal = self._principal(scope, headers.get("authorization", ""))
        if principal is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
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
        records = self._records_for(scope["app"].state.platform.redis)
        record = f"idem:{{{principal}}}:{hashlib.sha256(key.encode()).hexdigest()}"
        lease, existing = await records.claim(record, fingerprint)
        if lease is None:
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
            with records.leases.kept(record, lease):
                await self.app(scope, replay_receive, capture)
        finally:
            answer = None
            if 200 <= captured["status"] < 300:
                answer = msgspec.msgpack.encode(
                    _Stored(fingerprint, captured["status"], captured["type"], captured["body"])
                )
            await records.settle(record, lease, answer)

    async def _pass_kept_by_route(
        self, scope: Scope, receive: Receive, send: Send, key: str, headers: dict[str, str]
    ) -> None:
        """A route keeping its own replay record: refuse a key too long as every write
        does (before it runs, signed in), and let everything else through unrecorded. The
        token is decoded here only for that rare refusal; the route's guard decodes it
        anyway."""
        if len(key) > MAX_KEY_LENGTH and self._principal(scope, headers.get("authorization", "")):
            status, payload = _error_response(
                "VALIDATION_FAILED", 422, field="Idempotency-Key", reason="at most 100 characters"
            )
            await _respond(send, status, "application/json", payload, replayed=False)
            return
        await self.app(scope, receive, send)

    def _records_for(self, redis: aioredis.Redis) -> IdempotencyRecords:
        """The records kept in ``redis`` (the platform's client), made on first use."""
        if self._records is None or self._records.redis is not redis:
            self._records = IdempotencyRecords(redis)
        return self._records

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


# KEYS[1] the record. ARGV: our lease value, ttl ms. Takes the record for a request now
# starting, or answers what stands there (a pending claim, or the stored answer) in the same
# round trip. Sent again after a lost reply it finds its own claim, and says so.
_CLAIM = LuaScript(
    "idempotency_claim",
    """
local existing = redis.call('GET', KEYS[1])
if not existing then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1}
end
if existing == ARGV[1] then
  return {1}
end
return {0, existing}
""",
)

# KEYS[1] the record. ARGV: our lease value, the answer ('' for none), seconds to remember it.
# An answer replaces whatever stands (it is the truth of the key); without one the claim is
# dropped, but only while it is still ours (a lapsed lease may have been taken over).
_SETTLE = LuaScript(
    "idempotency_settle",
    """
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
""",
)

# KEYS[1] the record. ARGV: our lease value, ttl ms. Renews the lease only while it is ours.
_RENEW = LuaScript(
    "idempotency_renew",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""",
)


class LeaseKeeper:
    """Renews the leases of every request this process is running, all in one round trip
    every half lease, from one task that lives only while some request runs.

    A task per request (as before) cost every write a task created and cancelled, and a
    renewal each of its own; at a release a worker runs hundreds of writes at once
    (bench/profiles/surge-grant2-*)."""

    def __init__(self, pipeline: AutoPipeline, *, seconds: float = LEASE_SECONDS) -> None:
        self._pipeline = pipeline
        self._seconds = seconds
        self._held: dict[str, bytes] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def kept(self, record: str, lease: bytes) -> Iterator[None]:
        """Keep ``record``'s lease renewed while the body runs."""
        self._held[record] = lease
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._renew_while_held(), name="idempotency-leases"
            )
        try:
            yield
        finally:
            if self._held.get(record) == lease:
                del self._held[record]
            if not self._held and self._task is not None:
                # nothing left to renew: no task outlives the requests (a quiet process,
                # a test's event loop ending, a shutdown)
                self._task.cancel()
                self._task = None

    async def _renew_while_held(self) -> None:
        ttl_ms = int(self._seconds * 1000)
        while True:
            await asyncio.sleep(self._seconds / 2)
            held = list(self._held.items())
            replies = await asyncio.gather(
                *(self._pipeline.run(_RENEW, [record], [lease, ttl_ms]) for record, lease in held),
                return_exceptions=True,
            )
            for (record, _lease), reply in zip(held, replies, strict=True):
                if isinstance(reply, Exception):  # the request goes on; the next tick retries
                    log.warning("idempotency lease %s not renewed: %s", record, reply)


class IdempotencyRecords:
    """The records of one Redis (the platform's), their scripts sent through one automatic
    pipeline: the claims and answers of the writes running at once share round trips."""

    def __init__(self, redis: aioredis.Redis, *, seconds: float = LEASE_SECONDS) -> None:
        self.redis = redis
        self._pipeline = AutoPipeline(redis)
        self._seconds = seconds
        self.leases = LeaseKeeper(self._pipeline, seconds=seconds)

    async def claim(self, record: str, fingerprint: str) -> tuple[bytes | None, bytes | None]:
        """Claim ``record`` for a request now starting: ``(lease, None)``, or ``(None, what
        stands there)`` (``None`` too when a claim lapsed between the two looks, which the
        script makes impossible but the caller treats as "in progress")."""
        value = PENDING + fingerprint.encode() + b":" + secrets.token_hex(8).encode()
        reply = await self._pipeline.run(_CLAIM, [record], [value, int(self._seconds * 1000)])
        if int(reply[0]) == 1:
            return value, None
        existing: bytes = reply[1]
        return None, existing

    async def settle(self, record: str, lease: bytes, answer: bytes | None) -> None:
        """Remember ``answer`` for a day, or drop the claim when there is none to remember."""
        await self._pipeline.run(_SETTLE, [record], [lease, answer or b"", REMEMBER_SECONDS])


async def claim_lease(
    redis: aioredis.Redis, record: str, fingerprint: str, *, seconds: float = LEASE_SECONDS
) -> bytes | None:
    """Claim ``record`` for a request now starting: the lease value (``pending:`` + the
    request's fingerprint + a token naming this claim), or None when someone holds it."""
    lease, _existing = await IdempotencyRecords(redis, seconds=seconds).claim(record, fingerprint)
    return lease


def pending_fingerprint(value: bytes) -> str:
    """The fingerprint of the request a ``pending:`` record belongs to."""
    return value[len(PENDING) :].partition(b":")[0].decode()


@contextlib.asynccontextmanager
async def kept_leased(
    redis: aioredis.Redis, record: str, lease: bytes, *, seconds: float = LEASE_SECONDS
) -> AsyncIterator[None]:
    """Renew the lease every half of its ``seconds`` while the body runs; a renewal that
    fails (Redis briefly away) is retried at the next tick, never failing the request."""
    with LeaseKeeper(AutoPipeline(redis), seconds=seconds).kept(record, lease):
        yield


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

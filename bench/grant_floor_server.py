"""The least a granted hold can do over HTTP in this stack, served beside the ceiling.

``bench/grant_floor.py`` measures it. ``POST /floor/redis`` and ``POST /floor/pg`` are
answered before the framework (as the platform's front answers its grants), with only what
any correct grant must do: read the body and a bearer token and check its signature (HMAC),
then, for the loop turn's requests together, one Redis script that records each request's
idempotency key, takes a unit if one is left and records the hold's expiry; ``/floor/pg``
also writes the granted holds' rows to PostgreSQL in one statement (the platform's booking
row, without its indexes, foreign keys and outbox). No rate limit, no rule, no replayed
answer, no sold-out view, no logging, no metrics. Everything else (``GET /plain``, the
ceiling) is ``bench.http_ceiling``'s Litestar app in the same process.

A grant of the platform cannot cost the server less than this; so if this ratio to the
ceiling is under a target, no trimming of the platform's grant path reaches it.

Settings from the environment: ``BENCH_FLOOR_REDIS`` (URL), ``BENCH_FLOOR_PG`` (asyncpg DSN),
``BENCH_FLOOR_SECRET`` (the tokens' HMAC key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import uuid
from typing import Any, NamedTuple

import asyncpg
import msgspec
import redis.asyncio as aioredis

from bench.http_ceiling import app as ceiling

HOLD_SECONDS = 600
MAX_BODY = 4096

# Per hold: KEYS slot counter, replay record; ARGV hold id, expiry (ms), replay record.
SCRIPT = """
local replies = {}
for i = 1, #KEYS / 2 do
  local slot, replay = KEYS[2 * i - 1], KEYS[2 * i]
  local hold_id, expires, record = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if not redis.call('SET', replay, record, 'PX', 600000, 'NX') then
    replies[i] = 'REPLAYED'
  elseif redis.call('DECR', slot) < 0 then
    redis.call('INCR', slot)
    redis.call('DEL', replay)
    replies[i] = 'SOLD_OUT'
  else
    redis.call('ZADD', slot .. ':holds', expires, hold_id)
    replies[i] = 'GRANTED'
  end
end
return replies
"""

INSERT = (
    "INSERT INTO floor_holds (id, slot_id, account, expires_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
)


class _Hold(msgspec.Struct, rename="camel"):
    slot_id: str


_decode = msgspec.json.Decoder(_Hold).decode
_encode = msgspec.json.Encoder().encode


class _Answer(msgspec.Struct, rename="camel"):
    id: str
    slot_id: str
    expires_at: int


class _Refusal(msgspec.Struct):
    code: str


class _Pending(NamedTuple):
    """A hold waiting for its loop turn's script (and, ``with_row``, its row)."""

    slot_id: str
    replay: str
    hold_id: str
    account: str
    expires: int
    with_row: bool
    future: asyncio.Future[str]


class Floor:
    """The ASGI app: the floor's two routes, everything else to the ceiling's app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.secret = os.environ.get("BENCH_FLOOR_SECRET", "floor").encode()
        self.redis: aioredis.Redis | None = None
        self.pool: asyncpg.Pool | None = None
        self.sha = ""
        self.opening = asyncio.Lock()
        self.pending: list[_Pending] = []
        self.scheduled = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/floor/"):
            await self._hold(scope, receive, send, with_row=path == "/floor/pg")
            return
        await self.app(scope, receive, send)

    async def _open(self) -> None:
        async with self.opening:
            if self.redis is None:
                client = aioredis.Redis.from_url(os.environ["BENCH_FLOOR_REDIS"])
                self.sha = await client.script_load(SCRIPT)
                self.pool = await asyncpg.create_pool(
                    os.environ["BENCH_FLOOR_PG"], min_size=4, max_size=20
                )
                self.redis = client

    async def _hold(self, scope: Any, receive: Any, send: Any, *, with_row: bool) -> None:
        if self.redis is None:
            await self._open()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _respond(send, 413, _encode(_Refusal("PAYLOAD_TOO_LARGE")))
                return
            if not message.get("more_body"):
                break
        authorization = key = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"idempotency-key":
                key = value
        account, _, signature = authorization.removeprefix(b"Bearer ").partition(b".")
        expected = hmac.new(self.secret, account, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(signature, expected) or not key:
            await _respond(send, 401, _encode(_Refusal("UNAUTHENTICATED")))
            return
        try:
            slot_id = _decode(body).slot_id
        except msgspec.ValidationError:
            await _respond(send, 422, _encode(_Refusal("VALIDATION_FAILED")))
            return
        hold_id = uuid.uuid4().hex
        expires = int(time.time() * 1000) + HOLD_SECONDS * 1000
        who = account.decode()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        replay = f"r:{who}:{key.decode()}"
        self.pending.append(_Pending(slot_id, replay, hold_id, who, expires, with_row, future))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        outcome = await future
        if outcome == "GRANTED":
            await _respond(send, 201, _encode(_Answer(hold_id, slot_id, expires)))
        else:
            await _respond(send, 409, _encode(_Refusal(outcome)))

    def _flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        task = asyncio.ensure_future(self._decide(batch))
        task.add_done_callback(_report)

    async def _decide(self, batch: list[_Pending]) -> None:
        assert self.redis is not None
        assert self.pool is not None
        keys: list[str] = []
        args: list[str | int] = []
        for p in batch:
            keys += [f"slot:{p.slot_id}", p.replay]
            args += [p.hold_id, p.expires, f"{p.account}:{p.hold_id}"]
        try:
            replies = await self.redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
            outcomes = [r.decode() for r in replies]
            rows = [
                p
                for p, outcome in zip(batch, outcomes, strict=True)
                if p.with_row and outcome == "GRANTED"
            ]
            if rows:
                await self.pool.execute(
                    INSERT,
                    [r.hold_id for r in rows],
                    [r.slot_id for r in rows],
                    [r.account for r in rows],
                    [r.expires for r in rows],
                )
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            raise
        for p, outcome in zip(batch, outcomes, strict=True):
            p.future.set_result(outcome)


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"floor batch failed: {task.exception()!r}", flush=True)


app = Floor(ceiling)

"""The two reference servers of bench/http_surge.py, served by uvicorn exactly as the platform is.

- ``GET /plain``: a plain Litestar route returning a small JSON object, the ceiling of the
  framework and server on this machine.
- ``POST /pg/holds``: the common approach to a hold, a PostgreSQL row lock: in one
  transaction ``SELECT … FOR UPDATE`` the slot's row, refuse if nothing remains, otherwise
  decrement it and insert the hold (asyncpg, a pool of 20). It reads the body and the
  bearer token as the platform does but checks no signature, no rate limit and no rule, so
  it is flattering to the baseline.

``BENCH_PG_DSN`` names the database (tables ``bench_slots`` and ``bench_holds``, made by the
bench).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get, post

POOL_SIZE = 20


class HoldCreate(msgspec.Struct, rename="camel"):
    slot_id: str


@get("/plain")
async def plain() -> dict[str, str]:
    return {"status": "ok", "version": "bench"}


@post("/pg/holds")
async def pg_hold(request: Request[None, None, None], data: HoldCreate) -> Response[dict[str, str]]:
    pool: asyncpg.Pool = request.app.state.pool
    account = request.headers.get("authorization", "")[-24:]
    async with pool.acquire() as connection, connection.transaction():
        remaining = await connection.fetchval(
            "SELECT remaining FROM bench_slots WHERE id = $1 FOR UPDATE", data.slot_id
        )
        if remaining is None or remaining <= 0:
            return Response({"code": "SLOT_SOLD_OUT"}, status_code=409)
        await connection.execute(
            "UPDATE bench_slots SET remaining = remaining - 1 WHERE id = $1", data.slot_id
        )
        hold_id = uuid.uuid4().hex
        await connection.execute(
            "INSERT INTO bench_holds (id, slot_id, account) VALUES ($1, $2, $3)",
            hold_id,
            data.slot_id,
            account,
        )
    return Response({"id": hold_id, "slotId": data.slot_id}, status_code=201)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    dsn = os.environ.get("BENCH_PG_DSN", "")
    app.state.pool = await asyncpg.create_pool(dsn, min_size=2, max_size=POOL_SIZE) if dsn else None
    try:
        yield
    finally:
        if app.state.pool is not None:
            await app.state.pool.close()


app = Litestar([plain, pg_hold], lifespan=[lifespan], debug=False)

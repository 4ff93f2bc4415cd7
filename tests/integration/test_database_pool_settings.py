"""The PostgreSQL pool's size and wait are the operator's settings
(``GUAHAO_DATABASE_POOL_SIZE``, ``GUAHAO_DATABASE_POOL_TIMEOUT_SECONDS``): workers × size is
what the database or its PgBouncer must hold, and the wait is how long a crowd larger than
the pool queues before it is answered 503. Real PostgreSQL and Redis, the app over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncConnection

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.web.app import create_app
from tests.fixtures.platforms import START, settings_for

pytestmark = pytest.mark.postgres


@pytest.fixture
async def small_pool(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """PostgreSQL only: a SQLite file's writers queue on its lock, not on a pool."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    settings = msgspec.structs.replace(
        settings_for(tmp_path, postgres_url, redis_url),
        database_pool_size=2,
        database_pool_timeout_seconds=0.3,
    )
    async with open_platform(settings, clock=ManualClock(START)) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform  # what the lifespan does; ASGITransport runs none
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield platform, http


async def test_a_crowd_past_the_pool_waits_the_set_time_then_gets_503_and_never_more_connections(
    small_pool: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, http = small_pool
    assert (await http.get("/health")).status_code == 200
    async with contextlib.AsyncExitStack() as held:
        taken: list[AsyncConnection] = [
            await held.enter_async_context(platform.engine.connect()) for _ in range(2)
        ]
        for connection in taken:
            await connection.exec_driver_sql("SELECT 1")  # really checked out
        assert platform.engine.pool.checkedout() == 2  # type: ignore[attr-defined]
        started = time.monotonic()
        answers = await asyncio.gather(*(http.get("/health") for _ in range(3)))
        waited = time.monotonic() - started
    assert [a.status_code for a in answers] == [503] * 3
    body = answers[0].json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["message"] == {
        "zh": "系统繁忙，请稍后再试",
        "en": "The service is unavailable; retry shortly",
    }
    assert answers[0].headers["retry-after"]
    # the set 0.3 s, not the 30 s default (nor an instant refusal)
    assert 0.25 <= waited < 5.0
    assert platform.engine.pool.size() == 2  # type: ignore[attr-defined]
    assert (await http.get("/health")).status_code == 200  # the connections came back

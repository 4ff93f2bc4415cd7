"""When a dependency is away: a clear 503-class refusal, nothing half-written, no lost unit."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from guahao.platform.errors import GuahaoError
from guahao.platform.jobs import SaqJobs
from guahao.platform.persistence.database import create_engine, session_factory
from guahao.platform.persistence.tables import BookingRow
from guahao.web.errors import exception_handlers
from tests.fixtures.platforms import counts, manual_clock, new_account, publish_clinic


async def test_a_hold_that_cannot_be_recorded_gives_its_unit_back(sqlite_platform: Any) -> None:
    platform = sqlite_platform
    slots = await publish_clinic(platform)
    first = await new_account(platform)
    await platform.bookings.hold(account_id=first, slot_id=slots[0], idempotency_key="a")
    second = await new_account(platform)

    working = platform.ports.sessions
    dead = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    platform.ports.sessions = session_factory(dead)  # the database is away
    try:
        with pytest.raises(GuahaoError) as refused:
            await platform.bookings.hold(account_id=second, slot_id=slots[0], idempotency_key="b")
    finally:
        platform.ports.sessions = working
        await dead.dispose()

    assert refused.value.code == "DATABASE_UNAVAILABLE"
    assert (await counts(platform, slots[0])).held == 1  # only the first, recorded hold
    async with platform.ports.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BookingRow)) == 1
    # The account is not left marked as holding something: it can hold once the DB is back.
    again = await platform.bookings.hold(account_id=second, slot_id=slots[0], idempotency_key="c")
    assert again.status.value == "held"


async def test_a_job_that_cannot_be_queued_does_not_fail_the_recorded_command(
    sqlite_platform: Any, tmp_path: Any
) -> None:
    platform = sqlite_platform
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    working = platform.ports.jobs
    platform.ports.jobs = SaqJobs(f"unix://{tmp_path}/no-redis.sock")  # the queue is away
    try:
        booking = await platform.bookings.hold(
            account_id=account, slot_id=slots[0], idempotency_key="a"
        )
    finally:
        platform.ports.jobs = working
    assert (await platform.bookings.get(booking.id)).status.value == "held"
    # The expiry sweep does the job that could not be queued.
    manual_clock(platform).advance(minutes=11)
    assert await platform.bookings.expire_due() == 1
    assert (await counts(platform, slots[0])).held == 0


@get("/redis-away")
async def _redis_away() -> None:
    raise RedisConnectionError("Connection refused")


@get("/database-away")
async def _database_away() -> None:
    raise OperationalError("SELECT 1", {}, Exception("connection refused"))


@get("/socket-refused")
async def _socket_refused() -> None:
    raise ConnectionRefusedError(111, "Connect call failed")


@pytest.mark.parametrize("path", ["/redis-away", "/database-away", "/socket-refused"])
def test_an_unavailable_dependency_answers_503_with_retry_after_never_500(path: str) -> None:
    app = Litestar(
        [_redis_away, _database_away, _socket_refused], exception_handlers=exception_handlers
    )
    with TestClient(app=app) as client:
        response = client.get(path)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["message"]["zh"]
    assert body["message"]["en"]


def test_a_pool_with_no_connection_to_lend_answers_503_never_500(tmp_path: Any) -> None:
    """Every connection busy past the pool's timeout (a release crowd on one worker) is the
    database being unable to answer now: 503 with Retry-After, as an outage is."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import AsyncAdaptedQueuePool

    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'busy.sqlite3'}",
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )

    @get("/pool-busy")
    async def _pool_busy() -> None:
        async with engine.connect() as held:  # the only connection, kept busy
            await held.execute(select(1))
            async with engine.connect() as second:  # waits 0.2 s, then the pool gives up
                await second.execute(select(1))

    app = Litestar([_pool_busy], exception_handlers=exception_handlers)
    with TestClient(app=app) as client:
        response = client.get("/pool-busy")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"

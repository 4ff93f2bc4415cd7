"""Two workers on hosts whose clocks disagree (by 30 s, by 5 min), sharing one database and one
Redis: the skew is injected through the Clock port (``SkewedClock`` over the system clock), and
every decision is still taken on one time, Redis's, so a release opens for both at the same
instant and a hold granted by the slow one is not purged or expired early by the fast one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import update

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import SkewedClock, SystemClock
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import SessionRow, SlotRow
from guahao.platform.shared_clock import RedisTime, SharedClock
from tests.fixtures.conservation import assert_units_conserved
from tests.fixtures.platforms import clinic, counts, hold, new_account, publish_clinic, settings_for

TOLERANCE = timedelta(milliseconds=250)
"""How closely calibrated workers agree: half a round trip on a loaded CI machine, with room."""


@pytest.fixture(params=[timedelta(seconds=30), timedelta(minutes=5)], ids=["30s", "5min"])
def skew(request: pytest.FixtureRequest) -> timedelta:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def workers(
    migrated_database_url: str, redis_url: str, tmp_path: Path, skew: timedelta
) -> AsyncIterator[tuple[Platform, Platform]]:
    """(fast, slow): the first host's clock runs ``skew`` ahead, the second's ``skew`` behind."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    async with AsyncExitStack() as stack:
        opened = []
        for name, off in (("fast", skew), ("slow", -skew)):
            settings = msgspec.structs.replace(
                settings_for(tmp_path / name, migrated_database_url, redis_url),
                clock_reference="redis",
            )
            opened.append(
                await stack.enter_async_context(
                    open_platform(settings, clock=SkewedClock(SystemClock(), off), migrate=False)
                )
            )
        yield opened[0], opened[1]


async def test_hosts_minutes_apart_tell_the_same_time(
    workers: tuple[Platform, Platform], skew: timedelta
) -> None:
    fast, slow = workers
    redis_now = await RedisTime(fast.redis).now()
    for worker in (fast, slow):
        assert isinstance(worker.ports.clock, SharedClock)
        assert abs(worker.ports.clock.now() - redis_now) < TOLERANCE
    assert abs(fast.ports.clock.now() - slow.ports.clock.now()) < TOLERANCE


async def _release_soon(platform: Platform, slot_id: str, opens: datetime) -> None:
    """Move the slot's session to tomorrow (real time) with its release at ``opens``."""
    starts = opens + timedelta(days=1)
    async with platform.ports.sessions() as session, session.begin():
        slot = await session.get(SlotRow, slot_id)
        assert slot is not None
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == slot.session_id)
            .values(
                starts_at=starts,
                ends_at=starts + timedelta(hours=4),
                release_at=opens,
                cutoff_at=starts - timedelta(hours=1),
            )
        )
        await session.execute(
            update(SlotRow)
            .where(SlotRow.id == slot_id)
            .values(starts_at=starts, ends_at=starts + timedelta(minutes=30), release_at=opens)
        )
    await platform.inventory_sync.reload([slot_id])


async def test_a_release_opens_for_fast_and_slow_hosts_at_the_same_instant(
    workers: tuple[Platform, Platform], skew: timedelta
) -> None:
    fast, slow = workers
    slot = (await publish_clinic(fast, clinic(PaymentMode.PAY_AT_HOSPITAL, units=1)))[0]
    opens = await RedisTime(fast.redis).now() + timedelta(seconds=2)
    await _release_soon(fast, slot, opens)

    # On its own clock the fast host is already past the release: it must not open it early.
    with pytest.raises(GuahaoError) as refused:
        await hold(fast, await new_account(fast), slot)
    assert refused.value.code == "SLOT_NOT_RELEASED"

    await asyncio.sleep(max(0.0, (opens - slow.ports.clock.now()).total_seconds()) + 0.3)
    # The slow host, on its own clock still before the release, opens it at the same instant.
    booking = await hold(slow, await new_account(slow), slot)

    # Its hold runs its full time everywhere: the fast host's purge and sweep leave it.
    assert (await counts(fast, slot)).held == 1
    assert await fast.bookings.expire_due() == 0
    assert booking.hold_expires_at - fast.ports.clock.now() > timedelta(minutes=9)
    await assert_units_conserved(fast, [slot])


async def test_a_reference_out_of_reach_keeps_the_last_measured_offset(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "reference", port=_free_port(), persist=False)
    await asyncio.to_thread(server.start)
    client = aioredis.Redis.from_url(server.url)
    try:
        clock = SharedClock(
            SkewedClock(SystemClock(), timedelta(minutes=5)),
            RedisTime(client),
            interval_seconds=0.01,
        )
        measured = await clock.calibrate()
        assert abs(measured + timedelta(minutes=5)) < TOLERANCE
        await asyncio.to_thread(server.stop)  # the reference is away from now on
        running = asyncio.create_task(clock.run())
        await asyncio.sleep(0.2)  # several failed measurements
        assert not running.done()  # it keeps trying
        assert clock.offset == measured  # never back to the host's own idea of time
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        await client.aclose()
        await asyncio.to_thread(server.stop)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

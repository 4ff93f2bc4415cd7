"""Redis down for a while, on a Redis of the test's own that it stops and starts again.

The periodic sweep keeps going when one of its steps fails: with Redis down, expiring holds
fails (and is counted and logged) while the steps that need only SQL still run; once Redis is
back the failed step catches up at the next round. A hospital's policy change, which every
process must learn of through Redis, is refused rather than written unannounced.

Expiry writes the record first and then releases the unit in Redis; when the release fails
the booking is expired already (its Redis hold lapses by itself), and the bookings after it
wait for the next round."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import HospitalRow
from tests.fixtures.platforms import (
    SESSION_DAY,
    _open,
    at_local,
    booking_row,
    clinic,
    confirmed_booking,
    held_with_patient,
    manual_clock,
    publish_clinic,
)


async def statuses(platform: Platform, bookings: list[str]) -> list[str]:
    return sorted([(await booking_row(platform, b)).status for b in bookings])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test alone, on a fixed TCP port so that it can be stopped and started
    again at the same address (the shared session Redis must never be stopped). It keeps its
    data on disk, as a production Redis does across a restart."""
    server = EmbeddedRedis(tmp_path / "own-redis", port=free_port(), persist=True)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def outage_platform(
    migrated_database_url: str, own_redis: EmbeddedRedis, tmp_path: Path
) -> AsyncIterator[Platform]:
    async for p in _open(tmp_path, migrated_database_url, own_redis.url, migrate=False):
        yield p


async def test_with_redis_down_the_sweep_still_marks_no_shows_and_expires_later(
    outage_platform: Platform, own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    platform = outage_platform
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    _, confirmed, _ = await confirmed_booking(platform, slots[0])
    held = [(await held_with_patient(platform, slot))[2] for slot in slots[1:3]]
    manual_clock(platform).set(at_local(SESSION_DAY, 18))  # the hold ran out, the session ended
    await asyncio.to_thread(own_redis.stop)

    with caplog.at_level(logging.ERROR, logger="guahao.platform.services.sweep"):
        down = await platform.sweep.run()

    assert "expired" in down.failed
    assert down.failures["expired"] == 1
    assert down.counts["no_shows"] == 1  # a later step ran although an earlier one failed
    assert set(down.counts) | set(down.failed) == set(platform.sweep.steps)
    # every step that needs Redis failed (expiry, the fold of refused demand), each logged
    logged = [r for r in caplog.records if r.name == "guahao.platform.services.sweep"]
    assert any("sweep step expired failed" in r.getMessage() for r in logged), logged
    assert len(logged) == len(down.failed)
    assert all(r.exc_info is not None for r in logged)  # each with its exception
    assert await statuses(platform, held) == ["expired", "patient_chosen"]
    assert (await booking_row(platform, confirmed)).status == "no_show"

    await asyncio.to_thread(own_redis.start)
    manual_clock(platform).advance(seconds=15)
    again = await platform.sweep.run()

    assert again.failed == {}
    assert again.counts["expired"] == 1  # retried at the next round, and caught up
    assert again.failures["expired"] == 1  # the count stays for operators to read
    assert await statuses(platform, held) == ["expired", "expired"]
    report = await platform.job_functions()["sweep"]()  # what the job queue stores
    assert report["failures"]["expired"] == 1
    assert report["failed"] == {}


async def test_with_redis_down_a_policy_change_is_refused_and_nothing_is_written(
    outage_platform: Platform, own_redis: EmbeddedRedis
) -> None:
    platform = outage_platform
    spec = clinic()
    await publish_clinic(platform, spec)
    changed = msgspec.structs.replace(
        spec, policies=msgspec.structs.replace(spec.policies, hold_minutes=5)
    )
    await asyncio.to_thread(own_redis.stop)

    with pytest.raises(GuahaoError) as refused:
        await platform.supply.register_hospital(changed)

    assert refused.value.code == "INVENTORY_UNAVAILABLE"
    async with platform.ports.sessions() as session:
        row = await session.scalar(select(HospitalRow).where(HospitalRow.code == spec.code))
    assert row is not None
    assert row.policies["hold_minutes"] == 10
    await asyncio.to_thread(own_redis.start)
    await platform.supply.register_hospital(changed)  # once Redis is back it goes through

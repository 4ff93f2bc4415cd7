"""A hold granted by a Redis that is then lost, recorded in SQL only after the pool was
reloaded from a SQL read that could not see it.

This is the ``HOLD_EXPIRED`` the Redis-loss surge met once (test_pool_faults): the hold path
writes Redis first and SQL a moment later, so a reload in between (the sweep's rebuild or a
lazy load by another citizen) misses the hold, and its confirm found nothing to confirm. The
hold's record is held back here by a real database lock, so the race happens every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from guahao.bootstrap import Platform
from guahao.platform.bookings import BookingStatus
from guahao.platform.hospitals import PaymentMode
from tests.fixtures.conservation import assert_units_conserved
from tests.fixtures.platforms import (
    booking_row,
    clinic,
    counts,
    hold,
    new_account,
    new_patient,
    publish_clinic,
)


@asynccontextmanager
async def bookings_frozen(platform: Platform) -> AsyncIterator[None]:
    """Hold back every write to the bookings table (reads go on) until the block ends."""
    async with platform.engine.connect() as conn:
        if platform.engine.dialect.name == "postgresql":
            await conn.execute(text("LOCK TABLE bookings IN SHARE MODE"))
        else:  # SQLite in WAL mode: one writer at a time, readers unhindered
            await conn.execute(text("UPDATE bookings SET updated_at = updated_at WHERE 0 = 1"))
        try:
            yield
        finally:
            await conn.rollback()


async def held_in_redis(platform: Platform, slot_id: str, count: int) -> None:
    for _ in range(500):
        if (await counts(platform, slot_id)).held == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{slot_id} never had {count} holds in Redis")


async def confirm_with_insurance(platform: Platform, account_id: str, booking_id: str) -> None:
    patient_id = await new_patient(platform, account_id)
    await platform.bookings.choose_patient(
        account_id=account_id, booking_id=booking_id, patient_id=patient_id
    )
    await platform.bookings.submit(
        account_id=account_id, booking_id=booking_id, channel="insurance"
    )


@pytest.fixture
async def one_unit(platform: Platform) -> str:
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL, units=1))
    await platform.pool_recovery.rebuild()
    return slots[0]


async def test_a_hold_recorded_after_the_rebuild_that_missed_it_still_confirms(
    platform: Platform, one_unit: str
) -> None:
    citizen = await new_account(platform)
    async with bookings_frozen(platform):
        holding = asyncio.create_task(hold(platform, citizen, one_unit))
        await held_in_redis(platform, one_unit, 1)  # granted; its record waits on the lock
        await platform.redis.flushdb()  # Redis restarted empty
        assert await platform.pool_recovery.rebuild_if_lost() > 0  # SQL cannot see the hold
    booking = await holding

    await confirm_with_insurance(platform, citizen, booking.id)

    assert (await booking_row(platform, booking.id)).status == BookingStatus.CONFIRMED.value
    assert (await counts(platform, one_unit)).booked == 1
    await assert_units_conserved(platform, [one_unit])


async def test_a_lost_hold_whose_unit_went_to_another_is_refused_not_answered(
    platform: Platform, one_unit: str
) -> None:
    first, second = await new_account(platform), await new_account(platform)
    async with bookings_frozen(platform):
        lost = asyncio.create_task(hold(platform, first, one_unit))
        await held_in_redis(platform, one_unit, 1)
        await platform.redis.flushdb()
        await platform.pool_recovery.rebuild_if_lost()  # the unit looks free again
        taken = asyncio.create_task(hold(platform, second, one_unit))
        await held_in_redis(platform, one_unit, 1)  # and is granted to the second citizen
    with pytest.raises(Exception, match="SLOT_SOLD_OUT"):
        await lost
    booking = await taken

    await confirm_with_insurance(platform, second, booking.id)

    assert (await counts(platform, one_unit)).booked == 1
    await assert_units_conserved(platform, [one_unit])

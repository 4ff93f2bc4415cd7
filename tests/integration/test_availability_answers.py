"""A doctor's availability, remembered per process, says what the pool says.

The promise (docs/api.md): whatever any process does to a slot (a grant, a unit given back, a
session stopped) shows at once in every process; what changes with time alone (a hold running
out, a slot's start) shows at its instant; a process that lost the pool's channel forgets every
answer. Each test reads through ``AvailabilityAnswers`` with a ticker of its own that stands
still, so "at once" cannot be the answer's age running out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.platform.inventory import RedisInventory
from guahao.platform.persistence.tables import DoctorRow
from guahao.platform.services.availability_answers import AvailabilityAnswers
from tests.fixtures.platforms import (
    SESSION_DAY,
    START,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
    settings_for,
    slot_row,
)

FIRST = SESSION_DAY - timedelta(days=2)
LAST = SESSION_DAY + timedelta(days=4)


class Ticker:
    """The cache's monotonic time, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def view_of(platform: Platform) -> RedisInventory:
    inventory = platform.ports.inventory
    assert isinstance(inventory, RedisInventory)
    return inventory


async def following(platform: Platform, ticker: Ticker, slots: list[str]) -> AvailabilityAnswers:
    """Answers of ``platform``'s process, once it is subscribed. Publishing ``slots``
    announced nothing (a slot new to Redis has nothing remembered anywhere to drop:
    ``RedisInventory.load_missing``), so no late announcement can drop the first answer and
    make a later test pass for the wrong reason."""
    answers = AvailabilityAnswers(
        platform.queries, view_of(platform).sold_out, platform.ports.clock, ticker=ticker
    )
    async with asyncio.timeout(5):
        await view_of(platform).sold_out.subscribed()
    assert slots
    return answers


async def doctor_of(platform: Platform) -> str:
    async with platform.ports.sessions() as session:
        return str((await session.scalars(select(DoctorRow.id))).one())


async def shown(answers: AvailabilityAnswers, doctor_id: str) -> dict[str, int]:
    """Units shown per slot."""
    body = msgspec.json.decode(await answers.answer(doctor_id, start=FIRST, end=LAST))
    return {slot["id"]: slot["available"] for session in body for slot in session["slots"]}


async def heard(platform: Platform, count: int) -> None:
    """Wait (at most 2 s) until the process has heard ``count`` announcements in all."""
    async with asyncio.timeout(2):
        while view_of(platform).sold_out.announcements < count:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.001)


async def taken(platform: Platform, count: int) -> None:
    """Wait (at most 2 s) until the process has heard ``count`` grants announced in all."""
    async with asyncio.timeout(2):
        while view_of(platform).sold_out.takes < count:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.001)


@pytest.fixture
async def other_instance(
    platform: Platform, migrated_database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    """A second app instance on the same database and Redis (another worker of the region)."""
    settings = settings_for(tmp_path / "other", migrated_database_url, redis_url)
    async with open_platform(settings, clock=ManualClock(START), migrate=False) as other:
        async with asyncio.timeout(5):
            await view_of(other).sold_out.subscribed()
        yield other


async def test_repeated_reads_are_answered_from_memory(platform):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    first = await shown(answers, doctor)
    again = await shown(answers, doctor)
    assert first == again
    assert first[slots[0]] == 4
    assert answers.reads == 1
    # the encoded answer is the service's own, byte for byte
    direct = await platform.queries.doctor_availability(doctor, start=FIRST, end=LAST)
    assert await answers.answer(doctor, start=FIRST, end=LAST) == msgspec.json.encode(direct)


async def test_a_grant_in_another_instance_shows_at_once(platform, other_instance):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[0]] == 4
    await hold(other_instance, await new_account(other_instance), slots[0])
    await taken(platform, 1)
    assert (await shown(answers, doctor))[slots[0]] == 3


async def test_grants_on_several_slots_in_one_batch_elsewhere_all_show_at_once(
    platform, other_instance
):
    """Another instance's holds of one loop turn are one script call, announced in one
    message naming each slot (tests/integration/test_inventory_hold_batches.py): every slot
    it names shows its new count."""
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    before = await shown(answers, doctor)
    now_ms = int(START.timestamp() * 1000)
    inventory = view_of(other_instance)
    await asyncio.gather(
        *(
            inventory.hold(
                slot_id,
                hold_id=f"batch-{n}",
                account_id=f"batch-account-{n}",
                now_ms=now_ms,
                ttl_ms=60_000,
                idempotency_key=f"batch-key-{n}",
            )
            for n, slot_id in enumerate(slots[:3])
        )
    )
    await taken(platform, 3)
    after = await shown(answers, doctor)
    assert [after[slot_id] for slot_id in slots[:3]] == [before[s] - 1 for s in slots[:3]]


async def test_a_hold_running_out_shows_at_its_instant(platform, other_instance):
    slots = await publish_clinic(platform)
    await hold(other_instance, await new_account(other_instance), slots[0])
    await taken(platform, 1)  # heard before the first read, so it cannot drop that answer
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[0]] == 3
    manual_clock(platform).advance(minutes=10, seconds=1)  # the clinic's holds last 10 minutes
    assert (await shown(answers, doctor))[slots[0]] == 4


async def test_a_unit_given_back_in_another_instance_shows_at_once(platform, other_instance):
    slots = await publish_clinic(platform)
    account = await new_account(other_instance)
    booking = await hold(other_instance, account, slots[0])
    answers = await following(platform, Ticker(), slots)  # the ticker stands still
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[0]] == 3
    before = view_of(platform).sold_out.announcements
    await other_instance.bookings.leave(account_id=account, booking_id=booking.id)
    await heard(platform, before + 1)
    assert (await shown(answers, doctor))[slots[0]] == 4


async def test_this_instances_own_grant_shows_at_once(platform):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[1]] == 4
    await hold(platform, await new_account(platform), slots[1])
    assert (await shown(answers, doctor))[slots[1]] == 3


async def test_a_session_stopped_in_another_instance_shows_at_once(platform, other_instance):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    assert sum((await shown(answers, doctor)).values()) > 0
    session_id = (await slot_row(platform, slots[0])).session_id
    on_day = [s for s in slots if (await slot_row(platform, s)).session_id == session_id]
    before = view_of(platform).sold_out.announcements
    await other_instance.bookings.stop_session(session_id, reason="停诊")
    await heard(platform, before + len(on_day))
    after = await shown(answers, doctor)
    assert all(after[s] == 0 for s in on_day)


async def test_a_slot_that_starts_stops_counting_at_its_instant(platform):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[0]] == 4
    first_start = (await slot_row(platform, slots[0])).starts_at
    manual_clock(platform).set(first_start + timedelta(seconds=1))
    assert (await shown(answers, doctor))[slots[0]] == 0


async def test_a_lost_subscription_empties_the_cache(platform, redis_url):
    slots = await publish_clinic(platform)
    answers = await following(platform, Ticker(), slots)
    doctor = await doctor_of(platform)
    await shown(answers, doctor)
    assert len(answers) == 1
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.client_kill_filter(_type="pubsub")
    finally:
        await client.aclose()
    async with asyncio.timeout(2):
        while view_of(platform).sold_out.live:  # noqa: ASYNC110 (a flag set by the follower)
            await asyncio.sleep(0.001)
    assert len(answers) == 0
    async with asyncio.timeout(5):
        await view_of(platform).sold_out.subscribed()
    await shown(answers, doctor)  # read afresh from the pool, and kept again
    assert answers.reads == 2
    assert len(answers) == 1

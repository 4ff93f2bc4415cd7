"""A doctor's availability, remembered per process, says what the pool says.

The promise (docs/api.md): whatever any process does to a slot (a grant, a unit given back, a
session stopped) shows at once in every process; what changes with time alone (a hold running
out, a slot's start) shows at its instant; a process that lost the pool's channel forgets every
answer. Each test reads through ``AvailabilityAnswers`` with a ticker of its own that stands
still, so "at once" cannot be the answer's age running out; the refresh tests move it into the
last part of an answer's life, where the first reader starts one read ahead of the expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.platform.hospitals import Period
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.persistence.tables import DoctorRow
from guahao.platform.services.availability_answers import (
    ANSWER_MAX_AGE_SECONDS,
    REFRESH_AHEAD,
    AvailabilityAnswers,
)
from guahao.platform.services.queries import QueryService, SessionAvailability
from tests.fixtures.platforms import (
    SESSION_DAY,
    START,
    clinic,
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


async def following(
    platform: Platform, ticker: Ticker, slots: list[str], queries: QueryService | None = None
) -> AvailabilityAnswers:
    """Answers of ``platform``'s process, once it is subscribed. Publishing ``slots``
    announced nothing (a slot new to Redis has nothing remembered anywhere to drop:
    ``RedisInventory.load_missing``), so no late announcement can drop the first answer and
    make a later test pass for the wrong reason."""
    answers = AvailabilityAnswers(
        queries or platform.queries,
        view_of(platform).sold_out,
        platform.ports.clock,
        ticker=ticker,
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


LATE = ANSWER_MAX_AGE_SECONDS * (REFRESH_AHEAD[1] + 1.0) / 2
"""An age past every answer's refresh point and short of the max age."""


async def publish_afternoon(platform: Platform) -> None:
    """A second session for the clinic's doctor in the week: new slots, which nothing
    announces (the one change an answer learns of only by its age)."""
    spec = clinic()
    afternoon = msgspec.structs.replace(spec.roster[0], period=Period.AFTERNOON)
    spec = msgspec.structs.replace(spec, roster=(afternoon,))
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [SESSION_DAY])
    )


async def answered_then_outdated(
    platform: Platform,
) -> tuple[list[str], Ticker, AvailabilityAnswers, str, bytes]:
    """The clinic's doctor answered, then a session published for it: the answer kept is
    now behind by what only its age bounds (the slots, ticker, answers, doctor and answer)."""
    slots = await publish_clinic(platform)
    ticker = Ticker()
    answers = await following(platform, ticker, slots)
    doctor = await doctor_of(platform)
    old = await answers.answer(doctor, start=FIRST, end=LAST)
    await publish_afternoon(platform)
    return slots, ticker, answers, doctor, old


def periods(body: bytes) -> list[str]:
    return [session["period"] for session in msgspec.json.decode(body)]


async def refreshed(answers: AvailabilityAnswers) -> None:
    """Wait (at most 5 s) until no refresh is under way."""
    async with asyncio.timeout(5):
        while answers.refreshing:  # noqa: ASYNC110 (a count of tasks)
            await asyncio.sleep(0.001)


class PausedReads(QueryService):
    """The platform's own reads, each held after it has read until the test lets it end: a
    step taken elsewhere can then fall between a read's start and its end."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform.ports)
        self.paused = False
        self.waiting = asyncio.Event()
        self.go_on = asyncio.Event()

    async def doctor_availability_until(
        self, doctor_id: str, *, start: date, end: date
    ) -> tuple[list[SessionAvailability], datetime | None]:
        found = await super().doctor_availability_until(doctor_id, start=start, end=end)
        if self.paused:
            self.waiting.set()
            await self.go_on.wait()
        return found


async def test_an_answer_late_in_its_life_is_read_again_once_while_it_is_still_served(platform):
    _slots, ticker, answers, doctor, old = await answered_then_outdated(platform)
    ticker.now += LATE
    served = [answers.remembered(doctor, start=FIRST, end=LAST) for _ in range(20)]
    served += await asyncio.gather(
        *(answers.answer(doctor, start=FIRST, end=LAST) for _ in range(20))
    )
    assert served == [old] * 40  # nobody waits for the refresh, nobody sees a half
    assert answers.refreshes == 1
    await refreshed(answers)
    new = answers.remembered(doctor, start=FIRST, end=LAST)
    assert new is not None
    assert periods(old) == ["morning"]
    assert periods(new) == ["morning", "afternoon"]
    assert answers.reads == 2
    # the refreshed answer's max age counts from its own read: past the old one's, still kept
    ticker.now += ANSWER_MAX_AGE_SECONDS - LATE + 1
    assert answers.remembered(doctor, start=FIRST, end=LAST) == new
    assert answers.reads == 2


async def test_an_answer_read_early_in_its_life_is_not_read_again(platform):
    slots = await publish_clinic(platform)
    ticker = Ticker()
    answers = await following(platform, ticker, slots)
    doctor = await doctor_of(platform)
    await shown(answers, doctor)
    ticker.now += ANSWER_MAX_AGE_SECONDS * REFRESH_AHEAD[0] - 0.1
    await shown(answers, doctor)
    assert answers.refreshing == 0
    assert answers.reads == 1


async def test_a_refresh_whose_read_heard_of_a_grant_is_not_kept(platform, other_instance):
    slots = await publish_clinic(platform)
    ticker = Ticker()
    queries = PausedReads(platform)
    answers = await following(platform, ticker, slots, queries)
    doctor = await doctor_of(platform)
    assert (await shown(answers, doctor))[slots[0]] == 4
    queries.paused = True
    ticker.now += LATE
    assert answers.remembered(doctor, start=FIRST, end=LAST) is not None
    async with asyncio.timeout(5):
        await queries.waiting.wait()  # the refresh has read: 4 units, before the grant
    await hold(other_instance, await new_account(other_instance), slots[0])
    await taken(platform, 1)
    queries.go_on.set()
    await refreshed(answers)
    assert answers.refreshes == 1
    assert len(answers) == 0  # the grant dropped the old answer, and the refresh kept nothing
    assert (await shown(answers, doctor))[slots[0]] == 3
    assert answers.reads == 3


async def test_a_failed_refresh_leaves_the_old_answer_until_its_max_age(
    platform, redis_url, caplog
):
    slots, ticker, answers, doctor, old = await answered_then_outdated(platform)
    # the pool's record of the first slot made unreadable (a key of another type): the
    # counts script fails on it, as a read would on a Redis in trouble; nothing announces it
    meta = KeyNames().family(slots[0])[0]
    client = aioredis.Redis.from_url(redis_url)
    try:
        record = await client.dump(meta)
        assert record is not None
        await client.delete(meta)
        await client.set(meta, "unreadable")
        ticker.now += LATE
        with caplog.at_level(logging.WARNING):
            assert answers.remembered(doctor, start=FIRST, end=LAST) == old
            await refreshed(answers)
        assert "not refreshed" in caplog.text
        assert answers.refreshes == 1
        # the old answer still served, and the failure starts no read per reader
        for _ in range(5):
            assert await answers.answer(doctor, start=FIRST, end=LAST) == old
        assert answers.refreshes == 1
        assert answers.reads == 2
        await client.delete(meta)
        await client.restore(meta, 0, record)
    finally:
        await client.aclose()
    ticker.now += ANSWER_MAX_AGE_SECONDS - LATE
    new = await answers.answer(doctor, start=FIRST, end=LAST)
    assert periods(new) == ["morning", "afternoon"]
    assert answers.reads == 3


async def test_stopping_ends_a_refresh_under_way(platform):
    slots = await publish_clinic(platform)
    ticker = Ticker()
    queries = PausedReads(platform)
    answers = await following(platform, ticker, slots, queries)
    doctor = await doctor_of(platform)
    old = await answers.answer(doctor, start=FIRST, end=LAST)
    queries.paused = True
    ticker.now += LATE
    assert answers.remembered(doctor, start=FIRST, end=LAST) == old
    async with asyncio.timeout(5):
        await queries.waiting.wait()
        await answers.close()
    assert answers.refreshing == 0
    assert answers.remembered(doctor, start=FIRST, end=LAST) == old  # starts no other
    assert answers.refreshing == 0

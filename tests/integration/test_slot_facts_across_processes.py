"""Every process caches each slot's facts, with its hospital's policies, for the hold path;
a policy change made by one process reaches the others through a version in Redis within
``FACTS_REFRESH_SECONDS``, and a read that raced a change is never served afterwards."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import msgspec
import pytest
import redis.asyncio as aioredis

from guahao.bootstrap import Platform, open_platform
from guahao.platform.errors import GuahaoError
from guahao.platform.inventory.fact_versions import RedisFactVersions
from guahao.platform.schedules import HospitalSpec
from guahao.platform.services.runtime import FACTS_REFRESH_SECONDS, SlotFacts, SlotFactsCache
from tests.fixtures.platforms import (
    START,
    booking_row,
    clinic,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
)


@asynccontextmanager
async def second_process(platform: Platform) -> AsyncIterator[Platform]:
    """Another worker of the same deployment: same database, same Redis, same clock."""
    async with open_platform(
        platform.settings, clock=manual_clock(platform), migrate=False, run_jobs=False
    ) as other:
        yield other


def with_hold_minutes(spec: HospitalSpec, minutes: int) -> HospitalSpec:
    return msgspec.structs.replace(
        spec, policies=msgspec.structs.replace(spec.policies, hold_minutes=minutes)
    )


def facts_of(hospital_id: str, slot_id: str = "s1") -> SlotFacts:
    policies = clinic().policies
    return SlotFacts(
        slot_id=slot_id,
        session_id="sess",
        hospital_id=hospital_id,
        timezone="Asia/Shanghai",
        policies=policies,
        starts_at=START,
        ends_at=START + timedelta(minutes=30),
        fee_cents=3000,
    )


async def test_a_policy_change_in_one_process_reaches_the_hold_path_of_another_promptly(
    platform: Platform,
) -> None:
    spec = clinic()
    slots = await publish_clinic(platform, spec)
    async with second_process(platform) as other:
        assert (await other.bookings.slot_facts(slots[0])).policies.hold_minutes == 10

        await platform.supply.register_hospital(with_hold_minutes(spec, 5))
        changed = time.monotonic()
        while (await other.bookings.slot_facts(slots[0])).policies.hold_minutes != 5:
            assert time.monotonic() - changed < FACTS_REFRESH_SECONDS + 0.5, "still stale"
            await asyncio.sleep(0.02)

        booking = await hold(other, await new_account(other), slots[0])
        row = await booking_row(platform, booking.id)
        assert row.hold_expires_at == manual_clock(platform).now() + timedelta(minutes=5)


async def test_a_read_that_raced_a_change_is_not_kept(redis_client: aioredis.Redis) -> None:
    here = SlotFactsCache(versions=RedisFactVersions(redis_client), refresh_seconds=0)
    there = SlotFactsCache(versions=RedisFactVersions(redis_client), refresh_seconds=0)
    await here.refresh()
    began = here.generation  # this process starts reading the slot's row ...
    await there.hospital_changing("h1")  # ... while another changes the hospital
    await here.refresh()

    here.put(facts_of("h1"), began)
    assert here.get("s1") is None  # the old row is not served

    here.put(facts_of("h1"), here.generation)  # a read begun after the change is kept
    assert here.get("s1") == facts_of("h1")
    here.put(facts_of("h2", "s2"), began)  # other hospitals are not affected
    assert here.get("s2") == facts_of("h2", "s2")


async def test_the_cache_is_dropped_when_the_versions_cannot_be_read() -> None:
    with socket.socket() as probe:  # a port nobody listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    cache = SlotFactsCache(versions=RedisFactVersions(down), refresh_seconds=0)
    cache.put(facts_of("h1"), cache.generation)
    try:
        await cache.refresh()
        assert cache.get("s1") is None
        with pytest.raises(GuahaoError) as refused:
            await cache.hospital_changing("h1")
        assert refused.value.code == "INVENTORY_UNAVAILABLE"
    finally:
        await down.aclose()


def test_the_cache_keeps_a_bounded_number_of_slots() -> None:
    cache = SlotFactsCache(capacity=2)
    for n in range(3):
        cache.put(facts_of("h1", f"s{n}"), cache.generation)
    assert len(cache) == 2
    assert cache.get("s0") is None  # the least recently used went first
    assert cache.get("s2") is not None


def test_facts_older_than_the_maximum_age_are_read_again() -> None:
    cache = SlotFactsCache(max_age_seconds=0.0)
    cache.put(facts_of("h1"), cache.generation)
    assert cache.get("s1") is None


async def test_one_miss_reads_the_facts_of_every_slot_of_its_session(platform: Platform) -> None:
    from sqlalchemy import select

    from guahao.platform.persistence.tables import SlotRow

    slots = await publish_clinic(platform)
    first = await platform.bookings.slot_facts(slots[0])
    async with platform.ports.sessions() as session:
        siblings = (
            await session.scalars(
                select(SlotRow.id).where(
                    SlotRow.session_id == first.session_id, SlotRow.id != slots[0]
                )
            )
        ).all()
    assert siblings
    for slot_id in siblings:
        cached = platform.ports.slot_facts.get(slot_id)
        assert cached is not None
        assert cached.session_id == first.session_id
        assert cached.policies == first.policies
        assert cached.starts_at > first.starts_at
    assert all(
        platform.ports.slot_facts.get(s) is None
        for s in slots
        if s not in siblings and s != slots[0]
    )
    with pytest.raises(GuahaoError) as missing:
        await platform.bookings.slot_facts("no-such-slot")
    assert missing.value.code == "SLOT_NOT_FOUND"

"""Live availability reaches every worker process: each process's hub holds one Redis
subscription, and a change published anywhere (an outbox event, a page's hold) reaches the
listeners of every hub that shows that session, and only those."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.web.pages.live_availability import AvailabilityHub


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_change_reaches_the_listeners_of_every_process(redis: aioredis.Redis) -> None:
    first, second = AvailabilityHub(redis), AvailabilityHub(redis)  # two worker processes
    try:
        async with (
            first.listen(frozenset({"s1"})) as here,
            second.listen(frozenset({"s1", "s2"})) as there,
            second.listen(frozenset({"s9"})) as elsewhere,
        ):
            await AvailabilityFeed(redis).changed(["s1"])
            async with asyncio.timeout(5):
                assert await here.get() == "s1"
                assert await there.get() == "s1"
            await asyncio.sleep(0.1)
            assert elsewhere.empty()
    finally:
        await first.stop()
        await second.stop()


async def test_booking_events_publish_the_session_they_touch(redis: aioredis.Redis) -> None:
    hub = AvailabilityHub(redis)
    try:
        async with hub.listen(frozenset({"session-7"})) as changes:
            event = OutboxEvent(
                id=1,
                topic="booking.held",
                aggregate_id="b1",
                payload={"session_id": "session-7", "slot_id": "x"},
                created_at=datetime.now(UTC),
            )
            await AvailabilityFeed(redis).on_event(event)
            async with asyncio.timeout(5):
                assert await changes.get() == "session-7"
    finally:
        await hub.stop()


async def test_a_run_of_events_publishes_each_session_it_touches_once(
    redis: aioredis.Redis,
) -> None:
    hub = AvailabilityHub(redis)
    try:
        async with hub.listen(frozenset({"s1", "s2", "s3"})) as changes:
            events = [
                OutboxEvent(
                    id=i,
                    topic=topic,
                    aggregate_id=f"b{i}",
                    payload=payload,
                    created_at=datetime.now(UTC),
                )
                for i, (topic, payload) in enumerate(
                    [
                        ("booking.held", {"session_id": "s1"}),
                        ("booking.confirmed", {"session_id": "s2"}),
                        ("account.created", {}),
                        ("booking.cancelled_by_patient", {"session_id": "s1"}),
                        ("session.stopped", {"session_id": "s3"}),
                    ]
                )
            ]
            await AvailabilityFeed(redis).on_events(events)
            async with asyncio.timeout(5):
                heard = {await changes.get() for _ in range(3)}
            assert heard == {"s1", "s2", "s3"}
            await asyncio.sleep(0.1)
            assert changes.empty()  # s1 once, though two events touched it
    finally:
        await hub.stop()

"""Outbox delivery at surge rates: runs of events in one call, backlogs drained in one job run,
and several dispatchers at once (two job workers) never delivering an event twice at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select, text

from guahao.bootstrap import Platform
from guahao.platform.persistence.outbox import (
    ADVISORY_LOCK_CLASS,
    OutboxDispatcher,
    OutboxEvent,
)
from guahao.platform.persistence.tables import OutboxRow
from tests.fixtures.platforms import held_with_patient, publish_clinic
from tests.integration.test_outbox import Recorder, pending_rows


async def booking_event_ids(platform: Platform) -> list[int]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxRow.id)
                    .where(OutboxRow.topic.startswith("booking."))
                    .order_by(OutboxRow.id)
                )
            ).all()
        )


async def bookings_left(platform: Platform, count: int) -> list[str]:
    """``count`` holds with a patient chosen, then left: three events each."""
    slots = await publish_clinic(platform)
    left = []
    for i in range(count):
        account, _, booking = await held_with_patient(platform, slots[i % len(slots)])
        await platform.bookings.leave(account_id=account, booking_id=booking)
        left.append(booking)
    return left


def dispatcher_of(platform: Platform) -> OutboxDispatcher:
    """A second dispatcher on the same database, as another job worker process has."""
    return OutboxDispatcher(platform.ports.sessions, platform.ports.clock)


async def test_two_dispatchers_at_once_deliver_each_event_once(platform: Platform) -> None:
    await bookings_left(platform, 3)
    seen: Counter[int] = Counter()
    first_seen = asyncio.Event()
    release = asyncio.Event()

    async def slow(event: OutboxEvent) -> None:
        seen[event.id] += 1
        first_seen.set()
        await release.wait()  # a slow receiver (a HIS over the network)

    workers = [dispatcher_of(platform), dispatcher_of(platform)]
    for worker in workers:
        worker.subscribe("booking.", slow, name="slow-his", starts_at="beginning")
        await worker.start()
    running = asyncio.create_task(workers[0].dispatch_pending())
    await asyncio.wait_for(first_seen.wait(), 10)

    await workers[1].dispatch_pending()  # the other worker's tick while the first delivers
    if platform.engine.dialect.name == "postgresql":
        # the claim is the server's, so it holds for processes too: another connection is
        # refused the subscriber's advisory lock while the round runs
        async with platform.engine.connect() as connection:
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:kind, hashtext(:name))"),
                {"kind": ADVISORY_LOCK_CLASS, "name": "slow-his"},
            )
        assert taken is False
    release.set()
    await running
    await workers[1].dispatch_pending()

    assert sorted(seen) == await booking_event_ids(platform)
    assert set(seen.values()) == {1}


async def test_one_job_run_drains_a_backlog_many_batches_long(platform: Platform) -> None:
    await bookings_left(platform, 4)
    recorder = Recorder()
    platform.dispatcher.subscribe("booking.", recorder, name="recorder", starts_at="beginning")

    await platform.dispatcher.dispatch_pending(limit=5)

    assert sorted(e.id for e in recorder.seen) == await booking_event_ids(platform)
    for topics in recorder.by_aggregate().values():  # each booking's events in their order
        assert topics == ["booking.held", "booking.patient_chosen", "booking.abandoned"]
    assert await pending_rows(platform) == []


async def test_runs_of_events_reach_the_batch_entry_point_in_order(platform: Platform) -> None:
    left = await bookings_left(platform, 3)
    recorder = Recorder()
    calls: list[int] = []

    async def batch(events: Sequence[OutboxEvent]) -> None:
        calls.append(len(events))
        for event in events:
            await recorder(event)

    platform.dispatcher.subscribe(
        "booking.", recorder, name="recorder", starts_at="beginning", batch=batch
    )
    await platform.dispatcher.dispatch_pending()

    assert calls == [9]  # one call for the whole run
    assert recorder.by_aggregate() == {
        b: ["booking.held", "booking.patient_chosen", "booking.abandoned"] for b in left
    }


async def test_a_failing_batch_is_delivered_one_by_one_and_parks_only_its_culprit(
    platform: Platform,
) -> None:
    stuck, flowing, _ = await bookings_left(platform, 3)
    recorder = Recorder()
    recorder.failing.add((stuck, "booking.patient_chosen"))
    batches: list[int] = []

    async def batch(events: Sequence[OutboxEvent]) -> None:
        batches.append(len(events))
        for event in events:
            await recorder(event)

    platform.dispatcher.subscribe(
        "booking.", recorder, name="recorder", starts_at="beginning", batch=batch
    )
    await platform.dispatcher.dispatch_pending()

    assert batches == [9]
    history = recorder.by_aggregate()
    # after the failed batch, one by one: the culprit parks and its booking's later event
    # waits behind it; every other booking is delivered whole
    assert history[flowing][-3:] == ["booking.held", "booking.patient_chosen", "booking.abandoned"]
    assert history[stuck][-2:] == ["booking.held", "booking.patient_chosen"]
    pending = await pending_rows(platform)
    assert [(r.aggregate_id, r.topic) for r in pending] == [
        (stuck, "booking.patient_chosen"),
        (stuck, "booking.abandoned"),
    ]
    assert pending[0].attempts == 1

    recorder.failing.clear()
    recorder.seen.clear()
    await platform.dispatcher.dispatch_pending()

    assert recorder.by_aggregate() == {stuck: ["booking.patient_chosen", "booking.abandoned"]}
    assert await pending_rows(platform) == []

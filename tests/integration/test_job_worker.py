"""The job worker for real: a platform opened with ``run_jobs=True`` runs its jobs on saq in
this process (SQLite and the session's Redis), with no test calling a service step itself.

The platform's clock is a ``ManualClock`` at ``START`` (March 2026), so every ``at`` the
services hand the queue lies in the real past: saq treats such a job as due and runs it at its
next scheduling poll (within ~1 s). A job that runs before the manual clock reaches its
deadline finds nothing to do and completes; its key is then free to be scheduled again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.bootstrap import Platform, open_platform
from guahao.platform.bookings import PAYMENT_GRACE
from guahao.platform.clock import ManualClock
from guahao.platform.persistence.tables import NotificationRow, OutboxRow, RefundRow
from tests.fixtures.platforms import (
    START,
    booking_row,
    confirmed_booking,
    held_with_patient,
    manual_clock,
    publish_clinic,
    settings_for,
)

pytestmark = pytest.mark.timeout(60)

SWEEP_EVERY = 15
"""Seconds between the worker's ``sweep`` cron runs (``* * * * * */15``), which would also
expire holds and pay refunds; tests that want to see *their* job do the work keep clear of it."""


@pytest.fixture
async def worker_platform(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    settings = msgspec.structs.replace(settings_for(tmp_path, sqlite_url, redis_url), run_jobs=True)
    async with open_platform(settings, clock=ManualClock(START)) as platform:
        yield platform


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"still not done after {within} s")
        await asyncio.sleep(0.1)


async def job_done(platform: Platform, key: str, *, within: float = 10.0) -> Any:
    """The saq job of ``key`` once it has completed."""

    async def done() -> Any:
        job = await platform.jobs.queue.job(key)
        return job if job is not None and job.status == "complete" else None

    return await eventually(done, within=within)


async def clear_of_the_sweep(margin: float = 4.0) -> None:
    """Wait, if need be, until the next ``sweep`` cron run is at least ``margin`` s away."""
    to_next = SWEEP_EVERY - time.time() % SWEEP_EVERY
    if to_next < margin:
        await asyncio.sleep(to_next + 2.0)  # past the boundary and the sweep's own run


async def test_an_expire_booking_job_expires_a_hold_whose_time_ran_out(worker_platform):
    platform = worker_platform
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    _, _, booking_id = await held_with_patient(platform, slots[0])
    key = f"expire:{booking_id}:held"
    expires = (await booking_row(platform, booking_id)).hold_expires_at

    # The hold scheduled the expiry of its second at START + 10 min: long past in real time,
    # so saq runs it at once, while the manual clock still says the hold is live; it leaves it.
    early = await job_done(platform, f"expire-due:{int(expires.timestamp())}")
    assert early.result == 0
    assert early.function == "expire_due_bookings"
    assert (await booking_row(platform, booking_id)).status == "patient_chosen"

    await clear_of_the_sweep()
    clock.advance(minutes=11)  # hold_minutes is 10
    await platform.jobs.schedule("expire_booking", key=key, at=clock.now(), booking_id=booking_id)

    async def expired() -> bool:
        return bool((await booking_row(platform, booking_id)).status == "expired")

    await eventually(expired)
    job = await job_done(platform, key)
    assert job.result is True  # this job expired it, not the periodic sweep
    assert job.function == "expire_booking"


async def test_a_payment_deadline_is_expired_by_its_seconds_job_not_one_of_its_own(
    worker_platform,
):
    platform = worker_platform
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    account_id, _, booking_id = await held_with_patient(platform, slots[0])
    await platform.bookings.submit(account_id=account_id, booking_id=booking_id, channel="self_pay")
    row = await booking_row(platform, booking_id)
    assert row.status == "awaiting_payment"
    assert row.payment_expires_at is not None
    held_until = row.payment_expires_at + PAYMENT_GRACE
    key = f"expire-due:{int(held_until.timestamp())}"

    # The submit scheduled its deadline's second (in the real past: run at once, too early for
    # the manual clock, so it leaves the booking), and no job of the booking's own.
    early = await job_done(platform, key)
    assert (early.function, early.result) == ("expire_due_bookings", 0)
    assert await platform.jobs.queue.job(f"expire:{booking_id}:payment") is None
    assert (await booking_row(platform, booking_id)).status == "awaiting_payment"

    await clear_of_the_sweep()
    clock.set(held_until)
    await platform.jobs.schedule("expire_due_bookings", key=key, at=clock.now())
    done = await job_done(platform, key)
    assert done.result == 1  # this job expired it, not the periodic sweep
    assert (await booking_row(platform, booking_id)).status == "expired"


async def test_the_outbox_cron_delivers_events_without_anyone_calling_the_dispatcher(
    worker_platform,
):
    platform = worker_platform
    slots = await publish_clinic(platform)
    account_id, booking_id, _ = await confirmed_booking(platform, slots[0])

    async def notified() -> list[NotificationRow]:
        async with platform.ports.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(NotificationRow).where(
                            NotificationRow.account_id == account_id,
                            NotificationRow.template == "booking.confirmed",
                        )
                    )
                ).all()
            )

    started = time.monotonic()
    [message] = await eventually(notified, within=10.0)
    assert message.params["booking_id"] == booking_id
    assert time.monotonic() - started < 5.0  # the cron runs every 2 s

    async def all_dispatched() -> bool:
        async with platform.ports.sessions() as session:
            pending = await session.scalars(
                select(OutboxRow.id).where(OutboxRow.dispatched_at.is_(None))
            )
            return not pending.all()

    await eventually(all_dispatched)


async def test_a_refund_job_pays_back_a_cancelled_paid_booking(worker_platform):
    platform = worker_platform
    slots = await publish_clinic(platform)
    account_id, booking_id, order = await confirmed_booking(platform, slots[0])
    assert order is not None

    await clear_of_the_sweep()
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    async with platform.ports.sessions() as session:
        [refund] = (
            await session.scalars(select(RefundRow).where(RefundRow.booking_id == booking_id))
        ).all()

    async def refunded() -> RefundRow | None:
        async with platform.ports.sessions() as session:
            row = await session.get(RefundRow, refund.refund_no)
            return row if row is not None and row.status == "succeeded" else None

    row = await eventually(refunded)
    assert row.order_no == order.order_no
    assert row.attempts == 1
    job = await job_done(platform, f"refund:{refund.refund_no}")
    assert job.result is True  # the job paid it, not the sweep

"""The job worker with its queue on a Redis Cluster: saq's scripts, transactions and blocking
moves all on the shard of the queue's hash tag ``{guahao}``, cron jobs included.

A platform opened with ``run_jobs=True`` on the cluster (SQLite): a cancelled paid booking's
refund job runs and completes, and the outbox cron delivers its events with nobody calling
the dispatcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import select

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.platform.persistence.tables import OutboxRow, RefundRow
from guahao.platform.redis_pools import cluster_node_url
from tests.fixtures.platforms import START, confirmed_booking, publish_clinic, settings_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def worker_platform(
    sqlite_url: str, redis_cluster_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    client = RedisCluster.from_url(cluster_node_url(redis_cluster_url))
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    await client.aclose()
    settings = msgspec.structs.replace(
        settings_for(tmp_path, sqlite_url, redis_cluster_url), run_jobs=True
    )
    async with open_platform(settings, clock=ManualClock(START)) as platform:
        yield platform


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"still not done after {within} s")
        await asyncio.sleep(0.1)


async def test_jobs_and_cron_jobs_run_with_the_queue_on_a_cluster(
    worker_platform: Platform,
) -> None:
    platform = worker_platform
    slots = await publish_clinic(platform)
    account_id, booking_id, order = await confirmed_booking(platform, slots[0])
    assert order is not None
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    async with platform.ports.sessions() as session:
        [refund] = (
            await session.scalars(select(RefundRow).where(RefundRow.booking_id == booking_id))
        ).all()

    async def refunded() -> bool:
        async with platform.ports.sessions() as session:
            row = await session.get(RefundRow, refund.refund_no)
            return row is not None and row.status == "succeeded"

    async def refund_job_done() -> bool:
        queue = platform.jobs.queue
        job = await queue.job(f"{queue.name}refund:{refund.refund_no}")
        return job is not None and job.status == "complete"

    async def all_dispatched() -> bool:  # by the outbox cron: no test calls the dispatcher
        async with platform.ports.sessions() as session:
            pending = await session.scalars(
                select(OutboxRow.id).where(OutboxRow.dispatched_at.is_(None))
            )
            return not pending.all()

    await _eventually(refunded)
    await _eventually(refund_job_done)
    await _eventually(all_dispatched)

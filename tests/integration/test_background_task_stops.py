"""Background loops that talk to Redis end when cancelled, even when the cancel lands while a
command is being sent (Python 3.11's ``asyncio.wait_for``, which redis-py wraps every write
in, drops a cancellation that arrives in the same loop turn as the write finishes).

A publish of the bench hung for good at the platform's shutdown that way: the shared clock's
calibration loop lost the cancel and slept on, and the shutdown awaited it forever."""

from __future__ import annotations

import asyncio
import random

from guahao.platform.clock import SystemClock
from guahao.platform.inventory.sold_out_view import SoldOutView
from guahao.platform.redis_pools import shared_client
from guahao.platform.shared_clock import RedisTime, SharedClock

ROUNDS = 300


async def test_the_clock_loop_ends_when_cancelled_mid_command(redis_url: str) -> None:
    """Without the fix about one cancel in a few dozen is lost here and the loop never ends."""
    client = shared_client(redis_url, max_connections=10, timeout=5)
    rng = random.Random(7)
    try:
        for round_ in range(ROUNDS):
            clock = SharedClock(SystemClock(), RedisTime(client), interval_seconds=0.0005)
            task = asyncio.create_task(clock.run())
            await asyncio.sleep(rng.random() * 0.005)  # some rounds land mid-``TIME``
            task.cancel()  # what a plain shutdown does: one cancel
            done, _ = await asyncio.wait([task], timeout=2)
            if not done:
                task.cancel()  # let the test end
                raise AssertionError(f"round {round_}: the clock loop ran on after its cancel")
            assert task.cancelled()
    finally:
        await client.aclose()


async def test_the_sold_out_view_stops(redis_url: str) -> None:
    client = shared_client(redis_url, max_connections=10, timeout=5)
    try:
        for _ in range(20):
            view = SoldOutView("returns-test", size=10, takes_channel="takes-test")
            view.start(client)
            async with asyncio.timeout(5):
                await view.subscribed()
                await view.stop()
    finally:
        await client.aclose()

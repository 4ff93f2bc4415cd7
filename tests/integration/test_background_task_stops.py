"""Background loops that talk to Redis end when cancelled, even when the cancel lands while a
command is being sent (Python 3.11's ``asyncio.wait_for``, which redis-py wraps every write
in, drops a cancellation that arrives in the same loop turn as the write finishes).

A publish of the bench hung for good at the platform's shutdown that way: the shared clock's
calibration loop lost the cancel and slept on, and the shutdown awaited it forever."""

from __future__ import annotations

import asyncio
import contextlib
import random

from guahao.hospital_connectors.mllp import MllpServer, Peer, frame, read_frame
from guahao.platform.clock import SystemClock
from guahao.platform.inventory.sold_out_view import SoldOutView
from guahao.platform.redis_pools import shared_client
from guahao.platform.shared_clock import RedisTime, SharedClock
from guahao.web.pages.live_availability import AvailabilityHub

ROUNDS = 300
MESSAGE = "MSH|^~\\&|HIS|h1|GH|GH|20261206||SIU^S12|1|P|2.5\r"
ACK = "MSH|^~\\&|GH|GH|HIS|h1|20261206||ACK|1|P|2.5\rMSA|AA|1\r"


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


async def test_the_availability_hub_ends_when_stopped_mid_subscribe(redis_url: str) -> None:
    """The pages' one subscription per process: stopped at random instants of its start
    (its subscribe is a socket write in ``wait_for``), it always ends."""
    client = shared_client(redis_url, max_connections=10, timeout=5)
    rng = random.Random(5)
    try:
        for round_ in range(40):
            hub = AvailabilityHub(client)
            starting = asyncio.create_task(hub.start())
            await asyncio.sleep(rng.random() * 0.004)
            stopping = asyncio.create_task(hub.stop())
            done, _ = await asyncio.wait([stopping], timeout=2)
            starting.cancel()
            if not done:
                stopping.cancel()
                raise AssertionError(f"round {round_}: the hub ran on after stop")
            await asyncio.wait([starting])
    finally:
        await client.aclose()


async def test_an_mllp_server_stop_ends_every_connection_before_it_returns() -> None:
    """A hospital streaming messages as the platform shuts down: no connection may hand a
    message to the platform once ``stop`` has returned (its database is closed next)."""
    handled = in_hand = 0
    stopped = False
    late: list[bytes] = []

    async def handler(message: bytes, peer: Peer) -> str:
        nonlocal handled, in_hand
        handled += 1
        if stopped:
            late.append(message)
        in_hand += 1
        try:
            await asyncio.sleep(0.002)  # the platform records the message
        finally:
            in_hand -= 1
        return ACK

    server = MllpServer(handler)
    port = await server.start()

    async def hospital() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                writer.write(frame(MESSAGE))
                await writer.drain()
                if await read_frame(reader) is None:
                    return
        writer.close()

    senders = [asyncio.create_task(hospital()) for _ in range(4)]
    try:
        async with asyncio.timeout(5):
            while handled < 40:  # noqa: ASYNC110 (a count, no event)
                await asyncio.sleep(0.001)
            await server.stop()
        stopped = True
        assert in_hand == 0  # no message half-handled behind the platform's back
        await asyncio.sleep(0.05)
        assert late == []
    finally:
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

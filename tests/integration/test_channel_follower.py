"""The channel follower shared by the sold-out view and the search index's generation: it
reconnects by itself after Redis comes back, tells its owner to resynchronise, and ends for
sure when stopped, whatever it was sending to Redis at the time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from guahao.platform.channel_follower import ChannelFollower
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.redis_pools import shared_client


class Heard:
    """A listener that writes down what it was told, in order."""

    def __init__(self) -> None:
        self.told: list[str] = []
        self.changed = asyncio.Event()

    def following(self) -> None:
        self._note("following")

    def message(self, channel: str, data: str) -> None:
        self._note(f"{channel}:{data}")

    def lost(self) -> None:
        self._note("lost")

    def _note(self, what: str) -> None:
        self.told.append(what)
        self.changed.set()

    async def until(self, what: str, *, count: int = 1) -> None:
        async with asyncio.timeout(10):
            while self.told.count(what) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test alone (the shared session Redis must never be stopped), on a
    socket of its own so that it can be stopped and started again at the same address."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_redis_restart_mid_follow_is_recovered_and_the_owner_told_to_resynchronise(
    own_redis: EmbeddedRedis,
) -> None:
    client: aioredis.Redis = aioredis.Redis.from_url(own_redis.url)
    heard = Heard()
    follower = ChannelFollower(["returns", "takes"], heard, name="test-follower")
    try:
        follower.start(client)
        await heard.until("following")
        await client.publish("takes", "s1")
        await heard.until("takes:s1")

        await asyncio.to_thread(own_redis.stop)  # published meanwhile would be lost
        await heard.until("lost")
        await asyncio.to_thread(own_redis.start)

        await heard.until("following", count=2)  # subscribed again by itself: resynchronise
        await client.publish("returns", "s2")
        await heard.until("returns:s2")
        assert heard.told[0] == "following"
        assert heard.told.index("lost") < heard.told.index("following", 1)
    finally:
        await follower.stop()
        await client.aclose()
    assert not follower.running


async def test_the_owner_hears_nothing_after_stop(redis_url: str) -> None:
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    heard = Heard()
    follower = ChannelFollower(["quiet-after-stop"], heard, name="test-follower")
    try:
        follower.start(client)
        await heard.until("following")
        await follower.stop()
        told = list(heard.told)
        await client.publish("quiet-after-stop", "late")
        await asyncio.sleep(0.05)
        assert heard.told == told
    finally:
        await client.aclose()


async def test_a_follower_stopped_mid_command_ends(redis_url: str) -> None:
    """Stopped at random instants of its start (a subscribe is a socket write that Python
    3.11's ``wait_for`` wraps: a cancel landing as it finishes is lost), it always ends."""
    client = shared_client(redis_url, max_connections=10, timeout=5)
    rng = random.Random(11)
    try:
        for round_ in range(40):
            follower = ChannelFollower(["stops"], Heard(), name="test-follower")
            follower.start(client)
            await asyncio.sleep(rng.random() * 0.004)
            stopping = asyncio.create_task(follower.stop())
            done, _ = await asyncio.wait([stopping], timeout=2)
            if not done:
                stopping.cancel()
                raise AssertionError(f"round {round_}: the follower ran on after stop")
            await stopping
    finally:
        await client.aclose()

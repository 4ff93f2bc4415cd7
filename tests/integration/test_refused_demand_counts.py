"""Unmet demand reaches Redis as distinct accounts per session, on one server and a cluster:
a worker's whole second of refusals in one flush, more accounts than one Lua call can
unpack at once, each session's count kept for the sweep and the session marked to fold."""

from __future__ import annotations

import redis.asyncio as aioredis

from guahao.platform.refused_demand import (
    DIRTY_KEY,
    KEY_TTL_SECONDS,
    RefusedDemandCounter,
    refused_key,
)


async def test_a_second_of_refusals_is_counted_as_distinct_accounts_per_session(
    slot_pool_redis: aioredis.Redis,
) -> None:
    counter = RefusedDemandCounter(slot_pool_redis, flush_seconds=3600)
    for _attempt in range(2):  # everyone presses twice: one person each
        for n in range(12_000):
            counter.note("crowded", f"account-{n}")
    for n in range(3):
        counter.note("quiet", f"account-{n}")
    assert await counter.flush() == 2
    crowded = await slot_pool_redis.pfcount(refused_key("crowded"))
    assert abs(crowded - 12_000) <= 12_000 * 0.02  # a HyperLogLog's error is under 1 %
    assert await slot_pool_redis.pfcount(refused_key("quiet")) == 3
    for session in ("crowded", "quiet"):
        assert 0 < await slot_pool_redis.ttl(refused_key(session)) <= KEY_TTL_SECONDS
    assert await slot_pool_redis.smembers(DIRTY_KEY) == {b"crowded", b"quiet"}
    assert await counter.flush() == 0  # nothing new: nothing sent


async def test_a_flush_that_cannot_reach_redis_drops_the_count_and_raises_nothing(
    redis_url: str,
) -> None:
    gone = aioredis.Redis.from_url(redis_url.rsplit(":", 1)[0] + ":1")  # nobody listens
    counter = RefusedDemandCounter(gone, flush_seconds=3600)
    counter.note("s1", "a1")
    try:
        assert await counter.flush() == 0
    finally:
        await gone.aclose()

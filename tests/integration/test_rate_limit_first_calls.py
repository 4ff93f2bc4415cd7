"""A counter's first call to Redis: at a release every grant is by a citizen who holds once,
so its account's counters are new to Redis, and ``add_to_windows.lua`` creates each in one
command (``SET ... NX``) instead of asking first. A counter another process already counted
(or this one, before forgetting it) takes the usual way: its hits are added to the window,
which shifts as the library's does, never set anew."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from guahao.platform.rate_limiting import RequestLimiter
from tests.fixtures.limit_windows import window_stats


@pytest.fixture
async def limiters(redis_url: str) -> AsyncIterator[tuple[RequestLimiter, RequestLimiter]]:
    """Two processes' limiters on one Redis, under a key prefix of this test's own."""
    prefix = f"first-calls-{secrets.token_hex(4)}"
    pair = (
        RequestLimiter(redis_url, key_prefix=prefix),
        RequestLimiter(redis_url, key_prefix=prefix),
    )
    try:
        yield pair
    finally:
        for limiter in pair:
            await limiter.close()


async def _commands(redis_url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(found["calls"]) for name, found in stats.items()}


async def _hits(limiter: RequestLimiter, spec: str, ident: str, times: int) -> None:
    for _ in range(times):
        await limiter.hit([("first:test", spec, ident)])


async def test_a_new_citizens_counters_reach_redis_in_one_command_each(
    limiters: tuple[RequestLimiter, RequestLimiter], redis_url: str
) -> None:
    """Two windows (a minute's and an hour's), two commands in all: no PTTL of a key that is
    not there, no GET of a previous window a new key cannot have."""
    limiter, _ = limiters
    await _hits(limiter, "30/minute;300/hour", "new-citizen", 1)
    before = await _commands(redis_url)
    await limiter.sync()
    after = await _commands(redis_url)
    ran = {name: after.get(name, 0) - before.get(name, 0) for name in ("set", "pttl", "get")}
    assert ran == {"set": 2, "pttl": 0, "get": 0}
    for window in ("30/minute", "300/hour"):
        stats = await window_stats(limiter, window, "first:test", "new-citizen")
        assert stats.remaining == int(window.split("/")[0]) - 1


async def test_a_first_call_for_a_counter_another_process_counted_adds_to_it(
    limiters: tuple[RequestLimiter, RequestLimiter],
) -> None:
    """(A counter never heard from Redis admits one hit from memory: its first call is a
    sync of that one hit.)"""
    first, second = limiters
    await _hits(first, "30/minute", "spread", 5)
    await first.sync()
    await _hits(second, "30/minute", "spread", 1)  # new to the second process
    await second.sync()
    (counter,) = second._counters["first:test", "30/minute", "spread"]
    assert second._views.known[counter] == 6
    assert (await window_stats(second, "30/minute", "first:test", "spread")).remaining == 24


async def test_a_first_call_after_the_window_passed_shifts_it_as_the_library_does(
    limiters: tuple[RequestLimiter, RequestLimiter], redis_url: str
) -> None:
    """Ten hits by one process in a second's window, then one by another, new to it, after
    the window: the ten move to the previous window, the one starts the current one."""
    first, second = limiters
    await _hits(first, "100/second", "shifting", 10)
    await first.sync()
    await asyncio.sleep(1.1)
    await _hits(second, "100/second", "shifting", 1)
    await second.sync()
    (counter,) = second._counters["first:test", "100/second", "shifting"]
    views = second._views
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert int(await client.get(views.previous(counter))) == 10
        assert int(await client.get(views.current[counter])) == 1
        assert 0 < await client.pttl(views.previous(counter)) <= 1_000
        assert 1_000 < await client.pttl(views.current[counter]) <= 2_000
    finally:
        await client.aclose()
    assert 1 <= views.known[counter] <= 11  # the ten weighed by the previous window's time left

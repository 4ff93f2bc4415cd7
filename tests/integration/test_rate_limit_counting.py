"""The limiter counts with the ``limits`` library's own sliding-window script, sent through
the automatic pipeline: what it counts is what the library reads back (the same keys), a
crowd's checks made in one loop turn all count, and one client past its limit is refused."""

from __future__ import annotations

import asyncio

import pytest

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.rate_limiting import RequestLimiter
from tests.fixtures.limit_windows import window_stats


def _limiter(platform: Platform) -> RequestLimiter:
    limiter = platform.ports.limiter
    assert isinstance(limiter, RequestLimiter)
    return limiter


async def test_the_library_reads_back_what_the_pipeline_counted(platform: Platform) -> None:
    limiter = _limiter(platform)
    await limiter.hit([("count:readback", "5/minute", "client-a")])
    await limiter.hit([("count:readback", "5/minute", "client-a")])
    await limiter.sync()  # hits admitted from the process's memory reach Redis at its sync
    stats = await window_stats(limiter, "5/minute", "count:readback", "client-a")
    assert stats.remaining == 3


async def test_a_crowd_in_one_loop_turn_is_counted_once_each_and_the_excess_refused(
    platform: Platform,
) -> None:
    limiter = _limiter(platform)
    outcomes = await asyncio.gather(
        *(limiter.hit([("count:crowd", "40/minute", "one-address")]) for _ in range(50)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, GuahaoError)]
    assert len(refused) == 10
    assert {o.code for o in refused} == {"RATE_LIMITED"}
    assert all(o is None for o in outcomes if not isinstance(o, GuahaoError))
    with pytest.raises(GuahaoError) as still:
        await limiter.hit([("count:crowd", "40/minute", "one-address")])
    assert still.value.detail["limit"] == "count:crowd"
    # other clients are counted apart
    await limiter.hit([("count:crowd", "40/minute", "another-address")])

"""The request limiter on a Redis Cluster: counts routed by their keys' hash tag through the
automatic pipeline, read back by the library's cluster storage, the excess refused."""

from __future__ import annotations

import asyncio

import pytest

from guahao.platform.errors import GuahaoError
from guahao.platform.rate_limiting import RequestLimiter
from tests.fixtures.limit_windows import window_stats


async def test_counts_on_a_cluster_are_read_back_and_the_excess_refused(
    redis_cluster_url: str,
) -> None:
    limiter = RequestLimiter(redis_cluster_url, key_prefix="cluster-limits")
    try:
        await _crowd_on(limiter)
    finally:
        await limiter.close()


async def _crowd_on(limiter: RequestLimiter) -> None:
    clients = [f"address-{n}" for n in range(6)]  # several counters, several shards
    outcomes = await asyncio.gather(
        *(limiter.hit([("cluster:crowd", "5/minute", c)]) for c in clients for _ in range(7)),
        return_exceptions=True,
    )
    unexpected = [o for o in outcomes if isinstance(o, BaseException)]
    unexpected = [o for o in unexpected if not isinstance(o, GuahaoError)]
    assert not unexpected, unexpected
    refused = [o for o in outcomes if isinstance(o, GuahaoError)]
    assert len(refused) == 2 * len(clients)
    assert {o.code for o in refused} == {"RATE_LIMITED"}
    assert all(o.detail["retry_after_seconds"] >= 1 for o in refused)
    stats = await window_stats(limiter, "5/minute", "cluster:crowd", clients[0])
    assert stats.remaining == 0
    with pytest.raises(GuahaoError):
        await limiter.hit([("cluster:crowd", "5/minute", clients[0])])
    await limiter.hit([("cluster:crowd", "5/minute", "a-newcomer")])

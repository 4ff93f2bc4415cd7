"""Live availability on a Redis Cluster: classic pub/sub, which a cluster relays to every node.

A message published through one node reaches a subscriber connected to any other, so each
worker's hub keeps one subscription wherever the cluster client puts it (sharded pub/sub would
bind the channel to one shard and gain nothing for a single, light channel).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from guahao.platform.redis_pools import shared_client
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.web.pages.live_availability import AvailabilityHub


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[aioredis.Redis]:
    client = shared_client(redis_cluster_url, max_connections=8, timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_change_published_through_any_node_reaches_every_workers_hub(
    cluster: aioredis.Redis, redis_cluster_url: str
) -> None:
    routed = cast(RedisCluster, cluster)
    await routed.initialize()
    nodes = routed.get_primaries()
    assert len(nodes) == 3
    hubs = [AvailabilityHub(cluster) for _ in nodes]
    try:
        async with (
            hubs[0].listen(frozenset({"s1"})) as first,
            hubs[1].listen(frozenset({"s1"})) as second,
            hubs[2].listen(frozenset({"s2"})) as elsewhere,
        ):
            for node in nodes:  # publish through each node in turn
                publisher = aioredis.Redis(host=node.host, port=int(node.port))
                try:
                    await AvailabilityFeed(publisher).changed(["s1"])
                finally:
                    await publisher.aclose()
                async with asyncio.timeout(5):
                    assert await first.get() == "s1"
                    assert await second.get() == "s1"
            await AvailabilityFeed(cluster).changed(["s1"])  # and through the cluster client
            async with asyncio.timeout(5):
                assert await first.get() == "s1"
            await asyncio.sleep(0.1)
            assert elsewhere.empty()
    finally:
        for hub in hubs:
            await hub.stop()

"""The citizen's journey over HTTP with the platform's Redis on a three-master cluster.

The same journey as ``test_api_journey`` (sign up, hold, choose the patient, pay at the
sandbox cashier, confirmed, cancel, the inbox after the outbox ran), served by the real app
whose slot pool, rate limits, idempotency records, sessions, payments and job queue all live on
a Redis Cluster (``redis+cluster://``): every script and pipeline must be routed by hash slot.
"""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from guahao.bootstrap import Platform
from tests.e2e.support import Citizen
from tests.e2e.test_api_journey import test_book_pay_confirm_cancel_and_be_told as journey


@pytest.fixture
def platform(cluster_platform: Platform) -> Platform:
    """The served platform, configured for the cluster (each database backend)."""
    return cluster_platform


async def test_book_pay_confirm_cancel_with_redis_on_a_cluster(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    cluster = platform.redis
    assert isinstance(cluster, RedisCluster)
    await journey(platform, http, citizen)
    health = await http.get("/health")
    assert health.status_code == 200, health.text
    keys_per_node = [await cluster.dbsize(target_nodes=node) for node in cluster.get_primaries()]
    assert sum(1 for n in keys_per_node if n) >= 2  # the journey's keys really spread out

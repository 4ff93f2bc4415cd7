"""A cluster master lost mid-surge: holds answer 503 (retry), never an unknown error.

Its own three-master cluster (the session's stays whole for the other suites). One master is
killed; holds on the slots it served answer ``INVENTORY_UNAVAILABLE``. The others follow as
the cluster decides: without replicas and with full coverage required (Redis's default) the
cluster soon refuses every slot (CLUSTERDOWN), which also answers ``INVENTORY_UNAVAILABLE``;
whatever was granted before is never oversold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import HoldGrant, SlotState
from guahao.platform.redis_pools import shared_client
from tests.fixtures.redis_cluster import LocalRedisCluster

RELEASE = 1_780_000_000_000
SLOTS = 12
CAPACITY = 3


@pytest.fixture
def own_cluster() -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def client(own_cluster: LocalRedisCluster) -> AsyncIterator[aioredis.Redis]:
    redis = shared_client(own_cluster.url, max_connections=16, timeout=5)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_a_lost_master_makes_holds_answer_unavailable_never_an_unknown_error(
    own_cluster: LocalRedisCluster, client: aioredis.Redis
) -> None:
    inventory = RedisInventory(client)
    slots = [f"s{n}" for n in range(SLOTS)]
    for slot_id in slots:
        await inventory.load(
            SlotState(slot_id=slot_id, capacity=CAPACITY, booked=0, release_at_ms=RELEASE)
        )
    routed = client
    assert isinstance(routed, RedisCluster)
    lost_port = own_cluster.ports[0]
    nodes = {s: routed.get_node_from_key(KeyNames().slot_family(s)[0]) for s in slots}
    served_by_lost = {s for s, node in nodes.items() if node and int(node.port) == lost_port}
    assert served_by_lost
    assert len(served_by_lost) < SLOTS
    own_cluster.stop_node(0)

    async def attempt(n: int) -> HoldGrant | str:
        try:
            return await inventory.hold(
                slots[n % SLOTS],
                hold_id=f"h{n}",
                account_id=f"a{n}",
                now_ms=RELEASE,
                ttl_ms=60_000,
                idempotency_key=f"k{n}",
            )
        except GuahaoError as err:
            return err.code

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(attempt(n) for n in range(8 * SLOTS))), timeout=60
    )
    codes = {o for o in outcomes if isinstance(o, str)}
    assert codes <= {"INVENTORY_UNAVAILABLE", "SLOT_SOLD_OUT", "HOLD_ALREADY_ACTIVE"}, codes
    assert "INVENTORY_UNAVAILABLE" in codes
    for n, outcome in enumerate(outcomes):
        if slots[n % SLOTS] in served_by_lost:
            assert outcome == "INVENTORY_UNAVAILABLE"
    per_slot: dict[str, int] = {}
    for n, outcome in enumerate(outcomes):
        if isinstance(outcome, HoldGrant):
            per_slot[slots[n % SLOTS]] = per_slot.get(slots[n % SLOTS], 0) + 1
    assert all(count <= CAPACITY for count in per_slot.values())

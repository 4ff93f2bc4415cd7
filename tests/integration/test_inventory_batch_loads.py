"""Loading a published schedule's new slots in batches (``RedisInventory.load_missing``), on
one server and on the three-master cluster: every slot arrives with its counts in a few
script calls, a slot Redis already knows is left alone, a slot under a rebuild's fence is
loaded once the fence comes down, and nothing is announced to the workers."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.redis_inventory import LOAD_BATCH
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import HeldUnit, SlotState

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000
SLOTS = 150


def new_slots(count: int, capacity: int = 4) -> list[SlotState]:
    return [
        SlotState(slot_id=f"s{n}", capacity=capacity, booked=0, release_at_ms=RELEASE + n)
        for n in range(count)
    ]


async def script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_new_slots_arrive_with_their_counts(slot_pool_redis: aioredis.Redis) -> None:
    """On the cluster the slots fall in many hash slots: a call mixing them would be refused
    (CROSSSLOT), so this also checks the grouping."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="batch:")
    states = new_slots(SLOTS)

    await inventory.load_missing(states)

    counts = await inventory.counts([s.slot_id for s in states], now_ms=RELEASE)
    assert len(counts) == SLOTS
    for state in states:
        found = counts[state.slot_id]
        assert (found.capacity, found.available, found.held, found.booked) == (4, 4, 0, 0)
        assert (found.release_at_ms, found.status) == (state.release_at_ms, "open")


async def test_a_batch_on_one_server_is_one_script_call_per_64_slots(
    redis_client: aioredis.Redis,
) -> None:
    inventory = RedisInventory(redis_client, key_prefix="batch:")
    await inventory.load_missing(new_slots(1))  # the script is on the server from here on
    await redis_client.config_resetstat()

    await inventory.load_missing(new_slots(SLOTS))

    assert await script_calls(redis_client) == math.ceil(SLOTS / LOAD_BATCH)


async def test_a_slot_redis_already_knows_is_left_as_it_is(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """A lazy load (a hold that found the slot missing) may have loaded it and granted a
    unit before the publisher's batch arrives: the batch must not wipe that hold."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="batch:")
    await inventory.load(SlotState(slot_id="s1", capacity=4, booked=0, release_at_ms=RELEASE))
    await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )

    await inventory.load_missing(new_slots(3, capacity=9))

    counts = await inventory.counts(["s0", "s1", "s2"], now_ms=RELEASE)
    assert (counts["s1"].capacity, counts["s1"].held, counts["s1"].available) == (4, 1, 3)
    assert counts["s0"].capacity == counts["s2"].capacity == 9


async def test_a_fenced_slot_is_loaded_once_the_rebuild_takes_its_fence_down(
    slot_pool_redis: aioredis.Redis,
) -> None:
    inventory = RedisInventory(slot_pool_redis, key_prefix="batch:")
    assert await inventory.fence("s1", token="rebuild", ttl_ms=10_000) is not None

    loading = asyncio.ensure_future(inventory.load_missing(new_slots(3)))
    await asyncio.sleep(0.1)
    assert not loading.done()  # waits on the fence, as a lone load does
    await inventory.unfence("s1", token="rebuild")
    await asyncio.wait_for(loading, 5)

    counts = await inventory.counts(["s0", "s1", "s2"], now_ms=RELEASE)
    assert [counts[s].capacity for s in ("s0", "s1", "s2")] == [4, 4, 4]


async def test_a_slot_with_holds_is_refused_before_anything_is_loaded(
    redis_client: aioredis.Redis,
) -> None:
    inventory = RedisInventory(redis_client, key_prefix="batch:")
    held = SlotState(
        slot_id="s9",
        capacity=2,
        booked=0,
        release_at_ms=RELEASE,
        holds=(HeldUnit(hold_id="h1", account_id="a1", expires_at_ms=RELEASE + TTL),),
    )

    with pytest.raises(GuahaoError) as refused:
        await inventory.load_missing([*new_slots(2), held])

    assert refused.value.code == "VALIDATION_FAILED"
    assert await inventory.counts(["s0", "s1", "s9"], now_ms=RELEASE) == {}


async def test_new_slots_are_not_announced_to_the_workers(
    slot_pool_redis: aioredis.Redis,
) -> None:
    """One message a slot would make every worker hear tens of thousands for one schedule;
    a slot Redis never knew has nothing remembered anywhere to drop. A lone load (a rebuild)
    still announces, and its message comes first on the channel after the batch's."""
    inventory = RedisInventory(slot_pool_redis, key_prefix="batch:")
    client = slot_pool_redis
    if isinstance(client, RedisCluster):
        node = client.get_default_node() or client.get_random_node()
        client = aioredis.Redis(host=node.host, port=node.port)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(KeyNames("batch:").returns_channel())
        await pubsub.get_message(timeout=1)  # the subscription's confirmation

        await inventory.load_missing(new_slots(5))
        await inventory.load(SlotState(slot_id="r1", capacity=1, booked=0, release_at_ms=RELEASE))

        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    if client is not slot_pool_redis:
        await client.aclose()
    assert message is not None
    assert message["data"] == b"r1"

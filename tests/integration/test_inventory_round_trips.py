"""What a hold costs in Redis round trips, and who waits for whom in a pipelined batch.

At a release surge the worker, not Redis, is the bound, so the number of scripts per grant
and the time a caller waits on other callers' replies are the adapter's throughput. These
cases pin both on real servers: one Redis, and the three-master cluster.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.platform.inventory.redis_errors import UNAVAILABLE
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import SlotState

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000

SPIN_LUA = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 1
"""
"""Keeps one server busy for ARGV[1] milliseconds (a script blocks every other client)."""

BUSY_MS = 1000


async def script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_a_grant_on_one_server_is_one_script_call(redis_client: aioredis.Redis) -> None:
    inventory = RedisInventory(redis_client, key_prefix="trips:")
    await inventory.load(SlotState(slot_id="s1", capacity=3, booked=0, release_at_ms=RELEASE))
    await inventory.hold(  # the scripts are loaded on the server from here on
        "s1", hold_id="h0", account_id="a0", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k0"
    )
    await redis_client.config_resetstat()
    await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    assert await script_calls(redis_client) == 1


async def test_a_second_hold_of_one_account_on_one_server_never_takes_a_unit(
    redis_client: aioredis.Redis,
) -> None:
    """The marker is claimed in the slot's own script: the refused attempt grants nothing
    first, so no unit is taken and given back, and no worker is told to forget a sold-out
    slot (the give-back channel stays quiet)."""
    inventory = RedisInventory(redis_client, key_prefix="trips:")
    for slot_id in ("s1", "s2"):
        await inventory.load(
            SlotState(slot_id=slot_id, capacity=1, booked=0, release_at_ms=RELEASE)
        )
    await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    listener = redis_client.pubsub()
    await listener.subscribe(KeyNames("trips:").returns_channel())
    try:
        await listener.get_message(timeout=1.0)  # the subscription's confirmation
        with pytest.raises(GuahaoError) as caught:
            await inventory.hold(
                "s2",
                hold_id="h2",
                account_id="a1",
                now_ms=RELEASE,
                ttl_ms=TTL,
                idempotency_key="k2",
            )
        assert caught.value.code == "HOLD_ALREADY_ACTIVE"
        assert caught.value.detail["active_hold_id"] == "h1"
        assert await listener.get_message(timeout=0.3) is None
    finally:
        await listener.aclose()
    # and the unit is still there for someone else, with no replay record left behind
    grant = await inventory.hold(
        "s2", hold_id="h3", account_id="a3", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k2"
    )
    assert (grant.hold_id, grant.replayed) == ("h3", False)


def slots_on_two_nodes(cluster: RedisCluster) -> tuple[str, str, ClusterNode]:
    """Two slot ids whose keys two different masters serve, and the second one's master."""
    keys = KeyNames("trips:")
    first = cluster.get_node_from_key(keys.slot_family("s0")[0])
    for n in itertools.count(1):
        node = cluster.get_node_from_key(keys.slot_family(f"s{n}")[0])
        if node is not None and node != first:
            return "s0", f"s{n}", node
    raise AssertionError("unreachable")


async def test_on_a_cluster_callers_are_answered_without_waiting_for_a_busy_node(
    redis_cluster_client: RedisCluster,
) -> None:
    """Calls of one batch go to several nodes; each caller gets its reply when its own node
    has answered, not when the slowest node of the batch has."""
    cluster = redis_cluster_client
    inventory = RedisInventory(cluster, key_prefix="trips:")  # type: ignore[arg-type]
    await cluster.initialize()
    quick, slow, busy_node = slots_on_two_nodes(cluster)
    for slot_id in (quick, slow):
        await inventory.load(
            SlotState(slot_id=slot_id, capacity=1, booked=0, release_at_ms=RELEASE)
        )
    await inventory.counts([quick, slow], now_ms=RELEASE)  # every master knows the script
    busy = aioredis.Redis(host=busy_node.host, port=busy_node.port)
    try:
        await busy.ping()  # connected: the spin goes out as soon as its task runs
        spin = asyncio.create_task(busy.eval(SPIN_LUA, 0, BUSY_MS))
        await asyncio.sleep(0.1)  # the spin has reached the server
        # one batch: both calls are made in the same turn of the event loop
        on_quick = asyncio.create_task(inventory.counts([quick], now_ms=RELEASE))
        on_slow = asyncio.create_task(inventory.counts([slow], now_ms=RELEASE))
        done, _ = await asyncio.wait({on_quick, on_slow}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {on_quick}
        assert not spin.done()
        assert (await on_slow)[slow].available == 1
        await spin
    finally:
        await busy.aclose()


async def test_on_a_cluster_calls_for_a_busy_node_wait_and_go_in_one_packet(
    redis_cluster_client: RedisCluster,
) -> None:
    """While a node's packet is out, further calls for that node queue and then go together
    on one connection, instead of each batch taking a connection and a packet of its own."""
    cluster = redis_cluster_client
    inventory = RedisInventory(cluster, key_prefix="trips:")  # type: ignore[arg-type]
    await cluster.initialize()
    _, slow, busy_node = slots_on_two_nodes(cluster)
    await inventory.load(SlotState(slot_id=slow, capacity=1, booked=0, release_at_ms=RELEASE))
    await inventory.counts([slow], now_ms=RELEASE)  # the script is known, a connection open
    busy = aioredis.Redis(host=busy_node.host, port=busy_node.port)
    try:
        clients_before = int((await busy.info("clients"))["connected_clients"])
        spin = asyncio.create_task(busy.eval(SPIN_LUA, 0, BUSY_MS // 2))
        await asyncio.sleep(0.1)
        calls = []
        for _ in range(5):  # five turns of the loop: five batches
            calls.append(asyncio.create_task(inventory.counts([slow], now_ms=RELEASE)))
            await asyncio.sleep(0.01)
        answers = await asyncio.gather(*calls)
        await spin
        assert all(answer[slow].available == 1 for answer in answers)
        # the spin's own connection came and stays; the inventory needed no new one
        assert int((await busy.info("clients"))["connected_clients"]) <= clients_before + 1
    finally:
        await busy.aclose()


async def test_a_pooled_connection_the_server_closed_is_replaced_and_the_hold_answered(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """The pipeline writes its packet itself (not through redis-py's ``wait_for``), under the
    batch's one deadline: a pooled connection the server dropped meanwhile still fails as a
    ``ConnectionError``, so the packet goes again on a fresh connection and the caller is
    answered, not refused."""
    inventory = RedisInventory(redis_client, key_prefix="dropped:")
    await inventory.load(SlotState(slot_id="s1", capacity=3, booked=0, release_at_ms=RELEASE))
    await inventory.hold(  # the pipeline's connection is pooled from here on
        "s1", hold_id="h0", account_id="a0", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k0"
    )
    killer = aioredis.Redis.from_url(redis_url)
    try:
        assert await killer.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        await killer.aclose()
    granted = await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    assert granted.hold_id == "h1"
    assert not granted.replayed
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 2


async def test_a_batch_past_its_deadline_fails_as_redis_timing_out_never_a_bare_timeout(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """A server that does not answer within the batch's deadline (busy with another client's
    long script) fails the batch with redis-py's ``TimeoutError``, which the inventory answers
    as ``INVENTORY_UNAVAILABLE`` and the web as 503; asyncio's own ``TimeoutError`` is no
    Redis error, so it went on as an unknown error (a 500)."""
    pipeline = AutoPipeline(redis_client, reply_timeout=0.2)
    script = LuaScript("one", "return 1")
    assert await pipeline.run(script, [], []) == 1  # loaded: the next call is one EVALSHA
    busy = aioredis.Redis.from_url(redis_url)
    try:
        await busy.ping()  # connected: the spin goes out as soon as its task runs
        spin = asyncio.create_task(busy.eval(SPIN_LUA, 0, BUSY_MS))
        await asyncio.sleep(0.1)  # the spin has reached the server
        with pytest.raises(RedisTimeoutError):
            await pipeline.run(script, [], [])
        await spin
    finally:
        await busy.aclose()
    assert isinstance(RedisTimeoutError(), UNAVAILABLE)

"""The release-surge race: many accounts on several connections at once, never oversold."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.ports import HoldGrant, SlotState

RELEASE = 1_780_000_000_000
CAPACITY = 20
ATTEMPTS = 50 * CAPACITY
CLIENTS = 4


def connected(redis_url: str, connections: int) -> aioredis.Redis:
    """A client whose callers queue for one of ``connections`` sockets, as a worker's do."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=connections)
    return aioredis.Redis(connection_pool=pool)


async def test_crowd_at_release_gets_exactly_capacity_holds_and_the_rest_sold_out(
    redis_url: str,
) -> None:
    clients = [connected(redis_url, 32) for _ in range(CLIENTS)]
    # Small batches of holds and small pipelines, so the crowd's scripts interleave over many
    # connections at once.
    inventories = [
        RedisInventory(c, key_prefix="surge:", pipeline_batch=4, hold_batch=2) for c in clients
    ]
    try:
        await clients[0].flushdb()
        await inventories[0].load(
            SlotState(slot_id="hot", capacity=CAPACITY, booked=0, release_at_ms=RELEASE)
        )

        async def attempt(n: int) -> HoldGrant | str:
            try:
                return await inventories[n % CLIENTS].hold(
                    "hot",
                    hold_id=f"h{n}",
                    account_id=f"a{n}",
                    now_ms=RELEASE + n % 7,
                    ttl_ms=15 * 60 * 1000,
                    idempotency_key=f"k{n}",
                )
            except GuahaoError as err:
                return err.code

        outcomes = await asyncio.gather(*(attempt(n) for n in range(ATTEMPTS)))
        grants = [o for o in outcomes if isinstance(o, HoldGrant)]
        refusals = [o for o in outcomes if not isinstance(o, HoldGrant)]
        assert len(grants) == CAPACITY
        assert len({g.hold_id for g in grants}) == CAPACITY
        assert set(refusals) == {"SLOT_SOLD_OUT"}
        connections = sum(len(c.connection_pool._available_connections) for c in clients)
        assert connections > CLIENTS  # the race really ran on many connections
        counts = (await inventories[1].counts(["hot"], now_ms=RELEASE + 7))["hot"]
        assert (counts.held, counts.available, counts.booked) == (CAPACITY, 0, 0)
        # Every loser's account marker was dropped: losers may try elsewhere at once.
        markers = await clients[0].keys("surge:{acct:*}:hold")
        assert len(markers) == CAPACITY
    finally:
        await clients[0].flushdb()
        for client in clients:
            await client.aclose()


async def test_concurrent_confirms_and_releases_of_one_hold_count_once(redis_url: str) -> None:
    client = connected(redis_url, 16)
    inventory = RedisInventory(client, key_prefix="race:")
    try:
        await client.flushdb()
        await inventory.load(SlotState(slot_id="s", capacity=1, booked=0, release_at_ms=RELEASE))
        await inventory.hold(
            "s", hold_id="h", account_id="a", now_ms=RELEASE, ttl_ms=60_000, idempotency_key="k"
        )
        steps = [
            inventory.confirm("s", hold_id="h", account_id="a", now_ms=RELEASE)
            if n % 2
            else inventory.release("s", hold_id="h", account_id="a", now_ms=RELEASE)
            for n in range(40)
        ]
        results = await asyncio.gather(*steps, return_exceptions=True)
        # One step wins; later confirms find the hold gone (released) or already booked.
        assert results.count(True) == 1
        others = {r.code if isinstance(r, GuahaoError) else r for r in results if r is not True}
        assert others <= {False, "HOLD_EXPIRED"}
        counts = (await inventory.counts(["s"], now_ms=RELEASE))["s"]
        assert counts.held == 0
        assert counts.booked + counts.available == 1
    finally:
        await client.flushdb()
        await client.aclose()

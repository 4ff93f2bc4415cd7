"""The slot's ``due``: the hold script sweeps only once something can have run out.

``hold_many.lua`` skips its sweep while the caller's time is before the ``due`` kept in the
slot's meta hash (``slot_prelude.lua``), so every script that adds a hold or a returning unit
must keep ``due`` at or before that unit's time, and every load must set it. A script that
forgot would leave a unit that has run out counted as taken: the slot would answer sold out
with a unit free. Each case below adds the earliest time through one script and asks for the
unit at that time, and the conformance case compares the kept ``due`` with a recount of both
sets after every kind of change. Every case runs on one server and on the cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypedDict

import pytest
import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import (
    ConfirmedUnit,
    HeldUnit,
    HoldGrant,
    ReturningUnit,
    SlotState,
    SlotStatus,
)

RELEASE = 1_780_000_000_000
MINUTE = 60_000
TTL = 15 * MINUTE
PREFIX = "due:"
NEVER = 9_007_199_254_740_991


@pytest.fixture
def inventory(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix=PREFIX)


async def load(
    inventory: RedisInventory, capacity: int = 2, status: SlotStatus = "open", **state: object
) -> None:
    await inventory.load(
        SlotState(
            slot_id="s1",
            capacity=capacity,
            booked=0,
            release_at_ms=RELEASE,
            status=status,
            **state,  # type: ignore[arg-type]
        )
    )


async def hold(
    inventory: RedisInventory, hold_id: str, *, now_ms: int = RELEASE, ttl_ms: int = TTL
) -> HoldGrant:
    return await inventory.hold(
        "s1",
        hold_id=hold_id,
        account_id=f"acct-{hold_id}",
        now_ms=now_ms,
        ttl_ms=ttl_ms,
        idempotency_key=f"key-{hold_id}",
    )


async def granted_at(client: aioredis.Redis, now_ms: int) -> bool:
    """Whether a new account's hold is granted at ``now_ms`` (asked by a fresh worker, so the
    answer is Redis's, not a refusal the steps' worker remembers)."""
    fresh = RedisInventory(client, key_prefix=PREFIX)
    try:
        await hold(fresh, f"late-{now_ms}", now_ms=now_ms)
    except GuahaoError as err:
        code = err.code
    else:
        return True
    assert code == "SLOT_SOLD_OUT"
    return False


async def with_booked_unit(inventory: RedisInventory) -> None:
    """Capacity 2: one unit booked (hold ``b`` confirmed), one held for 15 minutes."""
    await load(inventory)
    await hold(inventory, "b")
    await inventory.confirm("s1", hold_id="b", account_id="acct-b", now_ms=RELEASE)
    await hold(inventory, "long")


async def earlier_hold(inventory: RedisInventory) -> None:
    await load(inventory)
    await hold(inventory, "long")
    await hold(inventory, "short", ttl_ms=MINUTE)


async def earlier_offer(inventory: RedisInventory) -> None:
    await load(inventory)
    await hold(inventory, "long")
    await inventory.offer_hold(
        "s1",
        hold_id="offer",
        account_id="acct-offer",
        now_ms=RELEASE,
        ttl_ms=MINUTE,
        idempotency_key="key-offer",
    )


async def earlier_return(inventory: RedisInventory) -> None:
    await with_booked_unit(inventory)
    await inventory.cancel_booked("s1", unit_id="b", now_ms=RELEASE, return_at_ms=RELEASE + MINUTE)


class Claim(TypedDict):
    unit_id: str
    hold_id: str
    account_id: str
    now_ms: int


CLAIM: Claim = {"unit_id": "b", "hold_id": "claim", "account_id": "acct-claim", "now_ms": RELEASE}
"""The waiting patient's claim on the cancelled unit ``b`` (and its undoing)."""


async def returning_claimed(inventory: RedisInventory, expires_at_ms: int) -> None:
    """A booked unit cancelled (returning in 30 minutes), then offered to a waiting patient."""
    await with_booked_unit(inventory)
    await inventory.cancel_booked(
        "s1", unit_id="b", now_ms=RELEASE, return_at_ms=RELEASE + 30 * MINUTE
    )
    assert await inventory.claim_returning("s1", **CLAIM, expires_at_ms=expires_at_ms)


async def earlier_claim(inventory: RedisInventory) -> None:
    await returning_claimed(inventory, RELEASE + MINUTE)


async def earlier_unclaim(inventory: RedisInventory) -> None:
    await returning_claimed(inventory, RELEASE + 10 * MINUTE)
    assert await inventory.unclaim_returning("s1", **CLAIM, return_at_ms=RELEASE + MINUTE)


async def earlier_drawn(inventory: RedisInventory) -> None:
    await load(inventory, status="lottery")
    assert await inventory.grant_drawn(
        "s1",
        hold_id="drawn",
        account_id="acct-drawn",
        now_ms=RELEASE,
        expires_at_ms=RELEASE + MINUTE,
    )
    await inventory.set_status("s1", status="open")
    await hold(inventory, "long")


async def earlier_loaded(inventory: RedisInventory) -> None:
    await load(
        inventory,
        holds=(
            HeldUnit("long", "acct-long", RELEASE + TTL),
            HeldUnit("short", "acct-short", RELEASE + MINUTE, claims_marker=False),
        ),
    )


async def earlier_rebuilt(inventory: RedisInventory) -> None:
    await load(inventory)
    await hold(inventory, "long")
    snapshot = await inventory.fence("s1", token="t1", ttl_ms=10_000)
    assert snapshot is not None
    await inventory.load(
        SlotState(
            slot_id="s1",
            capacity=2,
            booked=0,
            release_at_ms=RELEASE,
            holds=(*snapshot.holds, HeldUnit("short", "acct-short", RELEASE + MINUTE)),
        ),
        fence_token="t1",
    )


EARLIER: dict[str, Callable[[RedisInventory], Awaitable[None]]] = {
    "a hold with a shorter time": earlier_hold,
    "the platform's offer": earlier_offer,
    "a cancelled unit returning sooner": earlier_return,
    "a returning unit claimed for a waiting patient": earlier_claim,
    "a claim undone": earlier_unclaim,
    "a lottery winner's hold": earlier_drawn,
    "a load carrying holds": earlier_loaded,
    "a rebuild's load": earlier_rebuilt,
}


@pytest.mark.parametrize("step", EARLIER.values(), ids=EARLIER.keys())
async def test_a_unit_due_back_earlier_than_the_others_is_free_at_its_time(
    inventory: RedisInventory,
    slot_pool_redis: aioredis.Redis,
    step: Callable[[RedisInventory], Awaitable[None]],
) -> None:
    await step(inventory)
    assert not await granted_at(slot_pool_redis, RELEASE + MINUTE - 1)
    assert await granted_at(slot_pool_redis, RELEASE + MINUTE)


async def test_a_slot_written_without_due_is_swept_and_then_kept(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    """A slot the previous code loaded has no ``due``: the next hold sweeps and sets it."""
    await load(inventory, capacity=1)
    await hold(inventory, "short", ttl_ms=MINUTE)
    meta = KeyNames(PREFIX).slot_family("s1")[0]
    await slot_pool_redis.hdel(meta, "due")
    assert await granted_at(slot_pool_redis, RELEASE + MINUTE)
    assert await slot_pool_redis.hget(meta, "due") == str(RELEASE + MINUTE + TTL).encode()


async def recount(client: aioredis.Redis) -> tuple[int, int]:
    """The kept ``due`` and the earliest time in the slot's holds and returning units."""
    meta, hold_expiry, _owner, returning, *_ = KeyNames(PREFIX).slot_family("s1")
    earliest = NEVER
    for key in (hold_expiry, returning):
        first = await client.zrange(key, 0, 0, withscores=True)
        if first:
            earliest = min(earliest, int(first[0][1]))
    due = await client.hget(meta, "due")
    assert due is not None
    return int(due), earliest


async def test_the_kept_due_is_never_after_anything_that_can_run_out(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    """After every kind of change to the slot, ``due`` is at or before the earliest hold
    expiry and return time (a recount of both sets); a load sets it to exactly that."""

    async def check(exact: bool = False) -> None:
        due, earliest = await recount(slot_pool_redis)
        assert due <= earliest
        if exact:
            assert due == earliest

    at = RELEASE
    await load(
        inventory,
        capacity=20,
        holds=(HeldUnit("loaded", "acct-loaded", at + 20 * MINUTE),),
        returning=(ReturningUnit("gone", at + 25 * MINUTE),),
        confirmed=(ConfirmedUnit("old", "acct-old"),),
    )
    await check(exact=True)
    for n, ttl in enumerate((TTL, 5 * MINUTE, 30 * MINUTE)):
        await hold(inventory, f"h{n}", ttl_ms=ttl)
        await check()
    await inventory.extend("s1", hold_id="h1", account_id="acct-h1", now_ms=at, until_ms=at + TTL)
    await check()
    await inventory.release("s1", hold_id="h0", account_id="acct-h0", now_ms=at)
    await check()
    await inventory.confirm("s1", hold_id="h2", account_id="acct-h2", now_ms=at)
    await check()
    await inventory.cancel_booked("s1", unit_id="h2", now_ms=at, return_at_ms=at + 3 * MINUTE)
    await check()
    await inventory.claim_returning(
        "s1",
        unit_id="h2",
        hold_id="c",
        account_id="acct-c",
        now_ms=at,
        expires_at_ms=at + 2 * MINUTE,
    )
    await check()
    await inventory.unclaim_returning(
        "s1", unit_id="h2", hold_id="c", account_id="acct-c", now_ms=at, return_at_ms=at + MINUTE
    )
    await check()
    await inventory.set_status("s1", status="lottery")
    await inventory.grant_drawn(
        "s1", hold_id="d", account_id="acct-d", now_ms=at, expires_at_ms=at + MINUTE // 2
    )
    await check()
    await inventory.set_status("s1", status="open")
    await inventory.set_capacity("s1", capacity=30, now_ms=at + MINUTE)  # sweeps by itself
    await check()
    await hold(inventory, "after", now_ms=at + 2 * MINUTE)  # the hold script's own sweep
    await check(exact=True)
    snapshot = await inventory.fence("s1", token="t1", ttl_ms=10_000)
    assert snapshot is not None
    await inventory.load(
        SlotState(slot_id="s1", capacity=30, booked=1, release_at_ms=RELEASE, holds=snapshot.holds),
        fence_token="t1",
    )
    await check(exact=True)
    await inventory.load_missing(
        [SlotState(slot_id="s1", capacity=30, booked=0, release_at_ms=RELEASE)]
    )  # present: untouched
    await check(exact=True)


async def test_a_new_slot_loaded_in_a_batch_has_nothing_due(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    await inventory.load_missing(
        [SlotState(slot_id="s1", capacity=3, booked=0, release_at_ms=RELEASE)]
    )
    assert await recount(slot_pool_redis) == (NEVER, NEVER)
    await hold(inventory, "first", ttl_ms=MINUTE)
    assert await recount(slot_pool_redis) == (RELEASE + MINUTE, RELEASE + MINUTE)

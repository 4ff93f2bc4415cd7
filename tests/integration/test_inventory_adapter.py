"""The Redis adapter itself: rebuild from SQL, many-slot snapshots, unknown slots, key
naming, script reloading and what a lost Redis looks like to the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from guahao.platform.errors import GuahaoError, SlotNotLoadedError, UnavailableError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.hold_batches import HoldRequest, hold_many_call
from guahao.platform.inventory.lua_scripts import HOLD_MANY
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import HeldUnit, ReturningUnit, SlotCounts, SlotState

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000


@pytest.fixture
def inventory(redis_client: aioredis.Redis) -> RedisInventory:
    return RedisInventory(redis_client, key_prefix="test:")


def rebuilt_state() -> SlotState:
    return SlotState(
        slot_id="s1",
        capacity=6,
        booked=2,
        release_at_ms=RELEASE,
        status="open",
        holds=(
            HeldUnit(hold_id="h1", account_id="a1", expires_at_ms=RELEASE + TTL),
            HeldUnit(hold_id="h2", account_id="a2", expires_at_ms=RELEASE + 2 * TTL),
        ),
        returning=(ReturningUnit(unit_id="b9", return_at_ms=RELEASE + TTL),),
    )


async def test_load_rebuilds_holds_returning_units_and_bookings(
    inventory: RedisInventory,
) -> None:
    await inventory.load(rebuilt_state())
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"] == SlotCounts(
        capacity=6,
        booked=2,
        held=2,
        returning=1,
        available=1,
        release_at_ms=RELEASE,
        status="open",
        next_change_ms=RELEASE + TTL,  # h1 runs out and b9 returns then
    )
    assert await inventory.confirm("s1", hold_id="h2", account_id="a2", now_ms=RELEASE)
    later = (await inventory.counts(["s1"], now_ms=RELEASE + TTL))["s1"]
    assert (later.booked, later.held, later.returning, later.available) == (3, 0, 0, 3)


async def test_cancellation_repeated_after_a_rebuild_returns_nothing(
    inventory: RedisInventory,
) -> None:
    await inventory.load(rebuilt_state())
    assert not await inventory.cancel_booked(
        "s1", unit_id="b9", now_ms=RELEASE, return_at_ms=RELEASE + TTL
    )
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].booked == 2


async def test_load_replaces_everything_that_was_there(inventory: RedisInventory) -> None:
    await inventory.load(rebuilt_state())
    await inventory.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    counts = (await inventory.counts(["s1"], now_ms=RELEASE))["s1"]
    assert (counts.capacity, counts.held, counts.returning, counts.available) == (1, 0, 0, 1)


@pytest.mark.parametrize(
    "state",
    [
        SlotState(slot_id="s1", capacity=1, booked=2, release_at_ms=RELEASE),
        SlotState(
            slot_id="s1",
            capacity=1,
            booked=1,
            release_at_ms=RELEASE,
            holds=(HeldUnit(hold_id="h", account_id="a", expires_at_ms=RELEASE),),
        ),
        SlotState(slot_id="s1", capacity=-1, booked=0, release_at_ms=RELEASE),
        SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE, status="gone"),  # type: ignore[arg-type]
    ],
    ids=["overbooked", "over-held", "negative", "bad-status"],
)
async def test_load_refuses_a_state_that_breaks_the_invariant(
    inventory: RedisInventory, state: SlotState
) -> None:
    with pytest.raises(GuahaoError) as caught:
        await inventory.load(state)
    assert caught.value.code == "VALIDATION_FAILED"
    assert await inventory.counts(["s1"], now_ms=RELEASE) == {}


async def test_counts_reads_many_slots_and_leaves_out_unknown_ones(
    inventory: RedisInventory,
) -> None:
    for n in range(5):
        await inventory.load(
            SlotState(slot_id=f"s{n}", capacity=n, booked=0, release_at_ms=RELEASE)
        )
    found = await inventory.counts(["s0", "s3", "never", "s4"], now_ms=RELEASE)
    assert {k: v.capacity for k, v in found.items()} == {"s0": 0, "s3": 3, "s4": 4}


async def test_counts_of_no_slots_is_empty(inventory: RedisInventory) -> None:
    assert await inventory.counts([], now_ms=RELEASE) == {}


async def test_scripts_come_back_after_the_server_forgets_them(
    inventory: RedisInventory, redis_client: aioredis.Redis
) -> None:
    await inventory.load(SlotState(slot_id="s1", capacity=2, booked=0, release_at_ms=RELEASE))
    await redis_client.script_flush()
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].available == 2
    await redis_client.script_flush()
    grant = await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k"
    )
    assert grant.hold_id == "h1"


Step = Callable[[RedisInventory], Awaitable[object]]
STEPS_ON_ONE_SLOT: dict[str, Step] = {
    "hold": lambda inv: inv.hold(
        "ghost", hold_id="h", account_id="a", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k"
    ),
    "extend": lambda inv: inv.extend(
        "ghost", hold_id="h", account_id="a", now_ms=RELEASE, until_ms=RELEASE + 1
    ),
    "confirm": lambda inv: inv.confirm("ghost", hold_id="h", account_id="a", now_ms=RELEASE),
    "release": lambda inv: inv.release("ghost", hold_id="h", account_id="a", now_ms=RELEASE),
    "cancel_booked": lambda inv: inv.cancel_booked(
        "ghost", unit_id="u", now_ms=RELEASE, return_at_ms=RELEASE
    ),
    "set_capacity": lambda inv: inv.set_capacity("ghost", capacity=1, now_ms=RELEASE),
    "set_status": lambda inv: inv.set_status("ghost", status="open"),
}


@pytest.mark.parametrize("step", STEPS_ON_ONE_SLOT.values(), ids=STEPS_ON_ONE_SLOT.keys())
async def test_a_slot_redis_does_not_know_raises_slot_not_loaded(
    inventory: RedisInventory, step: Step
) -> None:
    with pytest.raises(SlotNotLoadedError) as caught:
        await step(inventory)
    assert caught.value.code == "SLOT_NOT_LOADED"
    assert caught.value.detail["slot_id"] == "ghost"


async def test_hold_on_an_unknown_slot_leaves_the_account_free(
    inventory: RedisInventory,
) -> None:
    with pytest.raises(SlotNotLoadedError):
        await STEPS_ON_ONE_SLOT["hold"](inventory)
    await inventory.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    grant = await inventory.hold(
        "s1", hold_id="h2", account_id="a", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k2"
    )
    assert grant.hold_id == "h2"


async def test_lost_redis_is_inventory_unavailable() -> None:
    dead = aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    inventory = RedisInventory(dead)
    try:
        for step in STEPS_ON_ONE_SLOT.values():
            with pytest.raises(UnavailableError) as caught:
                await step(inventory)
            assert caught.value.code == "INVENTORY_UNAVAILABLE"
        with pytest.raises(UnavailableError):
            await inventory.counts(["s1"], now_ms=RELEASE)
        with pytest.raises(UnavailableError):
            await inventory.load(
                SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE)
            )
    finally:
        await dead.aclose()


async def test_prefixes_keep_two_pools_apart(redis_client: aioredis.Redis) -> None:
    north = RedisInventory(redis_client, key_prefix="north:")
    south = RedisInventory(redis_client, key_prefix="south:")
    await north.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await south.counts(["s1"], now_ms=RELEASE) == {}
    with pytest.raises(SlotNotLoadedError):
        await south.set_status("s1", status="closed")


async def test_every_key_of_a_slot_shares_one_hash_tag(
    inventory: RedisInventory, redis_client: aioredis.Redis
) -> None:
    await inventory.load(rebuilt_state())
    await inventory.hold(
        "s1", hold_id="h3", account_id="a3", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k3"
    )
    keys = sorted(k.decode() for k in await redis_client.keys("*"))
    slot_keys = [k for k in keys if "{slot:" in k]
    assert slot_keys
    assert all(k.startswith("test:{slot:s1}:") for k in slot_keys)
    # Besides the slot's family: one marker per account with a live hold (the two restored
    # by the rebuild, and the new one).
    assert [k for k in keys if k not in slot_keys] == [
        "test:{acct:a1}:hold",
        "test:{acct:a2}:hold",
        "test:{acct:a3}:hold",
    ]


async def test_a_rebuild_restores_one_unfinished_hold_per_account(
    inventory: RedisInventory,
) -> None:
    await inventory.load(rebuilt_state())
    with pytest.raises(GuahaoError) as caught:
        await inventory.hold(
            "s1", hold_id="h9", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k9"
        )
    assert caught.value.code == "HOLD_ALREADY_ACTIVE"


async def test_a_client_that_decodes_replies_works_the_same(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        inventory = RedisInventory(client, key_prefix="decoded:")
        await inventory.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
        grant = await inventory.hold(
            "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k"
        )
        again = await inventory.hold(
            "s1", hold_id="h2", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k"
        )
        assert again.replayed
        assert again.hold_id == grant.hold_id
        assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].status == "open"
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.mark.parametrize("bad", ["", "a{b", "c}d"])
async def test_ids_that_would_break_the_hash_tag_are_invalid(
    inventory: RedisInventory, bad: str
) -> None:
    with pytest.raises(GuahaoError) as caught:
        await inventory.set_status(bad, status="open")
    assert caught.value.code == "VALIDATION_FAILED"


def test_a_prefix_with_a_brace_is_rejected(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisInventory(redis_client, key_prefix="{x}")


async def test_a_hold_resent_after_a_lost_reply_keeps_the_account_marked(
    inventory: RedisInventory, redis_client: aioredis.Redis
) -> None:
    """redis-py may resend a script whose reply was lost; the first send already granted
    (here without the marker, as on a cluster, where the marker is claimed afterwards)."""
    await inventory.load(SlotState(slot_id="s1", capacity=2, booked=0, release_at_ms=RELEASE))
    keys = KeyNames("test:")
    first_send = HoldRequest(
        keys.family("s1"),
        keys.replay_record("s1", "k1"),
        None,
        "h1",
        "a1",
        RELEASE,
        RELEASE + TTL,
    )
    script_keys, args = hold_many_call([first_send], 60_000)
    reply = await redis_client.eval(HOLD_MANY.source, len(script_keys), *script_keys, *args)
    assert reply[0][0] == b"GRANTED"
    grant = await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    assert (grant.hold_id, grant.replayed) == ("h1", True)
    with pytest.raises(GuahaoError) as caught:
        await inventory.hold(
            "s1", hold_id="h2", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k2"
        )
    assert caught.value.code == "HOLD_ALREADY_ACTIVE"


async def test_a_lazy_load_leaves_a_slot_redis_already_knows_untouched(
    inventory: RedisInventory,
) -> None:
    """After a Redis loss several first attempts may race to load one slot from SQL; a later
    load must not wipe the holds the first one already granted."""
    await inventory.load(SlotState(slot_id="s1", capacity=2, booked=0, release_at_ms=RELEASE))
    await inventory.hold(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=TTL, idempotency_key="k1"
    )
    stale = SlotState(slot_id="s1", capacity=2, booked=0, release_at_ms=RELEASE)
    await inventory.load(stale, only_if_missing=True)
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 1
    await inventory.load(stale)  # a rebuild replaces wholesale, on purpose
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 0

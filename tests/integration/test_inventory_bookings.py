"""Bookings on the hot slot pool: confirmation, cancellation with delayed return, restock,
stop and reopen. Real Lua scripts on the session's real Redis; time is passed in."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.ports import SlotCounts, SlotState

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000
DELAY = 10 * 60 * 1000


@pytest.fixture
def inventory(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix="test:")


async def booked_slot(inventory: RedisInventory, *, capacity: int = 3, booked: int = 0) -> None:
    await inventory.load(
        SlotState(slot_id="s1", capacity=capacity, booked=booked, release_at_ms=RELEASE)
    )


async def held(inventory: RedisInventory, hold_id: str, account: str = "a1") -> None:
    await inventory.hold(
        "s1",
        hold_id=hold_id,
        account_id=account,
        now_ms=RELEASE,
        ttl_ms=TTL,
        idempotency_key=hold_id,
    )


async def counts_at(inventory: RedisInventory, now_ms: int) -> SlotCounts:
    return (await inventory.counts(["s1"], now_ms=now_ms))["s1"]


async def refusal(awaitable: object) -> GuahaoError:
    with pytest.raises(GuahaoError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def test_confirm_turns_a_hold_into_a_booked_unit(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    assert await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 1)
    counts = await counts_at(inventory, RELEASE + 1)
    assert (counts.booked, counts.held, counts.available) == (1, 0, 2)


async def test_confirmed_unit_never_expires(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert (await counts_at(inventory, RELEASE + 100 * TTL)).booked == 1


async def test_confirming_twice_counts_once(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    assert await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert not await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert (await counts_at(inventory, RELEASE)).booked == 1


async def test_confirming_an_expired_hold_is_refused(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    err = await refusal(
        inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + TTL)
    )
    assert (err.code, err.detail) == ("HOLD_EXPIRED", {"slot_id": "s1", "hold_id": "h1"})
    assert (await counts_at(inventory, RELEASE + TTL)).booked == 0


async def test_confirming_an_unknown_hold_is_refused(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    err = await refusal(inventory.confirm("s1", hold_id="nope", account_id="a1", now_ms=RELEASE))
    assert err.code == "HOLD_EXPIRED"


async def test_confirming_another_accounts_hold_is_refused(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    err = await refusal(inventory.confirm("s1", hold_id="h1", account_id="a2", now_ms=RELEASE))
    assert err.code == "HOLD_NOT_OWNED"
    counts = await counts_at(inventory, RELEASE)
    assert (counts.booked, counts.held) == (0, 1)


async def test_repeating_another_accounts_confirmation_is_refused(
    inventory: RedisInventory,
) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    err = await refusal(inventory.confirm("s1", hold_id="h1", account_id="a2", now_ms=RELEASE))
    assert err.code == "HOLD_NOT_OWNED"


async def test_cancelled_unit_stays_unavailable_until_its_return_time(
    inventory: RedisInventory,
) -> None:
    await booked_slot(inventory, capacity=1, booked=1)
    now = RELEASE + 1
    assert await inventory.cancel_booked("s1", unit_id="b1", now_ms=now, return_at_ms=now + DELAY)
    waiting = await counts_at(inventory, now + DELAY - 1)
    assert (waiting.booked, waiting.returning, waiting.available) == (0, 1, 0)
    err = await refusal(
        inventory.hold(
            "s1",
            hold_id="h1",
            account_id="buyer",
            now_ms=now + DELAY - 1,
            ttl_ms=TTL,
            idempotency_key="k1",
        )
    )
    assert err.code == "SLOT_SOLD_OUT"
    back = await counts_at(inventory, now + DELAY)
    assert (back.returning, back.available) == (0, 1)
    grant = await inventory.hold(
        "s1",
        hold_id="h2",
        account_id="buyer",
        now_ms=now + DELAY,
        ttl_ms=TTL,
        idempotency_key="k2",
    )
    assert grant.hold_id == "h2"


async def test_cancelling_twice_returns_one_unit(inventory: RedisInventory) -> None:
    await booked_slot(inventory, capacity=2, booked=2)
    assert await inventory.cancel_booked("s1", unit_id="b1", now_ms=RELEASE, return_at_ms=RELEASE)
    assert not await inventory.cancel_booked(
        "s1", unit_id="b1", now_ms=RELEASE, return_at_ms=RELEASE
    )
    counts = await counts_at(inventory, RELEASE)
    assert (counts.booked, counts.available) == (1, 1)


async def test_cancelling_with_a_past_return_time_returns_the_unit_at_once(
    inventory: RedisInventory,
) -> None:
    await booked_slot(inventory, capacity=1, booked=1)
    await inventory.cancel_booked("s1", unit_id="b1", now_ms=RELEASE, return_at_ms=RELEASE - 5)
    counts = await counts_at(inventory, RELEASE)
    assert (counts.returning, counts.available) == (0, 1)


async def test_cancelling_when_nothing_is_booked_is_refused(inventory: RedisInventory) -> None:
    await booked_slot(inventory, booked=0)
    err = await refusal(
        inventory.cancel_booked("s1", unit_id="b1", now_ms=RELEASE, return_at_ms=RELEASE)
    )
    assert (err.code, err.detail["unit_id"]) == ("BOOKING_STATE_INVALID", "b1")


async def test_restock_adds_units_to_sell(inventory: RedisInventory) -> None:
    await booked_slot(inventory, capacity=1, booked=1)
    counts = await inventory.set_capacity("s1", capacity=3, now_ms=RELEASE)
    assert (counts.capacity, counts.available) == (3, 2)
    await held(inventory, "h1")


async def test_capacity_cannot_drop_below_the_units_already_taken(
    inventory: RedisInventory,
) -> None:
    await booked_slot(inventory, capacity=5, booked=1)
    await held(inventory, "h1")
    await inventory.cancel_booked("s1", unit_id="b1", now_ms=RELEASE, return_at_ms=RELEASE + DELAY)
    # booked 0 + held 1 + returning 1 = 2
    err = await refusal(inventory.set_capacity("s1", capacity=1, now_ms=RELEASE))
    assert (err.code, err.detail["minimum_capacity"]) == ("SLOT_SOLD_OUT", 2)
    counts = await inventory.set_capacity("s1", capacity=2, now_ms=RELEASE)
    assert (counts.capacity, counts.available) == (2, 0)


async def test_capacity_cut_counts_expired_holds_as_free(inventory: RedisInventory) -> None:
    await booked_slot(inventory, capacity=2)
    await held(inventory, "h1")
    counts = await inventory.set_capacity("s1", capacity=0, now_ms=RELEASE + TTL)
    assert (counts.capacity, counts.held, counts.available) == (0, 0, 0)


async def test_negative_capacity_is_invalid(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    err = await refusal(inventory.set_capacity("s1", capacity=-1, now_ms=RELEASE))
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "capacity")


async def test_stopping_a_slot_keeps_its_live_holds_confirmable(
    inventory: RedisInventory,
) -> None:
    await booked_slot(inventory)
    await held(inventory, "h1")
    await inventory.set_status("s1", status="stopped")
    assert (await counts_at(inventory, RELEASE)).status == "stopped"
    assert await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)


async def test_reopened_slot_sells_again(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    await inventory.set_status("s1", status="closed")
    await inventory.set_status("s1", status="open")
    await held(inventory, "h1")
    assert (await counts_at(inventory, RELEASE)).held == 1


async def test_unknown_status_is_invalid(inventory: RedisInventory) -> None:
    await booked_slot(inventory)
    err = await refusal(inventory.set_status("s1", status="paused"))  # type: ignore[arg-type]
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "status")

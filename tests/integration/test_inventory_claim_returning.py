"""The hot pool's steps for units given without a click: a returning unit claimed for a waiter
(候补), an available unit offered to a waiter, and a unit granted to a lottery winner (摇号).

None of them touch the account's "one unfinished hold" marker, and finishing or losing such a
hold never deletes the marker of the account's own hold elsewhere.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError, SlotNotLoadedError
from guahao.platform.inventory import RedisInventory
from guahao.platform.ports import SlotState

NOW = 1_780_000_000_000
TTL = 10 * 60 * 1000
RETURN_AT = NOW + 120_000


@pytest.fixture
def inventory(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix="test:")


async def one_unit_returning(inventory: RedisInventory, slot_id: str = "s1") -> None:
    """A slot of 2 units, both booked; then ``b1`` is cancelled and its unit is returning."""
    await inventory.load(SlotState(slot_id=slot_id, capacity=2, booked=2, release_at_ms=0))
    assert await inventory.cancel_booked(slot_id, unit_id="b1", now_ms=NOW, return_at_ms=RETURN_AT)


async def snapshot(inventory: RedisInventory, now_ms: int = NOW) -> tuple[int, int, int, int]:
    c = (await inventory.counts(["s1"], now_ms=now_ms))["s1"]
    return c.available, c.held, c.booked, c.returning


async def refusal(action: object) -> str:
    with pytest.raises(GuahaoError) as caught:
        await action  # type: ignore[misc]
    return caught.value.code


async def test_a_returning_unit_becomes_a_hold_for_the_waiter(inventory: RedisInventory) -> None:
    await one_unit_returning(inventory)
    # Nothing is on sale: the cancelled unit is on its way back.
    assert await snapshot(inventory) == (0, 0, 1, 1)
    granted = await inventory.claim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a9", now_ms=NOW, expires_at_ms=NOW + TTL
    )
    assert granted
    # The same unit is now held: nothing went on sale, nothing is returning.
    assert await snapshot(inventory) == (0, 1, 1, 0)
    assert await inventory.confirm("s1", hold_id="w1", account_id="a9", now_ms=NOW + 1)
    assert await snapshot(inventory, NOW + 1) == (0, 0, 2, 0)


async def test_a_repeated_claim_answers_already_and_counts_once(inventory: RedisInventory) -> None:
    await one_unit_returning(inventory)
    args = {"unit_id": "b1", "hold_id": "w1", "account_id": "a9", "expires_at_ms": NOW + TTL}
    assert await inventory.claim_returning("s1", now_ms=NOW, **args)
    assert not await inventory.claim_returning("s1", now_ms=NOW + 5, **args)
    assert await snapshot(inventory, NOW + 5) == (0, 1, 1, 0)


async def test_a_unit_is_claimed_for_one_waiter_only(inventory: RedisInventory) -> None:
    await one_unit_returning(inventory)
    await inventory.claim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
    )
    code = await refusal(
        inventory.claim_returning(
            "s1", unit_id="b1", hold_id="w2", account_id="a2", now_ms=NOW, expires_at_ms=NOW + TTL
        )
    )
    assert code == "UNIT_NOT_RETURNING"
    assert await snapshot(inventory) == (0, 1, 1, 0)


async def test_a_unit_whose_return_time_passed_is_public_and_cannot_be_claimed(
    inventory: RedisInventory,
) -> None:
    await one_unit_returning(inventory)
    code = await refusal(
        inventory.claim_returning(
            "s1",
            unit_id="b1",
            hold_id="w1",
            account_id="a1",
            now_ms=RETURN_AT,
            expires_at_ms=RETURN_AT + TTL,
        )
    )
    assert code == "UNIT_NOT_RETURNING"
    assert await snapshot(inventory, RETURN_AT) == (1, 0, 1, 0)


async def test_a_claim_on_a_stopped_slot_is_refused(inventory: RedisInventory) -> None:
    await one_unit_returning(inventory)
    await inventory.set_status("s1", status="stopped")
    code = await refusal(
        inventory.claim_returning(
            "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
        )
    )
    assert code == "SLOT_CLOSED"


async def test_an_unknown_slot_raises_slot_not_loaded_so_the_caller_can_rebuild_it(
    inventory: RedisInventory,
) -> None:
    with pytest.raises(SlotNotLoadedError):
        await inventory.claim_returning(
            "nope", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + 1
        )


async def test_unclaiming_puts_the_unit_back_on_its_way_never_straight_to_the_public(
    inventory: RedisInventory,
) -> None:
    await one_unit_returning(inventory)
    await inventory.claim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
    )
    assert await inventory.unclaim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW + 1, return_at_ms=RETURN_AT
    )
    assert await snapshot(inventory, NOW + 1) == (0, 0, 1, 1)
    assert await snapshot(inventory, RETURN_AT) == (1, 0, 1, 0)
    # Undoing twice changes nothing more.
    assert not await inventory.unclaim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW + 2, return_at_ms=RETURN_AT
    )


async def test_a_waitlist_hold_never_touches_the_accounts_own_marker(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    """The account holds a unit elsewhere by its own click; the waitlist gives it this unit
    too. Confirming, releasing or expiring the waitlist hold must leave the marker of its own
    hold in place, and its own hold keeps blocking a second click."""
    await one_unit_returning(inventory)
    await inventory.load(SlotState(slot_id="s2", capacity=3, booked=0, release_at_ms=0))
    await inventory.hold(
        "s2", hold_id="own", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="k1"
    )
    marker_key = "test:{acct:a1}:hold"
    marker = await slot_pool_redis.get(marker_key)
    assert marker is not None
    await inventory.claim_returning(
        "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
    )
    assert await slot_pool_redis.get(marker_key) == marker  # the claim took no marker
    await inventory.extend("s1", hold_id="w1", account_id="a1", now_ms=NOW, until_ms=NOW + 2 * TTL)
    assert await slot_pool_redis.get(marker_key) == marker
    await inventory.confirm("s1", hold_id="w1", account_id="a1", now_ms=NOW + 1)
    assert await slot_pool_redis.get(marker_key) == marker
    code = await refusal(
        inventory.hold(
            "s2", hold_id="again", account_id="a1", now_ms=NOW + 2, ttl_ms=TTL, idempotency_key="k2"
        )
    )
    assert code == "HOLD_ALREADY_ACTIVE"


async def test_releasing_an_offer_leaves_the_accounts_own_marker(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    await inventory.load(SlotState(slot_id="s2", capacity=3, booked=0, release_at_ms=0))
    await inventory.hold(
        "s2", hold_id="own", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="k1"
    )
    marker = await slot_pool_redis.get("test:{acct:a1}:hold")
    grant = await inventory.offer_hold(
        "s2", hold_id="w1", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="wl:1"
    )
    assert (grant.hold_id, grant.replayed) == ("w1", False)
    assert await inventory.release("s2", hold_id="w1", account_id="a1", now_ms=NOW + 1)
    assert await slot_pool_redis.get("test:{acct:a1}:hold") == marker


async def test_an_offer_needs_no_free_marker_and_takes_none(
    inventory: RedisInventory, slot_pool_redis: aioredis.Redis
) -> None:
    await inventory.load(SlotState(slot_id="s2", capacity=1, booked=0, release_at_ms=0))
    await inventory.offer_hold(
        "s2", hold_id="w1", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="wl:1"
    )
    assert await slot_pool_redis.get("test:{acct:a1}:hold") is None
    replay = await inventory.offer_hold(
        "s2", hold_id="w1", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="wl:1"
    )
    assert replay.replayed
    code = await refusal(
        inventory.offer_hold(
            "s2", hold_id="w2", account_id="a2", now_ms=NOW, ttl_ms=TTL, idempotency_key="wl:2"
        )
    )
    assert code == "SLOT_SOLD_OUT"


async def test_a_lottery_slot_refuses_ordinary_holds_and_offers(inventory: RedisInventory) -> None:
    await inventory.load(SlotState(slot_id="s3", capacity=2, booked=0, release_at_ms=0))
    await inventory.set_status("s3", status="lottery")
    for attempt in (
        inventory.hold(
            "s3", hold_id="h", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="k"
        ),
        inventory.offer_hold(
            "s3", hold_id="h2", account_id="a1", now_ms=NOW, ttl_ms=TTL, idempotency_key="k2"
        ),
    ):
        assert await refusal(attempt) == "SESSION_IS_LOTTERY"


async def test_lottery_winners_get_units_until_none_is_left(inventory: RedisInventory) -> None:
    await inventory.load(SlotState(slot_id="s3", capacity=2, booked=0, release_at_ms=0))
    await inventory.set_status("s3", status="lottery")
    for n in (1, 2):
        assert await inventory.grant_drawn(
            "s3", hold_id=f"w{n}", account_id=f"a{n}", now_ms=NOW, expires_at_ms=NOW + TTL
        )
    assert not await inventory.grant_drawn(
        "s3", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
    )
    code = await refusal(
        inventory.grant_drawn(
            "s3", hold_id="w3", account_id="a3", now_ms=NOW, expires_at_ms=NOW + TTL
        )
    )
    assert code == "SLOT_SOLD_OUT"
    counts = (await inventory.counts(["s3"], now_ms=NOW))["s3"]
    assert (counts.held, counts.available, counts.status) == (2, 0, "lottery")


async def test_a_draw_grant_on_a_first_come_slot_is_refused(inventory: RedisInventory) -> None:
    await inventory.load(SlotState(slot_id="s3", capacity=2, booked=0, release_at_ms=0))
    code = await refusal(
        inventory.grant_drawn(
            "s3", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW + TTL
        )
    )
    assert code == "SESSION_NOT_LOTTERY"


async def test_a_claim_that_expires_at_once_is_bad_input(inventory: RedisInventory) -> None:
    await one_unit_returning(inventory)
    code = await refusal(
        inventory.claim_returning(
            "s1", unit_id="b1", hold_id="w1", account_id="a1", now_ms=NOW, expires_at_ms=NOW
        )
    )
    assert code == "VALIDATION_FAILED"

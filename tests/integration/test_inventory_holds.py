"""Holds on the hot slot pool: release time, sell-out, expiry, one hold per account, replays.

Every test runs the real Lua scripts on the real Redis of the session; time is the ``now_ms``
we pass in, so expiry is shown by moving it, never by sleeping.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.ports import HoldAsked, HoldGrant, SlotState, SlotStatus

RELEASE = 1_780_000_000_000
TTL = 15 * 60 * 1000


@pytest.fixture
def inventory(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix="test:")


async def slot(
    inventory: RedisInventory,
    slot_id: str = "s1",
    *,
    capacity: int = 2,
    status: SlotStatus = "open",
) -> str:
    await inventory.load(
        SlotState(
            slot_id=slot_id, capacity=capacity, booked=0, release_at_ms=RELEASE, status=status
        )
    )
    return slot_id


async def hold(
    inventory: RedisInventory,
    slot_id: str = "s1",
    *,
    account: str = "a1",
    hold_id: str | None = None,
    now_ms: int = RELEASE,
    key: str | None = None,
) -> HoldGrant:
    hold_id = hold_id or f"h-{account}-{now_ms}"
    return await inventory.hold(
        slot_id,
        hold_id=hold_id,
        account_id=account,
        now_ms=now_ms,
        ttl_ms=TTL,
        idempotency_key=key or f"k-{hold_id}",
    )


async def refusal(awaitable: object) -> GuahaoError:
    with pytest.raises(GuahaoError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def test_hold_is_refused_before_release_time(inventory: RedisInventory) -> None:
    await slot(inventory)
    err = await refusal(hold(inventory, now_ms=RELEASE - 1))
    assert err.code == "SLOT_NOT_RELEASED"
    assert err.detail["slot_id"] == "s1"


async def test_hold_is_granted_from_the_release_instant(inventory: RedisInventory) -> None:
    await slot(inventory)
    grant = await hold(inventory, hold_id="h1", now_ms=RELEASE)
    assert grant == HoldGrant(hold_id="h1", expires_at_ms=RELEASE + TTL, replayed=False)
    counts = (await inventory.counts(["s1"], now_ms=RELEASE))["s1"]
    assert (counts.available, counts.held) == (1, 1)


@pytest.mark.parametrize("status", ["stopped", "closed"])
async def test_hold_is_refused_on_a_stopped_or_closed_slot(
    inventory: RedisInventory, status: SlotStatus
) -> None:
    await slot(inventory, status=status)
    assert (await refusal(hold(inventory))).code == "SLOT_CLOSED"


async def test_stopped_slot_says_closed_even_before_release_time(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, status="stopped")
    assert (await refusal(hold(inventory, now_ms=RELEASE - 1))).code == "SLOT_CLOSED"


async def test_last_unit_goes_to_one_account_only(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=1)
    await hold(inventory, account="a1")
    assert (await refusal(hold(inventory, account="a2"))).code == "SLOT_SOLD_OUT"


async def test_sold_out_refusal_leaves_the_account_free_to_try_another_slot(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, "full", capacity=0)
    await slot(inventory, "free", capacity=1)
    assert (await refusal(hold(inventory, "full", account="a1"))).code == "SLOT_SOLD_OUT"
    grant = await hold(inventory, "free", account="a1", hold_id="h2")
    assert grant.hold_id == "h2"


async def test_expired_hold_returns_its_unit_without_a_timer(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, capacity=1)
    grant = await hold(inventory, account="a1")
    later = grant.expires_at_ms
    counts = (await inventory.counts(["s1"], now_ms=later))["s1"]
    assert (counts.available, counts.held) == (1, 0)
    second = await hold(inventory, account="a2", now_ms=later)
    assert second.expires_at_ms == later + TTL


async def test_hold_is_live_until_the_millisecond_before_its_expiry(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, capacity=1)
    grant = await hold(inventory, account="a1")
    just_before = grant.expires_at_ms - 1
    assert (await refusal(hold(inventory, account="a2", now_ms=just_before))).code == (
        "SLOT_SOLD_OUT"
    )
    assert (await inventory.counts(["s1"], now_ms=just_before))["s1"].held == 1


async def test_second_hold_of_one_account_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory, "s1")
    await slot(inventory, "s2")
    await hold(inventory, "s1", account="a1", hold_id="first")
    err = await refusal(hold(inventory, "s2", account="a1", hold_id="second"))
    assert err.code == "HOLD_ALREADY_ACTIVE"
    assert err.detail == {"slot_id": "s2", "active_slot_id": "s1", "active_hold_id": "first"}
    assert (await inventory.counts(["s2"], now_ms=RELEASE))["s2"].held == 0


async def test_a_hold_refused_for_the_accounts_hold_elsewhere_leaves_nothing_behind(
    inventory: RedisInventory,
) -> None:
    """The hold script writes a grant's owner before it claims the account's marker, and
    takes it back when the marker refuses: the hold id stays unused, the account unnamed."""
    await slot(inventory, "s1")
    await slot(inventory, "s2", capacity=1)
    await hold(inventory, "s1", account="a1", hold_id="first")
    err = await refusal(hold(inventory, "s2", account="a1", hold_id="second"))
    assert err.code == "HOLD_ALREADY_ACTIVE"
    snapshot = await inventory.fence("s2", token="look", ttl_ms=10_000)
    assert snapshot is not None
    assert snapshot.holds == ()
    await inventory.unfence("s2", token="look")
    assert (await hold(inventory, "s2", account="a2", hold_id="second")).hold_id == "second"


async def test_account_may_hold_again_once_its_hold_expired(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=2)
    grant = await hold(inventory, account="a1", hold_id="first")
    again = await hold(inventory, account="a1", hold_id="second", now_ms=grant.expires_at_ms)
    assert again.hold_id == "second"


async def test_account_may_hold_again_after_confirming(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=2)
    await hold(inventory, account="a1", hold_id="first")
    assert await inventory.confirm("s1", hold_id="first", account_id="a1", now_ms=RELEASE)
    again = await hold(inventory, account="a1", hold_id="second")
    assert again.hold_id == "second"


async def test_release_gives_the_unit_back_now(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=1)
    await hold(inventory, account="a1", hold_id="h1")
    assert await inventory.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 1)
    counts = (await inventory.counts(["s1"], now_ms=RELEASE + 1))["s1"]
    assert (counts.available, counts.held) == (1, 0)


async def test_release_frees_the_account_for_a_new_hold(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=2)
    await hold(inventory, account="a1", hold_id="h1")
    await inventory.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert (await hold(inventory, account="a1", hold_id="h2")).hold_id == "h2"


async def test_releasing_twice_gives_back_once(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=1)
    await hold(inventory, account="a1", hold_id="h1")
    assert await inventory.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert not await inventory.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].available == 1


async def test_releasing_an_expired_hold_gives_back_nothing(inventory: RedisInventory) -> None:
    await slot(inventory)
    grant = await hold(inventory, account="a1", hold_id="h1")
    released = await inventory.release(
        "s1", hold_id="h1", account_id="a1", now_ms=grant.expires_at_ms
    )
    assert released is False


async def test_releasing_a_confirmed_hold_gives_back_nothing(inventory: RedisInventory) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert not await inventory.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].booked == 1


async def test_releasing_another_accounts_hold_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    err = await refusal(inventory.release("s1", hold_id="h1", account_id="a2", now_ms=RELEASE))
    assert err.code == "HOLD_NOT_OWNED"
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 1


async def test_releasing_another_accounts_confirmed_hold_is_refused(
    inventory: RedisInventory,
) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    err = await refusal(inventory.release("s1", hold_id="h1", account_id="a2", now_ms=RELEASE))
    assert err.code == "HOLD_NOT_OWNED"


async def test_extending_keeps_a_hold_past_its_first_expiry(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=1)
    grant = await hold(inventory, account="a1", hold_id="h1")
    until = grant.expires_at_ms + TTL
    await inventory.extend("s1", hold_id="h1", account_id="a1", now_ms=RELEASE, until_ms=until)
    after_first_expiry = grant.expires_at_ms + 1
    assert (await refusal(hold(inventory, account="a2", now_ms=after_first_expiry))).code == (
        "SLOT_SOLD_OUT"
    )
    assert await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=until - 1)


async def test_extension_keeps_the_account_to_one_hold(inventory: RedisInventory) -> None:
    await slot(inventory, "s1")
    await slot(inventory, "s2")
    grant = await hold(inventory, "s1", account="a1", hold_id="h1")
    await inventory.extend(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, until_ms=grant.expires_at_ms + TTL
    )
    err = await refusal(
        hold(inventory, "s2", account="a1", hold_id="h2", now_ms=grant.expires_at_ms + 1)
    )
    assert err.code == "HOLD_ALREADY_ACTIVE"


async def test_extending_never_shortens_a_hold(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=1)
    grant = await hold(inventory, account="a1", hold_id="h1")
    await inventory.extend(
        "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, until_ms=RELEASE + 1000
    )
    counts = (await inventory.counts(["s1"], now_ms=grant.expires_at_ms - 1))["s1"]
    assert counts.held == 1


async def test_extending_an_expired_hold_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory)
    grant = await hold(inventory, account="a1", hold_id="h1")
    now = grant.expires_at_ms
    err = await refusal(
        inventory.extend("s1", hold_id="h1", account_id="a1", now_ms=now, until_ms=now + TTL)
    )
    assert err.code == "HOLD_EXPIRED"


async def test_extending_another_accounts_hold_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    err = await refusal(
        inventory.extend("s1", hold_id="h1", account_id="a2", now_ms=RELEASE, until_ms=RELEASE + 1)
    )
    assert err.code == "HOLD_NOT_OWNED"


async def test_extending_a_confirmed_hold_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    err = await refusal(
        inventory.extend("s1", hold_id="h1", account_id="a1", now_ms=RELEASE, until_ms=RELEASE + 1)
    )
    assert err.code == "BOOKING_ALREADY_CONFIRMED"
    err = await refusal(
        inventory.extend("s1", hold_id="h1", account_id="a2", now_ms=RELEASE, until_ms=RELEASE + 1)
    )
    assert err.code == "HOLD_NOT_OWNED"


async def test_extending_into_the_past_is_invalid(inventory: RedisInventory) -> None:
    await slot(inventory)
    await hold(inventory, account="a1", hold_id="h1")
    err = await refusal(
        inventory.extend("s1", hold_id="h1", account_id="a1", now_ms=RELEASE, until_ms=RELEASE)
    )
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "until_ms")


async def test_replayed_idempotency_key_returns_the_same_hold(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=2)
    first = await hold(inventory, account="a1", hold_id="h1", key="k1")
    again = await hold(inventory, account="a1", hold_id="h1-retry", key="k1", now_ms=RELEASE + 5)
    assert again == HoldGrant(hold_id="h1", expires_at_ms=first.expires_at_ms, replayed=True)
    assert (await inventory.counts(["s1"], now_ms=RELEASE + 5))["s1"].held == 1


async def test_replay_after_confirmation_still_returns_the_first_answer(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, capacity=2)
    first = await hold(inventory, account="a1", hold_id="h1", key="k1")
    await inventory.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE)
    again = await hold(inventory, account="a1", hold_id="h1-retry", key="k1")
    assert again == HoldGrant(hold_id="h1", expires_at_ms=first.expires_at_ms, replayed=True)
    # The replay claimed nothing: the account can still hold anew.
    assert (await hold(inventory, account="a1", hold_id="h2", key="k2")).hold_id == "h2"
    counts = (await inventory.counts(["s1"], now_ms=RELEASE))["s1"]
    assert (counts.booked, counts.held, counts.available) == (1, 1, 0)


async def test_idempotency_key_of_another_account_is_refused(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=2)
    await hold(inventory, account="a1", hold_id="h1", key="shared")
    err = await refusal(hold(inventory, account="a2", hold_id="h2", key="shared"))
    assert err.code == "IDEMPOTENCY_KEY_REUSED"
    # The refused account was not left marked as holding.
    assert (await hold(inventory, account="a2", hold_id="h3", key="own")).hold_id == "h3"


async def test_idempotency_key_of_another_account_is_refused_while_it_holds(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, "s1", capacity=2)
    await slot(inventory, "s2", capacity=2)
    await hold(inventory, "s1", account="a1", hold_id="h1", key="shared")
    await hold(inventory, "s2", account="a2", hold_id="h2", key="own")
    err = await refusal(hold(inventory, "s1", account="a2", hold_id="h3", key="shared"))
    assert err.code == "IDEMPOTENCY_KEY_REUSED"


async def test_refused_hold_is_not_remembered_for_replay(inventory: RedisInventory) -> None:
    await slot(inventory)
    early = await refusal(hold(inventory, hold_id="h1", key="k1", now_ms=RELEASE - 1))
    assert early.code == "SLOT_NOT_RELEASED"
    grant = await hold(inventory, hold_id="h1", key="k1", now_ms=RELEASE)
    assert grant.replayed is False


async def test_reused_hold_id_is_invalid(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=3)
    await hold(inventory, account="a1", hold_id="same", key="k1")
    err = await refusal(hold(inventory, account="a2", hold_id="same", key="k2"))
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "hold_id")
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 1


async def test_a_confirmed_hold_id_is_not_held_again(inventory: RedisInventory) -> None:
    await slot(inventory, capacity=3)
    await hold(inventory, account="a1", hold_id="booked", key="k1")
    assert await inventory.confirm("s1", hold_id="booked", account_id="a1", now_ms=RELEASE)
    err = await refusal(hold(inventory, account="a2", hold_id="booked", key="k2"))
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "hold_id")
    assert (await inventory.counts(["s1"], now_ms=RELEASE))["s1"].held == 0


async def test_non_positive_ttl_is_invalid(inventory: RedisInventory) -> None:
    await slot(inventory)
    err = await refusal(
        inventory.hold(
            "s1", hold_id="h", account_id="a", now_ms=RELEASE, ttl_ms=0, idempotency_key="k"
        )
    )
    assert (err.code, err.detail["field"]) == ("VALIDATION_FAILED", "ttl_ms")


async def test_holds_asked_together_are_each_decided_as_alone_in_the_order_asked(
    inventory: RedisInventory,
) -> None:
    await slot(inventory, "one", capacity=1)
    await slot(inventory, "two", capacity=3)
    await slot(inventory, "three", capacity=1)
    await hold(inventory, "two", account="a9", hold_id="first", key="same")
    await hold(inventory, "two", account="a6", hold_id="before")

    def asked(slot_id: str, account: str, hold_id: str, key: str = "") -> HoldAsked:
        return HoldAsked(slot_id, hold_id, account, RELEASE, TTL, key or f"k-{hold_id}")

    answers = await inventory.hold_all(
        [
            asked("one", "a1", "h1"),  # the last unit
            asked("one", "a2", "h2"),  # asked after it: sold out
            asked("never-loaded", "a3", "h3"),
            asked("two", "a9", "again", key="same"),  # the key's first hold, replayed
            asked("two", "a4", "h4"),
            asked("three", "a6", "h5"),  # a6 holds on "two" already
            asked("three", "a5", "h6")._replace(ttl_ms=0),  # refused before Redis
        ]
    )

    assert [a.code if isinstance(a, GuahaoError) else a for a in answers] == [
        HoldGrant(hold_id="h1", expires_at_ms=RELEASE + TTL),
        "SLOT_SOLD_OUT",
        "SLOT_NOT_LOADED",
        HoldGrant(hold_id="first", expires_at_ms=RELEASE + TTL, replayed=True),
        HoldGrant(hold_id="h4", expires_at_ms=RELEASE + TTL),
        "HOLD_ALREADY_ACTIVE",
        "VALIDATION_FAILED",
    ]
    counts = await inventory.counts(["one", "two", "three"], now_ms=RELEASE)
    assert [counts[s].held for s in ("one", "two", "three")] == [1, 3, 0]

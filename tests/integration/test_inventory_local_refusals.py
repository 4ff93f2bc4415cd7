"""A worker repeats a refusal locally while it cannot have changed, and never longer.

At a release surge most attempts hit slots that are sold out or not yet released. The
adapter remembers such an answer until the earliest moment it could change by itself (the
release time, the first hold to run out, the first cancelled unit to return) or a give-back
is announced on the pool's channel by any worker. A worker not following that channel
remembers no sold-out answer at all. It never grants locally.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from guahao.platform.error_codes import Refusal
from guahao.platform.errors import GuahaoError, SlotNotLoadedError
from guahao.platform.inventory import RedisInventory
from guahao.platform.ports import HoldGrant, SlotState

RELEASE = 1_780_000_000_000
TTL = 60_000


async def following(inv: RedisInventory) -> RedisInventory:
    inv.follow_returns()
    async with asyncio.timeout(5):
        await inv.sold_out.subscribed()
    FOLLOWING.append(inv)
    return inv


@pytest.fixture
async def worker(redis_client: aioredis.Redis) -> AsyncIterator[RedisInventory]:
    inv = await following(RedisInventory(redis_client, key_prefix="local:"))
    yield inv
    FOLLOWING.remove(inv)
    await inv.stop_following()


@pytest.fixture
async def other_worker(redis_client: aioredis.Redis) -> AsyncIterator[RedisInventory]:
    inv = await following(RedisInventory(redis_client, key_prefix="local:"))
    yield inv
    FOLLOWING.remove(inv)
    await inv.stop_following()


async def load(inv: RedisInventory, state: SlotState) -> None:
    """Load a slot and wait until every following worker has seen the load announced (a
    worker does not keep an answer that an announcement in flight may contradict)."""
    counts = {n: w.sold_out.announcements for n, w in enumerate(FOLLOWING)}
    await inv.load(state)
    for n, other in enumerate(FOLLOWING):
        await announced(other, counts[n] + 1)


FOLLOWING: list[RedisInventory] = []


async def announced(inv: RedisInventory, count: int) -> None:
    """Wait (at most 2 s) until ``inv`` has received ``count`` announcements in all."""
    async with asyncio.timeout(2):
        while inv.sold_out.announcements < count:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.001)


async def attempt(inv: RedisInventory, n: int, now: int, key: str | None = None) -> str:
    try:
        await inv.hold(
            "s1",
            hold_id=f"h{n}",
            account_id=f"a{n}",
            now_ms=now,
            ttl_ms=TTL,
            idempotency_key=key or f"k{n}",
        )
    except GuahaoError as err:
        return err.code + ("/local" if err.detail.get("answered") == "locally" else "")
    return "granted"


async def test_sold_out_is_repeated_locally_until_the_first_hold_could_run_out(
    worker: RedisInventory,
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert await attempt(worker, 3, RELEASE + 2) == "SLOT_SOLD_OUT/local"
    # The only hold runs out at RELEASE + TTL: from then on Redis is asked again.
    assert await attempt(worker, 4, RELEASE + TTL) == "granted"


async def test_not_yet_released_is_repeated_locally_until_release_time(
    worker: RedisInventory,
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE - 10) == "SLOT_NOT_RELEASED"
    assert await attempt(worker, 2, RELEASE - 1) == "SLOT_NOT_RELEASED/local"
    assert await attempt(worker, 3, RELEASE) == "granted"


async def test_a_unit_given_back_here_is_offered_at_once(worker: RedisInventory) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    await worker.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 3) == "granted"


async def test_a_unit_given_back_by_another_worker_is_offered_once_announced(
    worker: RedisInventory, other_worker: RedisInventory
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert await attempt(worker, 3, RELEASE + 2) == "SLOT_SOLD_OUT/local"
    seen = worker.sold_out.announcements
    await other_worker.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 3)
    await announced(worker, seen + 1)
    # same instant as far as the slot's clock goes: only the announcement made it holdable
    assert await attempt(worker, 4, RELEASE + 3) == "granted"


@pytest.mark.parametrize("give_back", ["cancel", "restock", "rebuild", "reopen"])
async def test_every_step_that_may_give_a_unit_back_is_announced_to_other_workers(
    worker: RedisInventory, other_worker: RedisInventory, give_back: str
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE) == "granted"
    await other_worker.confirm("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 1)
    assert await attempt(worker, 2, RELEASE + 2) == "SLOT_SOLD_OUT"
    assert await attempt(worker, 3, RELEASE + 3) == "SLOT_SOLD_OUT/local"
    seen = worker.sold_out.announcements
    if give_back == "cancel":  # 退号, the unit public at once
        await other_worker.cancel_booked("s1", unit_id="h1", now_ms=RELEASE + 4, return_at_ms=0)
    elif give_back == "restock":  # 加号
        await other_worker.set_capacity("s1", capacity=2, now_ms=RELEASE + 4)
    elif give_back == "rebuild":
        await other_worker.load(
            SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE)
        )
    else:  # the session opened again: nothing freed here, but Redis must be asked
        await other_worker.set_status("s1", status="open")
    await announced(worker, seen + 1)
    expected = "SLOT_SOLD_OUT" if give_back == "reopen" else "granted"
    assert await attempt(worker, 5, RELEASE + 5) == expected


async def test_an_account_holding_there_is_never_refused_from_memory(
    worker: RedisInventory, other_worker: RedisInventory
) -> None:
    """Its repeat may be owed the first grant: only Redis knows the idempotency record."""
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE, key="first") == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert worker.refuses_sold_out("s1", "a2", RELEASE + 2)
    assert not worker.refuses_sold_out("s1", "a1", RELEASE + 2)
    grant = await worker.hold(
        "s1", hold_id="h9", account_id="a1", now_ms=RELEASE + 2, ttl_ms=TTL, idempotency_key="first"
    )
    assert (grant.hold_id, grant.replayed) == ("h1", True)


async def test_the_accounts_named_follow_each_sold_out_answer_of_a_slot(
    worker: RedisInventory, other_worker: RedisInventory
) -> None:
    """The worker reuses the set of accounts of the last answer when the next names the same
    ones (one call's refusals on a hot slot): an answer naming others must replace it."""
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE) == "granted"
    refusals = await asyncio.gather(*(attempt(worker, n, RELEASE + 1) for n in (2, 3, 4)))
    assert refusals == ["SLOT_SOLD_OUT"] * 3  # one call, the same answer three times
    assert not worker.refuses_sold_out("s1", "a1", RELEASE + 2)
    assert worker.refuses_sold_out("s1", "a5", RELEASE + 2)
    # a1 lets go (announced: the view forgets the slot); a5 takes the unit
    seen = worker.sold_out.announcements
    await other_worker.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 3)
    await announced(worker, seen + 1)
    assert await attempt(other_worker, 5, RELEASE + 4) == "granted"
    assert await attempt(worker, 6, RELEASE + 5) == "SLOT_SOLD_OUT"
    assert worker.refuses_sold_out("s1", "a1", RELEASE + 6)
    assert not worker.refuses_sold_out("s1", "a5", RELEASE + 6)
    assert await attempt(worker, 1, RELEASE + 6, key="again") == "SLOT_SOLD_OUT/local"


async def test_a_worker_that_loses_its_subscription_drops_the_whole_view(
    worker: RedisInventory, other_worker: RedisInventory, redis_client: aioredis.Redis
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert worker.refuses_sold_out("s1", "a3", RELEASE + 2)
    # Redis drops every subscriber (as a restart or a network cut would): while a worker is
    # not subscribed, a give-back could not reach it, so it must not answer from memory
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    async with asyncio.timeout(2):
        while worker.sold_out.live:  # noqa: ASYNC110 (a flag, no event)
            await asyncio.sleep(0.001)
    assert len(worker.sold_out) == 0
    assert not worker.refuses_sold_out("s1", "a3", RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 2) == "SLOT_SOLD_OUT"  # asked Redis
    # subscribed again, it learns afresh
    async with asyncio.timeout(5):
        await worker.sold_out.subscribed()
        await other_worker.sold_out.subscribed()
    assert await attempt(worker, 4, RELEASE + 3) == "SLOT_SOLD_OUT"
    assert await attempt(worker, 5, RELEASE + 4) == "SLOT_SOLD_OUT/local"


async def test_a_worker_not_following_the_channel_never_answers_sold_out_itself(
    redis_client: aioredis.Redis,
) -> None:
    blind = RedisInventory(redis_client, key_prefix="local:")
    await blind.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(blind, 1, RELEASE) == "granted"
    assert await attempt(blind, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert await attempt(blind, 3, RELEASE + 2) == "SLOT_SOLD_OUT"


async def test_a_repeated_request_gets_its_hold_back_on_a_sold_out_slot(
    worker: RedisInventory,
) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE, key="same") == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    grant = await worker.hold(
        "s1",
        hold_id="h9",
        account_id="a1",
        now_ms=RELEASE + 2,
        ttl_ms=TTL,
        idempotency_key="same",
    )
    assert (grant.hold_id, grant.replayed) == ("h1", True)


async def test_a_restock_here_is_offered_at_once(worker: RedisInventory) -> None:
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    await worker.set_capacity("s1", capacity=2, now_ms=RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 3) == "granted"


async def test_a_worker_remembers_refusals_of_a_bounded_number_of_slots(
    redis_client: aioredis.Redis,
) -> None:
    worker = RedisInventory(redis_client, key_prefix="local:", refusal_memory=3)
    slots = [f"s{n}" for n in range(5)]
    for slot in slots:  # five slots released next week: each refusal would hold for days
        await worker.load(SlotState(slot_id=slot, capacity=1, booked=0, release_at_ms=RELEASE))

    async def attempt_on(slot: str, n: int) -> str:
        try:
            await worker.hold(
                slot,
                hold_id=f"h{n}",
                account_id=f"a{n}",
                now_ms=RELEASE - 10,
                ttl_ms=TTL,
                idempotency_key=f"k{n}",
            )
        except GuahaoError as err:
            return err.code + ("/local" if err.detail.get("answered") == "locally" else "")
        return "granted"

    for n, slot in enumerate(slots):
        assert await attempt_on(slot, n) == "SLOT_NOT_RELEASED"

    assert worker.remembered_refusals == 3
    # the two oldest were dropped: Redis is asked again; the three newest answer here
    assert [await attempt_on(slot, 10 + n) for n, slot in enumerate(slots[2:])] == [
        "SLOT_NOT_RELEASED/local"
    ] * 3
    assert await attempt_on("s0", 20) == "SLOT_NOT_RELEASED"
    assert worker.remembered_refusals == 3


async def test_hold_or_refusal_returns_the_refusals_hold_raises(worker: RedisInventory) -> None:
    """The hot path's answer: a refusal from Redis or from memory comes back as a value with
    the code and detail ``hold`` raises, its error built only when asked for."""
    await load(worker, SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))

    async def answer(n: int, now: int) -> HoldGrant | Refusal:
        return await worker.hold_or_refusal(
            "s1",
            hold_id=f"h{n}",
            account_id=f"a{n}",
            now_ms=now,
            ttl_ms=TTL,
            idempotency_key=f"k{n}",
        )

    assert await answer(1, RELEASE - 1) == Refusal(
        "SLOT_NOT_RELEASED", {"slot_id": "s1", "hold_id": "h1"}
    )
    assert await answer(2, RELEASE - 1) == Refusal(
        "SLOT_NOT_RELEASED", {"slot_id": "s1", "hold_id": "h2", "answered": "locally"}
    )
    granted = await answer(3, RELEASE)
    assert isinstance(granted, HoldGrant)
    assert granted.hold_id == "h3"
    assert await answer(4, RELEASE) == Refusal("SLOT_SOLD_OUT", {"slot_id": "s1", "hold_id": "h4"})
    local = await answer(5, RELEASE + 1)
    assert local == Refusal(
        "SLOT_SOLD_OUT", {"slot_id": "s1", "hold_id": "h5", "answered": "locally"}
    )
    assert isinstance(local, Refusal)
    error = local.error()
    assert (type(error).__name__, error.message_en) == (
        "ConflictError",
        "This slot is fully booked",
    )
    assert await attempt(worker, 6, RELEASE + 1) == "SLOT_SOLD_OUT/local"  # hold raises it


async def test_hold_or_refusal_raises_what_keeps_the_pool_from_answering(
    worker: RedisInventory,
) -> None:
    with pytest.raises(SlotNotLoadedError):
        await worker.hold_or_refusal(
            "unknown",
            hold_id="h1",
            account_id="a1",
            now_ms=RELEASE,
            ttl_ms=TTL,
            idempotency_key="k1",
        )
    with pytest.raises(GuahaoError) as raised:
        await worker.hold_or_refusal(
            "s1", hold_id="h1", account_id="a1", now_ms=RELEASE, ttl_ms=0, idempotency_key="k1"
        )
    assert raised.value.code == "VALIDATION_FAILED"

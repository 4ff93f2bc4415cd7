"""A worker repeats a refusal locally while it cannot have changed, and never longer.

At a release surge most attempts hit slots that are sold out or not yet released. The
adapter remembers such an answer until the earliest moment it could change by itself (the
release time, the first hold to run out, the first cancelled unit to return), capped at
``REFUSAL_HINT_MS`` for changes made by other workers. It never grants locally.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.redis_inventory import REFUSAL_HINT_MS
from guahao.platform.ports import SlotState

RELEASE = 1_780_000_000_000
TTL = 60_000


@pytest.fixture
def worker(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix="local:")


@pytest.fixture
def other_worker(slot_pool_redis: aioredis.Redis) -> RedisInventory:
    return RedisInventory(slot_pool_redis, key_prefix="local:")


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
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    assert await attempt(worker, 3, RELEASE + 2) == "SLOT_SOLD_OUT/local"
    # The only hold runs out at RELEASE + TTL: from then on Redis is asked again.
    assert await attempt(worker, 4, RELEASE + TTL) == "granted"


async def test_not_yet_released_is_repeated_locally_until_release_time(
    worker: RedisInventory,
) -> None:
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE - 10) == "SLOT_NOT_RELEASED"
    assert await attempt(worker, 2, RELEASE - 1) == "SLOT_NOT_RELEASED/local"
    assert await attempt(worker, 3, RELEASE) == "granted"


async def test_a_unit_given_back_here_is_offered_at_once(worker: RedisInventory) -> None:
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    await worker.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 3) == "granted"


async def test_a_unit_given_back_by_another_worker_is_offered_within_the_hint(
    worker: RedisInventory, other_worker: RedisInventory
) -> None:
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(other_worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    await other_worker.release("s1", hold_id="h1", account_id="a1", now_ms=RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 3) == "SLOT_SOLD_OUT/local"
    assert await attempt(worker, 4, RELEASE + 1 + REFUSAL_HINT_MS) == "granted"


async def test_a_repeated_request_gets_its_hold_back_on_a_sold_out_slot(
    worker: RedisInventory,
) -> None:
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
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
    await worker.load(SlotState(slot_id="s1", capacity=1, booked=0, release_at_ms=RELEASE))
    assert await attempt(worker, 1, RELEASE) == "granted"
    assert await attempt(worker, 2, RELEASE + 1) == "SLOT_SOLD_OUT"
    await worker.set_capacity("s1", capacity=2, now_ms=RELEASE + 2)
    assert await attempt(worker, 3, RELEASE + 3) == "granted"


async def test_a_worker_remembers_refusals_of_a_bounded_number_of_slots(
    slot_pool_redis: aioredis.Redis,
) -> None:
    worker = RedisInventory(slot_pool_redis, key_prefix="local:", refusal_memory=3)
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

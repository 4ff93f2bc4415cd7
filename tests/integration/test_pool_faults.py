"""Faults on the slot pool while citizens book, each followed by the conservation check:
Redis restarted empty mid-surge (noticed by the sweep and rebuilt once), and two workers
sweeping the same platform at once (nothing done twice).

The Redis-loss test runs a Redis of its own, stopped and started empty at the same address
(the shared session Redis must never be stopped).
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guahao.bootstrap import Platform
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.hospitals import PaymentMode
from guahao.platform.services.sweep import Sweep, SweepStep
from tests.fixtures.conservation import assert_money_conserved, assert_units_conserved
from tests.fixtures.crowd import CROWD_REFUSALS, journey
from tests.fixtures.platforms import (
    _open,
    bulk_accounts,
    clinic,
    confirmed_booking,
    counts,
    hold,
    manual_clock,
    new_account,
    outbox_topics,
    publish_clinic,
)

CLIENTS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def empty_on_restart(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis", port=_free_port(), persist=False)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def own_platform(
    migrated_database_url: str, empty_on_restart: EmbeddedRedis, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    # The sandbox gateway keeps its orders in the session Redis, which is never stopped: like a
    # real provider, it remembers what was paid while the platform's Redis was lost.
    async for p in _open(
        tmp_path,
        migrated_database_url,
        empty_on_restart.url,
        migrate=False,
        gateway_redis_url=redis_url,
    ):
        yield p


async def test_redis_restarted_empty_mid_surge_is_noticed_and_rebuilt_once(
    own_platform: Platform, empty_on_restart: EmbeddedRedis
) -> None:
    platform = own_platform
    # Citizens also pay online: a payment whose notice meets Redis away is settled by
    # reconciliation against the gateway, which kept its side.
    slots = await publish_clinic(platform, clinic(units=6))
    assert await platform.pool_recovery.rebuild() == len(slots)
    assert await platform.sweep.run() is not None
    accounts = await bulk_accounts(platform, 2 * CLIENTS)
    rng = random.Random(2)
    # While Redis is away, or just back and empty, a step answers 503 (retry), never a 500.
    # A hold in flight across the restart is either kept or refused before it is answered
    # (test_hold_across_redis_loss), so no confirm meets HOLD_EXPIRED.
    tolerated = CROWD_REFUSALS | {"INVENTORY_UNAVAILABLE", "SLOT_NOT_LOADED"}

    first = asyncio.gather(
        *(
            journey(platform, a, rng.choice(slots), rng.randrange(4), tolerated=tolerated)
            for a in accounts[:CLIENTS]
        )
    )
    await asyncio.sleep(0.3)  # mid-surge
    await asyncio.to_thread(empty_on_restart.stop)
    await asyncio.to_thread(empty_on_restart.start)
    outcomes = list(await first)
    assert await platform.pool_recovery.generation() is None  # the loss is visible
    # The surge goes on while the sweep notices the loss; two rounds at once rebuild once.
    second = asyncio.gather(
        *(
            journey(platform, a, rng.choice(slots), rng.randrange(4), tolerated=tolerated)
            for a in accounts[CLIENTS:]
        )
    )
    rounds = await asyncio.gather(platform.sweep.run(), platform.sweep.run())
    outcomes += await second

    assert sorted(r.counts.get("pool_recovered", -1) for r in rounds) == [0, len(slots)]
    assert await platform.pool_recovery.generation() is not None
    assert "confirmed" in outcomes, outcomes  # the crowd really booked around the fault
    manual_clock(platform).advance(minutes=2)  # orders become due for reconciliation
    await platform.payment_reconciliation.reconcile_due()
    await assert_units_conserved(platform, slots)
    await assert_money_conserved(platform)
    # An account whose hold was restored still cannot hold twice (its marker came back).
    assert (await platform.sweep.run()).counts["pool_recovered"] == 0


async def test_two_workers_sweeping_together_do_nothing_twice(
    migrated_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    opened = [_open(tmp_path / w, migrated_database_url, redis_url, migrate=False) for w in "ab"]
    a = await anext(opened[0])
    b = await anext(opened[1])  # opening flushes the shared Redis: before anything is loaded
    try:
        slots = await publish_clinic(a, clinic(PaymentMode.PAY_AT_HOSPITAL, units=2))
        holders = await bulk_accounts(a, len(slots))
        for account, slot_id in zip(holders, slots, strict=True):
            await hold(a, account, slot_id)
        await a.redis.flushdb()  # Redis lost: both workers will notice
        for p in (a, b):
            manual_clock(p).advance(minutes=11)  # every hold has run out
        before = await outbox_topics(a)

        rounds = await asyncio.gather(a.sweep.run(), b.sweep.run())

        assert not any(r.failed for r in rounds), [r.failed for r in rounds]
        assert sum(r.counts["pool_recovered"] for r in rounds) == len(slots)  # one rebuild
        assert sum(r.counts["expired"] for r in rounds) == len(slots)
        after = await outbox_topics(a)
        assert after.get("booking.expired", 0) - before.get("booking.expired", 0) == len(slots)
        await assert_units_conserved(a, slots)
        for slot_id in slots:
            assert (await counts(b, slot_id)).available == 2
        # Both workers see one pool: a unit taken through one is gone for the other.
        await hold(b, await new_account(b), slots[0])
        await hold(a, await new_account(a), slots[0])
        with pytest.raises(Exception, match="SLOT_SOLD_OUT"):
            await hold(b, await new_account(b), slots[0])
        await assert_units_conserved(b, slots)
    finally:
        for gen in reversed(opened):
            await gen.aclose()


async def test_a_rebuild_longer_than_the_sweeps_budget_still_finishes(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    await confirmed_booking(platform, slots[0], channel="insurance")
    await platform.redis.flushdb()  # lost
    # A budget far below what the rebuild needs: each round stops waiting, the rebuild goes on.
    hurried = Sweep(
        [SweepStep("pool_recovered", platform.pool_recovery.rebuild_if_lost)],
        step_timeout=0.002,
    )
    for _ in range(100):
        await hurried.run()
        if await platform.pool_recovery.generation() is not None:
            break
        await asyncio.sleep(0.02)
    assert await platform.pool_recovery.generation() is not None
    assert (await counts(platform, slots[0])).booked == 1
    await assert_units_conserved(platform, slots)

"""``guahao inventory rebuild`` while citizens hold, leave, submit and pay: every unit stays
free, held or booked exactly once, SQL and Redis agree, and nothing is sold twice after it.

A request changes Redis a moment before SQL records it; the rebuild fences each slot, reads
SQL after the fence and keeps what Redis granted that SQL has not recorded yet.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from guahao.bootstrap import Platform
from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.ids import new_id
from tests.fixtures.conservation import assert_money_conserved, assert_units_conserved
from tests.fixtures.crowd import journey
from tests.fixtures.platforms import (
    bulk_accounts,
    clinic,
    confirmed_booking,
    counts,
    hold,
    new_account,
    publish_clinic,
    slot_row,
)

CLIENTS = 36
"""Journeys at once, over a clinic of 8 slots with 3 units each: about 1.5 per unit."""


async def test_a_rebuild_under_traffic_loses_no_hold_and_counts_every_unit_once(
    platform: Platform,
) -> None:
    slots = await publish_clinic(
        platform, clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, units=3)
    )
    accounts = await bulk_accounts(platform, CLIENTS)
    rng = random.Random(13)
    plan = [(a, rng.choice(slots), rng.randrange(4)) for a in accounts]
    clients = asyncio.gather(*(journey(platform, a, s, c) for a, s, c in plan))
    rebuilds = 0
    while not clients.done():  # an operator running the rebuild again and again
        await platform.inventory_sync.rebuild_all()
        rebuilds += 1
        await asyncio.sleep(0.01)
    outcomes = await clients
    assert rebuilds >= 3, "the rebuild did not overlap the traffic"
    assert "confirmed" in outcomes, outcomes  # the crowd really booked meanwhile

    await assert_units_conserved(platform, slots)
    await assert_money_conserved(platform)
    # What is left free can be sold once, and not one unit more.
    for slot_id in slots:
        free = (await counts(platform, slot_id)).available
        for _ in range(free):
            await confirmed_booking(platform, slot_id, channel="insurance")
        late = await new_account(platform)
        with pytest.raises(GuahaoError, match="SLOT_SOLD_OUT"):
            await hold(platform, late, slot_id)
        row = await slot_row(platform, slot_id)
        assert row.online_booked + (await counts(platform, slot_id)).held == row.online_quota
    await assert_units_conserved(platform, slots)


async def test_a_hold_granted_but_not_yet_recorded_survives_a_rebuild(platform: Platform) -> None:
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL, units=1))
    account = await new_account(platform)
    now_ms = to_epoch_ms(platform.ports.clock.now())
    # The hold path's first step (Redis), its SQL record still to be written.
    await platform.ports.inventory.hold(
        slots[0],
        hold_id=new_id(),
        account_id=account,
        now_ms=now_ms,
        ttl_ms=600_000,
        idempotency_key="in-flight",
    )

    await platform.inventory_sync.rebuild_all()

    assert (await counts(platform, slots[0])).held == 1
    other = await new_account(platform)
    with pytest.raises(GuahaoError, match="SLOT_SOLD_OUT"):  # not sold again
        await hold(platform, other, slots[0])


async def test_a_step_on_a_fenced_slot_waits_for_the_rebuild_and_then_runs(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL, units=2))
    inventory = platform.ports.inventory
    snapshot = await inventory.fence(slots[0], token="t1", ttl_ms=10_000)
    assert snapshot is not None
    assert snapshot.present
    assert await inventory.fence(slots[0], token="t2", ttl_ms=10_000) is None  # one rebuild
    waiting = asyncio.ensure_future(hold(platform, await new_account(platform), slots[0]))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    rebuild = asyncio.ensure_future(platform.inventory_sync.reload([slots[0]]))
    await inventory.unfence(slots[0], token="t2")  # not the standing fence: nothing changes
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert not rebuild.done()

    await inventory.unfence(slots[0], token="t1")

    booking = await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(rebuild, 5)
    assert booking.status.value == "held"
    assert (await counts(platform, slots[0])).held == 1
    await assert_units_conserved(platform, slots[:1])

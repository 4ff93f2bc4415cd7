"""Losing Redis loses no booking: the hot pool is rebuilt from the record of truth in SQL."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest

from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import GuahaoError, SlotNotLoadedError
from guahao.platform.hospitals import PaymentMode
from tests.fixtures.platforms import (
    assert_refused,
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
    slot_row,
)


async def pool(platform, slot_ids):
    found = await platform.ports.inventory.counts(
        list(slot_ids), now_ms=to_epoch_ms(platform.ports.clock.now())
    )
    return {slot_id: found.get(slot_id) for slot_id in slot_ids}


async def test_a_rebuild_restores_booked_units_live_holds_and_returning_units_exactly(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY, units=3))
    clock = manual_clock(platform)
    # slot 3: a hold that ran out and was never swept
    await held_with_patient(platform, slots[3])
    # slot 1: a booking awaiting payment, held as long as its order (+ grace)
    payer, _, awaiting = await held_with_patient(platform, slots[1])
    await platform.bookings.submit(account_id=payer, booking_id=awaiting, channel="self_pay")
    clock.advance(minutes=11)
    # slot 0: a confirmed booking and a live hold
    _, confirmed, _ = await confirmed_booking(platform, slots[0], channel="insurance")
    await held_with_patient(platform, slots[0])
    # slot 2: a cancelled booking whose unit is still on its way back
    canceller, cancelled, _ = await confirmed_booking(platform, slots[2], channel="insurance")
    await platform.bookings.cancel(account_id=canceller, booking_id=cancelled)
    before = await pool(platform, slots)
    assert [(before[s].booked, before[s].held, before[s].returning) for s in slots[:4]] == [
        (1, 1, 0),
        (0, 1, 0),
        (0, 0, 1),
        (0, 0, 0),
    ]

    await platform.redis.flushdb()
    assert set((await pool(platform, slots)).values()) == {None}
    assert await platform.inventory_sync.rebuild_all() == len(slots)

    assert await pool(platform, slots) == before
    assert (await booking_row(platform, confirmed)).status == "confirmed"
    assert (await slot_row(platform, slots[0])).online_booked == 1


async def test_a_payment_notice_after_a_rebuild_still_books_the_restored_hold(platform):
    slots = await publish_clinic(platform)
    payer, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=payer, booking_id=booking_id, channel="self_pay"
    )
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    await platform.redis.flushdb()  # the gateway's own state is lost too; its notice is not
    await platform.inventory_sync.rebuild_all()

    outcome = await platform.bookings.handle_payment_notice(headers, body)

    assert outcome.result == "confirmed"
    assert (await counts(platform, slots[0])).booked == 1
    assert (await slot_row(platform, slots[0])).online_booked == 1


async def test_after_a_rebuild_confirmed_units_are_never_sold_again(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL, units=3))
    for _ in range(2):
        await confirmed_booking(platform, slots[0])
    await platform.redis.flushdb()
    await platform.inventory_sync.rebuild_all()

    last_account, last, _ = await confirmed_booking(platform, slots[0])  # the one unit left
    late = await new_account(platform)
    await assert_refused(platform, "SLOT_SOLD_OUT", hold(platform, late, slots[0]))
    assert (await slot_row(platform, slots[0])).online_booked == 3
    assert (await counts(platform, slots[0])).booked == 3
    # and a cancellation after the rebuild gives the unit back exactly once
    await platform.bookings.cancel(account_id=last_account, booking_id=last)
    manual_clock(platform).advance(seconds=120)
    assert (await counts(platform, slots[0])).available == 1


async def test_a_rebuild_after_a_session_stop_keeps_its_units_closed(platform):
    slots = await publish_clinic(platform)
    session_id = (await slot_row(platform, slots[0])).session_id
    await confirmed_booking(platform, slots[0])
    await platform.bookings.stop_session(session_id, reason="停诊")
    await platform.redis.flushdb()
    await platform.inventory_sync.rebuild_all()
    assert {(await counts(platform, s)).status for s in slots} == {"stopped"}
    await assert_refused(
        platform, "SLOT_CLOSED", hold(platform, await new_account(platform), slots[0])
    )


async def test_a_rebuild_skips_sessions_that_are_over(platform):
    slots = await publish_clinic(platform)
    manual_clock(platform).set((await slot_row(platform, slots[-1])).ends_at + timedelta(hours=1))
    await platform.redis.flushdb()
    assert await platform.inventory_sync.rebuild_all() == 0


async def test_after_a_rebuild_an_account_with_a_live_hold_still_cannot_hold_twice(platform):
    slots = await publish_clinic(platform)
    account, _, _ = await held_with_patient(platform, slots[0])
    await platform.redis.flushdb()
    await platform.inventory_sync.rebuild_all()
    await assert_refused(platform, "HOLD_ALREADY_ACTIVE", hold(platform, account, slots[1]))


async def test_a_hold_on_a_slot_redis_lost_loads_it_from_sql_and_never_sells_it_twice(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL, units=1))
    await held_with_patient(platform, slots[0])
    await platform.redis.flushdb()  # no rebuild: the hold path must load each slot it needs
    other = await new_account(platform)
    with pytest.raises(GuahaoError) as caught:
        await hold(platform, other, slots[0])
    assert caught.value.code == "SLOT_SOLD_OUT"  # the live hold came back from SQL first
    booking = await hold(platform, other, slots[1])
    assert booking.status == "held"
    restored = await pool(platform, slots[:2])
    assert [(restored[s].held, restored[s].booked) for s in slots[:2]] == [(1, 0), (1, 0)]


async def test_a_slot_sql_does_not_know_either_stays_not_loaded(platform):
    await publish_clinic(platform)
    step = partial(platform.ports.inventory.set_status, "ghost", status="closed")
    with pytest.raises(SlotNotLoadedError) as caught:
        await platform.inventory_sync.with_slot_loaded("ghost", step)
    assert caught.value.code == "SLOT_NOT_LOADED"

"""Payment reconciliation (对账): whatever a notice could not do, the comparison with the
gateway settles, so money is never kept without a booking; and the authority's daily report
says what was found and done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from guahao.platform.persistence.tables import (
    NotificationRow,
    PaymentOrderRow,
    PaymentSettlementRow,
    RefundRow,
    SlotRow,
)
from tests.fixtures.conservation import assert_money_conserved, assert_units_conserved
from tests.fixtures.platforms import (
    booking_row,
    clinic,
    confirmed_booking,
    held_with_patient,
    manual_clock,
    pay,
    publish_clinic,
)


async def _awaiting_payment(platform: Any, slot_id: str) -> tuple[str, str, str]:
    """(account_id, booking_id, order_no) of a booking waiting for its online payment."""
    account, _, booking_id = await held_with_patient(platform, slot_id)
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    return account, booking_id, order.order_no


async def _settlements(platform: Any) -> list[tuple[str, str]]:
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(PaymentSettlementRow))).all()
    return [(r.order_no, r.action) for r in rows]


async def test_money_whose_notice_was_lost_confirms_the_booking_while_still_in_time(platform):
    slots = await publish_clinic(platform)
    _, booking_id, order_no = await _awaiting_payment(platform, slots[0])
    await platform.gateway.pay(order_no, channel="self_pay")  # paid; the notice never arrives
    manual_clock(platform).advance(minutes=2)

    assert await platform.payment_reconciliation.reconcile_due() == 1

    assert (await booking_row(platform, booking_id)).status == "confirmed"
    assert await _settlements(platform) == [(order_no, "confirmed")]
    # The gateway's notice, when it finally comes, finds the work done.
    assert (await pay(platform, order_no)).result == "already_confirmed"
    # The next round finds the order in agreement and stamps it: not asked about again.
    assert await platform.payment_reconciliation.reconcile_due() == 0
    async with platform.ports.sessions() as session:
        assert (await session.get(PaymentOrderRow, order_no)).reconciled_at is not None
    assert await assert_money_conserved(platform) == {"confirmed_paid": 1}
    await assert_units_conserved(platform, slots[:1])


async def test_money_taken_after_the_booking_expired_is_refunded_and_the_citizen_told(platform):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    account, booking_id, order_no = await _awaiting_payment(platform, slots[0])
    clock.advance(minutes=14)
    await platform.gateway.pay(order_no, channel="self_pay")  # the notice is lost
    clock.advance(minutes=10)
    assert await platform.bookings.expire_due() == 1  # could not close: the order was paid

    assert await platform.payment_reconciliation.reconcile_due() == 1

    assert (await booking_row(platform, booking_id)).status == "expired"
    async with platform.ports.sessions() as session:
        refund = await session.scalar(select(RefundRow).where(RefundRow.order_no == order_no))
    assert refund is not None
    assert refund.reason == "paid_after_expiry"
    assert await _settlements(platform) == [(order_no, "refunded")]
    assert await assert_money_conserved(platform) == {"refund_pending": 1}
    # The refund is paid out by the sweep's refunds step; the citizen hears of both.
    assert await platform.bookings.process_refund(refund.refund_no) is True
    assert (await platform.gateway.query_order(order_no)).status == "refunded"
    await platform.dispatcher.dispatch_pending()
    async with platform.ports.sessions() as session:
        topics = set(
            (
                await session.scalars(
                    select(NotificationRow.template).where(NotificationRow.account_id == account)
                )
            ).all()
        )
    assert {"payment.paid_too_late", "payment.refunded"} <= topics
    assert await assert_money_conserved(platform) == {"refunded": 1}
    await assert_units_conserved(platform, slots[:1])


async def test_a_paid_notice_meeting_a_unit_sold_meanwhile_refunds_instead_of_claiming_replay(
    platform,
):
    slots = await publish_clinic(platform, clinic(units=1))
    _, booking_id, order_no = await _awaiting_payment(platform, slots[0])
    # What a pool rebuilt under traffic left behind: SQL counts the only unit as sold already.
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(update(SlotRow).where(SlotRow.id == slots[0]).values(online_booked=1))

    outcome = await pay(platform, order_no)

    assert outcome.result == "refunded_late_payment"
    assert (await booking_row(platform, booking_id)).status == "expired"
    async with platform.ports.sessions() as session:
        refund = await session.scalar(select(RefundRow).where(RefundRow.order_no == order_no))
        assert (await session.get(SlotRow, slots[0])).online_booked == 1  # not counted twice
    assert refund is not None
    assert refund.reason == "unit_unavailable"
    assert await platform.bookings.process_refund(refund.refund_no) is True
    assert await assert_money_conserved(platform) == {"refunded": 1}


async def test_a_payable_order_the_gateway_lost_is_opened_again_and_can_be_paid(platform):
    slots = await publish_clinic(platform)
    _, booking_id, order_no = await _awaiting_payment(platform, slots[0])
    # The sandbox gateway's store is lost (it lives in the platform's Redis).
    for key in [k async for k in platform.redis.scan_iter(match="sandbox-pay:*")]:
        await platform.redis.delete(key)
    manual_clock(platform).advance(minutes=2)

    assert await platform.payment_reconciliation.reconcile_due() == 1

    assert await _settlements(platform) == [(order_no, "reopened")]
    assert (await pay(platform, order_no)).result == "confirmed"
    assert (await booking_row(platform, booking_id)).status == "confirmed"
    assert await assert_money_conserved(platform) == {"confirmed_paid": 1}


async def test_the_daily_report_shows_the_days_money_and_flags_what_no_rule_settles(platform):
    slots = await publish_clinic(platform)
    reconciliation = platform.payment_reconciliation
    _, _, paid_order = await confirmed_booking(platform, slots[0])
    _, late_booking, late_order = await _awaiting_payment(platform, slots[1])
    clock = manual_clock(platform)
    clock.advance(minutes=14)
    await platform.gateway.pay(late_order, channel="self_pay")
    clock.advance(minutes=10)
    await platform.bookings.expire_due()
    # A confirmed, paid booking whose order the gateway no longer knows: no rule can say
    # whether the money is there, so a person must look.
    await platform.redis.delete(f"sandbox-pay:{{{paid_order.order_no}}}:order")

    report = await reconciliation.reconcile_day(reconciliation.business_day())

    assert report.orders == 2
    assert report.orders_by_status == {"paid": 1, "refunded": 1}
    assert report.paid_cents == 6000
    assert report.refunds_pending == 1
    assert {(s.order_no, s.action) for s in report.settlements} == {
        (late_order, "refunded"),
        (paid_order.order_no, "flagged"),
    }
    assert [(s.order_no, s.gateway_status) for s in report.unresolved] == [
        (paid_order.order_no, "missing")
    ]
    assert (await booking_row(platform, late_booking)).status == "expired"
    # Asking again changes nothing: every difference was settled or flagged once.
    again = await reconciliation.reconcile_day(reconciliation.business_day())
    assert len(again.settlements) == 2


async def test_rounds_walk_on_so_orders_still_being_paid_do_not_hide_the_others(platform):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    orders = []
    for slot in slots[:3]:
        orders.append((await _awaiting_payment(platform, slot))[2])
        clock.advance(seconds=1)
    await platform.gateway.pay(orders[2], channel="self_pay")  # the newest: notice lost
    clock.advance(minutes=2)
    reconciliation = platform.payment_reconciliation

    assert await reconciliation.reconcile_due(limit=2) == 0  # two still payable, left alone
    assert await reconciliation.reconcile_due(limit=2) == 1  # the next round goes on

    assert await _settlements(platform) == [(orders[2], "confirmed")]

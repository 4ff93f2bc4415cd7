"""The citizen's journey through the booking services, walked on a manual clock.

Hold → choose patient → submit (confirm, or open a payment order and pay) → confirmed, on
every payment mode of the article; then the journey's other ends: leaving, abandoning the
payment, paying too late, cancelling with a refund, and the cut-off that hands unsold online
units to the on-site desk. Every scenario runs on SQLite and on PostgreSQL with a real Redis.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.platform.bookings import BookingStatus
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import PaymentOrderRow, RefundRow, SessionRow, SlotRow
from guahao.platform.services.booking_service import PAYMENT_GRACE
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    at_local,
    available,
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    manual_clock,
    new_account,
    new_patient,
    outbox_topics,
    pay,
    publish_clinic,
    session_of,
    slot_row,
)

JOURNEYS = [
    # payment mode, channel, whether submit opens an online payment order
    pytest.param(PaymentMode.PAY_AT_HOSPITAL, "self_pay", False, id="pay_at_hospital-self_pay"),
    pytest.param(PaymentMode.PAY_AT_HOSPITAL, "insurance", False, id="pay_at_hospital-insurance"),
    pytest.param(PaymentMode.PAY_AFTER_VISIT, "self_pay", False, id="pay_after_visit-self_pay"),
    pytest.param(PaymentMode.PAY_AFTER_VISIT, "insurance", False, id="pay_after_visit-insurance"),
    pytest.param(PaymentMode.ONLINE_SELF_PAY, "self_pay", True, id="online_self_pay-self_pay"),
    pytest.param(PaymentMode.ONLINE_SELF_PAY, "insurance", False, id="online_self_pay-insurance"),
    pytest.param(
        PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, "self_pay", True, id="online_both-self_pay"
    ),
    pytest.param(
        PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, "insurance", True, id="online_both-insurance"
    ),
    pytest.param(
        PaymentMode.ONLINE_NO_INSURANCE, "self_pay", True, id="online_no_insurance-self_pay"
    ),
]


@pytest.mark.parametrize(("mode", "channel", "pays_online"), JOURNEYS)
async def test_the_payment_mode_decides_whether_submit_confirms_or_opens_a_payment_order(
    platform, mode, channel, pays_online
):
    slots = await publish_clinic(platform, clinic(mode))
    account, patient = await new_account(platform), None
    patient = await new_patient(platform, account)
    before = await available(platform, slots[0])

    held = await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="j")
    assert held.status is BookingStatus.HELD
    assert await available(platform, slots[0]) == before - 1
    chosen = await platform.bookings.choose_patient(
        account_id=account, booking_id=held.id, patient_id=patient
    )
    assert chosen.status is BookingStatus.PATIENT_CHOSEN

    booking, order = await platform.bookings.submit(
        account_id=account, booking_id=held.id, channel=channel
    )
    if pays_online:
        assert booking.status is BookingStatus.AWAITING_PAYMENT
        assert order is not None
        assert order.amount_cents == 3000
        assert order.channel == channel
        assert (await slot_row(platform, slots[0])).online_booked == 0
        outcome = await pay(platform, order.order_no, channel)
        assert outcome.result == "confirmed"
        assert (await platform.gateway.query_order(order.order_no)).status == "paid"
    else:
        assert order is None
        assert booking.status is BookingStatus.CONFIRMED

    row = await booking_row(platform, held.id)
    assert row.status == "confirmed"
    assert row.patient_id == patient
    assert row.channel == channel
    assert row.paid is pays_online
    assert row.payment_required is pays_online
    assert (row.payment_order_no is not None) is pays_online
    async with platform.ports.sessions() as session:
        orders = (await session.scalars(select(PaymentOrderRow))).all()
    assert [o.status for o in orders] == (["paid"] if pays_online else [])
    snap = await counts(platform, slots[0])
    assert (snap.booked, snap.held, snap.available) == (1, 0, before - 1)
    assert (await slot_row(platform, slots[0])).online_booked == 1
    topics = await outbox_topics(platform)
    assert topics["booking.held"] == topics["booking.patient_chosen"] == 1
    assert topics["booking.confirmed"] == 1
    assert topics.get("booking.awaiting_payment", 0) == int(pays_online)


async def test_a_hospital_without_insurance_refuses_an_insurance_submit_and_changes_nothing(
    platform,
):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_NO_INSURANCE))
    account, _, booking_id = await held_with_patient(platform, slots[0])
    await assert_refused(
        platform,
        "PAYMENT_MODE_UNSUPPORTED",
        platform.bookings.submit(account_id=account, booking_id=booking_id, channel="insurance"),
    )
    assert (await booking_row(platform, booking_id)).status == "patient_chosen"


async def test_leaving_the_patient_step_gives_the_unit_back_at_once(platform):
    slots = await publish_clinic(platform)
    full = await available(platform, slots[0])
    account, _, booking_id = await held_with_patient(platform, slots[0])
    assert await available(platform, slots[0]) == full - 1

    left = await platform.bookings.leave(account_id=account, booking_id=booking_id)

    assert left.status is BookingStatus.ABANDONED
    assert await available(platform, slots[0]) == full  # no waiting for the hold to run out
    assert (await booking_row(platform, booking_id)).end_reason == "left_the_flow"
    # the account is free to hold again straight away
    again = await platform.bookings.hold(account_id=account, slot_id=slots[1], idempotency_key="2")
    assert again.status is BookingStatus.HELD


async def test_an_unpaid_order_expires_and_the_sweep_releases_its_unit_and_closes_the_order(
    platform,
):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    full = await available(platform, slots[0])
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    assert order is not None

    # The hold outlives the 10-minute hold time: it now lasts as long as the order (+ grace).
    clock.advance(minutes=14)
    assert await platform.bookings.expire_due() == 0
    assert await available(platform, slots[0]) == full - 1
    clock.advance(minutes=1)  # the order is over, the grace is not
    assert await platform.bookings.expire_due() == 0
    assert await available(platform, slots[0]) == full - 1
    clock.advance(seconds=PAYMENT_GRACE.total_seconds())

    assert await platform.bookings.expire_due() == 1

    row = await booking_row(platform, booking_id)
    assert row.status == "expired"
    assert row.end_reason == "timed_out"
    assert await available(platform, slots[0]) == full
    async with platform.ports.sessions() as session:
        assert (await session.get(PaymentOrderRow, order.order_no)).status == "expired"
    assert (await platform.gateway.query_order(order.order_no)).status == "closed"
    assert await platform.bookings.expire_due() == 0  # a second sweep finds nothing
    assert (await outbox_topics(platform))["booking.expired"] == 1


async def test_a_payment_made_in_time_whose_notice_comes_after_the_unit_was_lost_is_refunded(
    platform,
):
    slots = await publish_clinic(platform, clinic(units=1))
    clock = manual_clock(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    clock.advance(minutes=14)
    await platform.gateway.pay(order.order_no, channel="self_pay")  # paid; notice lost on the way
    clock.advance(minutes=10)
    assert await platform.bookings.expire_due() == 1  # the unit went back to the pool
    _, other, _ = await confirmed_booking(platform, slots[0])  # and someone else booked it

    # The gateway re-sends its notice (same notification, fresh signature).
    outcome = await pay(platform, order.order_no)

    assert outcome.result == "refunded_late_payment"
    row = await booking_row(platform, booking_id)
    assert row.status == "expired"
    assert row.paid is True
    async with platform.ports.sessions() as session:
        refund = await session.scalar(select(RefundRow).where(RefundRow.booking_id == booking_id))
        assert (await session.get(PaymentOrderRow, order.order_no)).status == "refunded"
    assert refund.reason == "paid_after_expiry"
    assert refund.amount_cents == 3000
    assert await platform.bookings.process_refund(refund.refund_no) is True
    gateway_order = await platform.gateway.query_order(order.order_no)
    assert gateway_order.status == "refunded"
    assert gateway_order.refunded_cents == 3000
    # The winner keeps the one unit: SQL and Redis agree.
    assert (await slot_row(platform, slots[0])).online_booked == 1
    assert (await counts(platform, slots[0])).booked == 1
    assert (await booking_row(platform, other)).status == "confirmed"


async def test_a_notice_within_the_grace_after_the_order_expired_still_books(platform):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    clock.advance(minutes=14, seconds=59)
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    clock.advance(minutes=1, seconds=30)  # the order has expired, the grace has not

    outcome = await platform.bookings.handle_payment_notice(headers, body)

    assert outcome.result == "confirmed"
    assert (await booking_row(platform, booking_id)).status == "confirmed"


async def test_cancelling_a_paid_booking_before_the_deadline_refunds_it_and_returns_the_unit_late(
    platform,
):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    full = await available(platform, slots[0])
    account, booking_id, order = await confirmed_booking(platform, slots[0])
    assert await available(platform, slots[0]) == full - 1

    cancelled = await platform.bookings.cancel(account_id=account, booking_id=booking_id)

    assert cancelled.status is BookingStatus.CANCELLED_BY_PATIENT
    row = await booking_row(platform, booking_id)
    assert row.status == "cancelled_by_patient"
    assert row.unit_returns_at is not None
    delay = (row.unit_returns_at - clock.now()).total_seconds()
    assert 60 <= delay <= 120  # the hospital's cancel_return_delay_seconds
    assert (await slot_row(platform, slots[0])).online_booked == 0
    snap = await counts(platform, slots[0])
    assert (snap.booked, snap.returning, snap.available) == (0, 1, full - 1)

    # The refund: a pending row, processed by its job, visible at the gateway.
    async with platform.ports.sessions() as session:
        refund = await session.scalar(select(RefundRow).where(RefundRow.booking_id == booking_id))
    assert refund.status == "pending"
    assert refund.amount_cents == 3000
    assert await platform.bookings.process_refund(refund.refund_no) is True
    assert await platform.bookings.process_refund(refund.refund_no) is False  # once only
    async with platform.ports.sessions() as session:
        refund = await session.get(RefundRow, refund.refund_no)
        assert (await session.get(PaymentOrderRow, order.order_no)).status == "refunded"
    assert refund.status == "succeeded"
    assert refund.refunded_at is not None
    gateway_order = await platform.gateway.query_order(order.order_no)
    assert gateway_order.status == "refunded"
    assert gateway_order.refunded_cents == 3000

    # The unit stays out of the public pool for the randomised delay, then comes back.
    clock.advance(seconds=59)
    assert await available(platform, slots[0]) == full - 1
    clock.set(row.unit_returns_at - timedelta(milliseconds=1))
    assert await available(platform, slots[0]) == full - 1
    clock.set(row.unit_returns_at)
    assert await available(platform, slots[0]) == full
    topics = await outbox_topics(platform)
    assert topics["booking.cancelled_by_patient"] == topics["payment.refunded"] == 1


async def test_cancelling_an_unpaid_booking_refunds_nothing(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    account, booking_id, order = await confirmed_booking(platform, slots[0])
    assert order is None
    await platform.bookings.cancel(account_id=account, booking_id=booking_id)
    assert await platform.bookings.pending_refunds() == []
    assert (await slot_row(platform, slots[0])).online_booked == 0


async def test_the_cutoff_moves_unsold_online_units_to_the_on_site_quota(platform):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    session_id = await session_of(platform, slots[0])
    _, sold, _ = await confirmed_booking(platform, slots[0])
    async with platform.ports.sessions() as s:
        cutoff_at = (await s.get(SessionRow, session_id)).cutoff_at
    assert cutoff_at == at_local(SESSION_DAY, 6)  # two hours before the 08:00 start

    clock.set(cutoff_at - timedelta(minutes=5))
    assert await platform.supply.run_cutoffs() == 0  # not yet
    _account, _, _ = await held_with_patient(platform, slots[1])  # live across the cut-off
    clock.set(cutoff_at)

    moved = await platform.supply.run_cutoffs()

    assert moved == 8 * 4 - 2
    async with platform.ports.sessions() as s:
        rows = {r.id: r for r in (await s.scalars(select(SlotRow))).all()}
        # A unit still held online keeps the session's cut-off open until the hold ends.
        assert (await s.get(SessionRow, session_id)).cutoff_done is False
    for slot_id in slots:
        row, snap = rows[slot_id], await counts(platform, slot_id)
        kept = 1 if slot_id in slots[:2] else 0
        assert (row.online_quota, row.offline_quota) == (kept, 4 - kept)
        assert (snap.capacity, snap.available, snap.status) == (kept, 0, "closed")
    assert (await booking_row(platform, sold)).status == "confirmed"
    other = await new_account(platform)
    await assert_refused(
        platform,
        "SLOT_CLOSED",
        platform.bookings.hold(account_id=other, slot_id=slots[5], idempotency_key="late"),
    )

    clock.advance(minutes=10)  # the held unit's hold runs out after the cut-off
    assert await platform.supply.run_cutoffs() == 1  # it goes on site, not back online
    async with platform.ports.sessions() as s:
        assert (await s.get(SessionRow, session_id)).cutoff_done is True
        assert (await s.get(SlotRow, slots[1])).offline_quota == 4
    assert await platform.supply.run_cutoffs() == 0  # done
    assert (await outbox_topics(platform))["session.cutoff"] == 2


async def test_a_notice_whose_processing_failed_is_processed_when_sent_again(platform, tmp_path):
    """The notice id is recorded with its outcome: a failure is not later taken for a replay."""
    from guahao.platform.inventory import RedisInventory

    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")

    working = platform.ports.inventory
    unreachable = aioredis.Redis(unix_socket_path=str(tmp_path / "no-redis-here.sock"))
    platform.ports.inventory = RedisInventory(unreachable)  # Redis is down for this delivery
    try:
        with pytest.raises(GuahaoError) as failed:
            await platform.bookings.handle_payment_notice(headers, body)
        assert failed.value.code == "INVENTORY_UNAVAILABLE"
    finally:
        platform.ports.inventory = working
        await unreachable.aclose()
    assert (await booking_row(platform, booking_id)).status == BookingStatus.AWAITING_PAYMENT.value

    outcome = await platform.bookings.handle_payment_notice(headers, body)  # the gateway retries
    assert outcome.result == "confirmed"
    assert (await booking_row(platform, booking_id)).status == BookingStatus.CONFIRMED.value
    assert (await counts(platform, slots[0])).booked == 1

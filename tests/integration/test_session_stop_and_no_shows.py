"""The hospital's side of a session: stopping it (停诊) and marking no-shows (爽约) after it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import (
    NotificationRow,
    PaymentOrderRow,
    RefundRow,
    SessionRow,
    SlotRow,
)
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    hold,
    manual_clock,
    new_account,
    outbox_topics,
    publish_clinic,
    session_of,
)


async def notifications_of(platform, account_id: str) -> list[str]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationRow.template)
                    .where(NotificationRow.account_id == account_id)
                    .order_by(NotificationRow.created_at, NotificationRow.template)
                )
            ).all()
        )


async def another_hospitals_slot(platform) -> str:
    """A slot of a second hospital (same day), for rebooking elsewhere."""
    async with platform.ports.sessions() as session:
        known = set((await session.scalars(select(SlotRow.id))).all())
    everything = await publish_clinic(platform, clinic(code="h2"))
    return next(s for s in everything if s not in known)


async def test_stopping_a_session_cancels_every_live_booking_refunds_and_tells_each_account(
    platform,
):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY))
    session_id = await session_of(platform, slots[0])
    holder, _, held = await held_with_patient(platform, slots[0])
    payer, _, awaiting = await held_with_patient(platform, slots[1])
    _, order = await platform.bookings.submit(
        account_id=payer, booking_id=awaiting, channel="self_pay"
    )
    paid_account, paid, paid_order = await confirmed_booking(platform, slots[2])
    insured_account, insured, no_order = await confirmed_booking(
        platform, slots[3], channel="insurance"
    )
    assert no_order is None
    accounts = {held: holder, awaiting: payer, paid: paid_account, insured: insured_account}

    ended = await platform.bookings.stop_session(session_id, reason="医生临时停诊")

    assert set(ended) == set(accounts)
    for booking_id in accounts:
        row = await booking_row(platform, booking_id)
        assert (row.status, row.end_reason) == ("cancelled_by_hospital", "session_stopped")
    async with platform.ports.sessions() as session:
        sess = await session.get(SessionRow, session_id)
        assert (sess.status, sess.stop_reason) == ("stopped", "医生临时停诊")
        slot_rows = (
            await session.scalars(select(SlotRow).where(SlotRow.session_id == session_id))
        ).all()
        refunds = (await session.scalars(select(RefundRow))).all()
        assert (await session.get(PaymentOrderRow, order.order_no)).status == "closed"
    assert {(s.status, s.online_booked) for s in slot_rows} == {("stopped", 0)}
    # Only the paid booking is refunded, in full; the open order can no longer be paid.
    assert [(r.booking_id, r.amount_cents, r.reason) for r in refunds] == [
        (paid, 3000, "session_stopped")
    ]
    assert (await platform.gateway.query_order(order.order_no)).status == "closed"
    assert await platform.bookings.process_refund(refunds[0].refund_no) is True
    assert (await platform.gateway.query_order(paid_order.order_no)).status == "refunded"

    # The units are not handed to the public: the pool agrees with SQL and refuses holds.
    for slot_id in slots:
        snap = await counts(platform, slot_id)
        assert (snap.status, snap.booked, snap.held) == ("stopped", 0, 0)
    stranger = await new_account(platform)
    await assert_refused(platform, "SLOT_CLOSED", hold(platform, stranger, slots[0]))
    availability = await platform.queries.doctor_availability(
        sess.doctor_id, start=SESSION_DAY, end=SESSION_DAY
    )
    assert [(s.status, s.available) for s in availability] == [("stopped", 0)]
    assert {s.available for s in availability[0].slots} == {0}

    # Each account hears of it once the outbox is dispatched; the refund is announced too.
    # Patients the hospital turned away also go first in the waitlist, and are told so.
    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()
    for booking_id, account_id in accounts.items():
        expected = {"booking.cancelled_by_hospital"}
        if (await booking_row(platform, booking_id)).patient_id is not None:
            expected |= {"waitlist.joined"}
        if booking_id == paid:
            expected |= {"booking.confirmed", "payment.refunded"}
        if booking_id == insured:
            expected |= {"booking.confirmed"}
        assert set(await notifications_of(platform, account_id)) == expected
    topics = await outbox_topics(platform)
    assert topics["booking.cancelled_by_hospital"] == 4
    assert topics["session.stopped"] == 1


async def test_accounts_whose_holds_were_stopped_may_book_elsewhere_at_once(platform):
    slots = await publish_clinic(platform)
    session_id = await session_of(platform, slots[0])
    holder, _, _ = await held_with_patient(platform, slots[0])
    payer, _, awaiting = await held_with_patient(platform, slots[1])
    await platform.bookings.submit(account_id=payer, booking_id=awaiting, channel="self_pay")
    elsewhere = await another_hospitals_slot(platform)

    await platform.bookings.stop_session(session_id, reason="停诊")

    for account_id in (holder, payer):  # not "you already have an unfinished hold"
        rebooked = await hold(platform, account_id, elsewhere)
        assert rebooked.status.value == "held"
        await platform.bookings.leave(account_id=account_id, booking_id=rebooked.id)


async def test_a_payment_arriving_after_the_session_was_stopped_is_refunded(platform):
    slots = await publish_clinic(platform)
    payer, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=payer, booking_id=booking_id, channel="self_pay"
    )
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    await platform.bookings.stop_session(await session_of(platform, slots[0]), reason="停诊")

    outcome = await platform.bookings.handle_payment_notice(headers, body)

    assert outcome.result == "refunded_late_payment"
    assert (await booking_row(platform, booking_id)).status == "cancelled_by_hospital"
    assert len(await platform.bookings.pending_refunds()) == 1


async def test_after_a_session_ends_confirmed_bookings_not_checked_in_are_no_shows(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    clock = manual_clock(platform)
    session_id = await session_of(platform, slots[0])
    came_account, came, _ = await confirmed_booking(platform, slots[0])
    missed_account, missed, _ = await confirmed_booking(platform, slots[1])
    async with platform.ports.sessions() as session:
        ends_at = (await session.get(SessionRow, session_id)).ends_at

    clock.set(ends_at - timedelta(hours=3, minutes=50))
    await platform.bookings.check_in(came)
    clock.set(ends_at - timedelta(seconds=1))
    assert await platform.bookings.mark_due_no_shows() == 0  # not over yet
    clock.set(ends_at)

    assert await platform.bookings.mark_due_no_shows() == 1

    assert (await booking_row(platform, missed)).status == "no_show"
    assert (await booking_row(platform, came)).status == "checked_in"
    assert await platform.bookings.mark_due_no_shows() == 0  # each session is examined once
    async with platform.ports.sessions() as session:
        sess = await session.get(SessionRow, session_id)
        assert (sess.status, sess.no_shows_marked) == ("finished", True)
    topics = await outbox_topics(platform)
    assert topics["booking.no_show"] == topics["booking.checked_in"] == 1
    await platform.dispatcher.dispatch_pending()
    assert "booking.no_show" in await notifications_of(platform, missed_account)
    assert "booking.no_show" not in await notifications_of(platform, came_account)


async def test_a_stopped_session_has_no_no_shows(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    session_id = await session_of(platform, slots[0])
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    await platform.bookings.stop_session(session_id, reason="停诊")
    manual_clock(platform).set(
        (await booking_row(platform, booking_id)).hold_expires_at + timedelta(days=3)
    )
    assert await platform.bookings.mark_due_no_shows() == 0
    assert (await booking_row(platform, booking_id)).status == "cancelled_by_hospital"

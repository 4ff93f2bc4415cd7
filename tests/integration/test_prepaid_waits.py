"""Fair to patients: prepaid waits (候补预付) and nothing the platform started counting against
the patient, on both databases, a real Redis and the sandbox gateway, with a manual clock.

Where the hospital takes payment online, a wait is paid for when it is joined; a grant then
confirms at once with that money, and a wait that ends unserved gives it all back. After each
story the sandbox gateway's ledger balances: what it took, less what it gave back, is exactly
the fees of the patient's confirmed bookings.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guahao.platform.hospitals import PaymentMode, Period
from guahao.platform.persistence.tables import (
    BookingRow,
    PaymentOrderRow,
    SessionRow,
    StrikeRow,
    WaitPrepaymentRow,
)
from tests.fixtures.platforms import SESSION_DAY, new_account, new_patient, pay
from tests.integration.offer_scenarios import (
    THURSDAY,
    advance,
    ban,
    bookings_of,
    deliver,
    entry,
    messages,
    one_slot_clinic,
    person_of,
    publish_week,
    sell_out,
    session_on,
    slots_of,
)

ONLINE = PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
FEE = 3000  # one_slot_clinic's fee
TWO_DAYS = ((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))


async def sold_out(platform, mode=ONLINE, sessions=None):
    spec = one_slot_clinic(mode) if sessions is None else one_slot_clinic(mode, sessions=sessions)
    await publish_week(platform, spec)
    sess = await session_on(platform, SESSION_DAY)
    booked = await sell_out(platform, sess.id)
    return sess, booked


async def prepaid_waiter(platform, session_id: str, *, paid: bool = True):
    """A new account whose patient waits for the session, its prepayment paid (or not)."""
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account, patient_id=patient, scope="session", session_id=session_id
    )
    assert wait.prepayment is not None
    if paid:
        outcome = await pay(platform, wait.prepayment.order_no)
        assert outcome.result == "prepaid"
    return account, patient, wait


async def settle(platform) -> None:
    """Deliver every event, then pay out the refunds the platform decided."""
    await deliver(platform)
    for refund_no in await platform.bookings.pending_refunds():
        await platform.bookings.process_refund(refund_no)
    await platform.waitlist.prepayments.pay_out_due()


async def ledger(platform, account_id: str) -> tuple[int, int]:
    """(what the gateway holds for this account: taken less given back, the fees of its
    confirmed paid bookings)."""
    async with platform.ports.sessions() as session:
        orders = set(
            (
                await session.scalars(
                    select(WaitPrepaymentRow.order_no).where(
                        WaitPrepaymentRow.account_id == account_id
                    )
                )
            ).all()
        )
        orders |= set(
            (
                await session.scalars(
                    select(PaymentOrderRow.order_no)
                    .join(BookingRow, BookingRow.id == PaymentOrderRow.booking_id)
                    .where(BookingRow.account_id == account_id)
                )
            ).all()
        )
        fees = sum(
            (
                await session.scalars(
                    select(BookingRow.fee_cents).where(
                        BookingRow.account_id == account_id,
                        BookingRow.status == "confirmed",
                        BookingRow.paid.is_(True),
                    )
                )
            ).all()
        )
    held = 0
    for order_no in orders:
        order = await platform.gateway.query_order(order_no)
        if order.status in ("paid", "refunded", "partially_refunded"):
            held += order.amount_cents - order.refunded_cents
    return held, fees


async def strikes_of(platform, patient_id: str) -> list[str]:
    person_id = await person_of(platform, patient_id)
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(StrikeRow.kind).where(StrikeRow.person_id == person_id)
                )
            ).all()
        )


async def test_a_prepaid_wait_is_booked_and_confirmed_with_no_payment_step(platform):
    sess, [(holder, booking)] = await sold_out(platform)
    account, _, wait = await prepaid_waiter(platform, sess.id)
    assert wait.prepayment.amount_cents == FEE
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await settle(platform)
    [granted] = await bookings_of(platform, account)
    assert (granted.kind, granted.status, granted.paid) == ("waitlist", "confirmed", True)
    assert granted.origin == "patient_wait"
    # The money paid when joining is the booking's payment: same order, nothing else to pay.
    assert granted.payment_order_no == wait.prepayment.order_no
    assert not [
        m for m in await messages(platform, account) if m.template == "booking.awaiting_payment"
    ]
    assert (await entry(platform, wait.id)).status == "fulfilled"
    assert await ledger(platform, account) == (FEE, FEE)
    # A later 退号 refunds it the way every paid booking is refunded.
    advance(platform, minutes=61)
    await platform.bookings.cancel(account_id=account, booking_id=granted.id)
    await settle(platform)
    assert await ledger(platform, account) == (0, 0)


async def test_a_wait_the_patient_leaves_is_refunded_in_full(platform):
    sess, _ = await sold_out(platform)
    account, _, wait = await prepaid_waiter(platform, sess.id)
    assert await ledger(platform, account) == (FEE, 0)
    await platform.waitlist.leave(account_id=account, entry_id=wait.id)
    await settle(platform)
    async with platform.ports.sessions() as session:
        prepaid = await session.get(WaitPrepaymentRow, wait.id)
    assert (prepaid.status, prepaid.refunded_cents) == ("refunded", FEE)
    assert prepaid.refunded_at is not None
    assert (await platform.gateway.query_order(prepaid.order_no)).status == "refunded"
    assert await ledger(platform, account) == (0, 0)
    told = [
        m for m in await messages(platform, account) if m.template == "waitlist.prepayment_refunded"
    ]
    assert len(told) == 1
    assert "30.00" in told[0].params["zh"]


async def test_a_wait_whose_time_runs_out_is_refunded_in_full(platform):
    sess, _ = await sold_out(platform)
    account, _, wait = await prepaid_waiter(platform, sess.id)
    platform.ports.clock.set(sess.starts_at + timedelta(minutes=1))  # type: ignore[attr-defined]
    await platform.waitlist.serve_due()
    await settle(platform)
    ended = await entry(platform, wait.id)
    assert (ended.status, ended.end_reason) == ("expired", "session_started")
    assert await ledger(platform, account) == (0, 0)


async def test_a_banned_waiter_is_removed_and_refunded(platform):
    sess, [(holder, booking)] = await sold_out(platform)
    first, first_patient, first_wait = await prepaid_waiter(platform, sess.id)
    advance(platform, seconds=1)
    second, _, _ = await prepaid_waiter(platform, sess.id)
    await ban(platform, first_patient)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await settle(platform)
    removed = await entry(platform, first_wait.id)
    assert (removed.status, removed.end_reason) == ("removed", "patient_blacklisted")
    assert await bookings_of(platform, first) == []
    assert await ledger(platform, first) == (0, 0)
    [granted] = await bookings_of(platform, second)
    assert granted.status == "confirmed"
    assert await ledger(platform, second) == (FEE, FEE)


async def test_a_stopped_session_ends_its_prepaid_waits_and_refunds_them(platform):
    sess, _ = await sold_out(platform)
    account, _, wait = await prepaid_waiter(platform, sess.id)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    await settle(platform)
    ended = await entry(platform, wait.id)
    assert (ended.status, ended.end_reason) == ("cancelled", "session_stopped")
    assert await ledger(platform, account) == (0, 0)


async def test_an_unpaid_prepayment_is_never_served_and_its_wait_ends_without_a_strike(platform):
    sess, [(holder, booking)] = await sold_out(platform)
    unpaid, unpaid_patient, unpaid_wait = await prepaid_waiter(platform, sess.id, paid=False)
    advance(platform, seconds=1)
    second, _, _ = await prepaid_waiter(platform, sess.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await settle(platform)
    assert await bookings_of(platform, unpaid) == []  # passed over: it has not paid
    [granted] = await bookings_of(platform, second)
    assert granted.status == "confirmed"
    advance(platform, minutes=31)
    await platform.waitlist.serve_due()
    await settle(platform)
    ended = await entry(platform, unpaid_wait.id)
    assert (ended.status, ended.end_reason) == ("expired", "prepayment_not_paid")
    order = await platform.gateway.query_order(unpaid_wait.prepayment.order_no)
    assert order.status == "closed"
    assert await strikes_of(platform, unpaid_patient) == []


async def test_a_department_wait_pays_the_highest_fee_and_gets_the_difference_back(platform):
    sess, [(holder, booking)] = await sold_out(platform, sessions=TWO_DAYS)
    thursday = await session_on(platform, THURSDAY)
    async with platform.ports.sessions() as session, session.begin():
        # A dearer session the wait also covers (another day of the same department).
        dear = await session.get(SessionRow, thursday.id)
        dear.fee_cents = 5000
    await sell_out(platform, thursday.id)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account,
        patient_id=patient,
        scope="department",
        department_id=sess.department_id,
        date_from=SESSION_DAY,
        date_to=THURSDAY,
    )
    assert wait.prepayment.amount_cents == 5000
    await pay(platform, wait.prepayment.order_no)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await settle(platform)
    [granted] = await bookings_of(platform, account)
    assert (granted.status, granted.fee_cents) == ("confirmed", FEE)
    async with platform.ports.sessions() as session:
        prepaid = await session.get(WaitPrepaymentRow, wait.id)
    assert (prepaid.applied_cents, prepaid.refunded_cents) == (FEE, 2000)
    assert await ledger(platform, account) == (FEE, FEE)


async def test_a_wait_where_nothing_is_paid_online_has_no_prepayment_and_confirms_at_once(
    platform,
):
    sess, [(holder, booking)] = await sold_out(platform, PaymentMode.PAY_AT_HOSPITAL)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account, patient_id=patient, scope="session", session_id=sess.id
    )
    assert wait.prepayment is None
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await settle(platform)
    [granted] = await bookings_of(platform, account)
    assert (granted.status, granted.paid) == ("confirmed", False)
    assert await slots_of(platform, sess.id)

"""优先改约: after the hospital cancels or stops, an offer the patient answers, never a booking
made for them; on both databases, a real Redis and the sandbox gateway, with a manual clock.

The payment is kept while the offer is open and carries over to the accepted unit; declined or
ignored, it is refunded in full and nothing counts against the patient. After each story the
sandbox gateway's ledger balances (see ``test_prepaid_waits.ledger``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import Period
from guahao.platform.persistence.tables import SessionRow
from tests.fixtures.platforms import SESSION_DAY, at_local
from tests.integration.offer_scenarios import (
    THURSDAY,
    advance,
    bookings_of,
    messages,
    one_slot_clinic,
    publish_week,
    sell_out,
    session_on,
    slots_of,
)
from tests.integration.test_prepaid_waits import FEE, ONLINE, ledger, settle, strikes_of

TWO_DAYS = ((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))


async def cancelled_by_hospital(platform, spec=None):
    """A paid booking on Wednesday that the hospital cancels; Thursday has a free unit."""
    await publish_week(platform, spec or one_slot_clinic(ONLINE, sessions=TWO_DAYS))
    sess = await session_on(platform, SESSION_DAY)
    [(account, booking)] = await sell_out(platform, sess.id)
    [held] = await bookings_of(platform, account)
    await platform.bookings.cancel_by_hospital(booking, reason="HIS lost the patient")
    await settle(platform)
    return account, held


async def test_a_hospital_cancellation_brings_an_offer_not_a_booking(platform):
    account, held = await cancelled_by_hospital(platform)
    [offer] = await platform.rebooking.offers(account)
    thursday = await session_on(platform, THURSDAY)
    assert [p.session_id for p in offer.proposals] == [thursday.id]
    assert offer.proposals[0].same_doctor
    assert [b.id for b in await bookings_of(platform, account)] == [held.id]  # nothing booked
    assert await platform.waitlist.waits(account) == []  # and not put in a line either
    # The payment is kept for the offer: nothing refunded yet, the gateway still holds it.
    assert await ledger(platform, account) == (FEE, 0)
    [told] = [m for m in await messages(platform, account) if m.template == "rebooking.offered"]
    assert offer.answer_by in told.params["zh"]


async def test_an_ignored_offer_ends_refunded_in_full_with_no_strike(platform):
    account, held = await cancelled_by_hospital(platform)
    [offer] = await platform.rebooking.offers(account)
    advance(platform, hours=25)
    assert await platform.rebooking.end_due() == 1
    await settle(platform)
    [ended] = await platform.rebooking.offers(account)
    assert ended.status == "expired"
    assert [b.id for b in await bookings_of(platform, account)] == [held.id]
    assert await strikes_of(platform, held.patient_id) == []
    assert await ledger(platform, account) == (0, 0)
    assert offer.id == ended.id


async def test_an_accepted_offer_is_confirmed_with_the_same_payment(platform):
    account, held = await cancelled_by_hospital(platform)
    [offer] = await platform.rebooking.offers(account)
    booking = await platform.rebooking.accept(
        account_id=account, offer_id=offer.id, slot_id=offer.proposals[0].slot_id
    )
    await settle(platform)
    assert (booking.status.value, booking.paid) == ("confirmed", True)
    assert booking.payment_order_no == held.payment_order_no  # no refund-then-pay-again
    assert await ledger(platform, account) == (FEE, FEE)
    [answered] = await platform.rebooking.offers(account)
    assert (answered.status, answered.accepted_booking_id) == ("accepted", booking.id)
    with pytest.raises(GuahaoError) as caught:
        await platform.rebooking.decline(account_id=account, offer_id=offer.id)
    assert caught.value.code == "REBOOKING_OFFER_CLOSED"
    # The carried payment is refunded like any paid booking's when the patient cancels later.
    advance(platform, minutes=1)
    await platform.bookings.cancel(account_id=account, booking_id=booking.id)
    await settle(platform)
    assert await ledger(platform, account) == (0, 0)


async def test_a_cheaper_unit_gives_the_difference_back(platform):
    await publish_week(platform, one_slot_clinic(ONLINE, sessions=TWO_DAYS))
    thursday = await session_on(platform, THURSDAY)
    async with platform.ports.sessions() as session, session.begin():
        cheaper = await session.get(SessionRow, thursday.id)
        cheaper.fee_cents = 1000
    sess = await session_on(platform, SESSION_DAY)
    [(account, booking_id)] = await sell_out(platform, sess.id)
    await platform.bookings.cancel_by_hospital(booking_id, reason="doctor away")
    await settle(platform)
    [offer] = await platform.rebooking.offers(account)
    booking = await platform.rebooking.accept(
        account_id=account, offer_id=offer.id, slot_id=offer.proposals[0].slot_id
    )
    await settle(platform)
    assert booking.fee_cents == 1000
    assert await ledger(platform, account) == (1000, 1000)


async def test_a_declined_offer_is_refunded_at_once(platform):
    account, _ = await cancelled_by_hospital(platform)
    [offer] = await platform.rebooking.offers(account)
    declined = await platform.rebooking.decline(account_id=account, offer_id=offer.id)
    await settle(platform)
    assert declined.status == "declined"
    assert await ledger(platform, account) == (0, 0)
    with pytest.raises(GuahaoError) as caught:
        await platform.rebooking.accept(
            account_id=account, offer_id=offer.id, slot_id=offer.proposals[0].slot_id
        )
    assert caught.value.code == "REBOOKING_OFFER_CLOSED"


async def test_only_proposed_units_can_be_taken(platform):
    account, held = await cancelled_by_hospital(platform)
    [offer] = await platform.rebooking.offers(account)
    with pytest.raises(GuahaoError) as caught:
        await platform.rebooking.accept(account_id=account, offer_id=offer.id, slot_id=held.slot_id)
    assert caught.value.code == "REBOOKING_UNIT_NOT_OFFERED"
    with pytest.raises(GuahaoError) as caught:
        await platform.rebooking.decline(account_id="someone-else", offer_id=offer.id)
    assert caught.value.code == "REBOOKING_OFFER_NOT_FOUND"


async def test_a_stopped_session_offers_its_patients_the_nearest_units(platform):
    await publish_week(platform, one_slot_clinic(ONLINE, sessions=TWO_DAYS))
    sess = await session_on(platform, SESSION_DAY)
    [(account, _)] = await sell_out(platform, sess.id)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    await settle(platform)
    [offer] = await platform.rebooking.offers(account)
    assert offer.proposals[0].date == THURSDAY.isoformat()
    assert await ledger(platform, account) == (FEE, 0)


async def test_the_offer_never_ends_in_the_hospitals_quiet_hours(platform):
    # Cancelled at 01:53 local: 24 h later is 01:53 again, in the night; it ends at 07:00 + 2 h.
    await publish_week(platform, one_slot_clinic(ONLINE, sessions=TWO_DAYS))
    sess = await session_on(platform, SESSION_DAY)
    [(account, booking_id)] = await sell_out(platform, sess.id)
    platform.ports.clock.set(at_local(SESSION_DAY - timedelta(days=1), 1, 53))  # type: ignore[attr-defined]
    await platform.bookings.cancel_by_hospital(booking_id, reason="night batch")
    await settle(platform)
    [offer] = await platform.rebooking.offers(account)
    assert offer.answer_by == f"{SESSION_DAY.isoformat()} 09:00"
    assert await slots_of(platform, sess.id)


async def test_with_nothing_to_propose_the_patient_waits_first_in_line_and_is_refunded(platform):
    await publish_week(platform, one_slot_clinic(ONLINE))  # Wednesdays only: nothing else
    sess = await session_on(platform, SESSION_DAY)
    [(account, booking_id)] = await sell_out(platform, sess.id)
    await platform.bookings.cancel_by_hospital(booking_id, reason="doctor away")
    await settle(platform)
    assert await platform.rebooking.offers(account) == []
    [auto] = await platform.waitlist.waits(account)
    assert auto.priority > 0
    assert await ledger(platform, account) == (0, 0)

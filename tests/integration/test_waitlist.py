"""The waitlist (候补) through time, on both databases and a real Redis, with a manual clock.

A unit freed by 退号 goes to the line before the public; the line is served in order, with the
patients of a stopped session first; a waiter the region's rules refuse is skipped (and a
banned one removed); nothing is given twice, whatever is delivered twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode, Period
from guahao.platform.persistence.tables import PaymentOrderRow
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    at_local,
    counts,
    hold,
    new_account,
    new_patient,
    pay,
)
from tests.integration.offer_scenarios import (
    THURSDAY,
    active_bookings,
    advance,
    ban,
    bookings_of,
    deliver,
    entry,
    messages,
    one_slot_clinic,
    online_booked,
    publish,
    publish_week,
    sell_out,
    session_on,
    set_region_rules,
    slots_of,
)


async def waiter(platform, session_id: str, **kwargs):
    """A new account with a patient waiting for the session; returns (account, patient, wait)."""
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account, patient_id=patient, scope="session", session_id=session_id, **kwargs
    )
    return account, patient, wait


async def sold_out_session(platform, mode=PaymentMode.PAY_AT_HOSPITAL, units=1):
    await publish_week(platform, one_slot_clinic(mode, units=units))
    sess = await session_on(platform, SESSION_DAY)
    booked = await sell_out(platform, sess.id)
    return sess, (await slots_of(platform, sess.id))[0], booked


async def test_a_unit_freed_by_a_cancellation_goes_to_the_first_waiter_before_the_public(
    platform,
):
    sess, slot, [(holder, booking)] = await sold_out_session(platform)
    first, _, first_wait = await waiter(platform, sess.id)
    advance(platform, minutes=1)
    second, _, _ = await waiter(platform, sess.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    # Before any waiter is served, the unit is invisible to the public.
    snap = await counts(platform, slot)
    assert (snap.available, snap.returning) == (0, 1)
    await deliver(platform)
    [granted] = await bookings_of(platform, first)
    assert (granted.kind, granted.status, granted.slot_id) == ("waitlist", "confirmed", slot)
    assert (await entry(platform, first_wait.id)).status == "fulfilled"
    assert await bookings_of(platform, second) == []
    snap = await counts(platform, slot)
    assert (snap.booked, snap.returning, snap.available) == (1, 0, 0)
    assert await online_booked(platform, slot) == 1
    # Nothing comes back to the public when the random return time passes.
    advance(platform, minutes=10)
    stranger = await new_account(platform)
    await assert_refused(platform, "SLOT_SOLD_OUT", hold(platform, stranger, slot))
    assert {"waitlist.granted", "booking.confirmed"} <= {
        m.template for m in await messages(platform, first)
    }


async def test_without_prepaid_waits_a_waiter_is_held_and_told_to_pay_by_a_deadline(platform):
    await set_region_rules(platform, {"waitlist": {"prepay_waits": False}})
    sess, slot, [(holder, booking)] = await sold_out_session(
        platform, PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
    )
    account, _, _ = await waiter(platform, sess.id)
    cancelled_at = platform.ports.clock.now()
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    [offer] = await bookings_of(platform, account)
    assert (offer.kind, offer.status) == ("waitlist", "awaiting_payment")
    minutes = (await platform.waitlist.rules_for(sess.hospital_id)).offer_payment_minutes
    assert offer.payment_expires_at == cancelled_at + timedelta(minutes=minutes)
    told = [
        m for m in await messages(platform, account) if m.template == "booking.awaiting_payment"
    ]
    assert len(told) == 1
    # The deadline in the hospital's wall time (Asia/Shanghai, UTC+8).
    local = offer.payment_expires_at + timedelta(hours=8)
    assert local.strftime("%Y-%m-%d %H:%M") in told[0].params["zh"]
    assert told[0].params["pay_by"] == local.strftime("%Y-%m-%d %H:%M")
    assert told[0].params["pay_url"]
    advance(platform, minutes=minutes - 1)
    outcome = await pay(platform, offer.payment_order_no)
    assert outcome.result == "confirmed"
    assert await online_booked(platform, slot) == 1
    assert (await counts(platform, slot)).booked == 1


async def test_an_unpaid_offer_ends_its_wait_and_the_unit_goes_to_the_next_waiter(platform):
    await set_region_rules(platform, {"waitlist": {"prepay_waits": False}})
    sess, slot, [(holder, booking)] = await sold_out_session(
        platform, PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
    )
    first, _, first_wait = await waiter(platform, sess.id)
    advance(platform, seconds=1)
    second, _, _ = await waiter(platform, sess.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    [offer] = await bookings_of(platform, first)
    advance(platform, minutes=40)  # past the order's end and its grace
    assert await platform.bookings.expire_due() == 1
    await deliver(platform)
    assert (await entry(platform, first_wait.id)).status == "expired"
    [next_offer] = await bookings_of(platform, second)
    assert (next_offer.kind, next_offer.status) == ("waitlist", "awaiting_payment")
    async with platform.ports.sessions() as session:
        order = await session.get(PaymentOrderRow, offer.payment_order_no)
        assert order is not None
        assert order.status == "expired"
    assert await active_bookings(platform, slot) == 1


async def test_the_person_who_cancelled_cannot_take_the_same_unit_back(platform):
    sess, slot, [(holder, booking)] = await sold_out_session(platform)
    [held] = await bookings_of(platform, holder)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    # The canceller waits for the session at once (the session is sold out: the unit returns).
    own_wait = await platform.waitlist.join(
        account_id=holder, patient_id=held.patient_id, scope="session", session_id=sess.id
    )
    await deliver(platform)
    assert (await entry(platform, own_wait.id)).status == "waiting"
    assert len(await bookings_of(platform, holder)) == 1
    # With no other waiter the unit goes public after its random delay (60–120 s here).
    assert (await counts(platform, slot)).available == 0
    advance(platform, seconds=121)
    assert (await counts(platform, slot)).available == 1


async def test_without_a_waiter_the_unit_returns_to_the_public_after_its_random_delay(platform):
    _sess, slot, [(holder, booking)] = await sold_out_session(platform)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    assert (await counts(platform, slot)).available == 0
    advance(platform, seconds=121)
    assert (await counts(platform, slot)).available == 1
    assert await platform.waitlist.serve_due() == 0


async def test_a_waiter_joining_after_the_return_time_gets_nothing_from_that_unit(platform):
    sess, slot, [(holder, booking)] = await sold_out_session(platform)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    advance(platform, seconds=121)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_UNITS_AVAILABLE",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )
    assert await platform.waitlist.serve_returned_unit(booking) is None
    assert (await counts(platform, slot)).available == 1


async def test_the_same_cancellation_delivered_twice_grants_the_unit_once(platform):
    sess, slot, [(holder, booking)] = await sold_out_session(platform)
    first, _, _ = await waiter(platform, sess.id)
    second, _, _ = await waiter(platform, sess.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    results = await asyncio.gather(
        platform.waitlist.serve_returned_unit(booking),
        platform.waitlist.serve_returned_unit(booking),
    )
    again = await platform.waitlist.serve_returned_unit(booking)
    granted = {r for r in [*results, again] if r is not None}
    assert len(granted) == 1
    await deliver(platform)
    assert len(await bookings_of(platform, first)) + len(await bookings_of(platform, second)) == 1
    assert await online_booked(platform, slot) == 1
    assert (await counts(platform, slot)).booked == 1


async def test_patients_of_a_stopped_session_join_the_line_first_and_are_served_first(platform):
    spec = one_slot_clinic(
        sessions=((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))
    )
    await publish_week(platform, spec)
    wednesday = await session_on(platform, SESSION_DAY)
    thursday = await session_on(platform, THURSDAY)
    [(stopped_account, stopped_booking)] = await sell_out(platform, wednesday.id)
    [(holder, thursday_booking)] = await sell_out(platform, thursday.id)
    early, _, early_wait = await waiter(platform, thursday.id)
    advance(platform, minutes=30)
    await platform.bookings.stop_session(wednesday.id, reason="doctor ill")
    await deliver(platform)
    [auto] = [w for w in await platform.waitlist.waits(stopped_account)]
    priority = (await platform.waitlist.rules_for(wednesday.hospital_id)).hospital_stop_priority
    assert (auto.scope, auto.priority, auto.status) == ("department", priority, "waiting")
    assert (auto.date_from, auto.date_to) == (SESSION_DAY, SESSION_DAY + timedelta(days=7))
    assert auto.position == 1
    assert (await platform.waitlist.waits(early))[0].position == 2
    told = [m.template for m in await messages(platform, stopped_account)]
    assert "waitlist.joined" in told
    # Delivered twice, the stop adds no second wait.
    assert await platform.waitlist.on_session_stopped(wednesday.id, [stopped_booking]) == 0
    await platform.bookings.cancel(account_id=holder, booking_id=thursday_booking)
    await deliver(platform)
    [rebooked] = [b for b in await bookings_of(platform, stopped_account) if b.kind == "waitlist"]
    assert (rebooked.session_id, rebooked.status) == (thursday.id, "confirmed")
    assert (await entry(platform, early_wait.id)).status == "waiting"


async def test_a_stop_ends_the_waits_for_that_session(platform):
    sess, _slot, _ = await sold_out_session(platform)
    account, _, wait = await waiter(platform, sess.id)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    await deliver(platform)
    ended = await entry(platform, wait.id)
    assert (ended.status, ended.end_reason) == ("cancelled", "session_stopped")
    assert "waitlist.ended" in [m.template for m in await messages(platform, account)]


async def test_a_banned_waiter_is_removed_and_the_next_waiter_is_served(platform):
    sess, _slot, [(holder, booking)] = await sold_out_session(platform)
    first, first_patient, first_wait = await waiter(platform, sess.id)
    advance(platform, seconds=1)
    second, _, _ = await waiter(platform, sess.id)
    await ban(platform, first_patient)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    removed = await entry(platform, first_wait.id)
    assert (removed.status, removed.end_reason) == ("removed", "patient_blacklisted")
    assert await bookings_of(platform, first) == []
    [granted] = await bookings_of(platform, second)
    assert granted.status == "confirmed"


async def test_a_waiter_over_a_booking_limit_is_skipped_and_keeps_waiting(platform):
    spec = one_slot_clinic(
        sessions=(
            (SESSION_DAY.weekday(), Period.MORNING),
            (SESSION_DAY.weekday(), Period.AFTERNOON),
        )
    )
    await publish_week(platform, spec)
    morning = await session_on(platform, SESSION_DAY)
    afternoon = await session_on(platform, SESSION_DAY, "afternoon")
    [(holder, booking)] = await sell_out(platform, morning.id)
    [(busy, _)] = await sell_out(platform, afternoon.id)
    [afternoon_booking] = await bookings_of(platform, busy)
    # ``busy`` already sees this department that day: one a day per department by default.
    busy_wait = await platform.waitlist.join(
        account_id=busy,
        patient_id=afternoon_booking.patient_id,
        scope="session",
        session_id=morning.id,
    )
    advance(platform, seconds=1)
    other, _, _ = await waiter(platform, morning.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    assert (await entry(platform, busy_wait.id)).status == "waiting"
    assert [b.kind for b in await bookings_of(platform, other)] == ["waitlist"]


async def test_a_unit_freed_by_an_expired_hold_is_offered_to_the_line(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    stranger = await new_account(platform)
    await hold(platform, stranger, slot)
    account, _, wait = await waiter(platform, sess.id)
    advance(platform, minutes=11)  # the stranger's hold ran out
    await platform.bookings.expire_due()
    await deliver(platform)
    [granted] = await bookings_of(platform, account)
    assert (granted.status, granted.kind) == ("confirmed", "waitlist")
    assert (await entry(platform, wait.id)).status == "fulfilled"
    assert await platform.waitlist.serve_due() == 0


async def test_the_sweep_offers_available_units_to_wide_waits(platform):
    """A department wait over several days is served from any of its sessions with a unit
    free (here a hold that ran out while nobody delivered its event)."""
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    stranger = await new_account(platform)
    await hold(platform, stranger, slot)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account,
        patient_id=patient,
        scope="department",
        department_id=sess.department_id,
        date_from=SESSION_DAY,
        date_to=SESSION_DAY + timedelta(days=3),
    )
    assert wait.position == 1
    advance(platform, minutes=11)
    assert await platform.waitlist.serve_due() == 1
    [granted] = await bookings_of(platform, account)
    assert granted.session_id == sess.id


async def test_the_position_in_line_is_visible_and_moves_up(platform):
    sess, _slot, _ = await sold_out_session(platform)
    line = []
    for _ in range(3):
        line.append(await waiter(platform, sess.id))
        advance(platform, seconds=1)
    assert [(await platform.waitlist.waits(a))[0].position for a, _, _ in line] == [1, 2, 3]
    first_account, _, first_wait = line[0]
    left = await platform.waitlist.leave(account_id=first_account, entry_id=first_wait.id)
    assert (left.status, left.position) == ("cancelled", None)
    assert [(await platform.waitlist.waits(a))[0].position for a, _, _ in line[1:]] == [1, 2]


async def test_waits_whose_session_started_expire(platform):
    sess, _slot, _ = await sold_out_session(platform)
    _, _, wait = await waiter(platform, sess.id)
    manual = platform.ports.clock
    manual.set(sess.starts_at + timedelta(minutes=1))  # type: ignore[attr-defined]
    await platform.waitlist.serve_due()
    assert (await entry(platform, wait.id)).status == "expired"


# ------------------------------------------------------------------ refusals of join and leave


async def test_a_session_with_units_on_sale_cannot_be_waited_for(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_UNITS_AVAILABLE",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_a_session_not_yet_released_cannot_be_waited_for(platform):
    spec = one_slot_clinic()
    later = SESSION_DAY + timedelta(days=7)
    await publish(platform, spec, [later])
    sess = await session_on(platform, later)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_SESSION_NOT_RELEASED",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_a_stopped_session_cannot_be_waited_for(platform):
    sess, _slot, _ = await sold_out_session(platform)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_SESSION_CLOSED",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_a_patient_booked_in_the_session_cannot_wait_for_it(platform):
    sess, _slot, [(holder, _)] = await sold_out_session(platform)
    [booked] = await bookings_of(platform, holder)
    await assert_refused(
        platform,
        "PATIENT_ALREADY_BOOKED_SESSION",
        platform.waitlist.join(
            account_id=holder, patient_id=booked.patient_id, scope="session", session_id=sess.id
        ),
    )


async def test_a_patient_waits_once_for_the_same_thing(platform):
    sess, _slot, _ = await sold_out_session(platform)
    account, patient, _ = await waiter(platform, sess.id)
    await assert_refused(
        platform,
        "WAITLIST_ALREADY_WAITING",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_a_patient_holds_at_most_the_allowed_number_of_waits(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    limit = (await platform.waitlist.rules_for(sess.hospital_id)).max_waits_per_patient
    for n in range(limit):
        await platform.waitlist.join(
            account_id=account,
            patient_id=patient,
            scope="department",
            department_id=sess.department_id,
            date_from=SESSION_DAY + timedelta(days=n),
            date_to=SESSION_DAY + timedelta(days=n),
        )
    error = await assert_refused(
        platform,
        "WAITLIST_LIMIT_REACHED",
        platform.waitlist.join(
            account_id=account,
            patient_id=patient,
            scope="doctor",
            doctor_id=sess.doctor_id,
            date_from=SESSION_DAY,
            date_to=SESSION_DAY,
        ),
    )
    assert error.detail["limit"] == limit


@pytest.mark.parametrize(
    "shape",
    [
        {"scope": "session"},
        {"scope": "session", "session_id": "x", "department_id": "y"},
        {"scope": "doctor", "date_from": SESSION_DAY, "date_to": SESSION_DAY},
        {"scope": "department", "department_id": "d"},
        {
            "scope": "department",
            "session_id": "s",
            "date_from": SESSION_DAY,
            "date_to": SESSION_DAY,
        },
    ],
    ids=["session-without-id", "session-with-extra", "doctor-without-id", "no-dates", "mixed"],
)
async def test_a_wait_names_exactly_what_its_scope_needs(platform, shape):
    await publish_week(platform, one_slot_clinic())
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_SCOPE_INVALID",
        platform.waitlist.join(account_id=account, patient_id=patient, **shape),
    )


async def test_a_wait_cannot_start_in_the_past_or_end_before_it_starts(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    for first, last in (
        (SESSION_DAY - timedelta(days=5), SESSION_DAY),
        (SESSION_DAY, SESSION_DAY - timedelta(days=1)),
    ):
        await assert_refused(
            platform,
            "WAITLIST_DATE_RANGE_INVALID",
            platform.waitlist.join(
                account_id=account,
                patient_id=patient,
                scope="department",
                department_id=sess.department_id,
                date_from=first,
                date_to=last,
            ),
        )


async def test_a_wait_cannot_reach_further_ahead_than_the_rules_allow(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "WAITLIST_TOO_FAR_AHEAD",
        platform.waitlist.join(
            account_id=account,
            patient_id=patient,
            scope="department",
            department_id=sess.department_id,
            date_from=SESSION_DAY,
            date_to=SESSION_DAY + timedelta(days=30),
        ),
    )


async def test_only_the_accounts_own_patient_can_wait(platform):
    sess, _slot, _ = await sold_out_session(platform)
    owner = await new_account(platform)
    patient = await new_patient(platform, owner)
    other = await new_account(platform)
    await assert_refused(
        platform,
        "PATIENT_NOT_OWNED",
        platform.waitlist.join(
            account_id=other, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_a_banned_person_cannot_join_the_waitlist(platform):
    sess, _slot, _ = await sold_out_session(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await ban(platform, patient)
    err = await assert_refused(
        platform,
        "PATIENT_BLACKLISTED",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )
    # the same refusal as at booking: how to appeal is a request, not a sentence
    assert err.detail["appeal"] == {
        "method": "POST",
        "path": "/api/v1/appeals",
        "entry_id": err.detail["entry_id"],
    }
    assert {"until", "reason", "policy", "source", "appeal_until"} <= set(err.detail)


async def test_a_hospital_without_insurance_refuses_an_insurance_wait(platform):
    sess, _slot, _ = await sold_out_session(platform, PaymentMode.ONLINE_NO_INSURANCE)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "PAYMENT_MODE_UNSUPPORTED",
        platform.waitlist.join(
            account_id=account,
            patient_id=patient,
            scope="session",
            session_id=sess.id,
            channel="insurance",
        ),
    )


async def test_a_wait_that_ended_cannot_be_left_and_others_waits_are_not_found(platform):
    sess, _slot, _ = await sold_out_session(platform)
    account, _, wait = await waiter(platform, sess.id)
    stranger = await new_account(platform)
    await assert_refused(
        platform,
        "WAITLIST_ENTRY_NOT_FOUND",
        platform.waitlist.leave(account_id=stranger, entry_id=wait.id),
    )
    await platform.waitlist.leave(account_id=account, entry_id=wait.id)
    with pytest.raises(GuahaoError) as caught:
        await platform.waitlist.leave(account_id=account, entry_id=wait.id)
    assert caught.value.code == "WAITLIST_ENTRY_NOT_WAITING"


async def test_a_waiter_who_turns_the_offer_down_stops_waiting_and_the_next_is_served(platform):
    await set_region_rules(platform, {"waitlist": {"prepay_waits": False}})
    sess, _slot, [(holder, booking)] = await sold_out_session(
        platform, PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
    )
    first, _, first_wait = await waiter(platform, sess.id)
    advance(platform, seconds=1)
    second, _, _ = await waiter(platform, sess.id)
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    [offer] = await bookings_of(platform, first)
    await platform.bookings.leave(account_id=first, booking_id=offer.id)
    await deliver(platform)
    declined = await entry(platform, first_wait.id)
    assert (declined.status, declined.end_reason) == ("cancelled", "offer_declined")
    [next_offer] = await bookings_of(platform, second)
    assert next_offer.status == "awaiting_payment"


async def test_wide_waits_expire_after_their_last_day_in_the_hospitals_time(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    wait = await platform.waitlist.join(
        account_id=account,
        patient_id=patient,
        scope="department",
        department_id=sess.department_id,
        date_from=SESSION_DAY,
        date_to=SESSION_DAY,
    )
    manual = platform.ports.clock
    # 23:59 on the last day in Asia/Shanghai (15:59 UTC): still waiting.
    manual.set(at_local(SESSION_DAY, 23, 59))  # type: ignore[attr-defined]
    await platform.waitlist.serve_due()
    assert (await entry(platform, wait.id)).status == "waiting"
    manual.set(at_local(SESSION_DAY + timedelta(days=1), 0, 1))  # type: ignore[attr-defined]
    await platform.waitlist.serve_due()
    ended = await entry(platform, wait.id)
    assert (ended.status, ended.end_reason) == ("expired", "dates_passed")


async def test_when_the_rules_say_so_stopped_patients_are_not_put_in_line(platform):
    await set_region_rules(platform, {"waitlist": {"stopped_patients_auto_join": False}})
    sess, _slot, [(holder, _)] = await sold_out_session(platform)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    await deliver(platform)
    assert await platform.waitlist.waits(holder) == []


async def test_the_automatic_wait_after_a_stop_may_cover_the_same_doctor_only(platform):
    await set_region_rules(
        platform, {"waitlist": {"auto_join_scope": "doctor", "auto_join_days": 3}}
    )
    sess, _slot, [(holder, _)] = await sold_out_session(platform)
    await platform.bookings.stop_session(sess.id, reason="doctor ill")
    await deliver(platform)
    [auto] = await platform.waitlist.waits(holder)
    assert (auto.scope, auto.doctor_id) == ("doctor", sess.doctor_id)
    assert (auto.date_from, auto.date_to) == (SESSION_DAY, SESSION_DAY + timedelta(days=3))


async def test_the_region_sets_how_long_a_waiter_has_to_pay(platform):
    await set_region_rules(
        platform, {"waitlist": {"offer_payment_minutes": 60, "prepay_waits": False}}
    )
    sess, _slot, [(holder, booking)] = await sold_out_session(
        platform, PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
    )
    account, _, _ = await waiter(platform, sess.id)
    now = platform.ports.clock.now()
    await platform.bookings.cancel(account_id=holder, booking_id=booking)
    await deliver(platform)
    [offer] = await bookings_of(platform, account)
    assert offer.payment_expires_at == now + timedelta(minutes=60)

"""Every refusal of the booking journey names its rule with a stable code and changes nothing.

``assert_refused`` compares everything observable before and after the refused command: every
booking, slot, payment order, refund and payment-notice row, the outbox and inbox row counts,
the hot pool's counts of every slot and the account markers in Redis.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from guahao.platform.bookings import BookingStatus
from guahao.platform.errors import ConflictError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.payments.signatures import SIGNATURE_HEADER
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    at_local,
    available,
    booking_row,
    clinic,
    confirmed_booking,
    held_with_patient,
    manual_clock,
    new_account,
    new_patient,
    observe,
    outbox_topics,
    pay,
    publish_clinic,
    slot_row,
)

# ----------------------------------------------------------------------------- holding


async def test_a_hold_before_the_release_time_is_refused_and_granted_from_it(platform):
    slots = await publish_clinic(platform)
    clock = manual_clock(platform)
    release_at = at_local(SESSION_DAY - timedelta(days=7), 8)
    assert (await slot_row(platform, slots[0])).release_at == release_at
    account = await new_account(platform)
    clock.set(release_at - timedelta(seconds=1))
    await assert_refused(
        platform,
        "SLOT_NOT_RELEASED",
        platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="early"),
    )
    clock.set(release_at)
    held = await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="on")
    assert held.status is BookingStatus.HELD


async def test_a_hold_on_a_sold_out_slot_is_refused(platform):
    slots = await publish_clinic(platform, clinic(units=1))
    await confirmed_booking(platform, slots[0])
    other = await new_account(platform)
    await assert_refused(
        platform,
        "SLOT_SOLD_OUT",
        platform.bookings.hold(account_id=other, slot_id=slots[0], idempotency_key="x"),
    )


async def test_a_live_hold_counts_against_the_stock_like_a_booking(platform):
    slots = await publish_clinic(platform, clinic(units=1))
    await held_with_patient(platform, slots[0])
    other = await new_account(platform)
    await assert_refused(
        platform,
        "SLOT_SOLD_OUT",
        platform.bookings.hold(account_id=other, slot_id=slots[0], idempotency_key="x"),
    )


async def test_a_hold_on_an_unknown_slot_is_refused(platform):
    await publish_clinic(platform)
    account = await new_account(platform)
    await assert_refused(
        platform,
        "SLOT_NOT_FOUND",
        platform.bookings.hold(account_id=account, slot_id="0" * 32, idempotency_key="x"),
    )


async def test_a_hold_on_a_slot_that_has_started_is_refused(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    manual_clock(platform).set((await slot_row(platform, slots[0])).starts_at)
    await assert_refused(
        platform,
        "SLOT_IN_PAST",
        platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="x"),
    )
    # the next segment has not started yet
    assert (
        await platform.bookings.hold(account_id=account, slot_id=slots[1], idempotency_key="y")
    ).status is BookingStatus.HELD


async def test_an_account_may_have_only_one_unfinished_hold(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="first")
    for slot_id in (slots[0], slots[3]):
        await assert_refused(
            platform,
            "HOLD_ALREADY_ACTIVE",
            platform.bookings.hold(account_id=account, slot_id=slot_id, idempotency_key="second"),
        )


async def test_repeating_a_hold_with_the_same_idempotency_key_answers_the_same_booking(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    first = await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="k")
    before = await observe(platform)

    again = await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="k")

    assert again.id == first.id
    assert again.hold_expires_at == first.hold_expires_at
    assert await observe(platform) == before  # no second unit, row or event


# ----------------------------------------------------------------------------- ownership


async def test_another_accounts_booking_cannot_be_touched(platform):
    slots = await publish_clinic(platform)
    _owner, patient, booking_id = await held_with_patient(platform, slots[0])
    intruder = await new_account(platform)
    intruder_patient = await new_patient(platform, intruder)
    for action in (
        platform.bookings.choose_patient(
            account_id=intruder, booking_id=booking_id, patient_id=intruder_patient
        ),
        platform.bookings.submit(account_id=intruder, booking_id=booking_id, channel="self_pay"),
        platform.bookings.leave(account_id=intruder, booking_id=booking_id),
        platform.bookings.cancel(account_id=intruder, booking_id=booking_id),
        platform.bookings.get(booking_id, account_id=intruder),
    ):
        await assert_refused(platform, "HOLD_NOT_OWNED", action)
    assert (await booking_row(platform, booking_id)).patient_id == patient


async def test_a_patient_of_another_account_cannot_be_chosen(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    stranger = await new_patient(platform, await new_account(platform), name="李四")
    booking = await platform.bookings.hold(
        account_id=account, slot_id=slots[0], idempotency_key="k"
    )
    await assert_refused(
        platform,
        "PATIENT_NOT_OWNED",
        platform.bookings.choose_patient(
            account_id=account, booking_id=booking.id, patient_id=stranger
        ),
    )


async def test_a_patient_may_have_only_one_booking_per_session(platform):
    slots = await publish_clinic(platform)
    account, patient, first = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=first, channel="insurance"
    )
    assert (await pay(platform, order.order_no, "insurance")).result == "confirmed"
    second = await platform.bookings.hold(
        account_id=account, slot_id=slots[4], idempotency_key="second"
    )
    await assert_refused(
        platform,
        "PATIENT_ALREADY_BOOKED_SESSION",
        platform.bookings.choose_patient(
            account_id=account, booking_id=second.id, patient_id=patient
        ),
    )
    # another patient of the same account may take that second unit
    sibling = await new_patient(platform, account, name="张小三")
    chosen = await platform.bookings.choose_patient(
        account_id=account, booking_id=second.id, patient_id=sibling
    )
    assert chosen.status is BookingStatus.PATIENT_CHOSEN


async def test_submitting_before_choosing_a_patient_is_refused(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    booking = await platform.bookings.hold(
        account_id=account, slot_id=slots[0], idempotency_key="k"
    )
    await assert_refused(
        platform,
        "PATIENT_NOT_CHOSEN",
        platform.bookings.submit(account_id=account, booking_id=booking.id, channel="self_pay"),
    )


# ----------------------------------------------------------------------------- time limits


@pytest.mark.parametrize("step", ["choose_patient", "submit"])
async def test_a_hold_past_its_time_is_refused_as_expired_and_its_unit_is_free_again(
    platform, step
):
    slots = await publish_clinic(platform, clinic(units=1))
    clock = manual_clock(platform)
    account, patient, booking_id = await held_with_patient(platform, slots[0])
    assert await available(platform, slots[0]) == 0
    clock.advance(minutes=10)  # the clinic's hold_minutes

    def attempt():
        if step == "choose_patient":
            return platform.bookings.choose_patient(
                account_id=account, booking_id=booking_id, patient_id=patient
            )
        return platform.bookings.submit(
            account_id=account, booking_id=booking_id, channel="self_pay"
        )

    with pytest.raises(ConflictError) as caught:
        await attempt()
    assert caught.value.code == "HOLD_EXPIRED"
    # The refusal only records what time had already done (as the sweep would).
    row = await booking_row(platform, booking_id)
    assert row.status == "expired"
    assert row.end_reason == "timed_out"
    assert await available(platform, slots[0]) == 1
    assert (await outbox_topics(platform))["booking.expired"] == 1
    assert await platform.bookings.expire_due() == 0
    # Asking again changes nothing at all, and the unit can be held by anyone.
    await assert_refused(platform, "HOLD_EXPIRED", attempt())
    other = await new_account(platform)
    assert (
        await platform.bookings.hold(account_id=other, slot_id=slots[0], idempotency_key="k")
    ).status is BookingStatus.HELD


async def test_an_expired_hold_no_longer_blocks_its_account(platform):
    slots = await publish_clinic(platform)
    account = await new_account(platform)
    await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="a")
    manual_clock(platform).advance(minutes=10)
    again = await platform.bookings.hold(account_id=account, slot_id=slots[1], idempotency_key="b")
    assert again.status is BookingStatus.HELD


# ----------------------------------------------------------------------------- payment notices


async def test_a_payment_notice_with_a_wrong_signature_is_refused(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    forged = dict(headers)
    forged[SIGNATURE_HEADER] = ("0" if headers[SIGNATURE_HEADER][0] != "0" else "1") + headers[
        SIGNATURE_HEADER
    ][1:]
    await assert_refused(
        platform,
        "PAYMENT_SIGNATURE_INVALID",
        platform.bookings.handle_payment_notice(forged, body),
    )
    tampered = body.replace(b'"amount_cents":3000', b'"amount_cents":1')
    assert tampered != body
    await assert_refused(
        platform,
        "PAYMENT_SIGNATURE_INVALID",
        platform.bookings.handle_payment_notice(headers, tampered),
    )
    # the genuine notice still books
    assert (await platform.bookings.handle_payment_notice(headers, body)).result == "confirmed"


async def test_a_replayed_payment_notice_is_refused(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    assert (await platform.bookings.handle_payment_notice(headers, body)).result == "confirmed"

    # the same bytes again
    await assert_refused(
        platform,
        "PAYMENT_CALLBACK_REPLAYED",
        platform.bookings.handle_payment_notice(headers, body),
    )
    # the gateway re-sends: a new signature over the same notification id
    headers2, body2 = await platform.gateway.pay(order.order_no, channel="self_pay")
    assert body2 == body
    assert headers2 != headers
    await assert_refused(
        platform,
        "PAYMENT_CALLBACK_REPLAYED",
        platform.bookings.handle_payment_notice(headers2, body2),
    )
    assert (await slot_row(platform, slots[0])).online_booked == 1


async def test_a_confirmed_booking_cannot_be_submitted_again_and_says_so(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY))
    for channel in ("self_pay", "insurance"):
        account, booking_id, _ = await confirmed_booking(platform, slots[0], channel=channel)
        for again in ("self_pay", "insurance"):
            await assert_refused(
                platform,
                "BOOKING_ALREADY_CONFIRMED",
                platform.bookings.submit(account_id=account, booking_id=booking_id, channel=again),
            )
    assert (await slot_row(platform, slots[0])).online_booked == 2


async def test_a_booking_awaiting_payment_cannot_be_submitted_again(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    await platform.bookings.submit(account_id=account, booking_id=booking_id, channel="self_pay")
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.bookings.submit(account_id=account, booking_id=booking_id, channel="self_pay"),
    )


# ----------------------------------------------------------------------------- cancellation


async def test_cancelling_after_the_deadline_is_refused(platform):
    slots = await publish_clinic(platform)
    account, booking_id, _ = await confirmed_booking(platform, slots[0])
    deadline = at_local(SESSION_DAY - timedelta(days=1), 15)  # the day before at 15:00
    manual_clock(platform).set(deadline)
    await assert_refused(
        platform,
        "CANCEL_DEADLINE_PASSED",
        platform.bookings.cancel(account_id=account, booking_id=booking_id),
    )


async def test_a_cancelled_booking_cannot_be_cancelled_again(platform):
    slots = await publish_clinic(platform)
    account, booking_id, _ = await confirmed_booking(platform, slots[0])
    await platform.bookings.cancel(account_id=account, booking_id=booking_id)
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.bookings.cancel(account_id=account, booking_id=booking_id),
    )


async def test_a_confirmed_booking_cannot_be_left_like_a_hold(platform):
    slots = await publish_clinic(platform)
    account, booking_id, _ = await confirmed_booking(platform, slots[0])
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.bookings.leave(account_id=account, booking_id=booking_id),
    )

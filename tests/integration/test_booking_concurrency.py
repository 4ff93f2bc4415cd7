"""The release surge (抢号) and racing requests, on both databases with a real Redis.

Coroutines are started together with ``asyncio.gather``: the hot pool's scripts, the SQL
constraints and the services' checks must between them let exactly the stock through, and the
record (SQL) must agree with the hot pool (Redis) afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import event, func, select

from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import BookingRow, PaymentOrderRow
from guahao.platform.services.booking_records import to_domain
from tests.fixtures.platforms import (
    assert_refused,
    booking_row,
    bulk_accounts,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    new_patient,
    outbox_topics,
    publish_clinic,
    slot_row,
)

CAPACITY = 5
CROWD = 50 * CAPACITY


def outcomes(results: list[object]) -> Counter[str]:
    """What each racer got: ``ok`` or the refusal code (anything else fails the test)."""
    seen: Counter[str] = Counter()
    for result in results:
        if isinstance(result, GuahaoError):
            seen[result.code] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            seen["ok"] += 1
    return seen


async def test_a_crowd_fifty_times_the_stock_gets_exactly_the_stock_and_sql_agrees_with_redis(
    platform,
):
    slots = await publish_clinic(platform, clinic(units=CAPACITY))
    crowd = await bulk_accounts(platform, CROWD)
    statements: list[str] = []
    count_statements = lambda *args, **kw: statements.append(args[2])  # noqa: E731
    event.listen(platform.engine.sync_engine, "before_cursor_execute", count_statements)

    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key="surge")
            for a in crowd
        ),
        return_exceptions=True,
    )

    event.remove(platform.engine.sync_engine, "before_cursor_execute", count_statements)
    assert outcomes(results) == {"ok": CAPACITY, "SLOT_SOLD_OUT": CROWD - CAPACITY}
    # The crowd arrived on cold caches; still only the winners reach SQL (one shared read of
    # the slot's facts, one of the region's rules, then a booking row and its event per winner).
    assert len(statements) <= 2 + 2 * CAPACITY, statements
    winners = [r for r in results if isinstance(r, Booking)]
    assert len({w.account_id for w in winners}) == CAPACITY
    snap = await counts(platform, slots[0])
    assert (snap.held, snap.available) == (CAPACITY, 0)
    async with platform.ports.sessions() as session:
        held = await session.scalar(select(func.count()).select_from(BookingRow))
    assert held == CAPACITY  # only winners reach SQL

    # Every winner names a patient, submits and pays, all at the same time.
    patients = {w.id: await new_patient(platform, w.account_id) for w in winners}
    chosen = await asyncio.gather(
        *(
            platform.bookings.choose_patient(
                account_id=w.account_id, booking_id=w.id, patient_id=patients[w.id]
            )
            for w in winners
        ),
        return_exceptions=True,
    )
    assert outcomes(chosen) == {"ok": CAPACITY}
    submitted = await asyncio.gather(
        *(
            platform.bookings.submit(account_id=w.account_id, booking_id=w.id, channel="self_pay")
            for w in winners
        ),
        return_exceptions=True,
    )
    assert outcomes(submitted) == {"ok": CAPACITY}

    async def pay(order_no: str) -> object:
        headers, body = await platform.gateway.pay(order_no, channel="self_pay")
        return await platform.bookings.handle_payment_notice(headers, body)

    paid = await asyncio.gather(
        *(pay(order.order_no) for _, order in submitted),  # type: ignore[misc]
        return_exceptions=True,
    )
    assert outcomes(paid) == {"ok": CAPACITY}
    assert {p.result for p in paid} == {"confirmed"}  # type: ignore[union-attr]

    snap = await counts(platform, slots[0])
    row = await slot_row(platform, slots[0])
    assert row.online_booked == snap.booked == CAPACITY
    assert (snap.held, snap.available) == (0, 0)
    async with platform.ports.sessions() as session:
        statuses = Counter((await session.scalars(select(BookingRow.status))).all())
    assert statuses == {"confirmed": CAPACITY}
    topics = await outbox_topics(platform)
    assert topics["booking.held"] == topics["booking.confirmed"] == CAPACITY


async def test_a_crowd_on_the_last_units_of_a_session_never_oversells_any_segment(platform):
    # Several segments at once: each segment's stock is its own, the totals add up.
    slots = await publish_clinic(platform, clinic(units=2))
    crowd = await bulk_accounts(platform, 60)
    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[i % 3], idempotency_key=f"surge-{i}")
            for i, a in enumerate(crowd)
        ),
        return_exceptions=True,
    )
    assert outcomes(results) == {"ok": 6, "SLOT_SOLD_OUT": 54}
    for slot_id in slots[:3]:
        assert (await counts(platform, slot_id)).held == 2


async def test_a_double_tap_with_one_idempotency_key_holds_one_unit_and_names_one_booking(
    platform,
):
    slots = await publish_clinic(platform)
    (account,) = await bulk_accounts(platform, 1)

    def tap():
        return platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="tap")

    results = await asyncio.gather(*(tap() for _ in range(10)), return_exceptions=True)

    seen = outcomes(results)
    assert seen["ok"] >= 1
    # A repeat that overtakes the first answer is told the account's hold is in the making.
    assert set(seen) - {"ok"} <= {"HOLD_ALREADY_ACTIVE", "REQUEST_IN_PROGRESS"}
    ids = {r.id for r in results if isinstance(r, Booking)}
    assert len(ids) == 1
    # The one booking's unit is held in the pool, whichever request recorded it.
    assert (await counts(platform, slots[0])).held == 1
    assert (await tap()).id in ids  # once settled, every repeat answers that booking
    assert (await counts(platform, slots[0])).held == 1
    await assert_refused(  # and the account's one-hold marker still names it
        platform,
        "HOLD_ALREADY_ACTIVE",
        platform.bookings.hold(account_id=account, slot_id=slots[1], idempotency_key="other"),
    )
    async with platform.ports.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BookingRow)) == 1


async def test_the_same_account_racing_with_different_keys_gets_one_hold(platform):
    slots = await publish_clinic(platform)
    (account,) = await bulk_accounts(platform, 1)
    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=account, slot_id=slots[i], idempotency_key=f"k{i}")
            for i in range(8)
        ),
        return_exceptions=True,
    )
    assert outcomes(results) == {"ok": 1, "HOLD_ALREADY_ACTIVE": 7}
    assert sum([(await counts(platform, s)).held for s in slots]) == 1


@pytest.mark.parametrize(
    ("mode", "channel"),
    [
        pytest.param(PaymentMode.PAY_AT_HOSPITAL, "self_pay", id="confirm_on_submit"),
        pytest.param(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, "self_pay", id="open_an_order"),
    ],
)
async def test_two_concurrent_submits_of_one_booking_take_effect_once(platform, mode, channel):
    slots = await publish_clinic(platform, clinic(mode))
    account, _, booking_id = await held_with_patient(platform, slots[0])

    results = await asyncio.gather(
        *(
            platform.bookings.submit(account_id=account, booking_id=booking_id, channel=channel)
            for _ in range(2)
        ),
        return_exceptions=True,
    )

    seen = outcomes(results)
    assert seen["ok"] == 1
    assert sum(seen.values()) == 2
    assert set(seen) - {"ok"} <= {"BOOKING_STATE_INVALID", "BOOKING_ALREADY_CONFIRMED"}
    row = await booking_row(platform, booking_id)
    async with platform.ports.sessions() as session:
        orders = (await session.scalars(select(PaymentOrderRow))).all()
    topics = await outbox_topics(platform)
    if mode is PaymentMode.PAY_AT_HOSPITAL:
        assert row.status == "confirmed"
        assert orders == []
        assert topics["booking.confirmed"] == 1
    else:
        assert row.status == "awaiting_payment"
        assert [o.order_no for o in orders] == [row.payment_order_no]
        assert topics["booking.awaiting_payment"] == 1
    snap = await counts(platform, slots[0])
    assert (await slot_row(platform, slots[0])).online_booked == snap.booked
    assert snap.booked + snap.held == 1


async def test_two_concurrent_deliveries_of_one_payment_notice_confirm_once(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    # The payer taps "pay" twice: the gateway answers one notification, signed twice.
    (h1, b1), (h2, b2) = await asyncio.gather(
        platform.gateway.pay(order.order_no, channel="self_pay"),
        platform.gateway.pay(order.order_no, channel="self_pay"),
    )
    assert b1 == b2

    results = await asyncio.gather(
        platform.bookings.handle_payment_notice(h1, b1),
        platform.bookings.handle_payment_notice(h2, b2),
        return_exceptions=True,
    )

    assert outcomes(results) == {"ok": 1, "PAYMENT_CALLBACK_REPLAYED": 1}
    assert (await booking_row(platform, booking_id)).status == BookingStatus.CONFIRMED.value
    assert (await slot_row(platform, slots[0])).online_booked == 1
    assert (await counts(platform, slots[0])).booked == 1
    assert (await outbox_topics(platform))["booking.confirmed"] == 1


async def test_two_concurrent_cancellations_end_the_booking_once(platform):
    slots = await publish_clinic(platform)
    account, booking_id, order = await confirmed_booking(platform, slots[0])
    assert order is not None

    results = await asyncio.gather(
        platform.bookings.cancel(account_id=account, booking_id=booking_id),
        platform.bookings.cancel(account_id=account, booking_id=booking_id),
        return_exceptions=True,
    )

    assert outcomes(results) == {"ok": 1, "BOOKING_STATE_INVALID": 1}
    assert (await booking_row(platform, booking_id)).status == "cancelled_by_patient"
    assert (await slot_row(platform, slots[0])).online_booked == 0
    assert (await counts(platform, slots[0])).booked == 0
    assert (await outbox_topics(platform))["booking.cancelled_by_patient"] == 1
    assert len(await platform.bookings.pending_refunds()) == 1


async def test_a_step_given_its_booking_as_read_before_the_booking_moved_writes_nothing(
    platform,
):
    """The steps take the row their request read a moment before into their transaction
    instead of reading it again: its version must refuse the write if the booking moved in
    between (here another patient chosen), or the order would carry the old patient."""
    slots = await publish_clinic(platform)
    account, first, booking_id = await held_with_patient(platform, slots[0])
    read = await platform.bookings.records.row(booking_id, account_id=account)
    second = await new_patient(platform, account, name="李四")
    await platform.bookings.choose_patient(
        account_id=account, booking_id=booking_id, patient_id=second
    )

    with pytest.raises(GuahaoError) as refused:
        await platform.bookings.steps.open_payment_order(
            to_domain(read),
            channel="self_pay",
            minutes=15,
            now=platform.ports.clock.now(),
            read=read,
        )

    assert refused.value.code == "BOOKING_STATE_INVALID"
    assert refused.value.detail["reason"] == "changed_meanwhile"
    row = await booking_row(platform, booking_id)
    assert (row.status, row.patient_id, row.payment_order_no) == ("patient_chosen", second, None)
    async with platform.ports.sessions() as session:
        assert (await session.scalars(select(PaymentOrderRow))).all() == []
    assert first != second

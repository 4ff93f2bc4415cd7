"""The transactional outbox: an event per state change, written with it; delivered at least
once, in order per booking; a failing handler holds back only its own booking."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import NotificationRow, OutboxRow, SlotRow
from tests.fixtures.platforms import (
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    manual_clock,
    outbox_topics,
    pay,
    publish_clinic,
)


class Recorder:
    """A handler that remembers what it was given and can be told to fail."""

    def __init__(self) -> None:
        self.seen: list[OutboxEvent] = []
        self.failing: set[tuple[str, str]] = set()  # (aggregate_id, topic) that raise

    async def __call__(self, event: OutboxEvent) -> None:
        self.seen.append(event)
        if (event.aggregate_id, event.topic) in self.failing:
            raise RuntimeError(f"downstream refused {event.topic}")

    def by_aggregate(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for event in self.seen:
            grouped[event.aggregate_id].append(event.topic)
        return dict(grouped)


async def pending_rows(platform) -> list[OutboxRow]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.dispatched_at.is_(None))
                    .order_by(OutboxRow.id)
                )
            ).all()
        )


async def test_every_state_change_of_a_journey_writes_exactly_its_event(platform):
    slots = await publish_clinic(platform, clinic(units=1))
    clock = manual_clock(platform)
    account, cancelled, _ = await confirmed_booking(platform, slots[0])
    await platform.bookings.cancel(account_id=account, booking_id=cancelled)
    [refund_no] = await platform.bookings.pending_refunds()
    await platform.bookings.process_refund(refund_no)
    leaver, _, left = await held_with_patient(platform, slots[1])
    await platform.bookings.leave(account_id=leaver, booking_id=left)
    late, _, late_id = await held_with_patient(platform, slots[2])
    _, order = await platform.bookings.submit(
        account_id=late, booking_id=late_id, channel="self_pay"
    )
    await platform.gateway.pay(order.order_no, channel="self_pay")
    clock.advance(minutes=20)
    await platform.bookings.expire_due()
    assert (await pay(platform, order.order_no)).result == "refunded_late_payment"

    assert await outbox_topics(platform) == {
        "hospital.registered": 1,
        "session.published": 1,
        "booking.held": 3,
        "booking.patient_chosen": 3,
        "booking.awaiting_payment": 2,
        "booking.confirmed": 1,
        "booking.cancelled_by_patient": 1,
        "payment.refunded": 1,
        "booking.abandoned": 1,
        "booking.expired": 1,
        "payment.paid_too_late": 1,
    }
    recorder = Recorder()
    platform.dispatcher.subscribe("", recorder, name="recorder", starts_at="beginning")
    await platform.dispatcher.dispatch_pending()
    history = recorder.by_aggregate()
    assert history[cancelled] == [
        "booking.held",
        "booking.patient_chosen",
        "booking.awaiting_payment",
        "booking.confirmed",
        "booking.cancelled_by_patient",
        "payment.refunded",
    ]
    assert history[left] == ["booking.held", "booking.patient_chosen", "booking.abandoned"]
    assert history[late_id] == [
        "booking.held",
        "booking.patient_chosen",
        "booking.awaiting_payment",
        "booking.expired",
        "payment.paid_too_late",
    ]


async def test_an_event_never_outlives_its_rolled_back_change(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    account, _, booking_id = await held_with_patient(platform, slots[0])
    # Corrupt the record so that the confirmation's own SQL write is refused by a constraint
    # (online_booked <= online_quota) after its event was added to the transaction.
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(SlotRow).where(SlotRow.id == slots[0]).values(online_quota=0, offline_quota=4)
        )
    before = await outbox_topics(platform)

    with pytest.raises(IntegrityError):
        await platform.bookings.submit(
            account_id=account, booking_id=booking_id, channel="self_pay"
        )

    assert await outbox_topics(platform) == before  # no "booking.confirmed" without the change
    assert (await booking_row(platform, booking_id)).status == "patient_chosen"
    assert (await counts(platform, slots[0])).booked == 0


async def test_dispatch_delivers_each_bookings_events_in_the_order_they_happened(platform):
    slots = await publish_clinic(platform)
    a, _, first = await held_with_patient(platform, slots[0])
    b, _, second = await held_with_patient(platform, slots[1])
    await platform.bookings.submit(account_id=b, booking_id=second, channel="insurance")
    await platform.bookings.leave(account_id=a, booking_id=first)
    await platform.bookings.leave(account_id=b, booking_id=second)
    recorder = Recorder()
    platform.dispatcher.subscribe("booking.", recorder, name="recorder", starts_at="beginning")

    delivered = await platform.dispatcher.dispatch_pending()

    assert delivered == 2 + 3 + 4  # hospital and session events too
    assert recorder.by_aggregate() == {
        first: ["booking.held", "booking.patient_chosen", "booking.abandoned"],
        second: [
            "booking.held",
            "booking.patient_chosen",
            "booking.awaiting_payment",
            "booking.abandoned",
        ],
    }
    assert await pending_rows(platform) == []
    assert await platform.dispatcher.dispatch_pending() == 0  # nothing is delivered twice


async def test_a_failing_handler_holds_back_only_its_own_booking_and_is_retried(platform):
    slots = await publish_clinic(platform)
    a, _, stuck = await held_with_patient(platform, slots[0])
    b, _, flowing = await held_with_patient(platform, slots[1])
    await platform.bookings.leave(account_id=a, booking_id=stuck)
    await platform.bookings.leave(account_id=b, booking_id=flowing)
    recorder = Recorder()
    recorder.failing.add((stuck, "booking.patient_chosen"))
    platform.dispatcher.subscribe("booking.", recorder, name="recorder", starts_at="beginning")

    await platform.dispatcher.dispatch_pending()

    history = recorder.by_aggregate()
    assert history[flowing] == ["booking.held", "booking.patient_chosen", "booking.abandoned"]
    # the stuck booking got as far as its failing event, and no further (order is kept)
    assert history[stuck] == ["booking.held", "booking.patient_chosen"]
    pending = await pending_rows(platform)
    assert [(r.aggregate_id, r.topic) for r in pending] == [
        (stuck, "booking.patient_chosen"),
        (stuck, "booking.abandoned"),
    ]
    assert pending[0].attempts == 1
    assert "downstream refused" in (pending[0].last_error or "")
    assert pending[1].attempts == 0

    await platform.dispatcher.dispatch_pending()  # still failing: retried, still held back
    assert (await pending_rows(platform))[0].attempts == 2
    recorder.failing.clear()
    recorder.seen.clear()
    await platform.dispatcher.dispatch_pending()

    assert recorder.by_aggregate() == {stuck: ["booking.patient_chosen", "booking.abandoned"]}
    assert await pending_rows(platform) == []


async def test_delivery_is_at_least_once_and_the_inbox_shows_each_message_once(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    account, booking_id, _ = await confirmed_booking(platform, slots[0])
    recorder = Recorder()  # subscribed after the inbox notifier: it fails after the inbox wrote
    recorder.failing.add((booking_id, "booking.confirmed"))
    platform.dispatcher.subscribe("booking.", recorder, name="recorder", starts_at="beginning")

    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()
    recorder.failing.clear()
    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()

    topics = [e.topic for e in recorder.seen if e.aggregate_id == booking_id]
    assert topics.count("booking.confirmed") == 3  # delivered again until accepted
    async with platform.ports.sessions() as session:
        inbox = (
            await session.scalars(
                select(NotificationRow.template).where(NotificationRow.account_id == account)
            )
        ).all()
        total = await session.scalar(select(func.count()).select_from(NotificationRow))
    assert inbox == ["booking.confirmed"]
    assert total == 1
    assert await pending_rows(platform) == []


async def test_each_subscriber_has_its_own_cursor_and_retry_list(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    await platform.bookings.leave(account_id=account, booking_id=booking_id)
    down, up = Recorder(), Recorder()
    down.failing.add((booking_id, "booking.held"))
    down_name = platform.dispatcher.subscribe("booking.", down, name="his", starts_at="beginning")
    platform.dispatcher.subscribe("booking.", up, name="search", starts_at="beginning")

    await platform.dispatcher.dispatch_pending()

    # the healthy subscriber has the whole history; the failing one is held at its failure
    assert up.by_aggregate()[booking_id] == [
        "booking.held",
        "booking.patient_chosen",
        "booking.abandoned",
    ]
    assert down.by_aggregate()[booking_id] == ["booking.held"]
    parked = await platform.dispatcher.parked(down_name)
    assert [p.attempts for p in parked] == [1, 0, 0]  # the failure, and two waiting behind it
    assert len(await pending_rows(platform)) == 3  # not done until every subscriber has them

    down.failing.clear()
    await platform.dispatcher.dispatch_pending()
    assert down.by_aggregate()[booking_id] == [
        "booking.held",
        "booking.held",
        "booking.patient_chosen",
        "booking.abandoned",
    ]
    assert await platform.dispatcher.parked(down_name) == []
    assert await pending_rows(platform) == []


async def test_a_lasting_failure_backs_off_and_is_retried_when_due(platform):
    slots = await publish_clinic(platform)
    _, _, booking_id = await held_with_patient(platform, slots[0])
    recorder = Recorder()
    recorder.failing.add((booking_id, "booking.held"))
    name = platform.dispatcher.subscribe(
        "booking.", recorder, name="recorder", starts_at="beginning"
    )
    clock = manual_clock(platform)

    for _ in range(4):  # three free retries at the next rounds, then the backoff starts
        await platform.dispatcher.dispatch_pending()
    [first, *_] = await platform.dispatcher.parked(name)
    assert first.attempts == 4
    assert first.next_attempt_at == clock.now() + timedelta(seconds=2)
    tries = len(recorder.seen)
    await platform.dispatcher.dispatch_pending()
    assert len(recorder.seen) == tries  # not due yet: not tried

    recorder.failing.clear()
    clock.advance(seconds=2)
    await platform.dispatcher.dispatch_pending()
    assert recorder.by_aggregate()[booking_id][-2:] == ["booking.held", "booking.patient_chosen"]
    assert await platform.dispatcher.parked(name) == []


async def test_a_subscriber_may_join_from_now_on(platform):
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    await platform.dispatcher.dispatch_pending()
    late = Recorder()
    platform.dispatcher.subscribe("booking.", late, name="late", starts_at="now")
    await platform.dispatcher.dispatch_pending()
    await platform.bookings.leave(account_id=account, booking_id=booking_id)

    await platform.dispatcher.dispatch_pending()

    assert late.by_aggregate() == {booking_id: ["booking.abandoned"]}

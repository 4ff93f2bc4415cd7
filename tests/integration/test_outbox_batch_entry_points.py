"""The heavy subscribers' batch entry points record exactly what one event at a time records.

Each batch entry point is checked against its own one-by-one handler on the same events of
real bookings: same rows, nothing more on a replay, and a bad event that fails the run parks
alone while the rest of the run is delivered. Then the dispatcher's own order: subscribers
side by side, except one declared ``after`` another.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.hospitals import FilingMode, PaymentMode
from guahao.platform.persistence.outbox import OutboxDispatcher, OutboxEvent
from guahao.platform.persistence.tables import (
    HospitalRow,
    OutboxRow,
    PatientFilingRow,
    SessionRow,
    SlotRow,
    SuspicionSignalRow,
    VisitReminderRow,
)
from guahao.platform.services.suspicion import SuspicionDetector
from guahao.platform.suspicion_rules import SuspicionRules
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    booking_row,
    clinic,
    confirmed_booking,
    manual_clock,
    new_account,
    new_patient,
    publish_clinic,
)
from tests.integration.test_filings import clinic_filing
from tests.integration.test_outbox import Recorder, pending_rows
from tests.integration.test_suspicion_signals import book

MODE = PaymentMode.PAY_AT_HOSPITAL


async def booking_events(platform: Platform) -> list[OutboxEvent]:
    async with platform.ports.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(OutboxRow.topic.startswith("booking."))
                .order_by(OutboxRow.id)
            )
        ).all()
    return [
        OutboxEvent(
            id=r.id,
            topic=r.topic,
            aggregate_id=r.aggregate_id,
            payload=r.payload,
            created_at=r.created_at,
        )
        for r in rows
    ]


async def slots_of(platform: Platform, hospital_code: str) -> list[str]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(SlotRow.id)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .where(HospitalRow.code == hospital_code)
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        )


async def scalping_day(platform: Platform) -> None:
    """Three accounts behind one phone, one account booking for three persons, and a unit
    cancelled by one account and booked by another seconds after it came back."""
    slots = await publish_clinic(platform, clinic(MODE, units=4))
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=3), 9))
    device = platform.ports.vault.index("device", "phone-of-a-scalper")
    for n in range(3):
        account = await new_account(platform)
        patient = await new_patient(platform, account)
        await book(platform, account, patient, slots[n], ClientContext("", device))
        manual_clock(platform).advance(minutes=5)
    family = await new_account(platform)
    for n, name in enumerate(("张一", "张二", "张三")):
        patient = await new_patient(platform, family, name=name)
        await book(platform, family, patient, slots[3 + n])
        manual_clock(platform).advance(minutes=5)
    scalper, buyer = await new_account(platform), await new_account(platform)
    first = await book(platform, scalper, await new_patient(platform, scalper), slots[6])
    manual_clock(platform).advance(hours=2)
    await platform.bookings.cancel(account_id=scalper, booking_id=first)
    returned = (await booking_row(platform, first)).unit_returns_at
    assert returned is not None
    manual_clock(platform).set(returned + timedelta(seconds=3))
    await book(platform, buyer, await new_patient(platform, buyer, name="王五"), slots[6])


async def signal_rows(platform: Platform) -> list[tuple[Any, ...]]:
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(SuspicionSignalRow))).all()
    return sorted(
        (r.kind, r.subject_type, r.subject_id, r.dedupe_key, r.score, r.detail, r.detected_at)
        for r in rows
    )


async def test_suspicion_batch_records_the_signals_of_one_event_at_a_time(
    platform: Platform,
) -> None:
    await scalping_day(platform)
    rules = SuspicionRules(persons_per_account=2, accounts_per_device=2)

    async def source() -> SuspicionRules:
        return rules

    detector = SuspicionDetector(platform.ports, source)
    events = await booking_events(platform)
    for event in events:
        await detector(event)
    one_by_one = await signal_rows(platform)
    assert {row[0] for row in one_by_one} == {
        "device_many_accounts",
        "account_many_persons",
        "cancel_rebook",
    }
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(SuspicionSignalRow))

    await detector.handle_batch(events)
    assert await signal_rows(platform) == one_by_one

    await detector.handle_batch(events)  # a replay (a worker died before its cursor moved)
    for event in events:
        await detector(event)
    assert await signal_rows(platform) == one_by_one


async def two_hospitals_booked(platform: Platform) -> dict[str, list[str]]:
    """Confirmed bookings at two hospitals; hospital code -> its booking ids."""
    await publish_clinic(platform, clinic(MODE, units=2, code="h1"))
    await publish_clinic(platform, clinic(MODE, units=2, code="h2"))
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=3), 9))
    booked: dict[str, list[str]] = {}
    for code, count in (("h1", 3), ("h2", 2)):
        for slot in (await slots_of(platform, code))[:count]:
            account = await new_account(platform)
            patient = await new_patient(platform, account)
            booked.setdefault(code, []).append(await book(platform, account, patient, slot))
    return booked


async def reminder_rows(platform: Platform) -> list[tuple[Any, ...]]:
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(VisitReminderRow))).all()
    return sorted(
        (r.id, r.booking_id, r.account_id, r.hours_before, r.due_at, r.status, r.created_at)
        for r in rows
    )


async def test_reminder_batch_schedules_the_reminders_of_one_event_at_a_time(
    platform: Platform,
) -> None:
    booked = await two_hospitals_booked(platform)
    events = await booking_events(platform)
    for event in events:
        await platform.reminders.on_booking_event(event)
    one_by_one = await reminder_rows(platform)
    assert {row[1] for row in one_by_one} == set(booked["h1"] + booked["h2"])
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(VisitReminderRow))

    await platform.reminders.on_booking_events(events)
    assert await reminder_rows(platform) == one_by_one

    assert await platform.reminders.schedule_many([e.aggregate_id for e in events]) == 0
    for event in events:  # one by one after a batch: nothing new either
        await platform.reminders.on_booking_event(event)
    assert await reminder_rows(platform) == one_by_one


async def test_a_bad_event_fails_the_reminder_batch_and_parks_alone(platform: Platform) -> None:
    booked = await two_hospitals_booked(platform)
    # a hospital whose time zone no longer resolves: its bookings' reminders cannot be timed
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(HospitalRow).where(HospitalRow.code == "h2").values(timezone="Mars/Olympus")
        )
    dispatcher = OutboxDispatcher(platform.ports.sessions, platform.ports.clock)
    batches: list[int] = []

    async def batch(events: Any) -> None:
        batches.append(len(events))
        await platform.reminders.on_booking_events(events)

    dispatcher.subscribe(
        "booking.confirmed",
        platform.reminders.on_booking_event,
        name="reminders-under-test",
        starts_at="beginning",
        batch=batch,
    )
    await dispatcher.dispatch_pending()

    assert batches == [5]  # the run was offered whole, failed, and went one by one
    assert {row[1] for row in await reminder_rows(platform)} == set(booked["h1"])
    parked = await dispatcher.parked("reminders-under-test")
    assert sorted(p.aggregate_id for p in parked) == sorted(booked["h2"])
    assert {p.attempts for p in parked} == {1}
    assert {r.aggregate_id for r in await pending_rows(platform)} == set(booked["h2"])


async def test_a_subscriber_declared_after_another_waits_for_its_round(
    platform: Platform,
) -> None:
    await two_hospitals_booked(platform)
    dispatcher = OutboxDispatcher(platform.ports.sessions, platform.ports.clock)
    timeline: list[str] = []
    release = asyncio.Event()
    side_by_side = platform.engine.dialect.name == "postgresql"
    if not side_by_side:  # SQLite: one subscriber after another, in the order subscribed
        release.set()

    async def first(event: OutboxEvent) -> None:
        timeline.append("first")
        await release.wait()  # a slow HIS: held until the independent subscriber has run
        timeline.append("first done")

    async def independent(event: OutboxEvent) -> None:
        timeline.append("independent")
        release.set()

    async def later(event: OutboxEvent) -> None:
        timeline.append("later")

    dispatcher.subscribe("booking.confirmed", first, name="first", starts_at="beginning")
    dispatcher.subscribe(
        "booking.confirmed", later, name="later", starts_at="beginning", after=["first"]
    )
    dispatcher.subscribe(
        "booking.confirmed", independent, name="independent", starts_at="beginning"
    )
    # on PostgreSQL this returns only if the independent subscriber ran during the first's round
    await asyncio.wait_for(dispatcher.dispatch_pending(), 10)

    last_of_first = max(i for i, what in enumerate(timeline) if what.startswith("first"))
    assert timeline.index("later") > last_of_first  # its round began after the first's ended
    assert timeline.count("later") == timeline.count("first") == 5
    if side_by_side:
        assert timeline.index("independent") < last_of_first
    with pytest.raises(ValueError, match="after unknown"):
        dispatcher.subscribe("", first, name="orphan", after=["nobody"])


async def filing_state(platform: Platform) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Filings as (person, hospital, status) and the requests the outbox carries to the HIS."""
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(PatientFilingRow))).all()
        events = (
            await session.scalars(
                select(OutboxRow.payload).where(OutboxRow.topic == "patient.filing_requested")
            )
        ).all()
    return (
        sorted((r.person_id, r.hospital_id, r.status) for r in rows),
        sorted((str(e["person_id"]), str(e["hospital_id"]), str(e["patient_id"])) for e in events),
    )


async def test_filing_batch_requests_what_one_event_at_a_time_requests(
    platform: Platform,
) -> None:
    await publish_clinic(platform, clinic_filing(FilingMode.AUTO_AT_BOOKING, "h1"))
    await publish_clinic(platform, clinic_filing(FilingMode.ON_SITE, "h2"))
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=3), 9))
    h1, h2 = await slots_of(platform, "h1"), await slots_of(platform, "h2")
    for slot in (h1[0], h1[1], h2[0]):
        await confirmed_booking(platform, slot)
    events = [e for e in await booking_events(platform) if e.topic == "booking.confirmed"]
    for event in events:
        await platform.filings.on_booking_confirmed(event)
    one_by_one = await filing_state(platform)
    assert len(one_by_one[0]) == 2  # two persons at the mode A hospital, none at the other
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(PatientFilingRow))
        await session.execute(
            delete(OutboxRow).where(OutboxRow.topic == "patient.filing_requested")
        )

    await platform.filings.on_bookings_confirmed(events)
    assert await filing_state(platform) == one_by_one

    await platform.filings.on_bookings_confirmed(events)  # a replay asks nothing more
    for event in events:
        await platform.filings.on_booking_confirmed(event)
    assert await filing_state(platform) == one_by_one


async def test_two_dispatchers_delivering_side_by_side_give_each_subscriber_each_event_once(
    platform: Platform,
) -> None:
    await two_hospitals_booked(platform)
    seen: dict[str, Counter[int]] = {n: Counter() for n in ("inbox", "his", "filing-sender")}

    def counting(name: str) -> Any:
        async def handler(event: OutboxEvent) -> None:
            seen[name][event.id] += 1
            await asyncio.sleep(0.01)  # a network call: the other dispatcher's turn comes

        return handler

    workers = []
    for _ in range(2):
        worker = OutboxDispatcher(platform.ports.sessions, platform.ports.clock)
        worker.subscribe("booking.", counting("inbox"), name="inbox", starts_at="beginning")
        worker.subscribe("booking.", counting("his"), name="his", starts_at="beginning")
        worker.subscribe(
            "booking.",
            counting("filing-sender"),
            name="filing-sender",
            starts_at="beginning",
            after=["his"],
        )
        await worker.start()
        workers.append(worker)
    for _ in range(3):  # ticks of two job workers at once
        await asyncio.gather(*(w.dispatch_pending(limit=4) for w in workers))

    expected = [e.id for e in await booking_events(platform)]
    for name, counts in seen.items():
        assert sorted(counts) == expected, name
        assert set(counts.values()) == {1}, name


async def test_a_declined_run_reaches_the_handler_one_event_at_a_time(platform: Platform) -> None:
    booked = await two_hospitals_booked(platform)
    recorder = Recorder()
    offered: list[int] = []

    async def decline(events: Sequence[OutboxEvent]) -> bool:
        offered.append(len(events))
        return False  # as the HIS notifier does when a hospital's system is to be told

    platform.dispatcher.subscribe(
        "booking.confirmed", recorder, name="declining", starts_at="beginning", batch=decline
    )
    await platform.dispatcher.dispatch_pending()

    assert offered == [5]
    assert sorted(recorder.by_aggregate()) == sorted(booked["h1"] + booked["h2"])
    # with no hospital system to tell, the HIS notifier takes a run whole, having done nothing
    assert await platform.connectors.notifier.handle_batch(await booking_events(platform))


async def test_a_subscriber_waits_while_another_worker_holds_what_it_comes_after(
    platform: Platform,
) -> None:
    await two_hospitals_booked(platform)
    timeline: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def his(event: OutboxEvent) -> None:
        timeline.append("his")
        entered.set()
        await release.wait()  # a slow hospital system, held by the first worker

    async def filing_sender(event: OutboxEvent) -> None:
        timeline.append("filing sender")

    workers = []
    for _ in range(2):
        worker = OutboxDispatcher(platform.ports.sessions, platform.ports.clock)
        worker.subscribe("booking.confirmed", his, name="his", starts_at="beginning")
        worker.subscribe(
            "booking.confirmed",
            filing_sender,
            name="filing-sender",
            starts_at="beginning",
            after=["his"],
        )
        await worker.start()
        workers.append(worker)
    first = asyncio.create_task(workers[0].dispatch_pending())
    await asyncio.wait_for(entered.wait(), 10)

    await workers[1].dispatch_pending()  # the second worker's tick meanwhile
    assert "filing sender" not in timeline  # not before the HIS has been told

    release.set()
    await first
    assert timeline.index("filing sender") > max(
        i for i, what in enumerate(timeline) if what == "his"
    )

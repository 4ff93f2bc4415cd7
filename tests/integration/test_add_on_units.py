"""诊间加号: add-on units given by hospital staff, outside the slot pool, limited per session."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import (
    AddOnUnitRow,
    AuditRow,
    BookingRow,
    OutboxRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.staff import StaffActor
from tests.fixtures.platforms import (
    SESSION_DAY,
    add_confirmed,
    assert_refused,
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    manual_clock,
    msgspec_tuple,
    new_account,
    new_patient,
    publish_clinic,
    resident_id,
    session_of,
)
from tests.fixtures.staff import SQLITE_ONLY, staff_of


async def session_row(platform: Platform, session_id: str) -> SessionRow:
    async with platform.ports.sessions() as session:
        row = await session.get(SessionRow, session_id)
    assert row is not None
    return row


async def pool_state(platform: Platform) -> dict[str, Any]:
    """Every slot's SQL counters and the hot pool's counts: what an add-on must never touch."""
    async with platform.ports.sessions() as session:
        slots = (await session.scalars(select(SlotRow).order_by(SlotRow.id))).all()
    state: dict[str, Any] = {}
    for slot in slots:
        state[slot.id] = (
            slot.online_quota,
            slot.online_booked,
            msgspec_tuple(await counts(platform, slot.id)),
        )
    return state


async def limit_add_ons(platform: Platform, staff: StaffActor, limit: int) -> None:
    assert staff.hospital_id is not None
    await platform.rules.change_hospital(
        staff.hospital_id, {"add_on_per_session": limit}, staff=staff, reason="门诊量小"
    )


async def add(platform: Platform, staff: StaffActor, session_id: str, patient_id: str) -> str:
    return await platform.add_on_units.add(
        staff=staff, session_id=session_id, patient_id=patient_id, reason="复查结果需当日处理"
    )


@pytest.fixture
async def desk(platform: Platform) -> tuple[StaffActor, str]:
    """(hospital staff of h1, the id of the session on SESSION_DAY)."""
    slots = await publish_clinic(platform)
    staff = await staff_of(platform, "nurse", "hospital_staff", "h1")
    return staff, await session_of(platform, slots[0])


async def test_an_add_on_unit_is_a_confirmed_booking_that_never_counts_against_the_online_quota(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)
    before = await pool_state(platform)

    booking_id = await add(platform, staff, session_id, patient_id)

    row = await booking_row(platform, booking_id)
    assert (row.status, row.kind) == ("confirmed", "add_on")
    assert (row.account_id, row.patient_id, row.session_id) == (account_id, patient_id, session_id)
    assert row.payment_required is False
    assert row.paid is False
    assert row.visit_date == SESSION_DAY
    assert row.person_id is not None
    assert row.hospital_id == staff.hospital_id
    assert await pool_state(platform) == before  # neither online_booked nor Redis moved
    assert (await session_row(platform, session_id)).add_on_count == 1
    # the citizen sees it among the account's bookings
    assert booking_id in [b.id for b in await platform.queries.bookings_of(account_id)]


async def test_an_add_on_unit_is_audited_with_who_for_whom_and_why(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    patient_id = await new_patient(platform, await new_account(platform))
    booking_id = await add(platform, staff, session_id, patient_id)
    async with platform.ports.sessions() as session:
        unit = await session.scalar(
            select(AddOnUnitRow).where(AddOnUnitRow.booking_id == booking_id)
        )
        audit = (
            await session.scalars(select(AuditRow).where(AuditRow.action == "booking.add_on"))
        ).all()
        events = (
            await session.scalars(
                select(OutboxRow).where(
                    OutboxRow.topic == "booking.confirmed", OutboxRow.aggregate_id == booking_id
                )
            )
        ).all()
    assert unit is not None
    assert (unit.session_id, unit.added_by, unit.reason) == (
        session_id,
        "nurse",
        "复查结果需当日处理",
    )
    assert [(a.actor, a.actor_role, a.subject_id) for a in audit] == [
        ("nurse", "hospital_staff", session_id)
    ]
    assert audit[0].detail["booking_id"] == booking_id
    assert audit[0].detail["patient_id"] == patient_id
    assert len(events) == 1
    assert events[0].payload["add_on"] is True


async def test_the_per_session_add_on_limit_refuses_one_more_and_changes_nothing(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    await limit_add_ons(platform, staff, 2)
    for _ in range(2):
        await add(
            platform, staff, session_id, await new_patient(platform, await new_account(platform))
        )
    third = await new_patient(platform, await new_account(platform))
    error = await assert_refused(
        platform, "ADD_ON_LIMIT_REACHED", add(platform, staff, session_id, third)
    )
    assert error.detail["limit"] == 2
    assert (await session_row(platform, session_id)).add_on_count == 2


@SQLITE_ONLY
async def test_a_zero_add_on_allowance_refuses_every_add_on(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    await limit_add_ons(platform, staff, 0)
    patient_id = await new_patient(platform, await new_account(platform))
    await assert_refused(
        platform, "ADD_ON_LIMIT_REACHED", add(platform, staff, session_id, patient_id)
    )


async def test_concurrent_adds_racing_for_the_last_allowed_units_never_exceed_the_allowance(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    await limit_add_ons(platform, staff, 3)
    await add(platform, staff, session_id, await new_patient(platform, await new_account(platform)))
    patients = [await new_patient(platform, await new_account(platform)) for _ in range(8)]

    results = await asyncio.gather(
        *(add(platform, staff, session_id, p) for p in patients), return_exceptions=True
    )

    won = [r for r in results if isinstance(r, str)]
    lost = [r for r in results if not isinstance(r, str)]
    assert len(won) == 2, results
    assert all(isinstance(e, GuahaoError) and e.code == "ADD_ON_LIMIT_REACHED" for e in lost)
    assert (await session_row(platform, session_id)).add_on_count == 3
    async with platform.ports.sessions() as session:
        booked = await session.scalars(
            select(BookingRow.id).where(
                BookingRow.session_id == session_id, BookingRow.kind == "add_on"
            )
        )
        units = await session.scalars(
            select(AddOnUnitRow.booking_id).where(AddOnUnitRow.session_id == session_id)
        )
        assert len(set(booked.all())) == 3
        assert len(set(units.all())) == 3


@SQLITE_ONLY
async def test_a_hospitals_staff_cannot_add_to_another_hospitals_session(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    _, session_id = desk
    await platform.supply.register_hospital(clinic(code="h2"))
    other = await staff_of(platform, "elsewhere", "hospital_staff", "h2")
    patient_id = await new_patient(platform, await new_account(platform))
    await assert_refused(
        platform, "PERMISSION_DENIED", add(platform, other, session_id, patient_id)
    )
    auditor = await staff_of(platform, "reader", "authority_auditor", None)
    await assert_refused(
        platform, "STAFF_ROLE_REQUIRED", add(platform, auditor, session_id, patient_id)
    )
    assert (await session_row(platform, session_id)).add_on_count == 0


@SQLITE_ONLY
async def test_an_add_on_needs_a_reason_a_known_session_and_a_known_patient(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    patient_id = await new_patient(platform, await new_account(platform))
    await assert_refused(
        platform,
        "VALIDATION_FAILED",
        platform.add_on_units.add(
            staff=staff, session_id=session_id, patient_id=patient_id, reason="  "
        ),
    )
    await assert_refused(platform, "SESSION_NOT_FOUND", add(platform, staff, "nope", patient_id))
    await assert_refused(platform, "PATIENT_NOT_FOUND", add(platform, staff, session_id, "nope"))


async def test_a_patient_already_booked_in_the_session_gets_no_add_on(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    slots = await publish_clinic_slots(platform, session_id)
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    patient_id = (await booking_row(platform, booking_id)).patient_id
    await assert_refused(
        platform, "PATIENT_ALREADY_BOOKED_SESSION", add(platform, staff, session_id, patient_id)
    )
    # nor a second add-on for one already given one
    other = await new_patient(platform, await new_account(platform))
    await add(platform, staff, session_id, other)
    await assert_refused(
        platform, "PATIENT_ALREADY_BOOKED_SESSION", add(platform, staff, session_id, other)
    )
    assert (await session_row(platform, session_id)).add_on_count == 1


async def test_the_same_person_booked_through_another_account_gets_no_add_on(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    """One person, two accounts (a parent each): the session is the person's, not the
    account's."""
    staff, session_id = desk
    slots = await publish_clinic_slots(platform, session_id)
    number = resident_id(4242)
    first, second = await new_account(platform), await new_account(platform)
    views = [
        await add_confirmed(
            platform,
            account,
            name="李小明",
            document_type="resident_id",
            document_number=number,
            relation="other",
        )
        for account in (first, second)
    ]
    booking = await platform.bookings.hold(
        account_id=first, slot_id=slots[0], idempotency_key="first-parent"
    )
    await platform.bookings.choose_patient(
        account_id=first, booking_id=booking.id, patient_id=views[0].id
    )
    view = views[1]
    await assert_refused(
        platform, "PATIENT_ALREADY_BOOKED_SESSION", add(platform, staff, session_id, view.id)
    )


async def test_cancelling_an_add_on_booking_gives_nothing_back_to_the_pool(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)
    booking_id = await add(platform, staff, session_id, patient_id)
    before = await pool_state(platform)

    cancelled = await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)

    assert cancelled.status.value == "cancelled_by_patient"
    row = await booking_row(platform, booking_id)
    assert row.unit_returns_at is None
    assert await pool_state(platform) == before
    assert await platform.waitlist.serve_returned_unit(booking_id) is None  # no unit to offer
    manual_clock(platform).advance(minutes=10)  # past any return delay
    await platform.waitlist.serve_due()
    assert await pool_state(platform) == before
    # the unit was given: it stays counted against the doctor's allowance
    assert (await session_row(platform, session_id)).add_on_count == 1


async def test_the_authority_summary_counts_add_on_units_per_hospital_and_day(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    for _ in range(2):
        await add(
            platform, staff, session_id, await new_patient(platform, await new_account(platform))
        )
    slots = await publish_clinic_slots(platform, session_id)
    await confirmed_booking(platform, slots[0])  # a regular booking is not an add-on
    summary = await platform.add_on_units.summary(
        since=SESSION_DAY - timedelta(days=1), until=SESSION_DAY + timedelta(days=1)
    )
    assert [(s.hospital_id, s.date, s.units) for s in summary] == [
        (staff.hospital_id, SESSION_DAY, 2)
    ]
    assert (
        await platform.add_on_units.summary(
            since=SESSION_DAY + timedelta(days=1), until=SESSION_DAY + timedelta(days=9)
        )
        == []
    )


async def test_a_session_stop_cancels_add_on_units_with_everything_else(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    slots = await publish_clinic_slots(platform, session_id)
    last = slots[-1]  # the add-on is filed under the session's last slot
    _, regular, _ = await confirmed_booking(platform, last)
    add_on = await add(
        platform, staff, session_id, await new_patient(platform, await new_account(platform))
    )
    assert (await booking_row(platform, add_on)).slot_id == last

    ended = await platform.bookings.stop_session(session_id, reason="医生临时停诊")

    assert set(ended) == {regular, add_on}
    for booking_id in (regular, add_on):
        assert (await booking_row(platform, booking_id)).status == "cancelled_by_hospital"
    async with platform.ports.sessions() as session:
        slot = await session.get(SlotRow, last)
        assert slot is not None
        assert slot.online_booked == 0  # the regular booking's unit only, never below zero
    patient_id = await new_patient(platform, await new_account(platform))
    await assert_refused(platform, "SLOT_CLOSED", add(platform, staff, session_id, patient_id))


@SQLITE_ONLY
async def test_no_add_on_once_the_session_has_ended(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    manual_clock(platform).set((await session_row(platform, session_id)).ends_at)
    patient_id = await new_patient(platform, await new_account(platform))
    await assert_refused(platform, "SLOT_CLOSED", add(platform, staff, session_id, patient_id))


async def publish_clinic_slots(platform: Platform, session_id: str) -> list[str]:
    """The slot ids of ``session_id`` in time order (the clinic is already published)."""
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(SlotRow.id).where(SlotRow.session_id == session_id).order_by(SlotRow.seq)
                )
            ).all()
        )


async def test_an_add_on_racing_a_session_stop_is_either_refused_or_cancelled_by_it(
    platform: Platform, desk: tuple[StaffActor, str]
) -> None:
    staff, session_id = desk
    patient_id = await new_patient(platform, await new_account(platform))

    added, stopped = await asyncio.gather(
        add(platform, staff, session_id, patient_id),
        platform.bookings.stop_session(session_id, reason="停诊"),
        return_exceptions=True,
    )

    assert isinstance(stopped, list), stopped
    if isinstance(added, str):
        assert added in stopped
        assert (await booking_row(platform, added)).status == "cancelled_by_hospital"
    else:
        assert isinstance(added, GuahaoError), added
        assert added.code == "SLOT_CLOSED"
    async with platform.ports.sessions() as session:
        live = await session.scalar(
            select(BookingRow.id).where(
                BookingRow.session_id == session_id, BookingRow.status == "confirmed"
            )
        )
    assert live is None  # nothing confirmed in a stopped session

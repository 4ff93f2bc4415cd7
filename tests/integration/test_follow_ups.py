"""复诊有效期: a checked-in visit stays valid for the hospital's follow-up days, where offered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import AuditRow, OutboxRow, SessionRow
from guahao.platform.services.staff import StaffActor
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    at_local,
    booking_row,
    clinic,
    confirmed_booking,
    manual_clock,
    publish_clinic,
    session_of,
)
from tests.fixtures.staff import SQLITE_ONLY, staff_of


async def offer_follow_ups(platform: Platform, staff: StaffActor, days: int) -> None:
    assert staff.hospital_id is not None
    await platform.rules.change_hospital(
        staff.hospital_id, {"follow_up_valid_days": days}, staff=staff, reason="检验结果次日出"
    )


@pytest.fixture
async def visit(platform: Platform) -> tuple[StaffActor, list[str]]:
    """(staff of h1, the slots of the session on SESSION_DAY); the clock at its start."""
    slots = await publish_clinic(platform)
    staff = await staff_of(platform, "nurse", "hospital_staff", "h1")
    return staff, slots


async def checked_in(platform: Platform, slot_id: str) -> str:
    """A booking confirmed now and checked in when its session starts."""
    _, booking_id, _ = await confirmed_booking(platform, slot_id)
    async with platform.ports.sessions() as session:
        sess = await session.get(SessionRow, await session_of(platform, slot_id))
        assert sess is not None
    clock = manual_clock(platform)
    clock.set(max(clock.now(), sess.starts_at))
    await platform.bookings.check_in(booking_id)
    return booking_id


@SQLITE_ONLY
async def test_follow_up_validity_is_not_offered_unless_the_hospital_opts_in(
    platform: Platform, visit: tuple[StaffActor, list[str]]
) -> None:
    staff, slots = visit
    booking_id = await checked_in(platform, slots[0])
    assert (await platform.rules.for_hospital(staff.hospital_id or "")).follow_up_valid_days == 0
    await assert_refused(
        platform,
        "FOLLOW_UP_NOT_OFFERED",
        platform.follow_ups.grant(staff=staff, booking_id=booking_id),
    )
    await assert_refused(
        platform,
        "FOLLOW_UP_NOT_OFFERED",
        platform.follow_ups.record_visit(staff=staff, booking_id=booking_id),
    )


async def test_a_hospital_override_offers_follow_ups_valid_until_the_visit_day_plus_its_days(
    platform: Platform, visit: tuple[StaffActor, list[str]]
) -> None:
    staff, slots = visit
    await offer_follow_ups(platform, staff, 3)
    booking_id = await checked_in(platform, slots[0])

    until = await platform.follow_ups.grant(staff=staff, booking_id=booking_id)

    assert until == SESSION_DAY + timedelta(days=3)
    row = await booking_row(platform, booking_id)
    assert row.follow_up_until == until
    assert row.follow_up_visits == 0
    async with platform.ports.sessions() as session:
        audit = (
            await session.scalars(select(AuditRow).where(AuditRow.subject_id == booking_id))
        ).all()
        topics = (
            await session.scalars(
                select(OutboxRow.topic).where(OutboxRow.aggregate_id == booking_id)
            )
        ).all()
    assert [(a.actor, a.action) for a in audit] == [("nurse", "booking.follow_up_granted")]
    assert "booking.follow_up_granted" in topics


@SQLITE_ONLY
async def test_follow_up_validity_is_only_for_a_checked_in_visit(
    platform: Platform, visit: tuple[StaffActor, list[str]]
) -> None:
    staff, slots = visit
    await offer_follow_ups(platform, staff, 3)
    account_id, confirmed, _ = await confirmed_booking(platform, slots[0])
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.follow_ups.grant(staff=staff, booking_id=confirmed),
    )
    await platform.bookings.cancel(account_id=account_id, booking_id=confirmed)
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.follow_ups.grant(staff=staff, booking_id=confirmed),
    )
    await assert_refused(
        platform, "BOOKING_NOT_FOUND", platform.follow_ups.grant(staff=staff, booking_id="nope")
    )


async def test_return_visits_are_counted_until_the_last_valid_day_and_refused_after_it(
    platform: Platform, visit: tuple[StaffActor, list[str]]
) -> None:
    staff, slots = visit
    await offer_follow_ups(platform, staff, 2)
    booking_id = await checked_in(platform, slots[0])
    until = await platform.follow_ups.grant(staff=staff, booking_id=booking_id)
    clock = manual_clock(platform)

    clock.set(at_local(SESSION_DAY + timedelta(days=1), 9))
    assert await platform.follow_ups.record_visit(staff=staff, booking_id=booking_id) == 1
    clock.set(at_local(until, 23, 59))  # the last day counts whole, in the hospital's time
    assert await platform.follow_ups.record_visit(staff=staff, booking_id=booking_id) == 2
    clock.set(at_local(until + timedelta(days=1), 0, 0))
    error = await assert_refused(
        platform,
        "FOLLOW_UP_EXPIRED",
        platform.follow_ups.record_visit(staff=staff, booking_id=booking_id),
    )
    assert error.detail["until"] == until.isoformat()
    assert (await booking_row(platform, booking_id)).follow_up_visits == 2
    async with platform.ports.sessions() as session:
        visits = (
            await session.scalars(
                select(AuditRow.detail).where(AuditRow.action == "booking.follow_up_visit")
            )
        ).all()
    assert [v["visit"] for v in visits] == [1, 2]


@SQLITE_ONLY
async def test_another_hospitals_staff_can_neither_grant_nor_record_nor_offer(
    platform: Platform, visit: tuple[StaffActor, list[str]]
) -> None:
    staff, slots = visit
    await platform.supply.register_hospital(clinic(code="h2"))
    other = await staff_of(platform, "elsewhere", "hospital_staff", "h2")
    admin = await staff_of(platform, "chief", "authority_admin", None)
    assert staff.hospital_id is not None
    await assert_refused(
        platform,
        "PERMISSION_DENIED",
        platform.rules.change_hospital(
            staff.hospital_id, {"follow_up_valid_days": 7}, staff=other, reason="x"
        ),
    )
    await offer_follow_ups(platform, staff, 3)
    booking_id = await checked_in(platform, slots[0])
    for action in (platform.follow_ups.grant, platform.follow_ups.record_visit):
        await assert_refused(
            platform, "PERMISSION_DENIED", action(staff=other, booking_id=booking_id)
        )
        # the authority does not run a hospital's clinic
        await assert_refused(
            platform, "STAFF_ROLE_REQUIRED", action(staff=admin, booking_id=booking_id)
        )
    await platform.follow_ups.grant(staff=staff, booking_id=booking_id)
    await assert_refused(
        platform,
        "PERMISSION_DENIED",
        platform.follow_ups.record_visit(staff=other, booking_id=booking_id),
    )
    assert (await booking_row(platform, booking_id)).follow_up_visits == 0

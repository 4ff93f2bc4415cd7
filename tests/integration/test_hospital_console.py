"""The hospital console's reads: live counts, a stop's impact before it happens, who is in a
session (audited), held to the staff member's own hospital."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import AuditRow
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    clinic,
    confirmed_booking,
    new_account,
    new_patient,
    publish_clinic,
    session_of,
)
from tests.fixtures.staff import staff_of


async def account_with_patient(platform: Platform) -> str:
    account = await new_account(platform)
    await new_patient(platform, account)
    return account


async def audit_actions(platform: Platform) -> dict[str, int]:
    async with platform.ports.sessions() as session:
        rows = (
            await session.execute(select(AuditRow.action, func.count()).group_by(AuditRow.action))
        ).all()
    return {action: int(n) for action, n in rows}


async def test_a_sessions_counts_and_a_stops_impact_are_read_before_anything_changes(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    session_id = await session_of(platform, slots[0])
    _, paid, _ = await confirmed_booking(platform, slots[0])  # paid online
    _, at_desk, _ = await confirmed_booking(platform, slots[1], channel="insurance")
    await platform.bookings.hold(
        account_id=(await account_with_patient(platform)),
        slot_id=slots[2],
        idempotency_key="k-held",
    )
    desk = await staff_of(platform, "desk", "hospital_staff", "h1")

    (line,) = [
        s
        for s in await platform.hospital_console.sessions(desk, SESSION_DAY, 1)
        if s.id == session_id
    ]
    assert (line.held, line.booked, line.add_ons) == (1, 2, 0)
    assert line.available == line.online - 3
    impact = await platform.hospital_console.stop_impact(desk, session_id)
    assert impact.bookings == 3  # the hold ends too, but nobody is named for it
    assert sorted(p.booking_id for p in impact.patients) == sorted([paid, at_desk])
    assert impact.refunds >= 1
    patients = await platform.hospital_console.patients(desk, session_id)
    assert {p.patient_name for p in patients} == {"张三"}
    assert all("*" in p.document_masked for p in patients)
    actions = await audit_actions(platform)
    assert actions["console.stop_impact.read"] == 1
    assert actions["console.session_patients.read"] == 1


async def test_staff_of_another_hospital_are_refused_without_learning_anything(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    session_id = await session_of(platform, slots[0])
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    await platform.supply.register_hospital(clinic(code="h2"))
    other = await staff_of(platform, "other", "hospital_staff", "h2")
    auditor = await staff_of(platform, "auditor", "authority_auditor", None)
    console = platform.hospital_console
    await assert_refused(platform, "HOSPITAL_SCOPE_DENIED", console.patients(other, session_id))
    await assert_refused(platform, "HOSPITAL_SCOPE_DENIED", console.stop_impact(other, session_id))
    await assert_refused(platform, "HOSPITAL_SCOPE_DENIED", console.own_booking(other, booking_id))
    await assert_refused(platform, "HOSPITAL_SCOPE_DENIED", console.own_session(other, "nope"))
    await assert_refused(platform, "STAFF_ROLE_REQUIRED", console.filing_queue(auditor))
    assert [s.id for s in await console.sessions(other, SESSION_DAY - timedelta(days=3), 7)] == []
    assert "console.session_patients.read" not in await audit_actions(platform)

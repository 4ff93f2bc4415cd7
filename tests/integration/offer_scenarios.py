"""Scenario helpers for the waitlist (候补) and lottery (摇号) tests: small hospitals whose
sessions have one slot each, filled and emptied through the real services."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.clock import to_epoch_ms
from guahao.platform.hospitals import PaymentMode, Period, SlotCategory
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import (
    BlacklistEntryRow,
    BookingRow,
    NotificationRow,
    PatientRow,
    SessionRow,
    SlotRow,
    WaitlistEntryRow,
)
from guahao.platform.schedules import HospitalSpec, WeeklySession
from tests.fixtures.platforms import SESSION_DAY, clinic, confirmed_booking, manual_clock

THURSDAY = SESSION_DAY + timedelta(days=1)


def one_slot_clinic(
    payment_mode: PaymentMode = PaymentMode.PAY_AT_HOSPITAL,
    *,
    units: int = 1,
    code: str = "h1",
    sessions: tuple[tuple[int, Period], ...] = ((SESSION_DAY.weekday(), Period.MORNING),),
) -> HospitalSpec:
    """``clinic`` with one 3-hour slot per session (so a session sells out with ``units``
    bookings) on the given (weekday, period) pairs, all with the same doctor."""
    spec = clinic(payment_mode, units=units, code=code)
    roster = tuple(
        WeeklySession(
            doctor_code="d1",
            weekday=weekday,
            period=period,
            category=SlotCategory.SPECIALIST,
            fee_cents=3000,
            units_per_segment=units,
            segment_minutes=180,
        )
        for weekday, period in sessions
    )
    return msgspec.structs.replace(spec, roster=roster)


async def publish(platform: Platform, spec: HospitalSpec, days: list[date]) -> None:
    await platform.supply.register_hospital(spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))


async def publish_week(platform: Platform, spec: HospitalSpec) -> None:
    await publish(
        platform, spec, [SESSION_DAY - timedelta(days=2) + timedelta(days=i) for i in range(7)]
    )


async def session_on(platform: Platform, day: date, period: str = "morning") -> SessionRow:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(SessionRow).where(SessionRow.date == day, SessionRow.period == period)
        )
        assert found is not None
        return found


async def slots_of(platform: Platform, session_id: str) -> list[str]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(SlotRow.id)
                    .where(SlotRow.session_id == session_id)
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        )


async def sell_out(platform: Platform, session_id: str) -> list[tuple[str, str]]:
    """Book every unit of the session; returns (account_id, booking_id) per unit."""
    booked = []
    for slot_id in await slots_of(platform, session_id):
        counts = (
            await platform.ports.inventory.counts(
                [slot_id], now_ms=to_epoch_ms(platform.ports.clock.now())
            )
        )[slot_id]
        for _ in range(counts.available):
            account_id, booking_id, _order = await confirmed_booking(platform, slot_id)
            booked.append((account_id, booking_id))
    return booked


async def person_of(platform: Platform, patient_id: str) -> str:
    async with platform.ports.sessions() as session:
        patient = await session.get(PatientRow, patient_id)
        assert patient is not None
        return patient.person_id


async def ban(platform: Platform, patient_id: str, days: int = 30) -> None:
    """A manual ban of the patient's person (a row as the blacklist service writes it)."""
    now = platform.ports.clock.now()
    async with platform.ports.sessions() as session, session.begin():
        session.add(
            BlacklistEntryRow(
                id=new_id(),
                person_id=await person_of(platform, patient_id),
                policy="manual",
                reason="test",
                source="manual",
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(days=days),
                created_by="tester",
                created_at=now,
            )
        )


async def entry(platform: Platform, entry_id: str) -> WaitlistEntryRow:
    async with platform.ports.sessions() as session:
        found = await session.get(WaitlistEntryRow, entry_id)
        assert found is not None
        return found


async def bookings_of(platform: Platform, account_id: str) -> list[BookingRow]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(BookingRow)
                    .where(BookingRow.account_id == account_id)
                    .order_by(BookingRow.created_at)
                )
            ).all()
        )


async def messages(platform: Platform, account_id: str) -> list[NotificationRow]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationRow)
                    .where(NotificationRow.account_id == account_id)
                    .order_by(NotificationRow.created_at, NotificationRow.id)
                )
            ).all()
        )


async def online_booked(platform: Platform, slot_id: str) -> int:
    async with platform.ports.sessions() as session:
        value = await session.scalar(select(SlotRow.online_booked).where(SlotRow.id == slot_id))
        return int(value or 0)


async def active_bookings(platform: Platform, slot_id: str) -> int:
    async with platform.ports.sessions() as session:
        value = await session.scalar(
            select(func.count())
            .select_from(BookingRow)
            .where(
                BookingRow.slot_id == slot_id,
                BookingRow.status.in_(["held", "patient_chosen", "awaiting_payment", "confirmed"]),
            )
        )
        return int(value or 0)


async def deliver(platform: Platform) -> None:
    """Run the outbox until it is quiet (handlers write events of their own)."""
    for _ in range(10):
        if not await platform.dispatcher.dispatch_pending():
            return


def advance(platform: Platform, **delta: Any) -> datetime:
    return manual_clock(platform).advance(**delta)


async def set_region_rules(platform: Platform, changes: dict[str, Any]) -> None:
    """A new version of the region's rules, as the rule book stores it (a new row, never an
    update), then read again at once."""
    from guahao.platform.persistence.tables import RegionRulesRow
    from guahao.platform.region_rules import apply_changes

    rules = apply_changes(await platform.rules.region(), changes)
    async with platform.ports.sessions() as session, session.begin():
        last = await session.scalar(select(func.max(RegionRulesRow.version)))
        session.add(
            RegionRulesRow(
                version=(last or 0) + 1,
                rules=msgspec.to_builtins(rules),
                changed_by="test",
                changed_at=platform.ports.clock.now(),
                reason="scenario",
            )
        )
    platform.rules.forget()

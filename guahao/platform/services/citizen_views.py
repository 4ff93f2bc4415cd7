"""Read models the citizen pages need beyond ``QueryService``: one doctor with the names
around it, a booking's 退号 deadline and refund, the account's inbox.

Read-only, like ``QueryService``; the deadline is the hospital's cancel policy applied to the
booked segment, the same computation ``BookingService.cancel`` enforces, so what the page
promises is what the command allows.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec
from sqlalchemy import select

from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    NotificationRow,
    RefundRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.runtime import Ports

__all__ = ["BookingTerms", "CitizenViews", "DoctorProfile", "InboxMessage", "SessionOutline"]


class DoctorProfile(msgspec.Struct, frozen=True, rename="camel"):
    """A doctor with the department and hospital names a page heads with."""

    id: str
    name: str
    title: str
    expertise: str
    department_id: str
    department_name: str
    hospital_id: str
    hospital_name: str
    hospital_grade: str
    district: str
    hold_minutes: int
    payment_mode: str


class BookingTerms(msgspec.Struct, frozen=True, rename="camel"):
    """When a booking may still be cancelled, and where its refund stands."""

    booking_id: str
    cancel_deadline: datetime
    refund_status: str | None
    refund_cents: int | None
    refunded_at: datetime | None


class InboxMessage(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    topic: str
    zh: str
    en: str
    created_at: datetime
    read_at: datetime | None = None


class SessionOutline(msgspec.Struct, frozen=True, rename="camel"):
    """One session as a waitlist or lottery page heads with it: who, where, when, and how its
    units are given (first come, or drawn by lottery in a window)."""

    id: str
    doctor_id: str
    doctor_name: str
    department_name: str
    hospital_name: str
    date: date
    period: str
    starts_at: datetime
    release_at: datetime
    status: str
    allocation: str
    lottery_opens_at: datetime | None
    lottery_draw_at: datetime | None
    lottery_drawn: bool


class CitizenViews:
    """Read-only views for the citizen pages; never changes state."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def doctor(self, doctor_id: str) -> DoctorProfile:
        async with self._p.sessions() as session:
            found = (
                await session.execute(
                    select(DoctorRow, DepartmentRow, HospitalRow)
                    .join(DepartmentRow, DepartmentRow.id == DoctorRow.department_id)
                    .join(HospitalRow, HospitalRow.id == DoctorRow.hospital_id)
                    .where(DoctorRow.id == doctor_id)
                )
            ).first()
        if found is None:
            refuse("DOCTOR_NOT_FOUND", doctor_id=doctor_id)
        doctor, department, hospital = found
        policies = msgspec.convert(hospital.policies, HospitalPolicies)
        return DoctorProfile(
            id=doctor.id,
            name=doctor.name,
            title=doctor.title,
            expertise=doctor.expertise,
            department_id=department.id,
            department_name=department.name,
            hospital_id=hospital.id,
            hospital_name=hospital.name,
            hospital_grade=hospital.grade,
            district=hospital.district,
            hold_minutes=policies.hold_minutes,
            payment_mode=policies.payment_mode.value,
        )

    async def department_hospital(self, department_id: str) -> tuple[str, str, str]:
        """``(department name, hospital id, hospital name)`` of a department."""
        async with self._p.sessions() as session:
            found = (
                await session.execute(
                    select(DepartmentRow.name, HospitalRow.id, HospitalRow.name)
                    .join(HospitalRow, HospitalRow.id == DepartmentRow.hospital_id)
                    .where(DepartmentRow.id == department_id)
                )
            ).first()
        if found is None:
            refuse("DEPARTMENT_NOT_FOUND", department_id=department_id)
        return str(found[0]), str(found[1]), str(found[2])

    async def doctor_of_session(self, session_id: str) -> str:
        """The doctor whose page shows ``session_id``."""
        async with self._p.sessions() as session:
            found = await session.scalar(
                select(SessionRow.doctor_id).where(SessionRow.id == session_id)
            )
        if found is None:
            refuse("SESSION_NOT_FOUND", session_id=session_id)
        return str(found)

    async def sessions(self, session_ids: list[str]) -> dict[str, SessionOutline]:
        """The named sessions with their doctor, department and hospital names; an unknown id
        is left out."""
        if not session_ids:
            return {}
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(SessionRow, DoctorRow.name, DepartmentRow.name, HospitalRow.name)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .where(SessionRow.id.in_(session_ids))
                )
            ).all()
        return {
            row.id: SessionOutline(
                id=row.id,
                doctor_id=row.doctor_id,
                doctor_name=doctor_name,
                department_name=department_name,
                hospital_name=hospital_name,
                date=row.date,
                period=row.period,
                starts_at=row.starts_at,
                release_at=row.release_at,
                status=row.status,
                allocation=row.allocation,
                lottery_opens_at=row.lottery_opens_at,
                lottery_draw_at=row.lottery_draw_at,
                lottery_drawn=row.lottery_drawn,
            )
            for row, doctor_name, department_name, hospital_name in rows
        }

    async def session(self, session_id: str) -> SessionOutline:
        """One session's outline, or ``SESSION_NOT_FOUND``."""
        found = (await self.sessions([session_id])).get(session_id)
        if found is None:
            refuse("SESSION_NOT_FOUND", session_id=session_id)
        return found

    async def booking_terms(
        self, account_id: str, booking_ids: list[str]
    ) -> dict[str, BookingTerms]:
        """The 退号 deadline and refund of each of the account's bookings."""
        if not booking_ids:
            return {}
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        BookingRow.id, SlotRow.starts_at, HospitalRow.policies, HospitalRow.timezone
                    )
                    .join(SlotRow, SlotRow.id == BookingRow.slot_id)
                    .join(SessionRow, SessionRow.id == BookingRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .where(BookingRow.id.in_(booking_ids), BookingRow.account_id == account_id)
                )
            ).all()
            refunds = (
                await session.scalars(
                    select(RefundRow)
                    .where(RefundRow.booking_id.in_(booking_ids))
                    .order_by(RefundRow.created_at)
                )
            ).all()
        by_booking = {r.booking_id: r for r in refunds}
        terms: dict[str, BookingTerms] = {}
        for booking_id, starts_at, policies, zone in rows:
            cancel = msgspec.convert(policies, HospitalPolicies).cancel
            refund = by_booking.get(booking_id)
            terms[booking_id] = BookingTerms(
                booking_id=booking_id,
                cancel_deadline=cancel.deadline(starts_at, zone),
                refund_status=refund.status if refund else None,
                refund_cents=refund.amount_cents if refund else None,
                refunded_at=refund.refunded_at if refund else None,
            )
        return terms

    async def inbox(self, account_id: str, limit: int = 100) -> list[InboxMessage]:
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(NotificationRow)
                    .where(NotificationRow.account_id == account_id)
                    .order_by(NotificationRow.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [
            InboxMessage(
                id=r.id,
                topic=r.template,
                zh=str(r.params.get("zh", "")),
                en=str(r.params.get("en", "")),
                created_at=r.created_at,
                read_at=r.read_at,
            )
            for r in rows
        ]

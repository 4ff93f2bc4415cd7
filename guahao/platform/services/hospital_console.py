"""What a hospital's desk sees and does in the console, held to the staff member's hospital.

The actions themselves belong to other services (``HospitalActions`` for check-ins, stops and
no-shows, ``LotteryService``, ``AddOnUnits``, ``Filings``); this one adds what a page needs
around them: the hospital's sessions with live counts (SQL for the quotas and add-ons, the
Redis pool for held, booked and returning units), a stop's impact before it is confirmed,
the patients of a session and the filing queue. Every call first checks that the session,
booking or filing is the staff member's own hospital's (``HOSPITAL_SCOPE_DENIED`` otherwise,
never a hint that it exists), and every read that shows a patient's name is audited in the
same transaction as the read, as the authority's person records are.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import ACTIVE_STATUSES, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.identity_documents import validate_document
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    PatientFilingRow,
    PatientRow,
    PersonRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.personal_data import open_patient_name
from guahao.platform.services.accounts import REGION_ZONE, person_key
from guahao.platform.services.audit import record_audit
from guahao.platform.services.filings import Filings, FilingView
from guahao.platform.services.hospital_actions import live_bookings_version
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role

__all__ = [
    "ConsoleSession",
    "FilingQueueLine",
    "HospitalConsole",
    "SessionPatient",
    "StopImpact",
    "UnfiledArrival",
]

MAX_DAYS = 31
"""The longest run of days one sessions page lists."""


class ConsoleSession(msgspec.Struct, frozen=True):
    """One session with its live counts (units, not bookings: an add-on is outside them)."""

    id: str
    date: date
    period: str
    starts_at: datetime
    department: str
    doctor: str
    status: str
    allocation: str
    release_at: datetime
    lottery_draw_at: datetime | None
    online: int
    offline: int
    held: int
    booked: int
    returning: int
    available: int
    add_ons: int


class SessionPatient(msgspec.Struct, frozen=True):
    """A live or past booking of a session, as the desk needs it (masked document)."""

    booking_id: str
    status: str
    kind: str
    starts_at: datetime
    patient_id: str | None
    patient_name: str
    document_masked: str
    paid: bool


class StopImpact(msgspec.Struct, frozen=True):
    """What 停诊 would do now: bookings ended, the people told, the refunds made."""

    session_id: str
    bookings: int
    patients: list[SessionPatient]
    refunds: int
    refund_cents: int
    version: str = ""
    """``live_bookings_version`` of the bookings counted: the confirmation carries it."""


class FilingQueueLine(msgspec.Struct, frozen=True):
    filing_id: str
    status: str
    patient_name: str
    document_masked: str
    requested_at: datetime
    detail: str


class UnfiledArrival(msgspec.Struct, frozen=True):
    """A patient booked in the coming days with no record in the hospital's HIS yet: under
    filing mode B (``on_site``) the desk files them when they arrive."""

    booking_id: str
    starts_at: datetime
    department: str
    patient_name: str
    document_type: str
    document_masked: str


class HospitalConsole:
    """Reads for the hospital console, scoped and audited."""

    def __init__(self, ports: Ports, filings: Filings) -> None:
        self._p = ports
        self._filings = filings

    @staticmethod
    def hospital_of(staff: StaffActor) -> str:
        """The staff member's hospital (hospital staff only)."""
        require_role(staff, StaffRole.HOSPITAL_STAFF)
        if staff.hospital_id is None:
            refuse("HOSPITAL_SCOPE_DENIED", reason="staff of no hospital")
        return staff.hospital_id

    async def own_session(self, staff: StaffActor, session_id: str) -> SessionRow:
        """The session if it is this staff member's hospital's; refused otherwise."""
        hospital_id = self.hospital_of(staff)
        async with self._p.sessions() as session:
            row = await session.get(SessionRow, session_id)
        if row is None or row.hospital_id != hospital_id:
            refuse("HOSPITAL_SCOPE_DENIED", session_id=session_id)
        return row

    async def own_booking(self, staff: StaffActor, booking_id: str) -> BookingRow:
        hospital_id = self.hospital_of(staff)
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
            sess = await session.get(SessionRow, row.session_id) if row is not None else None
        if row is None or sess is None or sess.hospital_id != hospital_id:
            refuse("HOSPITAL_SCOPE_DENIED", booking_id=booking_id)
        return row

    async def hospital_code(self, staff: StaffActor) -> str:
        hospital_id = self.hospital_of(staff)
        async with self._p.sessions() as session:
            code = await session.scalar(
                select(HospitalRow.code).where(HospitalRow.id == hospital_id)
            )
        return code or ""

    async def policies(self, staff: StaffActor) -> dict[str, Any]:
        """The hospital's own booking policies as registered (split, release, holds…)."""
        hospital_id = self.hospital_of(staff)
        async with self._p.sessions() as session:
            found = await session.scalar(
                select(HospitalRow.policies).where(HospitalRow.id == hospital_id)
            )
        return dict(found or {})

    async def sessions(self, staff: StaffActor, first: date, days: int) -> list[ConsoleSession]:
        """The hospital's sessions from ``first`` for ``days`` days, with live counts."""
        hospital_id = self.hospital_of(staff)
        days = max(1, min(days, MAX_DAYS))
        last = first + timedelta(days=days - 1)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(SessionRow, DepartmentRow.name, DoctorRow.name)
                    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .where(
                        SessionRow.hospital_id == hospital_id,
                        SessionRow.date >= first,
                        SessionRow.date <= last,
                    )
                    .order_by(SessionRow.starts_at, DepartmentRow.name, DoctorRow.name)
                )
            ).all()
            ids = [r[0].id for r in rows]
            slots = (
                (await session.scalars(select(SlotRow).where(SlotRow.session_id.in_(ids)))).all()
                if ids
                else []
            )
        counts = await self._p.inventory.counts(
            [s.id for s in slots], now_ms=to_epoch_ms(self._p.clock.now())
        )
        totals: dict[str, list[int]] = {sid: [0, 0, 0, 0, 0, 0] for sid in ids}
        for slot in slots:
            line = totals[slot.session_id]
            line[0] += slot.online_quota
            line[1] += slot.offline_quota
            found = counts.get(slot.id)
            if found is not None:
                line[2] += found.held
                line[3] += found.booked
                line[4] += found.returning
                line[5] += found.available
            else:  # not in the hot pool (finished or stopped): SQL's booked count
                line[3] += slot.online_booked
        result = []
        for sess, department, doctor in rows:
            online, offline, held, booked, returning, available = totals[sess.id]
            if sess.status != "open":  # a stopped or finished session offers nothing
                available = 0
            result.append(
                ConsoleSession(
                    id=sess.id,
                    date=sess.date,
                    period=sess.period,
                    starts_at=sess.starts_at,
                    department=department,
                    doctor=doctor,
                    status=sess.status,
                    allocation=sess.allocation,
                    release_at=sess.release_at,
                    lottery_draw_at=sess.lottery_draw_at,
                    online=online,
                    offline=offline,
                    held=held,
                    booked=booked,
                    returning=returning,
                    available=available,
                    add_ons=sess.add_on_count,
                )
            )
        return result

    async def session_line(self, staff: StaffActor, session_id: str) -> ConsoleSession:
        sess = await self.own_session(staff, session_id)
        for line in await self.sessions(staff, sess.date, 1):
            if line.id == session_id:
                return line
        refuse("SESSION_NOT_FOUND", session_id=session_id)

    async def patients(self, staff: StaffActor, session_id: str) -> list[SessionPatient]:
        """The session's bookings with the patients' names (audited: a read of personal
        data by staff)."""
        await self.own_session(staff, session_id)
        async with self._p.sessions() as session, session.begin():
            found = await self._patients(session, session_id, live_only=False)
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "console.session_patients.read",
                "session",
                session_id,
                {"bookings": len(found)},
                self._p.clock.now(),
            )
        return found

    async def stop_impact(self, staff: StaffActor, session_id: str) -> StopImpact:
        """What stopping the session would do now (audited: it names the patients)."""
        await self.own_session(staff, session_id)
        async with self._p.sessions() as session, session.begin():
            live = await self._patients(session, session_id, live_only=True)
            paid = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(BookingRow.fee_cents), 0)).where(
                        BookingRow.session_id == session_id,
                        BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]),
                        BookingRow.paid.is_(True),
                    )
                )
            ).one()
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "console.stop_impact.read",
                "session",
                session_id,
                {"bookings": len(live)},
                self._p.clock.now(),
            )
        return StopImpact(
            session_id=session_id,
            bookings=len(live),
            patients=[p for p in live if p.patient_id is not None],
            refunds=int(paid[0]),
            refund_cents=int(paid[1]),
            version=live_bookings_version(p.booking_id for p in live),
        )

    async def _patients(
        self, session: AsyncSession, session_id: str, *, live_only: bool
    ) -> list[SessionPatient]:
        query = (
            select(
                BookingRow,
                SlotRow.starts_at,
                PatientRow.name_enc,
                PatientRow.clear_name,
                PatientRow.document_masked,
            )
            .join(SlotRow, SlotRow.id == BookingRow.slot_id)
            .outerjoin(PatientRow, PatientRow.id == BookingRow.patient_id)
            .where(BookingRow.session_id == session_id)
            .order_by(SlotRow.starts_at, BookingRow.created_at)
        )
        if live_only:
            query = query.where(BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]))
        else:
            # a hold that never got a patient is nobody's booking yet
            unseen = [
                BookingStatus.HELD.value,
                BookingStatus.ABANDONED.value,
                BookingStatus.EXPIRED.value,
            ]
            query = query.where(BookingRow.status.notin_(unseen))
        rows = (await session.execute(query)).all()
        return [
            SessionPatient(
                booking_id=b.id,
                status=b.status,
                kind=b.kind,
                starts_at=starts_at,
                patient_id=b.patient_id,
                patient_name=open_patient_name(self._p.vault, sealed, clear),
                document_masked=masked or "",
                paid=b.paid,
            )
            for b, starts_at, sealed, clear, masked in rows
        ]

    async def filing_queue(self, staff: StaffActor, *, limit: int = 100) -> list[FilingQueueLine]:
        """Filings waiting for the hospital (pending first, then failed), audited."""
        hospital_id = self.hospital_of(staff)
        async with self._p.sessions() as session, session.begin():
            rows = (
                (
                    await session.execute(
                        select(PatientFilingRow)
                        .where(
                            PatientFilingRow.hospital_id == hospital_id,
                            PatientFilingRow.status.in_(["pending", "failed"]),
                        )
                        .order_by(PatientFilingRow.status.desc(), PatientFilingRow.created_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            people = {r.person_id for r in rows}
            names: dict[str, tuple[str, str]] = {}
            if people:
                for person_id, sealed, clear, masked in (
                    await session.execute(
                        select(
                            PatientRow.person_id,
                            PatientRow.name_enc,
                            PatientRow.clear_name,
                            PatientRow.document_masked,
                        )
                        .where(PatientRow.person_id.in_(people))
                        .order_by(PatientRow.created_at)
                    )
                ).all():
                    if person_id not in names:
                        names[person_id] = (
                            open_patient_name(self._p.vault, sealed, clear),
                            masked,
                        )
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "console.filing_queue.read",
                "hospital",
                hospital_id,
                {"filings": len(rows)},
                self._p.clock.now(),
            )
        return [
            FilingQueueLine(
                filing_id=r.id,
                status=r.status,
                patient_name=names.get(r.person_id, ("", ""))[0],
                document_masked=names.get(r.person_id, ("", ""))[1],
                requested_at=r.created_at,
                detail=r.detail,
            )
            for r in rows
        ]

    async def unfiled_arrivals(
        self, staff: StaffActor, first: date, days: int = 2, *, limit: int = 200
    ) -> list[UnfiledArrival]:
        """Confirmed bookings from ``first`` for ``days`` days whose patient the hospital has
        not filed (audited: it names patients)."""
        hospital_id = self.hospital_of(staff)
        last = first + timedelta(days=max(1, min(days, 7)) - 1)
        filed = select(PatientFilingRow.person_id).where(
            PatientFilingRow.hospital_id == hospital_id, PatientFilingRow.status == "filed"
        )
        query = (
            select(
                BookingRow.id,
                SlotRow.starts_at,
                DepartmentRow.name,
                PatientRow.name_enc,
                PatientRow.clear_name,
                PatientRow.document_type,
                PatientRow.document_masked,
            )
            .join(SessionRow, SessionRow.id == BookingRow.session_id)
            .join(SlotRow, SlotRow.id == BookingRow.slot_id)
            .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
            .join(PatientRow, PatientRow.id == BookingRow.patient_id)
            .where(
                SessionRow.hospital_id == hospital_id,
                SessionRow.date >= first,
                SessionRow.date <= last,
                BookingRow.status == BookingStatus.CONFIRMED.value,
                BookingRow.person_id.notin_(filed),
            )
            .order_by(SlotRow.starts_at)
            .limit(limit)
        )
        async with self._p.sessions() as session, session.begin():
            rows = (await session.execute(query)).all()
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "console.unfiled_arrivals.read",
                "hospital",
                hospital_id,
                {"bookings": len(rows)},
                self._p.clock.now(),
            )
        return [
            UnfiledArrival(
                booking_id,
                starts_at,
                department,
                open_patient_name(self._p.vault, sealed, clear),
                document_type,
                masked,
            )
            for booking_id, starts_at, department, sealed, clear, document_type, masked in rows
        ]

    async def file_on_arrival(
        self, staff: StaffActor, booking_id: str, document_number: str, his_patient_id: str
    ) -> FilingView:
        """建档 at the desk (mode B): the document read off the patient's card must be the
        booking's patient's (a typo must not file somebody else), then the HIS number is
        recorded as the filing."""
        row = await self.own_booking(staff, booking_id)
        async with self._p.sessions() as session:
            patient = await session.get(PatientRow, row.patient_id) if row.patient_id else None
            person = await session.get(PersonRow, row.person_id) if row.person_id else None
        if patient is None or person is None:
            refuse("BOOKING_STATE_INVALID", booking_id=booking_id, reason="no patient yet")
        today = self._p.clock.now().astimezone(ZoneInfo(REGION_ZONE)).date()
        document = validate_document(patient.document_type, document_number.strip(), today=today)
        if self._p.vault.index("document", person_key(document)) != person.document_hash:
            refuse("VALIDATION_FAILED", field="document_number", reason="not this patient's")
        filing = await self._filings.record_filed_by_document(
            hospital_id=self.hospital_of(staff),
            document_type=patient.document_type,
            document_number=document_number.strip(),
            his_patient_id=his_patient_id.strip(),
        )
        await self.record_action(
            staff, "console.filing.on_arrival", "booking", booking_id, {"filing": filing.id}
        )
        return filing

    async def record_action(
        self,
        staff: StaffActor,
        action: str,
        subject_type: str,
        subject_id: str,
        detail: dict[str, object],
    ) -> None:
        """Audit a change made from the console (stop, check-in, lottery, no-shows)."""
        async with self._p.sessions() as session, session.begin():
            record_audit(
                session,
                staff.username,
                staff.role.value,
                action,
                subject_type,
                subject_id,
                detail,
                self._p.clock.now(),
            )

"""What a hospital's own system (HIS) tells the platform, applied through one service.

Connectors (FHIR, HL7 v2, push API, batch files) never write tables: they map their format to
the canonical structs and call this service. It upserts sessions incrementally, changes a
slot's capacity atomically against the hot pool (never below what is booked, held or on its way
back, so no confirmed booking is ever dropped and nothing is oversold), records add-on units
(加号), finds sessions by the HIS's own identifiers, and routes session stops (停诊) and
check-ins (签到) to the hospital actions, scoped to the hospital that reported them.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

import msgspec
from sqlalchemy import select

from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import HospitalGrade, HospitalPolicies
from guahao.platform.persistence.connector_tables import BookingFilingRow
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    DoctorRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.personal_data import patient_name
from guahao.platform.schedules import DepartmentSpec, DoctorSpec, HospitalSpec, SessionSpec
from guahao.platform.services.department_policies import policies_by_department
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.runtime import Ports
from guahao.platform.services.supply import SupplyService

if TYPE_CHECKING:
    from guahao.platform.services.filings import Filings

log = logging.getLogger(__name__)

__all__ = [
    "BookingFacts",
    "Drift",
    "FeedReport",
    "FilingResult",
    "HospitalBooking",
    "HospitalFeed",
    "PatientFacts",
    "SessionKey",
    "describe",
]

DriftKind = Literal["segments_changed", "capacity_below_taken", "missing_in_his", "stopped_here"]


class SessionKey(msgspec.Struct, frozen=True):
    """A session as a hospital names it: by its own id, or by doctor, date and period."""

    doctor_code: str = ""
    date: date | None = None
    period: str = ""
    external_id: str = ""
    starts_at: datetime | None = None


def describe(key: SessionKey) -> str:
    """A session key as a person reads it: ``d001 2026-03-04 morning`` or its HIS id."""
    if key.external_id:
        return key.external_id
    when = key.starts_at.isoformat() if key.starts_at else f"{key.date} {key.period}"
    return f"{key.doctor_code} {when}"


class Drift(msgspec.Struct, frozen=True, rename="camel"):
    """A difference between the pool and the HIS that was reported, not applied."""

    kind: DriftKind
    doctor_code: str
    date: date
    period: str
    detail: str = ""


class FeedReport(msgspec.Struct, rename="camel"):
    """What one delivery of sessions did."""

    received: int = 0
    created: int = 0
    unchanged: int = 0
    capacity_changed: int = 0
    drift: list[Drift] = msgspec.field(default_factory=list)


class FilingResult(msgspec.Struct, frozen=True):
    """建档: the HIS's answer for one booking's patient."""

    booking_id: str
    status: Literal["filed", "failed"]
    medical_record_no: str = ""
    his_appointment_id: str = ""
    detail: str = ""


class BookingFacts(msgspec.Struct, frozen=True):
    """A booking as its hospital's system hears of it (the patient's name, not documents)."""

    booking_id: str
    status: str
    hospital_code: str
    doctor_code: str
    session_external_id: str
    starts_at: datetime
    ends_at: datetime
    patient_id: str
    patient_name: str


class PatientFacts(msgspec.Struct, frozen=True):
    """What a hospital needs to file (建档) a booking's patient. Carries the document number in
    clear: it goes only to that hospital's system, never to a log."""

    patient_id: str
    name: str
    document_type: str
    document_number: str
    sex: str = ""
    birth_date: date | None = None


class HospitalBooking(msgspec.Struct, frozen=True, rename="camel"):
    """A booking as its hospital may see it (no personal data beyond the booking)."""

    booking_id: str
    session_id: str
    slot_id: str
    status: str
    doctor_code: str
    starts_at: datetime
    filing_status: str = ""
    medical_record_no: str = ""


class HospitalFeed:
    """Applies what hospital systems report."""

    def __init__(
        self,
        ports: Ports,
        supply: SupplyService,
        actions: HospitalActions,
        inventory_sync: InventorySync,
        filings: Filings | None = None,
    ) -> None:
        """``filings``: person-level filing records (region rules), so that a filing a HIS
        reports for a booking also marks the booking's person as filed at that hospital."""
        self._p = ports
        self._supply = supply
        self._actions = actions
        self._sync = inventory_sync
        self._filings = filings

    async def hospital_id(self, hospital_code: str) -> str:
        async with self._p.sessions() as session:
            found = await session.scalar(
                select(HospitalRow.id).where(HospitalRow.code == hospital_code)
            )
        if found is None:
            refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
        return found

    async def upsert_staff(
        self,
        hospital_code: str,
        departments: list[DepartmentSpec],
        doctors: list[DoctorSpec],
    ) -> None:
        """Add or update departments and doctors the HIS lists, keeping the hospital's own
        registration (name, grade, policies) as it is."""
        async with self._p.sessions() as session:
            row = await session.scalar(select(HospitalRow).where(HospitalRow.code == hospital_code))
        if row is None:
            refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
        spec = HospitalSpec(
            code=row.code,
            name=row.name,
            grade=HospitalGrade(row.grade),
            district=row.district,
            address=row.address,
            aliases=tuple(row.aliases),
            timezone=row.timezone,
            policies=msgspec.convert(row.policies, HospitalPolicies),
            departments=tuple(departments),
            doctors=tuple(doctors),
        )
        await self._supply.register_hospital(spec)

    async def doctor_codes(self, hospital_code: str) -> set[str]:
        hospital_id = await self.hospital_id(hospital_code)
        async with self._p.sessions() as session:
            return set(
                (
                    await session.scalars(
                        select(DoctorRow.code).where(DoctorRow.hospital_id == hospital_id)
                    )
                ).all()
            )

    async def timezone_of(self, hospital_code: str) -> str:
        async with self._p.sessions() as session:
            zone = await session.scalar(
                select(HospitalRow.timezone).where(HospitalRow.code == hospital_code)
            )
        if zone is None:
            refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
        return zone

    async def patient_facts(self, booking_id: str) -> PatientFacts | None:
        """The booking's patient for 建档 (None before a patient is chosen)."""
        async with self._p.sessions() as session:
            booking = await session.get(BookingRow, booking_id)
            if booking is None or booking.patient_id is None:
                return None
            patient = await session.get(PatientRow, booking.patient_id)
        if patient is None:
            return None
        number = self._p.vault.open("document", patient.document_enc)
        sex, born = "", None
        if patient.document_type == "resident_id" and len(number) == 18:
            sex = "M" if int(number[16]) % 2 else "F"
            try:
                born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
            except ValueError:
                born = None
        return PatientFacts(
            patient_id=patient.id,
            name=patient_name(self._p.vault, patient),
            document_type=patient.document_type,
            document_number=number,
            sex=sex,
            birth_date=born,
        )

    async def booking_facts(self, booking_id: str) -> BookingFacts | None:
        """What a hospital is told about one of its bookings (None: no such booking)."""
        async with self._p.sessions() as session:
            found = (
                await session.execute(
                    select(BookingRow, SlotRow, SessionRow, HospitalRow.code, DoctorRow.code)
                    .join(SlotRow, SlotRow.id == BookingRow.slot_id)
                    .join(SessionRow, SessionRow.id == BookingRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .where(BookingRow.id == booking_id)
                )
            ).first()
            if found is None:
                return None
            booking, slot, sess, hospital_code, doctor_code = found
            name = ""
            if booking.patient_id is not None:
                patient = await session.get(PatientRow, booking.patient_id)
                if patient is not None:
                    name = patient_name(self._p.vault, patient)
        return BookingFacts(
            booking_id=booking.id,
            status=booking.status,
            hospital_code=hospital_code,
            doctor_code=doctor_code,
            session_external_id=sess.external_id,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            patient_id=booking.patient_id or "",
            patient_name=name,
        )

    # ------------------------------------------------------------------ sessions

    async def apply_sessions(
        self,
        hospital_code: str,
        sessions: list[SessionSpec],
        *,
        window: tuple[date, date] | None = None,
    ) -> FeedReport:
        """Upsert sessions: new ones are published, capacity changes applied segment by
        segment; a changed segment layout is reported as drift, not applied (bookings hang on
        the segments). With ``window`` (first, last day the HIS answered for), open sessions of
        the platform in it that the HIS no longer lists are reported as ``missing_in_his``:
        only an explicit stop cancels patients' bookings."""
        report = FeedReport(received=len(sessions))
        hospital_id = await self.hospital_id(hospital_code)
        for spec in sessions:
            if spec.hospital_code != hospital_code:
                refuse("HOSPITAL_SCOPE_DENIED", hospital_code=spec.hospital_code)
        async with self._p.sessions() as session:
            doctors = {
                d.code: d.id
                for d in (
                    await session.scalars(
                        select(DoctorRow).where(DoctorRow.hospital_id == hospital_id)
                    )
                ).all()
            }
            existing: dict[tuple[str, date, str], SessionRow] = {}
            days = {s.date for s in sessions}
            if window is not None:
                first, last = window
            elif days:
                first, last = min(days), max(days)
            else:
                return report
            rows = (
                await session.scalars(
                    select(SessionRow).where(
                        SessionRow.hospital_id == hospital_id,
                        SessionRow.date >= first,
                        SessionRow.date <= last,
                    )
                )
            ).all()
            by_doctor_id = {v: k for k, v in doctors.items()}
            for row in rows:
                existing[(by_doctor_id.get(row.doctor_id, ""), row.date, row.period)] = row
            slots: dict[str, list[SlotRow]] = {}
            for chunk in range(0, len(rows), 500):
                ids = [r.id for r in rows[chunk : chunk + 500]]
                for slot in (
                    await session.scalars(
                        select(SlotRow).where(SlotRow.session_id.in_(ids)).order_by(SlotRow.seq)
                    )
                ).all():
                    slots.setdefault(slot.session_id, []).append(slot)
        new: list[SessionSpec] = []
        seen: set[tuple[str, date, str]] = set()
        for spec in sessions:
            key = (spec.doctor_code, spec.date, spec.period.value)
            seen.add(key)
            found = existing.get(key)
            if found is None:
                if spec.doctor_code not in doctors:
                    refuse("DOCTOR_NOT_FOUND", doctor_code=spec.doctor_code)
                new.append(spec)
                continue
            if found.status == "stopped":
                if spec.segments:
                    report.drift.append(
                        Drift("stopped_here", *key, detail="stopped on the platform")
                    )
                continue
            current = slots.get(found.id, [])
            layout = [(s.starts_at, s.ends_at) for s in current]
            wanted = [(g.start, g.end) for g in spec.segments]
            if layout != wanted:
                report.drift.append(
                    Drift(
                        "segments_changed",
                        *key,
                        detail=f"platform has {len(layout)} segments, HIS {len(wanted)}",
                    )
                )
                continue
            changed = False
            for slot, segment in zip(current, spec.segments, strict=True):
                if slot.capacity == segment.capacity:
                    continue
                try:
                    await self.set_slot_capacity(slot.id, segment.capacity)
                except GuahaoError as exc:
                    if exc.code != "CAPACITY_BELOW_TAKEN":
                        raise
                    report.drift.append(
                        Drift(
                            "capacity_below_taken",
                            *key,
                            detail=f"segment {slot.seq}: HIS {segment.capacity}, "
                            f"taken {exc.detail.get('minimum_online')}",
                        )
                    )
                else:
                    changed = True
            if changed:
                report.capacity_changed += 1
            else:
                report.unchanged += 1
        if new:
            report.created = await self._supply.publish_sessions(new)
        if window is not None:
            for key, row in existing.items():
                if key not in seen and row.status == "open":
                    report.drift.append(Drift("missing_in_his", *key, detail=row.id))
        return report

    async def find_session(self, hospital_code: str, key: SessionKey) -> str:
        """The platform's session id for the HIS's way of naming it (scoped to the hospital)."""
        hospital_id = await self.hospital_id(hospital_code)
        async with self._p.sessions() as session:
            query = select(SessionRow.id).where(SessionRow.hospital_id == hospital_id)
            if key.external_id:
                found = await session.scalar(query.where(SessionRow.external_id == key.external_id))
                if found is not None:
                    return found
            if key.doctor_code:
                doctor_id = await session.scalar(
                    select(DoctorRow.id).where(
                        DoctorRow.hospital_id == hospital_id, DoctorRow.code == key.doctor_code
                    )
                )
                if doctor_id is None:
                    refuse("DOCTOR_NOT_FOUND", doctor_code=key.doctor_code)
                query = query.where(SessionRow.doctor_id == doctor_id)
                if key.starts_at is not None:
                    found = await session.scalar(
                        query.where(
                            SessionRow.starts_at <= key.starts_at,
                            SessionRow.ends_at > key.starts_at,
                        )
                    )
                elif key.date is not None and key.period:
                    found = await session.scalar(
                        query.where(SessionRow.date == key.date, SessionRow.period == key.period)
                    )
                else:
                    found = None
                if found is not None:
                    return found
        refuse(
            "SESSION_NOT_FOUND",
            external_id=key.external_id,
            doctor_code=key.doctor_code,
            date=key.date.isoformat() if key.date else "",
            period=key.period,
        )

    # ------------------------------------------------------------------ capacity

    async def set_slot_capacity(self, slot_id: str, capacity: int) -> int:
        """Set a segment's whole capacity (online + on-site) as the HIS has it; the online
        share follows the quota policy in force at the department (its own, else the
        hospital's). Atomic against the hot pool: the Redis script refuses to go below
        booked + held + returning units, and SQL's own check refuses below the confirmed
        count. Returns the new online quota."""
        if capacity < 0 or capacity > 10_000:
            refuse("VALIDATION_FAILED", field="capacity", reason="0..10000")
        now = self._p.clock.now()
        pool_changed_from: int | None = None
        try:
            async with self._p.sessions() as session, session.begin():
                slot = await session.get(SlotRow, slot_id, with_for_update=True)
                if slot is None:
                    refuse("SLOT_NOT_FOUND", slot_id=slot_id)
                sess = await session.get(SessionRow, slot.session_id)
                assert sess is not None
                hospital = await session.get(HospitalRow, sess.hospital_id)
                assert hospital is not None
                if sess.status != "open":
                    refuse("SLOT_CLOSED", slot_id=slot_id, status=sess.status)
                policies = msgspec.convert(hospital.policies, HospitalPolicies)
                own = await policies_by_department(session, [sess.department_id])
                if sess.department_id in own:
                    policies = own[sess.department_id].over(policies)
                if slot.status == "closed":  # past the cut-off: changes are on-site units
                    online = min(slot.online_quota, capacity)
                else:
                    online, _ = policies.quota.split(capacity, segment_index=slot.seq)
                if online < slot.online_booked:
                    refuse(
                        "CAPACITY_BELOW_TAKEN", slot_id=slot_id, minimum_online=slot.online_booked
                    )
                old_online = slot.online_quota
                await self._set_pool_capacity(slot_id, online, now)
                pool_changed_from = old_online
                slot.capacity = capacity
                slot.online_quota = online
                slot.offline_quota = capacity - online
                record_event(
                    session,
                    "slot.capacity_changed",
                    slot.session_id,
                    {
                        "slot_id": slot_id,
                        "session_id": slot.session_id,
                        "capacity": capacity,
                        "online_quota": online,
                    },
                    now,
                )
            # committed: SQL and the pool agree
        except BaseException:
            if pool_changed_from is not None:  # SQL refused after Redis changed: put it back
                await self._set_pool_capacity(slot_id, pool_changed_from, now, undo=True)
            raise
        return online

    async def _set_pool_capacity(
        self, slot_id: str, online: int, now: datetime, *, undo: bool = False
    ) -> None:
        now_ms = to_epoch_ms(now)
        try:
            await self._sync.with_slot_loaded(
                slot_id,
                lambda: self._p.inventory.set_capacity(slot_id, capacity=online, now_ms=now_ms),
            )
        except GuahaoError as exc:
            if undo or exc.code != "SLOT_SOLD_OUT":
                raise
            refuse(
                "CAPACITY_BELOW_TAKEN",
                slot_id=slot_id,
                minimum_online=exc.detail.get("minimum_capacity"),
            )

    async def slot_of(self, session_id: str, segment: int) -> str:
        """The slot of a session's segment (0-based; -1 is the last)."""
        async with self._p.sessions() as session:
            slots = list(
                (
                    await session.scalars(
                        select(SlotRow.id)
                        .where(SlotRow.session_id == session_id)
                        .order_by(SlotRow.seq)
                    )
                ).all()
            )
        if not slots or not -len(slots) <= segment < len(slots):
            refuse("SLOT_NOT_FOUND", session_id=session_id, segment=segment)
        return slots[segment]

    async def add_units(self, hospital_code: str, session_id: str, units: int) -> int:
        """加号: ``units`` more units on the session's last segment. Returns its capacity."""
        if units < 1 or units > 100:
            refuse("VALIDATION_FAILED", field="units", reason="1..100")
        hospital_id = await self.hospital_id(hospital_code)
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            if sess is None or sess.hospital_id != hospital_id:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
            last = await session.scalar(
                select(SlotRow)
                .where(SlotRow.session_id == session_id)
                .order_by(SlotRow.seq.desc())
                .limit(1)
            )
        if last is None:
            refuse("SLOT_NOT_FOUND", session_id=session_id)
        await self.set_slot_capacity(last.id, last.capacity + units)
        return last.capacity + units

    # ------------------------------------------------------------------ hospital actions

    async def stop_session(self, hospital_code: str, key: SessionKey, reason: str) -> list[str]:
        """停诊 reported by the HIS: the hospital actions cancel, refund and notify."""
        session_id = await self.find_session(hospital_code, key)
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            if sess is not None and sess.status == "stopped":
                return []  # a repeated stop changes nothing
        return await self._actions.stop_session(session_id, reason=reason or "停诊")

    async def _own_booking(self, hospital_code: str, booking_id: str) -> BookingRow:
        hospital_id = await self.hospital_id(hospital_code)
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
            sess = await session.get(SessionRow, row.session_id) if row is not None else None
        if row is None or sess is None or sess.hospital_id != hospital_id:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        return row

    async def check_in(self, hospital_code: str, booking_id: str) -> str:
        """签到 reported by the HIS; a repeat of one already checked in changes nothing."""
        row = await self._own_booking(hospital_code, booking_id)
        if row.status == "checked_in":
            return row.status
        booking = await self._actions.check_in(booking_id)
        return booking.status.value

    async def record_filing(self, hospital_code: str, result: FilingResult) -> None:
        """Keep the HIS's filing answer with the booking (the latest answer wins)."""
        row = await self._own_booking(hospital_code, result.booking_id)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            sess = await session.get(SessionRow, row.session_id)
            assert sess is not None
            filing = await session.get(BookingFilingRow, result.booking_id)
            if filing is None:
                filing = BookingFilingRow(
                    booking_id=result.booking_id, hospital_id=sess.hospital_id
                )
                session.add(filing)
            filing.status = result.status
            filing.medical_record_no = result.medical_record_no
            filing.his_appointment_id = result.his_appointment_id
            filing.detail = result.detail
            filing.updated_at = now
            record_event(
                session,
                "booking.filed" if result.status == "filed" else "booking.filing_failed",
                result.booking_id,
                {"booking_id": result.booking_id, "medical_record_no": result.medical_record_no},
                now,
            )
            hospital_id = sess.hospital_id
        if self._filings is not None and result.status == "filed" and result.medical_record_no:
            facts = await self.patient_facts(result.booking_id)
            if facts is not None:
                try:
                    await self._filings.record_filed_by_document(
                        hospital_id=hospital_id,
                        document_type=facts.document_type,
                        document_number=facts.document_number,
                        his_patient_id=result.medical_record_no,
                    )
                except GuahaoError as exc:  # the booking keeps its filing either way
                    log.warning(
                        "person filing not recorded for %s: %s", result.booking_id, exc.code
                    )

    async def filing_of(self, booking_id: str) -> FilingResult | None:
        async with self._p.sessions() as session:
            row = await session.get(BookingFilingRow, booking_id)
        if row is None:
            return None
        status: Literal["filed", "failed"] = "filed" if row.status == "filed" else "failed"
        return FilingResult(
            booking_id=booking_id,
            status=status,
            medical_record_no=row.medical_record_no,
            his_appointment_id=row.his_appointment_id,
            detail=row.detail,
        )

    async def bookings_of(self, hospital_code: str, day: date) -> list[HospitalBooking]:
        """The hospital's own bookings of one day (what its front desk needs)."""
        hospital_id = await self.hospital_id(hospital_code)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(BookingRow, SlotRow.starts_at, DoctorRow.code, BookingFilingRow)
                    .join(SessionRow, SessionRow.id == BookingRow.session_id)
                    .join(SlotRow, SlotRow.id == BookingRow.slot_id)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .outerjoin(BookingFilingRow, BookingFilingRow.booking_id == BookingRow.id)
                    .where(SessionRow.hospital_id == hospital_id, SessionRow.date == day)
                    .order_by(SlotRow.starts_at, BookingRow.id)
                )
            ).all()
        return [
            HospitalBooking(
                booking_id=b.id,
                session_id=b.session_id,
                slot_id=b.slot_id,
                status=b.status,
                doctor_code=code,
                starts_at=starts,
                filing_status=f.status if f is not None else "",
                medical_record_no=f.medical_record_no if f is not None else "",
            )
            for b, starts, code, f in rows
        ]

"""诊间加号: a doctor adds a unit to a session for one named patient.

An add-on unit is outside the session's quota, so it never touches the slot pool (Redis) or
``slots.online_booked``; it is a confirmed booking of kind ``add_on``, paid on site, counted
per session against the rules (``add_on_per_session``) by one conditional ``UPDATE`` (two
doctors adding the last allowed unit at once cannot both succeed), and traceable: who added
it, for whom, why, in ``add_on_units`` and the audit log, which the authority reads.
"""

from __future__ import annotations

from datetime import date

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from guahao.platform.bookings import LIVE_WITH_PATIENT, BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    AddOnUnitRow,
    BookingRow,
    PatientRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.audit import record_audit
from guahao.platform.services.booking_records import describe_visit
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role

__all__ = ["AddOnSummary", "AddOnUnits"]


class AddOnSummary(msgspec.Struct, frozen=True, rename="camel"):
    """Add-on units per hospital and day, as the authority's dashboard shows them."""

    hospital_id: str
    date: date
    units: int


class AddOnUnits:
    """Add-on units given by hospital staff and what the authority sees of them."""

    def __init__(self, ports: Ports, rules: RuleBook) -> None:
        self._p = ports
        self._rules = rules

    async def add(self, *, staff: StaffActor, session_id: str, patient_id: str, reason: str) -> str:
        """Give ``patient_id`` an add-on unit in ``session_id``; returns the booking id."""
        require_role(staff, StaffRole.HOSPITAL_STAFF, StaffRole.AUTHORITY_ADMIN)
        if not reason.strip():
            refuse("VALIDATION_FAILED", field="reason", reason="say why the unit is added")
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
            patient = await session.get(PatientRow, patient_id)
            if patient is None or patient.removed_at is not None:
                refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
        if staff.role is StaffRole.HOSPITAL_STAFF and staff.hospital_id != sess.hospital_id:
            refuse("PERMISSION_DENIED", reason="another hospital's session")
        if sess.status != "open" or now >= sess.ends_at:
            refuse("SLOT_CLOSED", session_id=session_id, status=sess.status)
        limit = (await self._rules.for_hospital(sess.hospital_id)).add_on_per_session
        booking_id = new_id()
        try:
            async with self._p.sessions() as session, session.begin():
                await lock_person(session, patient.person_id)
                # One unit per person and session, whichever account booked it (the unique
                # index below covers the same patient row only).
                booked = await session.scalar(
                    select(BookingRow.id)
                    .where(
                        BookingRow.session_id == session_id,
                        BookingRow.person_id == patient.person_id,
                        BookingRow.status.in_(LIVE_WITH_PATIENT),
                    )
                    .limit(1)
                )
                if booked is not None:
                    refuse("PATIENT_ALREADY_BOOKED_SESSION", session_id=session_id)
                # Counted and checked open in one statement: a stop (停诊) committing meanwhile
                # either sees this unit and cancels it, or this unit is refused.
                counted = await session.execute(
                    update(SessionRow)
                    .where(
                        SessionRow.id == session_id,
                        SessionRow.status == "open",
                        SessionRow.add_on_count < limit,
                    )
                    .values(add_on_count=SessionRow.add_on_count + 1)
                )
                if counted.rowcount != 1:  # type: ignore[attr-defined]
                    status = await session.scalar(
                        select(SessionRow.status).where(SessionRow.id == session_id)
                    )
                    if status != "open":
                        refuse("SLOT_CLOSED", session_id=session_id, status=status)
                    refuse("ADD_ON_LIMIT_REACHED", limit=limit, session_id=session_id)
                last_slot = await session.scalar(
                    select(SlotRow.id)
                    .where(SlotRow.session_id == session_id)
                    .order_by(SlotRow.seq.desc())
                    .limit(1)
                )
                assert last_slot is not None
                row = BookingRow(
                    id=booking_id,
                    account_id=patient.account_id,
                    slot_id=last_slot,  # seen after the session's own units
                    session_id=session_id,
                    patient_id=patient_id,
                    status=BookingStatus.CONFIRMED.value,
                    idempotency_key=f"add_on:{booking_id}",
                    fee_cents=sess.fee_cents,
                    payment_required=False,
                    hold_expires_at=now,
                    created_at=now,
                    updated_at=now,
                    confirmed_at=now,
                    kind="add_on",
                )
                describe_visit(row, sess, patient.person_id)
                session.add(row)
                await session.flush()
                session.add(
                    AddOnUnitRow(
                        id=new_id(),
                        session_id=session_id,
                        booking_id=booking_id,
                        person_id=patient.person_id,
                        added_by=staff.username,
                        reason=reason,
                        created_at=now,
                    )
                )
                record_audit(
                    session,
                    staff.username,
                    staff.role.value,
                    "booking.add_on",
                    "session",
                    session_id,
                    {"booking_id": booking_id, "patient_id": patient_id, "reason": reason},
                    now,
                )
                record_event(
                    session,
                    "booking.confirmed",
                    booking_id,
                    {
                        "booking_id": booking_id,
                        "account_id": patient.account_id,
                        "slot_id": last_slot,
                        "session_id": session_id,
                        "patient_id": patient_id,
                        "status": BookingStatus.CONFIRMED.value,
                        "add_on": True,
                        "paid_online": False,
                    },
                    now,
                )
        except IntegrityError:
            refuse("PATIENT_ALREADY_BOOKED_SESSION", patient_id=patient_id)
        return booking_id

    async def summary(self, *, since: date, until: date) -> list[AddOnSummary]:
        """Add-on units per hospital and visit day in ``[since, until]`` (the authority's view)."""
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(BookingRow.hospital_id, BookingRow.visit_date, func.count())
                    .where(
                        BookingRow.kind == "add_on",
                        BookingRow.visit_date >= since,
                        BookingRow.visit_date <= until,
                    )
                    .group_by(BookingRow.hospital_id, BookingRow.visit_date)
                    .order_by(BookingRow.visit_date, BookingRow.hospital_id)
                )
            ).all()
        return [
            AddOnSummary(hospital_id=str(h), date=d, units=int(n))
            for h, d, n in rows
            if h is not None and d is not None
        ]

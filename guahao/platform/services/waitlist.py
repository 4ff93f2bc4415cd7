"""The waitlist (候补) as its patients use it: joining, leaving, seeing one's place; and the one
facade of the waitlist's parts.

The parts: ``waitlist_serving`` gives freed units to the line (returning units of a 退号,
units freed otherwise, the sweep), ``waitlist_events`` is what booking and session events do
to the line (its outbox subscribers). ``WaitlistService`` forwards to them, so the web layer,
the jobs and the composition root keep one object.

The order of the line and what a wait covers are pure rules in ``guahao.platform.waitlist``;
a grant and its completion are ``unit_offers``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import ACTIVE_STATUSES
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
from guahao.platform.patient_proof import refuse_unless_bookable
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    SlotRow,
    WaitlistEntryRow,
    WaitPrepaymentRow,
)
from guahao.platform.services.ban_checks import refuse_if_banned
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rebooking_offers import RebookingOffers
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    UnitOffers,
)
from guahao.platform.services.wait_prepayments import Prepayment, WaitPrepayments, view_of
from guahao.platform.services.waitlist_events import WaitlistEvents
from guahao.platform.services.waitlist_serving import WaitlistServer, local_today, wait_of
from guahao.platform.waitlist import (
    Scope,
    WaitlistRules,
    local_deadline,
    position,
    waitlist_rules_of,
)

__all__ = ["WaitView", "WaitlistService"]

log = logging.getLogger(__name__)

Channel = Literal["self_pay", "insurance"]


class WaitView(msgspec.Struct, frozen=True, rename="camel"):
    """A wait as its patient sees it; ``position`` only while waiting."""

    id: str
    patient_id: str
    scope: str
    hospital_id: str
    department_id: str | None
    doctor_id: str | None
    session_id: str | None
    date_from: date
    date_to: date
    channel: str
    priority: int
    status: str
    position: int | None
    booking_id: str | None
    joined_at: datetime
    end_reason: str | None
    prepayment: Prepayment | None = None
    """候补预付: the fee paid in advance (where the hospital takes payment online); the wait
    is served only once it is paid, and refunded in full if it ends unserved."""


def _view(
    row: WaitlistEntryRow, place: int | None, prepayment: Prepayment | None = None
) -> WaitView:
    return WaitView(
        id=row.id,
        patient_id=row.patient_id,
        scope=row.scope,
        hospital_id=row.hospital_id,
        department_id=row.department_id,
        doctor_id=row.doctor_id,
        session_id=row.session_id,
        date_from=row.date_from,
        date_to=row.date_to,
        channel=row.channel,
        priority=row.priority,
        status=row.status,
        position=place,
        booking_id=row.booking_id,
        joined_at=row.joined_at,
        end_reason=row.end_reason,
        prepayment=prepayment,
    )


def _active_in_session(session_id: str, person_id: str) -> Any:
    return select(BookingRow.id).where(
        BookingRow.session_id == session_id,
        BookingRow.person_id == person_id,
        BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]),
    )


class WaitlistService:
    """Join, leave and list waits; the line is served by ``server``, events by ``events``."""

    def __init__(
        self,
        ports: Ports,
        inventory_sync: InventorySync,
        offers: UnitOffers,
        rules: RuleBook,
        rebooking: RebookingOffers | None = None,
    ) -> None:
        self._p = ports
        self._rules = rules
        self.prepayments = WaitPrepayments(ports)
        self.server = WaitlistServer(ports, inventory_sync, offers, rules, self.prepayments)
        self.events = WaitlistEvents(ports, self.server, rebooking)

    async def rules_for(self, hospital_id: str) -> WaitlistRules:
        """The waitlist rules in force at this hospital."""
        return await self.server.rules_for(hospital_id)

    # ------------------------------------------------------------------ the patient's side

    async def join(
        self,
        *,
        account_id: str,
        patient_id: str,
        scope: Scope,
        session_id: str | None = None,
        doctor_id: str | None = None,
        department_id: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        channel: Channel = "self_pay",
    ) -> WaitView:
        """候补: wait for a unit of one session, or of a doctor or department over dates."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            patient = await session.get(PatientRow, patient_id)
            if patient is None or patient.removed_at is not None:
                refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
            if patient.account_id != account_id:
                refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
            refuse_unless_bookable(patient)
            target = await self._target(
                session, scope, session_id, doctor_id, department_id, date_from, date_to
            )
            hospital = await session.get(HospitalRow, target.hospital_id)
            assert hospital is not None
            department = await session.get(DepartmentRow, target.department_id)
            assert department is not None
        rules = await self._rules.for_hospital(hospital.id)
        waitlist = waitlist_rules_of(rules)
        today = local_today(now, hospital.timezone)
        if target.date_from > target.date_to or target.date_from < today:
            refuse(
                "WAITLIST_DATE_RANGE_INVALID",
                date_from=target.date_from.isoformat(),
                date_to=target.date_to.isoformat(),
                today=today.isoformat(),
            )
        if target.date_to > today + timedelta(days=waitlist.max_days_ahead):
            refuse(
                "WAITLIST_TOO_FAR_AHEAD",
                date_to=target.date_to.isoformat(),
                max_days_ahead=waitlist.max_days_ahead,
            )
        facts_policies = await self._policies(hospital)
        if facts_policies.payment_mode.online_payment_required(channel) is None:
            refuse(
                "PAYMENT_MODE_UNSUPPORTED",
                channel=channel,
                payment_mode=facts_policies.payment_mode.value,
            )
        if target.sess is not None:
            await self._check_session_waitable(target.sess, now)
        prepayment = await self._open_prepayment(
            account_id, target, hospital, waitlist, facts_policies, channel, now
        )
        try:
            return await self._record_join(
                account_id,
                patient,
                scope,
                target,
                hospital,
                department,
                rules,
                waitlist,
                channel,
                prepayment,
                now,
            )
        except BaseException:
            if prepayment is not None:  # no wait was recorded: the order must not take money
                await self.prepayments.close_order(prepayment.order_no)
            raise

    async def _open_prepayment(
        self,
        account_id: str,
        target: _Target,
        hospital: HospitalRow,
        waitlist: WaitlistRules,
        policies: HospitalPolicies,
        channel: Channel,
        now: datetime,
    ) -> WaitPrepaymentRow | None:
        """候补预付 where the hospital takes this channel's payment online (nothing to pay:
        no prepayment, the grant confirms at once as before)."""
        if not (waitlist.prepay_waits and policies.payment_mode.online_payment_required(channel)):
            return None
        async with self._p.sessions() as session:
            amount = await self.prepayments.amount_for(
                session,
                session_id=target.sess.id if target.sess is not None else None,
                department_id=target.department_id,
                doctor_id=target.doctor_id,
                date_from=target.date_from,
                date_to=target.date_to,
            )
        if amount <= 0:
            return None
        return await self.prepayments.open_order(
            account_id=account_id,
            amount_cents=amount,
            hospital=hospital,
            waitlist=waitlist,
            now=now,
        )

    async def _record_join(
        self,
        account_id: str,
        patient: PatientRow,
        scope: Scope,
        target: _Target,
        hospital: HospitalRow,
        department: DepartmentRow,
        rules: Any,
        waitlist: WaitlistRules,
        channel: Channel,
        prepayment: WaitPrepaymentRow | None,
        now: datetime,
    ) -> WaitView:
        """The wait (and its prepayment) in one transaction, after the person's checks."""
        patient_id = patient.id
        row = WaitlistEntryRow(
            id=new_id(),
            account_id=account_id,
            patient_id=patient_id,
            person_id=patient.person_id,
            scope=scope,
            hospital_id=hospital.id,
            department_id=target.department_id,
            doctor_id=target.doctor_id,
            session_id=target.sess.id if target.sess is not None else None,
            date_from=target.date_from,
            date_to=target.date_to,
            channel=channel,
            priority=0,
            status="waiting",
            joined_at=now,
            updated_at=now,
        )
        async with self._p.sessions() as session, session.begin():
            await lock_person(session, patient.person_id)
            await refuse_if_banned(
                session,
                person_id=patient.person_id,
                rules=rules.blacklist,
                catalog_code=department.catalog_code,
                department_name=department.name,
                now=now,
            )
            if target.sess is not None and (
                await session.scalar(_active_in_session(target.sess.id, patient.person_id))
            ):
                refuse("PATIENT_ALREADY_BOOKED_SESSION", session_id=target.sess.id)
            mine = (
                await session.scalars(
                    select(WaitlistEntryRow).where(
                        WaitlistEntryRow.person_id == patient.person_id,
                        WaitlistEntryRow.status == "waiting",
                    )
                )
            ).all()
            for other in mine:
                if (
                    other.scope == row.scope
                    and (other.session_id, other.doctor_id, other.department_id)
                    == (row.session_id, row.doctor_id, row.department_id)
                    and other.date_from <= row.date_to
                    and row.date_from <= other.date_to
                ):
                    refuse("WAITLIST_ALREADY_WAITING", entry_id=other.id)
            if len(mine) >= waitlist.max_waits_per_patient:
                refuse("WAITLIST_LIMIT_REACHED", limit=waitlist.max_waits_per_patient)
            session.add(row)
            if prepayment is not None:
                await session.flush()  # the wait first: its prepayment refers to it
                prepayment.entry_id = row.id
                session.add(prepayment)
                record_event(
                    session,
                    "waitlist.prepayment_opened",
                    row.id,
                    {
                        "entry_id": row.id,
                        "account_id": account_id,
                        "amount_cents": prepayment.amount_cents,
                        "amount": f"{prepayment.amount_cents / 100:.2f}",
                        "order_no": prepayment.order_no,
                        "pay_url": prepayment.pay_url,
                        "pay_by": local_deadline(prepayment.expires_at, hospital.timezone),
                    },
                    now,
                )
            record_event(
                session,
                "waitlist.joined",
                row.id,
                {
                    "entry_id": row.id,
                    "account_id": account_id,
                    "patient_id": patient_id,
                    "scope": scope,
                    "session_id": row.session_id,
                    "reason": "patient",
                },
                now,
            )
        return (await self._views(account_id, [row.id]))[0]

    async def leave(self, *, account_id: str, entry_id: str) -> WaitView:
        """Stop waiting; a wait that already ended cannot be left."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(WaitlistEntryRow, entry_id)
            if row is None or row.account_id != account_id:
                refuse("WAITLIST_ENTRY_NOT_FOUND", entry_id=entry_id)
            done = await session.execute(
                update(WaitlistEntryRow)
                .where(WaitlistEntryRow.id == entry_id, WaitlistEntryRow.status == "waiting")
                .values(status="cancelled", end_reason="left", updated_at=now)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                refuse("WAITLIST_ENTRY_NOT_WAITING", entry_id=entry_id, status=row.status)
            record_event(
                session,
                "waitlist.left",
                entry_id,
                {"entry_id": entry_id, "account_id": account_id},
                now,
            )
        return (await self._views(account_id, [entry_id]))[0]

    async def waits(self, account_id: str) -> list[WaitView]:
        """The account's waits, newest first, each waiting one with its place in line."""
        return await self._views(account_id, None)

    async def _views(self, account_id: str, ids: list[str] | None) -> list[WaitView]:
        async with self._p.sessions() as session:
            query = select(WaitlistEntryRow).where(WaitlistEntryRow.account_id == account_id)
            if ids is not None:
                query = query.where(WaitlistEntryRow.id.in_(ids))
            rows = (
                await session.scalars(
                    query.order_by(WaitlistEntryRow.joined_at.desc(), WaitlistEntryRow.id)
                )
            ).all()
            prepaid = {
                p.entry_id: p
                for p in (
                    await session.scalars(
                        select(WaitPrepaymentRow).where(
                            WaitPrepaymentRow.entry_id.in_([r.id for r in rows])
                        )
                    )
                ).all()
            }
            zones = dict(
                (
                    await session.execute(
                        select(HospitalRow.id, HospitalRow.timezone).where(
                            HospitalRow.id.in_({r.hospital_id for r in rows})
                        )
                    )
                ).all()
            )
            views = []
            for row in rows:
                place = None
                if row.status == "waiting":
                    rivals = (
                        await session.scalars(
                            select(WaitlistEntryRow).where(
                                WaitlistEntryRow.department_id == row.department_id,
                                WaitlistEntryRow.status == "waiting",
                                WaitlistEntryRow.date_from <= row.date_to,
                                WaitlistEntryRow.date_to >= row.date_from,
                            )
                        )
                    ).all()
                    place = position(wait_of(row), [wait_of(r) for r in rivals])
                found = prepaid.get(row.id)
                views.append(
                    _view(
                        row,
                        place,
                        view_of(found, zones[row.hospital_id]) if found is not None else None,
                    )
                )
        return views

    # ------------------------------------------------------------------ forwarded to the parts

    async def serve_returned_unit(self, cancelled_booking_id: str) -> str | None:
        """Give the unit freed by this 退号 to the first eligible waiter (``WaitlistServer``)."""
        return await self.server.serve_returned_unit(cancelled_booking_id)

    async def serve_slots(self, slot_ids: list[str]) -> int:
        """Offer the available units of these slots to their sessions' lines."""
        return await self.server.serve_slots(slot_ids)

    async def serve_due(self, limit: int = 500) -> int:
        """Sweep: end stale waits, finish interrupted offers, offer every available unit."""
        return await self.server.serve_due(limit)

    async def on_booking_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``booking.``), see ``WaitlistEvents``."""
        await self.events.on_booking_event(event)

    async def on_session_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``session.stopped``), see ``WaitlistEvents``."""
        await self.events.on_session_event(event)

    async def on_session_stopped(self, session_id: str, booking_ids: list[str]) -> int:
        """停诊: the session's waits end and its turned-away patients join the line."""
        return await self.events.on_session_stopped(session_id, booking_ids)

    async def on_hospital_cancelled(self, booking_id: str) -> int:
        """The hospital cancelled one booking: its patient goes first in the line."""
        return await self.events.on_hospital_cancelled(booking_id)

    # ------------------------------------------------------------------ the steps

    async def _check_session_waitable(self, sess: SessionRow, now: datetime) -> None:
        if sess.status != "open" or sess.starts_at <= now:
            refuse("WAITLIST_SESSION_CLOSED", session_id=sess.id, status=sess.status)
        if sess.allocation == "lottery" and not sess.lottery_drawn:
            refuse("SESSION_IS_LOTTERY", session_id=sess.id)
        if sess.release_at > now:
            refuse(
                "WAITLIST_SESSION_NOT_RELEASED",
                session_id=sess.id,
                release_at=sess.release_at.isoformat(),
            )
        async with self._p.sessions() as session:
            slot_ids = list(
                (
                    await session.scalars(select(SlotRow.id).where(SlotRow.session_id == sess.id))
                ).all()
            )
        snapshot = await self._p.inventory.counts(slot_ids, now_ms=to_epoch_ms(now))
        free = sum(c.available for c in snapshot.values() if c.status == "open")
        if free > 0:
            refuse("WAITLIST_UNITS_AVAILABLE", session_id=sess.id, available=free)

    @staticmethod
    async def _policies(hospital: HospitalRow) -> HospitalPolicies:
        return msgspec.convert(hospital.policies, HospitalPolicies)

    async def _target(
        self,
        session: AsyncSession,
        scope: Scope,
        session_id: str | None,
        doctor_id: str | None,
        department_id: str | None,
        date_from: date | None,
        date_to: date | None,
    ) -> _Target:
        if scope == "session":
            if session_id is None or doctor_id or department_id or date_from or date_to:
                refuse("WAITLIST_SCOPE_INVALID", scope=scope, needs="sessionId only")
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
            return _Target(
                sess.hospital_id, sess.department_id, sess.doctor_id, sess.date, sess.date, sess
            )
        if session_id is not None or date_from is None or date_to is None:
            refuse("WAITLIST_SCOPE_INVALID", scope=scope, needs="dateFrom and dateTo, no session")
        if scope == "doctor":
            if doctor_id is None or department_id is not None:
                refuse("WAITLIST_SCOPE_INVALID", scope=scope, needs="doctorId")
            doctor = await session.get(DoctorRow, doctor_id)
            if doctor is None:
                refuse("DOCTOR_NOT_FOUND", doctor_id=doctor_id)
            return _Target(
                doctor.hospital_id, doctor.department_id, doctor.id, date_from, date_to, None
            )
        if department_id is None or doctor_id is not None:
            refuse("WAITLIST_SCOPE_INVALID", scope=scope, needs="departmentId")
        department = await session.get(DepartmentRow, department_id)
        if department is None:
            refuse("DEPARTMENT_NOT_FOUND", department_id=department_id)
        return _Target(department.hospital_id, department.id, None, date_from, date_to, None)


@dataclass(frozen=True)
class _Target:
    """What a wait is for, resolved from the ids the patient gave."""

    hospital_id: str
    department_id: str
    doctor_id: str | None
    date_from: date
    date_to: date
    sess: SessionRow | None

"""What every booking command reads: booking rows and their domain twins, the slot's facts
(cached per process), and follow-up jobs queued after a commit.

``BookingRecords`` is one object shared by the booking commands, the payment notices, the
hospital's actions and the units offered from the waitlist and the lottery, so they share one
slot-facts cache and one way of finding a booking. The transitions several of them make are
``booking_steps.BookingSteps``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.error_codes import error, refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = [
    "BookingRecords",
    "PatientChoice",
    "apply_to_row",
    "describe_visit",
    "event_payload",
    "to_domain",
]

log = logging.getLogger(__name__)

FACTS_BATCH = 200
"""The most cache misses one read of slot facts takes (its ``IN`` list stays small)."""
EXPIRY_SECONDS_KEPT = 4_096
"""Seconds of expiry remembered before the past ones are forgotten (a hold lasts minutes)."""


@dataclass(frozen=True)
class PatientChoice:
    """What a patient choice reads before the person's turn (``BookingRecords.patient_choice``)."""

    slot_id: str
    patient: PatientRow | None
    """None when the account has no such patient (the command refuses it)."""
    sess: SessionRow
    department: DepartmentRow


_PATIENT_CHOICE = (
    select(BookingRow.account_id, BookingRow.slot_id, SessionRow, DepartmentRow, PatientRow)
    .join(SessionRow, SessionRow.id == BookingRow.session_id)
    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
    .outerjoin(PatientRow, PatientRow.id == bindparam("patient"))
    .where(BookingRow.id == bindparam("booking"))
)
"""``patient_choice``'s statement, built once (building it was a third of its cost)."""


def to_domain(row: BookingRow) -> Booking:
    """The domain booking a row records."""
    return Booking(
        id=row.id,
        account_id=row.account_id,
        slot_id=row.slot_id,
        session_id=row.session_id,
        status=BookingStatus(row.status),
        hold_expires_at=row.hold_expires_at,
        fee_cents=row.fee_cents,
        patient_id=row.patient_id,
        channel=row.channel,  # type: ignore[arg-type]
        payment_required=row.payment_required,
        payment_order_no=row.payment_order_no,
        payment_expires_at=row.payment_expires_at,
        paid=row.paid,
        confirmed_at=row.confirmed_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


def apply_to_row(row: BookingRow, booking: Booking, now: datetime) -> None:
    """Write a booking's new state back to its row."""
    row.status = booking.status.value
    row.patient_id = booking.patient_id
    row.channel = booking.channel
    row.payment_required = booking.payment_required
    row.payment_order_no = booking.payment_order_no
    row.payment_expires_at = booking.payment_expires_at
    row.paid = booking.paid
    row.confirmed_at = booking.confirmed_at
    row.ended_at = booking.ended_at
    row.end_reason = booking.end_reason
    row.updated_at = now


def describe_visit(row: BookingRow, sess: SessionRow, person_id: str) -> None:
    """Copy who and what the booking is for onto its row, so limit checks and the
    authority's statistics read one indexed table."""
    row.person_id = person_id
    row.hospital_id = sess.hospital_id
    row.department_id = sess.department_id
    row.doctor_id = sess.doctor_id
    row.visit_date = sess.date


def event_payload(booking: Booking, **extra: Any) -> dict[str, Any]:
    """The outbox payload every booking event carries."""
    return {
        "booking_id": booking.id,
        "account_id": booking.account_id,
        "slot_id": booking.slot_id,
        "session_id": booking.session_id,
        "patient_id": booking.patient_id,
        "status": booking.status.value,
        "end_reason": booking.end_reason,
        **extra,
    }


class BookingRecords:
    """Finding bookings, the slot facts cache and follow-up jobs (see the module docstring)."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports
        self._facts_loading: dict[str, asyncio.Future[SlotFacts]] = {}
        self._facts_wanted: list[str] = []
        """Slots missed in the cache that the next read takes (``_read_wanted_facts``)."""
        self._facts_reader: asyncio.Task[None] | None = None
        self._expiries_scheduled: set[int] = set()
        """Seconds (epoch) this process has asked the queue to expire holds at."""

    async def slot_facts(self, slot_id: str) -> SlotFacts:
        """The slot's immutable facts, from the process cache or SQL once.

        Concurrent misses of one slot share a single read, and the misses of many slots made
        while a read is in flight share the next one: at release time the whole crowd arrives
        on a cold cache together, spread over many sessions, and must not each query SQL.
        """
        await self._p.slot_facts.refresh()  # other processes' policy changes, once a second
        facts = self._p.slot_facts.get(slot_id)
        if facts is not None:
            return facts
        return await asyncio.shield(self._loading(slot_id))

    async def slot_facts_all(self, slot_ids: Sequence[str]) -> list[SlotFacts | Exception]:
        """``slot_facts`` of each slot (a loop turn's grants), the misses read together and
        awaited once: each its facts or its own error, in order."""
        await self._p.slot_facts.refresh()
        cached = self._p.slot_facts.get
        found = [cached(slot_id) or self._loading(slot_id) for slot_id in slot_ids]
        answers: list[SlotFacts | Exception] = []
        for facts in found:
            if isinstance(facts, asyncio.Future):
                if not facts.done():  # not cancelled with this caller: others share it
                    await asyncio.wait([facts])
                failed = facts.exception()
                answers.append(facts.result() if failed is None else cast("Exception", failed))
            else:
                answers.append(facts)
        return answers

    def _loading(self, slot_id: str) -> asyncio.Future[SlotFacts]:
        """The read of a slot's facts the cache misses, shared by every caller meanwhile."""
        loading = self._facts_loading.get(slot_id)
        if loading is None:
            loading = asyncio.get_running_loop().create_future()
            self._facts_loading[slot_id] = loading
            self._facts_wanted.append(slot_id)
            if self._facts_reader is None:
                self._facts_reader = asyncio.create_task(
                    self._read_wanted_facts(), name="slot-facts-reads"
                )
        return loading

    async def _read_wanted_facts(self) -> None:
        """Read the facts of the slots wanted, a batch per statement, until none is wanted.
        Misses arriving during a read are taken by the next; the task ends in the same step
        that finds nothing wanted, so no miss is left waiting."""
        try:
            while self._facts_wanted:
                batch = self._facts_wanted[:FACTS_BATCH]
                del self._facts_wanted[: len(batch)]
                try:
                    found = await self._load_slot_facts(batch)
                except Exception as exc:
                    for slot_id in batch:
                        self._settle_facts(slot_id, exc)
                    continue
                for slot_id in batch:
                    facts = found.get(slot_id)
                    self._settle_facts(slot_id, facts or error("SLOT_NOT_FOUND", slot_id=slot_id))
        except BaseException as exc:  # cancelled with the process: nobody may wait forever
            for slot_id in [*self._facts_wanted, *self._facts_loading]:
                self._settle_facts(slot_id, exc)
            self._facts_wanted.clear()
            raise
        finally:
            self._facts_reader = None

    def _settle_facts(self, slot_id: str, outcome: SlotFacts | BaseException) -> None:
        loading = self._facts_loading.pop(slot_id, None)
        if loading is None or loading.done():
            return
        if isinstance(outcome, SlotFacts):
            loading.set_result(outcome)
        elif isinstance(outcome, Exception):
            loading.set_exception(outcome)
            loading.exception()  # retrieved: a caller that went away leaves no warning
        else:
            loading.cancel()

    async def _load_slot_facts(self, slot_ids: list[str]) -> dict[str, SlotFacts]:
        """Read the facts of every slot of the sessions of ``slot_ids`` in one statement.

        At a release the crowd spreads over a session's slots at once, all missing the cache
        together: one read per session instead of one per slot (the profile of granted holds
        had almost half its time in these reads, bench/profiles/), and one read for the
        sessions missed together (surge-grant2's profile: a tenth of a grant in these reads,
        each a transaction of its own). One statement needs no transaction: read in
        autocommit it is one round trip instead of three (BEGIN, the select, ROLLBACK)."""
        generation = self._p.slot_facts.generation
        sessions_of_slots = select(SlotRow.session_id).where(SlotRow.id.in_(slot_ids))
        async with self._p.sessions() as session:
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            found = (
                await connection.execute(
                    select(
                        SlotRow.id,
                        SlotRow.starts_at,
                        SlotRow.ends_at,
                        SessionRow.id,
                        SessionRow.fee_cents,
                        HospitalRow.id,
                        HospitalRow.timezone,
                        HospitalRow.policies,
                        HospitalRow.name,
                        DepartmentRow.name,
                        DoctorRow.name,
                    )
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .where(SlotRow.session_id.in_(sessions_of_slots))
                )
            ).all()
        by_slot: dict[str, SlotFacts] = {}
        policies_of: dict[str, HospitalPolicies] = {}
        for row in found:
            (slot, starts_at, ends_at, session_id, fee_cents, hospital_id, timezone, raw) = row[:8]
            hospital_name, department_name, doctor_name = row[8:]
            policies = policies_of.get(hospital_id)
            if policies is None:  # each hospital's policies converted once per read
                policies = policies_of[hospital_id] = msgspec.convert(raw, HospitalPolicies)
            facts = SlotFacts(
                slot_id=slot,
                session_id=session_id,
                hospital_id=hospital_id,
                timezone=timezone,
                policies=policies,
                starts_at=starts_at,
                ends_at=ends_at,
                fee_cents=fee_cents,
                hospital_name=hospital_name,
                department_name=department_name,
                doctor_name=doctor_name,
            )
            self._p.slot_facts.put(facts, generation)
            by_slot[slot] = facts
        return by_slot

    async def schedule(
        self, function: str, *, key: str, at: datetime | None = None, **kwargs: Any
    ) -> None:
        """Schedule follow-up work after a commit, never failing the command that committed.

        Every job is also a sweep (``expire_due``, pending refunds), so a job that could not be
        queued (Redis briefly away) is done by the next sweep instead; the caller's change is
        already recorded and must be reported as done.
        """
        try:
            await self._p.jobs.schedule(function, key=key, at=at, **kwargs)
        except Exception as exc:
            log.warning("could not queue %s (%s); the sweep will do it: %s", function, key, exc)

    async def schedule_expiry(self, at: datetime) -> None:
        """Have the holds that run out at ``at`` expired in SQL then: one job per second of
        expiry, not one per hold.

        The holds granted in one second of a release run out in one second too; a job per hold
        cost every grant a round trip to the queue (a sixth of a granted hold's time,
        bench/profiles/11-*). This process asks the queue once per second of expiry, and the
        queue keeps one job per key, so the processes of a region share it; the job expires
        every booking then due (``expire_due_bookings``).
        """
        second = int(at.timestamp())
        if second in self._expiries_scheduled:
            return
        self._expiries_scheduled.add(second)  # before the await: the crowd's other grants skip
        if len(self._expiries_scheduled) > EXPIRY_SECONDS_KEPT:
            past = int(self._p.clock.now().timestamp())
            self._expiries_scheduled = {s for s in self._expiries_scheduled if s >= past}
        await self.schedule("expire_due_bookings", key=f"expire-due:{second}", at=at)

    async def booking_row(
        self, session: AsyncSession, booking_id: str, account_id: str | None
    ) -> BookingRow:
        """The booking's row in ``session``: ``BOOKING_NOT_FOUND``, or ``HOLD_NOT_OWNED`` when
        ``account_id`` is given and the booking is another account's."""
        row = await session.get(BookingRow, booking_id)
        if row is None:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        if account_id is not None and row.account_id != account_id:
            refuse("HOLD_NOT_OWNED", booking_id=booking_id)
        return row

    async def get(self, booking_id: str, *, account_id: str | None = None) -> Booking:
        """The booking as it is now (the account's own when ``account_id`` is given)."""
        return to_domain(await self.row(booking_id, account_id=account_id))

    async def row(self, booking_id: str, *, account_id: str | None = None) -> BookingRow:
        """The booking's row as it is now, detached: a step may hand it to the transaction
        that changes it (``BookingSteps``), whose update its version then guards.

        One statement, read in autocommit: no BEGIN and ROLLBACK around it (two round trips
        of three, as in ``QueryService.booking``)."""
        async with self._p.sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return await self.booking_row(session, booking_id, account_id)

    async def patient_choice(
        self, booking_id: str, account_id: str, patient_id: str
    ) -> PatientChoice:
        """The account's booking with its session and department, and the patient asked
        for, in one statement read in autocommit: what a patient choice checks before it
        takes the person's turn, which must be its transaction's first statement. Four
        statements and a transaction before (bench/profiles/flow2-*).

        Refuses as ``booking_row`` does; the patient is left to the caller's checks."""
        async with self._p.sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            found = (
                await session.execute(
                    _PATIENT_CHOICE, {"booking": booking_id, "patient": patient_id}
                )
            ).first()
        if found is None:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        owner, slot_id, sess, department, patient = found
        if owner != account_id:
            refuse("HOLD_NOT_OWNED", booking_id=booking_id)
        return PatientChoice(slot_id, patient, sess, department)

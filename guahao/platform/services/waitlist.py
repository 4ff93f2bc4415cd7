"""The waitlist (候补): joining, leaving, seeing one's place, and serving the line.

Units reach the line three ways:

* a unit given back by 退号 is *returning*: hidden from the public until its random return
  time. ``serve_returned_unit`` (on ``booking.cancelled_by_patient``) claims that very unit
  for the first eligible waiter (``Inventory.claim_returning``). If nobody is eligible before
  the return time, the unit simply goes public then (Redis does that by itself).
* a unit that becomes available otherwise (a hold or an unpaid order ran out, capacity was
  added) is offered by ``serve_due`` (the sweep, and at once on ``booking.expired`` /
  ``booking.abandoned``) through the ordinary hold script, without an account marker.
* the patients of a session the hospital stopped (停诊) join the line by themselves with the
  stop priority (``on_session_stopped``), so they are served before everyone else.

The order of the line and what a wait covers are pure rules in ``guahao.platform.waitlist``;
a grant and its completion are ``unit_offers``. Every handler is safe to run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import ACTIVE_STATUSES, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
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
)
from guahao.platform.services.blacklist import active_ban
from guahao.platform.services.booking_records import BookingRecords
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    GrantOutcome,
    Recipient,
    UnitOffers,
    derived_id,
)
from guahao.platform.strikes import ban_exempts
from guahao.platform.waitlist import (
    Scope,
    Wait,
    WaitlistRules,
    covers,
    in_line,
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


def _wait(row: WaitlistEntryRow) -> Wait:
    return Wait(
        id=row.id,
        scope=row.scope,  # type: ignore[arg-type]
        priority=row.priority,
        joined_at=row.joined_at,
        department_id=row.department_id or "",
        date_from=row.date_from,
        date_to=row.date_to,
        doctor_id=row.doctor_id,
        session_id=row.session_id,
    )


def _view(row: WaitlistEntryRow, place: int | None) -> WaitView:
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
    )


def _recipient(row: WaitlistEntryRow) -> Recipient:
    return Recipient(
        entry_id=row.id,
        account_id=row.account_id,
        patient_id=row.patient_id,
        person_id=row.person_id,
        channel=row.channel,
        kind="waitlist",
    )


def _local_today(now: datetime, zone: str) -> date:
    return now.astimezone(ZoneInfo(zone)).date()


def _active_in_session(session_id: str, person_id: str) -> Any:
    return select(BookingRow.id).where(
        BookingRow.session_id == session_id,
        BookingRow.person_id == person_id,
        BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]),
    )


class WaitlistService:
    """Join, leave and list waits; serve the line from freed units (module docstring)."""

    def __init__(
        self, ports: Ports, bookings: BookingRecords, offers: UnitOffers, rules: RuleBook
    ) -> None:
        self._p = ports
        self._bookings = bookings
        self._offers = offers
        self._rules = rules

    async def rules_for(self, hospital_id: str) -> WaitlistRules:
        return waitlist_rules_of(await self._rules.for_hospital(hospital_id))

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
            target = await self._target(
                session, scope, session_id, doctor_id, department_id, date_from, date_to
            )
            hospital = await session.get(HospitalRow, target.hospital_id)
            assert hospital is not None
            department = await session.get(DepartmentRow, target.department_id)
            assert department is not None
        rules = await self._rules.for_hospital(hospital.id)
        waitlist = waitlist_rules_of(rules)
        today = _local_today(now, hospital.timezone)
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
            ban = await active_ban(session, patient.person_id, now)
            if ban is not None and not ban_exempts(
                rules.blacklist, department.catalog_code, department.name
            ):
                refuse(
                    "PATIENT_BLACKLISTED",
                    ban_id=ban.id,
                    until=ban.ends_at.isoformat(),
                    policy=ban.policy,
                    reason=ban.reason,
                    appeal="POST /api/v1/appeals",
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
                    place = position(_wait(row), [_wait(r) for r in rivals])
                views.append(_view(row, place))
        return views

    # ------------------------------------------------------------------ serving the line

    async def on_booking_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``booking.``): a cancellation returns a unit to the line first;
        an expiry or an abandoned hold frees one now; an unpaid waitlist offer ends its wait."""
        if event.topic == "booking.cancelled_by_patient":
            await self.serve_returned_unit(event.aggregate_id)
        elif event.topic == "booking.cancelled_by_hospital":
            await self.on_hospital_cancelled(event.aggregate_id)
        elif event.topic in ("booking.expired", "booking.abandoned"):
            await self._end_unpaid_offer(event.aggregate_id)
            slot_id = event.payload.get("slot_id")
            if isinstance(slot_id, str):
                await self.serve_slots([slot_id])

    async def on_session_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``session.stopped``)."""
        if event.topic == "session.stopped":
            bookings = event.payload.get("bookings") or []
            await self.on_session_stopped(
                str(event.payload.get("session_id", event.aggregate_id)),
                [str(b) for b in bookings],
            )

    async def serve_returned_unit(self, cancelled_booking_id: str) -> str | None:
        """Give the unit freed by this 退号 to the first eligible waiter, while it is still
        returning. Returns the new booking's id, or None. Safe to repeat: the unit's one
        possible grant has an id derived from the cancelled booking."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, cancelled_booking_id)
            if (
                row is None
                or row.status != BookingStatus.CANCELLED_BY_PATIENT.value
                or row.unit_returns_at is None
                or row.unit_returns_at <= now
            ):
                return None
            sess = await session.get(SessionRow, row.session_id)
            assert sess is not None
            canceller = row.person_id
            if canceller is None and row.patient_id is not None:
                patient = await session.get(PatientRow, row.patient_id)
                canceller = patient.person_id if patient is not None else None
            return_at = row.unit_returns_at
            slot_id = row.slot_id
        booking_id = derived_id("waitlist-return", cancelled_booking_id)
        if await self._existing(booking_id):
            await self._complete(booking_id, sess.hospital_id)
            return booking_id
        if not self._servable(sess, now):
            return None
        inventory = self._p.inventory
        for entry in await self._line(sess):
            if entry.person_id == canceller:
                continue  # the person who cancelled cannot take the same unit back
            account_id = entry.account_id

            async def claim(expires_ms: int, account_id: str = account_id) -> None:
                async def attempt() -> None:
                    await inventory.claim_returning(
                        slot_id,
                        unit_id=cancelled_booking_id,
                        hold_id=booking_id,
                        account_id=account_id,
                        now_ms=to_epoch_ms(now),
                        expires_at_ms=expires_ms,
                    )

                try:
                    await attempt()
                except KeyError:  # Redis lost the slot: rebuild it (the unit returns too)
                    await self._bookings._sync.load_slot(slot_id, only_if_missing=True)
                    await attempt()

            async def undo(account_id: str = account_id) -> None:
                await inventory.unclaim_returning(
                    slot_id,
                    unit_id=cancelled_booking_id,
                    hold_id=booking_id,
                    account_id=account_id,
                    now_ms=to_epoch_ms(self._p.clock.now()),
                    return_at_ms=to_epoch_ms(return_at),
                )

            outcome = await self._try(entry, sess, slot_id, booking_id, claim, undo, "returned")
            if outcome is GrantOutcome.GRANTED:
                return booking_id
            if outcome is GrantOutcome.UNIT_GONE:
                return None
        return None

    async def serve_slots(self, slot_ids: list[str]) -> int:
        """Offer the available units of these slots to their sessions' lines."""
        now = self._p.clock.now()
        if not slot_ids:
            return 0
        async with self._p.sessions() as session:
            found = (
                await session.execute(
                    select(SlotRow.id, SessionRow)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(SlotRow.id.in_(slot_ids))
                )
            ).all()
        granted = 0
        snapshot = await self._p.inventory.counts([s for s, _ in found], now_ms=to_epoch_ms(now))
        for slot_id, sess in found:
            counts = snapshot.get(slot_id)
            if counts is None or counts.status != "open" or not self._servable(sess, now):
                continue
            free = counts.available
            if free <= 0:
                continue
            line = await self._line(sess)
            for entry in line:
                if free <= 0:
                    break
                outcome = await self._offer_available(entry, sess, slot_id)
                if outcome is GrantOutcome.GRANTED:
                    granted += 1
                    free -= 1
                elif outcome is GrantOutcome.UNIT_GONE:
                    break
        return granted

    async def serve_due(self, limit: int = 500) -> int:
        """Sweep: end stale waits, finish interrupted offers, and offer every available unit
        of a released session that someone waits for. Returns the units granted."""
        now = self._p.clock.now()
        await self._end_stale(now)
        for booking_id in await self._offers.unfinished("waitlist"):
            async with self._p.sessions() as session:
                hospital_id = await session.scalar(
                    select(SessionRow.hospital_id)
                    .join(BookingRow, BookingRow.session_id == SessionRow.id)
                    .where(BookingRow.id == booking_id)
                )
            if hospital_id is not None:
                await self._complete(booking_id, hospital_id)
        slot_ids = await self._slots_with_waiters(now, limit)
        return await self.serve_slots(slot_ids)

    async def on_session_stopped(self, session_id: str, booking_ids: list[str]) -> int:
        """停诊: the session's own waits end, and every patient whose booking the hospital
        cancelled joins the line with the stop priority (when the rules say so). Returns
        how many joined; safe to repeat (one wait per stopped booking, by derived id)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                return 0
            hospital = await session.get(HospitalRow, sess.hospital_id)
            assert hospital is not None
            rows = (
                await session.scalars(select(BookingRow).where(BookingRow.id.in_(booking_ids)))
            ).all()
        async with self._p.sessions() as session, session.begin():
            ended = (
                await session.scalars(
                    select(WaitlistEntryRow).where(
                        WaitlistEntryRow.session_id == session_id,
                        WaitlistEntryRow.scope == "session",
                        WaitlistEntryRow.status == "waiting",
                    )
                )
            ).all()
            for entry in ended:
                entry.status = "cancelled"
                entry.end_reason = "session_stopped"
                entry.updated_at = now
                record_event(
                    session,
                    "waitlist.ended",
                    entry.id,
                    {
                        "entry_id": entry.id,
                        "account_id": entry.account_id,
                        "session_id": session_id,
                        "reason": "session_stopped",
                    },
                    now,
                )
        return await self._join_turned_away(sess, hospital, rows, "session_stopped")

    async def on_hospital_cancelled(self, booking_id: str) -> int:
        """The hospital cancelled one booking (not the session): its patient goes first in the
        line like the patients of a stopped session. Safe to repeat."""
        async with self._p.sessions() as session:
            booking = await session.get(BookingRow, booking_id)
            if booking is None or booking.end_reason != "hospital_cancelled":
                return 0
            sess = await session.get(SessionRow, booking.session_id)
            assert sess is not None
            hospital = await session.get(HospitalRow, sess.hospital_id)
            assert hospital is not None
        return await self._join_turned_away(sess, hospital, [booking], "hospital_cancelled")

    async def _join_turned_away(
        self,
        sess: SessionRow,
        hospital: HospitalRow,
        rows: Sequence[BookingRow],
        reason: str,
    ) -> int:
        """Patients the hospital turned away (``reason`` is their bookings' end reason) join
        the line with the stop priority, when the rules say so; one wait per booking."""
        now = self._p.clock.now()
        session_id = sess.id
        waitlist = await self.rules_for(sess.hospital_id)
        if not waitlist.stopped_patients_auto_join:
            return 0
        today = _local_today(now, hospital.timezone)
        date_from = max(sess.date, today)
        date_to = max(sess.date + timedelta(days=waitlist.auto_join_days), date_from)
        joined = 0
        for booking in rows:
            if booking.patient_id is None or booking.end_reason != reason:
                continue
            entry_id = derived_id("waitlist-stopped", booking.id)
            try:
                async with self._p.sessions() as session, session.begin():
                    if await session.get(WaitlistEntryRow, entry_id) is not None:
                        continue
                    patient = await session.get(PatientRow, booking.patient_id)
                    if patient is None or patient.removed_at is not None:
                        continue
                    doctor = waitlist.auto_join_scope == "doctor"
                    session.add(
                        WaitlistEntryRow(
                            id=entry_id,
                            account_id=booking.account_id,
                            patient_id=patient.id,
                            person_id=patient.person_id,
                            scope=waitlist.auto_join_scope,
                            hospital_id=sess.hospital_id,
                            department_id=sess.department_id,
                            doctor_id=sess.doctor_id if doctor else None,
                            date_from=date_from,
                            date_to=date_to,
                            channel=booking.channel or "self_pay",
                            priority=waitlist.hospital_stop_priority,
                            status="waiting",
                            joined_at=booking.ended_at or now,
                            updated_at=now,
                        )
                    )
                    record_event(
                        session,
                        "waitlist.joined",
                        entry_id,
                        {
                            "entry_id": entry_id,
                            "account_id": booking.account_id,
                            "patient_id": patient.id,
                            "scope": waitlist.auto_join_scope,
                            "session_id": None,
                            "stopped_session_id": session_id,
                            "date_from": date_from.isoformat(),
                            "date_to": date_to.isoformat(),
                            "reason": reason,
                        },
                        now,
                    )
                joined += 1
            except IntegrityError:
                continue  # a concurrent delivery of the same stop added it
        return joined

    # ------------------------------------------------------------------ the steps

    async def _try(
        self,
        entry: WaitlistEntryRow,
        sess: SessionRow,
        slot_id: str,
        booking_id: str,
        claim: Any,
        undo: Any,
        source: str,
    ) -> GrantOutcome:
        entry_id = entry.id

        async def guard(session: AsyncSession, now: datetime) -> bool:
            done = await session.execute(
                update(WaitlistEntryRow)
                .where(WaitlistEntryRow.id == entry_id, WaitlistEntryRow.status == "waiting")
                .values(status="fulfilled", updated_at=now)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

        async def link(session: AsyncSession, booking_id: str) -> None:
            await session.execute(
                update(WaitlistEntryRow)
                .where(WaitlistEntryRow.id == entry_id)
                .values(booking_id=booking_id)
            )

        outcome, refusal = await self._offers.grant(
            _recipient(entry),
            sess=sess,
            slot_id=slot_id,
            booking_id=booking_id,
            guard=guard,
            link=link,
            claim=claim,
            undo=undo,
            event=("waitlist.granted", {"source": source}),
        )
        if outcome is GrantOutcome.INELIGIBLE and refusal is not None:
            log.info("waitlist entry %s skipped: %s", entry_id, refusal.code)
            if refusal.code in ("PATIENT_BLACKLISTED", "PATIENT_NOT_FOUND"):
                await self._remove(entry_id, refusal.code.lower())
        if outcome is GrantOutcome.GRANTED:
            await self._complete(booking_id, sess.hospital_id)
        return outcome

    async def _offer_available(
        self, entry: WaitlistEntryRow, sess: SessionRow, slot_id: str
    ) -> GrantOutcome:
        booking_id = new_id()
        inventory = self._p.inventory
        now = self._p.clock.now()

        async def claim(expires_ms: int) -> None:
            now_ms = to_epoch_ms(now)
            try:
                await inventory.offer_hold(
                    slot_id,
                    hold_id=booking_id,
                    account_id=entry.account_id,
                    now_ms=now_ms,
                    ttl_ms=expires_ms - now_ms,
                    idempotency_key=f"waitlist:{entry.id}:{booking_id}",
                )
            except KeyError:
                await self._bookings._sync.load_slot(slot_id, only_if_missing=True)
                raise

        async def undo() -> None:
            await inventory.release(
                slot_id,
                hold_id=booking_id,
                account_id=entry.account_id,
                now_ms=to_epoch_ms(self._p.clock.now()),
            )

        try:
            return await self._try(entry, sess, slot_id, booking_id, claim, undo, "available")
        except KeyError:
            return GrantOutcome.UNIT_GONE

    async def _complete(self, booking_id: str, hospital_id: str) -> None:
        waitlist = await self.rules_for(hospital_id)
        try:
            await self._offers.complete(booking_id, payment_minutes=waitlist.offer_payment_minutes)
        except Exception:
            # The grant is recorded; the sweep completes it (serve_due → unfinished offers).
            log.warning("waitlist offer %s not completed yet", booking_id, exc_info=True)

    async def _existing(self, booking_id: str) -> bool:
        async with self._p.sessions() as session:
            return await session.get(BookingRow, booking_id) is not None

    @staticmethod
    def _servable(sess: SessionRow, now: datetime) -> bool:
        return (
            sess.status == "open"
            and sess.starts_at > now
            and sess.release_at <= now
            and (sess.allocation == "first_come" or sess.lottery_drawn)
        )

    async def _line(self, sess: SessionRow) -> list[WaitlistEntryRow]:
        """Waiting entries that cover this session, in the order of the line."""
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(WaitlistEntryRow).where(
                        WaitlistEntryRow.status == "waiting",
                        or_(
                            WaitlistEntryRow.session_id == sess.id,
                            and_(
                                WaitlistEntryRow.department_id == sess.department_id,
                                WaitlistEntryRow.scope.in_(["doctor", "department"]),
                                WaitlistEntryRow.date_from <= sess.date,
                                WaitlistEntryRow.date_to >= sess.date,
                            ),
                        ),
                    )
                )
            ).all()
        by_id = {r.id: r for r in rows}
        covering = [
            _wait(r)
            for r in rows
            if covers(
                _wait(r),
                session_id=sess.id,
                doctor_id=sess.doctor_id,
                department_id=sess.department_id,
                day=sess.date,
            )
        ]
        return [by_id[w.id] for w in in_line(covering)]

    async def _slots_with_waiters(self, now: datetime, limit: int) -> list[str]:
        async with self._p.sessions() as session:
            waiting = (
                await session.execute(
                    select(
                        WaitlistEntryRow.scope,
                        WaitlistEntryRow.session_id,
                        WaitlistEntryRow.department_id,
                        func.min(WaitlistEntryRow.date_from),
                        func.max(WaitlistEntryRow.date_to),
                    )
                    .where(WaitlistEntryRow.status == "waiting")
                    .group_by(
                        WaitlistEntryRow.scope,
                        WaitlistEntryRow.session_id,
                        WaitlistEntryRow.department_id,
                    )
                )
            ).all()
            conditions = []
            for scope, session_id, department_id, first, last in waiting:
                if scope == "session":
                    conditions.append(SessionRow.id == session_id)
                else:
                    conditions.append(
                        and_(
                            SessionRow.department_id == department_id,
                            SessionRow.date >= first,
                            SessionRow.date <= last,
                        )
                    )
            if not conditions:
                return []
            rows = (
                await session.scalars(
                    select(SlotRow.id)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(
                        or_(*conditions),
                        SessionRow.status == "open",
                        SessionRow.starts_at > now,
                        SessionRow.release_at <= now,
                        SlotRow.status == "open",
                    )
                    .order_by(SlotRow.starts_at)
                    .limit(limit)
                )
            ).all()
        return list(rows)

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

    async def _remove(self, entry_id: str, reason: str) -> None:
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            entry = await session.get(WaitlistEntryRow, entry_id)
            if entry is None or entry.status != "waiting":
                return
            entry.status = "removed"
            entry.end_reason = reason
            entry.updated_at = now
            record_event(
                session,
                "waitlist.removed",
                entry_id,
                {"entry_id": entry_id, "account_id": entry.account_id, "reason": reason},
                now,
            )

    async def _end_unpaid_offer(self, booking_id: str) -> None:
        """A waitlist offer that ended unbooked: turned down by the waiter ends the wait
        (``cancelled``), not paid in time too (``expired``); an offer that never reached its
        payment step (the platform's failure) waits again."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            booking = await session.get(BookingRow, booking_id)
            if booking is None or booking.kind != "waitlist":
                return
            entry = await session.scalar(
                select(WaitlistEntryRow).where(
                    WaitlistEntryRow.booking_id == booking_id,
                    WaitlistEntryRow.status == "fulfilled",
                )
            )
            if entry is None:
                return
            if booking.status == BookingStatus.ABANDONED.value:
                entry.status = "cancelled"  # the waiter turned the offer down
                entry.end_reason = "offer_declined"
            elif booking.payment_order_no is None:
                entry.status = "waiting"
                entry.booking_id = None
                entry.end_reason = None
            else:
                entry.status = "expired"
                entry.end_reason = "offer_not_paid"
                record_event(
                    session,
                    "waitlist.expired",
                    entry.id,
                    {
                        "entry_id": entry.id,
                        "account_id": entry.account_id,
                        "booking_id": booking_id,
                        "reason": "offer_not_paid",
                    },
                    now,
                )
            entry.updated_at = now

    async def _end_stale(self, now: datetime) -> None:
        """Waits whose session started, or whose last day is over in the hospital's own time
        zone, end as ``expired``."""
        async with self._p.sessions() as session, session.begin():
            candidates = (
                await session.execute(
                    select(WaitlistEntryRow, SessionRow.starts_at, HospitalRow.timezone)
                    .join(HospitalRow, HospitalRow.id == WaitlistEntryRow.hospital_id)
                    .join(SessionRow, SessionRow.id == WaitlistEntryRow.session_id, isouter=True)
                    .where(
                        WaitlistEntryRow.status == "waiting",
                        or_(
                            SessionRow.starts_at <= now,
                            # No zone is a day or more ahead of UTC, so this finds them all.
                            WaitlistEntryRow.date_to < (now + timedelta(days=1)).date(),
                        ),
                    )
                    .limit(1000)
                )
            ).all()
            for entry, starts_at, zone in candidates:
                started = starts_at is not None and starts_at <= now
                if not started and entry.date_to >= _local_today(now, zone):
                    continue
                entry.status = "expired"
                entry.end_reason = "session_started" if started else "dates_passed"
                entry.updated_at = now
                record_event(
                    session,
                    "waitlist.expired",
                    entry.id,
                    {
                        "entry_id": entry.id,
                        "account_id": entry.account_id,
                        "reason": entry.end_reason,
                    },
                    now,
                )


@dataclass(frozen=True)
class _Target:
    """What a wait is for, resolved from the ids the patient gave."""

    hospital_id: str
    department_id: str
    doctor_id: str | None
    date_from: date
    date_to: date
    sess: SessionRow | None

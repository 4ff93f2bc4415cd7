"""Serving the waitlist (候补): which waits stand in a session's line, and giving them units.

Units reach the line three ways:

* a unit given back by 退号 is *returning*: hidden from the public until its random return
  time. ``serve_returned_unit`` (on ``booking.cancelled_by_patient``) claims that very unit
  for the first eligible waiter (``Inventory.claim_returning``). If nobody is eligible before
  the return time, the unit simply goes public then (Redis does that by itself).
* a unit that becomes available otherwise (a hold or an unpaid order ran out, capacity was
  added) is offered by ``serve_slots`` (the sweep ``serve_due``, and at once on
  ``booking.expired`` / ``booking.abandoned``) through the ordinary hold script, without an
  account marker.
* the patients the hospital turned away join the line by themselves (``waitlist_events``).

The order of the line and what a wait covers are pure rules in ``guahao.platform.waitlist``;
a grant and its completion are ``unit_offers``. Every step is safe to run twice.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import SlotNotLoadedError
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    SlotRow,
    WaitlistEntryRow,
)
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    GrantOutcome,
    Recipient,
    UnitOffers,
    derived_id,
)
from guahao.platform.services.wait_prepayments import WaitPrepayments
from guahao.platform.strikes import BookingOrigin
from guahao.platform.waitlist import (
    Wait,
    WaitlistRules,
    covers,
    in_line,
    waitlist_rules_of,
)

__all__ = ["WaitlistServer", "local_today", "wait_of"]

log = logging.getLogger(__name__)


def wait_of(row: WaitlistEntryRow) -> Wait:
    """The pure rules' view of a waitlist row."""
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


def _recipient(row: WaitlistEntryRow) -> Recipient:
    rebooking = row.origin == BookingOrigin.PRIORITY_REBOOKING.value
    return Recipient(
        entry_id=row.id,
        account_id=row.account_id,
        patient_id=row.patient_id,
        person_id=row.person_id,
        channel=row.channel,
        kind="waitlist",
        origin=BookingOrigin.PRIORITY_REBOOKING if rebooking else BookingOrigin.PATIENT_WAIT,
    )


def local_today(now: datetime, zone: str) -> date:
    """Today in the hospital's own time zone (a wait's dates are the hospital's days)."""
    return now.astimezone(ZoneInfo(zone)).date()


class WaitlistServer:
    """Gives freed units to the first eligible waits (see the module docstring)."""

    def __init__(
        self,
        ports: Ports,
        inventory_sync: InventorySync,
        offers: UnitOffers,
        rules: RuleBook,
        prepayments: WaitPrepayments,
    ) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._offers = offers
        self._rules = rules
        self._prepayments = prepayments

    async def rules_for(self, hospital_id: str) -> WaitlistRules:
        """The waitlist rules in force at this hospital."""
        return waitlist_rules_of(await self._rules.for_hospital(hospital_id))

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

                # Redis may have lost the slot: rebuilt from SQL, the unit is returning again.
                await self._sync.with_slot_loaded(slot_id, attempt)

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
        await self._prepayments.pay_out_due()
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
        prepaid = (await self._prepayments.paid_for([entry_id])).get(entry_id)
        if prepaid is not None and (
            prepaid.status != "paid" or prepaid.amount_cents < sess.fee_cents
        ):
            # Not paid yet, or this unit costs more than was paid: never a payment step in
            # the night; the wait keeps its place for a unit it has paid for.
            return GrantOutcome.INELIGIBLE

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
            await self._sync.with_slot_loaded(
                slot_id,
                partial(
                    inventory.offer_hold,
                    slot_id,
                    hold_id=booking_id,
                    account_id=entry.account_id,
                    now_ms=now_ms,
                    ttl_ms=expires_ms - now_ms,
                    idempotency_key=f"waitlist:{entry.id}:{booking_id}",
                ),
            )

        async def undo() -> None:
            await inventory.release(
                slot_id,
                hold_id=booking_id,
                account_id=entry.account_id,
                now_ms=to_epoch_ms(self._p.clock.now()),
            )

        try:
            return await self._try(entry, sess, slot_id, booking_id, claim, undo, "available")
        except SlotNotLoadedError:  # not even a reload brought the slot back: nothing to give
            return GrantOutcome.UNIT_GONE

    async def _complete(self, booking_id: str, hospital_id: str) -> None:
        waitlist = await self.rules_for(hospital_id)
        async with self._p.sessions() as session:
            entry_id = await session.scalar(
                select(WaitlistEntryRow.id).where(WaitlistEntryRow.booking_id == booking_id)
            )
        prepaid = (await self._prepayments.paid_for([entry_id] if entry_id else [])).get(
            entry_id or ""
        )
        try:
            if entry_id is not None and prepaid is not None and prepaid.status == "paid":
                prepayments, wait_id = self._prepayments, entry_id

                async def pay(session: AsyncSession, booking: Booking) -> object:
                    return await prepayments.apply(
                        session,
                        entry_id=wait_id,
                        booking_id=booking.id,
                        fee_cents=booking.fee_cents,
                    )

                await self._offers.confirm_prepaid(booking_id, pay)
                await self._prepayments.pay_out(entry_id)  # the difference, if any
                return
            await self._offers.complete(
                booking_id,
                payment_minutes=waitlist.offer_payment_minutes,
                quiet_hours=(waitlist.quiet_hours_start, waitlist.quiet_hours_end),
            )
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
        prepaid = await self._prepayments.paid_for([r.id for r in rows])
        # A prepaid wait is served only once paid (``unit_offers`` then confirms at once).
        rows = [r for r in rows if r.id not in prepaid or prepaid[r.id].status == "paid"]
        by_id = {r.id: r for r in rows}
        covering = [
            wait_of(r)
            for r in rows
            if covers(
                wait_of(r),
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
                if not started and entry.date_to >= local_today(now, zone):
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

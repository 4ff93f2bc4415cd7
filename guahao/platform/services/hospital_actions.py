"""What the hospital side does to bookings: check-ins, session stops (停诊), no-shows.

``HospitalActions`` is the part of the booking service that connectors and the hospital API
are given (``BookingService.hospital_actions``): they can check in, stop and cancel, and
nothing of the citizen's journey.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.booking_records import (
    BookingRecords,
    apply_to_row,
    event_payload,
    to_domain,
)
from guahao.platform.services.booking_steps import BookingSteps
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rebooking_offers import RebookingOffers
from guahao.platform.services.runtime import Ports

__all__ = ["HOSPITAL_CANCELLED", "HospitalActions", "live_bookings_version"]

log = logging.getLogger(__name__)

HOSPITAL_CANCELLED = "hospital_cancelled"
"""The end reason of one booking the hospital cancelled (a session stop is ``session_stopped``)."""


def live_bookings_version(booking_ids: Iterable[str]) -> str:
    """A short name of a set of live bookings: a 停诊 previewed over one set is confirmed
    only over the same set (``STOP_IMPACT_CHANGED`` otherwise).

    >>> live_bookings_version(["b2", "b1"]) == live_bookings_version(["b1", "b2"])
    True
    >>> live_bookings_version(["b1"]) == live_bookings_version(["b1", "b2"])
    False
    """
    joined = "\n".join(sorted(booking_ids)).encode()
    return hashlib.sha256(joined).hexdigest()[:16]


class HospitalActions:
    """Check-in (签到), session stop (停诊) and no-show (爽约) marking."""

    def __init__(
        self,
        ports: Ports,
        records: BookingRecords,
        steps: BookingSteps,
        inventory_sync: InventorySync,
    ) -> None:
        self._p = ports
        self._records = records
        self._steps = steps
        self._sync = inventory_sync
        self.rebooking: RebookingOffers | None = None
        """Set by the composition root (it needs the offers built after this service)."""

    async def check_in(self, booking_id: str) -> Booking:
        """签到, reported by the HIS or the hospital."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self._records.booking_row(session, booking_id, None)
            booking = to_domain(row)
            flow.check_in(booking, now)
            apply_to_row(row, booking, now)
            record_event(session, "booking.checked_in", booking.id, event_payload(booking), now)
        return booking

    async def stop_session(
        self, session_id: str, *, reason: str, previewed: str | None = None
    ) -> list[str]:
        """停诊: every live booking is cancelled by the hospital, refunded in full, notified,
        with no penalty; the session's units are not released to the public. A paid booking's
        refund is held while its patient answers the rebooking offer (``RebookingOffers``).

        ``previewed`` is the ``live_bookings_version`` of the impact the staff member saw: a
        booking made (or ended) since then is ``STOP_IMPACT_CHANGED`` and nothing is stopped,
        so nobody is cancelled whom the staff member did not see."""
        now = self._p.clock.now()
        refunds: list[str] = []
        ended: list[Booking] = []
        was_holding: list[Booking] = []
        async with self._p.sessions() as session, session.begin():
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
            sess.status = "stopped"
            sess.stop_reason = reason
            await session.execute(
                update(SlotRow).where(SlotRow.session_id == session_id).values(status="stopped")
            )
            rows = (
                await session.scalars(
                    select(BookingRow).where(
                        BookingRow.session_id == session_id,
                        BookingRow.status.in_([s.value for s in flow.ACTIVE_STATUSES]),
                    )
                )
            ).all()
            if previewed is not None:
                now_live = live_bookings_version(r.id for r in rows)
                if now_live != previewed:
                    refuse("STOP_IMPACT_CHANGED", session_id=session_id, bookings=len(rows))
            for row in rows:
                booking = to_domain(row)
                if booking.holds_inventory:
                    was_holding.append(booking)
                flow.cancel_by_hospital(booking, now, reason="session_stopped")
                refund_no = await self._steps.end_confirmed(
                    booking,
                    now,
                    topic="booking.cancelled_by_hospital",
                    refund_reason="session_stopped",
                    returns_at=None,
                    session=session,
                )
                # 优先改约: with units to propose the refund is held for the offer (it may pay
                # for the accepted unit); with none it goes out at once, as before.
                if refund_no and not await self._offer(session, booking.id, refund_no, now):
                    refunds.append(refund_no)
                elif refund_no is None and booking.patient_id is not None:
                    await self._offer(session, booking.id, None, now)
                ended.append(booking)
            record_event(
                session,
                "session.stopped",
                session_id,
                {"session_id": session_id, "reason": reason, "bookings": [b.id for b in ended]},
                now,
            )
        await self._sync.load_session(session_id)
        for booking in was_holding:
            # The reload dropped their holds; this also frees each account's one-hold marker,
            # so the people the hospital turned away can book elsewhere at once.
            await self._steps.release_unit(booking, now)
        for refund_no in refunds:
            await self._records.schedule(
                "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
            )
        return [b.id for b in ended]

    async def cancel_by_hospital(
        self, booking_id: str, *, reason: str, hospital_id: str | None = None
    ) -> Booking:
        """The hospital cancels one live booking (its HIS cannot see that patient): cancelled
        by the hospital, refunded in full if paid, notified, never a strike.

        The unit does not go back on sale: the hospital took that appointment away, so the
        segment's capacity shrinks by one (SQL ``capacity`` and ``online_quota``). In Redis
        the unit is parked as *returning* until the slot ends, which keeps the pool's
        available count equal to what a rebuild from SQL would give, with no window in which
        another citizen could take it. ``hospital_id`` scopes the call to one hospital's
        bookings (connectors always pass it). A repeat answers the booking as it is.
        """
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
            sess = await session.get(SessionRow, row.session_id) if row is not None else None
            if row is None or sess is None or (hospital_id and sess.hospital_id != hospital_id):
                refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
            booking, kind = to_domain(row), row.kind
            slot = await session.get(SlotRow, row.slot_id)
            assert slot is not None
            slot_ends_at = slot.ends_at
        if booking.status == BookingStatus.CANCELLED_BY_HOSPITAL:
            return booking  # a repeated cancellation changes nothing
        started_from = booking.status
        was_holding = booking.holds_inventory
        flow.cancel_by_hospital(booking, now, reason=HOSPITAL_CANCELLED)
        in_pool = kind != "add_on"  # an add-on unit (加号) was never part of the quota
        try:
            async with self._p.sessions() as session, session.begin():
                refund_no = await self._steps.end_confirmed(
                    booking,
                    now,
                    topic="booking.cancelled_by_hospital",
                    refund_reason=HOSPITAL_CANCELLED,
                    returns_at=None,
                    session=session,
                    started_from=started_from,
                )
                offered = (
                    await self._offer(session, booking.id, refund_no, now)
                    if booking.patient_id is not None
                    else False
                )
                if in_pool:
                    await session.execute(
                        update(SlotRow)
                        .where(SlotRow.id == booking.slot_id, SlotRow.online_quota > 0)
                        .values(
                            capacity=SlotRow.capacity - 1, online_quota=SlotRow.online_quota - 1
                        )
                    )
        except StaleDataError:  # the patient or a payment moved the booking meanwhile
            refuse("BOOKING_STATE_INVALID", booking_id=booking_id, reason="changed_meanwhile")
        log.info("booking %s cancelled by the hospital: %s", booking_id, reason[:200])
        if in_pool:
            await self._retire_unit(booking, was_holding=was_holding, until=slot_ends_at)
        if refund_no and not offered:
            await self._records.schedule(
                "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
            )
        return booking

    async def _offer(
        self, session: AsyncSession, booking_id: str, refund_no: str | None, now: datetime
    ) -> bool:
        """优先改约 for the patient the hospital turned away, in the cancelling transaction."""
        if self.rebooking is None:
            return False
        return await self.rebooking.propose_in(
            session, booking_id=booking_id, refund_no=refund_no, now=now
        )

    async def _retire_unit(self, booking: Booking, *, was_holding: bool, until: datetime) -> None:
        """Take the booking's unit out of the hot pool for good (SQL already shrank)."""
        now_ms = to_epoch_ms(self._p.clock.now())
        try:
            if was_holding:  # the hold becomes a booked unit first, so it is never free
                await self._p.inventory.confirm(
                    booking.slot_id,
                    hold_id=booking.id,
                    account_id=booking.account_id,
                    now_ms=now_ms,
                )
            await self._p.inventory.cancel_booked(
                booking.slot_id,
                unit_id=booking.id,
                now_ms=now_ms,
                return_at_ms=max(to_epoch_ms(until), now_ms + 1),
            )
        except GuahaoError as exc:
            # The hold had already lapsed in Redis (its unit went back to the pool) or Redis
            # lost the slot: SQL is right, so load the slot from it.
            log.info("slot %s reloaded after a hospital cancellation: %r", booking.slot_id, exc)
            await self._sync.load_slot(booking.slot_id)

    async def mark_no_shows(self, session_id: str) -> int:
        """爽约: at the end of a session every confirmed booking not checked in is a no-show."""
        now = self._p.clock.now()
        count = 0
        async with self._p.sessions() as session, session.begin():
            sess = await session.get(SessionRow, session_id)
            if sess is None or now < sess.ends_at or sess.no_shows_marked:
                return 0
            rows = (
                await session.scalars(
                    select(BookingRow).where(
                        BookingRow.session_id == session_id,
                        BookingRow.status == BookingStatus.CONFIRMED.value,
                    )
                )
            ).all()
            for row in rows:
                booking = to_domain(row)
                flow.mark_no_show(booking, session_end=sess.ends_at, now=now)
                apply_to_row(row, booking, now)
                record_event(session, "booking.no_show", booking.id, event_payload(booking), now)
                count += 1
            sess.no_shows_marked = True
            if sess.status == "open":
                sess.status = "finished"
        return count

    async def mark_due_no_shows(self) -> int:
        """Sweep: every finished session not yet examined."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            ids = (
                await session.scalars(
                    select(SessionRow.id)
                    .where(SessionRow.ends_at <= now, SessionRow.no_shows_marked.is_(False))
                    .limit(1000)
                )
            ).all()
        total = 0
        for session_id in ids:
            total += await self.mark_no_shows(session_id)
        return total

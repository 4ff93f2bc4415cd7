"""What the hospital side does to bookings: check-ins, session stops (停诊), no-shows."""

from __future__ import annotations

from sqlalchemy import select, update

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.outbox import record_event
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

__all__ = ["HospitalActions"]


class HospitalActions(BookingRecords):
    """Check-in (签到), session stop (停诊) and no-show (爽约) marking."""

    async def check_in(self, booking_id: str) -> Booking:
        """签到, reported by the HIS or the hospital."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self._booking_row(session, booking_id, None)
            booking = to_domain(row)
            flow.check_in(booking, now)
            apply_to_row(row, booking, now)
            record_event(session, "booking.checked_in", booking.id, event_payload(booking), now)
        return booking

    async def stop_session(self, session_id: str, *, reason: str) -> list[str]:
        """停诊: every live booking is cancelled by the hospital, refunded in full, notified,
        with no penalty; the session's units are not released to the public."""
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
            for row in rows:
                booking = to_domain(row)
                if booking.holds_inventory:
                    was_holding.append(booking)
                flow.cancel_by_hospital(booking, now, reason="session_stopped")
                refund_no = await self._end_confirmed(
                    booking,
                    now,
                    topic="booking.cancelled_by_hospital",
                    refund_reason="session_stopped",
                    returns_at=None,
                    session=session,
                )
                if refund_no:
                    refunds.append(refund_no)
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
            await self._release_unit(booking, now)
        for refund_no in refunds:
            await self._schedule("process_refund", key=f"refund:{refund_no}", refund_no=refund_no)
        return [b.id for b in ended]

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

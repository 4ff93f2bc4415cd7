"""The waitlist's outbox handlers: what booking and session events do to the line.

A 退号 offers its returning unit to the line first; an expiry or an abandoned hold frees a
unit now; an unpaid waitlist offer ends its wait; and the patients the hospital turned away
(停诊, or one booking cancelled by the hospital) join the line with the stop priority, so they
are served before everyone else. Every handler is safe to run twice (at-least-once delivery).

The subscriptions are named in the composition root (``waitlist:booking``,
``waitlist:stop``), so where these handlers live does not move their outbox cursors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from guahao.platform.bookings import BookingStatus
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    PatientRow,
    SessionRow,
    WaitlistEntryRow,
)
from guahao.platform.services.rebooking_offers import RebookingOffers
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    derived_id,
)
from guahao.platform.services.waitlist_serving import WaitlistServer, local_today
from guahao.platform.strikes import BookingOrigin

__all__ = ["WaitlistEvents"]


class WaitlistEvents:
    """Outbox subscribers of the waitlist (see the module docstring)."""

    def __init__(
        self, ports: Ports, server: WaitlistServer, rebooking: RebookingOffers | None = None
    ) -> None:
        self._p = ports
        self._server = server
        self._rebooking = rebooking

    async def on_booking_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``booking.``): a cancellation returns a unit to the line first;
        an expiry or an abandoned hold frees one now; an unpaid waitlist offer ends its wait."""
        if event.topic == "booking.cancelled_by_patient":
            await self._server.serve_returned_unit(event.aggregate_id)
        elif event.topic == "booking.cancelled_by_hospital":
            await self.on_hospital_cancelled(event.aggregate_id)
        elif event.topic in ("booking.expired", "booking.abandoned"):
            await self._end_unpaid_offer(event.aggregate_id)
            slot_id = event.payload.get("slot_id")
            if isinstance(slot_id, str):
                await self._server.serve_slots([slot_id])

    async def on_session_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``session.stopped``)."""
        if event.topic == "session.stopped":
            bookings = event.payload.get("bookings") or []
            await self.on_session_stopped(
                str(event.payload.get("session_id", event.aggregate_id)),
                [str(b) for b in bookings],
            )

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
        if self._rebooking is not None:
            # 优先改约 first (made with the cancellation): a patient with units to choose from
            # is not also put in a line; only one with nothing to be offered joins it.
            rows = [b for b in rows if not await self._rebooking.offered(b.id)]
        waitlist = await self._server.rules_for(sess.hospital_id)
        if not waitlist.stopped_patients_auto_join:
            return 0
        today = local_today(now, hospital.timezone)
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
                            # The patient did not ask for it: what it grants never counts
                            # against them (``strikes.BookingOrigin``).
                            origin=BookingOrigin.PRIORITY_REBOOKING.value,
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

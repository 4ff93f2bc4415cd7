"""What every booking command shares: reading and writing booking rows, slot facts, the
confirmation step (减量), the end of a confirmed booking, refunds and giving units back.

Ordering rule between Redis (the hot pool) and SQL (the record): whatever could fail is done
so that a crash in between errs on the safe side. A hold is granted in Redis first and only
winners write SQL; giving a unit back is committed in SQL first and then returned to Redis (a
lost Redis step leaves a unit unsold until it expires or is rebuilt, never sold twice); a
confirmation runs the Redis step inside the open SQL transaction and undoes it if the commit
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import ConflictError
from guahao.platform.hospitals import HospitalPolicies, PaymentChannel
from guahao.platform.ids import new_order_no
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    PaymentNotificationRow,
    PaymentOrderRow,
    RefundRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = ["BookingRecords", "apply_to_row", "describe_visit", "event_payload", "to_domain"]

log = logging.getLogger(__name__)


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
    """The shared steps of the booking commands (see the module docstring)."""

    def __init__(
        self, ports: Ports, inventory_sync: InventorySync, rules: RuleBook | None = None
    ) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._rules = rules or RuleBook(ports)
        self._facts_loading: dict[str, asyncio.Future[SlotFacts]] = {}

    async def slot_facts(self, slot_id: str) -> SlotFacts:
        """The slot's immutable facts, from the process cache or SQL once.

        Concurrent misses of one slot share a single read: at release time the whole crowd
        arrives on a cold cache together, and must not each query SQL.
        """
        await self._p.slot_facts.refresh()  # other processes' policy changes, once a second
        facts = self._p.slot_facts.get(slot_id)
        if facts is not None:
            return facts
        loading = self._facts_loading.get(slot_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_slot_facts(slot_id))
            self._facts_loading[slot_id] = loading

            def done(task: asyncio.Future[SlotFacts]) -> None:
                self._facts_loading.pop(slot_id, None)
                if not task.cancelled():
                    task.exception()  # retrieved here too, so a refusal is never "unretrieved"

            loading.add_done_callback(done)
        return await asyncio.shield(loading)

    async def _load_slot_facts(self, slot_id: str) -> SlotFacts:
        generation = self._p.slot_facts.generation
        async with self._p.sessions() as session:
            found = (
                await session.execute(
                    select(SlotRow, SessionRow, HospitalRow)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                    .where(SlotRow.id == slot_id)
                )
            ).first()
        if found is None:
            refuse("SLOT_NOT_FOUND", slot_id=slot_id)
        slot, sess, hospital = found
        facts = SlotFacts(
            slot_id=slot.id,
            session_id=sess.id,
            hospital_id=hospital.id,
            timezone=hospital.timezone,
            policies=msgspec.convert(hospital.policies, HospitalPolicies),
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            fee_cents=sess.fee_cents,
        )
        self._p.slot_facts.put(facts, generation)
        return facts

    async def _schedule(
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

    async def _booking_row(
        self, session: AsyncSession, booking_id: str, account_id: str | None
    ) -> BookingRow:
        row = await session.get(BookingRow, booking_id)
        if row is None:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        if account_id is not None and row.account_id != account_id:
            refuse("HOLD_NOT_OWNED", booking_id=booking_id)
        return row

    async def get(self, booking_id: str, *, account_id: str | None = None) -> Booking:
        async with self._p.sessions() as session:
            return to_domain(await self._booking_row(session, booking_id, account_id))

    async def _confirm(
        self,
        booking: Booking,
        now: datetime,
        *,
        topic_extra: dict[str, Any],
        order_no: str | None = None,
        paid_at: datetime | None = None,
        notice: PaymentNotificationRow | None = None,
    ) -> None:
        """Record a confirmation in SQL and Redis together (减量).

        The row must still be in the state the caller's transition started from (awaiting
        payment when an order was paid, patient chosen otherwise): a second submit or payment
        racing the first is refused here instead of counting the unit twice in SQL.
        """
        started_from = (
            BookingStatus.AWAITING_PAYMENT if order_no is not None else BookingStatus.PATIENT_CHOSEN
        )
        confirmed_in_redis = False
        try:
            async with self._p.sessions() as session, session.begin():
                row = await self._booking_row(session, booking.id, None)
                if row.status != started_from.value:
                    if row.status == BookingStatus.CONFIRMED.value:
                        refuse("BOOKING_ALREADY_CONFIRMED", booking_id=booking.id)
                    refuse("BOOKING_STATE_INVALID", booking_id=booking.id, status=row.status)
                apply_to_row(row, booking, now)
                await session.execute(
                    update(SlotRow)
                    .where(SlotRow.id == booking.slot_id)
                    .values(online_booked=SlotRow.online_booked + 1)
                )
                if order_no is not None:
                    order = await session.get(PaymentOrderRow, order_no)
                    if order is not None:
                        order.status = "paid"
                        order.paid_at = paid_at
                if notice is not None:  # recorded with its outcome, or not at all
                    session.add(notice)
                record_event(
                    session,
                    "booking.confirmed",
                    booking.id,
                    event_payload(booking, **topic_extra),
                    now,
                )
                await session.flush()
                confirmed_in_redis = await self._p.inventory.confirm(
                    booking.slot_id,
                    hold_id=booking.id,
                    account_id=booking.account_id,
                    now_ms=to_epoch_ms(now),
                )
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.expire(booking.id, force=True)
            raise
        except BaseException as exc:
            if confirmed_in_redis:
                await self._p.inventory.cancel_booked(
                    booking.slot_id,
                    unit_id=booking.id,
                    now_ms=to_epoch_ms(now),
                    return_at_ms=to_epoch_ms(now),
                )
            if isinstance(exc, StaleDataError):  # another request moved the booking first
                refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="changed_meanwhile")
            raise

    async def _open_payment_order(
        self,
        booking: Booking,
        *,
        channel: PaymentChannel,
        minutes: int,
        now: datetime,
        **extra: Any,
    ) -> PaymentOrderRow:
        """Move a booking with its patient chosen to awaiting payment: an order of
        ``minutes`` at the gateway, the unit held until its end (plus the grace), and the
        order, the new state and ``booking.awaiting_payment`` (with ``extra``) recorded
        together. Whatever fails after the gateway made the order closes it again, so it never
        stays payable for a booking that did not move."""
        order_no = new_order_no(now)
        order_expires = now + timedelta(minutes=minutes)
        flow.submit(
            booking,
            channel=channel,
            payment_required=True,
            now=now,
            order_no=order_no,
            order_expires_at=order_expires,
        )
        await self._p.inventory.extend(
            booking.slot_id,
            hold_id=booking.id,
            account_id=booking.account_id,
            now_ms=to_epoch_ms(now),
            until_ms=to_epoch_ms(booking.unit_held_until()),
        )
        intent = await self._p.gateway.create_order(
            order_no=order_no,
            amount_cents=booking.fee_cents,
            description=f"挂号费 booking {booking.id}",
            expires_at=order_expires,
        )
        order = PaymentOrderRow(
            order_no=order_no,
            booking_id=booking.id,
            amount_cents=booking.fee_cents,
            channel=channel,
            status="created",
            pay_url=intent.pay_url,
            gateway_trade_no=intent.gateway_trade_no,
            expires_at=order_expires,
            created_at=now,
        )
        try:
            async with self._p.sessions() as session, session.begin():
                row = await self._booking_row(session, booking.id, None)
                if row.status != BookingStatus.PATIENT_CHOSEN.value:
                    refuse("BOOKING_STATE_INVALID", booking_id=booking.id, status=row.status)
                apply_to_row(row, booking, now)
                session.add(order)
                record_event(
                    session,
                    "booking.awaiting_payment",
                    booking.id,
                    event_payload(
                        booking,
                        order_no=order_no,
                        expires_at=order_expires.isoformat(),
                        pay_url=intent.pay_url,
                        **extra,
                    ),
                    now,
                )
        except BaseException as exc:
            # A concurrent submit or completion opened its own order first, or the record
            # failed: this order must not stay payable.
            with contextlib.suppress(Exception):
                await self._p.gateway.close_order(order_no=order_no)
            if isinstance(exc, StaleDataError):
                refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="changed_meanwhile")
            raise
        return order

    async def expire(self, booking_id: str, *, force: bool = False) -> bool:
        """Time ran out: mark the booking expired and give its unit back. Safe to repeat."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(BookingRow, booking_id)
            if row is None or BookingStatus(row.status) not in flow.HOLDING_STATUSES:
                return False
            booking = to_domain(row)
            hold_lost = force and now < booking.deadline()
            if not hold_lost and now < booking.unit_held_until():
                return False
            flow.expire(booking, now, hold_lost=hold_lost)
            apply_to_row(row, booking, now)
            record_event(session, "booking.expired", booking.id, event_payload(booking), now)
            if booking.payment_order_no:
                await self._close_order(session, booking.payment_order_no, status="expired")
        await self._release_unit(booking, now)
        return True

    async def _end_confirmed(
        self,
        booking: Booking,
        now: datetime,
        *,
        topic: str,
        refund_reason: str,
        returns_at: datetime | None,
        session: AsyncSession | None = None,
        started_from: BookingStatus | None = None,
    ) -> str | None:
        """Write the end of a confirmed booking: un-book in SQL, refund if it was paid.

        ``started_from`` is the status the caller's transition was checked against; a row that
        moved meanwhile (a second cancellation racing the first) is refused, not ended twice.
        """

        async def write(s: AsyncSession) -> str | None:
            row = await self._booking_row(s, booking.id, None)
            if started_from is not None and row.status != started_from.value:
                refuse("BOOKING_STATE_INVALID", booking_id=booking.id, status=row.status)
            # An add-on unit (诊间加号) was never part of the slot's quota: nothing to give back.
            counted = row.status == BookingStatus.CONFIRMED.value and row.kind != "add_on"
            apply_to_row(row, booking, now)
            row.unit_returns_at = returns_at if row.kind != "add_on" else None
            if counted:
                await s.execute(
                    update(SlotRow)
                    .where(SlotRow.id == booking.slot_id)
                    .values(online_booked=SlotRow.online_booked - 1)
                )
            refund_no = None
            if booking.paid and booking.payment_order_no:
                order = await s.get(PaymentOrderRow, booking.payment_order_no)
                if order is not None and order.status == "paid":
                    refund_no = self._add_refund(s, order, booking.id, refund_reason, now)
            elif booking.payment_order_no:
                await self._close_order(s, booking.payment_order_no)
            record_event(s, topic, booking.id, event_payload(booking, refund_no=refund_no), now)
            return refund_no

        if session is not None:
            return await write(session)
        try:
            async with self._p.sessions() as s, s.begin():
                return await write(s)
        except StaleDataError:  # another request moved the booking first
            refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="changed_meanwhile")

    def _add_refund(
        self,
        session: AsyncSession,
        order: PaymentOrderRow,
        booking_id: str,
        reason: str,
        now: datetime,
    ) -> str:
        refund_no = new_order_no(now, prefix="RF")
        order.status = "refunded"
        session.add(
            RefundRow(
                refund_no=refund_no,
                order_no=order.order_no,
                booking_id=booking_id,
                amount_cents=order.amount_cents,
                reason=reason,
                status="pending",
                created_at=now,
            )
        )
        return refund_no

    async def _close_order(
        self, session: AsyncSession, order_no: str, *, status: str = "closed"
    ) -> None:
        order = await session.get(PaymentOrderRow, order_no)
        if order is not None and order.status == "created":
            order.status = status
            try:
                await self._p.gateway.close_order(order_no=order_no)
            except ConflictError:
                log.info("order %s could not be closed at the gateway (already paid?)", order_no)

    async def _release_unit(self, booking: Booking, now: datetime) -> None:
        await self._p.inventory.release(
            booking.slot_id,
            hold_id=booking.id,
            account_id=booking.account_id,
            now_ms=to_epoch_ms(now),
        )

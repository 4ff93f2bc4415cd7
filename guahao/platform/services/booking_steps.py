"""The transitions several booking commands share: the confirmation (减量), opening a payment
order, expiry, the end of a confirmed booking with its refund, and giving a unit back.

They are public because the citizen's commands (``BookingService``), the payment notices, the
hospital's actions and the units offered from the waitlist and the lottery (``UnitOffers``)
all make them; each checks the state it starts from, so a caller cannot skip a rule.

Ordering rule between Redis (the hot pool) and SQL (the record): whatever could fail is done
so that a crash in between errs on the safe side. A hold is granted in Redis first and only
winners write SQL; giving a unit back is committed in SQL first and then returned to Redis (a
lost Redis step leaves a unit unsold until it expires or is rebuilt, never sold twice); a
confirmation runs the Redis step inside the open SQL transaction and undoes it if the commit
fails.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import ConflictError, SlotNotLoadedError
from guahao.platform.hospitals import PaymentChannel
from guahao.platform.ids import new_order_no
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    PaymentNotificationRow,
    PaymentOrderRow,
    RefundRow,
    SlotRow,
)
from guahao.platform.services.booking_records import (
    BookingRecords,
    apply_to_row,
    event_payload,
    to_domain,
)
from guahao.platform.services.runtime import Ports

__all__ = ["BookingSteps"]

log = logging.getLogger(__name__)

# Built once, the values bound at each execution: building them at each confirmation was a
# fifth of its cost (bench/profiles/flow2-*).
_COUNT_BOOKED = (
    update(SlotRow)
    .where(SlotRow.id == bindparam("slot"))
    .values(online_booked=SlotRow.online_booked + bindparam("by"))
)
_ORDER_PAID = (
    update(PaymentOrderRow)
    .where(PaymentOrderRow.order_no == bindparam("order"))
    .values(status="paid", paid_at=bindparam("paid_at"))
)


class BookingSteps:
    """Shared booking transitions (see the module docstring)."""

    def __init__(self, ports: Ports, records: BookingRecords) -> None:
        self._p = ports
        self._records = records

    async def confirm(
        self,
        booking: Booking,
        now: datetime,
        *,
        topic_extra: dict[str, Any],
        order_no: str | None = None,
        paid_at: datetime | None = None,
        notice: PaymentNotificationRow | None = None,
        also: Callable[[AsyncSession], Awaitable[object]] | None = None,
        read: BookingRow | None = None,
    ) -> None:
        """Record a confirmation in SQL and Redis together (减量).

        ``read`` is the booking's row as the caller read it (``_row_in``).

        ``also`` writes more in the same transaction (a prepaid wait's money becoming the
        booking's payment), so the confirmation and what it rests on commit together.

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
                row = await self._row_in(session, booking, read)
                if row.status != started_from.value:
                    if row.status == BookingStatus.CONFIRMED.value:
                        refuse("BOOKING_ALREADY_CONFIRMED", booking_id=booking.id)
                    refuse("BOOKING_STATE_INVALID", booking_id=booking.id, status=row.status)
                apply_to_row(row, booking, now)
                await session.execute(_COUNT_BOOKED, {"slot": booking.slot_id, "by": 1})
                if order_no is not None:  # written, not loaded: nothing else of it is needed
                    await session.execute(_ORDER_PAID, {"order": order_no, "paid_at": paid_at})
                if notice is not None:  # recorded with its outcome, or not at all
                    session.add(notice)
                if also is not None:
                    await also(session)
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

    async def open_payment_order(
        self,
        booking: Booking,
        *,
        channel: PaymentChannel,
        minutes: int,
        now: datetime,
        read: BookingRow | None = None,
        **extra: Any,
    ) -> PaymentOrderRow:
        """Move a booking with its patient chosen to awaiting payment: an order of
        ``minutes`` at the gateway, the unit held until its end (plus the grace), and the
        order, the new state and ``booking.awaiting_payment`` (with ``extra``) recorded
        together. Whatever fails after the gateway made the order closes it again, so it never
        stays payable for a booking that did not move. ``read``: as for ``confirm``."""
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
                row = await self._row_in(session, booking, read)
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

    async def _row_in(
        self, session: AsyncSession, booking: Booking, read: BookingRow | None
    ) -> BookingRow:
        """The booking's row in ``session``: the one its caller read a moment ago (the same
        request, in autocommit), taken into the session, or else read now. Its version makes
        the update refuse (``StaleDataError``, answered ``changed_meanwhile``) if anything
        moved the booking since it was read, so the state checked is the state changed: the
        read again inside each step's transaction was a statement of every step
        (bench/profiles/flow2-4-*)."""
        if read is None:
            return await self._records.booking_row(session, booking.id, None)
        session.add(read)
        return read

    async def expire(self, booking_id: str, *, force: bool = False) -> bool:
        """Time ran out: mark the booking expired and give its unit back. Safe to repeat."""
        now = self._p.clock.now()
        try:
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
                    await self.close_order(session, booking.payment_order_no, status="expired")
        except StaleDataError:
            # Another worker's sweep (or the citizen) moved the booking first; whoever did
            # also gives its unit back.
            return False
        await self.release_unit(booking, now)
        return True

    async def end_confirmed(
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
            row = await self._records.booking_row(s, booking.id, None)
            if started_from is not None and row.status != started_from.value:
                refuse("BOOKING_STATE_INVALID", booking_id=booking.id, status=row.status)
            # An add-on unit (诊间加号) was never part of the slot's quota: nothing to give back.
            counted = row.status == BookingStatus.CONFIRMED.value and row.kind != "add_on"
            apply_to_row(row, booking, now)
            row.unit_returns_at = returns_at if row.kind != "add_on" else None
            if counted:
                await s.execute(_COUNT_BOOKED, {"slot": booking.slot_id, "by": -1})
            refund_no = None
            if booking.paid and booking.payment_order_no:
                order = await s.get(PaymentOrderRow, booking.payment_order_no)
                if order is not None and order.status == "paid":
                    refund_no = self.add_refund(s, order, booking.id, refund_reason, now)
            elif booking.payment_order_no:
                await self.close_order(s, booking.payment_order_no)
            record_event(s, topic, booking.id, event_payload(booking, refund_no=refund_no), now)
            return refund_no

        if session is not None:
            return await write(session)
        try:
            async with self._p.sessions() as s, s.begin():
                return await write(s)
        except StaleDataError:  # another request moved the booking first
            refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="changed_meanwhile")

    def add_refund(
        self,
        session: AsyncSession,
        order: PaymentOrderRow,
        booking_id: str,
        reason: str,
        now: datetime,
    ) -> str:
        """Mark the paid order refunded and add a pending refund row in the caller's
        transaction (paid out later by ``PaymentNotices.process_refund``); returns its number."""
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

    async def close_order(
        self, session: AsyncSession, order_no: str, *, status: str = "closed"
    ) -> None:
        """Close an unpaid order here and at the gateway, so it can no longer take money;
        an order the gateway says is paid is left for the payment notice to settle."""
        order = await session.get(PaymentOrderRow, order_no)
        if order is not None and order.status == "created":
            order.status = status
            try:
                await self._p.gateway.close_order(order_no=order_no)
            except ConflictError:
                log.info("order %s could not be closed at the gateway (already paid?)", order_no)

    async def release_unit(self, booking: Booking, now: datetime) -> None:
        """Give the booking's held unit back to the pool (after SQL recorded why).

        A slot Redis does not know (lost, not yet rebuilt) has nothing to give back: SQL
        already records the end, so the load that brings the slot back leaves the unit free.
        """
        try:
            await self._p.inventory.release(
                booking.slot_id,
                hold_id=booking.id,
                account_id=booking.account_id,
                now_ms=to_epoch_ms(now),
            )
        except SlotNotLoadedError:
            log.info("booking %s ended while Redis did not know its slot", booking.id)

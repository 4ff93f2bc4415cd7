"""Payment notices from the gateway, late payments and refunds.

``PaymentNotices`` is one part of the booking service (``BookingService`` forwards to it): it
confirms through the shared ``BookingSteps``, so a paid notice and a free submit book a unit
the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.errors import ConflictError
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    PaymentNotificationRow,
    PaymentOrderRow,
    RefundRow,
)
from guahao.platform.ports import PaymentNotification
from guahao.platform.services.booking_records import (
    BookingRecords,
    to_domain,
)
from guahao.platform.services.booking_steps import BookingSteps
from guahao.platform.services.runtime import Ports
from guahao.platform.services.wait_prepayments import WaitPrepayments

__all__ = ["PaymentNotices", "PaymentOutcome"]

log = logging.getLogger(__name__)

_PAID_ORDER = (
    select(
        PaymentNotificationRow.notification_id,
        PaymentOrderRow.amount_cents,
        PaymentOrderRow.status,
        PaymentOrderRow.booking_id,
        BookingRow,
    )
    .select_from(PaymentOrderRow)
    .outerjoin(BookingRow, BookingRow.id == PaymentOrderRow.booking_id)
    .outerjoin(
        PaymentNotificationRow,
        PaymentNotificationRow.notification_id == bindparam("notice"),
    )
    .where(PaymentOrderRow.order_no == bindparam("order"))
)
"""``PaymentNotices._paid_order``'s statement, built once."""


class PaymentOutcome(msgspec.Struct, frozen=True, rename="camel"):
    """What a payment notice did."""

    booking_id: str
    order_no: str
    result: str
    """``confirmed``, ``already_confirmed`` or ``refunded_late_payment``; for a wait's
    prepayment (候补预付) ``prepaid`` or ``already_prepaid`` (``bookingId`` then names the
    booking it paid for, or is empty)."""


class PaymentNotices:
    """Turns verified payment notices into confirmations or refunds, and pays refunds."""

    def __init__(self, ports: Ports, records: BookingRecords, steps: BookingSteps) -> None:
        self._p = ports
        self._records = records
        self._steps = steps
        self._prepayments = WaitPrepayments(ports)

    async def handle_payment_notice(self, headers: dict[str, str], body: bytes) -> PaymentOutcome:
        """A signed notice from the gateway: verify, refuse replays, then book or refund."""
        now = self._p.clock.now()
        notice = self._p.gateway.verify_notification(headers, body, now=now)
        return await self.settle_paid(notice, now)

    async def settle_paid(self, notice: PaymentNotification, now: datetime) -> PaymentOutcome:
        """Money arrived for an order (a verified notice, or reconciliation finding it at the
        gateway): confirm the booking if it still may be, otherwise refund and tell the citizen.

        The notice's id is recorded in the same transaction as what the notice did, so a notice
        whose processing failed is not mistaken for a replay when the gateway sends it again.
        Whatever happens, the money ends up either confirming the booking or refunded: a unit
        that turns out to be taken when the confirmation is written (the database refuses the
        oversell) expires the booking and refunds the payment; it is never answered as a replay.
        """
        if await self._prepayments.owns(notice.order_no):  # 候补预付: a wait's money
            booking_id, result = await self._prepayments.take_notice(notice)
            return PaymentOutcome(booking_id, notice.order_no, result)
        order_status, row = await self._paid_order(notice)
        booking = to_domain(row)

        def record() -> PaymentNotificationRow:
            return PaymentNotificationRow(
                notification_id=notice.notification_id, order_no=notice.order_no, received_at=now
            )

        reason = "paid_after_expiry"
        try:
            if order_status == "paid" and booking.status is not BookingStatus.AWAITING_PAYMENT:
                async with self._p.sessions() as session, session.begin():
                    session.add(record())
                return PaymentOutcome(booking.id, notice.order_no, "already_confirmed")
            if order_status == "refunded":
                # Settled already (refunded by an earlier notice or by reconciliation): keep
                # the notice's trail, nothing else to do.
                async with self._p.sessions() as session, session.begin():
                    session.add(record())
                return PaymentOutcome(booking.id, notice.order_no, "refunded_late_payment")
            in_time = (
                booking.status is BookingStatus.AWAITING_PAYMENT
                and booking.payment_expires_at is not None
                and notice.paid_at < booking.payment_expires_at
            )
            if in_time:
                outcome = await self._confirm_paid(booking, notice, now, record(), read=row)
                if outcome is not None:
                    return outcome
        except IntegrityError:
            if await self._notice_recorded(notice.notification_id):
                refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
            # Not a replay: the database refused the confirmation itself (the unit was sold
            # meanwhile, e.g. by a pool rebuilt under traffic). The money must go back.
            log.error(
                "paid order %s could not confirm booking %s (integrity error); refunding",
                notice.order_no,
                booking.id,
                exc_info=True,
            )
            reason = "unit_unavailable"
            await self._steps.expire(booking.id, force=True)
        try:
            refund_no = await self._refund_late_payment(
                booking, notice.order_no, notice.paid_at, now, record(), reason=reason
            )
        except IntegrityError:
            refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
        if refund_no is None:
            return PaymentOutcome(booking.id, notice.order_no, "refunded_late_payment")
        await self._records.schedule(
            "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
        )
        return PaymentOutcome(booking.id, notice.order_no, "refunded_late_payment")

    async def _paid_order(self, notice: PaymentNotification) -> tuple[str, BookingRow]:
        """The notice's order's status and its booking's row (detached), refusing a replayed
        notice, an unknown order and a wrong amount (in that order).

        One statement read in autocommit (no BEGIN and ROLLBACK): the notice, the order and
        the booking were three, in a transaction, a third of a payment's statements
        (bench/profiles/flow2-*). Every decision taken from it is checked again by the
        transaction that acts on it."""
        async with self._p.sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            found = (
                await session.execute(
                    _PAID_ORDER, {"order": notice.order_no, "notice": notice.notification_id}
                )
            ).first()
        if found is None:
            if await self._notice_recorded(notice.notification_id):
                refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
            refuse("PAYMENT_ORDER_NOT_FOUND", order_no=notice.order_no)
        recorded, amount_cents, status, booking_id, row = found
        if recorded is not None:
            refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
        if notice.amount_cents != amount_cents:
            refuse(
                "PAYMENT_AMOUNT_MISMATCH",
                order_no=notice.order_no,
                paid=notice.amount_cents,
                expected=amount_cents,
            )
        if row is None:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        return status, row

    async def _confirm_paid(
        self,
        booking: Booking,
        notice: PaymentNotification,
        now: datetime,
        notice_row: PaymentNotificationRow,
        *,
        read: BookingRow,
    ) -> PaymentOutcome | None:
        """Confirm a booking paid in time; None when its hold was lost (the caller refunds).
        ``read`` is its row as the notice found it (``BookingSteps.confirm``)."""
        booking.paid = True
        booking.status = BookingStatus.CONFIRMED
        booking.confirmed_at = now
        try:
            await self._steps.confirm(
                booking,
                now,
                topic_extra={"paid_online": True, "order_no": notice.order_no},
                order_no=notice.order_no,
                paid_at=notice.paid_at,
                notice=notice_row,
                read=read,
            )
            return PaymentOutcome(booking.id, notice.order_no, "confirmed")
        except ConflictError as exc:
            if exc.code in ("BOOKING_ALREADY_CONFIRMED", "BOOKING_STATE_INVALID"):
                # Another delivery moved the booking first: this one is its replay, or a
                # second notice for an order already paid.
                async with self._p.sessions() as session, session.begin():
                    if (
                        await session.get(PaymentNotificationRow, notice.notification_id)
                        is not None
                    ):
                        refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
                    current = await self._records.booking_row(session, booking.id, None)
                    if current.status != BookingStatus.CONFIRMED.value:
                        raise
                    session.add(
                        PaymentNotificationRow(
                            notification_id=notice.notification_id,
                            order_no=notice.order_no,
                            received_at=now,
                        )
                    )
                return PaymentOutcome(booking.id, notice.order_no, "already_confirmed")
            if exc.code != "HOLD_EXPIRED":
                raise
        return None

    async def _notice_recorded(self, notification_id: str) -> bool:
        async with self._p.sessions() as session:
            return await session.get(PaymentNotificationRow, notification_id) is not None

    async def _refund_late_payment(
        self,
        booking: Booking,
        order_no: str,
        paid_at: datetime,
        now: datetime,
        notice: PaymentNotificationRow,
        *,
        reason: str,
    ) -> str | None:
        """Paid too late (or the unit was lost): keep the money's trail and give it back.

        None when the order was refunded meanwhile (a concurrent settlement got there first):
        the notice is recorded, and no second refund is made.
        """
        async with self._p.sessions() as session, session.begin():
            session.add(notice)
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            if order.status == "refunded":
                return None
            order.status = "paid"
            order.paid_at = paid_at
            row = await self._records.booking_row(session, booking.id, None)
            row.paid = True
            refund_no = self._steps.add_refund(session, order, booking.id, reason, now)
            record_event(
                session,
                "payment.paid_too_late",
                booking.id,
                {
                    "booking_id": booking.id,
                    "account_id": booking.account_id,
                    "order_no": order.order_no,
                    "refund_no": refund_no,
                    "amount_cents": order.amount_cents,
                    "reason": reason,
                },
                now,
            )
        return refund_no

    async def process_refund(self, refund_no: str) -> bool:
        """Ask the gateway to refund; idempotent per refund number, retried by the job queue."""
        async with self._p.sessions() as session:
            refund = await session.get(RefundRow, refund_no)
            # A refund held for a rebooking offer (``on_hold``) or taken back because the money
            # paid for the accepted unit (``cancelled``) is not paid out.
            if refund is None or refund.status in ("succeeded", "on_hold", "cancelled"):
                return False
        try:
            receipt = await self._p.gateway.refund(
                order_no=refund.order_no,
                refund_no=refund.refund_no,
                amount_cents=refund.amount_cents,
                reason=refund.reason,
            )
        except Exception:
            async with self._p.sessions() as session, session.begin():
                row = await session.get(RefundRow, refund_no)
                assert row is not None
                row.attempts += 1
            raise
        async with self._p.sessions() as session, session.begin():
            row = await session.get(RefundRow, refund_no)
            assert row is not None
            row.status = "succeeded"
            owner = await session.get(BookingRow, row.booking_id)
            row.attempts += 1
            row.refunded_at = receipt.refunded_at
            record_event(
                session,
                "payment.refunded",
                row.booking_id,
                {
                    "refund_no": refund_no,
                    "order_no": row.order_no,
                    "amount_cents": row.amount_cents,
                    "booking_id": row.booking_id,
                    "account_id": owner.account_id if owner else None,
                },
                self._p.clock.now(),
            )
        return True

    async def pending_refunds(self) -> list[str]:
        """Refunds not paid out yet (the sweep asks the gateway again for each)."""
        async with self._p.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(RefundRow.refund_no).where(RefundRow.status == "pending")
                    )
                ).all()
            )

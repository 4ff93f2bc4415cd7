"""Payment reconciliation (对账): every order here compared with what the gateway says, and
every difference settled, so that no money is kept without a booking and no booking is
confirmed without money where money was due.

Differences arise whenever a notice cannot do its work: the gateway took the money while the
database was away (the notice got a 503 and the gateway gave up), the booking expired while
the payer was at the cashier, the sandbox gateway's store (Redis) was lost. The notice path
stays the fast path; this is the safety net behind it and the record the health authority
reads.

Two ways in:

- ``reconcile_due`` (a sweep step, every 15 s): the orders not yet found in agreement with the
  gateway, oldest first, a bounded number per round. An order agreed on a final state is
  stamped ``reconciled_at`` and not asked about again.
- ``reconcile_day`` (the daily job, ``guahao payments reconcile``): every order created on one
  business day, stamped or not, then the day's report.

What is settled automatically is only what the platform's own rules decide: money for a
booking that may still be confirmed confirms it (as the notice would have), money for one that
may not is refunded (the citizen is told), an unpaid order the platform has given up is closed
at the gateway, a payable order the gateway lost is opened there again. What no rule decides
(a confirmed booking the gateway never saw paid, an amount that differs) is recorded
unresolved for a person to look at; the daily report lists it until then.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import and_, func, or_, select

from guahao.platform.bookings import BookingStatus
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentChannel
from guahao.platform.persistence.tables import (
    BookingRow,
    PaymentOrderRow,
    PaymentSettlementRow,
    RefundRow,
)
from guahao.platform.ports import GatewayOrder, PaymentNotification
from guahao.platform.services.payment_notices import PaymentNotices
from guahao.platform.services.runtime import Ports

__all__ = [
    "BUSINESS_TIMEZONE",
    "RECONCILE_AFTER",
    "PaymentReconciliation",
    "ReconciliationReport",
    "SettlementView",
]

log = logging.getLogger(__name__)

BUSINESS_TIMEZONE: Final = ZoneInfo("Asia/Shanghai")
"""The zone of the report's day: gateways in China close their bills (对账单) on Beijing time."""

RECONCILE_AFTER: Final = timedelta(seconds=60)
"""An order younger than this is left to its notice: comparing it earlier only races the
normal path."""

_NOT_PAID: Final = frozenset({"created", "expired", "closed"})
_CONFIRMED: Final = frozenset(
    {
        BookingStatus.CONFIRMED.value,
        BookingStatus.CHECKED_IN.value,
        BookingStatus.NO_SHOW.value,
    }
)


class SettlementView(msgspec.Struct, frozen=True, rename="camel"):
    """One difference found and what was done about it."""

    order_no: str
    booking_id: str
    found_at: datetime
    platform_status: str
    """The order's status here when the difference was found."""
    gateway_status: str
    """What the gateway said (``missing`` when it did not know the order)."""
    action: str
    """``confirmed``, ``refunded``, ``closed``, ``reopened`` or ``flagged`` (unresolved: a
    person must look)."""
    amount_cents: int
    resolved: bool
    refund_no: str | None = None


class ReconciliationReport(msgspec.Struct, frozen=True, rename="camel"):
    """One business day's reconciliation, as the health authority reads it."""

    day: date
    timezone: str
    generated_at: datetime
    orders: int
    """Orders created on the day."""
    orders_by_status: dict[str, int]
    paid_cents: int
    """Money taken on the day for orders that are paid or were refunded."""
    refunded_cents: int
    """Refunds paid out on the day."""
    refunds_pending: int
    """Refunds not yet paid out, whatever their day (retried every sweep)."""
    unreconciled: int
    """Orders of the day not yet found in agreement with the gateway."""
    settlements: list[SettlementView]
    """Differences found in the day's orders (whenever they were found)."""
    unresolved: list[SettlementView]
    """Differences, of any day, that no rule could settle."""


class PaymentReconciliation:
    """Compares orders with the gateway and settles the differences (see the module)."""

    def __init__(self, ports: Ports, payments: PaymentNotices) -> None:
        self._p = ports
        self._payments = payments
        self._resume_after: tuple[datetime, str] | None = None

    async def reconcile_due(self, limit: int = 200) -> int:
        """Sweep step: compare the orders not yet agreed; returns how many were settled.

        Rounds walk through the open orders oldest first, each round from where the last one
        stopped (wrapping around at the end), so a crowd of orders still being paid cannot
        keep the same first ``limit`` in front of the others for ever.
        """
        now = self._p.clock.now()
        query = (
            select(PaymentOrderRow.order_no, PaymentOrderRow.created_at)
            .where(
                PaymentOrderRow.reconciled_at.is_(None),
                PaymentOrderRow.created_at <= now - RECONCILE_AFTER,
            )
            .order_by(PaymentOrderRow.created_at, PaymentOrderRow.order_no)
            .limit(limit)
        )
        if self._resume_after is not None:
            at, order_no = self._resume_after
            query = query.where(
                or_(
                    PaymentOrderRow.created_at > at,
                    and_(PaymentOrderRow.created_at == at, PaymentOrderRow.order_no > order_no),
                )
            )
        async with self._p.sessions() as session:
            rows = (await session.execute(query)).all()
        last = rows[-1] if len(rows) == limit else None
        self._resume_after = None if last is None else (last.created_at, last.order_no)
        return await self._compare_all([row.order_no for row in rows])

    async def reconcile_day(self, day: date) -> ReconciliationReport:
        """Compare every order created on ``day`` (Beijing time), then report the day."""
        start, end = _day_bounds(day)
        async with self._p.sessions() as session:
            order_nos = list(
                (
                    await session.scalars(
                        select(PaymentOrderRow.order_no)
                        .where(
                            PaymentOrderRow.created_at >= start, PaymentOrderRow.created_at < end
                        )
                        .order_by(PaymentOrderRow.created_at)
                    )
                ).all()
            )
        await self._compare_all(order_nos)
        return await self.report(day)

    async def report(self, day: date) -> ReconciliationReport:
        """The day's figures and differences as recorded (nothing is asked of the gateway)."""
        start, end = _day_bounds(day)
        in_day = (PaymentOrderRow.created_at >= start, PaymentOrderRow.created_at < end)
        async with self._p.sessions() as session:
            by_status = {
                status: count
                for status, count in (
                    await session.execute(
                        select(PaymentOrderRow.status, func.count())
                        .where(*in_day)
                        .group_by(PaymentOrderRow.status)
                    )
                ).all()
            }
            paid = await session.scalar(
                select(func.coalesce(func.sum(PaymentOrderRow.amount_cents), 0)).where(
                    PaymentOrderRow.paid_at >= start,
                    PaymentOrderRow.paid_at < end,
                    PaymentOrderRow.status.in_(("paid", "refunded")),
                )
            )
            refunded = await session.scalar(
                select(func.coalesce(func.sum(RefundRow.amount_cents), 0)).where(
                    RefundRow.status == "succeeded",
                    RefundRow.refunded_at >= start,
                    RefundRow.refunded_at < end,
                )
            )
            pending = await session.scalar(
                select(func.count()).select_from(RefundRow).where(RefundRow.status == "pending")
            )
            unreconciled = await session.scalar(
                select(func.count())
                .select_from(PaymentOrderRow)
                .where(*in_day, PaymentOrderRow.reconciled_at.is_(None))
            )
            of_the_day = (
                await session.scalars(
                    select(PaymentSettlementRow)
                    .join(
                        PaymentOrderRow, PaymentOrderRow.order_no == PaymentSettlementRow.order_no
                    )
                    .where(*in_day)
                    .order_by(PaymentSettlementRow.id)
                )
            ).all()
            open_ones = (
                await session.scalars(
                    select(PaymentSettlementRow)
                    .where(PaymentSettlementRow.resolved.is_(False))
                    .order_by(PaymentSettlementRow.id)
                )
            ).all()
        return ReconciliationReport(
            day=day,
            timezone=str(BUSINESS_TIMEZONE),
            generated_at=self._p.clock.now(),
            orders=sum(by_status.values()),
            orders_by_status=dict(sorted(by_status.items())),
            paid_cents=int(paid or 0),
            refunded_cents=int(refunded or 0),
            refunds_pending=int(pending or 0),
            unreconciled=int(unreconciled or 0),
            settlements=[_view(row) for row in of_the_day],
            unresolved=[_view(row) for row in open_ones],
        )

    def business_day(self, instant: datetime | None = None) -> date:
        """The Beijing-time day of ``instant`` (now by default)."""
        return (instant or self._p.clock.now()).astimezone(BUSINESS_TIMEZONE).date()

    async def _compare_all(self, order_nos: list[str]) -> int:
        settled = 0
        for order_no in order_nos:
            try:
                settled += await self.compare(order_no)
            except GuahaoError as exc:
                if exc.code == "PAYMENT_GATEWAY_UNAVAILABLE":
                    # The gateway cannot answer: nothing more can be compared this round.
                    log.warning("reconciliation stopped at %s: gateway unavailable", order_no)
                    break
                # One order refused (paid while being closed, say): the next round sees it
                # in its new state; the others must not wait for it.
                log.warning("order %s not reconciled this round: %s", order_no, exc.code)
        return settled

    async def compare(self, order_no: str) -> bool:
        """Compare one order with the gateway and settle any difference; True if one was."""
        async with self._p.sessions() as session:
            order = await session.get(PaymentOrderRow, order_no)
            if order is None:
                return False
            booking = await session.get(BookingRow, order.booking_id)
            booking_status = booking.status if booking is not None else ""
            status, amount = order.status, order.amount_cents
            order_expires = order.expires_at
            pending_refunds = list(
                (
                    await session.scalars(
                        select(RefundRow.refund_no).where(
                            RefundRow.order_no == order_no, RefundRow.status == "pending"
                        )
                    )
                ).all()
            )
        gateway = await self._gateway_order(order_no)
        now = self._p.clock.now()
        if gateway is None:
            return await self._missing_at_gateway(
                order_no, status, booking_status, order_expires, now
            )
        if gateway.amount_cents != amount:
            return await self._flag(order_no, status, gateway.status, "flagged", now)
        if gateway.status == "paid":
            if status in _NOT_PAID:
                return await self._settle_money(order_no, status, gateway, now)
            if status == "paid" and booking_status in _CONFIRMED:
                return await self._agreed(order_no, now)
            if status == "refunded" and pending_refunds:
                return await self._pay_refunds(pending_refunds)
            return await self._flag(order_no, status, gateway.status, "flagged", now)
        if gateway.status in ("refunded", "partially_refunded"):
            if status != "refunded":
                return await self._flag(order_no, status, gateway.status, "flagged", now)
            if pending_refunds:
                return await self._pay_refunds(pending_refunds)
            if gateway.status == "refunded":
                return await self._agreed(order_no, now)
            return await self._flag(order_no, status, gateway.status, "flagged", now)
        # Unpaid at the gateway: created (still payable) or closed.
        if status in ("paid", "refunded"):
            # Confirmed (or refunded) here, never paid there: only a person can say why.
            return await self._flag(order_no, status, gateway.status, "flagged", now)
        awaiting = booking_status == BookingStatus.AWAITING_PAYMENT.value
        if gateway.status == "created":
            if awaiting or status == "created":
                return False  # still payable, still wanted: the notice path has it
            await self._p.gateway.close_order(order_no=order_no)
            await self._record(order_no, status, gateway.status, "closed", now, reconciled=True)
            return True
        if awaiting:
            return False  # closed there; the booking's expiry will follow
        async with self._p.sessions() as session, session.begin():
            row = await session.get(PaymentOrderRow, order_no)
            assert row is not None
            if row.status == "created":
                row.status = "closed"
            row.reconciled_at = now
        return False

    async def _gateway_order(self, order_no: str) -> GatewayOrder | None:
        try:
            return await self._p.gateway.query_order(order_no)
        except GuahaoError as exc:
            if exc.code == "PAYMENT_ORDER_NOT_FOUND":
                return None
            raise

    async def _missing_at_gateway(
        self,
        order_no: str,
        status: str,
        booking_status: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """The gateway does not know the order (its store was lost, or it purged it)."""
        if status in ("paid", "refunded"):
            return await self._flag(order_no, status, "missing", "flagged", now)
        if (
            status == "created"
            and booking_status == BookingStatus.AWAITING_PAYMENT.value
            and expires_at > now
        ):
            # The citizen is still to pay: open the same order again, same number, amount and
            # end, so the cashier link they have keeps working.
            async with self._p.sessions() as session:
                order = await session.get(PaymentOrderRow, order_no)
                assert order is not None
                amount, booking_id = order.amount_cents, order.booking_id
            intent = await self._p.gateway.create_order(
                order_no=order_no,
                amount_cents=amount,
                description=f"挂号费 booking {booking_id}",
                expires_at=expires_at,
            )
            async with self._p.sessions() as session, session.begin():
                order = await session.get(PaymentOrderRow, order_no)
                assert order is not None
                order.gateway_trade_no = intent.gateway_trade_no
            await self._record(order_no, status, "missing", "reopened", now, reconciled=False)
            return True
        if booking_status == BookingStatus.AWAITING_PAYMENT.value:
            return False  # its expiry will close it here
        async with self._p.sessions() as session, session.begin():
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            if order.status == "created":
                order.status = "closed"
            order.reconciled_at = now
        return False

    async def _settle_money(
        self, order_no: str, status: str, gateway: GatewayOrder, now: datetime
    ) -> bool:
        """Money taken that no notice settled: the same rules as a notice, which confirm the
        booking if it may still be and otherwise refund (and tell the citizen)."""
        async with self._p.sessions() as session:
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            channel: PaymentChannel = "insurance" if order.channel == "insurance" else "self_pay"
        notice = PaymentNotification(
            notification_id=f"RECON-{order_no}",
            order_no=order_no,
            gateway_trade_no=gateway.gateway_trade_no,
            amount_cents=gateway.amount_cents,
            channel=channel,
            paid_at=gateway.paid_at or now,
        )
        try:
            outcome = await self._payments.settle_paid(notice, now)
        except GuahaoError as exc:
            if exc.code != "PAYMENT_CALLBACK_REPLAYED":
                raise
            return False  # settled by an earlier round; the next compare sees its result
        action = "confirmed" if outcome.result == "confirmed" else "refunded"
        if outcome.result == "already_confirmed":
            action = "confirmed"
        refund_no = None
        if action == "refunded":
            async with self._p.sessions() as session:
                refund_no = await session.scalar(
                    select(RefundRow.refund_no)
                    .where(RefundRow.order_no == order_no)
                    .order_by(RefundRow.created_at.desc())
                    .limit(1)
                )
        log.warning(
            "reconciliation: order %s was paid at the gateway but %s here: %s",
            order_no,
            status,
            action,
        )
        await self._record(
            order_no, status, gateway.status, action, now, reconciled=False, refund_no=refund_no
        )
        return True

    async def _pay_refunds(self, refund_nos: list[str]) -> bool:
        """Refunds recorded here and not yet confirmed paid: ask the gateway again (idempotent
        per refund number, so one already made there only has its receipt fetched)."""
        paid = 0
        for refund_no in refund_nos:
            try:
                paid += await self._payments.process_refund(refund_no)
            except GuahaoError as exc:
                log.warning("refund %s not paid yet (%s); retried next round", refund_no, exc.code)
        return paid > 0

    async def _agreed(self, order_no: str, now: datetime) -> bool:
        async with self._p.sessions() as session, session.begin():
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            order.reconciled_at = now
        return False

    async def _flag(
        self, order_no: str, status: str, gateway_status: str, action: str, now: datetime
    ) -> bool:
        """Record a difference no rule settles, once: a day checked again does not repeat it."""
        async with self._p.sessions() as session:
            known = await session.scalar(
                select(PaymentSettlementRow.id).where(
                    PaymentSettlementRow.order_no == order_no,
                    PaymentSettlementRow.resolved.is_(False),
                    PaymentSettlementRow.platform_status == status,
                    PaymentSettlementRow.gateway_status == gateway_status,
                )
            )
        if known is not None:
            return False
        log.error(
            "reconciliation: order %s is %s here and %s at the gateway; needs a person",
            order_no,
            status,
            gateway_status,
        )
        await self._record(order_no, status, gateway_status, action, now, reconciled=True)
        return True

    async def _record(
        self,
        order_no: str,
        status: str,
        gateway_status: str,
        action: str,
        now: datetime,
        *,
        reconciled: bool,
        refund_no: str | None = None,
    ) -> None:
        """Keep the difference for the report; a flagged order is stamped so that it is
        reported once, not every round."""
        async with self._p.sessions() as session, session.begin():
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            if reconciled:
                order.reconciled_at = now
            session.add(
                PaymentSettlementRow(
                    order_no=order_no,
                    booking_id=order.booking_id,
                    found_at=now,
                    platform_status=status,
                    gateway_status=gateway_status,
                    action=action,
                    amount_cents=order.amount_cents,
                    refund_no=refund_no,
                    resolved=action != "flagged",
                )
            )


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=BUSINESS_TIMEZONE)
    return start, start + timedelta(days=1)


def _view(row: PaymentSettlementRow) -> SettlementView:
    return SettlementView(
        order_no=row.order_no,
        booking_id=row.booking_id,
        found_at=row.found_at,
        platform_status=row.platform_status,
        gateway_status=row.gateway_status,
        action=row.action,
        amount_cents=row.amount_cents,
        resolved=row.resolved,
        refund_no=row.refund_no,
    )

"""候补预付: the fee a patient pays in advance when joining a wait, held by the platform.

Where a hospital takes payment online, a wait is joined with the fee paid up front (as 12306
does for train tickets): the platform opens a gateway order for the most the wait can cost
(the highest fee among the units it covers) and serves the wait only once it is paid. A grant
then books *and confirms* at once with that money, with no payment step left to the patient
(who may be asleep); any difference between what was paid and the unit's fee goes back. A wait
that ends unserved (time up, left, banned, session stopped) is refunded in full.

The money has one record of its own (``wait_prepayments``, keyed by the wait), beside the
gateway's order of the same number. When the wait is served the order also becomes the
booking's payment order (``payment_orders``), so a later 退号 or 停诊 refunds it the way every
paid booking is refunded. Every step is idempotent: a refund's number is derived from the
wait, so a repeated delivery of an event asks the gateway for the same refund, which the
gateway answers with the same receipt.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import date, datetime

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_order_no
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    HospitalRow,
    PaymentNotificationRow,
    PaymentOrderRow,
    SessionRow,
    WaitlistEntryRow,
    WaitPrepaymentRow,
)
from guahao.platform.ports import PaymentNotification
from guahao.platform.services.runtime import Ports
from guahao.platform.waitlist import WaitlistRules, local_deadline, out_of_quiet_hours

__all__ = ["ENDING_TOPICS", "Prepayment", "WaitPrepayments", "view_of"]

log = logging.getLogger(__name__)

ENDING_TOPICS = frozenset(
    {"waitlist.left", "waitlist.expired", "waitlist.removed", "waitlist.ended"}
)
"""The events of a wait that ended unserved: its prepayment is refunded in full."""

PREPAYMENT_PREFIX = "WP"
"""What every prepayment's order number starts with (a booking's: ``GH``). Stored in every
order number, at the gateway and here: never to change."""


class Prepayment(msgspec.Struct, frozen=True, rename="camel"):
    """A wait's prepayment as its patient sees it."""

    order_no: str
    amount_cents: int
    status: str
    pay_url: str
    pay_by: str
    """The payment deadline in the hospital's wall time, with the date."""
    applied_cents: int
    refunded_cents: int


def view_of(row: WaitPrepaymentRow, zone: str) -> Prepayment:
    """The patient's view of a prepayment row."""
    return Prepayment(
        order_no=row.order_no,
        amount_cents=row.amount_cents,
        status=row.status,
        pay_url=row.pay_url,
        pay_by=local_deadline(row.expires_at, zone),
        applied_cents=row.applied_cents,
        refunded_cents=row.refunded_cents,
    )


def _refund_no(entry_id: str) -> str:
    """One refund per wait, whatever ends it and however often (the gateway dedupes by it)."""
    return f"RW{entry_id}"


class WaitPrepayments:
    """Opens, takes, applies and refunds the prepayments of waits (see the module docstring)."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    # ------------------------------------------------------------------ joining

    async def amount_for(
        self,
        session: AsyncSession,
        *,
        session_id: str | None,
        department_id: str,
        doctor_id: str | None,
        date_from: date,
        date_to: date,
    ) -> int:
        """The most a wait can cost: the highest fee among the sessions it covers (or, before
        any is published in its dates, among the doctor's or department's sessions)."""
        if session_id is not None:
            sess = await session.get(SessionRow, session_id)
            return sess.fee_cents if sess is not None else 0
        query = select(func.max(SessionRow.fee_cents)).where(
            SessionRow.department_id == department_id
        )
        if doctor_id is not None:
            query = query.where(SessionRow.doctor_id == doctor_id)
        in_dates = await session.scalar(
            query.where(SessionRow.date >= date_from, SessionRow.date <= date_to)
        )
        if in_dates is not None:
            return int(in_dates)
        return int(await session.scalar(query) or 0)

    async def open_order(
        self,
        *,
        account_id: str,
        amount_cents: int,
        hospital: HospitalRow,
        waitlist: WaitlistRules,
        now: datetime,
    ) -> WaitPrepaymentRow:
        """Open the gateway order of a new wait's prepayment; the caller adds the returned row
        in the transaction that creates the wait (and closes the order if that fails). Its
        deadline never ends in the hospital's quiet hours."""
        expires_at = out_of_quiet_hours(
            now,
            waitlist.prepay_minutes,
            zone=hospital.timezone,
            quiet_start=waitlist.quiet_hours_start,
            quiet_end=waitlist.quiet_hours_end,
        )
        order_no = new_order_no(now, prefix=PREPAYMENT_PREFIX)
        intent = await self._p.gateway.create_order(
            order_no=order_no,
            amount_cents=amount_cents,
            description="候补预付 waitlist prepayment",
            expires_at=expires_at,
        )
        return WaitPrepaymentRow(
            order_no=order_no,
            account_id=account_id,
            amount_cents=amount_cents,
            channel="self_pay",
            status="created",
            pay_url=intent.pay_url,
            gateway_trade_no=intent.gateway_trade_no,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )

    async def close_order(self, order_no: str) -> None:
        """Stop an order that no wait was recorded for from taking money."""
        with contextlib.suppress(Exception):
            await self._p.gateway.close_order(order_no=order_no)

    # ------------------------------------------------------------------ paying

    async def owns(self, order_no: str) -> bool:
        """Whether this gateway order is a wait's prepayment (not a booking's order).

        Only an order numbered with ``PREPAYMENT_PREFIX`` can be: a booking's order
        is answered without a read (every payment made one, bench/profiles/flow2-*)."""
        if not order_no.startswith(PREPAYMENT_PREFIX):
            return False
        async with self._p.sessions() as session:
            found = await session.scalar(
                select(WaitPrepaymentRow.entry_id).where(WaitPrepaymentRow.order_no == order_no)
            )
        return found is not None

    async def take_notice(self, notice: PaymentNotification) -> tuple[str, str]:
        """A verified payment notice for a prepayment: the wait may now be served; paid after
        its deadline or after the wait ended, the money goes straight back.

        Returns (the wait's booking id or "", the outcome: ``prepaid``, ``already_prepaid``
        or ``refunded_late_payment``)."""
        now = self._p.clock.now()
        refund = False
        try:
            async with self._p.sessions() as session, session.begin():
                if await session.get(PaymentNotificationRow, notice.notification_id) is not None:
                    refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
                row = await session.scalar(
                    select(WaitPrepaymentRow)
                    .where(WaitPrepaymentRow.order_no == notice.order_no)
                    .with_for_update()
                )
                if row is None:
                    refuse("PAYMENT_ORDER_NOT_FOUND", order_no=notice.order_no)
                if notice.amount_cents != row.amount_cents:
                    refuse(
                        "PAYMENT_AMOUNT_MISMATCH",
                        order_no=row.order_no,
                        paid=notice.amount_cents,
                        expected=row.amount_cents,
                    )
                session.add(
                    PaymentNotificationRow(
                        notification_id=notice.notification_id,
                        order_no=notice.order_no,
                        received_at=now,
                    )
                )
                entry = await session.get(WaitlistEntryRow, row.entry_id)
                assert entry is not None
                if row.status != "created":
                    return row.booking_id or "", "already_prepaid"
                row.paid_at = notice.paid_at
                row.channel = notice.channel
                row.updated_at = now
                if entry.status == "waiting" and notice.paid_at < row.expires_at:
                    row.status = "paid"
                    record_event(
                        session,
                        "waitlist.prepaid",
                        entry.id,
                        {
                            "entry_id": entry.id,
                            "account_id": entry.account_id,
                            "amount_cents": row.amount_cents,
                            "order_no": row.order_no,
                        },
                        now,
                    )
                    return "", "prepaid"
                self._decide_refund(session, row, entry, now, reason="paid_after_wait_ended")
                refund = True
        except IntegrityError:
            refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
        if refund:
            await self.pay_out(row.entry_id)
        return "", "refunded_late_payment"

    # ------------------------------------------------------------------ serving

    async def paid_for(self, entry_ids: list[str]) -> dict[str, WaitPrepaymentRow]:
        """The prepayments of these waits (any status), by wait."""
        if not entry_ids:
            return {}
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(WaitPrepaymentRow).where(WaitPrepaymentRow.entry_id.in_(entry_ids))
                )
            ).all()
        return {r.entry_id: r for r in rows}

    async def apply(
        self, session: AsyncSession, *, entry_id: str, booking_id: str, fee_cents: int
    ) -> WaitPrepaymentRow:
        """Inside the confirming transaction: the prepayment becomes the booking's payment
        (a paid ``payment_orders`` row of the same number, for the booking's own refunds
        later) and any difference is decided for refund (paid out by ``pay_out``)."""
        now = self._p.clock.now()
        row = await session.get(WaitPrepaymentRow, entry_id)
        if row is None or row.status != "paid" or row.amount_cents < fee_cents:
            refuse("BOOKING_STATE_INVALID", booking_id=booking_id, reason="prepayment_not_paid")
        row.status = "applied"
        row.booking_id = booking_id
        row.applied_cents = fee_cents
        row.updated_at = now
        if row.amount_cents > fee_cents:
            row.refunded_cents = row.amount_cents - fee_cents
            row.refund_no = _refund_no(entry_id)
        session.add(
            PaymentOrderRow(
                order_no=row.order_no,
                booking_id=booking_id,
                amount_cents=fee_cents,
                channel=row.channel,
                status="paid",
                pay_url=row.pay_url,
                gateway_trade_no=row.gateway_trade_no,
                expires_at=row.expires_at,
                created_at=row.created_at,
                paid_at=row.paid_at,
            )
        )
        return row

    # ------------------------------------------------------------------ ending

    async def on_wait_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``waitlist.``): a wait that ended unserved gives its money back
        (or, not paid yet, its order is closed)."""
        if event.topic in ENDING_TOPICS:
            await self.refund_unserved(event.aggregate_id)

    async def refund_unserved(self, entry_id: str) -> bool:
        """Refund a wait's prepayment in full (close its order if unpaid). Safe to repeat.
        Returns whether money is (or was already) on its way back."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(WaitPrepaymentRow, entry_id, with_for_update=True)
            entry = await session.get(WaitlistEntryRow, entry_id)
            if row is None or entry is None or entry.status in ("waiting", "fulfilled"):
                return False
            if row.status == "created":
                row.status = "closed"
                row.updated_at = now
                order_no: str | None = row.order_no
            elif row.status == "paid":
                self._decide_refund(session, row, entry, now, reason=entry.end_reason or "ended")
                order_no = None
            else:
                return row.status == "refunded"
        if order_no is not None:
            await self.close_order(order_no)
            return False
        await self.pay_out(entry_id)
        return True

    def _decide_refund(
        self,
        session: AsyncSession,
        row: WaitPrepaymentRow,
        entry: WaitlistEntryRow,
        now: datetime,
        *,
        reason: str,
    ) -> None:
        row.status = "refunded"
        row.refunded_cents = row.amount_cents
        row.refund_no = _refund_no(row.entry_id)
        row.updated_at = now
        record_event(
            session,
            "waitlist.prepayment_refunded",
            entry.id,
            {
                "entry_id": entry.id,
                "account_id": entry.account_id,
                "amount_cents": row.amount_cents,
                "amount": f"{row.amount_cents / 100:.2f}",
                "order_no": row.order_no,
                "reason": reason,
            },
            now,
        )

    async def pay_out(self, entry_id: str) -> bool:
        """Ask the gateway for a decided refund (whole or the difference); idempotent per
        refund number. A failure leaves it for ``pay_out_due``."""
        async with self._p.sessions() as session:
            row = await session.get(WaitPrepaymentRow, entry_id)
            if row is None or row.refund_no is None or row.refunded_at is not None:
                return False
            refund_no, order_no, amount = row.refund_no, row.order_no, row.refunded_cents
        try:
            receipt = await self._p.gateway.refund(
                order_no=order_no, refund_no=refund_no, amount_cents=amount, reason="waitlist"
            )
        except Exception:
            log.warning("prepayment refund %s not paid out yet", refund_no, exc_info=True)
            return False
        async with self._p.sessions() as session, session.begin():
            row = await session.get(WaitPrepaymentRow, entry_id)
            assert row is not None
            row.refunded_at = receipt.refunded_at
        return True

    async def pay_out_due(self, limit: int = 200) -> int:
        """Sweep: refunds decided but not acknowledged by the gateway; unpaid prepayments past
        their deadline end their wait (``expired``, never a strike: no booking was made)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            owed = (
                await session.scalars(
                    select(WaitPrepaymentRow.entry_id)
                    .where(
                        WaitPrepaymentRow.refund_no.is_not(None),
                        WaitPrepaymentRow.refunded_at.is_(None),
                    )
                    .limit(limit)
                )
            ).all()
        paid = 0
        for entry_id in owed:
            paid += await self.pay_out(entry_id)
        await self._end_unpaid(now, limit)
        return paid

    async def _end_unpaid(self, now: datetime, limit: int) -> None:
        async with self._p.sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(WaitPrepaymentRow, WaitlistEntryRow)
                    .join(WaitlistEntryRow, WaitlistEntryRow.id == WaitPrepaymentRow.entry_id)
                    .where(
                        WaitPrepaymentRow.status == "created",
                        WaitPrepaymentRow.expires_at <= now,
                        WaitlistEntryRow.status == "waiting",
                    )
                    .limit(limit)
                )
            ).all()
            for prepayment, entry in rows:
                entry.status = "expired"
                entry.end_reason = "prepayment_not_paid"
                entry.updated_at = now
                record_event(
                    session,
                    "waitlist.expired",
                    entry.id,
                    {
                        "entry_id": entry.id,
                        "account_id": entry.account_id,
                        "reason": "prepayment_not_paid",
                        "order_no": prepayment.order_no,
                    },
                    now,
                )

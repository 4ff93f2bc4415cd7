"""The booking flow as commands: hold → choose patient → submit/pay → confirmed → end.

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
import random
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import ConflictError
from guahao.platform.hospitals import HospitalPolicies, PaymentChannel
from guahao.platform.ids import new_id, new_order_no
from guahao.platform.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    PatientRow,
    PaymentNotificationRow,
    PaymentOrderRow,
    RefundRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.inventory_sync import PAYMENT_GRACE, InventorySync
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = ["PAYMENT_GRACE", "BookingService", "PaymentOutcome"]

log = logging.getLogger(__name__)


class PaymentOutcome(msgspec.Struct, frozen=True, rename="camel"):
    """What a payment notice did."""

    booking_id: str
    order_no: str
    result: str  # "confirmed" | "already_confirmed" | "refunded_late_payment"


def _to_domain(row: BookingRow) -> Booking:
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


def _apply(row: BookingRow, booking: Booking, now: datetime) -> None:
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


def _event(booking: Booking, **extra: Any) -> dict[str, Any]:
    return {
        "booking_id": booking.id,
        "account_id": booking.account_id,
        "slot_id": booking.slot_id,
        "session_id": booking.session_id,
        "patient_id": booking.patient_id,
        "status": booking.status.value,
        **extra,
    }


class BookingService:
    """Commands of the citizen's booking journey and its automatic ends."""

    def __init__(self, ports: Ports, inventory_sync: InventorySync) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._facts_loading: dict[str, asyncio.Future[SlotFacts]] = {}

    # ----------------------------------------------------------------- lookups

    async def slot_facts(self, slot_id: str) -> SlotFacts:
        """The slot's immutable facts, from the process cache or SQL once.

        Concurrent misses of one slot share a single read: at release time the whole crowd
        arrives on a cold cache together, and must not each query SQL.
        """
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
        self._p.slot_facts.put(facts)
        return facts

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
            return _to_domain(await self._booking_row(session, booking_id, account_id))

    # ----------------------------------------------------------------- hold

    async def hold(self, *, account_id: str, slot_id: str, idempotency_key: str) -> Booking:
        """锁号: reserve one unit for this account for the hospital's hold time."""
        if not idempotency_key or len(idempotency_key) > 100:
            refuse("VALIDATION_FAILED", field="idempotency_key")
        facts = await self.slot_facts(slot_id)
        now = self._p.clock.now()
        if now >= facts.starts_at:
            refuse("SLOT_IN_PAST", slot_id=slot_id)
        ttl_ms = facts.policies.hold_minutes * 60_000
        booking_id = new_id()
        redis_key = f"{account_id}:{idempotency_key}"

        async def attempt() -> Any:
            return await self._p.inventory.hold(
                slot_id,
                hold_id=booking_id,
                account_id=account_id,
                now_ms=to_epoch_ms(now),
                ttl_ms=ttl_ms,
                idempotency_key=redis_key,
            )

        try:
            grant = await attempt()
        except KeyError:
            await self._sync.load_slot(slot_id, only_if_missing=True)
            grant = await attempt()
        if grant.replayed:
            async with self._p.sessions() as session:
                existing = await session.get(BookingRow, grant.hold_id)
                if existing is not None:
                    return _to_domain(existing)
            booking_id = grant.hold_id  # the first attempt died before writing SQL
        expires_at = datetime.fromtimestamp(grant.expires_at_ms / 1000, now.tzinfo)
        booking = Booking(
            id=booking_id,
            account_id=account_id,
            slot_id=slot_id,
            session_id=facts.session_id,
            status=BookingStatus.HELD,
            hold_expires_at=expires_at,
            fee_cents=facts.fee_cents,
        )
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(
                    BookingRow(
                        id=booking.id,
                        account_id=account_id,
                        slot_id=slot_id,
                        session_id=facts.session_id,
                        status=booking.status.value,
                        idempotency_key=idempotency_key,
                        fee_cents=facts.fee_cents,
                        hold_expires_at=expires_at,
                        created_at=now,
                        updated_at=now,
                    )
                )
                record_event(session, "booking.held", booking.id, _event(booking), now)
        except IntegrityError:
            async with self._p.sessions() as session:
                same = await session.scalar(
                    select(BookingRow).where(
                        BookingRow.account_id == account_id,
                        BookingRow.idempotency_key == idempotency_key,
                    )
                )
            if same is not None and same.id == booking.id:
                # A repeat of this request was answered our grant and recorded it first: the
                # hold is ours and recorded, so it must not be given back.
                return _to_domain(same)
            if not grant.replayed:
                # Our own fresh hold cannot be recorded: give it back. A replayed grant is the
                # first request's hold, which that request is recording right now.
                await self._p.inventory.release(
                    slot_id, hold_id=booking.id, account_id=account_id, now_ms=to_epoch_ms(now)
                )
            if same is not None and same.slot_id == slot_id:
                return _to_domain(same)
            refuse("IDEMPOTENCY_KEY_REUSED", idempotency_key=idempotency_key)
        await self._p.jobs.schedule(
            "expire_booking",
            key=f"expire:{booking.id}:held",
            at=expires_at,
            booking_id=booking.id,
        )
        return booking

    # ----------------------------------------------------------------- patient step

    async def choose_patient(self, *, account_id: str, booking_id: str, patient_id: str) -> Booking:
        """选择就诊人: one of the account's own patients, at most one active booking a session."""
        now = self._p.clock.now()
        try:
            async with self._p.sessions() as session, session.begin():
                row = await self._booking_row(session, booking_id, account_id)
                patient = await session.get(PatientRow, patient_id)
                if patient is None:
                    refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
                if patient.account_id != account_id:
                    refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
                booking = _to_domain(row)
                flow.choose_patient(booking, patient_id, now)
                _apply(row, booking, now)
                await session.flush()
                record_event(session, "booking.patient_chosen", booking.id, _event(booking), now)
        except IntegrityError:
            refuse("PATIENT_ALREADY_BOOKED_SESSION", patient_id=patient_id)
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.expire(booking_id)
            raise
        return booking

    async def leave(self, *, account_id: str, booking_id: str) -> Booking:
        """The patient left the flow (went back, closed the page, gave up paying): release now."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self._booking_row(session, booking_id, account_id)
            booking = _to_domain(row)
            flow.abandon(booking, now)
            _apply(row, booking, now)
            record_event(session, "booking.abandoned", booking.id, _event(booking), now)
            order_no = booking.payment_order_no
            if order_no:
                await self._close_order(session, order_no)
        await self._release_unit(booking, now)
        return booking

    # ----------------------------------------------------------------- submit and pay

    async def submit(
        self, *, account_id: str, booking_id: str, channel: PaymentChannel
    ) -> tuple[Booking, PaymentOrderRow | None]:
        """Commit to the chosen patient: confirm now, or open a payment order."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await self._booking_row(session, booking_id, account_id)
            booking = _to_domain(row)
        facts = await self.slot_facts(booking.slot_id)
        required = facts.policies.payment_mode.online_payment_required(channel)
        if required is None:
            refuse(
                "PAYMENT_MODE_UNSUPPORTED",
                channel=channel,
                payment_mode=facts.policies.payment_mode.value,
            )
        required = required and booking.fee_cents > 0
        if not required:
            flow.submit(booking, channel=channel, payment_required=False, now=now)
            await self._confirm(booking, now, topic_extra={"paid_online": False})
            return booking, None
        order_no = new_order_no(now)
        order_expires = now + timedelta(minutes=facts.policies.payment_minutes)
        try:
            flow.submit(
                booking,
                channel=channel,
                payment_required=True,
                now=now,
                order_no=order_no,
                order_expires_at=order_expires,
            )
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.expire(booking_id)
            raise
        try:
            await self._p.inventory.extend(
                booking.slot_id,
                hold_id=booking.id,
                account_id=account_id,
                now_ms=to_epoch_ms(now),
                until_ms=to_epoch_ms(order_expires + PAYMENT_GRACE),
            )
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.expire(booking_id)
            raise
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
                row = await self._booking_row(session, booking_id, account_id)
                if row.status != BookingStatus.PATIENT_CHOSEN.value:
                    refuse("BOOKING_STATE_INVALID", booking_id=booking_id, status=row.status)
                _apply(row, booking, now)
                session.add(order)
                record_event(
                    session,
                    "booking.awaiting_payment",
                    booking.id,
                    _event(booking, order_no=order_no, expires_at=order_expires.isoformat()),
                    now,
                )
        except (ConflictError, StaleDataError) as exc:
            # A concurrent submit opened its own order first: this one must not stay payable.
            with contextlib.suppress(Exception):
                await self._p.gateway.close_order(order_no=order_no)
            if isinstance(exc, StaleDataError):
                refuse("BOOKING_STATE_INVALID", booking_id=booking_id, reason="changed_meanwhile")
            raise
        await self._p.jobs.schedule(
            "expire_booking",
            key=f"expire:{booking.id}:payment",
            at=order_expires + PAYMENT_GRACE,
            booking_id=booking.id,
        )
        return booking, order

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
                _apply(row, booking, now)
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
                    session, "booking.confirmed", booking.id, _event(booking, **topic_extra), now
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

    async def handle_payment_notice(self, headers: dict[str, str], body: bytes) -> PaymentOutcome:
        """A signed notice from the gateway: verify, refuse replays, then book or refund.

        The notice's id is recorded in the same transaction as what the notice did, so a notice
        whose processing failed is not mistaken for a replay when the gateway sends it again.
        """
        now = self._p.clock.now()
        notice = self._p.gateway.verify_notification(headers, body, now=now)
        async with self._p.sessions() as session:
            if await session.get(PaymentNotificationRow, notice.notification_id) is not None:
                refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
            order = await session.get(PaymentOrderRow, notice.order_no)
            if order is None:
                refuse("PAYMENT_ORDER_NOT_FOUND", order_no=notice.order_no)
            if notice.amount_cents != order.amount_cents:
                refuse(
                    "PAYMENT_AMOUNT_MISMATCH",
                    order_no=order.order_no,
                    paid=notice.amount_cents,
                    expected=order.amount_cents,
                )
            booking = _to_domain(await self._booking_row(session, order.booking_id, None))
            order_status = order.status

        def record() -> PaymentNotificationRow:
            return PaymentNotificationRow(
                notification_id=notice.notification_id, order_no=notice.order_no, received_at=now
            )

        try:
            if order_status == "paid" and booking.status is not BookingStatus.AWAITING_PAYMENT:
                async with self._p.sessions() as session, session.begin():
                    session.add(record())
                return PaymentOutcome(booking.id, notice.order_no, "already_confirmed")
            in_time = (
                booking.status is BookingStatus.AWAITING_PAYMENT
                and booking.payment_expires_at is not None
                and notice.paid_at < booking.payment_expires_at
            )
            if in_time:
                booking.paid = True
                booking.status = BookingStatus.CONFIRMED
                booking.confirmed_at = now
                try:
                    await self._confirm(
                        booking,
                        now,
                        topic_extra={"paid_online": True, "order_no": notice.order_no},
                        order_no=notice.order_no,
                        paid_at=notice.paid_at,
                        notice=record(),
                    )
                    return PaymentOutcome(booking.id, notice.order_no, "confirmed")
                except ConflictError as exc:
                    if exc.code in ("BOOKING_ALREADY_CONFIRMED", "BOOKING_STATE_INVALID"):
                        # Another delivery moved the booking first: this one is its replay,
                        # or a second notice for an order already paid.
                        async with self._p.sessions() as session, session.begin():
                            if (
                                await session.get(PaymentNotificationRow, notice.notification_id)
                                is not None
                            ):
                                refuse(
                                    "PAYMENT_CALLBACK_REPLAYED",
                                    notification_id=notice.notification_id,
                                )
                            current = await self._booking_row(session, booking.id, None)
                            if current.status != BookingStatus.CONFIRMED.value:
                                raise
                            session.add(record())
                        return PaymentOutcome(booking.id, notice.order_no, "already_confirmed")
                    if exc.code != "HOLD_EXPIRED":
                        raise
            refund_no = await self._refund_late_payment(
                booking, notice.order_no, notice.paid_at, now, record()
            )
        except IntegrityError:
            refuse("PAYMENT_CALLBACK_REPLAYED", notification_id=notice.notification_id)
        await self._p.jobs.schedule(
            "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
        )
        return PaymentOutcome(booking.id, notice.order_no, "refunded_late_payment")

    async def _refund_late_payment(
        self,
        booking: Booking,
        order_no: str,
        paid_at: datetime,
        now: datetime,
        notice: PaymentNotificationRow,
    ) -> str:
        """Paid too late (or the unit was lost): keep the money's trail and give it back."""
        async with self._p.sessions() as session, session.begin():
            session.add(notice)
            order = await session.get(PaymentOrderRow, order_no)
            assert order is not None
            order.status = "paid"
            order.paid_at = paid_at
            row = await self._booking_row(session, booking.id, None)
            row.paid = True
            refund_no = self._add_refund(session, order, booking.id, "paid_after_expiry", now)
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
                },
                now,
            )
        return refund_no

    # ----------------------------------------------------------------- ends

    async def expire(self, booking_id: str, *, force: bool = False) -> bool:
        """Time ran out: mark the booking expired and give its unit back. Safe to repeat."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(BookingRow, booking_id)
            if row is None or BookingStatus(row.status) not in flow.HOLDING_STATUSES:
                return False
            booking = _to_domain(row)
            if force and now < booking.deadline():
                booking.status = BookingStatus.EXPIRED
                booking.ended_at = now
                booking.end_reason = "hold_lost"
            else:
                if now < booking.deadline() + (
                    PAYMENT_GRACE
                    if booking.status is BookingStatus.AWAITING_PAYMENT
                    else timedelta(0)
                ):
                    return False
                flow.expire(booking, now)
            _apply(row, booking, now)
            record_event(session, "booking.expired", booking.id, _event(booking), now)
            if booking.payment_order_no:
                await self._close_order(session, booking.payment_order_no, status="expired")
        await self._release_unit(booking, now)
        return True

    async def expire_due(self, limit: int = 500) -> int:
        """Sweep: expire every booking whose hold or payment time is up."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            ids = (
                await session.scalars(
                    select(BookingRow.id)
                    .where(
                        BookingRow.status.in_(
                            [BookingStatus.HELD.value, BookingStatus.PATIENT_CHOSEN.value]
                        ),
                        BookingRow.hold_expires_at <= now,
                    )
                    .union(
                        select(BookingRow.id).where(
                            BookingRow.status == BookingStatus.AWAITING_PAYMENT.value,
                            BookingRow.payment_expires_at <= now - PAYMENT_GRACE,
                        )
                    )
                    .limit(limit)
                )
            ).all()
        count = 0
        for booking_id in ids:
            count += await self.expire(booking_id)
        return count

    async def cancel(self, *, account_id: str, booking_id: str) -> Booking:
        """退号: before the hospital's deadline; refund if paid; the unit returns after a
        randomised delay so a cancel-then-rebook hand-over cannot be timed."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            booking = _to_domain(await self._booking_row(session, booking_id, account_id))
        facts = await self.slot_facts(booking.slot_id)
        deadline = facts.policies.cancel.deadline(facts.starts_at, facts.timezone)
        if booking.status in flow.HOLDING_STATUSES:
            return await self.leave(account_id=account_id, booking_id=booking_id)
        flow.cancel_by_patient(booking, deadline=deadline, now=now)
        low, high = facts.policies.cancel_return_delay_seconds
        returns_at = now + timedelta(seconds=random.randint(low, max(low, high)))
        refund_no = await self._end_confirmed(
            booking,
            now,
            topic="booking.cancelled_by_patient",
            refund_reason="patient_cancelled",
            returns_at=returns_at,
            started_from=BookingStatus.CONFIRMED,
        )
        await self._p.inventory.cancel_booked(
            booking.slot_id,
            unit_id=booking.id,
            now_ms=to_epoch_ms(now),
            return_at_ms=to_epoch_ms(returns_at),
        )
        if refund_no:
            await self._p.jobs.schedule(
                "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
            )
        return booking

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
            was_confirmed = row.status == BookingStatus.CONFIRMED.value
            _apply(row, booking, now)
            row.unit_returns_at = returns_at
            if was_confirmed:
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
            record_event(s, topic, booking.id, _event(booking, refund_no=refund_no), now)
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

    async def process_refund(self, refund_no: str) -> bool:
        """Ask the gateway to refund; idempotent per refund number, retried by the job queue."""
        async with self._p.sessions() as session:
            refund = await session.get(RefundRow, refund_no)
            if refund is None or refund.status == "succeeded":
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
        async with self._p.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(RefundRow.refund_no).where(RefundRow.status == "pending")
                    )
                ).all()
            )

    # ----------------------------------------------------------------- hospital side

    async def check_in(self, booking_id: str) -> Booking:
        """签到, reported by the HIS or the hospital."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self._booking_row(session, booking_id, None)
            booking = _to_domain(row)
            flow.check_in(booking, now)
            _apply(row, booking, now)
            record_event(session, "booking.checked_in", booking.id, _event(booking), now)
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
                booking = _to_domain(row)
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
            await self._p.jobs.schedule(
                "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
            )
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
                booking = _to_domain(row)
                flow.mark_no_show(booking, session_end=sess.ends_at, now=now)
                _apply(row, booking, now)
                record_event(session, "booking.no_show", booking.id, _event(booking), now)
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

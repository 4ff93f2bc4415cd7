"""优先改约: after the hospital cancels a booking or stops its session, an offer, not a booking.

The patient the hospital turned away is shown units to move to — the same doctor first, then
the same department, nearest dates first — and accepts one or declines. Nothing is booked for
them without that click. While the offer is open the booking's payment stays with the platform
(its refund is held, ``on_hold``), so an accepted unit is paid with the same money: no refund
then pay again. A cheaper unit gives the difference back; a dearer one is never proposed for a
paid booking (the patient would have to pay again). Declined, or left until it ends, the
refund goes out in full and nothing counts against the patient: no booking was made for them.

The offer's end is ``waitlist.rebooking_offer_hours`` after the cancellation, moved out of the
hospital's quiet hours, and read in its wall time with the date. Where nothing can be proposed
(no free unit in the department's next days) the patient joins the waitlist with the stop
priority instead, as before (``waitlist_events``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import Booking
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import SlotNotLoadedError
from guahao.platform.ids import new_order_no
from guahao.platform.patient_proof import refuse_unless_bookable
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    DoctorRow,
    HospitalRow,
    PatientRow,
    PaymentOrderRow,
    RebookingOfferRow,
    RefundRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.booking_records import BookingRecords
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import GrantOutcome, Recipient, UnitOffers, derived_id
from guahao.platform.services.waitlist_serving import local_today
from guahao.platform.strikes import BookingOrigin
from guahao.platform.waitlist import (
    WaitlistRules,
    local_deadline,
    out_of_quiet_hours,
    waitlist_rules_of,
)

__all__ = ["HELD", "Proposal", "RebookingOfferView", "RebookingOffers"]

log = logging.getLogger(__name__)

HELD = "on_hold"
"""The status of a refund kept while its booking's rebooking offer is open."""

MAX_PROPOSALS = 5


class Proposal(msgspec.Struct, frozen=True, rename="camel"):
    """One unit proposed to the patient."""

    slot_id: str
    session_id: str
    doctor_id: str
    doctor_name: str
    same_doctor: bool
    date: str
    starts_at: str
    """The visit in the hospital's wall time, with the date."""
    fee_cents: int


class RebookingOfferView(msgspec.Struct, frozen=True, rename="camel"):
    """An offer as its patient sees it (``GET /api/v1/rebooking-offers``)."""

    id: str
    cancelled_booking_id: str
    patient_id: str
    status: str
    expires_at: datetime
    answer_by: str
    """The end of the offer in the hospital's wall time, with the date."""
    proposals: list[Proposal]
    accepted_booking_id: str | None


@dataclass(frozen=True)
class _Cancelled:
    booking: BookingRow
    sess: SessionRow
    hospital: HospitalRow
    person_id: str


class RebookingOffers:
    """Proposes, accepts, declines and ends priority rebooking offers (module docstring)."""

    def __init__(
        self,
        ports: Ports,
        records: BookingRecords,
        inventory_sync: InventorySync,
        offers: UnitOffers,
        rules: RuleBook,
    ) -> None:
        self._p = ports
        self._records = records
        self._sync = inventory_sync
        self._offers = offers
        self._rules = rules

    # ------------------------------------------------------------------ the hospital's side

    async def offered(self, booking_id: str) -> bool:
        """Whether the patient of this cancelled booking was made an offer."""
        async with self._p.sessions() as session:
            found = await session.get(RebookingOfferRow, derived_id("rebooking", booking_id))
        return found is not None

    async def propose_in(
        self,
        session: AsyncSession,
        *,
        booking_id: str,
        refund_no: str | None,
        now: datetime,
    ) -> bool:
        """Inside the hospital's cancelling transaction: make the offer (and hold the refund
        for it) when there are units to propose. False when there are none: the caller
        refunds at once as before, and the patient joins the waitlist (``waitlist_events``).
        Deciding here, in the same transaction, leaves no moment in which the refund could
        be paid out or the patient put in a line while an offer is being made."""
        offer_id = derived_id("rebooking", booking_id)
        if await session.get(RebookingOfferRow, offer_id) is not None:
            return True
        found = await self._cancelled(session, booking_id)
        if found is None:
            return False
        waitlist = waitlist_rules_of(await self._rules.for_hospital(found.hospital.id))
        refund = await session.get(RefundRow, refund_no) if refund_no is not None else None
        paid_fee = found.booking.fee_cents if refund is not None else None
        proposals = await self._proposals(found, waitlist, paid_fee, now)
        if not proposals:
            return False
        if refund is not None:
            refund.status = HELD  # kept to pay for the accepted unit
        expires_at = out_of_quiet_hours(
            now,
            waitlist.rebooking_offer_hours * 60,
            zone=found.hospital.timezone,
            quiet_start=waitlist.quiet_hours_start,
            quiet_end=waitlist.quiet_hours_end,
        )
        session.add(
            RebookingOfferRow(
                id=offer_id,
                booking_id=booking_id,
                account_id=found.booking.account_id,
                patient_id=found.booking.patient_id,
                person_id=found.person_id,
                hospital_id=found.hospital.id,
                proposals=proposals,
                status="open",
                expires_at=expires_at,
                created_at=now,
                updated_at=now,
                refund_no=refund_no if refund is not None else None,
            )
        )
        record_event(
            session,
            "rebooking.offered",
            offer_id,
            {
                "offer_id": offer_id,
                "account_id": found.booking.account_id,
                "booking_id": booking_id,
                "answer_by": local_deadline(expires_at, found.hospital.timezone),
                "proposals": len(proposals),
            },
            now,
        )
        return True

    # ------------------------------------------------------------------ the patient's side

    async def offers(self, account_id: str) -> list[RebookingOfferView]:
        """The account's offers, newest first, with their proposals."""
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(RebookingOfferRow)
                    .where(RebookingOfferRow.account_id == account_id)
                    .order_by(RebookingOfferRow.created_at.desc(), RebookingOfferRow.id)
                )
            ).all()
            return [await self._view(session, row) for row in rows]

    async def accept(self, *, account_id: str, offer_id: str, slot_id: str) -> Booking:
        """Take one proposed unit: booked and confirmed with the cancelled booking's payment
        (a cheaper unit refunds the difference); where nothing was paid online, confirmed at
        once or, if the hospital takes payment online, with an order to pay (never a strike)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            offer = await session.get(RebookingOfferRow, offer_id)
            if offer is None or offer.account_id != account_id:
                refuse("REBOOKING_OFFER_NOT_FOUND", offer_id=offer_id)
            if offer.status != "open" or offer.expires_at <= now:
                refuse("REBOOKING_OFFER_CLOSED", offer_id=offer_id, status=offer.status)
            if slot_id not in offer.proposals:
                refuse("REBOOKING_UNIT_NOT_OFFERED", offer_id=offer_id, slot_id=slot_id)
            patient = await session.get(PatientRow, offer.patient_id)
            if patient is None or patient.removed_at is not None:
                refuse("PATIENT_NOT_FOUND", patient_id=offer.patient_id)
            refuse_unless_bookable(patient)
            slot = await session.get(SlotRow, slot_id)
            assert slot is not None
            sess = await session.get(SessionRow, slot.session_id)
            assert sess is not None
            cancelled = await session.get(BookingRow, offer.booking_id)
            assert cancelled is not None
        booking_id = derived_id("rebooking-accepted", offer_id)
        recipient = Recipient(
            entry_id=offer_id,
            account_id=account_id,
            patient_id=offer.patient_id,
            person_id=offer.person_id,
            channel=cancelled.channel or "self_pay",
            kind="waitlist",
            origin=BookingOrigin.PRIORITY_REBOOKING,
        )
        inventory = self._p.inventory

        async def guard(session: AsyncSession, at: datetime) -> bool:
            done = await session.execute(
                update(RebookingOfferRow)
                .where(
                    RebookingOfferRow.id == offer_id,
                    RebookingOfferRow.status == "open",
                    RebookingOfferRow.expires_at > at,
                )
                .values(status="accepted", updated_at=at)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

        async def link(session: AsyncSession, new_id: str) -> None:
            await session.execute(
                update(RebookingOfferRow)
                .where(RebookingOfferRow.id == offer_id)
                .values(accepted_booking_id=new_id)
            )

        async def claim(expires_ms: int) -> None:
            now_ms = to_epoch_ms(now)
            await self._sync.with_slot_loaded(
                slot_id,
                partial(
                    inventory.offer_hold,
                    slot_id,
                    hold_id=booking_id,
                    account_id=account_id,
                    now_ms=now_ms,
                    ttl_ms=expires_ms - now_ms,
                    idempotency_key=f"rebooking:{offer_id}",
                ),
            )

        async def undo() -> None:
            await inventory.release(
                slot_id,
                hold_id=booking_id,
                account_id=account_id,
                now_ms=to_epoch_ms(self._p.clock.now()),
            )

        try:
            outcome, refusal = await self._offers.grant(
                recipient,
                sess=sess,
                slot_id=slot_id,
                booking_id=booking_id,
                guard=guard,
                link=link,
                claim=claim,
                undo=undo,
                event=("rebooking.accepted", {"offer_id": offer_id, "source": "rebooking"}),
            )
        except SlotNotLoadedError:
            outcome, refusal = GrantOutcome.UNIT_GONE, None
        if outcome is GrantOutcome.NOT_WAITING:
            refuse("REBOOKING_OFFER_CLOSED", offer_id=offer_id, status="answered")
        if outcome is GrantOutcome.UNIT_GONE:
            refuse("REBOOKING_UNIT_GONE", offer_id=offer_id, slot_id=slot_id)
        if outcome is GrantOutcome.INELIGIBLE:
            if refusal is not None:
                raise refusal
            refuse("REBOOKING_UNIT_GONE", offer_id=offer_id, slot_id=slot_id)
        await self._complete(offer_id, booking_id, sess.hospital_id)
        found = await self._records.get(booking_id)
        assert found is not None
        return found

    async def decline(self, *, account_id: str, offer_id: str) -> RebookingOfferView:
        """No thank you: the offer ends and the payment is refunded in full."""
        await self._end(offer_id, "declined", account_id=account_id)
        async with self._p.sessions() as session:
            row = await session.get(RebookingOfferRow, offer_id)
            assert row is not None
            return await self._view(session, row)

    async def end_due(self, limit: int = 200) -> int:
        """Sweep: offers past their end expire (refunded in full, no strike); accepted offers
        whose completion was interrupted are completed."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            due = (
                await session.scalars(
                    select(RebookingOfferRow.id)
                    .where(RebookingOfferRow.status == "open", RebookingOfferRow.expires_at <= now)
                    .limit(limit)
                )
            ).all()
        for offer_id in due:
            await self._end(offer_id, "expired")
        return len(due)

    # ------------------------------------------------------------------ the steps

    async def _complete(self, offer_id: str, booking_id: str, hospital_id: str) -> None:
        waitlist = waitlist_rules_of(await self._rules.for_hospital(hospital_id))
        async with self._p.sessions() as session:
            offer = await session.get(RebookingOfferRow, offer_id)
            assert offer is not None
            refund_no = offer.refund_no
        if refund_no is None:
            await self._offers.complete(
                booking_id,
                payment_minutes=waitlist.offer_payment_minutes,
                quiet_hours=(waitlist.quiet_hours_start, waitlist.quiet_hours_end),
            )
            return
        difference: list[str] = []

        async def pay(session: AsyncSession, booking: Booking) -> PaymentOrderRow:
            refund = await session.get(RefundRow, refund_no)
            assert refund is not None
            order = await session.get(PaymentOrderRow, refund.order_no)
            assert order is not None
            if refund.status != HELD or booking.fee_cents > order.amount_cents:
                refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="payment_gone")
            refund.status = "cancelled"  # the money stays: it pays for the accepted unit
            paid = order.amount_cents
            order.status = "paid"
            order.booking_id = booking.id
            order.amount_cents = booking.fee_cents
            if paid > booking.fee_cents:
                now = self._p.clock.now()
                number = new_order_no(now, prefix="RF")
                session.add(
                    RefundRow(
                        refund_no=number,
                        order_no=order.order_no,
                        booking_id=booking.id,
                        amount_cents=paid - booking.fee_cents,
                        reason="rebooked_cheaper",
                        status="pending",
                        created_at=now,
                    )
                )
                difference.append(number)
            return order

        await self._offers.confirm_prepaid(booking_id, pay)
        for number in difference:
            await self._records.schedule("process_refund", key=f"refund:{number}", refund_no=number)

    async def _end(self, offer_id: str, status: str, *, account_id: str | None = None) -> None:
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            offer = await session.get(RebookingOfferRow, offer_id)
            if offer is None or (account_id is not None and offer.account_id != account_id):
                refuse("REBOOKING_OFFER_NOT_FOUND", offer_id=offer_id)
            done = await session.execute(
                update(RebookingOfferRow)
                .where(RebookingOfferRow.id == offer_id, RebookingOfferRow.status == "open")
                .values(status=status, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                if account_id is None:
                    return
                refuse("REBOOKING_OFFER_CLOSED", offer_id=offer_id, status=offer.status)
            refund_no = offer.refund_no
            record_event(
                session,
                f"rebooking.{status}",
                offer_id,
                {"offer_id": offer_id, "account_id": offer.account_id, "refund_no": refund_no},
                now,
            )
        await self.release_refund(refund_no)

    async def release_refund(self, refund_no: str | None) -> None:
        """Let a held refund go out (the offer ended without a unit taken)."""
        if refund_no is None:
            return
        async with self._p.sessions() as session, session.begin():
            refund = await session.get(RefundRow, refund_no)
            if refund is None or refund.status != HELD:
                return
            refund.status = "pending"
        await self._records.schedule(
            "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
        )

    async def _cancelled(self, session: AsyncSession, booking_id: str) -> _Cancelled | None:
        booking = await session.get(BookingRow, booking_id)
        if (
            booking is None
            or booking.patient_id is None
            or booking.end_reason not in ("hospital_cancelled", "session_stopped")
        ):
            return None
        patient = await session.get(PatientRow, booking.patient_id)
        if patient is None or patient.removed_at is not None:
            return None
        sess = await session.get(SessionRow, booking.session_id)
        assert sess is not None
        hospital = await session.get(HospitalRow, sess.hospital_id)
        assert hospital is not None
        return _Cancelled(booking, sess, hospital, patient.person_id)

    async def _proposals(
        self, found: _Cancelled, waitlist: WaitlistRules, paid_fee: int | None, now: datetime
    ) -> list[str]:
        """Same doctor first, then the department; nearest first; one unit per session; for a
        paid booking only units its payment covers."""
        sess = found.sess
        today = local_today(now, found.hospital.timezone)
        last = max(sess.date, today) + timedelta(days=waitlist.auto_join_days)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(SessionRow, SlotRow.id)
                    .join(SlotRow, SlotRow.session_id == SessionRow.id)
                    .where(
                        SessionRow.department_id == sess.department_id,
                        SessionRow.id != sess.id,
                        SessionRow.status == "open",
                        SessionRow.starts_at > now,
                        SessionRow.release_at <= now,
                        SessionRow.date <= last,
                        SlotRow.status == "open",
                    )
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        pairs: list[tuple[SessionRow, str]] = [
            (s, slot)
            for s, slot in rows
            if (paid_fee is None or s.fee_cents <= paid_fee)
            and (s.allocation == "first_come" or s.lottery_drawn)
        ]
        snapshot = await self._p.inventory.counts(
            [slot for _, slot in pairs], now_ms=to_epoch_ms(now)
        )
        chosen: dict[str, tuple[bool, datetime, str]] = {}
        for candidate, slot_id in pairs:
            counts = snapshot.get(slot_id)
            if counts is None or counts.status != "open" or counts.available <= 0:
                continue
            if candidate.id not in chosen:
                chosen[candidate.id] = (
                    candidate.doctor_id != sess.doctor_id,
                    candidate.starts_at,
                    slot_id,
                )
        ordered = sorted(chosen.values())
        return [slot_id for _, _, slot_id in ordered[:MAX_PROPOSALS]]

    async def _view(self, session: AsyncSession, row: RebookingOfferRow) -> RebookingOfferView:
        hospital = await session.get(HospitalRow, row.hospital_id)
        assert hospital is not None
        cancelled = await session.get(BookingRow, row.booking_id)
        proposals = []
        for slot_id in row.proposals:
            slot = await session.get(SlotRow, slot_id)
            if slot is None:
                continue
            sess = await session.get(SessionRow, slot.session_id)
            assert sess is not None
            doctor = await session.get(DoctorRow, sess.doctor_id)
            proposals.append(
                Proposal(
                    slot_id=slot_id,
                    session_id=sess.id,
                    doctor_id=sess.doctor_id,
                    doctor_name=doctor.name if doctor is not None else "",
                    same_doctor=cancelled is not None and cancelled.doctor_id == sess.doctor_id,
                    date=sess.date.isoformat(),
                    starts_at=local_deadline(slot.starts_at, hospital.timezone),
                    fee_cents=sess.fee_cents,
                )
            )
        return RebookingOfferView(
            id=row.id,
            cancelled_booking_id=row.booking_id,
            patient_id=row.patient_id,
            status=row.status,
            expires_at=row.expires_at,
            answer_by=local_deadline(row.expires_at, hospital.timezone),
            proposals=proposals,
            accepted_booking_id=row.accepted_booking_id,
        )

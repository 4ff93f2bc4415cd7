"""The citizen's booking journey as commands: hold → choose patient → submit/pay → confirmed,
and the ways out (leave, expiry, 退号).

``BookingService`` is the one facade the web layer, the CLI and the jobs call. It is composed,
not inherited: ``records`` (finding bookings, slot facts, follow-up jobs) and ``steps`` (the
transitions several commands share) are shared with its other parts, ``payments`` (payment
notices, refunds) and ``hospital_actions`` (check-in, 停诊, no-shows), and with the units
offered from the waitlist and the lottery; the grant of holds is ``HoldGrants``
(hold_grants.py). Its methods for holds, payments and the hospital side only forward, so
callers keep one object to talk to.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from guahao.platform import bookings as flow
from guahao.platform.bookings import PAYMENT_GRACE, Booking, BookingStatus
from guahao.platform.client_context import ClientContext
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import error, refuse
from guahao.platform.errors import ConflictError, GuahaoError
from guahao.platform.hospitals import PaymentChannel
from guahao.platform.ids import new_id
from guahao.platform.patient_proof import refuse_unless_bookable
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    PaymentOrderRow,
)
from guahao.platform.services.booking_limits import admit
from guahao.platform.services.booking_records import (
    BookingRecords,
    apply_to_row,
    describe_visit,
    event_payload,
    to_domain,
)
from guahao.platform.services.booking_steps import BookingSteps
from guahao.platform.services.hold_grants import HoldAsk, HoldGrants, HoldOutcome
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.payment_notices import PaymentNotices, PaymentOutcome
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = [
    "PAYMENT_GRACE",
    "BookingService",
    "HoldAsk",
    "HoldOutcome",
    "PaymentOutcome",
    "sold_out_refusal",
]

log = logging.getLogger(__name__)


def sold_out_refusal(slot_id: str, hold_id: str) -> GuahaoError:
    """The refusal of a hold ``refuse_known_sold_out`` decided from memory: ``hold``'s own
    ``SLOT_SOLD_OUT`` for a slot the worker's view knows to be gone.

    >>> sold_out_refusal("s1", "h1").detail
    {'slot_id': 's1', 'hold_id': 'h1', 'answered': 'locally'}
    """
    return error("SLOT_SOLD_OUT", slot_id=slot_id, hold_id=hold_id, answered="locally")


class BookingService:
    """Commands of the citizen's booking journey and its automatic ends."""

    def __init__(
        self, ports: Ports, inventory_sync: InventorySync, rules: RuleBook | None = None
    ) -> None:
        self._p = ports
        self._rules = rules or RuleBook(ports)
        self.records = BookingRecords(ports)
        self.steps = BookingSteps(ports, self.records)
        self._grants = HoldGrants(ports, inventory_sync, self._rules, self.records, self.steps)
        self.payments = PaymentNotices(ports, self.records, self.steps)
        self.hospital_actions = HospitalActions(ports, self.records, self.steps, inventory_sync)

    async def hold(
        self,
        *,
        account_id: str,
        slot_id: str,
        idempotency_key: str,
        client: ClientContext | None = None,
    ) -> Booking:
        """锁号: reserve one unit for this account for the hospital's hold time; a repeated
        key answers the booking its first request made, as it stands now.

        Rate limits per account, device and address come first: a bot that hammers the
        release moment is turned away before it costs the slot pool anything.
        """
        outcome = await self.grant_hold(
            account_id=account_id,
            slot_id=slot_id,
            idempotency_key=idempotency_key,
            client=client,
        )
        return outcome.booking

    async def grant_hold(
        self,
        *,
        account_id: str,
        slot_id: str,
        idempotency_key: str,
        client: ClientContext | None = None,
    ) -> HoldOutcome:
        """``hold``, telling a repeat apart and giving the hold as its first request was
        answered: the API's ``POST /api/v1/holds`` answers repeats from the pool's replay
        record through this, with no idempotency record of its own (docs/architecture.md,
        "Idempotency keys on every write"). A batch of one of ``grant_holds``."""
        asked = HoldAsk(account_id, slot_id, idempotency_key, client or ClientContext())
        (outcome,) = await self.grant_holds([asked])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def grant_holds(
        self,
        asked: Sequence[HoldAsk],
        answered: Callable[[int, HoldOutcome | Exception], None] | None = None,
    ) -> list[HoldOutcome | Exception]:
        """``grant_hold`` for each of a loop turn's requests, carried through together
        (hold_grants.py): each its own outcome, in the order asked, and told to ``answered``
        as soon as it is known."""
        return await self._grants.grant_all(asked, answered)

    async def choose_patient(self, *, account_id: str, booking_id: str, patient_id: str) -> Booking:
        """选择就诊人: one of the account's own patients, admitted by the region's rules
        (blacklist, filing, per-person and per-account limits, rebooking waits)."""
        now = self._p.clock.now()
        choice = await self.records.patient_choice(booking_id, account_id, patient_id)
        patient, sess = choice.patient, choice.sess
        if patient is None or patient.removed_at is not None:
            refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
        if patient.account_id != account_id:
            refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
        refuse_unless_bookable(patient)
        facts = await self.slot_facts(choice.slot_id)
        rules = await self._rules.for_hospital(sess.hospital_id)
        try:
            async with self._p.sessions() as session, session.begin():
                await lock_person(session, patient.person_id)
                row = await self.records.booking_row(session, booking_id, account_id)
                booking = to_domain(row)
                flow.choose_patient(booking, patient_id, now)
                await admit(
                    session,
                    rules=rules,
                    policies=facts.policies,
                    person_id=patient.person_id,
                    account_id=account_id,
                    sess=sess,
                    now=now,
                    exclude_booking_id=booking.id,
                    department=choice.department,
                )
                apply_to_row(row, booking, now)
                describe_visit(row, sess, patient.person_id)
                await session.flush()
                record_event(
                    session, "booking.patient_chosen", booking.id, event_payload(booking), now
                )
        except IntegrityError:
            refuse("PATIENT_ALREADY_BOOKED_SESSION", patient_id=patient_id)
        except StaleDataError:  # the sweep expired it, or another request moved it, meanwhile
            refuse("BOOKING_STATE_INVALID", booking_id=booking_id, reason="changed_meanwhile")
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.steps.expire(booking_id)
            raise
        return booking

    async def leave(self, *, account_id: str, booking_id: str) -> Booking:
        """The patient left the flow (went back, closed the page, gave up paying): release now."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self.records.booking_row(session, booking_id, account_id)
            booking = to_domain(row)
            flow.abandon(booking, now)
            apply_to_row(row, booking, now)
            record_event(session, "booking.abandoned", booking.id, event_payload(booking), now)
            order_no = booking.payment_order_no
            if order_no:
                await self.steps.close_order(session, order_no)
        try:
            await self.steps.release_unit(booking, now)
        except (GuahaoError, RedisError) as exc:
            if isinstance(exc, GuahaoError) and exc.code != "INVENTORY_UNAVAILABLE":
                raise
            # Recorded: the patient has left. Answering 503 now would tell the client that
            # nothing happened when the record says otherwise; the Redis hold lapses by itself
            # and a claim it leaves on the account is cleared by the next hold.
            log.warning("booking %s left while Redis was away: %s", booking.id, exc)
        return booking

    async def submit(
        self, *, account_id: str, booking_id: str, channel: PaymentChannel
    ) -> tuple[Booking, PaymentOrderRow | None]:
        """Commit to the chosen patient: confirm now, or open a payment order."""
        now = self._p.clock.now()
        row = await self.records.row(booking_id, account_id=account_id)
        booking = to_domain(row)
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
            await self.steps.confirm(booking, now, topic_extra={"paid_online": False}, read=row)
            return booking, None
        try:
            order = await self.steps.open_payment_order(
                booking,
                channel=channel,
                minutes=facts.policies.payment_minutes,
                now=now,
                read=row,
            )
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                await self.steps.expire(booking_id)
            raise
        # the second's expiry job, as for holds: one job a second of payment deadlines
        # instead of one per order, which cost a submit a round trip to the queue
        await self.records.schedule_expiry(booking.unit_held_until())
        return booking, order

    async def expire_all_due(self) -> int:
        """Expire every booking whose time is up, batch after batch (the job a second of
        expiries schedules: at a release that second holds thousands)."""
        total = 0
        while expired := await self.expire_due():
            total += expired
        return total

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
            count += await self.steps.expire(booking_id)
        return count

    async def cancel(self, *, account_id: str, booking_id: str) -> Booking:
        """退号: before the hospital's deadline; refund if paid; the unit returns after a
        randomised delay so a cancel-then-rebook hand-over cannot be timed."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await self.records.booking_row(session, booking_id, account_id)
            booking, kind = to_domain(row), row.kind
        facts = await self.slot_facts(booking.slot_id)
        deadline = facts.policies.cancel.deadline(facts.starts_at, facts.timezone)
        if booking.status in flow.HOLDING_STATUSES:
            return await self.leave(account_id=account_id, booking_id=booking_id)
        flow.cancel_by_patient(booking, deadline=deadline, now=now)
        low, high = facts.policies.cancel_return_delay_seconds
        returns_at = now + timedelta(seconds=random.randint(low, max(low, high)))
        refund_no = await self.steps.end_confirmed(
            booking,
            now,
            topic="booking.cancelled_by_patient",
            refund_reason="patient_cancelled",
            returns_at=returns_at,
            started_from=BookingStatus.CONFIRMED,
        )
        if kind != "add_on":  # an add-on unit was outside the pool: nothing returns to it
            await self._p.inventory.cancel_booked(
                booking.slot_id,
                unit_id=booking.id,
                now_ms=to_epoch_ms(now),
                return_at_ms=to_epoch_ms(returns_at),
            )
        if refund_no:
            await self.records.schedule(
                "process_refund", key=f"refund:{refund_no}", refund_no=refund_no
            )
        return booking

    # ------------------------------------------------------------------ forwarded to the parts

    async def get(self, booking_id: str, *, account_id: str | None = None) -> Booking:
        """The booking as it is now (the account's own when ``account_id`` is given)."""
        return await self.records.get(booking_id, account_id=account_id)

    async def slot_facts(self, slot_id: str) -> SlotFacts:
        """The slot's immutable facts (process cache; see ``BookingRecords.slot_facts``)."""
        return await self.records.slot_facts(slot_id)

    async def expire(self, booking_id: str, *, force: bool = False) -> bool:
        """Time ran out: expire the booking and give its unit back. Safe to repeat."""
        return await self.steps.expire(booking_id, force=force)

    async def handle_payment_notice(self, headers: dict[str, str], body: bytes) -> PaymentOutcome:
        """A signed notice from the gateway (see ``PaymentNotices``)."""
        return await self.payments.handle_payment_notice(headers, body)

    async def process_refund(self, refund_no: str) -> bool:
        """Pay one refund out at the gateway; idempotent per refund number."""
        return await self.payments.process_refund(refund_no)

    async def pending_refunds(self) -> list[str]:
        """Refunds not paid out yet."""
        return await self.payments.pending_refunds()

    async def check_in(self, booking_id: str) -> Booking:
        """签到 (see ``HospitalActions``)."""
        return await self.hospital_actions.check_in(booking_id)

    async def stop_session(self, session_id: str, *, reason: str) -> list[str]:
        """停诊: every live booking of the session is cancelled by the hospital and refunded."""
        return await self.hospital_actions.stop_session(session_id, reason=reason)

    async def cancel_by_hospital(
        self, booking_id: str, *, reason: str, hospital_id: str | None = None
    ) -> Booking:
        """The hospital cancels one live booking (see ``HospitalActions.cancel_by_hospital``)."""
        return await self.hospital_actions.cancel_by_hospital(
            booking_id, reason=reason, hospital_id=hospital_id
        )

    async def mark_no_shows(self, session_id: str) -> int:
        """爽约 at the end of one session."""
        return await self.hospital_actions.mark_no_shows(session_id)

    async def mark_due_no_shows(self) -> int:
        """Sweep: every finished session not yet examined."""
        return await self.hospital_actions.mark_due_no_shows()

    # ------------------------------------------------------------------ sold-out refusals

    async def refuse_known_sold_out(
        self, *, account_id: str, slot_id: str, client: ClientContext | None = None
    ) -> str | None:
        """Refuse a hold on a slot this process knows to be sold out, without ``hold``'s work.

        The front answers (``guahao.web.front_answers``) call this for the crowd's repeated
        attempts on slots already gone. It returns None when it cannot decide the refusal
        from memory (the sold-out view does not refuse now, the slot has started): the caller
        then takes ``hold``'s path with nothing counted yet. Otherwise it counts the refusal
        as ``hold`` would, the rate limits (a client over them is refused ``RATE_LIMITED``,
        raised, as by ``hold``) and the unmet demand, and returns the refusal's new hold id:
        the caller answers ``SLOT_SOLD_OUT`` with ``sold_out_refusal``'s detail. Returned, not
        raised: an exception raised through the awaits and caught per request was a tenth of
        a refusal's cost at a release (bench/profiles/refuse-1-*).

        The view is asked after the last await before the limits: a unit given back is
        dropped from the view when its announcement arrives, so a request asked after that
        is never refused here. The limits are counted after the decision, and their refusal
        comes first, as in ``hold``.
        """
        inventory = self._p.inventory
        if not inventory.refuses_sold_out(slot_id, account_id, to_epoch_ms(self._p.clock.now())):
            return None
        facts = await self.records.slot_facts(slot_id)
        limits = (await self._rules.region()).rate_limits if self._p.limiter else None
        now = self._p.clock.now()
        if now >= facts.starts_at or not inventory.refuses_sold_out(
            slot_id, account_id, to_epoch_ms(now)
        ):
            return None
        client = client or ClientContext()
        if self._p.limiter is not None and limits is not None:
            await self._p.limiter.hit(
                [
                    ("hold:account", limits.hold_per_account, account_id),
                    ("hold:device", limits.hold_per_device, client.device_hash),
                    ("hold:ip", limits.hold_per_ip, client.ip_hash),
                ]
            )
        if self._p.refused_demand is not None:
            self._p.refused_demand.note(facts.session_id, account_id)  # unmet demand
        return new_id()

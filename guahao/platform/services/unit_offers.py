"""Giving a unit to a named patient without their click: the steps the waitlist (候补) and the
lottery (摇号) share.

A grant is one SQL transaction that (1) takes the entry out of its line with a guarded update
(so two workers serving the same line cannot give it two units), (2) takes the person's turn
and asks the region's admission rules (blacklist, filing, per-person limits, rebooking waits:
``booking_limits.admit``), (3) writes the booking row (kind ``waitlist`` or ``lottery``, its
patient already chosen) and the event, and (4) reserves the unit in Redis *inside* the open
transaction. A refusal anywhere rolls everything back; a commit that fails after Redis said
yes gives the unit back the way it came (a returning unit stays returning). The booking id is
the hold id, and for a unit freed by 退号 it is derived from the cancelled booking, so one
freed unit can become at most one booking however often its event is delivered.

After the commit the offer is completed like a submit: confirmed at once when nothing is paid
online, otherwise a payment order the patient is told to pay by its deadline. Completion is
repeated by the sweeps until it has happened, so a gateway that is briefly away delays it and
loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import error
from guahao.platform.errors import ConflictError, GuahaoError
from guahao.platform.patient_proof import refuse_unless_bookable
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    PatientRow,
    SessionRow,
)
from guahao.platform.services.booking_limits import admit
from guahao.platform.services.booking_records import (
    BookingRecords,
    describe_visit,
    event_payload,
    to_domain,
)
from guahao.platform.services.booking_steps import BookingSteps
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.strikes import BookingOrigin
from guahao.platform.waitlist import local_deadline, out_of_quiet_hours

__all__ = ["GrantOutcome", "Recipient", "UnitOffers", "derived_id"]

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-4c59-9a51-0d2e7b8c9f10")

OfferKind = Literal["waitlist", "lottery"]


def derived_id(*parts: str) -> str:
    """A stable 32-hex id for a fact that must happen once (one grant per freed unit).

    >>> derived_id("waitlist", "b1") == derived_id("waitlist", "b1") != derived_id("x", "b1")
    True
    """
    return uuid.uuid5(_NAMESPACE, ":".join(parts)).hex


class GrantOutcome(StrEnum):
    """What one attempt to give a unit to one entry did."""

    GRANTED = "granted"
    """The unit is this entry's booking now."""
    UNIT_GONE = "unit_gone"
    """The unit is not there to give (taken, back in the public pool, slot closed)."""
    INELIGIBLE = "ineligible"
    """The region's rules refuse this person now (ban, limit, already booked there)."""
    NOT_WAITING = "not_waiting"
    """The entry left its line meanwhile (served elsewhere, withdrawn)."""


@dataclass(frozen=True)
class Recipient:
    """Who an offer is for: an entry of the waitlist or of a lottery."""

    entry_id: str
    account_id: str
    patient_id: str
    person_id: str
    channel: str
    kind: OfferKind
    origin: BookingOrigin = BookingOrigin.PATIENT
    """Who started what the grant books (``strikes.BookingOrigin``), recorded on the booking."""


Guard = Callable[[AsyncSession, datetime], Awaitable[bool]]
"""Takes the entry out of its line inside the grant's transaction; False if it was no longer
there."""

Link = Callable[[AsyncSession, str], Awaitable[None]]
"""Points the entry at its new booking (after the booking row exists: a foreign key)."""

Claim = Callable[[int], Awaitable[None]]
"""Reserves the unit in Redis until the given epoch ms, or raises the refusal."""

Undo = Callable[[], Awaitable[None]]


class _RefusedError(Exception):
    def __init__(self, error: GuahaoError) -> None:
        super().__init__(error.code)
        self.error = error


class _GoneError(_RefusedError):
    pass


class _NotWaitingError(Exception):
    pass


class UnitOffers:
    """Grants a unit to a named entry and completes the offer (see the module docstring)."""

    def __init__(
        self, ports: Ports, records: BookingRecords, steps: BookingSteps, rules: RuleBook
    ) -> None:
        self._p = ports
        self._records = records
        self._steps = steps
        self._rules = rules

    async def grant(
        self,
        recipient: Recipient,
        *,
        sess: SessionRow,
        slot_id: str,
        booking_id: str,
        guard: Guard,
        link: Link,
        claim: Claim,
        undo: Undo,
        event: tuple[str, dict[str, object]],
    ) -> tuple[GrantOutcome, GuahaoError | None]:
        """Give ``slot_id``'s unit to ``recipient`` as booking ``booking_id`` (one transaction).

        Returns the outcome and, when the person was refused or the unit was gone, the error
        that said so.
        """
        now = self._p.clock.now()
        facts = await self._records.slot_facts(slot_id)
        rules = await self._rules.for_hospital(sess.hospital_id)
        hold_until = now + timedelta(minutes=facts.policies.hold_minutes)
        claimed = False
        try:
            async with self._p.sessions() as session, session.begin():
                if not await guard(session, now):
                    raise _NotWaitingError
                await lock_person(session, recipient.person_id)
                patient = await session.get(PatientRow, recipient.patient_id)
                if patient is None or patient.removed_at is not None:
                    raise _RefusedError(error("PATIENT_NOT_FOUND", patient_id=recipient.patient_id))
                try:
                    # checked again here, not only when the wait or entry was made: a wait
                    # from before the rule on declared relations (or a relation changed since)
                    # must not make a unit the person's unasked
                    refuse_unless_bookable(patient)
                    await admit(
                        session,
                        rules=rules,
                        policies=facts.policies,
                        person_id=recipient.person_id,
                        account_id=recipient.account_id,
                        sess=sess,
                        now=now,
                    )
                except GuahaoError as exc:
                    raise _RefusedError(exc) from exc
                row = BookingRow(
                    id=booking_id,
                    account_id=recipient.account_id,
                    slot_id=slot_id,
                    session_id=sess.id,
                    patient_id=recipient.patient_id,
                    status=BookingStatus.PATIENT_CHOSEN.value,
                    idempotency_key=f"{recipient.kind}:{recipient.entry_id}",
                    fee_cents=sess.fee_cents,
                    channel=recipient.channel,
                    hold_expires_at=hold_until,
                    created_at=now,
                    updated_at=now,
                    kind=recipient.kind,
                    origin=recipient.origin.value,
                )
                describe_visit(row, sess, recipient.person_id)
                session.add(row)
                await session.flush()
                await link(session, booking_id)
                booking = to_domain(row)
                record_event(session, "booking.held", booking_id, event_payload(booking), now)
                record_event(
                    session,
                    "booking.patient_chosen",
                    booking_id,
                    event_payload(booking, kind=recipient.kind),
                    now,
                )
                topic, payload = event
                record_event(
                    session,
                    topic,
                    recipient.entry_id,
                    {
                        "account_id": recipient.account_id,
                        "patient_id": recipient.patient_id,
                        "entry_id": recipient.entry_id,
                        "booking_id": booking_id,
                        "slot_id": slot_id,
                        "session_id": sess.id,
                        **payload,
                    },
                    now,
                )
                try:
                    await claim(to_epoch_ms(hold_until))
                except ConflictError as exc:
                    raise _GoneError(exc) from exc  # rolls the transaction back
                claimed = True
        except _GoneError as gone:
            return GrantOutcome.UNIT_GONE, gone.error
        except _NotWaitingError:
            return GrantOutcome.NOT_WAITING, None
        except _RefusedError as refused:
            return GrantOutcome.INELIGIBLE, refused.error
        except IntegrityError as exc:
            log.info("offer %s not recorded: %s", booking_id, exc)
            async with self._p.sessions() as session:
                taken = await session.get(BookingRow, booking_id)
            if taken is not None:  # this unit's one booking exists already
                return GrantOutcome.UNIT_GONE, None
            # The patient holds an active booking in this session (the partial unique index).
            return GrantOutcome.INELIGIBLE, error(
                "PATIENT_ALREADY_BOOKED_SESSION", session_id=sess.id
            )
        except BaseException:
            if claimed:
                with contextlib.suppress(Exception):
                    await undo()
            raise
        return GrantOutcome.GRANTED, None

    async def complete(
        self,
        booking_id: str,
        *,
        payment_minutes: int,
        quiet_hours: tuple[str, str] = ("00:00", "00:00"),
    ) -> Booking | None:
        """Confirm a granted offer, or open its payment order; a repeat does nothing more.

        An order's deadline (``payment_minutes``) never ends in ``quiet_hours`` (local start
        and end; equal means none). A unit the patient must now pay for was not what a
        patient's own wait asked for: its origin becomes ``platform_offer``, so letting it
        lapse is never a strike.

        Returns the booking, or None when it is gone (expired meanwhile).
        """
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
            if row is None:
                return None
            booking = to_domain(row)
            kind = row.kind
        if booking.status is not BookingStatus.PATIENT_CHOSEN:
            return booking
        facts = await self._records.slot_facts(booking.slot_id)
        channel = booking.channel or "self_pay"
        required = facts.policies.payment_mode.online_payment_required(channel)
        try:
            if not (required and booking.fee_cents > 0):
                flow.submit(booking, channel=channel, payment_required=False, now=now)
                await self._steps.confirm(
                    booking, now, topic_extra={"paid_online": False, "kind": kind}
                )
                return booking
            # The patient is told by a message, not waiting at the cashier: the deadline never
            # ends in the hospital's quiet hours, and reads as its wall time with the date.
            deadline = out_of_quiet_hours(
                now,
                payment_minutes,
                zone=facts.timezone,
                quiet_start=quiet_hours[0],
                quiet_end=quiet_hours[1],
            )
            minutes = max(payment_minutes, math.ceil((deadline - now) / timedelta(minutes=1)))
            await self._mark_offered(booking_id)
            await self._steps.open_payment_order(
                booking,
                channel=channel,
                minutes=minutes,
                now=now,
                kind=kind,
                pay_by=local_deadline(now + timedelta(minutes=minutes), facts.timezone),
            )
        except ConflictError as exc:
            if exc.code in ("HOLD_EXPIRED", "PAYMENT_ORDER_EXPIRED"):
                await self._steps.expire(booking_id, force=True)
                return None
            if exc.code in ("BOOKING_ALREADY_CONFIRMED", "BOOKING_STATE_INVALID"):
                return await self._records.get(booking_id)  # a concurrent completion won
            raise
        # The order's end is also found by the sweep (``expire_due``); the job ends it on time.
        await self._records.schedule(
            "expire_booking",
            key=f"expire:{booking.id}:payment",
            at=booking.unit_held_until(),
            booking_id=booking.id,
        )
        return booking

    async def confirm_prepaid(
        self, booking_id: str, pay: Callable[[AsyncSession, Booking], Awaitable[object]]
    ) -> Booking | None:
        """Confirm a granted offer with money paid in advance (``pay`` records it in the
        confirming transaction): no payment step, the booking is confirmed and paid at once.
        A repeat answers the booking as it is; None when it is gone."""
        now = self._p.clock.now()
        booking = await self._records.get(booking_id)
        if booking is None or booking.status is not BookingStatus.PATIENT_CHOSEN:
            return booking
        flow.submit(booking, channel=booking.channel or "self_pay", payment_required=False, now=now)
        booking.paid = True
        booking.payment_required = True
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
            kind = row.kind if row is not None else "waitlist"

        async def also(session: AsyncSession) -> None:
            order = await pay(session, booking)
            booking.payment_order_no = getattr(order, "order_no", None)
            row = await self._records.booking_row(session, booking_id, None)
            row.payment_order_no = booking.payment_order_no

        try:
            await self._steps.confirm(
                booking,
                now,
                topic_extra={"paid_online": True, "prepaid": True, "kind": kind},
                also=also,
            )
        except ConflictError as exc:
            if exc.code == "HOLD_EXPIRED":
                return None  # expired by ``confirm`` (hold lost: never a strike)
            if exc.code in ("BOOKING_ALREADY_CONFIRMED", "BOOKING_STATE_INVALID"):
                return await self._records.get(booking_id)
            raise
        return booking

    async def _mark_offered(self, booking_id: str) -> None:
        async with self._p.sessions() as session, session.begin():
            await session.execute(
                update(BookingRow)
                .where(
                    BookingRow.id == booking_id,
                    BookingRow.origin == BookingOrigin.PATIENT_WAIT.value,
                )
                .values(origin=BookingOrigin.PLATFORM_OFFER.value)
                .execution_options(synchronize_session=False)
            )

    async def unfinished(self, kind: OfferKind, limit: int = 200) -> list[str]:
        """Offers granted but not completed (the completion was interrupted)."""
        async with self._p.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(BookingRow.id)
                        .where(
                            BookingRow.kind == kind,
                            BookingRow.status == BookingStatus.PATIENT_CHOSEN.value,
                        )
                        .limit(limit)
                    )
                ).all()
            )

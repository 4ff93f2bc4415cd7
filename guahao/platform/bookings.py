"""The booking state machine (挂号流程): every transition is one function with its preconditions.

::

    held ─► patient_chosen ─► awaiting_payment ─► confirmed ─► checked_in | no_show
      │            │  └──── (nothing paid online) ───►│
      │            │                 │                ├─► cancelled_by_patient (退号)
      └────────────┴──► abandoned / expired           │
      any of the four live statuses ──────────────────┴─► cancelled_by_hospital (停诊)

The functions here are pure: they check the rule and move the state. Inventory, SQL and
payments are the services' business; a transition that refuses raises a catalogued error and
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import PaymentChannel

__all__ = [
    "ACTIVE_STATUSES",
    "HOLDING_STATUSES",
    "LIVE_WITH_PATIENT",
    "PAYMENT_GRACE",
    "Booking",
    "BookingStatus",
    "abandon",
    "cancel_by_hospital",
    "cancel_by_patient",
    "check_in",
    "choose_patient",
    "confirm_payment",
    "expire",
    "mark_no_show",
    "submit",
    "unit_held_until",
]


class BookingStatus(StrEnum):
    """Where a booking stands. The first three hold a unit, ``confirmed`` has booked one; the
    rest are final."""

    HELD = "held"
    PATIENT_CHOSEN = "patient_chosen"
    AWAITING_PAYMENT = "awaiting_payment"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    ABANDONED = "abandoned"
    EXPIRED = "expired"
    CANCELLED_BY_PATIENT = "cancelled_by_patient"
    CANCELLED_BY_HOSPITAL = "cancelled_by_hospital"


HOLDING_STATUSES = frozenset(
    {BookingStatus.HELD, BookingStatus.PATIENT_CHOSEN, BookingStatus.AWAITING_PAYMENT}
)
ACTIVE_STATUSES = HOLDING_STATUSES | {BookingStatus.CONFIRMED}
LIVE_WITH_PATIENT = (
    BookingStatus.PATIENT_CHOSEN.value,
    BookingStatus.AWAITING_PAYMENT.value,
    BookingStatus.CONFIRMED.value,
    BookingStatus.CHECKED_IN.value,
)
"""Bookings that use up a person's allowance: a patient is on the unit and it has not ended."""

PAYMENT_GRACE = timedelta(minutes=2)
"""How long past a payment order's expiry its unit stays held, so a payment made in the last
second whose notice arrives a little late still books (the gateway refuses late payments)."""


def unit_held_until(
    status: BookingStatus, hold_expires_at: datetime, payment_expires_at: datetime | None
) -> datetime:
    """When the inventory gives a held unit back by itself: the hold's end, or for a booking
    awaiting payment its order's end plus ``PAYMENT_GRACE``."""
    if status is BookingStatus.AWAITING_PAYMENT and payment_expires_at is not None:
        return payment_expires_at + PAYMENT_GRACE
    return hold_expires_at


@dataclass
class Booking:
    """One attempt to book one unit of one slot, from the hold to its end.

    The booking id doubles as the hold id in the inventory and as the unit id when a confirmed
    unit is given back, so every inventory step of one booking is idempotent by construction.
    """

    id: str
    account_id: str
    slot_id: str
    session_id: str
    status: BookingStatus
    hold_expires_at: datetime
    fee_cents: int
    patient_id: str | None = None
    channel: PaymentChannel | None = None
    payment_required: bool = False
    payment_order_no: str | None = None
    payment_expires_at: datetime | None = None
    paid: bool = False
    confirmed_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    @property
    def holds_inventory(self) -> bool:
        """Whether a unit is reserved for this booking but not yet booked."""
        return self.status in HOLDING_STATUSES

    def deadline(self) -> datetime:
        """When the reserved unit goes back by itself: the hold, or the payment order."""
        if self.status is BookingStatus.AWAITING_PAYMENT and self.payment_expires_at:
            return self.payment_expires_at
        return self.hold_expires_at

    def unit_held_until(self) -> datetime:
        """When the inventory gives the reserved unit back by itself (see the function)."""
        return unit_held_until(self.status, self.hold_expires_at, self.payment_expires_at)


def _require(booking: Booking, *allowed: BookingStatus, confirming: bool = False) -> None:
    """Refuse unless the booking is in one of ``allowed``. ``confirming`` steps (submit, pay)
    tell a booking that is already confirmed so, since a repeat is what usually happened."""
    if booking.status not in allowed:
        if booking.status is BookingStatus.EXPIRED:
            refuse("HOLD_EXPIRED", booking_id=booking.id)
        if booking.status is BookingStatus.CONFIRMED and confirming:
            refuse("BOOKING_ALREADY_CONFIRMED", booking_id=booking.id)
        refuse(
            "BOOKING_STATE_INVALID",
            booking_id=booking.id,
            status=booking.status.value,
            allowed=[s.value for s in allowed],
        )


def _require_live(booking: Booking, now: datetime) -> None:
    if now >= booking.deadline():
        code = (
            "PAYMENT_ORDER_EXPIRED"
            if booking.status is BookingStatus.AWAITING_PAYMENT
            else "HOLD_EXPIRED"
        )
        refuse(code, booking_id=booking.id, expired_at=booking.deadline().isoformat())


def _end(booking: Booking, status: BookingStatus, now: datetime, reason: str) -> None:
    booking.status = status
    booking.ended_at = now
    booking.end_reason = reason


def choose_patient(booking: Booking, patient_id: str, now: datetime) -> None:
    """Name the patient while the hold is live; choosing again replaces the choice."""
    _require(booking, BookingStatus.HELD, BookingStatus.PATIENT_CHOSEN)
    _require_live(booking, now)
    booking.patient_id = patient_id
    booking.status = BookingStatus.PATIENT_CHOSEN


def submit(
    booking: Booking,
    *,
    channel: PaymentChannel,
    payment_required: bool,
    now: datetime,
    order_no: str | None = None,
    order_expires_at: datetime | None = None,
) -> None:
    """Commit to the chosen patient: open a payment order, or confirm at once when nothing is
    paid online (pay at hospital, insurance on site, pay after visit)."""
    if booking.status is BookingStatus.HELD:
        refuse("PATIENT_NOT_CHOSEN", booking_id=booking.id)
    _require(booking, BookingStatus.PATIENT_CHOSEN, confirming=True)
    _require_live(booking, now)
    if payment_required and (order_no is None or order_expires_at is None):
        raise ValueError("an online payment needs an order number and its expiry")
    booking.channel = channel
    booking.payment_required = payment_required
    if payment_required:
        assert order_no is not None
        assert order_expires_at is not None
        booking.payment_order_no = order_no
        booking.payment_expires_at = order_expires_at
        booking.status = BookingStatus.AWAITING_PAYMENT
    else:
        booking.status = BookingStatus.CONFIRMED
        booking.confirmed_at = now


def confirm_payment(booking: Booking, now: datetime) -> None:
    """The payment arrived in time: the unit is booked (减量)."""
    _require(booking, BookingStatus.AWAITING_PAYMENT, confirming=True)
    _require_live(booking, now)
    booking.paid = True
    booking.status = BookingStatus.CONFIRMED
    booking.confirmed_at = now


def abandon(booking: Booking, now: datetime) -> None:
    """The patient left the flow (went back, closed the page, gave up paying): release now."""
    _require(booking, *HOLDING_STATUSES)
    _end(booking, BookingStatus.ABANDONED, now, "left_the_flow")


def expire(booking: Booking, now: datetime, *, hold_lost: bool = False) -> None:
    """The hold or the payment order ran out: the unit goes back to the pool.

    ``hold_lost``: the inventory no longer has the unit (its hold ran out there first, or
    Redis lost it), so the booking ends now whatever its own deadline says.
    """
    _require(booking, *HOLDING_STATUSES)
    if not hold_lost and now < booking.deadline():
        refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="not_yet_expired")
    _end(booking, BookingStatus.EXPIRED, now, "hold_lost" if hold_lost else "timed_out")


def cancel_by_patient(booking: Booking, *, deadline: datetime, now: datetime) -> None:
    """退号: allowed for a confirmed booking before the hospital's cancellation deadline."""
    _require(booking, BookingStatus.CONFIRMED)
    if now >= deadline:
        refuse("CANCEL_DEADLINE_PASSED", booking_id=booking.id, deadline=deadline.isoformat())
    _end(booking, BookingStatus.CANCELLED_BY_PATIENT, now, "patient_cancelled")


def cancel_by_hospital(booking: Booking, now: datetime, reason: str = "session_stopped") -> None:
    """停诊: the hospital ends any live booking; full refund, never a penalty."""
    _require(booking, *ACTIVE_STATUSES)
    _end(booking, BookingStatus.CANCELLED_BY_HOSPITAL, now, reason)


def check_in(booking: Booking, now: datetime) -> None:
    """签到: the HIS (or the hospital) reports the patient arrived."""
    _require(booking, BookingStatus.CONFIRMED)
    booking.status = BookingStatus.CHECKED_IN
    booking.ended_at = now
    booking.end_reason = "checked_in"


def mark_no_show(booking: Booking, *, session_end: datetime, now: datetime) -> None:
    """爽约: confirmed, never checked in, and the session is over."""
    _require(booking, BookingStatus.CONFIRMED)
    if now < session_end:
        refuse("BOOKING_STATE_INVALID", booking_id=booking.id, reason="session_not_over")
    _end(booking, BookingStatus.NO_SHOW, now, "no_show")

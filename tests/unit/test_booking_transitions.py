"""The booking state machine, rule by rule: every step from every status, legal or refused.

A legal step moves to the right status and changes exactly the fields it owns; a refused step
raises its catalogued error and leaves the booking exactly as it was (compared with a deep
copy). Bookings in each status are reached by walking the legal path from a fresh hold, so
their fields are the ones the flow really produces.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guahao.platform.bookings import (
    ACTIVE_STATUSES,
    HOLDING_STATUSES,
    PAYMENT_GRACE,
    Booking,
    BookingStatus,
    abandon,
    cancel_by_hospital,
    cancel_by_patient,
    check_in,
    choose_patient,
    confirm_payment,
    expire,
    mark_no_show,
    submit,
)
from guahao.platform.error_codes import CODES
from guahao.platform.errors import ConflictError, GuahaoError
from guahao.platform.hospitals import PaymentChannel

S = BookingStatus

T0 = datetime(2026, 3, 9, 0, 0, tzinfo=UTC)  # the hold is granted
HOLD_UNTIL = T0 + timedelta(minutes=10)
CHOSEN_AT = T0 + timedelta(minutes=1)
SUBMITTED_AT = T0 + timedelta(minutes=2)
ORDER_UNTIL = SUBMITTED_AT + timedelta(minutes=15)  # outlives the hold on purpose
PAID_AT = T0 + timedelta(minutes=3)
LIVE = T0 + timedelta(minutes=4)  # before every deadline of the walked path
CANCEL_DEADLINE = T0 + timedelta(hours=6)
SESSION_END = T0 + timedelta(hours=8)
AFTER_SESSION = SESSION_END + timedelta(minutes=1)
LONG_AFTER = T0 + timedelta(days=1)  # after every deadline
TICK = timedelta(microseconds=1)

FINAL_STATUSES = frozenset(S) - ACTIVE_STATUSES

# The diagram of the module docstring, plus the two edges the functions document beside it:
# submit confirms at once when nothing is paid online, and 停诊 ends any live booking.
EDGES: frozenset[tuple[BookingStatus, BookingStatus]] = frozenset(
    {
        (S.HELD, S.PATIENT_CHOSEN),
        (S.PATIENT_CHOSEN, S.PATIENT_CHOSEN),
        (S.PATIENT_CHOSEN, S.AWAITING_PAYMENT),
        (S.PATIENT_CHOSEN, S.CONFIRMED),
        (S.AWAITING_PAYMENT, S.CONFIRMED),
        (S.CONFIRMED, S.CHECKED_IN),
        (S.CONFIRMED, S.NO_SHOW),
        (S.CONFIRMED, S.CANCELLED_BY_PATIENT),
        *((s, S.ABANDONED) for s in HOLDING_STATUSES),
        *((s, S.EXPIRED) for s in HOLDING_STATUSES),
        *((s, S.CANCELLED_BY_HOSPITAL) for s in ACTIVE_STATUSES),
    }
)


def reachable_from(start: BookingStatus) -> set[BookingStatus]:
    seen, frontier = {start}, [start]
    while frontier:
        here = frontier.pop()
        for source, target in EDGES:
            if source is here and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


# ----------------------------------------------------------------------------- helpers


def fresh_hold(booking_id: str = "b-1") -> Booking:
    return Booking(
        id=booking_id,
        account_id="a-1",
        slot_id="slot-1",
        session_id="sess-1",
        status=S.HELD,
        hold_expires_at=HOLD_UNTIL,
        fee_cents=2500,
    )


def booking_in(status: BookingStatus) -> Booking:
    """A booking brought to ``status`` by the legal steps a real booking takes."""
    b = fresh_hold()
    if status is S.HELD:
        return b
    if status is S.ABANDONED:
        abandon(b, now=LIVE)
        return b
    if status is S.EXPIRED:
        expire(b, now=HOLD_UNTIL)
        return b
    choose_patient(b, "p-1", now=CHOSEN_AT)
    if status is S.PATIENT_CHOSEN:
        return b
    submit(
        b,
        channel="self_pay",
        payment_required=True,
        now=SUBMITTED_AT,
        order_no="GH-1",
        order_expires_at=ORDER_UNTIL,
    )
    if status is S.AWAITING_PAYMENT:
        return b
    confirm_payment(b, now=PAID_AT)
    if status is S.CONFIRMED:
        return b
    if status is S.CHECKED_IN:
        check_in(b, now=LIVE)
    elif status is S.NO_SHOW:
        mark_no_show(b, session_end=SESSION_END, now=AFTER_SESSION)
    elif status is S.CANCELLED_BY_PATIENT:
        cancel_by_patient(b, deadline=CANCEL_DEADLINE, now=LIVE)
    elif status is S.CANCELLED_BY_HOSPITAL:
        cancel_by_hospital(b, now=LIVE)
    assert b.status is status
    return b


def refused(step: Callable[[Booking], object], booking: Booking) -> GuahaoError:
    """Run a step that must refuse; check the booking did not change at all."""
    before = copy.deepcopy(booking)
    with pytest.raises(GuahaoError) as caught:
        step(booking)
    assert booking == before
    error = caught.value
    kind, message_zh, _ = CODES[error.code]
    assert type(error) is kind
    assert error.message_zh == message_zh
    return error


@dataclasses.dataclass(frozen=True)
class Step:
    """One transition called as a legal caller would, with the fields it owns when it works."""

    name: str
    run: Callable[[Booking], None]
    legal: dict[BookingStatus, BookingStatus]
    changes: dict[str, Any]


def _ends(reason: str | None, now: datetime) -> dict[str, Any]:
    return {"ended_at": now, "end_reason": reason}


STEPS = [
    Step(
        "choose_patient",
        lambda b: choose_patient(b, "p-2", now=LIVE),
        {S.HELD: S.PATIENT_CHOSEN, S.PATIENT_CHOSEN: S.PATIENT_CHOSEN},
        {"patient_id": "p-2"},
    ),
    Step(
        "submit_paying_online",
        lambda b: submit(
            b,
            channel="self_pay",
            payment_required=True,
            now=LIVE,
            order_no="GH-2",
            order_expires_at=LIVE + timedelta(minutes=15),
        ),
        {S.PATIENT_CHOSEN: S.AWAITING_PAYMENT},
        {
            "channel": "self_pay",
            "payment_required": True,
            "payment_order_no": "GH-2",
            "payment_expires_at": LIVE + timedelta(minutes=15),
        },
    ),
    Step(
        "submit_paying_on_site",
        lambda b: submit(b, channel="insurance", payment_required=False, now=LIVE),
        {S.PATIENT_CHOSEN: S.CONFIRMED},
        {"channel": "insurance", "payment_required": False, "confirmed_at": LIVE},
    ),
    Step(
        "confirm_payment",
        lambda b: confirm_payment(b, now=LIVE),
        {S.AWAITING_PAYMENT: S.CONFIRMED},
        {"paid": True, "confirmed_at": LIVE},
    ),
    Step(
        "abandon",
        lambda b: abandon(b, now=LIVE),
        dict.fromkeys(HOLDING_STATUSES, S.ABANDONED),
        _ends("left_the_flow", LIVE),
    ),
    Step(
        "expire",
        lambda b: expire(b, now=LONG_AFTER),
        dict.fromkeys(HOLDING_STATUSES, S.EXPIRED),
        _ends("timed_out", LONG_AFTER),
    ),
    Step(
        "cancel_by_patient",
        lambda b: cancel_by_patient(b, deadline=CANCEL_DEADLINE, now=LIVE),
        {S.CONFIRMED: S.CANCELLED_BY_PATIENT},
        _ends("patient_cancelled", LIVE),
    ),
    Step(
        "cancel_by_hospital",
        lambda b: cancel_by_hospital(b, now=LIVE),
        dict.fromkeys(ACTIVE_STATUSES, S.CANCELLED_BY_HOSPITAL),
        _ends("session_stopped", LIVE),
    ),
    Step(
        "check_in",
        lambda b: check_in(b, now=LIVE),
        {S.CONFIRMED: S.CHECKED_IN},
        _ends("checked_in", LIVE),
    ),
    Step(
        "mark_no_show",
        lambda b: mark_no_show(b, session_end=SESSION_END, now=AFTER_SESSION),
        {S.CONFIRMED: S.NO_SHOW},
        _ends("no_show", AFTER_SESSION),
    ),
]


def expected_refusal(step: Step, status: BookingStatus) -> str:
    """The catalogued code for ``step`` tried from a status it does not accept."""
    if status is S.EXPIRED:
        return "HOLD_EXPIRED"
    if status is S.HELD and step.name.startswith("submit"):
        return "PATIENT_NOT_CHOSEN"
    # Submitting or paying again a booking that is confirmed says so: a repeat is what
    # usually happened.
    if status is S.CONFIRMED and (step.name == "confirm_payment" or step.name.startswith("submit")):
        return "BOOKING_ALREADY_CONFIRMED"
    return "BOOKING_STATE_INVALID"


CELLS = [(step, status) for step in STEPS for status in S]


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(
    ("step", "status"),
    [c for c in CELLS if c[1] in c[0].legal],
    ids=[f"{step.name}-from-{s.value}" for step, s in CELLS if s in step.legal],
)
def test_every_legal_step_moves_to_its_status_and_sets_only_its_fields(
    step: Step, status: BookingStatus
) -> None:
    booking = booking_in(status)
    before = copy.deepcopy(booking)
    step.run(booking)
    target = step.legal[status]
    assert booking == dataclasses.replace(before, status=target, **step.changes)
    assert booking.holds_inventory is (target in HOLDING_STATUSES)


@pytest.mark.parametrize(
    ("step", "status"),
    [c for c in CELLS if c[1] not in c[0].legal],
    ids=[f"{step.name}-from-{s.value}" for step, s in CELLS if s not in step.legal],
)
def test_every_illegal_step_is_refused_with_its_code_and_changes_nothing(
    step: Step, status: BookingStatus
) -> None:
    error = refused(step.run, booking_in(status))
    assert error.code == expected_refusal(step, status)
    assert isinstance(error, ConflictError)


def test_the_matrix_covers_every_status_and_every_transition() -> None:
    assert len(CELLS) == len(STEPS) * len(S) == 100
    called = {s.name.split("_paying")[0] for s in STEPS}
    assert called == {
        "choose_patient",
        "submit",
        "confirm_payment",
        "abandon",
        "expire",
        "cancel_by_patient",
        "cancel_by_hospital",
        "check_in",
        "mark_no_show",
    }


# ----------------------------------------------------------------------------- choosing


def test_a_patient_can_be_chosen_on_a_live_hold() -> None:
    booking = booking_in(S.HELD)
    choose_patient(booking, "p-1", now=HOLD_UNTIL - TICK)
    assert (booking.status, booking.patient_id) == (S.PATIENT_CHOSEN, "p-1")
    assert booking.holds_inventory


def test_a_patient_can_be_chosen_again_while_the_hold_lives() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    choose_patient(booking, "p-other", now=HOLD_UNTIL - TICK)
    assert (booking.status, booking.patient_id) == (S.PATIENT_CHOSEN, "p-other")
    assert booking.hold_expires_at == HOLD_UNTIL  # choosing does not extend the hold


@pytest.mark.parametrize("status", [S.HELD, S.PATIENT_CHOSEN])
@pytest.mark.parametrize("now", [HOLD_UNTIL, HOLD_UNTIL + timedelta(hours=1)], ids=["at", "after"])
def test_choosing_a_patient_once_the_hold_ran_out_is_refused(
    status: BookingStatus, now: datetime
) -> None:
    error = refused(lambda b: choose_patient(b, "p-2", now=now), booking_in(status))
    assert error.code == "HOLD_EXPIRED"
    assert error.detail["expired_at"] == HOLD_UNTIL.isoformat()


def test_leaving_the_patient_step_abandons_the_hold() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    abandon(booking, now=LIVE)
    assert booking.status is S.ABANDONED
    assert (booking.ended_at, booking.end_reason) == (LIVE, "left_the_flow")
    assert not booking.holds_inventory
    assert booking.patient_id == "p-1"  # the record keeps who it was for


@pytest.mark.parametrize("status", sorted(HOLDING_STATUSES))
def test_leaving_the_flow_is_allowed_even_after_the_deadline(status: BookingStatus) -> None:
    booking = booking_in(status)
    abandon(booking, now=LONG_AFTER)
    assert booking.status is S.ABANDONED


# ----------------------------------------------------------------------------- submitting


def test_submit_without_a_chosen_patient_is_refused() -> None:
    booking = booking_in(S.HELD)
    error = refused(
        lambda b: submit(b, channel="self_pay", payment_required=False, now=LIVE), booking
    )
    assert error.code == "PATIENT_NOT_CHOSEN"


def test_submit_without_online_payment_confirms_at_once() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    submit(booking, channel="insurance", payment_required=False, now=LIVE)
    assert booking.status is S.CONFIRMED
    assert booking.confirmed_at == LIVE
    assert booking.channel == "insurance"
    assert booking.payment_required is False
    assert booking.paid is False
    assert booking.payment_order_no is None
    assert booking.payment_expires_at is None
    assert not booking.holds_inventory


def test_submit_with_online_payment_opens_an_order_and_keeps_the_unit() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    order_until = LIVE + timedelta(minutes=15)
    submit(
        booking,
        channel="self_pay",
        payment_required=True,
        now=LIVE,
        order_no="GH-9",
        order_expires_at=order_until,
    )
    assert booking.status is S.AWAITING_PAYMENT
    assert (booking.payment_order_no, booking.payment_expires_at) == ("GH-9", order_until)
    assert booking.confirmed_at is None
    assert booking.holds_inventory
    assert booking.deadline() == order_until  # the order's clock now governs the unit


@pytest.mark.parametrize(
    "now", [HOLD_UNTIL, HOLD_UNTIL + timedelta(minutes=5)], ids=["at", "after"]
)
def test_submit_after_the_hold_ran_out_is_refused(now: datetime) -> None:
    error = refused(
        lambda b: submit(b, channel="self_pay", payment_required=False, now=now),
        booking_in(S.PATIENT_CHOSEN),
    )
    assert error.code == "HOLD_EXPIRED"


def test_a_paying_submit_without_an_order_is_a_programming_error() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    with pytest.raises(ValueError, match="order number"):
        submit(booking, channel="self_pay", payment_required=True, now=LIVE)


def test_a_paying_submit_without_an_order_changes_nothing() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    before = copy.deepcopy(booking)
    with pytest.raises(ValueError, match="order number"):
        submit(booking, channel="insurance", payment_required=True, now=LIVE)
    assert booking == before


# ----------------------------------------------------------------------------- paying


def test_payment_in_time_confirms_the_booking() -> None:
    booking = booking_in(S.AWAITING_PAYMENT)
    confirm_payment(booking, now=ORDER_UNTIL - TICK)
    assert booking.status is S.CONFIRMED
    assert booking.paid is True
    assert booking.confirmed_at == ORDER_UNTIL - TICK


def test_payment_is_timed_by_the_order_not_by_the_hold() -> None:
    booking = booking_in(S.AWAITING_PAYMENT)
    assert HOLD_UNTIL < ORDER_UNTIL
    confirm_payment(booking, now=HOLD_UNTIL + TICK)
    assert booking.status is S.CONFIRMED


@pytest.mark.parametrize(
    "now", [ORDER_UNTIL, ORDER_UNTIL + timedelta(hours=1)], ids=["at", "after"]
)
def test_payment_after_the_order_expired_is_refused(now: datetime) -> None:
    error = refused(lambda b: confirm_payment(b, now=now), booking_in(S.AWAITING_PAYMENT))
    assert error.code == "PAYMENT_ORDER_EXPIRED"
    assert error.detail["expired_at"] == ORDER_UNTIL.isoformat()


def test_a_booking_cannot_be_paid_twice() -> None:
    error = refused(lambda b: confirm_payment(b, now=LIVE), booking_in(S.CONFIRMED))
    assert error.code == "BOOKING_ALREADY_CONFIRMED"


def test_a_booking_confirmed_without_payment_cannot_be_paid() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    submit(booking, channel="insurance", payment_required=False, now=LIVE)
    error = refused(lambda b: confirm_payment(b, now=LIVE), booking)
    assert error.code == "BOOKING_ALREADY_CONFIRMED"
    assert booking.paid is False


@pytest.mark.parametrize("step", ["abandon", "expire"])
def test_a_confirmed_booking_cannot_be_abandoned_or_expired(step: str) -> None:
    run = {"abandon": lambda b: abandon(b, now=LIVE), "expire": lambda b: expire(b, LONG_AFTER)}
    error = refused(run[step], booking_in(S.CONFIRMED))
    assert error.code == "BOOKING_STATE_INVALID"


# ----------------------------------------------------------------------------- expiring


@pytest.mark.parametrize("status", [S.HELD, S.PATIENT_CHOSEN])
def test_a_hold_expires_exactly_at_its_deadline(status: BookingStatus) -> None:
    booking = booking_in(status)
    expire(booking, now=HOLD_UNTIL)
    assert booking.status is S.EXPIRED
    assert (booking.ended_at, booking.end_reason) == (HOLD_UNTIL, "timed_out")
    assert not booking.holds_inventory


@pytest.mark.parametrize("status", [S.HELD, S.PATIENT_CHOSEN])
def test_a_live_hold_cannot_be_expired(status: BookingStatus) -> None:
    error = refused(lambda b: expire(b, now=HOLD_UNTIL - TICK), booking_in(status))
    assert error.code == "BOOKING_STATE_INVALID"
    assert error.detail["reason"] == "not_yet_expired"


def test_an_open_payment_order_keeps_the_booking_past_the_hold() -> None:
    booking = booking_in(S.AWAITING_PAYMENT)
    error = refused(lambda b: expire(b, now=ORDER_UNTIL - TICK), booking)
    assert error.code == "BOOKING_STATE_INVALID"
    expire(booking, now=ORDER_UNTIL)
    assert booking.status is S.EXPIRED


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_every_step_on_an_expired_booking_says_the_hold_expired(step: Step) -> None:
    assert refused(step.run, booking_in(S.EXPIRED)).code == "HOLD_EXPIRED"


# ----------------------------------------------------------------------------- cancelling


def test_a_patient_can_cancel_before_the_deadline() -> None:
    booking = booking_in(S.CONFIRMED)
    cancel_by_patient(booking, deadline=CANCEL_DEADLINE, now=CANCEL_DEADLINE - TICK)
    assert booking.status is S.CANCELLED_BY_PATIENT
    assert booking.end_reason == "patient_cancelled"
    assert booking.paid is True  # the refund is the service's business; the record stays


@pytest.mark.parametrize(
    "now", [CANCEL_DEADLINE, CANCEL_DEADLINE + timedelta(days=1)], ids=["at", "after"]
)
def test_cancellation_is_refused_after_the_deadline(now: datetime) -> None:
    error = refused(
        lambda b: cancel_by_patient(b, deadline=CANCEL_DEADLINE, now=now), booking_in(S.CONFIRMED)
    )
    assert error.code == "CANCEL_DEADLINE_PASSED"
    assert error.detail["deadline"] == CANCEL_DEADLINE.isoformat()


@pytest.mark.parametrize("status", sorted(HOLDING_STATUSES))
def test_an_unconfirmed_booking_is_not_cancelled_but_abandoned(status: BookingStatus) -> None:
    error = refused(
        lambda b: cancel_by_patient(b, deadline=CANCEL_DEADLINE, now=LIVE), booking_in(status)
    )
    assert error.code == "BOOKING_STATE_INVALID"


@pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
@pytest.mark.parametrize("now", [LIVE, LONG_AFTER], ids=["live", "past_every_deadline"])
def test_hospital_stop_ends_any_live_booking(status: BookingStatus, now: datetime) -> None:
    booking = booking_in(status)
    cancel_by_hospital(booking, now=now, reason="doctor_ill")
    assert booking.status is S.CANCELLED_BY_HOSPITAL
    assert (booking.ended_at, booking.end_reason) == (now, "doctor_ill")
    assert not booking.holds_inventory


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES - {S.EXPIRED}))
def test_hospital_stop_cannot_touch_an_ended_booking(status: BookingStatus) -> None:
    error = refused(lambda b: cancel_by_hospital(b, now=LIVE), booking_in(status))
    assert error.code == "BOOKING_STATE_INVALID"


# ----------------------------------------------------------------------------- the visit


def test_check_in_ends_a_confirmed_booking() -> None:
    booking = booking_in(S.CONFIRMED)
    check_in(booking, now=LIVE)
    assert booking.status is S.CHECKED_IN
    assert booking.ended_at == LIVE


def test_no_show_only_after_the_session_ends() -> None:
    booking = booking_in(S.CONFIRMED)
    error = refused(
        lambda b: mark_no_show(b, session_end=SESSION_END, now=SESSION_END - TICK), booking
    )
    assert error.code == "BOOKING_STATE_INVALID"
    assert error.detail["reason"] == "session_not_over"
    mark_no_show(booking, session_end=SESSION_END, now=SESSION_END)
    assert booking.status is S.NO_SHOW
    assert (booking.ended_at, booking.end_reason) == (SESSION_END, "no_show")


def test_a_checked_in_patient_is_never_a_no_show() -> None:
    booking = booking_in(S.CHECKED_IN)
    error = refused(lambda b: mark_no_show(b, session_end=SESSION_END, now=AFTER_SESSION), booking)
    assert error.code == "BOOKING_STATE_INVALID"


# ----------------------------------------------------------------------------- the graph


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_a_final_status_never_changes_again(status: BookingStatus) -> None:
    for step in STEPS:
        refused(step.run, booking_in(status))


@pytest.mark.parametrize("status", list(S))
def test_holds_inventory_exactly_while_a_unit_is_reserved_but_not_booked(
    status: BookingStatus,
) -> None:
    expected = status in {S.HELD, S.PATIENT_CHOSEN, S.AWAITING_PAYMENT}
    assert booking_in(status).holds_inventory is expected


def test_the_deadline_is_the_hold_until_a_payment_order_is_open() -> None:
    assert booking_in(S.HELD).deadline() == HOLD_UNTIL
    assert booking_in(S.PATIENT_CHOSEN).deadline() == HOLD_UNTIL
    assert booking_in(S.AWAITING_PAYMENT).deadline() == ORDER_UNTIL
    assert booking_in(S.CONFIRMED).deadline() == HOLD_UNTIL


def test_every_status_is_reachable_from_a_fresh_hold() -> None:
    assert reachable_from(S.HELD) == set(S)
    for status in FINAL_STATUSES:
        assert reachable_from(status) == {status}


# ----------------------------------------------------------------------------- property


@dataclasses.dataclass(frozen=True)
class Move:
    """One transition with everything any transition might need, drawn at random."""

    name: str
    now: datetime
    patient_id: str
    channel: PaymentChannel
    payment_required: bool
    order_minutes: int
    other_time: datetime  # the cancellation deadline, or the end of the session


def _at(lo: int, hi: int) -> st.SearchStrategy[datetime]:
    return st.integers(min_value=lo, max_value=hi).map(lambda m: T0 + timedelta(minutes=m))


# Times land mostly inside the hold, often around the payment order, sometimes anywhere in the
# day, and need not move forward: a late sweeper or a replayed callback can come at any clock.
when = st.one_of(_at(-1, 11), _at(-1, 40), _at(-5, 24 * 60))
NAMES = sorted({step.name.split("_paying")[0] for step in STEPS})
# Per status, the steps that can work from it (per the table above) and the ones that move it
# along the happy path.
HOPEFUL = {
    status: sorted({step.name.split("_paying")[0] for step in STEPS if status in step.legal})
    for status in S
}
FORWARD = {
    S.HELD: ["choose_patient"],
    S.PATIENT_CHOSEN: ["submit"],
    S.AWAITING_PAYMENT: ["confirm_payment"],
    S.CONFIRMED: HOPEFUL[S.CONFIRMED],
}
# The name of the next step drawn, per status: a happy-path step, a step that can work from
# here, or any step at all, legal or not. Without the first two a walk nearly always ends at
# its first abandon and never reaches payment or the visit.
NEXT_STEP = {
    status: st.one_of(
        *(st.sampled_from(pool) for pool in (FORWARD.get(status), HOPEFUL[status]) if pool),
        st.sampled_from(NAMES),
    )
    for status in S
}
# Everything else a step might need; the name is filled in from NEXT_STEP.
MOVE = st.builds(
    Move,
    name=st.just(""),
    now=when,
    patient_id=st.sampled_from(["p-1", "p-2"]),
    channel=st.sampled_from(["self_pay", "insurance"]),
    payment_required=st.booleans(),
    order_minutes=st.integers(min_value=1, max_value=60),
    other_time=when,
)


def apply(booking: Booking, move: Move) -> None:
    now = move.now
    match move.name:
        case "choose_patient":
            choose_patient(booking, move.patient_id, now=now)
        case "submit":
            paying = move.payment_required
            submit(
                booking,
                channel=move.channel,
                payment_required=paying,
                now=now,
                order_no="GH-p" if paying else None,
                order_expires_at=now + timedelta(minutes=move.order_minutes) if paying else None,
            )
        case "confirm_payment":
            confirm_payment(booking, now=now)
        case "abandon":
            abandon(booking, now=now)
        case "expire":
            expire(booking, now=now)
        case "cancel_by_patient":
            cancel_by_patient(booking, deadline=move.other_time, now=now)
        case "cancel_by_hospital":
            cancel_by_hospital(booking, now=now)
        case "check_in":
            check_in(booking, now=now)
        case "mark_no_show":
            mark_no_show(booking, session_end=move.other_time, now=now)
        case _:
            raise AssertionError(move.name)


def attempt(booking: Booking, move: Move) -> GuahaoError | None:
    """The refusal of ``move``, or None when it went through."""
    try:
        apply(booking, move)
    except GuahaoError as error:
        return error
    return None


CATALOGUED = {
    "BOOKING_STATE_INVALID",
    "HOLD_EXPIRED",
    "BOOKING_ALREADY_CONFIRMED",
    "PATIENT_NOT_CHOSEN",
    "PAYMENT_ORDER_EXPIRED",
    "CANCEL_DEADLINE_PASSED",
}


def assert_consistent(booking: Booking) -> None:
    status = booking.status
    assert booking.holds_inventory is (status in {S.HELD, S.PATIENT_CHOSEN, S.AWAITING_PAYMENT})
    if status is S.AWAITING_PAYMENT:
        assert booking.payment_order_no is not None
        assert booking.payment_expires_at is not None
    if status in {S.CONFIRMED, S.CHECKED_IN, S.NO_SHOW, S.CANCELLED_BY_PATIENT}:
        assert booking.patient_id is not None
        assert booking.confirmed_at is not None
        assert booking.paid is booking.payment_required
    if status in FINAL_STATUSES:
        assert booking.ended_at is not None
    else:
        assert booking.ended_at is None


@settings(max_examples=500, deadline=None)
@given(st.data(), st.integers(min_value=0, max_value=12))
def test_random_steps_at_random_times_never_leave_the_state_graph(
    data: st.DataObject, length: int
) -> None:
    booking = fresh_hold()
    reached = {booking.status}
    for _ in range(length):
        name = data.draw(NEXT_STEP[booking.status])
        move = dataclasses.replace(data.draw(MOVE), name=name)
        before = copy.deepcopy(booking)
        error = attempt(booking, move)
        if error is not None:
            assert error.code in CATALOGUED
            assert booking == before
        else:
            assert before.status not in FINAL_STATUSES
            assert (before.status, booking.status) in EDGES
        reached.add(booking.status)
        assert_consistent(booking)
    assert reached <= reachable_from(S.HELD)


def test_a_lost_hold_ends_the_booking_before_its_own_deadline() -> None:
    booking = booking_in(S.PATIENT_CHOSEN)
    expire(booking, LIVE, hold_lost=True)
    assert (booking.status, booking.ended_at, booking.end_reason) == (
        S.EXPIRED,
        LIVE,
        "hold_lost",
    )


def test_a_unit_awaiting_payment_stays_held_for_a_grace_after_the_order() -> None:
    assert booking_in(S.PATIENT_CHOSEN).unit_held_until() == HOLD_UNTIL
    assert booking_in(S.AWAITING_PAYMENT).unit_held_until() == ORDER_UNTIL + PAYMENT_GRACE

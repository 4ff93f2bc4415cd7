"""The booking journey: hold, choose patient, submit (pay), view, leave, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody

from guahao.platform.bookings import Booking
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.queries import (
    BookingDetail,
    QueryService,
    booking_answer,
    held_answer,
)
from guahao.web.auth import require_account
from guahao.web.dependencies import provide_client
from guahao.web.idempotency import IDEMPOTENCY_KEY_OPT, KEPT_BY_ROUTE
from guahao.web.schemas import BookingSubmit, HoldCreate, PatientChoice

__all__ = ["BookingController"]

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="Repeat a request with the same key to get the same hold back, never two.",
    ),
]


class BookingController(Controller):
    path = "/api/v1"
    tags = ["bookings"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @post(
        "/holds",
        operation_id="holdSlot",
        status_code=201,
        # the hold pool's replay record answers a repeated key (BookingService.grant_hold)
        opt={IDEMPOTENCY_KEY_OPT: KEPT_BY_ROUTE},
        response_headers=[
            ResponseHeader(
                name="Idempotent-Replayed",
                description="`true` on the answer to a repeated key: the first hold, again.",
                documentation_only=True,
            )
        ],
    )
    async def hold(
        self,
        bookings: NamedDependency[BookingService],
        request: Request[Any, Any, Any],
        data: JSONBody[HoldCreate],
        idempotency_key: IdempotencyKey,
    ) -> Response[BookingDetail]:
        """锁号: reserve one unit of a slot for this account for the hospital's hold time.

        A repeated ``Idempotency-Key`` is answered with the first hold as it was first
        answered (``Idempotent-Replayed: true``), never a second hold.

        One dependency: Litestar awaits a lone dependency directly but resolves two or more
        in an anyio task group on every request, 7 % of a grant's samples
        (bench/profiles/grant3-*); the request's ``client`` comes from its provider here."""
        account = request.state.account_id
        outcome = await bookings.grant_hold(
            account_id=account,
            slot_id=data.slot_id,
            idempotency_key=idempotency_key,
            client=provide_client(request, request.app.state),
        )
        detail = held_answer(outcome.granted, outcome.facts)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return Response(detail, status_code=201, headers=headers)

    @get("/bookings", operation_id="listBookings")
    async def list(
        self, queries: NamedDependency[QueryService], request: Request[Any, Any, Any]
    ) -> list[BookingDetail]:
        return await queries.bookings_of(request.state.account_id)

    @get("/bookings/{booking_id:str}", operation_id="getBooking")
    async def get(
        self,
        queries: NamedDependency[QueryService],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
    ) -> BookingDetail:
        return await queries.booking(booking_id, account_id=request.state.account_id)

    @put("/bookings/{booking_id:str}/patient", operation_id="choosePatient")
    async def choose_patient(
        self,
        bookings: NamedDependency[BookingService],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
        data: JSONBody[PatientChoice],
    ) -> BookingDetail:
        """Put a patient on the held unit; answered from the booking as the step left it.

        The steps after the hold answer without reading the booking back and take one
        dependency (see ``hold``): both cost each step a tenth (bench/profiles/flow2-*)."""
        booking = await bookings.choose_patient(
            account_id=request.state.account_id,
            booking_id=booking_id,
            patient_id=data.patient_id,
        )
        return await _answer(bookings, booking)

    @post("/bookings/{booking_id:str}/submit", operation_id="submitBooking", status_code=200)
    async def submit(
        self,
        bookings: NamedDependency[BookingService],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
        data: JSONBody[BookingSubmit],
    ) -> BookingDetail:
        """Confirm now, or open a payment order whose ``payUrl`` the payer follows."""
        booking, order = await bookings.submit(
            account_id=request.state.account_id, booking_id=booking_id, channel=data.channel
        )
        return await _answer(bookings, booking, pay_url=order.pay_url if order else None)

    @post("/bookings/{booking_id:str}/leave", operation_id="leaveBooking", status_code=200)
    async def leave(
        self,
        bookings: NamedDependency[BookingService],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
    ) -> BookingDetail:
        """The patient left the flow: the unit is released at once."""
        booking = await bookings.leave(account_id=request.state.account_id, booking_id=booking_id)
        return await _answer(bookings, booking)

    @post("/bookings/{booking_id:str}/cancel", operation_id="cancelBooking", status_code=200)
    async def cancel(
        self,
        bookings: NamedDependency[BookingService],
        request: Request[Any, Any, Any],
        booking_id: FromPath[str],
    ) -> BookingDetail:
        """退号 before the hospital's deadline; paid fees are refunded."""
        booking = await bookings.cancel(account_id=request.state.account_id, booking_id=booking_id)
        return await _answer(bookings, booking)


async def _answer(
    bookings: BookingService, booking: Booking, *, pay_url: str | None = None
) -> BookingDetail:
    """The view of a booking a step has just changed, from the booking and its slot's cached
    facts (``booking_answer``)."""
    return booking_answer(booking, await bookings.slot_facts(booking.slot_id), pay_url=pay_url)

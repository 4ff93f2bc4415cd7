"""The citizen's priority rebooking offers (优先改约) after a hospital cancellation or stop:
list with their proposed units, accept one, decline; and the one-tap 退号 link of a visit
reminder (its page, which the link opens, is ``guahao.web.pages.one_tap``). Thin: decode,
call the service, encode."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.platform.services.queries import BookingDetail, QueryService
from guahao.platform.services.rebooking_offers import RebookingOffers, RebookingOfferView
from guahao.platform.services.visit_reminders import VisitReminders
from guahao.web.auth import require_account

__all__ = [
    "BookingCancelled",
    "OneTapController",
    "RebookingAccept",
    "RebookingController",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RebookingAccept(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """The proposed unit the patient takes (one of the offer's ``proposals``)."""

    slot_id: Id


class RebookingController(Controller):
    path = "/api/v1/rebooking-offers"
    tags = ["rebooking"]  # noqa: RUF012
    guards = [require_account]  # noqa: RUF012

    @get("/", operation_id="listRebookingOffers")
    async def offers(
        self, rebooking: NamedDependency[RebookingOffers], request: Request[Any, Any, Any]
    ) -> list[RebookingOfferView]:
        """The account's offers, newest first, each with its proposed units and ``answerBy``
        (the hospital's wall time)."""
        return await rebooking.offers(request.state.account_id)

    @post("/{offer_id:str}/accept", operation_id="acceptRebookingOffer", status_code=200)
    async def accept(
        self,
        rebooking: NamedDependency[RebookingOffers],
        queries: NamedDependency[QueryService],
        request: Request[Any, Any, Any],
        offer_id: FromPath[str],
        data: JSONBody[RebookingAccept],
    ) -> BookingDetail:
        """Take one proposed unit: booked and confirmed with the cancelled booking's payment."""
        account = request.state.account_id
        booking = await rebooking.accept(
            account_id=account, offer_id=offer_id, slot_id=data.slot_id
        )
        return await queries.booking(booking.id, account_id=account)

    @post("/{offer_id:str}/decline", operation_id="declineRebookingOffer", status_code=200)
    async def decline(
        self,
        rebooking: NamedDependency[RebookingOffers],
        request: Request[Any, Any, Any],
        offer_id: FromPath[str],
    ) -> RebookingOfferView:
        """No thank you: the payment is refunded in full, and nothing counts against anyone."""
        return await rebooking.decline(account_id=request.state.account_id, offer_id=offer_id)


class OneTapController(Controller):
    """The one-tap 退号 link in a visit reminder: the token is the credential (no sign-in)."""

    path = "/api/v1/one-tap"
    tags = ["reminders"]  # noqa: RUF012

    @post("/{token:str}/cancel", operation_id="cancelByReminderLink", status_code=200)
    async def cancel(
        self, reminders: NamedDependency[VisitReminders], token: FromPath[str]
    ) -> BookingCancelled:
        """退号 from a reminder: single use, and only before the hospital's deadline."""
        booking = await reminders.cancel_by_link(token)
        return BookingCancelled(booking_id=booking.id, status=booking.status.value)


class BookingCancelled(msgspec.Struct, frozen=True, rename="camel"):
    """What the one-tap link did."""

    booking_id: str
    status: str

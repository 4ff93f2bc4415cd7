"""The citizen's priority rebooking offers (优先改约) after a hospital cancellation or stop:
list with their proposed units, accept one, decline; and the one-tap 退号 link of a visit
reminder. Thin: decode, call the service, encode."""

from __future__ import annotations

import html
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from guahao.platform.errors import GuahaoError
from guahao.platform.services.queries import BookingDetail, QueryService
from guahao.platform.services.rebooking_offers import RebookingOffers, RebookingOfferView
from guahao.platform.services.visit_reminders import VisitReminders
from guahao.web.auth import require_account

__all__ = [
    "BookingCancelled",
    "OneTapController",
    "OneTapPageController",
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


class OneTapPageController(Controller):
    """Where the reminder's link opens (a tap is a GET): the visit and a button that cancels
    it. The GET changes nothing (link previewers and prefetchers open links too); the button
    POSTs back here and the answer says what happened, in Chinese and English."""

    path = "/one-tap"
    include_in_schema = False

    @get("/{token:str}", media_type=MediaType.HTML)
    async def page(self, token: FromPath[str]) -> str:
        quoted = html.escape(token)
        return _page(
            "一键退号 Cancel this visit",
            "如不能按时就诊，请退号，把号源留给其他患者。"
            "<br>If you cannot come, cancel so the unit goes to someone else.",
            f"<form method='post' action='/one-tap/{quoted}'>"
            "<button>确认退号 Cancel the visit</button></form>",
        )

    @post("/{token:str}", media_type=MediaType.HTML, status_code=200)
    async def cancel(self, reminders: NamedDependency[VisitReminders], token: FromPath[str]) -> str:
        try:
            await reminders.cancel_by_link(token)
        except GuahaoError as refused:
            return _page(
                "未能退号 Not cancelled",
                f"{html.escape(refused.message_zh)}<br>{html.escape(refused.message_en)}",
                "",
            )
        return _page("已退号 Cancelled", "您的预约已取消。<br>Your visit is cancelled.", "")


def _page(title: str, body: str, action: str) -> str:
    return (
        "<!doctype html><html lang='zh-CN'><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><h1>{title}</h1><p>{body}</p>{action}</html>"
    )


class BookingCancelled(msgspec.Struct, frozen=True, rename="camel"):
    """What the one-tap link did."""

    booking_id: str
    status: str

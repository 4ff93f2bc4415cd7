"""Priority rebooking offers (优先改约) on the pages: after a hospital cancels a booking or stops
its session, the patient sees the units proposed (the same doctor first, nearest dates), the
deadline in the hospital's wall time, and takes one unit or declines.

Each form post is one call of the rebooking service (the same the JSON API makes). Accepted,
the new booking is confirmed with the cancelled booking's payment and the page says so;
declined, the payment goes back in full and the page shows the refund as it progresses. A
refusal (the unit taken meanwhile, the offer ended) is shown on the list with its code.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from guahao.platform.errors import GuahaoError
from guahao.platform.services.accounts import AccountService
from guahao.platform.services.citizen_views import BookingTerms, CitizenViews
from guahao.platform.services.queries import BookingDetail, QueryService
from guahao.platform.services.rebooking_offers import RebookingOffers, RebookingOfferView
from guahao.web.pages.booking_flow import step_of
from guahao.web.pages.page_context import PageContext, render, see_other, status_of, verified_form

__all__ = ["OfferPages", "open_offers"]


@dataclass(frozen=True)
class OfferCard:
    """One offer with what the page shows beside it: the cancelled visit, its refund, and the
    booking made when a unit was taken."""

    offer: RebookingOfferView
    cancelled: BookingDetail
    refund: BookingTerms | None
    accepted: BookingDetail | None


def open_offers(offers: list[RebookingOfferView]) -> int:
    """How many offers still wait for an answer (the count "my" page shows)."""
    return sum(1 for offer in offers if offer.status == "open")


async def offers_page(
    page: PageContext,
    rebooking: RebookingOffers,
    queries: QueryService,
    accounts: AccountService,
    citizen_views: CitizenViews,
    account_id: str,
    error: GuahaoError | None = None,
) -> Template:
    """My rebooking offers, open ones first (newest first within each)."""
    offers = await rebooking.offers(account_id)
    terms = await citizen_views.booking_terms(
        account_id, [offer.cancelled_booking_id for offer in offers]
    )
    cards = []
    for offer in sorted(offers, key=lambda o: o.status != "open"):
        accepted = offer.accepted_booking_id
        cards.append(
            OfferCard(
                offer=offer,
                cancelled=await queries.booking(offer.cancelled_booking_id, account_id=account_id),
                refund=terms.get(offer.cancelled_booking_id),
                accepted=await queries.booking(accepted, account_id=account_id)
                if accepted
                else None,
            )
        )
    return render(
        page,
        "my_offers.html",
        status_code=status_of(error) if error else 200,
        cards=cards,
        open_count=open_offers(offers),
        patients={p.id: p for p in await accounts.patients(account_id)},
        error=error,
    )


class OfferPages(Controller):
    path = "/me/offers"
    include_in_schema = False

    @get("/", name="my_offers")
    async def offers(
        self,
        page: NamedDependency[PageContext],
        rebooking: NamedDependency[RebookingOffers],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
    ) -> Template:
        account_id = page.require_account()
        return await offers_page(page, rebooking, queries, accounts, citizen_views, account_id)

    @post("/{offer_id:str}/accept", name="accept_offer", status_code=303)
    async def accept(
        self,
        page: NamedDependency[PageContext],
        rebooking: NamedDependency[RebookingOffers],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        offer_id: FromPath[str],
    ) -> Template | Redirect:
        """Take one proposed unit: confirmed with the same payment (the list says so), or,
        where nothing was paid online but the hospital takes payment, on to its cashier."""
        form = await verified_form(page)
        account_id = page.require_account()
        try:
            booking = await rebooking.accept(
                account_id=account_id, offer_id=offer_id, slot_id=form.get("slot_id", "")
            )
        except GuahaoError as exc:
            return await offers_page(
                page, rebooking, queries, accounts, citizen_views, account_id, exc
            )
        detail = await queries.booking(booking.id, account_id=account_id)
        if detail.status == "awaiting_payment":
            return see_other(step_of(detail))
        return see_other(f"/me/offers#offer-{offer_id}")

    @post("/{offer_id:str}/decline", name="decline_offer", status_code=303)
    async def decline(
        self,
        page: NamedDependency[PageContext],
        rebooking: NamedDependency[RebookingOffers],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        offer_id: FromPath[str],
    ) -> Template | Redirect:
        """No thank you: the payment is refunded in full; nothing counts against anyone."""
        await verified_form(page)
        account_id = page.require_account()
        try:
            await rebooking.decline(account_id=account_id, offer_id=offer_id)
        except GuahaoError as exc:
            return await offers_page(
                page, rebooking, queries, accounts, citizen_views, account_id, exc
            )
        return see_other(f"/me/offers#offer-{offer_id}")

"""The signed-in citizen's own pages: bookings (退号 with its deadline, refunds), patients
(the family members booked for), notifications (read one, read all), and each patient's
standing (strikes, a ban with its reason and end, the appeal form). Waitlist and lottery
entries are ``waiting.py``'s."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from guahao.platform.errors import GuahaoError
from guahao.platform.services.accounts import RELATIONS, AccountService
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.platform.services.blacklist import BlacklistService
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.citizen_views import CitizenViews
from guahao.platform.services.inbox import Inbox
from guahao.platform.services.queries import QueryService
from guahao.platform.services.rebooking_offers import RebookingOffers
from guahao.web.pages.booking_flow import DOCUMENT_TYPES, HOLDING
from guahao.web.pages.page_context import (
    PageContext,
    local_path,
    render,
    see_other,
    status_of,
    verified_form,
)
from guahao.web.pages.patient_form import add_patient_from_form
from guahao.web.pages.rebooking import open_offers

__all__ = ["MyPages"]


class MyPages(Controller):
    path = "/me"
    include_in_schema = False

    @get("/", name="me")
    async def me(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        rebooking: NamedDependency[RebookingOffers],
    ) -> Template:
        account_id = page.require_account()
        return render(
            page,
            "me.html",
            patients=await accounts.patients(account_id),
            open_offers=open_offers(await rebooking.offers(account_id)),
        )

    @get("/bookings", name="my_bookings")
    async def bookings(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
    ) -> Template:
        account_id = page.require_account()
        return await self._bookings_page(page, queries, accounts, citizen_views, account_id)

    async def _bookings_page(
        self,
        page: PageContext,
        queries: QueryService,
        accounts: AccountService,
        citizen_views: CitizenViews,
        account_id: str,
        error: GuahaoError | None = None,
    ) -> Template:
        found = await queries.bookings_of(account_id)
        terms = await citizen_views.booking_terms(account_id, [b.id for b in found])
        patients = {p.id: p for p in await accounts.patients(account_id)}
        return render(
            page,
            "my_bookings.html",
            status_code=status_of(error) if error else 200,
            bookings=found,
            terms=terms,
            patients=patients,
            holding=HOLDING,
            error=error,
        )

    @post("/bookings/{booking_id:str}/cancel", name="cancel_booking", status_code=303)
    async def cancel(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        bookings: NamedDependency[BookingService],
        citizen_views: NamedDependency[CitizenViews],
        availability_feed: NamedDependency[AvailabilityFeed],
        booking_id: FromPath[str],
    ) -> Template | Redirect:
        """退号: refused after the hospital's deadline (the page says why)."""
        await verified_form(page)
        account_id = page.require_account()
        try:
            booking = await bookings.cancel(account_id=account_id, booking_id=booking_id)
        except GuahaoError as exc:
            return await self._bookings_page(
                page, queries, accounts, citizen_views, account_id, error=exc
            )
        await availability_feed.changed([booking.session_id])
        return see_other("/me/bookings")

    @get("/patients", name="my_patients")
    async def patients(
        self, page: NamedDependency[PageContext], accounts: NamedDependency[AccountService]
    ) -> Template:
        account_id = page.require_account()
        return await self._patients_page(page, accounts, account_id)

    async def _patients_page(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        account_id: str,
        error: GuahaoError | None = None,
        entered: dict[str, str] | None = None,
    ) -> Template:
        return render(
            page,
            "my_patients.html",
            status_code=status_of(error) if error else 200,
            patients=await accounts.patients(account_id),
            relations=sorted(RELATIONS),
            document_types=DOCUMENT_TYPES,
            error=error,
            entered=entered or {},
        )

    @post("/patients", name="add_patient", status_code=303)
    async def add_patient(
        self, page: NamedDependency[PageContext], accounts: NamedDependency[AccountService]
    ) -> Template | Redirect:
        form = await verified_form(page)
        account_id = page.require_account()
        try:
            await add_patient_from_form(accounts, account_id, form)
        except GuahaoError as exc:
            return await self._patients_page(page, accounts, account_id, exc, form)
        # added from a waitlist or lottery page: back to it, the new patient there to choose
        return see_other(local_path(form.get("next"), "/me/patients"))

    @post("/patients/{patient_id:str}/proof", name="prove_patient", status_code=303)
    async def prove_patient(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        patient_id: FromPath[str],
    ) -> Template | Redirect:
        """The code sent to the person's phone on file makes the pending relation."""
        form = await verified_form(page)
        account_id = page.require_account()
        try:
            await accounts.confirm_patient(
                account_id=account_id, patient_id=patient_id, code=form.get("code", "")
            )
        except GuahaoError as exc:
            return await self._patients_page(page, accounts, account_id, exc)
        # confirmed from the booking journey's patient step: back to it, the patient chosen
        return see_other(local_path(form.get("next"), "/me/patients"))

    @post("/patients/{patient_id:str}/proof-code", name="resend_patient_code", status_code=303)
    async def resend_patient_code(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        patient_id: FromPath[str],
    ) -> Template | Redirect:
        form = await verified_form(page)
        account_id = page.require_account()
        try:
            await accounts.resend_patient_code(account_id=account_id, patient_id=patient_id)
        except GuahaoError as exc:
            return await self._patients_page(page, accounts, account_id, exc)
        return see_other(local_path(form.get("next"), "/me/patients"))

    @post("/patients/{patient_id:str}/remove", name="remove_patient", status_code=303)
    async def remove_patient(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        patient_id: FromPath[str],
    ) -> Template | Redirect:
        await verified_form(page)
        account_id = page.require_account()
        try:
            await accounts.remove_patient(account_id=account_id, patient_id=patient_id)
        except GuahaoError as exc:
            return await self._patients_page(page, accounts, account_id, exc)
        return see_other("/me/patients")

    @get("/patients/{patient_id:str}/standing", name="standing")
    async def standing(
        self,
        page: NamedDependency[PageContext],
        blacklist: NamedDependency[BlacklistService],
        accounts: NamedDependency[AccountService],
        patient_id: FromPath[str],
    ) -> Template:
        account_id = page.require_account()
        return await self._standing_page(page, blacklist, accounts, account_id, patient_id)

    async def _standing_page(
        self,
        page: PageContext,
        blacklist: BlacklistService,
        accounts: AccountService,
        account_id: str,
        patient_id: FromPath[str],
        error: GuahaoError | None = None,
    ) -> Template:
        standing = await blacklist.standing(account_id, patient_id)
        patient = next(p for p in await accounts.patients(account_id) if p.id == patient_id)
        return render(
            page,
            "standing.html",
            status_code=status_of(error) if error else 200,
            standing=standing,
            patient=patient,
            error=error,
        )

    @post("/patients/{patient_id:str}/appeal", name="appeal", status_code=303)
    async def appeal(
        self,
        page: NamedDependency[PageContext],
        blacklist: NamedDependency[BlacklistService],
        accounts: NamedDependency[AccountService],
        patient_id: FromPath[str],
    ) -> Template | Redirect:
        """申诉 against the patient's ban in force; the authority decides."""
        form = await verified_form(page)
        account_id = page.require_account()
        try:
            await blacklist.file_appeal(
                account_id, patient_id, form.get("entry_id") or None, form.get("statement", "")
            )
        except GuahaoError as exc:
            return await self._standing_page(page, blacklist, accounts, account_id, patient_id, exc)
        return see_other(f"/me/patients/{patient_id}/standing")

    @get("/notifications", name="my_notifications")
    async def notifications(
        self, page: NamedDependency[PageContext], citizen_views: NamedDependency[CitizenViews]
    ) -> Template:
        account_id = page.require_account()
        return await self._notifications_page(page, citizen_views, account_id)

    async def _notifications_page(
        self,
        page: PageContext,
        citizen_views: CitizenViews,
        account_id: str,
        error: GuahaoError | None = None,
    ) -> Template:
        messages = await citizen_views.inbox(account_id)
        return render(
            page,
            "my_notifications.html",
            status_code=status_of(error) if error else 200,
            messages=messages,
            error=error,
        )

    @post("/notifications/read-all", name="read_all_notifications", status_code=303)
    async def read_all(
        self, page: NamedDependency[PageContext], inbox: NamedDependency[Inbox]
    ) -> Redirect:
        """全部已读: every unread message of the account, at once."""
        await verified_form(page)
        await inbox.mark_all_read(page.require_account())
        return see_other("/me/notifications")

    @post("/notifications/{notification_id:str}/read", name="read_notification", status_code=303)
    async def read(
        self,
        page: NamedDependency[PageContext],
        inbox: NamedDependency[Inbox],
        citizen_views: NamedDependency[CitizenViews],
        notification_id: FromPath[str],
    ) -> Template | Redirect:
        """标为已读: one message (another account's is as unknown as a made-up id)."""
        await verified_form(page)
        account_id = page.require_account()
        try:
            await inbox.mark_read(account_id=account_id, notification_id=notification_id)
        except GuahaoError as exc:
            return await self._notifications_page(page, citizen_views, account_id, exc)
        return see_other(f"/me/notifications#message-{notification_id}")

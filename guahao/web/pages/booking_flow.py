"""The booking flow as the article draws it: choose the target → hold → choose the patient
(or add one) → pay → done.

Each step is a page; each form post is one platform command (the same the API calls) and then
a redirect to the page of the step the booking is now in, so reloading or going back always
shows where the booking really stands. Leaving the patient step (back, closing the tab) gives
the unit back at once: the page sends ``leave`` with ``navigator.sendBeacon``.
"""

from __future__ import annotations

from typing import Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.payments.sandbox import SandboxGateway
from guahao.platform.services.accounts import RELATIONS, AccountService
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.citizen_views import CitizenViews
from guahao.platform.services.queries import BookingDetail, QueryService
from guahao.web.pages.page_context import (
    PageContext,
    render,
    see_other,
    status_of,
    verified_form,
)
from guahao.web.pages.patient_form import add_patient_from_form

__all__ = ["DOCUMENT_TYPES", "PATIENT_RELATIONS", "BookingFlowPages", "step_of"]

HOLDING = frozenset({"held", "patient_chosen"})
DOCUMENT_TYPES = (
    "resident_id",
    "household_register",
    "passport",
    "hk_macao_permit",
    "taiwan_permit",
    "hmt_residence_permit",
    "foreign_permanent_resident",
)
Channel = Literal["self_pay", "insurance"]


def step_of(booking: BookingDetail) -> str:
    """The path of the page that shows ``booking`` where it stands now."""
    if booking.status in HOLDING:
        return f"/book/{booking.id}"
    if booking.status == "awaiting_payment":
        return f"/book/{booking.id}/pay"
    return f"/book/{booking.id}/done"


class BookingFlowPages(Controller):
    path = "/book"
    include_in_schema = False

    @post("/hold", name="hold", status_code=303)
    async def hold(
        self,
        page: NamedDependency[PageContext],
        bookings: NamedDependency[BookingService],
        queries: NamedDependency[QueryService],
        availability_feed: NamedDependency[AvailabilityFeed],
        client: NamedDependency[ClientContext],
    ) -> Redirect:
        """锁号: the unit is the account's for the hospital's hold time."""
        form = await verified_form(page)
        account_id = page.require_account()
        slot_id = form.get("slot_id", "")
        # one key per rendered page and unit: a double tap gets the same hold back
        key = f"{form.get('key', '')[:60] or page.csrf[:40]}:{slot_id[:39]}"
        booking = await bookings.hold(
            account_id=account_id, slot_id=slot_id, idempotency_key=key, client=client
        )
        await availability_feed.changed([booking.session_id])
        return see_other(f"/book/{booking.id}")

    @get("/{booking_id:str}", name="patient_step")
    async def patient_step(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        booking_id: FromPath[str],
        patient: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        if booking.status not in HOLDING:
            return see_other(step_of(booking))
        return await self._patient_page(
            page, accounts, citizen_views, booking, chosen=patient or booking.patient_id
        )

    async def _patient_page(
        self,
        page: PageContext,
        accounts: AccountService,
        citizen_views: CitizenViews,
        booking: BookingDetail,
        *,
        chosen: str | None = None,
        error: GuahaoError | None = None,
        entered: dict[str, str] | None = None,
    ) -> Template:
        patients = await accounts.patients(page.require_account())
        doctor_id = await citizen_views.doctor_of_session(booking.session_id)
        return render(
            page,
            "patient_step.html",
            status_code=status_of(error) if error else 200,
            booking=booking,
            patients=patients,
            chosen=chosen or (patients[0].id if len(patients) == 1 else None),
            hold_ms=page.ms_until(booking.hold_expires_at),
            doctor_id=doctor_id,
            relations=PATIENT_RELATIONS,
            document_types=DOCUMENT_TYPES,
            error=error,
            entered=entered or {},
        )

    @post("/{booking_id:str}/patients", name="add_patient_in_flow", status_code=303)
    async def add_patient(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        booking_id: FromPath[str],
    ) -> Template | Redirect:
        """添加就诊人 without leaving the flow (the unit stays held)."""
        form = await verified_form(page)
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        try:
            added = await add_patient_from_form(accounts, account_id, form)
        except GuahaoError as exc:
            return await self._patient_page(
                page, accounts, citizen_views, booking, error=exc, entered=form
            )
        return see_other(f"/book/{booking_id}?patient={added.id}")

    @post("/{booking_id:str}/confirm", name="confirm", status_code=303)
    async def confirm(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        bookings: NamedDependency[BookingService],
        citizen_views: NamedDependency[CitizenViews],
        booking_id: FromPath[str],
    ) -> Template | Redirect:
        """Choose the patient and commit: confirmed now, or on to the cashier."""
        form = await verified_form(page)
        account_id = page.require_account()
        patient_id = form.get("patient_id", "")
        channel: Channel = "insurance" if form.get("channel") == "insurance" else "self_pay"
        try:
            await bookings.choose_patient(
                account_id=account_id, booking_id=booking_id, patient_id=patient_id
            )
            await bookings.submit(account_id=account_id, booking_id=booking_id, channel=channel)
        except GuahaoError as exc:
            booking = await queries.booking(booking_id, account_id=account_id)
            if booking.status not in HOLDING:
                raise
            return await self._patient_page(
                page, accounts, citizen_views, booking, chosen=patient_id, error=exc
            )
        booking = await queries.booking(booking_id, account_id=account_id)
        return see_other(step_of(booking))

    @post("/{booking_id:str}/leave", name="leave", status_code=303)
    async def leave(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        bookings: NamedDependency[BookingService],
        citizen_views: NamedDependency[CitizenViews],
        availability_feed: NamedDependency[AvailabilityFeed],
        booking_id: FromPath[str],
    ) -> Redirect:
        """Going back or closing the page: the unit goes back to the pool now. Also the
        target of the page's ``sendBeacon`` (a repeated leave of an ended booking is a no-op)."""
        await verified_form(page)
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        if booking.status in HOLDING or booking.status == "awaiting_payment":
            await bookings.leave(account_id=account_id, booking_id=booking_id)
            await availability_feed.changed([booking.session_id])
        doctor_id = await citizen_views.doctor_of_session(booking.session_id)
        return see_other(f"/doctors/{doctor_id}")

    @get("/{booking_id:str}/pay", name="pay_step")
    async def pay_step(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        booking_id: FromPath[str],
    ) -> Template | Redirect:
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        if booking.status != "awaiting_payment":
            return see_other(step_of(booking))
        return render(
            page,
            "pay_step.html",
            booking=booking,
            pay_ms=page.ms_until(booking.payment_expires_at),
        )

    @post("/{booking_id:str}/pay", name="pay", status_code=303)
    async def pay(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        bookings: NamedDependency[BookingService],
        gateway: NamedDependency[SandboxGateway],
        booking_id: FromPath[str],
    ) -> Redirect:
        """The sandbox cashier's 'pay' button: the gateway takes the money and its signed
        notice confirms the booking, exactly as ``/sandbox/pay`` does for the API."""
        form = await verified_form(page)
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        if booking.status == "awaiting_payment" and booking.payment_order_no:
            channel: Channel = "insurance" if form.get("channel") == "insurance" else "self_pay"
            headers, body = await gateway.pay(booking.payment_order_no, channel=channel)
            await bookings.handle_payment_notice(headers, body)
        booking = await queries.booking(booking_id, account_id=account_id)
        return see_other(step_of(booking))

    @get("/{booking_id:str}/done", name="done_step")
    async def done(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        booking_id: FromPath[str],
    ) -> Template | Redirect:
        account_id = page.require_account()
        booking = await queries.booking(booking_id, account_id=account_id)
        if booking.status in HOLDING or booking.status == "awaiting_payment":
            return see_other(step_of(booking))
        patients = {p.id: p for p in await accounts.patients(account_id)}
        terms = await citizen_views.booking_terms(account_id, [booking.id])
        doctor_id = await citizen_views.doctor_of_session(booking.session_id)
        return render(
            page,
            "done_step.html",
            booking=booking,
            patient=patients.get(booking.patient_id or ""),
            terms=terms.get(booking.id),
            doctor_id=doctor_id,
        )


_RELATION_ORDER = ("self", "parent", "child", "spouse", "sibling", "other")


def _relation_order(relation: str) -> int:
    return _RELATION_ORDER.index(relation) if relation in _RELATION_ORDER else 99


PATIENT_RELATIONS = sorted(RELATIONS, key=_relation_order)
"""The relations a real-name form offers, the usual ones first."""

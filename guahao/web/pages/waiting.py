"""Waiting for a unit from the pages: joining the waitlist (候补) of a sold-out session or of a
doctor over some days, entering a lottery (摇号) of a session released by draw, and leaving
either from "my waits".

Each form post is one call of the waitlist or lottery service (the same the JSON API makes);
a refusal is shown on the page it came from, with its code and message, and the status the
API would give. Who waits is always chosen: booking for a family member is the normal case.

候补预付: where the hospital takes payment online, joining opens a prepayment order and the
citizen goes straight to its cashier (the sandbox's, as the booking flow's pay step); "my
waits" then shows each prepayment's state and what will happen to the money.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from guahao.platform.error_codes import error
from guahao.platform.errors import GuahaoError
from guahao.platform.payments.sandbox import SandboxGateway
from guahao.platform.services.accounts import AccountService
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.citizen_views import CitizenViews
from guahao.platform.services.lottery import LotteryService
from guahao.platform.services.waitlist import WaitlistService, WaitView
from guahao.web.pages.booking_flow import DOCUMENT_TYPES, PATIENT_RELATIONS
from guahao.web.pages.browsing import today_in_region
from guahao.web.pages.page_context import PageContext, render, see_other, status_of, verified_form

__all__ = ["LotteryPages", "WaitPages", "waits_page"]

DOCTOR_WAIT_DAYS = 7
"""The days a doctor-wide wait covers unless the citizen changes them: this week."""


async def waits_page(
    page: PageContext,
    waitlist: WaitlistService,
    lottery: LotteryService,
    accounts: AccountService,
    citizen_views: CitizenViews,
    account_id: str,
    error: GuahaoError | None = None,
) -> Template:
    """My waits: each wait with its place in line, each lottery entry with its draw, and the
    button that ends it while it can still be ended."""
    waits = await waitlist.waits(account_id)
    entries = await lottery.entries(account_id)
    session_ids = {w.session_id for w in waits if w.session_id} | {e.session_id for e in entries}
    doctor_ids = {w.doctor_id for w in waits if w.doctor_id and not w.session_id}
    doctors = {d: await citizen_views.doctor(d) for d in sorted(doctor_ids)}
    return render(
        page,
        "my_waits.html",
        status_code=status_of(error) if error else 200,
        waits=waits,
        entries=entries,
        sessions=await citizen_views.sessions(sorted(session_ids)),
        doctors=doctors,
        patients={p.id: p for p in await accounts.patients(account_id)},
        error=error,
    )


class WaitPages(Controller):
    path = "/me/waits"
    include_in_schema = False

    @get("/", name="my_waits")
    async def waits(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        lottery: NamedDependency[LotteryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
    ) -> Template:
        account_id = page.require_account()
        return await waits_page(page, waitlist, lottery, accounts, citizen_views, account_id)

    @get("/new", name="new_wait")
    async def new_wait(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        session: FromQuery[str | None] = None,
        doctor: FromQuery[str | None] = None,
    ) -> Template:
        """候补: the sold-out session (or the doctor, over some days) and who waits."""
        account_id = page.require_account()
        return await self._join_page(
            page, accounts, citizen_views, account_id, session_id=session, doctor_id=doctor
        )

    async def _join_page(
        self,
        page: PageContext,
        accounts: AccountService,
        citizen_views: CitizenViews,
        account_id: str,
        *,
        session_id: str | None,
        doctor_id: str | None,
        error: GuahaoError | None = None,
        entered: dict[str, str] | None = None,
    ) -> Template:
        entered = entered or {}
        outline = await citizen_views.session(session_id) if session_id else None
        doctor = None
        if outline is None:
            if not doctor_id:
                raise _scope_error("sessionId or doctorId")
            doctor = await citizen_views.doctor(doctor_id)
        today = today_in_region(page)
        return render(
            page,
            "wait_join.html",
            status_code=status_of(error) if error else 200,
            outline=outline,
            doctor=doctor,
            patients=await accounts.patients(account_id),
            chosen=entered.get("patient_id"),
            relations=PATIENT_RELATIONS,
            document_types=DOCUMENT_TYPES,
            entered=entered,
            date_from=entered.get("date_from") or today.isoformat(),
            date_to=entered.get("date_to")
            or (today + timedelta(days=DOCTOR_WAIT_DAYS - 1)).isoformat(),
            error=error,
        )

    @post("/join", name="join_wait", status_code=303)
    async def join(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
    ) -> Template | Redirect:
        form = await verified_form(page)
        account_id = page.require_account()
        session_id = form.get("session_id") or None
        doctor_id = form.get("doctor_id") or None
        try:
            if session_id:
                wait = await waitlist.join(
                    account_id=account_id,
                    patient_id=form.get("patient_id", ""),
                    scope="session",
                    session_id=session_id,
                )
            elif doctor_id:
                date_from, date_to = _dates(form.get("date_from", ""), form.get("date_to", ""))
                wait = await waitlist.join(
                    account_id=account_id,
                    patient_id=form.get("patient_id", ""),
                    scope="doctor",
                    doctor_id=doctor_id,
                    date_from=date_from,
                    date_to=date_to,
                )
            else:
                raise _scope_error("sessionId or doctorId")
        except GuahaoError as exc:
            if exc.code in ("SESSION_NOT_FOUND", "DOCTOR_NOT_FOUND", "WAITLIST_SCOPE_INVALID"):
                raise  # no page to go back to: the error page says it
            return await self._join_page(
                page,
                accounts,
                citizen_views,
                account_id,
                session_id=session_id,
                doctor_id=doctor_id,
                error=exc,
                entered=form,
            )
        if wait.prepayment is not None and wait.prepayment.status == "created":
            return see_other(f"/me/waits/{wait.id}/pay")
        return see_other(f"/me/waits#wait-{wait.id}")

    @get("/{entry_id:str}/pay", name="wait_pay_step")
    async def pay_step(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        entry_id: FromPath[str],
    ) -> Template | Redirect:
        """候补预付's cashier: the amount, the deadline (the hospital's wall time, with the
        date) and what becomes of the money; a wait with nothing to pay goes to my waits."""
        account_id = page.require_account()
        wait = await _wait_of(waitlist, account_id, entry_id)
        if wait.prepayment is None or not _payable(wait):
            return see_other(f"/me/waits#wait-{wait.id}")
        patients = {p.id: p for p in await accounts.patients(account_id)}
        return render(
            page,
            "wait_pay.html",
            wait=wait,
            prepayment=wait.prepayment,
            outline=await citizen_views.session(wait.session_id) if wait.session_id else None,
            doctor=await citizen_views.doctor(wait.doctor_id)
            if wait.doctor_id and not wait.session_id
            else None,
            patient=patients.get(wait.patient_id),
        )

    @post("/{entry_id:str}/pay", name="wait_pay", status_code=303)
    async def pay(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        bookings: NamedDependency[BookingService],
        gateway: NamedDependency[SandboxGateway],
        entry_id: FromPath[str],
    ) -> Redirect:
        """The sandbox cashier's 'pay' button for a prepayment: the gateway takes the money
        and its signed notice puts the wait in line, exactly as ``/sandbox/pay`` does."""
        form = await verified_form(page)
        account_id = page.require_account()
        wait = await _wait_of(waitlist, account_id, entry_id)
        if wait.prepayment is not None and _payable(wait):
            channel: Literal["self_pay", "insurance"] = (
                "insurance" if form.get("channel") == "insurance" else "self_pay"
            )
            headers, body = await gateway.pay(wait.prepayment.order_no, channel=channel)
            await bookings.handle_payment_notice(headers, body)
        return see_other(f"/me/waits#wait-{wait.id}")

    @post("/{entry_id:str}/leave", name="leave_wait", status_code=303)
    async def leave(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        lottery: NamedDependency[LotteryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        entry_id: FromPath[str],
    ) -> Template | Redirect:
        """Stop waiting (a wait already served or ended cannot be left: the page says so)."""
        await verified_form(page)
        account_id = page.require_account()
        try:
            await waitlist.leave(account_id=account_id, entry_id=entry_id)
        except GuahaoError as exc:
            return await waits_page(
                page, waitlist, lottery, accounts, citizen_views, account_id, exc
            )
        return see_other("/me/waits")


class LotteryPages(Controller):
    path = "/me/lottery"
    include_in_schema = False

    @get("/new", name="new_lottery_entry")
    async def new_entry(
        self,
        page: NamedDependency[PageContext],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        session: FromQuery[str],
    ) -> Template:
        """摇号: the session, its entry window and draw, and who enters."""
        account_id = page.require_account()
        return await self._enter_page(page, accounts, citizen_views, account_id, session)

    async def _enter_page(
        self,
        page: PageContext,
        accounts: AccountService,
        citizen_views: CitizenViews,
        account_id: str,
        session_id: str,
        error: GuahaoError | None = None,
        chosen: str | None = None,
    ) -> Template:
        outline = await citizen_views.session(session_id)
        return render(
            page,
            "lottery_enter.html",
            status_code=status_of(error) if error else 200,
            outline=outline,
            patients=await accounts.patients(account_id),
            chosen=chosen,
            relations=PATIENT_RELATIONS,
            document_types=DOCUMENT_TYPES,
            entered={},
            window=_window_state(page, outline.lottery_opens_at, outline.lottery_draw_at),
            draw_ms=page.ms_until(outline.lottery_draw_at),
            error=error,
        )

    @post("/enter", name="enter_lottery", status_code=303)
    async def enter(
        self,
        page: NamedDependency[PageContext],
        lottery: NamedDependency[LotteryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
    ) -> Template | Redirect:
        form = await verified_form(page)
        account_id = page.require_account()
        session_id = form.get("session_id", "")
        try:
            entry = await lottery.enter(
                account_id=account_id,
                patient_id=form.get("patient_id", ""),
                session_id=session_id,
            )
        except GuahaoError as exc:
            if exc.code == "SESSION_NOT_FOUND":
                raise
            return await self._enter_page(
                page, accounts, citizen_views, account_id, session_id, exc, form.get("patient_id")
            )
        return see_other(f"/me/waits#entry-{entry.id}")

    @post("/{entry_id:str}/withdraw", name="withdraw_lottery_entry", status_code=303)
    async def withdraw(
        self,
        page: NamedDependency[PageContext],
        waitlist: NamedDependency[WaitlistService],
        lottery: NamedDependency[LotteryService],
        accounts: NamedDependency[AccountService],
        citizen_views: NamedDependency[CitizenViews],
        entry_id: FromPath[str],
    ) -> Template | Redirect:
        """Take an entry back before the draw."""
        await verified_form(page)
        account_id = page.require_account()
        try:
            await lottery.withdraw(account_id=account_id, entry_id=entry_id)
        except GuahaoError as exc:
            return await waits_page(
                page, waitlist, lottery, accounts, citizen_views, account_id, exc
            )
        return see_other("/me/waits")


WindowState = Literal["before", "open", "closed"]


def _window_state(
    page: PageContext, opens_at: datetime | None, draw_at: datetime | None
) -> WindowState:
    """Where the platform's now stands against a lottery's entry window."""
    now = page.now()
    if opens_at is None or draw_at is None:
        return "closed"
    if now < opens_at:
        return "before"
    return "open" if now < draw_at else "closed"


async def _wait_of(waitlist: WaitlistService, account_id: str, entry_id: str) -> WaitView:
    """One of the account's waits (another account's is as unknown as a missing one)."""
    for wait in await waitlist.waits(account_id):
        if wait.id == entry_id:
            return wait
    raise error("WAITLIST_ENTRY_NOT_FOUND", entry_id=entry_id[:64])


def _payable(wait: WaitView) -> bool:
    """A prepayment still to pay: its order open and its wait not ended."""
    return (
        wait.prepayment is not None
        and wait.prepayment.status == "created"
        and wait.status == "waiting"
    )


def _scope_error(needs: str) -> GuahaoError:
    return error("WAITLIST_SCOPE_INVALID", scope="page", needs=needs)


def _dates(date_from: str, date_to: str) -> tuple[date, date]:
    """The two dates of a doctor-wide wait as the form sent them (``YYYY-MM-DD``)."""
    try:
        return date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError:
        raise error(
            "WAITLIST_DATE_RANGE_INVALID", date_from=date_from[:20], date_to=date_to[:20]
        ) from None

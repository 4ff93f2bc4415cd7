"""The hospital console (医院工作台): one hospital's staff, their sessions and the desk's work.

Every page requires a hospital staff session and reads through ``HospitalConsole``, which
holds the staff member to their own hospital (another hospital's session, booking or filing is
``HOSPITAL_SCOPE_DENIED``, shown as a refusal page with that code). The changes call the same
services as the hospital API and connectors (``HospitalActions``, ``AddOnUnits``,
``LotteryService``, ``Filings``), and each is audited under the staff member's name.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.department_policies import DepartmentPolicy
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.services.add_on_units import AddOnUnits
from guahao.platform.services.authority_figures import AuthorityFigures, FigureScope
from guahao.platform.services.availability_feed import AvailabilityFeed
from guahao.platform.services.booking_service import BookingService
from guahao.platform.services.department_policies import DepartmentPolicies
from guahao.platform.services.filings import Filings
from guahao.platform.services.hospital_console import ConsoleSession, HospitalConsole
from guahao.platform.services.lottery import LotteryService
from guahao.platform.services.rule_book import RuleBook
from guahao.web.errors import STATUS_BY_CODE, STATUS_BY_KIND
from guahao.web.pages.console_charts import supply_demand_chart
from guahao.web.pages.console_context import HOSPITAL, ConsoleContext, flat_rules, render_console
from guahao.web.pages.live_availability import hub_of, next_change
from guahao.web.pages.page_context import see_other
from guahao.web.staff_session import signed_in_staff

__all__ = ["HospitalConsolePages", "department_policy_of"]

Day = Annotated[date | None, QueryParameter(name="from")]
Days = Annotated[int, QueryParameter(ge=1, le=31)]
MAX_REPORT_DAYS = 92
_SHOWN_ON_THE_RULES_PAGE = frozenset(
    {
        "DEPARTMENT_POLICY_OUT_OF_BOUNDS",
        "DEPARTMENT_POLICY_CHANGED_MEANWHILE",
        "VALIDATION_FAILED",
    }
)
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


LIVE_FIELDS = ("online", "offline", "held", "booked", "returning", "available", "add_ons")
"""The counts the sessions table and a session's head show, updated live."""


def live_counts(sessions: list[ConsoleSession]) -> dict[str, dict[str, int | str]]:
    """What the console shows live of each session: its counts and status."""
    return {
        s.id: {**{k: int(getattr(s, k)) for k in LIVE_FIELDS}, "status": s.status} for s in sessions
    }


def _json(counts: dict[str, dict[str, int | str]]) -> str:
    return msgspec.json.encode({"sessions": counts}).decode()


def _whole(form: dict[str, str], key: str, high: int) -> int | None:
    raw = form.get(key, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > high:
        refuse("VALIDATION_FAILED", field=key, reason=f"a whole number 0..{high}")
    return int(raw)


def department_policy_of(form: dict[str, str]) -> DepartmentPolicy:
    """A department's policy from the console form: blank fields follow the hospital; the
    online share is typed in percent, as staff speak of it.

    >>> department_policy_of({"online_percent": "60", "release_at": "07:30"})
    DepartmentPolicy(online_share=0.6, offline_first_segments=None, days_ahead=None, \
release_at='07:30')
    """
    percent = _whole(form, "online_percent", 100)
    release_at = form.get("release_at", "").strip()[:5]
    if release_at and not _CLOCK.match(release_at):
        refuse("VALIDATION_FAILED", field="release_at", reason="HH:MM")
    return DepartmentPolicy(
        online_share=None if percent is None else percent / 100,
        offline_first_segments=_whole(form, "offline_first_segments", 20),
        days_ahead=_whole(form, "days_ahead", 90),
        release_at=release_at or None,
    )


async def _rules_page(
    console: ConsoleContext,
    hospital_console: HospitalConsole,
    rules: RuleBook,
    department_policies: DepartmentPolicies,
    *,
    error: GuahaoError | None = None,
    status_code: int = 200,
    department_id: str = "",
    typed: dict[str, str] | None = None,
) -> Template:
    staff = console.require(*HOSPITAL)
    hospital_id = hospital_console.hospital_of(staff)
    region = await rules.region()
    in_force = dict(flat_rules(msgspec.to_builtins(await rules.for_hospital(hospital_id))))
    return render_console(
        console,
        "console/hospital_rules.html",
        status_code=status_code,
        policies=flat_rules(await hospital_console.policies(staff)),
        overridable=[(k, in_force.get(k)) for k in sorted(region.hospital_overridable)],
        history=await rules.history(hospital_id),
        departments=await department_policies.lines(staff),
        department_history=await department_policies.history(staff),
        bounds=region.department_policy,
        error=error,
        error_department=department_id,
        typed=typed or {},
    )


class HospitalConsolePages(Controller):
    path = "/console/hospital"
    include_in_schema = False

    @get("/", name="console_hospital")
    async def overview(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        connectors: NamedDependency[ConnectorHub],
        first: Day = None,
        days: Days = 7,
    ) -> Template:
        """Connector health and the sessions of the coming days with live counts."""
        staff = console.require(*HOSPITAL)
        start = first or console.today()
        code = await hospital_console.hospital_code(staff)
        health = await connectors.registry.health(50, hospital_code=code)
        return render_console(
            console,
            "console/hospital.html",
            sessions=await hospital_console.sessions(staff, start, days),
            health=health,
            first=start,
            days=days,
            earlier=start - timedelta(days=days),
            later=start + timedelta(days=days),
        )

    @get("/live", name="console_hospital_live")
    async def live(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        request: Request[Any, Any, Any],
        first: Day = None,
        days: Days = 7,
    ) -> ServerSentEvent:
        """``text/event-stream`` of the sessions' counts (``counts`` events): one now, then
        one after each change to a session shown (the citizen pages' availability channel)
        and on a keep-alive read every few seconds (holds lapse without a message). The
        stream ends once its staff session does (signed out, deactivated, role changed)."""
        staff = console.require(*HOSPITAL)
        start = first or console.today()
        hub, _ = hub_of(request)
        first_read = await hospital_console.sessions(staff, start, days)

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            async with hub.listen(frozenset(s.id for s in first_read)) as changes:
                last = live_counts(first_read)
                yield ServerSentEventMessage(data=_json(last), event="counts")
                while True:
                    if not await next_change(changes):
                        yield ServerSentEventMessage(comment="keep-alive")
                    if await signed_in_staff(request) != staff:  # signed out, or changed
                        return
                    now = live_counts(await hospital_console.sessions(staff, start, days))
                    if now != last:
                        last = now
                        yield ServerSentEventMessage(data=_json(now), event="counts")

        return ServerSentEvent(events(), headers={"Cache-Control": "no-store"})

    @get("/sessions/{session_id:str}", name="console_session")
    async def session(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        session_id: FromPath[str],
    ) -> Template:
        """One session: counts, patients (audited read), and what the desk can do to it."""
        staff = console.require(*HOSPITAL)
        line = await hospital_console.session_line(staff, session_id)
        patients = await hospital_console.patients(staff, session_id)
        return render_console(console, "console/session.html", line=line, patients=patients)

    @get("/sessions/{session_id:str}/stop", name="console_stop_preview")
    async def stop_preview(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        session_id: FromPath[str],
    ) -> Template:
        """停诊, first step: what it will do (bookings, people told, refunds)."""
        staff = console.require(*HOSPITAL)
        line = await hospital_console.session_line(staff, session_id)
        impact = await hospital_console.stop_impact(staff, session_id)
        return render_console(console, "console/stop.html", line=line, impact=impact)

    @post("/sessions/{session_id:str}/stop", name="console_stop", status_code=303)
    async def stop(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        bookings: NamedDependency[BookingService],
        availability_feed: NamedDependency[AvailabilityFeed],
        session_id: FromPath[str],
    ) -> Redirect | Template:
        """停诊, confirmed on what was previewed: every live booking ends, refunded and told;
        audited. If the bookings changed since the preview, nothing is stopped: the page
        shows the impact now and asks again (``STOP_IMPACT_CHANGED``, 409)."""
        staff, form = await console.require_change(*HOSPITAL)
        await hospital_console.own_session(staff, session_id)
        reason = form.get("reason", "").strip()[:300]
        if not reason:
            refuse("VALIDATION_FAILED", field="reason", reason="required")
        try:
            ended = await bookings.hospital_actions.stop_session(
                session_id, reason=reason, previewed=form.get("impact", "")[:64]
            )
        except GuahaoError as refused:
            if refused.code != "STOP_IMPACT_CHANGED":
                raise
            line = await hospital_console.session_line(staff, session_id)
            impact = await hospital_console.stop_impact(staff, session_id)
            return render_console(
                console,
                "console/stop.html",
                status_code=409,
                line=line,
                impact=impact,
                error=refused,
                reason=reason,
            )
        await hospital_console.record_action(
            staff, "console.session.stop", "session", session_id, {"bookings": len(ended)}
        )
        await availability_feed.changed([session_id])
        return see_other(f"/console/hospital/sessions/{session_id}")

    @post("/sessions/{session_id:str}/add-on", name="console_add_on", status_code=303)
    async def add_on(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        add_on_units: NamedDependency[AddOnUnits],
        session_id: FromPath[str],
    ) -> Redirect:
        """诊间加号 for a named patient (the service counts it against the rules and audits)."""
        staff, form = await console.require_change(*HOSPITAL)
        await hospital_console.own_session(staff, session_id)
        await add_on_units.add(
            staff=staff,
            session_id=session_id,
            patient_id=form.get("patient_id", "").strip()[:32],
            reason=form.get("reason", "").strip()[:2000],
        )
        return see_other(f"/console/hospital/sessions/{session_id}")

    @post("/bookings/{booking_id:str}/check-in", name="console_check_in", status_code=303)
    async def check_in(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        bookings: NamedDependency[BookingService],
        booking_id: FromPath[str],
    ) -> Redirect:
        """签到 at the desk."""
        staff, _ = await console.require_change(*HOSPITAL)
        row = await hospital_console.own_booking(staff, booking_id)
        await bookings.hospital_actions.check_in(booking_id)
        await hospital_console.record_action(
            staff, "console.booking.check_in", "booking", booking_id, {}
        )
        return see_other(f"/console/hospital/sessions/{row.session_id}")

    @post("/sessions/{session_id:str}/no-shows", name="console_no_shows", status_code=303)
    async def no_shows(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        bookings: NamedDependency[BookingService],
        session_id: FromPath[str],
    ) -> Redirect:
        """爽约: after the session ends, every confirmed booking not checked in."""
        staff, _ = await console.require_change(*HOSPITAL)
        sess = await hospital_console.own_session(staff, session_id)
        if console.now() < sess.ends_at:
            refuse("BOOKING_STATE_INVALID", session_id=session_id, reason="session_not_ended")
        marked = await bookings.hospital_actions.mark_no_shows(session_id)
        await hospital_console.record_action(
            staff, "console.session.no_shows", "session", session_id, {"marked": marked}
        )
        return see_other(f"/console/hospital/sessions/{session_id}")

    @post("/sessions/{session_id:str}/lottery", name="console_lottery", status_code=303)
    async def lottery(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        lottery: NamedDependency[LotteryService],
        session_id: FromPath[str],
    ) -> Redirect:
        """摇号: the session's units go by lottery at its release (window from the rules)."""
        staff, _ = await console.require_change(*HOSPITAL)
        await hospital_console.own_session(staff, session_id)
        await lottery.mark_lottery(session_id, actor=staff.username)
        await hospital_console.record_action(
            staff, "console.session.lottery", "session", session_id, {}
        )
        return see_other(f"/console/hospital/sessions/{session_id}")

    @get("/filings", name="console_filings")
    async def filings(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
    ) -> Template:
        """The filing queue (建档): requests waiting for the hospital's answer."""
        staff = console.require(*HOSPITAL)
        queue = await hospital_console.filing_queue(staff)
        arrivals = await hospital_console.unfiled_arrivals(staff, console.today(), 3)
        return render_console(console, "console/filings.html", queue=queue, arrivals=arrivals)

    @post("/arrivals/{booking_id:str}/filing", name="console_file_on_arrival", status_code=303)
    async def file_on_arrival(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        booking_id: FromPath[str],
    ) -> Redirect:
        """建档 at the desk (mode B), from the patient's card and the HIS number."""
        staff, form = await console.require_change(*HOSPITAL)
        await hospital_console.file_on_arrival(
            staff,
            booking_id,
            form.get("document_number", "")[:40],
            form.get("his_patient_id", "")[:64],
        )
        return see_other("/console/hospital/filings")

    @post("/filings/{filing_id:str}", name="console_filing_result", status_code=303)
    async def filing_result(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        filings: NamedDependency[Filings],
        filing_id: FromPath[str],
    ) -> Redirect:
        staff, form = await console.require_change(*HOSPITAL)
        status: Literal["filed", "failed"] = "filed" if form.get("status") == "filed" else "failed"
        await filings.record_result(
            hospital_id=hospital_console.hospital_of(staff),
            filing_id=filing_id,
            status=status,
            his_patient_id=form.get("his_patient_id", "").strip()[:64],
            detail=form.get("detail", "").strip()[:2000],
        )
        await hospital_console.record_action(
            staff, "console.filing.result", "filing", filing_id, {"status": status}
        )
        return see_other("/console/hospital/filings")

    @get("/rules", name="console_hospital_rules")
    async def rules_page(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        rules: NamedDependency[RuleBook],
        department_policies: NamedDependency[DepartmentPolicies],
    ) -> Template:
        """The hospital's split and release policy, its departments' own, and the region's
        rules it may change."""
        return await _rules_page(console, hospital_console, rules, department_policies)

    @post(
        "/departments/{department_id:str}/policy",
        name="console_department_policy_change",
        status_code=303,
    )
    async def change_department_policy(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        rules: NamedDependency[RuleBook],
        department_policies: NamedDependency[DepartmentPolicies],
        department_id: FromPath[str],
    ) -> Redirect | Template:
        """A new version of a department's split and release policy (blank fields follow the
        hospital), applied to its sessions not yet released. A value outside the region's
        bounds, or a version saved meanwhile by someone else, shows the page again with the
        refusal."""
        staff, form = await console.require_change(*HOSPITAL)
        try:
            policy = department_policy_of(form)
            version = form.get("version", "")
            if not version.isdigit() or len(version) > 6:
                refuse("VALIDATION_FAILED", field="version", reason="a whole number")
            reason = form.get("reason", "").strip()[:500]
            if not reason:
                refuse("VALIDATION_FAILED", field="reason", reason="required")
            await department_policies.change(
                staff, department_id, policy, expected_version=int(version), reason=reason
            )
        except GuahaoError as refused:
            if refused.code not in _SHOWN_ON_THE_RULES_PAGE:
                raise
            return await _rules_page(
                console,
                hospital_console,
                rules,
                department_policies,
                error=refused,
                status_code=STATUS_BY_CODE.get(refused.code, STATUS_BY_KIND.get(refused.kind, 400)),
                department_id=department_id,
                typed=form,
            )
        return see_other(f"/console/hospital/rules#dep-{department_id}")

    @post("/rules", name="console_hospital_rules_change", status_code=303)
    async def change_rules(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        rules: NamedDependency[RuleBook],
    ) -> Redirect:
        """A new version of the hospital's overrides (the rule book refuses anything the
        region does not let hospitals change, and audits)."""
        staff, form = await console.require_change(*HOSPITAL)
        hospital_id = hospital_console.hospital_of(staff)
        region = await rules.region()
        overrides: dict[str, int] = {}
        for key in sorted(region.hospital_overridable):
            raw = form.get(key, "").strip()
            if not raw:
                continue
            if not raw.isdigit() or len(raw) > 6:
                refuse("VALIDATION_FAILED", field=key, reason="a whole number")
            overrides[key] = int(raw)
        await rules.change_hospital(
            hospital_id, overrides, staff=staff, reason=form.get("reason", "")[:500]
        )
        return see_other("/console/hospital/rules")

    @get("/reports", name="console_hospital_reports")
    async def reports(
        self,
        console: NamedDependency[ConsoleContext],
        hospital_console: NamedDependency[HospitalConsole],
        figures: NamedDependency[AuthorityFigures],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Template:
        """The hospital's own figures (the authority's, held to this hospital)."""
        staff = console.require(*HOSPITAL)
        hospital_id = hospital_console.hospital_of(staff)
        until = date_to or console.today()
        since = date_from or until - timedelta(days=13)
        if (until - since).days >= MAX_REPORT_DAYS or until < since:
            refuse("FIGURES_RANGE_INVALID", date_from=since, date_to=until)
        scope = FigureScope(since, until, hospital_id=hospital_id)
        supply = await figures.supply_demand(staff, scope)
        query = f"from={since}&to={until}&hospitalId={hospital_id}"
        context: dict[str, Any] = {
            "supply": supply,
            "chart": supply_demand_chart(supply, console.t, since, until),
            "access": await figures.access(staff, scope),
            "compliance": await figures.compliance(staff, scope),
            "date_from": since,
            "date_to": until,
            "export_query": query,
        }
        return render_console(console, "console/hospital_reports.html", **context)

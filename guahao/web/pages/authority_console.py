"""The health authority's console (卫健委视图): supply and demand across the region, access,
rankings, compliance, unmet demand; appeals, suspicion signals and every hospital's connector
health. The blacklist and strikes (``blacklist_pages``), the region's rules
(``region_rules_pages``) and the audit log (``audit_log_pages``) have modules of their own.

Administrators and auditors read everything; only administrators get forms (an auditor's
POST is refused ``STAFF_ROLE_REQUIRED`` whatever it carries). The figures come from
``AuthorityFigures`` (the rollups, never a scan of bookings); the lists from the services the
authority API uses, which audit every read of personal data.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.error_codes import refuse
from guahao.platform.services.authority_figures import MAX_RANGE_DAYS, AuthorityFigures, FigureScope
from guahao.platform.services.blacklist import BlacklistService
from guahao.platform.services.staff import StaffActor, StaffRole
from guahao.platform.services.suspicion import SuspicionService
from guahao.web.figure_exports import EXPORT_FORMATS, export_figures
from guahao.web.pages.console_charts import access_trend_chart, supply_demand_chart
from guahao.web.pages.console_context import AUTHORITY, ConsoleContext, render_console
from guahao.web.pages.page_context import see_other
from guahao.web.routes.authority_figures import FigureName

__all__ = ["AuthorityConsolePages", "ConsoleExports"]

From = Annotated[date | None, QueryParameter(name="from")]
To = Annotated[date | None, QueryParameter(name="to")]
District = Annotated[str | None, QueryParameter(max_length=100)]
Catalog = Annotated[str | None, QueryParameter(name="catalogCode", max_length=8)]
DEFAULT_DAYS = 14


def _scope(
    console: ConsoleContext,
    date_from: date | None,
    date_to: date | None,
    district: str | None,
    catalog_code: str | None,
) -> FigureScope:
    until = date_to or console.today()
    since = date_from or until - timedelta(days=DEFAULT_DAYS - 1)
    if until < since or (until - since).days >= MAX_RANGE_DAYS:
        refuse("FIGURES_RANGE_INVALID", date_from=since, date_to=until)
    return FigureScope(since, until, district or None, catalog_code or None, None)


def _query(scope: FigureScope) -> str:
    parts = [f"from={scope.date_from}", f"to={scope.date_to}"]
    if scope.district:
        parts.append(f"district={scope.district}")
    if scope.catalog_code:
        parts.append(f"catalogCode={scope.catalog_code}")
    return "&".join(parts)


class AuthorityConsolePages(Controller):
    path = "/console/authority"
    include_in_schema = False

    @get("/", name="console_authority")
    async def supply_demand(
        self,
        console: NamedDependency[ConsoleContext],
        figures: NamedDependency[AuthorityFigures],
        date_from: From = None,
        date_to: To = None,
        district: District = None,
        catalog_code: Catalog = None,
    ) -> Template:
        """Supply and demand by district × specialty × day, and the access measure."""
        staff = console.require(*AUTHORITY)
        scope = _scope(console, date_from, date_to, district, catalog_code)
        supply = await figures.supply_demand(staff, scope)
        access = await figures.access(staff, scope)
        latest = max((a.measured_on for a in access), default=None)
        return render_console(
            console,
            "console/authority.html",
            scope=scope,
            query=_query(scope),
            supply=supply,
            areas=_by_area(supply),
            supply_chart=supply_demand_chart(supply, console.t, scope.date_from, scope.date_to),
            access_chart=access_trend_chart(access, console.t, scope.date_from, scope.date_to),
            access_latest=[a for a in access if a.measured_on == latest],
        )

    @get("/hospitals", name="console_authority_hospitals")
    async def hospitals(
        self,
        console: NamedDependency[ConsoleContext],
        figures: NamedDependency[AuthorityFigures],
        date_from: From = None,
        date_to: To = None,
        district: District = None,
        month: Annotated[str | None, QueryParameter(pattern=r"^\d{4}-\d{2}$")] = None,
    ) -> Template:
        """Monthly rankings and the compliance checks."""
        staff = console.require(*AUTHORITY)
        scope = _scope(console, date_from, date_to, district, None)
        chosen = month or f"{scope.date_to:%Y-%m}"
        rankings = await figures.rankings(staff, date.fromisoformat(chosen + "-01"))
        return render_console(
            console,
            "console/authority_hospitals.html",
            scope=scope,
            query=_query(scope),
            month=chosen,
            rankings=rankings,
            compliance=await figures.compliance(staff, scope),
            rules=figures.compliance_rules,
        )

    @get("/unmet", name="console_authority_unmet")
    async def unmet(
        self,
        console: NamedDependency[ConsoleContext],
        figures: NamedDependency[AuthorityFigures],
        date_from: From = None,
        date_to: To = None,
        district: District = None,
        catalog_code: Catalog = None,
    ) -> Template:
        """Where demand went unmet, the nearby free units, and a suggestion per department."""
        staff = console.require(*AUTHORITY)
        scope = _scope(console, date_from, date_to, district, catalog_code)
        return render_console(
            console,
            "console/authority_unmet.html",
            scope=scope,
            query=_query(scope),
            unmet=await figures.unmet_demand(staff, scope, limit=50),
        )

    @get("/appeals", name="console_appeals")
    async def appeals(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        status: Annotated[
            Literal["pending", "granted", "rejected", "all"], QueryParameter()
        ] = "pending",
    ) -> Template:
        staff = console.require(*AUTHORITY)
        found = await blacklist.list_appeals(
            staff, status=None if status == "all" else status, limit=100
        )
        return render_console(console, "console/appeals.html", appeals=found, status=status)

    @post("/appeals/{appeal_id:str}/decision", name="console_decide_appeal", status_code=303)
    async def decide(
        self,
        console: NamedDependency[ConsoleContext],
        blacklist: NamedDependency[BlacklistService],
        appeal_id: FromPath[str],
    ) -> Redirect:
        """Grant (the ban is lifted) or reject, with the reason the citizen will read."""
        staff, form = await console.require_change(StaffRole.AUTHORITY_ADMIN)
        reason = form.get("reason", "").strip()[:2000]
        if not reason:
            refuse("VALIDATION_FAILED", field="reason", reason="required")
        await blacklist.decide_appeal(appeal_id, form.get("grant") == "yes", reason, staff)
        return see_other("/console/authority/appeals")

    @get("/signals", name="console_signals")
    async def signals(
        self,
        console: NamedDependency[ConsoleContext],
        suspicion: NamedDependency[SuspicionService],
    ) -> Template:
        """The scalper-suspicion report: signals not yet reviewed, strongest first."""
        staff = console.require(*AUTHORITY)
        found = await suspicion.list(staff, kind=None, reviewed=False, limit=100)
        found = sorted(found, key=lambda s: -s.score)
        return render_console(console, "console/signals.html", signals=found)

    @post("/signals/{signal_id:str}/review", name="console_review_signal", status_code=303)
    async def review_signal(
        self,
        console: NamedDependency[ConsoleContext],
        suspicion: NamedDependency[SuspicionService],
        signal_id: FromPath[str],
    ) -> Redirect:
        """An administrator marks a signal reviewed, with the note the audit log keeps."""
        staff, form = await console.require_change(StaffRole.AUTHORITY_ADMIN)
        await suspicion.review(signal_id, form.get("note", "").strip()[:2000], staff)
        return see_other("/console/authority/signals")

    @get("/connectors", name="console_connectors")
    async def connectors(
        self, console: NamedDependency[ConsoleContext], connectors: NamedDependency[ConnectorHub]
    ) -> Template:
        console.require(*AUTHORITY)
        health = sorted(
            await connectors.registry.health(50), key=lambda h: (-h.error_rate, h.hospital_code)
        )
        return render_console(console, "console/connectors.html", health=health)


class ConsoleExports(Controller):
    """The figures as CSV or XLSX for a signed-in staff member (the API's exports take a
    bearer token; a browser has the console's cookie). Hospital staff get their own."""

    path = "/console/exports"
    include_in_schema = False

    @get("/{figure:str}", name="console_export")
    async def export(
        self,
        console: NamedDependency[ConsoleContext],
        figures: NamedDependency[AuthorityFigures],
        figure: FromPath[FigureName],
        fmt: Annotated[str, QueryParameter(name="format", max_length=8)] = "csv",
        date_from: From = None,
        date_to: To = None,
        district: District = None,
        catalog_code: Catalog = None,
        hospital_id: Annotated[str | None, QueryParameter(name="hospitalId", max_length=32)] = None,
        month: Annotated[str | None, QueryParameter(pattern=r"^\d{4}-\d{2}$")] = None,
    ) -> Response[bytes]:
        staff = console.require(*AUTHORITY, StaffRole.HOSPITAL_STAFF)
        if fmt not in EXPORT_FORMATS:
            refuse("EXPORT_FORMAT_UNSUPPORTED", format=fmt, supported=sorted(EXPORT_FORMATS))
        scope = _scope(console, date_from, date_to, district, catalog_code)
        scope = FigureScope(
            scope.date_from, scope.date_to, scope.district, scope.catalog_code, hospital_id
        )
        lines = await _lines(figures, staff, figure, scope, month or f"{scope.date_to:%Y-%m}")
        body = await export_figures(figure, lines, fmt)
        suffix = month if figure == "rankings" else f"{scope.date_from}_{scope.date_to}"
        return Response(
            content=body,
            media_type=EXPORT_FORMATS[fmt],
            headers={"Content-Disposition": f'attachment; filename="{figure}-{suffix}.{fmt}"'},
        )


def _by_area(supply: list[Any]) -> list[dict[str, Any]]:
    """The period's totals per district × specialty (the table under the chart)."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for f in supply:
        line = totals.setdefault(
            (f.district, f.specialty),
            {
                "district": f.district,
                "specialty": f.specialty,
                "released": 0,
                "online_released": 0,
                "booked": 0,
                "cancelled": 0,
                "no_shows": 0,
                "waitlist_length": 0,
                "unmet_demand": 0,
            },
        )
        for key in ("released", "online_released", "booked", "cancelled", "no_shows"):
            line[key] += getattr(f, key)
        line["unmet_demand"] += f.unmet_demand
        line["waitlist_length"] = max(line["waitlist_length"], f.waitlist_length)
    result = []
    for line in totals.values():
        kept = line["booked"] - line["cancelled"]
        line["booking_rate"] = (
            line["booked"] / line["online_released"] if line["online_released"] else None
        )
        line["online_share"] = (
            line["online_released"] / line["released"] if line["released"] else None
        )
        line["no_show_rate"] = line["no_shows"] / kept if kept > 0 else None
        result.append(line)
    return sorted(result, key=lambda x: (-x["unmet_demand"], x["district"], x["specialty"]))


async def _lines(
    figures: AuthorityFigures, staff: StaffActor, name: str, scope: FigureScope, month: str
) -> list[Any]:
    if name == "supply-demand":
        return list(await figures.supply_demand(staff, scope))
    if name == "access":
        return list(await figures.access(staff, scope))
    if name == "compliance":
        return list(await figures.compliance(staff, scope))
    if name == "unmet-demand":
        return list(await figures.unmet_demand(staff, scope))
    return list(await figures.rankings(staff, date.fromisoformat(month + "-01")))

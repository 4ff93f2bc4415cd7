"""The authority's figures over HTTP, as JSON for its own tools and as CSV or XLSX files.

Every staff role may read (figures change nothing); the service holds hospital staff to their
own hospital. Periods are visit days, ``from`` and ``to`` inclusive.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.services.authority_figures import (
    AccessFigure,
    AuthorityFigures,
    ComplianceFigure,
    FigureScope,
    HospitalRanking,
    SupplyDemandFigure,
    UnmetDemandFigure,
)
from guahao.platform.services.staff import StaffActor
from guahao.web.figure_exports import EXPORT_FORMATS, export_figures
from guahao.web.staff_auth import require_staff, staff_of

__all__ = ["AuthorityFiguresController"]

ANY_STAFF = require_staff()

From = Annotated[date, QueryParameter(name="from")]
To = Annotated[date, QueryParameter(name="to")]
District = Annotated[str | None, QueryParameter(max_length=100)]
Catalog = Annotated[str | None, QueryParameter(name="catalogCode", max_length=8)]
Hospital = Annotated[str | None, QueryParameter(name="hospitalId", max_length=32)]
Month = Annotated[str, QueryParameter(pattern=r"^\d{4}-\d{2}$")]

FigureName = Literal["supply-demand", "access", "rankings", "compliance", "unmet-demand"]


def _month(value: str) -> date:
    try:
        return date.fromisoformat(value + "-01")
    except ValueError:
        refuse("VALIDATION_FAILED", field="month", value=value)


async def _figure(
    figures: AuthorityFigures,
    staff: StaffActor,
    name: str,
    scope: FigureScope,
    month: str | None,
) -> list[Any]:
    if name == "supply-demand":
        return list(await figures.supply_demand(staff, scope))
    if name == "access":
        return list(await figures.access(staff, scope))
    if name == "compliance":
        return list(await figures.compliance(staff, scope))
    if name == "unmet-demand":
        return list(await figures.unmet_demand(staff, scope))
    if month is None:
        refuse("VALIDATION_FAILED", field="month", reason="required for rankings")
    return list(await figures.rankings(staff, _month(month)))


class AuthorityFiguresController(Controller):
    path = "/api/v1/authority/figures"
    tags = ["authority figures"]  # noqa: RUF012
    guards = [ANY_STAFF]  # noqa: RUF012

    @get("/supply-demand", operation_id="supplyDemandFigures")
    async def supply_demand(
        self,
        figures: NamedDependency[AuthorityFigures],
        request: Request[Any, Any, Any],
        date_from: From,
        date_to: To,
        district: District = None,
        catalog_code: Catalog = None,
        hospital_id: Hospital = None,
    ) -> list[SupplyDemandFigure]:
        """By district × catalog specialty × visit day."""
        scope = FigureScope(date_from, date_to, district, catalog_code, hospital_id)
        return await figures.supply_demand(staff_of(request), scope)

    @get("/access", operation_id="accessFigures")
    async def access(
        self,
        figures: NamedDependency[AuthorityFigures],
        request: Request[Any, Any, Any],
        date_from: From,
        date_to: To,
        district: District = None,
        catalog_code: Catalog = None,
        hospital_id: Hospital = None,
    ) -> list[AccessFigure]:
        """Third next available appointment per hospital and specialty, by measuring day."""
        scope = FigureScope(date_from, date_to, district, catalog_code, hospital_id)
        return await figures.access(staff_of(request), scope)

    @get("/rankings", operation_id="hospitalRankings")
    async def rankings(
        self,
        figures: NamedDependency[AuthorityFigures],
        request: Request[Any, Any, Any],
        month: Month,
    ) -> list[HospitalRanking]:
        """The month's hospitals by booking ratio, booking rate and release rate."""
        return await figures.rankings(staff_of(request), _month(month))

    @get("/compliance", operation_id="complianceFigures")
    async def compliance(
        self,
        figures: NamedDependency[AuthorityFigures],
        request: Request[Any, Any, Any],
        date_from: From,
        date_to: To,
        district: District = None,
        hospital_id: Hospital = None,
    ) -> list[ComplianceFigure]:
        """Each hospital against the national and city rules over the period."""
        scope = FigureScope(date_from, date_to, district, None, hospital_id)
        return await figures.compliance(staff_of(request), scope)

    @get("/unmet-demand", operation_id="unmetDemandFigures")
    async def unmet_demand(
        self,
        figures: NamedDependency[AuthorityFigures],
        request: Request[Any, Any, Any],
        date_from: From,
        date_to: To,
        district: District = None,
        catalog_code: Catalog = None,
        hospital_id: Hospital = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> list[UnmetDemandFigure]:
        """Departments where demand went unmet, with a suggestion and nearby free units."""
        scope = FigureScope(date_from, date_to, district, catalog_code, hospital_id)
        return await figures.unmet_demand(staff_of(request), scope, limit=limit)

    @get("/{figure:str}/export", operation_id="exportFigures")
    async def export(
        self,
        figures: NamedDependency[AuthorityFigures],
        clock: NamedDependency[Clock],
        request: Request[Any, Any, Any],
        figure: FromPath[FigureName],
        fmt: Annotated[str, QueryParameter(name="format", max_length=8)] = "csv",
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        district: District = None,
        catalog_code: Catalog = None,
        hospital_id: Hospital = None,
        month: Annotated[str | None, QueryParameter(pattern=r"^\d{4}-\d{2}$")] = None,
    ) -> Response[bytes]:
        """Any figure as ``format=csv`` or ``format=xlsx`` (same filters as its JSON form)."""
        if fmt not in EXPORT_FORMATS:
            refuse("EXPORT_FORMAT_UNSUPPORTED", format=fmt, supported=sorted(EXPORT_FORMATS))
        if figure != "rankings" and (date_from is None or date_to is None):
            refuse("VALIDATION_FAILED", field="from/to", reason="required")
        today = clock.now().date()
        scope = FigureScope(
            date_from or today, date_to or today, district, catalog_code, hospital_id
        )
        lines = await _figure(figures, staff_of(request), figure, scope, month)
        body = await export_figures(figure, lines, fmt)
        suffix = month if figure == "rankings" else f"{scope.date_from}_{scope.date_to}"
        return Response(
            content=body,
            media_type=EXPORT_FORMATS[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{figure}-{suffix}.{fmt}"',
            },
        )

"""Pages anyone may open: home, search with facets, hospital, department, doctor (14 days).

Each handler calls the same services as the API (search, queries, citizen views) and renders;
no rule lives here.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from guahao.platform.error_codes import refuse
from guahao.platform.services.citizen_views import CitizenViews
from guahao.platform.services.queries import QueryService, SessionAvailability
from guahao.search.query import SearchQuery
from guahao.search.service import SearchService
from guahao.web.pages.page_context import (
    ELDER_COOKIE,
    LANG_COOKIE,
    REGION_ZONE,
    PageContext,
    local_path,
    render,
)

__all__ = ["SCHEDULE_DAYS", "BrowsingPages", "today_in_region"]

SCHEDULE_DAYS = 14
"""A doctor's page shows this many days, today included."""

ELDER_SCHEDULE_DAYS = 7
"""In elderly mode fewer days fit one screen; the rest is one tap away."""

_Many = Annotated[list[str] | None, QueryParameter()]
FACETS = ("kind", "district", "grade", "title", "catalogCode")


def today_in_region(page: PageContext) -> date:
    return page.now().astimezone(REGION_ZONE).date()


class BrowsingPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", name="home")
    async def home(
        self, page: NamedDependency[PageContext], queries: NamedDependency[QueryService]
    ) -> Template:
        hospitals = await queries.hospitals()
        return render(page, "home.html", hospitals=hospitals)

    @get("/prefs", name="prefs")
    async def prefs(
        self,
        lang: Annotated[str | None, QueryParameter()] = None,
        mode: Annotated[str | None, QueryParameter()] = None,
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Redirect:
        """The language and elderly-mode switches (plain links, so they work without script)."""
        response = Redirect(path=local_path(next_path), status_code=303)
        year = 365 * 24 * 3600
        if lang in ("zh", "en"):
            response.set_cookie(LANG_COOKIE, lang, max_age=year, samesite="lax", httponly=True)
        if mode in ("elder", "standard"):
            response.set_cookie(ELDER_COOKIE, mode, max_age=year, samesite="lax", httponly=True)
        return response

    @get("/search", name="search")
    async def search(
        self,
        page: NamedDependency[PageContext],
        search: NamedDependency[SearchService],
        q: Annotated[str, QueryParameter(max_length=100)] = "",
        kind: _Many = None,
        district: _Many = None,
        grade: _Many = None,
        title: _Many = None,
        catalog_code: Annotated[list[str] | None, QueryParameter(name="catalogCode")] = None,
        page_no: Annotated[int, QueryParameter(name="p", ge=1, le=1000)] = 1,
    ) -> Template:
        chosen = {
            "kind": kind or [],
            "district": district or [],
            "grade": grade or [],
            "title": title or [],
            "catalogCode": catalog_code or [],
        }
        size = 8 if page.elder else 20
        try:
            query = msgspec.convert(
                {"q": q, "filters": chosen, "page": page_no, "pageSize": size, "facets": True},
                SearchQuery,
            )
        except msgspec.ValidationError as exc:
            refuse("SEARCH_FILTER_INVALID", reason=str(exc))
        result = await search.search(query)
        return render(
            page,
            "search.html",
            q=q,
            result=result,
            chosen=chosen,
            facet_names=FACETS,
            page_no=page_no,
            pages=max(1, -(-result.total // size)),
        )

    @get("/hospitals/{hospital_id:str}", name="hospital")
    async def hospital(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        hospital_id: FromPath[str],
    ) -> Template:
        hospital = next((h for h in await queries.hospitals() if h.id == hospital_id), None)
        if hospital is None:
            refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
        departments = await queries.departments(hospital_id)
        return render(page, "hospital.html", hospital=hospital, departments=departments)

    @get("/departments/{department_id:str}", name="department")
    async def department(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        citizen_views: NamedDependency[CitizenViews],
        department_id: FromPath[str],
    ) -> Template:
        name, hospital_id, hospital_name = await citizen_views.department_hospital(department_id)
        doctors = await queries.doctors(department_id)
        return render(
            page,
            "department.html",
            department_name=name,
            hospital_id=hospital_id,
            hospital_name=hospital_name,
            doctors=doctors,
        )

    @get("/doctors/{doctor_id:str}", name="doctor")
    async def doctor(
        self,
        page: NamedDependency[PageContext],
        queries: NamedDependency[QueryService],
        citizen_views: NamedDependency[CitizenViews],
        doctor_id: FromPath[str],
        all_days: Annotated[bool, QueryParameter(name="all")] = False,
    ) -> Template:
        profile = await citizen_views.doctor(doctor_id)
        today = today_in_region(page)
        days = ELDER_SCHEDULE_DAYS if page.elder and not all_days else SCHEDULE_DAYS
        sessions = await queries.doctor_availability(
            doctor_id, start=today, end=today + timedelta(days=days - 1)
        )
        outlines = await citizen_views.sessions([s.id for s in sessions])
        return render(
            page,
            "doctor.html",
            doctor=profile,
            sessions=sessions,
            # 摇号 sessions: their units are drawn, so the page offers entering the draw
            lotteries={k: o for k, o in outlines.items() if o.allocation == "lottery"},
            shortened=days < SCHEDULE_DAYS,
            days=days,
            hold_key=secrets.token_urlsafe(16),
            **schedule_view(page, sessions),
        )


def schedule_view(page: PageContext, sessions: list[SessionAvailability]) -> dict[str, Any]:
    """The countdowns a doctor's page starts with, from the platform's clock."""
    return {
        "release_ms": {s.id: page.ms_until(s.release_at) for s in sessions if not s.released},
        "server_now_ms": int(page.now().timestamp() * 1000),
    }

"""Search over the region and cross-hospital alternatives (thin: decode, call, encode)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from guahao.platform.error_codes import refuse
from guahao.search.query import Alternatives, SearchQuery, SearchResult
from guahao.search.service import SearchService

__all__ = ["SearchController"]

_Many = Annotated[list[str] | None, QueryParameter()]


def _query(raw: dict[str, Any]) -> SearchQuery:
    try:
        return msgspec.convert(raw, SearchQuery)
    except msgspec.ValidationError as exc:
        refuse("SEARCH_FILTER_INVALID", reason=str(exc))


class SearchController(Controller):
    path = "/api/v1"
    tags = ["search"]  # noqa: RUF012

    @get(
        "/search",
        operation_id="search",
        responses={200: ResponseSpec(SearchResult, description="Request fulfilled")},
    )
    async def search(
        self,
        search: NamedDependency[SearchService],
        q: Annotated[str, QueryParameter(max_length=100)] = "",
        kind: _Many = None,
        district: _Many = None,
        grade: _Many = None,
        catalog_code: Annotated[list[str] | None, QueryParameter(name="catalogCode")] = None,
        title: _Many = None,
        hospital_id: Annotated[list[str] | None, QueryParameter(name="hospitalId")] = None,
        category: Annotated[str | None, QueryParameter()] = None,
        within_days: Annotated[int | None, QueryParameter(name="withinDays")] = None,
        on_date: Annotated[date | None, QueryParameter(name="date")] = None,
        sort: Annotated[
            Literal["relevance", "next_available", "grade"], QueryParameter()
        ] = "relevance",
        page: Annotated[int, QueryParameter()] = 1,
        page_size: Annotated[int, QueryParameter(name="pageSize")] = 20,
        facets: Annotated[bool, QueryParameter()] = True,
    ) -> Response[bytes]:
        """Hospitals, departments and doctors of the region by Chinese text, pinyin (full or
        initials), alias or symptom, with filters, facets, sorting and paging."""
        query = _query(
            {
                "q": q,
                "filters": {
                    "kind": kind or [],
                    "district": district or [],
                    "grade": grade or [],
                    "catalogCode": catalog_code or [],
                    "title": title or [],
                    "hospitalId": hospital_id or [],
                    "category": category,
                    "withinDays": within_days,
                    "onDate": on_date.isoformat() if on_date else None,
                },
                "sort": sort,
                "page": page,
                "pageSize": page_size,
                "facets": facets,
            }
        )
        return Response(await search.search_encoded(query), media_type=MediaType.JSON)

    @get("/doctors/{doctor_id:str}/alternatives", operation_id="doctorAlternatives")
    async def alternatives(
        self,
        search: NamedDependency[SearchService],
        doctor_id: FromPath[str],
        within_days: Annotated[int, QueryParameter(name="withinDays")] = 7,
        limit: Annotated[int, QueryParameter()] = 10,
    ) -> Alternatives:
        """The same catalog department with free units at other hospitals, nearest district
        first (what a hospital's own app cannot offer when its doctor is full)."""
        return await search.alternatives(doctor_id, within_days=within_days, limit=limit)

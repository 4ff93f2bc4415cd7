"""The search facade: validate, plan, execute on the configured backend, add guidance.

Everything a caller (HTTP, CLI, the demo) needs is here: ``search``, ``alternatives`` (the
same catalog department with free units at other hospitals, nearest district first),
``reindex``, and the outbox handler ``indexer.handle``.
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from guahao.config import Settings
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.reference.catalog import load_catalog
from guahao.platform.services.runtime import Ports
from guahao.platform.shared_calls import SharedCalls
from guahao.search.answers import SearchAnswers
from guahao.search.availability import HORIZON_DAYS, local_today
from guahao.search.backend import Progress, SearchBackend
from guahao.search.documents import GRADE_RANK, TITLE_LABELS, DocumentBuilder
from guahao.search.embedded import EmbeddedBackend, hit_of
from guahao.search.index_changes import CHANNEL as CHANGES_CHANNEL
from guahao.search.index_changes import AnnouncingBackend, IndexChanges
from guahao.search.indexer import SearchIndexer
from guahao.search.query import (
    MAX_QUERY_CHARS,
    AlternativeDepartment,
    Alternatives,
    SearchFilters,
    SearchQuery,
    SearchRequest,
    SearchResult,
    TriageAdvice,
    TriageDepartment,
    available_days,
    plan,
)
from guahao.search.tokens import TextAnalyzer
from guahao.search.vocabulary import DistrictMap, SymptomRule, load_districts

__all__ = ["SearchService", "search_service_for"]

log = logging.getLogger(__name__)

_CATEGORIES = frozenset({"general", "specialist", "premium"})
_CATALOG_CODE = re.compile(r"^\d{2}(\.\d{2})?$")


class SearchService:
    """Search over the region's hospitals, departments and doctors."""

    def __init__(
        self,
        ports: Ports,
        backend: SearchBackend,
        *,
        analyzer: TextAnalyzer | None = None,
        districts: DistrictMap | None = None,
    ) -> None:
        self._p = ports
        self.backend = backend
        self.analyzer = analyzer or TextAnalyzer()
        self.builder = DocumentBuilder(self.analyzer)
        self.changes = IndexChanges()
        """The index's generation, moved by every write here or (when following) anywhere."""
        self.answers = SearchAnswers(self.changes)
        self._searching: SharedCalls[tuple[Any, int], SearchResult] = SharedCalls()
        # every write goes through the indexer, so every write moves the generation
        self.indexer = SearchIndexer(ports, AnnouncingBackend(backend, self.changes), self.builder)
        self._districts = districts or load_districts()
        self._catalog = load_catalog()

    async def reindex(self, progress: Progress | None = None) -> int:
        return await self.indexer.reindex(progress)

    async def count(self) -> int:
        return await self.backend.count()

    async def refresh_due(self) -> int:
        """The sweep's step: availability changed by the clock alone (releases, starts,
        midnight). A failing search backend is logged, never fails the platform's sweep."""
        try:
            return await self.indexer.refresh_due()
        except Exception:
            log.exception("search availability refresh failed; the next sweep retries")
            return 0

    def _today(self) -> date:
        return local_today(self._p.clock.now())

    def _check(self, query: SearchQuery) -> None:
        f = query.filters
        if len(query.q) > MAX_QUERY_CHARS:
            refuse(
                "SEARCH_QUERY_INVALID", field="q", reason=f"at most {MAX_QUERY_CHARS} characters"
            )
        for field, values, allowed in (
            ("grade", f.grade, GRADE_RANK),
            ("title", f.title, TITLE_LABELS),
        ):
            for value in values:
                if value not in allowed:
                    refuse(
                        "SEARCH_FILTER_INVALID", field=field, value=value, allowed=sorted(allowed)
                    )
        for code in f.catalog_code:
            if not _CATALOG_CODE.match(code):
                refuse("SEARCH_FILTER_INVALID", field="catalogCode", value=code)
        if f.category is not None and f.category not in _CATEGORIES:
            refuse(
                "SEARCH_FILTER_INVALID",
                field="category",
                value=f.category,
                allowed=sorted(_CATEGORIES),
            )
        if f.on_date is not None:
            today = self._today()
            if not today <= f.on_date <= today + timedelta(days=HORIZON_DAYS - 1):
                refuse(
                    "SEARCH_FILTER_INVALID",
                    field="date",
                    value=f.on_date.isoformat(),
                    reason=f"from today to {HORIZON_DAYS - 1} days ahead",
                )

    def _triage(self, rules: list[SymptomRule]) -> list[TriageAdvice]:
        sources = self.analyzer.vocabulary.sources["symptoms.json"]
        advice = []
        for rule in rules:
            departments = [
                TriageDepartment(catalog_code=code, name=self._catalog.qualified_name(code))
                for code in rule.catalog_codes
            ]
            advice.append(
                TriageAdvice(symptom=rule.terms[0], departments=departments, sources=sources)
            )
        return advice

    def follow_changes(self, redis: Redis, key_prefix: str = "") -> None:
        """Learn of index writes made by other processes (remembered answers are used only
        while following; see ``index_changes``)."""
        self.changes.channel = f"{key_prefix}{CHANGES_CHANNEL}"
        self.changes.start(redis)

    async def stop_following(self) -> None:
        await self.changes.stop()

    async def search(self, query: SearchQuery) -> SearchResult:
        """Validate and run a search; refusals carry SEARCH_* codes. An answer already given
        on the same index today is given again (``answers``)."""
        self._check(query)
        today = self._today()
        key = self.answers.key(query, today)
        found = self.answers.found(key)
        if found is not None:
            return found
        return await self._search(query, today, key)

    async def search_encoded(self, query: SearchQuery) -> bytes:
        """``search``'s answer as JSON (the API's route), encoded once per remembered answer."""
        self._check(query)
        today = self._today()
        key = self.answers.key(query, today)
        body = self.answers.encoded(key)
        if body is not None:
            return body
        result = await self._search(query, today, key)
        return self.answers.encoded(key) or msgspec.json.encode(result)

    def remembered(self, query: SearchQuery) -> bytes | None:
        """``search_encoded``'s answer when it is remembered, else None (never searches: the
        front answers, ``guahao.web.front_answers``, leave a miss to the route); refuses as
        ``search`` does."""
        self._check(query)
        return self.answers.encoded(self.answers.key(query, self._today()))

    async def _search(self, query: SearchQuery, today: date, key: Any) -> SearchResult:
        """The search of a miss, shared by the misses of the same answer on the same index:
        the embedded index runs one search at a time, and at a release's first moment 64
        connections asking 8 words each waited for a search of their own, one behind the
        other (the search row's cold p99 150 ms against 8.5 warm, bench/README.md session 14).
        A miss after an index write starts its own: it must see the write."""
        return await self._searching(
            (key, self.answers.ticket()), lambda: self._search_once(query, today, key)
        )

    async def _search_once(self, query: SearchQuery, today: date, key: Any) -> SearchResult:
        ticket = self.answers.ticket()
        request, rules = plan(query, self.analyzer, today)
        try:
            result = await self.backend.search(request)
        except GuahaoError:
            raise
        except Exception as exc:
            refuse("SEARCH_UNAVAILABLE", backend=self.backend.name, reason=type(exc).__name__)
        answer = msgspec.structs.replace(result, triage=self._triage(rules))
        self.answers.keep(key, answer, ticket)
        return answer

    async def alternatives(
        self, doctor_id: str, *, within_days: int = 7, limit: int = 10
    ) -> Alternatives:
        """Departments of the doctor's catalog code at other hospitals with free units within
        ``within_days``, nearest district first, each with its doctors who have free units."""
        if not 1 <= within_days <= HORIZON_DAYS:
            refuse("SEARCH_FILTER_INVALID", field="withinDays", value=within_days)
        if not 1 <= limit <= 50:
            refuse("SEARCH_FILTER_INVALID", field="limit", value=limit)
        try:
            found = await self.indexer.doctor_documents([doctor_id])
        except GuahaoError:
            raise
        except Exception as exc:
            refuse("SEARCH_UNAVAILABLE", backend=self.backend.name, reason=type(exc).__name__)
        if not found:
            refuse("DOCTOR_NOT_FOUND", doctor_id=doctor_id)
        doctor = found[0]
        window = available_days(SearchFilters(within_days=within_days), self._today()) or ()
        free_in_window = sum(c.free for c in doctor.availability.cells if c.day in set(window))
        if not doctor.catalog_code:
            return Alternatives(
                doctor=hit_of(doctor),
                full=free_in_window == 0,
                within_days=within_days,
                alternatives=[],
            )
        filters = SearchFilters(
            kind=("department",),
            catalog_code=(doctor.catalog_code,),
            exclude_hospital_id=doctor.hospital_id,
        )
        request = SearchRequest(
            terms=(),
            raw="",
            filters=filters,
            available_days=window,
            sort="next_available",
            offset=0,
            limit=50,
            facets=False,
            today=self._today(),
        )
        try:
            result = await self.backend.search(request)
        except Exception as exc:
            refuse("SEARCH_UNAVAILABLE", backend=self.backend.name, reason=type(exc).__name__)
        ranked = sorted(
            result.hits,
            key=lambda h: (
                self._districts.distance(doctor.district, h.district),
                h.next_available_date or date.max,
                GRADE_RANK.get(h.grade, 9),
                h.name,
            ),
        )[:limit]
        alternatives = []
        window_set = set(window)
        for hit in ranked:
            members = await self.backend.documents(kind="doctor", department_id=hit.id)
            free = [m for m in members if any(c.day in window_set for c in m.availability.cells)]
            free.sort(key=lambda m: (m.availability.next_date or date.max, -m.availability.free_7d))
            distance = self._districts.distance(doctor.district, hit.district)
            alternatives.append(
                AlternativeDepartment(
                    department=hit,
                    distance_km=None if distance == float("inf") else round(distance, 1),
                    doctors=[hit_of(m) for m in free[:5]],
                )
            )
        return Alternatives(
            doctor=hit_of(doctor),
            full=free_in_window == 0,
            within_days=within_days,
            alternatives=alternatives,
        )


def search_service_for(settings: Settings, ports: Ports) -> SearchService:
    """The search service the settings describe (nothing is connected until first use)."""
    backend: SearchBackend
    if settings.search_backend == "meilisearch":
        if not settings.meili_url:
            raise ValueError("GUAHAO_MEILI_URL is required when GUAHAO_SEARCH_BACKEND=meilisearch")
        from guahao.search.meili import MeiliBackend

        backend = MeiliBackend(settings.meili_url, settings.meili_api_key, settings.meili_index)
    else:
        directory = settings.search_index_dir or str(Path(settings.data_dir) / "search")
        backend = EmbeddedBackend(None if directory == ":memory:" else directory)
    return SearchService(ports, backend, districts=load_districts(settings.search_districts_file))

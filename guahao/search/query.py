"""What a search asks and answers, and how query text becomes terms.

``SearchQuery`` is what a citizen (HTTP, CLI) sends; the service validates it, finds triage
guidance in it, and hands every backend the same ``SearchRequest``: terms with their
alternatives (synonyms, triage departments), filters already resolved to dates, sort and page.
Backends differ only in how they execute it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import msgspec

from guahao.search.documents import Kind
from guahao.search.tokens import TextAnalyzer, is_cjk, split_scripts
from guahao.search.vocabulary import SymptomRule, catalog_covers

__all__ = [
    "FACETS",
    "MAX_PAGE_SIZE",
    "AlternativeDepartment",
    "Alternatives",
    "FacetValue",
    "Hit",
    "QueryTerm",
    "SearchFilters",
    "SearchQuery",
    "SearchRequest",
    "SearchResult",
    "Sort",
    "TriageAdvice",
    "TriageDepartment",
    "available_days",
    "plan",
    "plan_terms",
]

MAX_PAGE_SIZE = 50
MAX_QUERY_CHARS = 100
FACETS = ("kind", "district", "grade", "catalogCode", "title", "category")
Sort = Literal["relevance", "next_available", "grade"]

_STOP_WORDS = frozenset(
    [
        "我",
        "你",
        "他",
        "她",
        "的",
        "了",
        "有",
        "在",
        "是",
        "很",
        "总",
        "总是",
        "最近",
        "经常",
        "一直",
        "感觉",
        "觉得",
        "看",
        "挂",
        "挂号",
        "医生",
        "哪个",
        "什么",
        "怎么",
        "怎么办",
        "想",
        "要",
        "和",
        "与",
        "及",
        "去",
        "得",
        "吗",
        "呢",
        "啊",
        "有点",
        "老是",
        "一点",
    ]
)
"""Words that carry no search meaning in a sentence like 我最近总是头痛怎么办."""


class SearchFilters(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Every filter is optional; values within one filter are alternatives (OR)."""

    kind: tuple[Kind, ...] = ()
    district: tuple[str, ...] = ()
    grade: tuple[str, ...] = ()
    catalog_code: tuple[str, ...] = ()
    """A subject code (``03``) also finds its specialities (``03.04``)."""
    title: tuple[str, ...] = ()
    hospital_id: tuple[str, ...] = ()
    category: str | None = None
    """With an availability filter: free units of this category; alone: offers it."""
    within_days: Annotated[int, msgspec.Meta(ge=1, le=31)] | None = None
    """Free units today or in the next N-1 days (1 = today)."""
    on_date: date | None = None
    """Free units on this local date."""
    exclude_hospital_id: str | None = None


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    q: str = ""
    filters: SearchFilters = SearchFilters()
    sort: Sort = "relevance"
    page: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    page_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE_SIZE)] = 20
    facets: bool = True


class QueryTerm(msgspec.Struct, frozen=True):
    """One word the citizen typed, and what else may stand for it (any one must match).

    ``phrases`` are Chinese text (matched as a run of characters) or Latin prefixes;
    ``catalog_codes`` come from triage guidance; ``latin`` marks a term typo tolerance applies
    to.
    """

    text: str
    phrases: tuple[str, ...]
    catalog_codes: tuple[str, ...] = ()
    latin: bool = False
    groups: tuple[int, ...] = ()
    """Synonym groups the word is a member of (their members are ``phrases[1:]``)."""


class SearchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend executes: terms ANDed, filters resolved to concrete dates."""

    terms: tuple[QueryTerm, ...]
    raw: str
    filters: SearchFilters
    available_days: tuple[date, ...] | None
    """Dates on which a free unit is required (``None``: no availability filter)."""
    sort: Sort
    offset: int
    limit: int
    facets: bool
    today: date


class Hit(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    kind: Kind
    id: str
    name: str
    hospital_id: str
    hospital_name: str
    grade: str
    district: str
    department_id: str | None = None
    department_name: str | None = None
    catalog_code: str | None = None
    catalog_name: str | None = None
    title: str | None = None
    expertise: str | None = None
    aliases: list[str] = []
    next_available_date: date | None = None
    free_units_7d: int = msgspec.field(default=0, name="freeUnits7d")
    next_release_at: datetime | None = None
    categories: list[str] = []


class FacetValue(msgspec.Struct, frozen=True, rename="camel"):
    value: str
    count: int


class TriageDepartment(msgspec.Struct, frozen=True, rename="camel"):
    catalog_code: str
    name: str


class TriageAdvice(msgspec.Struct, frozen=True, rename="camel"):
    """Guidance (导诊) found in the query: never a diagnosis; sources say where it is from."""

    symptom: str
    departments: list[TriageDepartment]
    sources: list[str]


class SearchResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    total: int
    page: int
    page_size: int
    hits: list[Hit]
    facets: dict[str, list[FacetValue]] = {}
    triage: list[TriageAdvice] = []
    corrections: dict[str, list[str]] = {}
    """Latin terms that matched nothing as typed, and what they were read as."""
    backend: str = ""


class AlternativeDepartment(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    department: Hit
    distance_km: float | None
    doctors: list[Hit]


class Alternatives(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where else the same catalog department has free units, nearest district first."""

    doctor: Hit
    full: bool
    within_days: int
    alternatives: list[AlternativeDepartment]


_CHILD_WORDS = ("小孩", "孩子", "宝宝", "儿童", "小儿", "婴儿", "幼儿", "女儿", "儿子")
PEDIATRICS = "07"
"""The catalog's 儿科: a symptom of a child is seen there first."""


def _chinese_words(run: str, analyzer: TextAnalyzer) -> list[str]:
    if len(run) <= 4:
        return [run]
    words = [w for w in analyzer.words(run) if w not in _STOP_WORDS]
    return words or [run]


def plan_terms(text: str, analyzer: TextAnalyzer) -> tuple[list[QueryTerm], list[SymptomRule]]:
    """Split query text into terms and expand each with synonyms and triage guidance.

    >>> terms, rules = plan_terms("心血管科 xnk", TextAnalyzer())
    >>> [t.text for t in terms], terms[0].phrases[:2], terms[1].latin
    (['心血管科', 'xnk'], ('心血管科', '心内科'), True)
    >>> terms, rules = plan_terms("头痛", TextAnalyzer())
    >>> terms[0].catalog_codes
    ('03.03', '20')
    """
    vocabulary = analyzer.vocabulary
    text = text[:MAX_QUERY_CHARS]
    child = any(w in text for w in _CHILD_WORDS)
    terms: list[QueryTerm] = []
    rules: list[SymptomRule] = []
    for run in split_scripts(text):
        if not is_cjk(run):
            terms.append(QueryTerm(text=run, phrases=(run,), latin=True))
            continue
        for word in _chinese_words(run, analyzer):
            found = vocabulary.symptoms_in(word)
            if not found:
                if (word in _STOP_WORDS or (child and word in _CHILD_WORDS)) and len(run) > 1:
                    continue  # fillers; a child's age steers triage below instead
                terms.append(
                    QueryTerm(
                        text=word,
                        phrases=(word, *vocabulary.synonyms_of(word)),
                        groups=vocabulary.groups_of(word),
                    )
                )
                continue
            codes = tuple(dict.fromkeys(c for r in found for c in r.catalog_codes))
            if child and not any(catalog_covers(PEDIATRICS, c) for c in codes):
                codes = tuple(dict.fromkeys((PEDIATRICS, *codes)))
            for rule in found:
                advice = SymptomRule(terms=rule.terms, catalog_codes=codes) if child else rule
                if advice not in rules:
                    rules.append(advice)
            symptom = next(t for t in found[0].terms if t in word)
            terms.append(QueryTerm(text=word, phrases=(symptom,), catalog_codes=codes))
    return terms, rules


def available_days(filters: SearchFilters, today: date) -> tuple[date, ...] | None:
    """The dates on which a free unit is required, or ``None`` without such a filter.

    >>> available_days(SearchFilters(within_days=2), date(2026, 1, 1))
    (datetime.date(2026, 1, 1), datetime.date(2026, 1, 2))
    >>> available_days(SearchFilters(within_days=2, on_date=date(2026, 1, 5)), date(2026, 1, 1))
    ()
    """
    if filters.within_days is None and filters.on_date is None:
        return None
    days: set[date] | None = None
    if filters.within_days is not None:
        days = {today + timedelta(days=i) for i in range(filters.within_days)}
    if filters.on_date is not None:
        days = {filters.on_date} if days is None else days & {filters.on_date}
    return tuple(sorted(days or ()))


def plan(
    query: SearchQuery, analyzer: TextAnalyzer, today: date
) -> tuple[SearchRequest, list[SymptomRule]]:
    """The request every backend executes for ``query`` on the local date ``today``."""
    terms, rules = plan_terms(query.q, analyzer)
    request = SearchRequest(
        terms=tuple(terms),
        raw=query.q,
        filters=query.filters,
        available_days=available_days(query.filters, today),
        sort=query.sort,
        offset=(query.page - 1) * query.page_size,
        limit=query.page_size,
        facets=query.facets,
        today=today,
    )
    return request, rules

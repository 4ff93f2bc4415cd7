"""What a search asks and answers, and how query text becomes terms.

``SearchQuery`` is what a citizen (HTTP, CLI) sends; the service validates it, finds triage
guidance in it, and hands every backend the same ``SearchRequest``: terms with their
alternatives (synonyms, triage departments), filters already resolved to dates, sort and page.
Backends differ only in how they execute it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import msgspec

from guahao.search.documents import Kind
from guahao.search.english import STOP_WORDS, EnglishReading, english_words, reader_for
from guahao.search.normalisation import normalise
from guahao.search.tokens import TextAnalyzer, is_cjk, split_scripts
from guahao.search.vocabulary import SymptomRule

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
        "厉害",
        "严重",
        "难受",
        "一下",
        "几天",
        "好几天",
        "怎么回事",
        "应该",
        "哪里",
        "哪家",
        "哪儿",
        "能",
        "可以",
        "需要",
        "帮",
        "给",
        "带",
        "预约",
        "了吗",
        "还",
        "又",
        "就",
        "都",
        "也",
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
    english: str = ""
    """The English department name or plain word the term was read as (its codes are in
    ``catalog_codes``); pinyin typo tolerance does not apply to it."""


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
_ENGLISH_CHILD_WORDS = frozenset(
    {"baby", "babies", "child", "children", "kid", "kids", "infant", "toddler", "son", "daughter"}
)
PEDIATRICS = "07"
"""The catalog's 儿科: a symptom of a child is seen there first."""
_CHILD_SUBJECTS = ("07", "08", "09")
"""儿科, 小儿外科, 儿童保健科."""

_CJK_RUN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")


_LEADING = (
    "我想挂",
    "我要挂",
    "我想看",
    "我要看",
    "想挂",
    "要挂",
    "挂号",
    "我想",
    "我要",
    "挂",
    "找",
)
_TRAILING = ("的医生", "医生", "大夫", "专家", "挂号", "看病", "的号", "号")
"""Words around what is looked for (挂骨科, 骨科医生) that jieba may keep inside one word."""


def _trimmed(run: str) -> str:
    """``run`` without the request words around it, when something of two characters remains.

    >>> _trimmed("骨科医生"), _trimmed("挂眼科的号"), _trimmed("医生")
    ('骨科', '眼科', '医生')
    """
    for affixes, cut in ((_LEADING, str.removeprefix), (_TRAILING, str.removesuffix)):
        for affix in affixes:
            if len(run) - len(affix) >= 2 and cut(run, affix) != run:
                run = cut(run, affix)
                break
    return run


def _chinese_words(run: str, analyzer: TextAnalyzer) -> list[str]:
    if len(run) <= 4:
        return [run]
    words = [w for w in analyzer.words(run) if w not in _STOP_WORDS]
    return words or [run]


class _Planner:
    """One query's terms and guidance, built piece by piece."""

    def __init__(self, text: str, analyzer: TextAnalyzer) -> None:
        self.analyzer = analyzer
        self.vocabulary = analyzer.vocabulary
        self.english = reader_for(analyzer.vocabulary)
        words = set(english_words(text))
        # 婴儿 in 试管婴儿 is no child: look for children outside the complaints' own words.
        rest = text
        for rule in self.vocabulary.symptoms_in(text):
            for term in rule.terms:
                rest = rest.replace(term, " ")
        self.child = any(w in rest for w in _CHILD_WORDS) or bool(words & _ENGLISH_CHILD_WORDS)
        self.terms: list[QueryTerm] = []
        self.rules: list[SymptomRule] = []

    def _codes(self, codes: tuple[str, ...]) -> tuple[str, ...]:
        """For a child, children's departments first: those the guidance names (儿童保健科
        for a vaccination), else pediatrics."""
        if not self.child:
            return codes
        young = [c for c in codes if c[:2] in _CHILD_SUBJECTS]
        if young:
            return tuple(dict.fromkeys((*young, *codes)))
        return tuple(dict.fromkeys((PEDIATRICS, *codes)))

    def _advise(self, found: list[SymptomRule], codes: tuple[str, ...]) -> None:
        for rule in found:
            advice = SymptomRule(terms=rule.terms, catalog_codes=codes) if self.child else rule
            if advice not in self.rules:
                self.rules.append(advice)

    def plain(self, word: str) -> None:
        self.terms.append(
            QueryTerm(
                text=word,
                phrases=(word, *self.vocabulary.synonyms_of(word)),
                groups=self.vocabulary.groups_of(word),
            )
        )

    def chinese(self, run: str, *, alone: bool) -> None:
        """A run of Chinese characters: names the platform or the vocabulary knows stay whole;
        a short run of several words (二院眼科, 骨科医生) is read word by word; a sentence is
        read for complaints first, and what remains of it kept only where it says something
        (a hospital, a department, a name)."""
        vocabulary = self.vocabulary
        run = _trimmed(run)
        if vocabulary.groups_of(run) or self.analyzer.knows(run):
            self.plain(run)
            return
        if 2 < len(run) <= 4 and not vocabulary.symptoms_in(run):
            words = self.analyzer.words(run)
            if len(words) > 1 and all(len(w) > 1 for w in words):
                kept = [w for w in words if not self._filler(w)] or words
                for word in kept:
                    self.word(word, alone=len(kept) == 1 and alone)
                return
        if vocabulary.is_department_word(run):
            self.plain(run)
            return
        if len(run) > 4:
            found = vocabulary.symptoms_in(run)
            if found:
                rest = run
                for rule in found:
                    term = max((t for t in rule.terms if t in rest), key=len, default="")
                    if not term:
                        continue
                    rest = rest.replace(term, " ", 1)
                    codes = self._codes(rule.catalog_codes)
                    self._advise([rule], codes)
                    self.terms.append(QueryTerm(text=term, phrases=(term,), catalog_codes=codes))
                for piece in rest.split():
                    for word in self.analyzer.words(piece):
                        if len(word) > 1 and not self._filler(word):
                            self.plain(word)
                return
        for word in _chinese_words(run, self.analyzer):
            self.word(word, alone=alone)

    def word(self, word: str, *, alone: bool) -> None:
        """One Chinese word: a complaint (with guidance), a filler, or searched as it is."""
        vocabulary = self.vocabulary
        found = [] if vocabulary.is_department_word(word) else vocabulary.symptoms_in(word)
        if not found:
            if self._filler(word) and not alone:
                return  # fillers; a child's age steers triage instead
            self.plain(word)
            return
        codes = self._codes(tuple(dict.fromkeys(c for r in found for c in r.catalog_codes)))
        self._advise(found, codes)
        symptom = next(t for t in found[0].terms if t in word)
        self.terms.append(QueryTerm(text=word, phrases=(symptom,), catalog_codes=codes))

    def _filler(self, word: str) -> bool:
        return word in _STOP_WORDS or (self.child and word in _CHILD_WORDS)

    def latin(self, chunk: str, *, alone: bool) -> None:
        """Latin text: English phrases become their catalog codes (and guidance), English
        fillers go, and the rest are pinyin or Latin prefixes as before."""
        words = tuple(english_words(chunk))
        spans = self.english.spans(words)
        covered: dict[int, tuple[int, EnglishReading]] = {at: (n, r) for at, n, r in spans}
        # A child word steers another complaint ("my kid has a fever"); alone, or beside a
        # place ("children's hospital"), it is what is looked for.
        complaint = any(n > 1 or words[at] not in _ENGLISH_CHILD_WORDS for at, n, _ in spans)
        at = 0
        while at < len(words):
            word = words[at]
            if at in covered:
                size, reading = covered[at]
                at += size
                if word in _ENGLISH_CHILD_WORDS and size == 1 and (complaint or self.terms):
                    continue  # "my kid has a fever": the child steers triage
                codes = self._codes(reading.catalog_codes)
                if reading.rule is not None:
                    self._advise([reading.rule], codes)
                self.terms.append(
                    QueryTerm(
                        text=reading.text,
                        phrases=(reading.text,),
                        catalog_codes=codes,
                        latin=True,
                        english=reading.corrected or reading.text,
                    )
                )
                continue
            at += 1
            if (word in STOP_WORDS or word in _ENGLISH_CHILD_WORDS) and (
                len(words) > 1 or not alone
            ):
                continue
            for run in split_scripts(word):
                self.terms.append(QueryTerm(text=run, phrases=(run,), latin=True))


def plan_terms(text: str, analyzer: TextAnalyzer) -> tuple[list[QueryTerm], list[SymptomRule]]:
    """Split query text into terms and expand each with synonyms and triage guidance; the
    text is normalised first (full-width, Traditional characters, case, spacing).

    >>> terms, rules = plan_terms("心血管科 xnk", TextAnalyzer())
    >>> [t.text for t in terms], terms[0].phrases[:2], terms[1].latin
    (['心血管科', 'xnk'], ('心血管科', '心内科'), True)
    >>> terms, rules = plan_terms("頭痛", TextAnalyzer())
    >>> terms[0].catalog_codes
    ('03.03', '20')
    >>> [(t.text, t.catalog_codes) for t in plan_terms("Ｃａｒｄｉｏｌｏｇｙ", TextAnalyzer())[0]]
    [('cardiology', ('03.04',))]
    """
    text = normalise(text[:MAX_QUERY_CHARS])
    planner = _Planner(text, analyzer)
    pieces = [p for p in _CJK_RUN.split(text) if p.strip()]
    for piece in pieces:
        alone = len(pieces) == 1
        if is_cjk(piece):
            planner.chinese(piece, alone=alone)
        else:
            planner.latin(piece, alone=alone)
    return planner.terms, planner.rules


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
        raw=normalise(query.q),
        filters=query.filters,
        available_days=available_days(query.filters, today),
        sort=query.sort,
        offset=(query.page - 1) * query.page_size,
        limit=query.page_size,
        facets=query.facets,
        today=today,
    )
    return request, rules

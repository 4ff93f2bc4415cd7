"""The Meilisearch backend (production), through the official client.

Meilisearch segments Chinese itself and ranks with its own rules; we give it the same
documents as the embedded backend, including the pinyin tokens (it has no pinyin), and push
the region's vocabulary into its settings: department synonym groups as mutual synonyms,
triage guidance as one-way synonyms from a symptom to catalog-code tokens, and the catalog's
words as its segmentation dictionary. A full reindex fills ``<index>_next`` and swaps it with
the live index in one task (``swap_indexes``), so readers never see a half-built index.

The client is synchronous (``requests``); calls run in a worker thread.

>>> settings = index_settings(load_vocabulary())
>>> settings["filterableAttributes"][:3], "sort" in settings["rankingRules"]
(['kind', 'district', 'grade'], True)
>>> filter_expressions(SearchFilters(kind=("doctor",), catalog_code=("03",)), None)
['kind IN ["doctor"]', 'catalogCodes IN ["03"]']
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import msgspec

from guahao.search.backend import Progress
from guahao.search.documents import GRADE_RANK, Kind, SearchDocument, catalog_scope
from guahao.search.embedded import hit_of
from guahao.search.english import english_words
from guahao.search.normalisation import normalise
from guahao.search.query import FacetValue, SearchFilters, SearchRequest, SearchResult
from guahao.search.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "MeiliBackend",
    "filter_expressions",
    "index_settings",
    "meili_document",
    "meili_id",
    "sort_expressions",
]

_FACETS = {
    "kind": "kind",
    "district": "district",
    "grade": "grade",
    "catalogCode": "catalogCode",
    "title": "title",
    "categories": "category",
}
_NEVER_DAY = date.max.toordinal()
_TASK_TIMEOUT_MS = 120_000
_BATCH = 1000
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SearchDocument)


def meili_id(doc_id: str) -> str:
    """Meilisearch ids allow letters, digits, ``-`` and ``_`` only.

    >>> meili_id("doctor:ab12")
    'doctor-ab12'
    """
    return doc_id.replace(":", "-")


def _quote(value: str | int) -> str:
    return str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def _among(attribute: str, values: Sequence[str | int]) -> str:
    return f"{attribute} IN [{', '.join(_quote(v) for v in values)}]"


def index_settings(vocabulary: Vocabulary) -> dict[str, Any]:
    """The index settings: what is searched (in order of weight), filtered, sorted, and the
    synonyms and dictionary from the vocabulary data."""
    synonyms: dict[str, list[str]] = {}
    for group in vocabulary.groups:
        for word in group:
            synonyms.setdefault(word, [])
            synonyms[word] += [w for w in group if w != word and w not in synonyms[word]]
    for rule in vocabulary.symptoms:
        codes = ["kc" + c.replace(".", "") for c in rule.catalog_codes]
        for term in rule.terms:
            synonyms.setdefault(term, [])
            synonyms[term] += [c for c in codes if c not in synonyms[term]]
    # English, one way as triage: department names and plain words → catalog-code tokens.
    english: list[tuple[str, tuple[str, ...]]] = [
        (" ".join(english_words(normalise(name))), (code,))
        for code, names in vocabulary.english.items()
        for name in names
    ]
    english += [(word, rule.catalog_codes) for word, rule in vocabulary.english_rules]
    for word, catalog_codes in english:
        codes = ["kc" + c.replace(".", "") for c in catalog_codes]
        synonyms.setdefault(word, [])
        synonyms[word] += [c for c in codes if c not in synonyms[word]]
    return {
        "searchableAttributes": [
            "name",
            "nameKeys",
            "tokensName",
            "aliases",
            "aliasKeys",
            "tokensAlias",
            "departmentName",
            "hospitalName",
            "district",
            "expertise",
            "tokensContext",
            "tokensParents",
            "tokensCodes",
        ],
        "filterableAttributes": [
            "kind",
            "district",
            "grade",
            "catalogCode",
            "catalogCodes",
            "title",
            "hospitalId",
            "departmentId",
            "categories",
            "availableDays",
            "availableCells",
        ],
        "sortableAttributes": ["nextDay", "gradeRank", "kindRank"],
        "rankingRules": ["sort", "words", "typo", "proximity", "attribute", "exactness"],
        "displayedAttributes": ["id", "body"],
        "synonyms": synonyms,
        "dictionary": vocabulary.dictionary_words(),
        "typoTolerance": {
            "enabled": True,
            "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8},
            "disableOnAttributes": ["tokensCodes", "nameKeys", "aliasKeys"],
        },
        "faceting": {"maxValuesPerFacet": 200},
        "pagination": {"maxTotalHits": 5000},
    }


def meili_document(doc: SearchDocument) -> dict[str, Any]:
    """The document as Meilisearch stores it: searchable text, filter fields, and the whole
    document (``body``) to rebuild hits exactly as the embedded backend shows them."""
    a = doc.availability
    return {
        "id": meili_id(doc.id),
        "kind": doc.kind,
        "kindRank": {"hospital": 0, "department": 1, "doctor": 2}[doc.kind],
        "name": doc.name,
        "nameKeys": list(doc.name_keys),
        "aliasKeys": list(doc.alias_keys),
        "aliases": list(doc.aliases),
        "departmentName": doc.department_name,
        "hospitalName": doc.hospital_name,
        "expertise": doc.expertise,
        "tokensName": doc.tokens_name,
        "tokensAlias": doc.tokens_alias,
        "tokensContext": doc.tokens_context,
        "tokensParents": doc.tokens_parents,
        "tokensCodes": doc.tokens_codes,
        "hospitalId": doc.hospital_id,
        "departmentId": doc.department_id,
        "district": doc.district,
        "grade": doc.grade,
        "gradeRank": GRADE_RANK.get(doc.grade, 9),
        "catalogCode": doc.catalog_code,
        "catalogCodes": list(catalog_scope(doc.catalog_code)),
        "title": doc.title,
        "categories": list(a.categories),
        "nextDay": a.next_date.toordinal() if a.next_date else _NEVER_DAY,
        "free7d": a.free_7d,
        "availableDays": sorted({c.day.toordinal() for c in a.cells}),
        "availableCells": sorted({f"{c.day.toordinal()}:{c.category}" for c in a.cells}),
        "body": _encoder.encode(doc).decode(),
    }


def filter_expressions(filters: SearchFilters, available_days: Sequence[date] | None) -> list[str]:
    """Meilisearch filter expressions (ANDed) with the embedded backend's meaning.

    >>> filter_expressions(SearchFilters(category="premium"), [date(2026, 11, 27)])
    ['availableCells IN ["739947:premium"]']
    >>> filter_expressions(SearchFilters(category="premium", exclude_hospital_id="h1"), None)
    ['hospitalId != "h1"', 'categories = "premium"']
    """
    out: list[str] = []
    for attribute, values in (
        ("kind", filters.kind),
        ("district", filters.district),
        ("grade", filters.grade),
        ("title", filters.title),
        ("hospitalId", filters.hospital_id),
        ("catalogCodes", filters.catalog_code),
    ):
        if values:
            out.append(_among(attribute, values))
    if filters.exclude_hospital_id:
        out.append(f"hospitalId != {_quote(filters.exclude_hospital_id)}")
    if available_days is not None:
        days = [d.toordinal() for d in available_days]
        if not days:
            out.append('kind = "none"')
        elif filters.category:
            out.append(_among("availableCells", [f"{d}:{filters.category}" for d in days]))
        else:
            out.append(_among("availableDays", days))
    elif filters.category:
        out.append(f"categories = {_quote(filters.category)}")
    return out


def sort_expressions(request: SearchRequest) -> list[str]:
    if request.sort == "next_available":
        return ["nextDay:asc", "kindRank:asc"]
    if request.sort == "grade":
        return ["gradeRank:asc"]
    if not request.terms:
        return ["kindRank:asc", "gradeRank:asc"]
    return []


def query_text(request: SearchRequest) -> str:
    """The text Meilisearch searches: each term as planned, normalised (synonyms, triage and
    English codes are in the index settings; a mistyped English word as it was read)."""
    return " ".join(term.english or term.phrases[0] for term in request.terms)


class MeiliBackend:
    """Meilisearch behind the backend port."""

    name = "meilisearch"

    def __init__(
        self,
        url: str,
        api_key: str = "",
        index: str = "guahao",
        vocabulary: Vocabulary | None = None,
    ) -> None:
        import meilisearch

        self._client = meilisearch.Client(url, api_key or None, timeout=10)
        self._uid = index
        self._vocabulary = vocabulary or load_vocabulary()
        self._ready = False

    async def _call(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(work, *args, **kwargs)

    def _wait(self, task: Any) -> None:
        done = self._client.wait_for_task(task.task_uid, timeout_in_ms=_TASK_TIMEOUT_MS)
        if done.status != "succeeded":
            raise RuntimeError(f"meilisearch task {task.task_uid} {done.status}: {done.error}")

    def _ensure(self, uid: str) -> None:
        from meilisearch.errors import MeilisearchApiError

        try:
            self._client.get_index(uid)
        except MeilisearchApiError:
            self._wait(self._client.create_index(uid, {"primaryKey": "id"}))
        self._wait(self._client.index(uid).update_settings(index_settings(self._vocabulary)))

    def _ensure_live(self) -> None:
        if not self._ready:
            self._ensure(self._uid)
            self._ready = True

    async def replace_all(
        self, documents: Iterable[SearchDocument], total: int, progress: Progress | None = None
    ) -> int:
        def build() -> int:
            from meilisearch.errors import MeilisearchApiError

            self._ensure_live()
            staging = f"{self._uid}_next"
            with contextlib.suppress(MeilisearchApiError):  # no leftover staging index
                self._client.get_index(staging)
                self._wait(self._client.delete_index(staging))
            self._ensure(staging)
            index = self._client.index(staging)
            written = 0
            batch: list[dict[str, Any]] = []
            for doc in documents:
                batch.append(meili_document(doc))
                if len(batch) >= _BATCH:
                    self._wait(index.add_documents(batch, "id"))
                    written += len(batch)
                    batch = []
                    if progress is not None:
                        progress(written, total)
            if batch:
                self._wait(index.add_documents(batch, "id"))
                written += len(batch)
            self._wait(self._client.swap_indexes([{"indexes": [self._uid, staging]}]))
            self._wait(self._client.delete_index(staging))
            if progress is not None:
                progress(written, max(total, written))
            return written

        written: int = await self._call(build)
        return written

    async def upsert(self, documents: Sequence[SearchDocument]) -> None:
        if not documents:
            return

        def write() -> None:
            self._ensure_live()
            body = [meili_document(d) for d in documents]
            self._wait(self._client.index(self._uid).add_documents(body, "id"))

        await self._call(write)

    async def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return

        def remove() -> None:
            self._ensure_live()
            index = self._client.index(self._uid)
            self._wait(index.delete_documents([meili_id(i) for i in ids]))

        await self._call(remove)

    async def documents(
        self,
        *,
        kind: Kind,
        hospital_id: str | None = None,
        department_id: str | None = None,
        catalog_codes: Sequence[str] = (),
    ) -> list[SearchDocument]:
        expressions = [f"kind = {_quote(kind)}"]
        if hospital_id is not None:
            expressions.append(f"hospitalId = {_quote(hospital_id)}")
        if department_id is not None:
            expressions.append(f"departmentId = {_quote(department_id)}")
        if catalog_codes:
            expressions.append(_among("catalogCodes", list(catalog_codes)))

        def fetch() -> list[SearchDocument]:
            self._ensure_live()
            index = self._client.index(self._uid)
            found: list[SearchDocument] = []
            offset = 0
            while True:
                page = index.get_documents(
                    {"filter": " AND ".join(expressions), "limit": 1000, "offset": offset}
                )
                for item in page.results:
                    found.append(_decoder.decode(dict(item)["body"]))
                offset += len(page.results)
                if not page.results or offset >= page.total:
                    return found

        result: list[SearchDocument] = await self._call(fetch)
        return result

    async def search(self, request: SearchRequest) -> SearchResult:
        params: dict[str, Any] = {
            "filter": filter_expressions(request.filters, request.available_days),
            "hitsPerPage": request.limit,
            "page": request.offset // request.limit + 1,
            "attributesToRetrieve": ["body"],
            "matchingStrategy": "all",
        }
        sort = sort_expressions(request)
        if sort:
            params["sort"] = sort
        if request.facets:
            params["facets"] = list(_FACETS)

        def run() -> Mapping[str, Any]:
            self._ensure_live()
            answer: Mapping[str, Any] = self._client.index(self._uid).search(
                query_text(request), params
            )
            return answer

        answer = await self._call(run)
        distribution: Mapping[str, Mapping[str, int]] = answer.get("facetDistribution") or {}
        facets = {
            ours: [
                FacetValue(value=v, count=n)
                for v, n in sorted(
                    distribution.get(theirs, {}).items(), key=lambda kv: (-kv[1], kv[0])
                )
                if v
            ]
            for theirs, ours in _FACETS.items()
        }
        return SearchResult(
            total=int(answer.get("totalHits", 0)),
            page=request.offset // request.limit + 1,
            page_size=request.limit,
            hits=[hit_of(_decoder.decode(h["body"])) for h in answer.get("hits", [])],
            facets=facets if request.facets else {},
            backend="meilisearch",
        )

    async def count(self) -> int:
        def stats() -> int:
            self._ensure_live()
            return int(self._client.index(self._uid).get_stats().number_of_documents)

        found: int = await self._call(stats)
        return found

    async def close(self) -> None:
        return None

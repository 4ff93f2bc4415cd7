"""The embedded search backend: SQLite FTS5 over pre-segmented tokens, in its own file.

No server: the index is a SQLite file under ``data_dir/search/`` (or memory, for tests),
separate from the record of truth and rebuildable from the platform at any time. The FTS5
table holds the tokens of ``guahao.search.tokens`` (single Chinese characters, pinyin
syllables, joined pinyin and initials), so a Chinese query is a phrase of characters and a
pinyin query is a prefix; a plain table beside it holds what filters, facets and sorting read,
and ``cells`` holds the free units per date and category of every document.

A full reindex writes a new file and then switches a small ``CURRENT`` pointer file to it
(``os.replace`` is atomic), so readers never see a half-built index.

Relevance: an exact match of the whole query on a name, alias, its pinyin or initials first;
then, for triage queries, the guidance's order of departments; then where each term matched
(name, alias, context: Meilisearch's ``attribute`` rule); then hospitals, departments,
doctors; then the name.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from guahao.search.backend import Progress
from guahao.search.columns import Columns, first_day_for
from guahao.search.documents import (
    Kind,
    SearchDocument,
    synonym_token,
)
from guahao.search.query import FacetValue, Hit, QueryTerm, SearchRequest, SearchResult
from guahao.search.tokens import query_grams

__all__ = ["SCHEMA_VERSION", "EmbeddedBackend", "fts_match", "hit_of", "term_match"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
"""Bumped when the file's layout changes: an index of another version is set aside for a new,
empty one (``guahao serve`` rebuilds an empty index before answering)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    hospital_id TEXT NOT NULL,
    department_id TEXT NOT NULL,
    catalog_code TEXT NOT NULL,
    catalog_parent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bodies (
    rowid INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_hospital ON docs (hospital_id, kind);
CREATE INDEX IF NOT EXISTS docs_department ON docs (department_id, kind);
CREATE INDEX IF NOT EXISTS docs_catalog ON docs (catalog_code);
CREATE INDEX IF NOT EXISTS docs_parent ON docs (catalog_parent);
CREATE TABLE IF NOT EXISTS cells (
    doc INTEGER NOT NULL,
    day INTEGER NOT NULL,
    category TEXT NOT NULL,
    free INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_doc ON cells (doc);
CREATE INDEX IF NOT EXISTS cells_day ON cells (day, category, doc);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    name, alias, context, codes,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3',
    content = ''
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts_vocab USING fts5vocab(fts, 'row');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
"""The FTS table is contentless: it holds the inverted index only, not a second copy of
every token (a quarter of the index's size). A document rewritten with new tokens gets a new
rowid (never reused: AUTOINCREMENT); the old rowid's postings stay until the next full
rebuild and are skipped, as every match is checked against the live columns."""

_KIND_RANK = {"hospital": 0, "department": 1, "doctor": 2}
_TEXT_COLUMNS = "{name alias context}"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SearchDocument)
"""Stored bodies are MessagePack: a fifth smaller than JSON and as fast to decode."""
_rowids = msgspec.json.Decoder(list[int])


def _phrase(text: str) -> str:
    """A query word as FTS5 sees it: Chinese as its character pairs in a row (one character
    as a prefix), Latin as a prefix.

    >>> _phrase("心内科"), _phrase("王伟"), _phrase("王"), _phrase("xnk")
    ('"心内 内科"', '"王伟"', '"王"*', '"xnk"*')
    """
    if text.isascii():
        return f'"{text}"*'
    clean = "".join(ch for ch in text if not ch.isspace() and ch != '"')
    grams = query_grams(clean)
    return '"' + " ".join(grams) + '"' + ("*" if len(clean) == 1 else "")


def term_match(term: QueryTerm, corrections: dict[str, list[str]], *, catalog: bool = True) -> str:
    """The FTS5 expression of one planned term: its alternatives ORed (without its catalog
    codes when ``catalog`` is false: the search answers those from memory).

    >>> term_match(QueryTerm("头痛", ("头痛",), ("03.03",)), {})
    '({name alias context} : "头痛" OR codes : "kc0303")'
    >>> term_match(QueryTerm("头痛", ("头痛",), ("03.03",)), {}, catalog=False)
    '({name alias context} : "头痛")'
    """
    # A synonym group's members are found by the group's token, not a phrase each.
    phrases = term.phrases[:1] if term.groups else term.phrases
    alternatives = [f"{_TEXT_COLUMNS} : {_phrase(p)}" for p in phrases]
    alternatives += [f'codes : "{synonym_token(g)}"' for g in term.groups]
    if term.latin:  # a whole-token match scores on top of the prefix match
        alternatives.append(f'{_TEXT_COLUMNS} : "{term.text}"')
    alternatives += [f"{_TEXT_COLUMNS} : {_phrase(c)}" for c in corrections.get(term.text, [])]
    if catalog:
        alternatives += [f'codes : "kc{c.replace(".", "")}"' for c in term.catalog_codes]
    return "(" + " OR ".join(alternatives) + ")"


def fts_match(terms: Sequence[QueryTerm], corrections: dict[str, list[str]]) -> str:
    """The FTS5 MATCH expression of planned terms: terms ANDed, alternatives ORed.

    >>> fts_match([QueryTerm("头痛", ("头痛",), ("03.03",))], {})
    '({name alias context} : "头痛" OR codes : "kc0303")'
    """
    return " AND ".join(term_match(term, corrections) for term in terms)


def hit_of(doc: SearchDocument) -> Hit:
    """What a result shows of a document."""
    a = doc.availability
    doctor_or_department = doc.kind != "hospital"
    return Hit(
        kind=doc.kind,
        id=doc.entity_id,
        name=doc.name,
        hospital_id=doc.hospital_id,
        hospital_name=doc.hospital_name,
        grade=doc.grade,
        district=doc.district,
        department_id=doc.department_id or None,
        department_name=doc.department_name or None,
        catalog_code=doc.catalog_code or None,
        catalog_name=doc.catalog_name or None,
        title=doc.title or None,
        expertise=doc.expertise or None,
        aliases=list(doc.aliases) if doctor_or_department or doc.aliases else [],
        next_available_date=a.next_date,
        free_units_7d=a.free_7d,
        next_release_at=a.next_release_at,
        categories=list(a.categories),
    )


def _without_tokens(doc: SearchDocument) -> SearchDocument:
    """The stored body: the tokens live once, in the FTS table (a hospital keeps its name's
    and aliases' tokens, which say in memory what its departments and doctors inherit)."""
    hospital = doc.kind == "hospital"
    return msgspec.structs.replace(
        doc,
        tokens_name=doc.tokens_name if hospital else "",
        tokens_alias=doc.tokens_alias if hospital else "",
        tokens_context="",
        tokens_codes="",
        tokens_parents="",
    )


class _Vocabulary:
    """Latin tokens of the index, for typo tolerance: is a term a prefix of any token, and
    if not, which prefixes are within an edit or two of it."""

    MIN_TYPO_LENGTH = 4
    """Shorter Latin terms are initials or syllables, where one edit is another word."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._known = {t for t in terms if t.isalpha() and t.isascii()}
        self._sorted = sorted(self._known)
        self._by_length: dict[int, list[str]] = {}

    def add(self, tokens: Iterable[str]) -> None:
        """Tokens of newly written documents (tokens of removed ones may stay: a correction
        towards a word nobody has any more only finds nothing)."""
        for token in tokens:
            if token in self._known or not (token.isalpha() and token.isascii()):
                continue
            self._known.add(token)
            bisect.insort(self._sorted, token)
            for length, prefixes in self._by_length.items():
                prefix = token[:length]
                if len(token) >= length:
                    at = bisect.bisect_left(prefixes, prefix)
                    if at == len(prefixes) or prefixes[at] != prefix:
                        prefixes.insert(at, prefix)

    def has_prefix(self, term: str) -> bool:
        at = bisect.bisect_left(self._sorted, term)
        return at < len(self._sorted) and self._sorted[at].startswith(term)

    def _prefixes(self, length: int) -> list[str]:
        found = self._by_length.get(length)
        if found is None:
            found = sorted({t[:length] for t in self._sorted if len(t) >= length})
            self._by_length[length] = found
        return found

    def corrections(self, term: str) -> list[str]:
        """Prefixes of index tokens within one edit (two beyond six letters) of ``term``,
        among those with its first letter: people rarely mistype the first letter of a
        pinyin word, and keeping it divides the scan by twenty."""
        if len(term) < self.MIN_TYPO_LENGTH or self.has_prefix(term):
            return []
        budget = 1 if len(term) <= 6 else 2
        scored: dict[str, float] = {}
        for length in (len(term) - 1, len(term), len(term) + 1):
            prefixes = self._prefixes(length)
            first = bisect.bisect_left(prefixes, term[0])
            end = bisect.bisect_left(prefixes, chr(ord(term[0]) + 1), first)
            for choice, distance, _ in process.extract(
                term,
                prefixes[first:end],
                scorer=Levenshtein.distance,
                score_cutoff=budget,
                limit=5,
            ):
                scored[choice] = min(distance, scored.get(choice, budget + 1))
        return [c for c, _ in sorted(scored.items(), key=lambda kv: (kv[1], kv[0]))][:5]


class _Index:
    """One SQLite database of the index, used under a lock (one writer or reader at once)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = " + ("MEMORY" if path == ":memory:" else "DELETE"))
        self.db.execute("PRAGMA synchronous = NORMAL")
        # The index is read far more than written and is small next to memory: keep its pages
        # mapped and cached instead of re-reading them through the file system per query.
        self.db.execute("PRAGMA cache_size = -262144")
        self.db.execute("PRAGMA mmap_size = 1073741824")
        self.db.execute("PRAGMA temp_store = MEMORY")
        # one transaction: a schema created whole or not at all, and one commit's syncs
        # rather than one a statement (~4x faster to open a new index)
        self.db.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
        self.db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )
        self.lock = threading.Lock()
        self._vocabulary: _Vocabulary | None = None
        self._columns: Columns | None = None

    @staticmethod
    def compatible(path: str) -> bool:
        """Whether the file at ``path`` holds an index of this version (or nothing yet)."""
        db = sqlite3.connect(path)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "docs" not in tables:
                return True
            if "meta" not in tables:
                return False
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            return row is not None and row[0] == SCHEMA_VERSION
        finally:
            db.close()

    def _first_day(self, documents: Sequence[SearchDocument]) -> date:
        """The availability grid's first day, fixed when the index gets its first document."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'first_day'").fetchone()
        if row is not None:
            return date.fromisoformat(row[0])
        moments = [d.availability.computed_at for d in documents]
        first = first_day_for(min(moments).date() if moments else datetime.now(UTC).date())
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('first_day', ?)", (first.isoformat(),)
        )
        return first

    def columns(self) -> Columns:
        """The in-memory columns, loaded from the stored documents on first use."""
        if self._columns is None:
            columns = Columns(self._first_day([]))
            for rowid, body in self.db.execute("SELECT rowid, body FROM bodies"):
                columns.put(rowid, _decoder.decode(body))
            self._columns = columns
        return self._columns

    def vocabulary(self) -> _Vocabulary:
        if self._vocabulary is None:
            rows = self.db.execute("SELECT term FROM fts_vocab").fetchall()
            self._vocabulary = _Vocabulary(r[0] for r in rows)
        return self._vocabulary

    def write(self, documents: Sequence[SearchDocument]) -> int:
        """Insert or replace documents. A document without tokens (as ``documents`` returns
        them) keeps its rowid and the tokens already indexed: an availability update never
        touches the FTS table."""
        written = 0
        placed: list[tuple[int, SearchDocument]] = []
        dropped: list[int] = []
        self.db.execute("BEGIN")
        try:
            self._first_day(documents)
            for doc in documents:
                row = self.db.execute("SELECT rowid FROM docs WHERE id = ?", (doc.id,)).fetchone()
                tokens = (doc.tokens_name, doc.tokens_alias, doc.tokens_context, doc.tokens_codes)
                fields = (
                    doc.kind,
                    doc.hospital_id,
                    doc.department_id,
                    doc.catalog_code,
                    doc.catalog_code[:2] if "." in doc.catalog_code else doc.catalog_code,
                )
                body = _encoder.encode(_without_tokens(doc))
                if row is not None and not any(tokens):
                    rowid = int(row[0])
                    dropped.append(rowid)
                    self.db.execute(
                        "UPDATE docs SET kind = ?, hospital_id = ?, department_id = ?,"
                        " catalog_code = ?, catalog_parent = ? WHERE rowid = ?",
                        (*fields, rowid),
                    )
                    self.db.execute("UPDATE bodies SET body = ? WHERE rowid = ?", (body, rowid))
                    self.db.execute("DELETE FROM cells WHERE doc = ?", (rowid,))
                else:
                    if row is not None:
                        dropped.append(self._delete_row(int(row[0])))
                    cursor = self.db.execute(
                        "INSERT INTO docs (id, kind, hospital_id, department_id, catalog_code,"
                        " catalog_parent) VALUES (?,?,?,?,?,?)",
                        (doc.id, *fields),
                    )
                    assert cursor.lastrowid is not None
                    rowid = cursor.lastrowid
                    self.db.execute("INSERT INTO bodies (rowid, body) VALUES (?, ?)", (rowid, body))
                    self.db.execute(
                        "INSERT INTO fts (rowid, name, alias, context, codes) VALUES (?,?,?,?,?)",
                        (rowid, *tokens),
                    )
                placed.append((rowid, doc))
                self.db.executemany(
                    "INSERT INTO cells (doc, day, category, free) VALUES (?,?,?,?)",
                    [
                        (rowid, c.day.toordinal(), c.category, c.free)
                        for c in doc.availability.cells
                    ],
                )
                written += 1
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if self._vocabulary is not None:
            for _, doc in placed:
                self._vocabulary.add(
                    f"{doc.tokens_name} {doc.tokens_alias} {doc.tokens_context}".split()
                )
        if self._columns is not None:
            for rowid in dropped:
                self._columns.drop(rowid)
            for rowid, doc in placed:
                self._columns.put(rowid, doc)
        return written

    def _delete_row(self, rowid: int) -> int:
        """Remove a document; its FTS postings stay (contentless) and are never matched
        again, as the rowid is dead and never reused."""
        self.db.execute("DELETE FROM cells WHERE doc = ?", (rowid,))
        self.db.execute("DELETE FROM bodies WHERE rowid = ?", (rowid,))
        self.db.execute("DELETE FROM docs WHERE rowid = ?", (rowid,))
        return rowid

    def _delete(self, doc_id: str) -> int | None:
        row = self.db.execute("SELECT rowid FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else self._delete_row(int(row[0]))

    def delete(self, ids: Sequence[str]) -> None:
        dropped = []
        self.db.execute("BEGIN")
        try:
            for doc_id in ids:
                gone = self._delete(doc_id)
                if gone is not None:
                    dropped.append(gone)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if self._columns is not None:
            for rowid in dropped:
                self._columns.drop(rowid)

    def documents(
        self,
        kind: Kind,
        hospital_id: str | None,
        department_id: str | None,
        catalog_codes: Sequence[str],
    ) -> list[SearchDocument]:
        sql = "SELECT b.body FROM docs d JOIN bodies b ON b.rowid = d.rowid WHERE d.kind = ?"
        args: list[Any] = [kind]
        if hospital_id is not None:
            sql += " AND d.hospital_id = ?"
            args.append(hospital_id)
        if department_id is not None:
            sql += " AND d.department_id = ?"
            args.append(department_id)
        if catalog_codes:
            marks = ",".join("?" * len(catalog_codes))
            sql += f" AND (d.catalog_code IN ({marks}) OR d.catalog_parent IN ({marks}))"
            args += [*catalog_codes, *catalog_codes]
        return [_decoder.decode(body) for (body,) in self.db.execute(sql, args)]

    def _free_on(self, days: Sequence[date], category: str | None) -> Any:
        """Rowids with free units on any of ``days`` (in ``category``), from the cells table."""
        sql = f"SELECT DISTINCT doc FROM cells WHERE day IN ({','.join('?' * len(days))})"
        args: list[Any] = [d.toordinal() for d in days]
        if category:
            sql += " AND category = ?"
            args.append(category)
        return np.fromiter((r[0] for r in self.db.execute(sql, args)), dtype=np.int32)

    def _match(self, expression: str) -> Any:
        # One JSON array from SQLite, decoded in C: a row per match through the cursor cost
        # more than the match itself on broad queries.
        packed = self.db.execute(
            "SELECT json_group_array(rowid) FROM fts WHERE fts MATCH ?", (expression,)
        ).fetchone()[0]
        return np.asarray(_rowids.decode(packed), dtype=np.int32)

    def _inherited(
        self, columns: Columns, term: QueryTerm, corrections: dict[str, list[str]]
    ) -> Any:
        """Live rowids matching one term: documents matching it themselves, the doctors of
        departments matching it, and the departments and doctors of hospitals whose names
        match it (not their address, grade or English type: ``hospital`` must not find every
        doctor). Which way a hospital matched is checked in memory, hospitals being few."""
        own = columns.live(self._match(term_match(term, corrections, catalog=False)))
        if term.catalog_codes:
            own = columns.with_catalog(own, term.catalog_codes)
        kinds = columns.kind_rank[own]
        departments = own[kinds == _KIND_RANK["department"]]
        hospitals = own[kinds == _KIND_RANK["hospital"]]
        if hospitals.shape[0]:
            needles = [*term.phrases, *corrections.get(term.text, [])]
            hospitals = columns.named(hospitals, needles)
        return columns.inherit(own, np.concatenate([hospitals, departments]))

    def count(self) -> int:
        row = self.db.execute("SELECT count(*) FROM docs").fetchone()
        return int(row[0])

    # -- search -----------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """FTS5 finds the matching rowids; filters, facets and ranking run on the in-memory
        columns (vectorised), and only the page's bodies are read back."""
        corrections: dict[str, list[str]] = {}
        for term in request.terms:
            if term.english:  # read as English; a mistyped English word says what it was read as
                if term.english != term.text:
                    corrections[term.text] = [term.english]
                continue
            if term.latin and len(term.text) >= _Vocabulary.MIN_TYPO_LENGTH:
                found = self.vocabulary().corrections(term.text)
                if found:
                    corrections[term.text] = found
        columns = self.columns()
        matched = None
        for term in request.terms:
            found = self._inherited(columns, term, corrections)
            matched = (
                found if matched is None else np.intersect1d(matched, found, assume_unique=True)
            )
            if matched.shape[0] == 0:
                break
        rows = _filtered(columns, columns.live(matched), request, self._free_on)
        total = int(rows.shape[0])
        end = request.offset + request.limit
        ordered = columns.order(rows, _sort_keys(columns, rows, request, corrections), end)
        page = [int(r) for r in ordered[request.offset : end]]
        bodies: dict[int, bytes] = {}
        if page:
            marks = ",".join("?" * len(page))
            for rowid, body in self.db.execute(
                f"SELECT rowid, body FROM bodies WHERE rowid IN ({marks})", page
            ):
                bodies[rowid] = body
        facets = {}
        if request.facets:
            facets = {
                name: [
                    FacetValue(value=v, count=n)
                    for v, n in sorted(values, key=lambda kv: (-kv[1], kv[0]))
                ]
                for name, values in columns.facets(rows).items()
            }
        return SearchResult(
            total=total,
            page=request.offset // request.limit + 1,
            page_size=request.limit,
            hits=[hit_of(_decoder.decode(bodies[r])) for r in page],
            facets=facets,
            corrections=corrections,
            backend="embedded",
        )


def _filtered(columns: Columns, rows: Any, request: SearchRequest, free_on: Any) -> Any:
    f = request.filters
    for values, column, interned in (
        (f.kind, columns.kind_of, columns.kind),
        (f.district, columns.district_of, columns.district),
        (f.grade, columns.grade_of, columns.grade),
        (f.title, columns.title_of, columns.title),
        (f.hospital_id, columns.hospital_of, columns.hospital),
    ):
        if values:
            rows = columns.among(rows, column, interned.codes(values))
    if f.catalog_code:
        codes = np.asarray(columns.catalog.codes(f.catalog_code), dtype=np.int32)
        rows = rows[
            np.isin(columns.catalog_of[rows], codes) | np.isin(columns.parent_of[rows], codes)
        ]
    if f.exclude_hospital_id:
        excluded = columns.hospital.code.get(f.exclude_hospital_id)
        if excluded is not None:
            rows = rows[columns.hospital_of[rows] != excluded]
    if request.available_days is not None:
        if columns.covers(request.available_days):
            rows = columns.with_free_units(rows, request.available_days, f.category)
        else:  # an old index whose grid no longer reaches these dates: ask SQLite
            rows = rows[np.isin(rows, free_on(request.available_days, f.category))]
    elif f.category:
        rows = columns.offering(rows, f.category)
    return rows


def _sort_keys(
    columns: Columns, rows: Any, request: SearchRequest, corrections: dict[str, list[str]]
) -> list[Any]:
    """Sort keys, first first. Where a term matched weighs like Meilisearch's ``attribute``
    rule: in the name 4, in an alias 2, elsewhere (department, hospital, expertise, triage
    codes) 1, summed over the terms."""
    keys: list[Any] = []
    if request.sort == "next_available":
        keys.append(columns.next_day[rows])
    elif request.sort == "grade":
        keys.append(columns.grade_rank[rows])
    codes = list(dict.fromkeys(c for t in request.terms for c in t.catalog_codes))
    if request.terms:
        keys.append(-columns.exact(rows, _exact_keys(request)))
        weight = np.zeros(rows.shape[0], dtype=np.int32)
        for term in request.terms:
            weight += columns.weight(rows, [*term.phrases, *corrections.get(term.text, [])])
        if codes:  # triage: the guidance's order, departments before their doctors
            keys += [columns.triage(rows, codes), columns.kind_rank[rows], -weight]
        else:
            keys += [-weight, columns.kind_rank[rows]]
        keys += [columns.name_length[rows], columns.grade_rank[rows]]
    else:
        keys += [columns.kind_rank[rows], columns.grade_rank[rows], columns.name_length[rows]]
    return keys


def _exact_keys(request: SearchRequest) -> list[str]:
    raw = request.raw.strip().lower()
    keys = {raw, raw.replace(" ", "")} if raw else set()
    for term in request.terms:
        if len(request.terms) == 1:
            keys.update(term.phrases)
    return sorted(k for k in keys if k)


class EmbeddedBackend:
    """The embedded default: an FTS5 index in ``directory`` (``None``: in memory)."""

    name = "embedded"

    def __init__(self, directory: str | None) -> None:
        self._directory = Path(directory) if directory else None
        self._index = self._open_current()
        self._swap = threading.Lock()

    def _open_current(self) -> _Index:
        if self._directory is None:
            return _Index(":memory:")
        self._directory.mkdir(parents=True, exist_ok=True)
        pointer = self._directory / "CURRENT"
        name = pointer.read_text().strip() if pointer.exists() else ""
        if (
            name
            and (self._directory / name).exists()
            and not _Index.compatible(str(self._directory / name))
        ):
            log.warning("search index %s is of an older layout: starting a new one", name)
            name = ""
        if not name or not (self._directory / name).exists():
            name = f"index-{uuid.uuid4().hex}.sqlite3"
            self._point_to(name)
        return _Index(str(self._directory / name))

    def _point_to(self, name: str) -> None:
        assert self._directory is not None
        draft = self._directory / f".CURRENT.{uuid.uuid4().hex}"
        draft.write_text(name)
        os.replace(draft, self._directory / "CURRENT")

    async def _run(self, index: _Index, work: Any, *args: Any) -> Any:
        def locked() -> Any:
            with index.lock:
                return work(*args)

        return await asyncio.to_thread(locked)

    def search_now(self, request: SearchRequest) -> SearchResult:
        """The same search, synchronously (benchmarks measure the engine without a thread
        hop; the service goes through ``search``)."""
        index = self._index
        with index.lock:
            return index.search(request)

    async def search(self, request: SearchRequest) -> SearchResult:
        index = self._index
        result: SearchResult = await self._run(index, index.search, request)
        return result

    async def upsert(self, documents: Sequence[SearchDocument]) -> None:
        index = self._index
        await self._run(index, index.write, documents)

    async def delete(self, ids: Sequence[str]) -> None:
        index = self._index
        await self._run(index, index.delete, ids)

    async def documents(
        self,
        *,
        kind: Kind,
        hospital_id: str | None = None,
        department_id: str | None = None,
        catalog_codes: Sequence[str] = (),
    ) -> list[SearchDocument]:
        index = self._index
        codes = tuple(dict.fromkeys(catalog_codes))
        found: list[SearchDocument] = await self._run(
            index, index.documents, kind, hospital_id, department_id, codes
        )
        return found

    async def count(self) -> int:
        index = self._index
        found: int = await self._run(index, index.count)
        return found

    async def replace_all(
        self, documents: Iterable[SearchDocument], total: int, progress: Progress | None = None
    ) -> int:
        if self._directory is None:
            fresh = _Index(":memory:")
            name = ""
        else:
            name = f"index-{uuid.uuid4().hex}.sqlite3"
            fresh = _Index(str(self._directory / name))

        def build() -> int:
            written = 0
            batch: list[SearchDocument] = []
            for doc in documents:
                batch.append(doc)
                if len(batch) >= 1000:
                    written += fresh.write(batch)
                    batch = []
                    if progress is not None:
                        progress(written, total)
            written += fresh.write(batch)
            fresh.db.execute("INSERT INTO fts (fts) VALUES ('optimize')")
            fresh.columns()  # loaded here, not by the first query after the swap
            if progress is not None:
                progress(written, max(total, written))
            return written

        try:
            written = await asyncio.to_thread(build)
        except BaseException:
            if name:
                with contextlib.suppress(OSError):
                    os.unlink(fresh.path)
            raise
        with self._swap:
            old = self._index
            if name:
                self._point_to(name)
            self._index = fresh
        if old.path != ":memory:":
            with contextlib.suppress(OSError):
                os.unlink(old.path)  # open readers keep the unlinked file until they finish
        return written

    async def close(self) -> None:
        index = self._index
        with index.lock:
            index.db.close()

"""The embedded index's filter, facet and sort values, held in memory as numpy columns.

FTS5 finds matching rowids fast, but reading each match's row back from SQLite costs a few
microseconds, and a department name or a symptom matches thousands of documents at region
scale: filtering, counting facets and ranking them row by row in SQL (or Python) blows the
latency budget. So, as Meilisearch keeps bitmaps, the embedded backend keeps one array per
attribute indexed by rowid (kinds, districts, grades, codes and titles as small integers;
free units as a day × category grid), and works on a query's matches with vectorised numpy
operations. The arrays are loaded from SQLite when the index opens and kept in step by every
write; SQLite stays the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt

from guahao.search.documents import GRADE_RANK, SearchDocument
from guahao.search.normalisation import normalise

__all__ = ["CATEGORIES", "DAYS", "Columns", "Interned"]

CATEGORIES = ("general", "specialist", "premium")
DAYS = 64
"""Dates the availability grid covers from its first day (a reindex, at least daily, moves
it; dates outside count as without free units)."""

KEPT_NEEDLES = 256
"""Answers each of the columns' memories keeps: Chinese needles' matching names and keys'
matching alias sets together (``_containing``, a byte per interned name or alias set each:
54 000 names of 100 000 doctors make 14 MB at most), and catalog code sets' live rowids
(``_in_catalog``, 4 bytes a matching row). Past it the oldest eighth goes."""

_KIND_RANK = {"hospital": 0, "department": 1, "doctor": 2}
_NO_DAY = np.int32(2**31 - 1)
IntArray = npt.NDArray[np.int32]


def _forget_oldest(kept: dict[Any, Any]) -> None:
    """The oldest eighth of a full memory at once: the slots of the keys taken from a
    dictionary's front stay until it is resized, and finding one oldest key a miss walked
    past all of them (a few hundred here) each time."""
    for oldest in list(islice(kept, KEPT_NEEDLES // 8)):
        del kept[oldest]


class Interned:
    """Strings as small integers (0 is the empty string)."""

    def __init__(self) -> None:
        self.code: dict[Any, int] = {"": 0}
        self.values: list[Any] = [""]

    def __call__(self, value: Any) -> int:
        found = self.code.get(value)
        if found is None:
            found = self.code[value] = len(self.values)
            self.values.append(value)
        return found

    def codes(self, values: Iterable[Any]) -> list[int]:
        """Codes of known values only (an unknown value matches nothing)."""
        return [self.code[v] for v in values if v in self.code]


class Columns:
    """Per-rowid attributes of the live documents."""

    def __init__(self, first_day: date) -> None:
        self.first_day = first_day
        self.kind = Interned()
        self.district = Interned()
        self.grade = Interned()
        self.catalog = Interned()
        self.title = Interned()
        self.hospital = Interned()
        self.department = Interned()
        self.name = Interned()  # (name, name keys)
        self.aliases = Interned()  # alias keys
        self.exact_name: dict[str, set[int]] = {}
        self.exact_alias: dict[str, set[int]] = {}
        self._keys: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._inheritable: dict[int, tuple[str, str]] = {}
        """A hospital's names and its Latin tokens, each joined with ``|``: what it passes on."""
        self._joined: dict[int, str] = {}
        self._sorted: dict[str, tuple[int, npt.NDArray[np.str_], IntArray]] = {}
        self._containing: dict[str, npt.NDArray[np.bool_]] = {}
        self._in_catalog: dict[tuple[str, ...], IntArray] = {}
        """Live rowids of catalog codes, kept until a document is added, dropped or moves."""
        # Each interned name's text, full pinyin and initials, for vectorised matching.
        self._name_text = np.zeros(1024, dtype="<U64")
        self._name_full = np.zeros(1024, dtype="<U64")
        self._name_init = np.zeros(1024, dtype="<U64")
        self._size = 0
        self._grow(1024)

    def _intern_name(self, name: str, keys: tuple[str, ...]) -> int:
        code = self.name((name, keys))
        if code >= self._name_text.shape[0]:
            size = code * 2
            for attribute in ("_name_text", "_name_full", "_name_init"):
                old = getattr(self, attribute)
                new = np.zeros(size, dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, attribute, new)
        latin = [k for k in keys if k.isascii()]
        self._name_text[code] = normalise(name)
        self._name_full[code] = latin[0] if latin else ""
        self._name_init[code] = latin[1] if len(latin) > 1 else ""
        return code

    def _grow(self, size: int) -> None:
        def widen(old: Any, shape: tuple[int, ...], dtype: Any, fill: Any = 0) -> Any:
            new = np.full(shape, fill, dtype=dtype)
            if old is not None:
                new[: old.shape[0]] = old
            return new

        get = self.__dict__.get
        self.alive = widen(get("alive"), (size,), np.bool_, False)
        self.kind_of = widen(get("kind_of"), (size,), np.int32)
        self.district_of = widen(get("district_of"), (size,), np.int32)
        self.grade_of = widen(get("grade_of"), (size,), np.int32)
        self.catalog_of = widen(get("catalog_of"), (size,), np.int32)
        self.parent_of = widen(get("parent_of"), (size,), np.int32)
        self.title_of = widen(get("title_of"), (size,), np.int32)
        self.hospital_of = widen(get("hospital_of"), (size,), np.int32)
        self.department_of = widen(get("department_of"), (size,), np.int32)
        self.name_of = widen(get("name_of"), (size,), np.int32)
        self.aliases_of = widen(get("aliases_of"), (size,), np.int32)
        self.kind_rank = widen(get("kind_rank"), (size,), np.int32)
        self.grade_rank = widen(get("grade_rank"), (size,), np.int32)
        self.name_length = widen(get("name_length"), (size,), np.int32)
        self.next_day = widen(get("next_day"), (size,), np.int32, _NO_DAY)
        self.offers = widen(get("offers"), (size, len(CATEGORIES)), np.bool_, False)
        self.free = widen(get("free"), (size, DAYS, len(CATEGORIES)), np.bool_, False)
        self._size = size

    def put(self, rowid: int, doc: SearchDocument) -> None:
        """Set ``rowid``'s columns from ``doc``, growing the arrays if needed; a new row or a
        changed catalog code forgets the kept catalog answers."""
        if rowid >= self._size:
            self._grow(max(rowid + 1, self._size * 2))
        code = doc.catalog_code
        if self._in_catalog and (
            not self.alive[rowid] or self.catalog.values[self.catalog_of[rowid]] != code
        ):
            self._in_catalog.clear()
        self.alive[rowid] = True
        self.kind_of[rowid] = self.kind(doc.kind)
        self.district_of[rowid] = self.district(doc.district)
        self.grade_of[rowid] = self.grade(doc.grade)
        self.catalog_of[rowid] = self.catalog(code)
        self.parent_of[rowid] = self.catalog(code[:2] if "." in code else code)
        self.title_of[rowid] = self.title(doc.title)
        self.hospital_of[rowid] = self.hospital(doc.hospital_id)
        self.department_of[rowid] = self.department(doc.department_id)
        self.name_of[rowid] = self._intern_name(doc.name, doc.name_keys)
        self.aliases_of[rowid] = self.aliases(doc.alias_keys)
        self.kind_rank[rowid] = _KIND_RANK[doc.kind]
        self.grade_rank[rowid] = GRADE_RANK.get(doc.grade, 9)
        self.name_length[rowid] = len(doc.name)
        a = doc.availability
        self.next_day[rowid] = a.next_date.toordinal() if a.next_date else _NO_DAY
        self.offers[rowid] = [c in a.categories for c in CATEGORIES]
        self.free[rowid] = False
        for cell in a.cells:
            offset = (cell.day - self.first_day).days
            if 0 <= offset < DAYS and cell.category in CATEGORIES and cell.free > 0:
                self.free[rowid, offset, CATEGORIES.index(cell.category)] = True
        for key in doc.name_keys:
            self.exact_name.setdefault(key, set()).add(rowid)
        for key in doc.alias_keys:
            self.exact_alias.setdefault(key, set()).add(rowid)
        self._keys[rowid] = (doc.name_keys, doc.alias_keys)
        if doc.kind == "hospital":
            names = (doc.name, *doc.aliases, *doc.short_names, doc.district)
            latin = f"{doc.tokens_name} {doc.tokens_alias}".split()
            self._inheritable[rowid] = (
                "|".join(normalise(n) for n in names),
                "|" + "|".join(dict.fromkeys(t for t in latin if t.isascii())),
            )

    def drop(self, rowid: int) -> None:
        """Mark ``rowid`` no longer live and forget its exact-name and alias keys (nothing if
        it was not live)."""
        if rowid >= self._size or not self.alive[rowid]:
            return
        self.alive[rowid] = False
        self._in_catalog.clear()
        name_keys, alias_keys = self._keys.pop(rowid, ((), ()))
        self._inheritable.pop(rowid, None)
        for key in name_keys:
            self.exact_name.get(key, set()).discard(rowid)
        for key in alias_keys:
            self.exact_alias.get(key, set()).discard(rowid)

    # -- queries ----------------------------------------------------------------------------

    def live(self, rows: IntArray | None) -> IntArray:
        """The given rowids that are live documents (every live document when ``None``)."""
        if rows is None:
            found: IntArray = np.flatnonzero(self.alive[: self._size]).astype(np.int32)
            return found
        rows = rows[rows < self._size]
        kept: IntArray = rows[self.alive[rows]]
        return kept

    def named(self, hospitals: IntArray, needles: Sequence[str]) -> IntArray:
        """The hospitals among ``hospitals`` whose names (not address, grade or English
        type) hold a needle: Chinese as a run of characters, Latin as a token's prefix."""
        latin = ["|" + n for n in needles if n.isascii()]
        chinese = [n.replace(" ", "") for n in needles if not n.isascii()]
        kept = []
        inheritable = self._inheritable.get
        nothing = ("", "")
        # plain loops, no generator per hospital: a query such as 医院 names all of them
        for rowid in hospitals.tolist():
            text, tokens = inheritable(rowid, nothing)
            for needle in chinese:
                if needle in text:
                    kept.append(rowid)
                    break
            else:
                for needle in latin:
                    if needle in tokens:
                        kept.append(rowid)
                        break
        found: IntArray = np.asarray(kept, dtype=np.int32)
        return found

    def inherit(self, own: IntArray, parents: IntArray) -> IntArray:
        """``own`` with what ``parents`` pass on: a matching hospital its departments and
        doctors, a matching department its doctors (the embedded index stores the names of
        a doctor's department and hospital once, on them). Both arrays are live rowids."""
        if parents.shape[0] == 0:
            return own
        kinds = self.kind_of[parents]
        hospital_kind = self.kind.code.get("hospital", -1)
        department_kind = self.kind.code.get("department", -1)
        hospitals = self.hospital_of[parents[kinds == hospital_kind]]
        departments = self.department_of[parents[kinds == department_kind]]
        size = self._size
        wanted = np.zeros(size, dtype=np.bool_)
        if hospitals.shape[0]:
            on = np.zeros(len(self.hospital.values), dtype=np.bool_)
            on[hospitals] = True
            wanted |= on[self.hospital_of[:size]] & (self.kind_of[:size] != hospital_kind)
        if departments.shape[0]:
            on = np.zeros(len(self.department.values), dtype=np.bool_)
            on[departments] = True
            on[0] = False  # hospitals belong to no department
            wanted |= on[self.department_of[:size]]
        wanted &= self.alive[:size]
        wanted[own[own < size]] = True
        found: IntArray = np.flatnonzero(wanted).astype(np.int32)
        return found

    def among(self, rows: IntArray, column: IntArray, codes: Sequence[int]) -> IntArray:
        """The ``rows`` whose value in ``column`` is one of the interned ``codes``."""
        kept: IntArray = rows[np.isin(column[rows], np.asarray(codes, dtype=np.int32))]
        return kept

    def covers(self, days: Sequence[date]) -> bool:
        """Whether every one of ``days`` lies inside the availability grid."""
        return all(0 <= (d - self.first_day).days < DAYS for d in days)

    def with_free_units(
        self, rows: IntArray, days: Sequence[date], category: str | None
    ) -> IntArray:
        """The ``rows`` with a free unit on any of ``days`` inside the grid, of ``category``
        if given."""
        offsets = [o for o in ((d - self.first_day).days for d in days) if 0 <= o < DAYS]
        if not offsets:
            return rows[:0]
        grid = self.free[rows][:, offsets, :]
        if category is not None:
            hit = grid[:, :, CATEGORIES.index(category)].any(axis=1)
        else:
            hit = grid.any(axis=(1, 2))
        kept: IntArray = rows[hit]
        return kept

    def offering(self, rows: IntArray, category: str) -> IntArray:
        """The ``rows`` that offer ``category`` at all."""
        kept: IntArray = rows[self.offers[rows, CATEGORIES.index(category)]]
        return kept

    def exact(self, rows: IntArray, keys: Sequence[str]) -> IntArray:
        """2 where the whole query is the name, 1 where it is an alias, else 0."""
        on_name = set().union(*(self.exact_name.get(k, set()) for k in keys)) if keys else set()
        on_alias = set().union(*(self.exact_alias.get(k, set()) for k in keys)) if keys else set()
        out = np.zeros(rows.shape[0], dtype=np.int32)
        if on_alias:
            out[np.isin(rows, np.fromiter(on_alias, dtype=np.int32))] = 1
        if on_name:
            out[np.isin(rows, np.fromiter(on_name, dtype=np.int32))] = 2
        return out

    def _alias_joined(self, code: int) -> str:
        joined = self._joined.get(code)
        if joined is None:
            joined = self._joined[code] = "|" + "|".join(self.aliases.values[code]) + "|"
        return joined

    def weight(self, rows: IntArray, needles: Sequence[str]) -> IntArray:
        """4 where a needle is in the name (Chinese: a substring; Latin: a prefix of the name's
        pinyin or initials), 2 where in an alias, else 1 (it matched elsewhere)."""
        out = np.ones(rows.shape[0], dtype=np.int32)
        # Few distinct alias sets (only hospitals and departments have aliases): decide each
        # once, on its keys joined as "|key|key|", and spread the answer with one gather.
        # (Marked in a table as long as the alias sets, not found by sorting the rows: a
        # broad match is every document, and the sort was most of the ranking's time.)
        alias_codes = self.aliases_of[rows]
        on_alias = np.zeros(len(self.aliases.values), dtype=np.bool_)
        on_alias[alias_codes] = True
        on_alias[0] = False
        keys = ["|" + n if n.isascii() else n for n in needles]
        distinct = np.flatnonzero(on_alias)
        if distinct.shape[0] * 2 > on_alias.shape[0]:
            # a broad match (医院, 内科): most alias sets, decided once a needle and kept
            holding = np.zeros(on_alias.shape[0], dtype=np.bool_)
            for key in keys:
                holding |= self._aliases_containing(key)
            on_alias &= holding
        else:
            joined_of = self._joined.get
            for code in distinct.tolist():
                joined = joined_of(code) or self._alias_joined(code)
                for key in keys:
                    if key in joined:
                        break
                else:
                    on_alias[code] = False
        out[on_alias[alias_codes]] = 2
        # Doctors share names and the names' text columns are wide (256 bytes a value):
        # decide each distinct name once, on a view of the name table when the match is
        # broad (医院, a department, an English word), and spread the answer with a gather.
        name_codes = self.name_of[rows]
        names = len(self.name.values)
        seen = np.zeros(names, dtype=np.bool_)
        seen[name_codes] = True
        distinct = np.flatnonzero(seen)
        if distinct.shape[0] * 2 > names:
            holding = self._names_holding(slice(0, names), needles)
        else:
            holding = np.zeros(names, dtype=np.bool_)
            holding[distinct] = self._names_holding(distinct, needles)
        out[holding[name_codes]] = 4
        return out

    def _names_holding(self, names: Any, needles: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Which of the interned ``names`` (a slice or codes) hold a needle: Chinese as a
        substring, Latin as a prefix of the full pinyin, the initials or the text."""
        count = names.stop - names.start if isinstance(names, slice) else names.shape[0]
        found = np.zeros(count, dtype=np.bool_)
        chinese = [n for n in needles if not n.isascii()]
        if chinese and isinstance(names, slice):  # every name: the needle's answer is kept
            for needle in chinese:
                found |= self._names_containing(needle)[names]
        elif chinese:
            # Gathered only when a needle needs the text: the column is 256 bytes a name, and
            # gathering it for an English or pinyin needle was most of their ranking's time.
            text = self._name_text[names]
            for needle in chinese:
                found |= np.strings.find(text, needle) >= 0
        latin = [n for n in needles if n.isascii()]
        if latin:
            # Prefixes are ranges of the sorted columns: two binary searches a needle
            # instead of comparing every name (English words, pinyin, initials, typos).
            prefixed = np.zeros(len(self.name.values), dtype=np.bool_)
            for column in ("_name_full", "_name_init", "_name_text"):
                ordered, codes = self._sorted_names(column)
                for needle in latin:
                    low = int(np.searchsorted(ordered, needle, side="left"))
                    high = int(np.searchsorted(ordered, needle + "\U0010ffff", side="left"))
                    prefixed[codes[low:high]] = True
            found |= prefixed[names]
        return found

    def _names_containing(self, needle: str) -> npt.NDArray[np.bool_]:
        """Which interned names hold a Chinese needle, kept for the next query with it (医院,
        心内科 and the like come back all day): names are only ever added, and an interned
        name's text never changes, so a kept answer is extended to the names added since and
        never recomputed. At most ``KEPT_NEEDLES`` answers are kept; past that the oldest eighth
        goes."""
        names = len(self.name.values)
        kept = self._containing.pop(needle, None)
        if kept is None:
            kept = np.strings.find(self._name_text[:names], needle) >= 0
        elif kept.shape[0] < names:
            fresh = np.strings.find(self._name_text[kept.shape[0] : names], needle) >= 0
            kept = np.concatenate([kept, fresh])
        self._containing[needle] = kept  # last used last
        if len(self._containing) > KEPT_NEEDLES:
            _forget_oldest(self._containing)
        return kept

    def _aliases_containing(self, key: str) -> npt.NDArray[np.bool_]:
        """Which interned alias sets hold ``key`` (as ``weight`` matches it), kept like
        ``_names_containing``: alias sets are only ever added and never change, so a kept
        answer is extended to the sets added since. Kept under ``@`` + the key, beside the
        names' answers and evicted with them."""
        sets = len(self.aliases.values)
        slot = "@" + key
        kept = self._containing.pop(slot, None)
        start = 0 if kept is None else kept.shape[0]
        if start < sets:
            joined = self._alias_joined
            fresh = np.fromiter(
                (key in joined(code) for code in range(start, sets)), np.bool_, sets - start
            )
            fresh[: 1 if start == 0 else 0] = False  # code 0: no aliases
            kept = fresh if kept is None else np.concatenate([kept, fresh])
        assert kept is not None
        self._containing[slot] = kept  # last used last
        if len(self._containing) > KEPT_NEEDLES:
            _forget_oldest(self._containing)
        return kept

    def _sorted_names(self, column: str) -> tuple[npt.NDArray[np.str_], IntArray]:
        """A name column's values in order and the name codes in that order, rebuilt when
        names were added since (an interned name's text never changes): a few tens of
        milliseconds once after a write brought a new name."""
        names = len(self.name.values)
        found = self._sorted.get(column)
        if found is None or found[0] != names:
            values = getattr(self, column)[:names]
            order = np.argsort(values, kind="stable").astype(np.int32)
            found = self._sorted[column] = (names, values[order], order)
        return found[1], found[2]

    def with_catalog(self, rows: IntArray, codes: Sequence[str]) -> IntArray:
        """``rows`` (live rowids) and every live rowid whose catalog code or subject is one of
        ``codes``: what the FTS ``kc`` tokens find, answered from two columns. A department's
        code is carried by every doctor of its departments, so FTS walked posting lists of
        thousands of rowids and returned them as JSON for each triage or English query (most
        of their time)."""
        key = tuple(sorted(codes))
        size = self._size
        kept = self._in_catalog.get(key)
        if kept is None:
            wanted = np.zeros(len(self.catalog.values), dtype=np.bool_)
            wanted[self.catalog.codes(codes)] = True
            wanted[0] = False  # the empty code: hospitals
            mask = wanted[self.catalog_of[:size]] | wanted[self.parent_of[:size]]
            mask &= self.alive[:size]
            kept = self._in_catalog[key] = np.flatnonzero(mask).astype(np.int32)
            kept.flags.writeable = False  # handed out as is
            if len(self._in_catalog) > KEPT_NEEDLES:
                _forget_oldest(self._in_catalog)
        if rows.shape[0] == 0:
            return kept
        mask = np.zeros(size, dtype=np.bool_)
        mask[kept] = True
        mask[rows[rows < size]] = True
        found: IntArray = np.flatnonzero(mask).astype(np.int32)
        return found

    def triage(self, rows: IntArray, codes: Sequence[str]) -> IntArray:
        """The position of the document's department in the triage guidance (last + 1 when
        it is not in it)."""
        rank = np.full(len(self.catalog.values), len(codes), dtype=np.int32)
        for position in reversed(range(len(codes))):
            code = self.catalog.code.get(codes[position])
            if code is not None:
                rank[code] = position
        out: IntArray = np.minimum(rank[self.catalog_of[rows]], rank[self.parent_of[rows]])
        return out

    def facets(self, rows: IntArray) -> dict[str, list[tuple[str, int]]]:
        """Counts of ``rows`` by kind, district, grade, catalog code, title and category, as
        (value, count) for each value present (the empty value left out)."""
        out: dict[str, list[tuple[str, int]]] = {}
        for name, column, interned in (
            ("kind", self.kind_of, self.kind),
            ("district", self.district_of, self.district),
            ("grade", self.grade_of, self.grade),
            ("catalogCode", self.catalog_of, self.catalog),
            ("title", self.title_of, self.title),
        ):
            counts = np.bincount(column[rows], minlength=len(interned.values)).tolist()
            out[name] = [(str(interned.values[i]), n) for i, n in enumerate(counts) if n and i]
        # one column at a time: gathering the rows' (n, 3) block and counting along an axis
        # cost ten times as much on a query that matches every document
        offered = [int(np.count_nonzero(np.take(self.offers[:, c], rows))) for c in range(3)]
        out["category"] = [(c, n) for c, n in zip(CATEGORIES, offered, strict=True) if n]
        return out

    def order(self, rows: IntArray, keys: list[IntArray], first: int | None = None) -> IntArray:
        """``rows`` sorted by ``keys`` (first key first; ties by rowid); with ``first``, only
        the first ``first`` of them (a page needs no more).

        When the keys' ranges and the rowids fit in 63 bits together, each row becomes one
        integer (keys shifted to start at 0, first key in the high bits, rowid in the low):
        the page is then a partition and a sort of ``first`` integers, linear in the rows,
        rather than a sort of every match by several keys."""
        packed = _packed(rows, keys) if first is not None else None
        if packed is None or first is None:
            ordered: IntArray = rows[np.lexsort([rows, *reversed(keys)])]
            return ordered if first is None else ordered[:first]
        integers, rowid_mask = packed
        if 0 < first < integers.shape[0]:
            integers = np.partition(integers, first - 1)[:first]
        integers.sort()
        page: IntArray = (integers[:first] & rowid_mask).astype(np.int32)
        return page


def _packed(rows: IntArray, keys: list[IntArray]) -> tuple[npt.NDArray[np.int64], int] | None:
    """Rows and their sort keys as one int64 a row that sorts the same way (see
    ``Columns.order``), with the mask of the rowid bits; ``None`` when they do not fit."""
    if rows.shape[0] == 0:
        return None
    shift = rowid_bits = int(rows.max()).bit_length()
    spans = []
    for key in keys:
        low, high = int(key.min()), int(key.max())
        spans.append((key, low, (high - low).bit_length()))
    if shift + sum(bits for _, _, bits in spans) > 63:
        return None
    integers = rows.astype(np.int64)
    for key, low, bits in reversed(spans):
        if bits:
            integers |= (key.astype(np.int64) - low) << shift
        shift += bits
    return integers, (1 << rowid_bits) - 1


def first_day_for(today: date) -> date:
    """Where a new grid starts: a week back, so clocks and time zones a little behind still
    fall inside it."""
    return today - timedelta(days=7)

"""The national standard department catalog (诊疗科目, 《医疗机构诊疗科目名录》).

Hospitals name their departments freely (心内科, 心血管内科, 心脏内科 …); the catalog is the
one vocabulary every department maps to, so that search, triage guidance and the health
authority's supply reports can compare hospitals. The catalog has two levels: a two-digit
subject (``03`` 内科) and a four-digit speciality under it (``03.04`` 心血管内科专业).

The CSV ships inside the package and is read through ``importlib.resources`` so that the
catalog works from a wheel or a zip as well as from a checkout. It is parsed once per process.

>>> catalog = load_catalog()
>>> catalog["03.04"].name, catalog["03.04"].parent
('心血管内科专业', '03')
>>> [entry.code for entry in catalog.children("11")]
['11.01', '11.02', '11.03', '11.04']
>>> catalog.get("99.99") is None
True
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files

import msgspec

__all__ = [
    "CATALOG_RESOURCE",
    "CatalogEntry",
    "DepartmentCatalog",
    "load_catalog",
    "parse_catalog",
]

CATALOG_RESOURCE = "department-catalog.csv"
_PACKAGE = "guahao.platform.reference"
_EXPECTED_HEADER = ["code", "name", "parent", "verified", "note"]
_CODE = re.compile(r"^\d{2}(\.\d{2})?$")


class CatalogEntry(msgspec.Struct, frozen=True):
    """One subject or speciality of the catalog.

    ``parent`` is the two-digit subject of a speciality and ``None`` for a subject.
    ``verified`` is true only where the row was checked against the official text; the rest
    were cross-checked against secondary sources, and a reader deciding how far to trust a
    mapping should be able to tell.
    """

    code: str
    name: str
    parent: str | None = None
    verified: bool = False


class DepartmentCatalog:
    """The whole catalog, in file order, with lookups by code and by parent.

    Lookup by code comes in two forms because callers differ: ``get`` returns ``None`` for an
    unknown code (search, which must tolerate a stale code from a hospital feed), while
    ``catalog[code]`` raises ``KeyError`` (code that holds a code it believes valid, where a
    miss is a bug).
    """

    __slots__ = ("_by_code", "_children", "_entries")

    def __init__(self, entries: tuple[CatalogEntry, ...]) -> None:
        by_code: dict[str, CatalogEntry] = {}
        children: dict[str, list[CatalogEntry]] = {}
        for entry in entries:
            if entry.code in by_code:
                raise ValueError(f"department catalog: duplicate code {entry.code!r}")
            by_code[entry.code] = entry
            if entry.parent is not None:
                if entry.parent not in by_code:
                    raise ValueError(
                        f"department catalog: {entry.code!r} names parent {entry.parent!r},"
                        " which is not listed before it"
                    )
                children.setdefault(entry.parent, []).append(entry)
        self._entries = entries
        self._by_code: Mapping[str, CatalogEntry] = by_code
        self._children: Mapping[str, tuple[CatalogEntry, ...]] = {
            code: tuple(kids) for code, kids in children.items()
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __getitem__(self, code: str) -> CatalogEntry:
        """The entry for ``code``; ``KeyError`` if the catalog has no such code."""
        return self._by_code[code]

    def get(self, code: str) -> CatalogEntry | None:
        """The entry for ``code``, or ``None`` if the catalog has no such code."""
        return self._by_code.get(code)

    def children(self, code: str) -> tuple[CatalogEntry, ...]:
        """The specialities under subject ``code``, in catalog order.

        Empty for a subject without specialities (``10`` 眼科), for a speciality, and for an
        unknown code: "no narrower entries" is the answer in all three cases.
        """
        return self._children.get(code, ())

    def roots(self) -> tuple[CatalogEntry, ...]:
        """The two-digit subjects, in catalog order."""
        return tuple(entry for entry in self._entries if entry.parent is None)

    def qualified_name(self, code: str) -> str:
        """The name with its subject, for the specialities whose own name is ambiguous.

        Several specialities share a name (``其他`` under every subject, ``内科专业`` under
        中医科), so a list that shows names alone needs the subject in front.

        >>> load_catalog().qualified_name("50.01")
        '中医科 / 内科专业'
        >>> load_catalog().qualified_name("10")
        '眼科'
        """
        entry = self._by_code[code]
        if entry.parent is None:
            return entry.name
        return f"{self._by_code[entry.parent].name} / {entry.name}"


def parse_catalog(text: str) -> DepartmentCatalog:
    """Parse the catalog CSV (``code,name,parent,verified,note``).

    A malformed file is a packaging bug, not a user's mistake, so it raises ``ValueError``
    naming the row rather than a catalogued ``GuahaoError``.

    >>> parse_catalog("code,name,parent,verified,note\\n10,眼科,,yes,\\n").get("10")
    CatalogEntry(code='10', name='眼科', parent=None, verified=True)
    """
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != _EXPECTED_HEADER:
        raise ValueError(f"department catalog: header {header!r}, expected {_EXPECTED_HEADER!r}")
    entries: list[CatalogEntry] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(_EXPECTED_HEADER):
            raise ValueError(f"department catalog line {line}: {len(row)} fields, expected 5")
        code, name, parent, verified, _note = (field.strip() for field in row)
        if not _CODE.match(code) or not name:
            raise ValueError(f"department catalog line {line}: bad code or name {row!r}")
        expected_parent = code[:2] if "." in code else ""
        if parent != expected_parent:
            raise ValueError(
                f"department catalog line {line}: {code!r} has parent {parent!r},"
                f" expected {expected_parent!r}"
            )
        entries.append(
            CatalogEntry(code=code, name=name, parent=parent or None, verified=verified == "yes")
        )
    return DepartmentCatalog(tuple(entries))


@cache
def load_catalog() -> DepartmentCatalog:
    """The catalog shipped with the package, parsed once per process."""
    text = files(_PACKAGE).joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    return parse_catalog(text)

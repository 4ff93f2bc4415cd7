"""What the index holds: one document per hospital, department and doctor.

A document carries what is shown (names, grade, district, title, expertise), what is filtered
and sorted on (codes, availability), and its search tokens, computed once here so that every
backend indexes exactly the same text. Documents are built from the platform's rows, never
written by hand; the index can always be rebuilt from them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from guahao.platform.reference.catalog import load_catalog
from guahao.search.hospital_names import english_names, short_names
from guahao.search.tokens import TextAnalyzer

__all__ = [
    "GRADE_LABELS",
    "GRADE_RANK",
    "TITLE_LABELS",
    "Availability",
    "AvailabilityCell",
    "DocumentBuilder",
    "Kind",
    "SearchDocument",
    "catalog_scope",
    "synonym_token",
]

Kind = Literal["hospital", "department", "doctor"]

GRADE_LABELS = {"3A": "三级甲等", "3B": "三级乙等", "2A": "二级甲等", "2B": "二级乙等", "1": "一级"}
GRADE_RANK = {"3A": 0, "3B": 1, "2A": 2, "2B": 3, "1": 4}
"""Sort order of "by grade": the highest grade first (0)."""
TITLE_LABELS = {
    "chief": "主任医师",
    "associate_chief": "副主任医师",
    "attending": "主治医师",
    "resident": "住院医师",
}


class AvailabilityCell(msgspec.Struct, frozen=True, array_like=True):
    """Units that can be held right now on one local date in one slot category."""

    day: date
    category: str
    free: int


class Availability(msgspec.Struct, frozen=True, omit_defaults=True):
    """A summary of bookable supply, computed from SQL and the hot pool at ``computed_at``.

    ``cells`` lists only dates and categories with free units; ``categories`` lists every
    category the doctor (department, hospital) offers within the horizon, free or not.
    """

    computed_at: datetime
    next_date: date | None = None
    free_7d: int = 0
    next_release_at: datetime | None = None
    categories: tuple[str, ...] = ()
    cells: tuple[AvailabilityCell, ...] = ()


class SearchDocument(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One searchable entity. ``id`` is ``<kind>:<entity id>``. Empty fields are left out
    when stored (a doctor has no aliases, address or stored tokens)."""

    id: str
    kind: Kind
    entity_id: str
    name: str
    hospital_id: str
    hospital_name: str
    grade: str
    district: str
    department_id: str = ""
    department_name: str = ""
    catalog_code: str = ""
    catalog_name: str = ""
    title: str = ""
    expertise: str = ""
    address: str = ""
    aliases: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    """A hospital's generated short names (``hospital_names.short_names``) beyond the
    aliases it registered; searchable like aliases, never shown."""
    name_keys: tuple[str, ...] = ()
    """The name as typed exactly: itself, its pinyin, its initials."""
    alias_keys: tuple[str, ...] = ()
    """The same for every alias. (A department's catalog names are searchable, but never an
    exact match: 中医科's 儿科专业 is not the region's 儿科.)"""
    tokens_name: str = ""
    tokens_alias: str = ""
    tokens_context: str = ""
    tokens_codes: str = ""
    tokens_parents: str = ""
    """Tokens of the department's and hospital's names the document belongs to (a doctor of
    眼科 at 市一院 is found by 眼科 and 市一院). Meilisearch indexes them with the document;
    the embedded backend stores them once, on the department and hospital, and lets their
    doctors and departments inherit a match (a fifth of the index's size)."""
    availability: Availability

    @property
    def catalog_codes(self) -> tuple[str, ...]:
        return catalog_scope(self.catalog_code)


def catalog_scope(code: str) -> tuple[str, ...]:
    """A department's catalog code and its subject: a filter on either finds it.

    >>> catalog_scope("03.04"), catalog_scope("10"), catalog_scope("")
    (('03.04', '03'), ('10',), ())
    """
    if not code:
        return ()
    return (code, code[:2]) if "." in code else (code,)


def _code_tokens(code: str) -> str:
    return " ".join("kc" + c.replace(".", "") for c in catalog_scope(code))


def synonym_token(group: int) -> str:
    """The token a department carries for each region-wide synonym group its name or an alias
    belongs to: a query for any member finds it with one token instead of a phrase per member.

    >>> synonym_token(3)
    'sy3'
    """
    return f"sy{group}"


class DocumentBuilder:
    """Builds documents with their tokens; one per process (it holds the analyzer)."""

    def __init__(self, analyzer: TextAnalyzer | None = None) -> None:
        self.analyzer = analyzer or TextAnalyzer()
        self.vocabulary = self.analyzer.vocabulary
        self._catalog = load_catalog()

    def _catalog_names(self, code: str) -> list[str]:
        entry = self._catalog.get(code)
        if entry is None:
            return []
        names = [entry.name]
        if entry.name.endswith("专业"):
            names.append(entry.name.removesuffix("专业"))
        return [n for n in names if n != "其他"]

    def _tokens(self, values: list[str]) -> str:
        return " ".join(self.analyzer.text_tokens(v for v in values if v))

    def hospital(
        self,
        *,
        hospital_id: str,
        name: str,
        grade: str,
        district: str,
        address: str,
        aliases: tuple[str, ...],
        availability: Availability,
    ) -> SearchDocument:
        shorts = tuple(
            n for n in short_names(name, address=address, district=district) if n not in aliases
        )
        return SearchDocument(
            id=f"hospital:{hospital_id}",
            kind="hospital",
            entity_id=hospital_id,
            name=name,
            hospital_id=hospital_id,
            hospital_name=name,
            grade=grade,
            district=district,
            address=address,
            aliases=aliases,
            short_names=shorts,
            name_keys=tuple(self.analyzer.keys(name)),
            alias_keys=tuple(k for v in (*aliases, *shorts) for k in self.analyzer.keys(v)),
            tokens_name=self._tokens([name]),
            # What its departments and doctors inherit: names, short names, the district.
            tokens_alias=self._tokens([*aliases, *shorts, district]),
            tokens_context=self._tokens(
                [GRADE_LABELS.get(grade, ""), address, *english_names(name)]
            ),
            availability=availability,
        )

    def department(
        self,
        *,
        department_id: str,
        name: str,
        aliases: tuple[str, ...],
        catalog_code: str,
        hospital: SearchDocument,
        availability: Availability,
    ) -> SearchDocument:
        catalog_names = self._catalog_names(catalog_code)
        return SearchDocument(
            id=f"department:{department_id}",
            kind="department",
            entity_id=department_id,
            name=name,
            hospital_id=hospital.hospital_id,
            hospital_name=hospital.name,
            grade=hospital.grade,
            district=hospital.district,
            department_id=department_id,
            department_name=name,
            catalog_code=catalog_code,
            catalog_name=catalog_names[0] if catalog_names else "",
            address=hospital.address,
            aliases=aliases,
            name_keys=tuple(self.analyzer.keys(name)),
            alias_keys=tuple(k for v in aliases for k in self.analyzer.keys(v)),
            tokens_name=self._tokens([name]),
            tokens_alias=self._tokens([*aliases, *catalog_names]),
            tokens_parents=self._tokens(
                [hospital.name, *hospital.aliases, *hospital.short_names, hospital.district]
            ),
            tokens_codes=" ".join(
                [
                    _code_tokens(catalog_code),
                    *(
                        synonym_token(g)
                        for g in dict.fromkeys(
                            g for v in (name, *aliases) for g in self.vocabulary.groups_of(v)
                        )
                    ),
                ]
            ),
            availability=availability,
        )

    def doctor(
        self,
        *,
        doctor_id: str,
        name: str,
        title: str,
        expertise: str,
        department: SearchDocument,
        hospital: SearchDocument,
        availability: Availability,
    ) -> SearchDocument:
        parents = [
            department.name,
            *department.aliases,
            hospital.name,
            *hospital.aliases,
            *hospital.short_names,
            hospital.district,
        ]
        return SearchDocument(
            id=f"doctor:{doctor_id}",
            kind="doctor",
            entity_id=doctor_id,
            name=name,
            hospital_id=hospital.hospital_id,
            hospital_name=hospital.name,
            grade=hospital.grade,
            district=hospital.district,
            department_id=department.entity_id,
            department_name=department.name,
            catalog_code=department.catalog_code,
            catalog_name=department.catalog_name,
            title=title,
            expertise=expertise,
            address=hospital.address,
            name_keys=tuple(self.analyzer.keys(name, person=True)),
            tokens_name=" ".join(self.analyzer.person_name_tokens(name)),
            tokens_context=" ".join(
                self.analyzer.prose_tokens([TITLE_LABELS.get(title, ""), expertise])
            ),
            tokens_codes=department.tokens_codes,
            tokens_parents=self._tokens(parents),
            availability=availability,
        )

    @staticmethod
    def with_availability(doc: SearchDocument, availability: Availability) -> SearchDocument:
        return msgspec.structs.replace(doc, availability=availability)

"""The search vocabulary kept as data: department synonyms, triage guidance, pinyin readings,
district positions.

Each file under ``guahao/search/data/`` names its sources; the code only loads and checks
them, so the health authority can correct a mapping without a code change. Files are read
through ``importlib.resources`` (works from a wheel) and parsed once per process.

>>> vocab = load_vocabulary()
>>> "心血管内科" in vocab.synonyms_of("心内科")
True
>>> [t.catalog_codes for t in vocab.symptoms_in("最近总是头痛")]
[('03.03', '20')]
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec

from guahao.platform.reference.catalog import load_catalog
from guahao.search.normalisation import normalise

__all__ = [
    "DistrictMap",
    "PinyinReadings",
    "SymptomRule",
    "Vocabulary",
    "catalog_covers",
    "load_districts",
    "load_vocabulary",
]

_PACKAGE = "guahao.search"


class SymptomRule(msgspec.Struct, frozen=True):
    """One line of triage guidance: these words → these catalog departments, first first."""

    terms: tuple[str, ...]
    catalog_codes: tuple[str, ...]


class PinyinReadings(msgspec.Struct, frozen=True):
    """Readings that override pypinyin: place-name phrases and surnames."""

    places: dict[str, tuple[str, ...]]
    surnames: dict[str, tuple[str, ...]]


class DistrictMap:
    """Where districts lie, for "nearest district first".

    >>> m = DistrictMap({"甲区": (0.0, 0.0), "乙区": (3.0, 4.0)})
    >>> m.distance("甲区", "乙区"), m.distance("甲区", "甲区"), m.distance("甲区", "丙区")
    (5.0, 0.0, inf)
    """

    def __init__(self, positions: dict[str, tuple[float, float]]) -> None:
        self._positions = positions

    def distance(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        pa, pb = self._positions.get(a), self._positions.get(b)
        if pa is None or pb is None:
            return math.inf
        return math.dist(pa, pb)


def catalog_covers(rule_code: str, catalog_code: str) -> bool:
    """Whether a department with ``catalog_code`` falls under ``rule_code``: the same code,
    or a speciality of that subject.

    >>> catalog_covers("07", "07.04"), catalog_covers("07.04", "07"), catalog_covers("03", "03")
    (True, False, True)
    """
    return catalog_code == rule_code or catalog_code.startswith(rule_code + ".")


class Vocabulary:
    """Synonym groups, triage rules and pinyin readings, with the lookups search needs."""

    def __init__(
        self,
        groups: list[tuple[str, ...]],
        symptoms: list[SymptomRule],
        readings: PinyinReadings,
        sources: dict[str, list[str]],
        english: dict[str, tuple[str, ...]] | None = None,
        english_rules: list[tuple[str, SymptomRule]] | None = None,
    ) -> None:
        self.groups = groups
        self.symptoms = symptoms
        self.readings = readings
        self.sources = sources
        self.english = english or {}
        """English names of each catalog code, the first the one shown."""
        self.english_rules = english_rules or []
        """Plain English words of complaints and errands, with the rule each leads to."""
        self._synonyms: dict[str, tuple[str, ...]] = {}
        self._groups_of: dict[str, tuple[int, ...]] = {}
        for index, group in enumerate(groups):
            for word in group:
                self._groups_of[word] = (*self._groups_of.get(word, ()), index)
        for group in groups:
            for word in group:
                merged = dict.fromkeys(self._synonyms.get(word, ()) + group)
                self._synonyms[word] = tuple(w for w in merged if w != word)
        self._symptom_terms = sorted(
            ((term, rule) for rule in symptoms for term in rule.terms),
            key=lambda pair: -len(pair[0]),
        )
        self._terms_by_char: dict[str, list[tuple[str, SymptomRule]]] = {}
        for term, rule in self._symptom_terms:  # longest first within each list too
            self._terms_by_char.setdefault(term[0], []).append((term, rule))

    def groups_of(self, word: str) -> tuple[int, ...]:
        """The synonym groups ``word`` belongs to (their positions in the data file).

        >>> load_vocabulary().groups_of("心血管内科")
        (0,)
        """
        return self._groups_of.get(word, ())

    def synonyms_of(self, word: str) -> tuple[str, ...]:
        """The other names of ``word``'s department group (empty when it has none)."""
        return self._synonyms.get(word, ())

    def symptom_rule(self, word: str) -> SymptomRule | None:
        """The triage rule whose terms include exactly ``word``."""
        for term, rule in self._symptom_terms:
            if term == word:
                return rule
        return None

    def symptoms_in(self, text: str) -> list[SymptomRule]:
        """Triage rules whose terms occur in ``text``, in the order they occur, each once.
        Longer terms are matched first, so 小儿咳嗽 is not also read as 咳嗽."""
        found: list[tuple[int, SymptomRule]] = []
        rest = text
        # Only terms starting with a character of the text can occur in it.
        candidates = sorted(
            (pair for ch in set(text) for pair in self._terms_by_char.get(ch, ())),
            key=lambda pair: -len(pair[0]),
        )
        for term, rule in candidates:
            at = rest.find(term)
            if at >= 0:
                rest = rest.replace(term, " " * len(term))
                found.append((at, rule))
        ordered: list[SymptomRule] = []
        for _, rule in sorted(found, key=lambda pair: pair[0]):
            if rule not in ordered:
                ordered.append(rule)
        return ordered

    def dictionary_words(self) -> list[str]:
        """Words the Chinese segmenter must keep whole: every synonym, symptom and catalog
        name (jieba splits 耳鼻咽喉科 wrongly without them)."""
        words = [w for group in self.groups for w in group]
        words += [t for rule in self.symptoms for t in rule.terms]
        for entry in load_catalog():
            words.append(entry.name)
            if entry.name.endswith("专业"):
                words.append(entry.name.removesuffix("专业"))
        words += list(self.readings.places)
        return sorted(dict.fromkeys(w for w in words if len(w) >= 2))

    def is_department_word(self, word: str) -> bool:
        """Whether ``word`` names a department (a synonym group member, or a word ending in
        科): such a word is searched as a department, never read as a complaint, so 乳腺外科
        stays a department although 乳腺 is a lay term."""
        return bool(self._groups_of.get(word)) or word.endswith("科")


def _read(name: str) -> Any:
    return json.loads(files(_PACKAGE).joinpath("data", name).read_text(encoding="utf-8"))


@cache
def load_vocabulary() -> Vocabulary:
    """The vocabulary shipped with the package; checks every catalog code it names, that a
    term stands in one rule only, and that every catalog department has an English name."""
    catalog = load_catalog()
    synonyms = _read("department-synonyms.json")
    symptoms = _read("symptoms.json")
    lay = _read("lay-terms.json")
    readings = _read("pinyin-readings.json")
    english = _read("department-english.json")
    rules: list[SymptomRule] = []
    english_rules: list[tuple[str, SymptomRule]] = []
    seen: set[str] = set()
    for file, entries in (
        ("symptoms.json", symptoms["symptoms"]),
        ("lay-terms.json", [*lay["complaints"], *lay["errands"]]),
    ):
        for entry in entries:
            for code in entry["catalog"]:
                if code not in catalog:
                    raise ValueError(f"{file}: unknown catalog code {code!r}")
            terms = tuple(normalise(t) for t in entry["terms"])
            words = tuple(normalise(w) for w in entry.get("english", ()))
            for term in (*terms, *words):
                if term in seen:
                    raise ValueError(f"{file}: {term!r} stands in two rules")
                seen.add(term)
            rule = SymptomRule(terms=terms, catalog_codes=tuple(entry["catalog"]))
            rules.append(rule)
            english_rules += [(word, rule) for word in words]
    names = {code: tuple(v) for code, v in english["departments"].items()}
    missing = [entry.code for entry in catalog if not names.get(entry.code)]
    if missing or set(names) - {entry.code for entry in catalog}:
        raise ValueError(f"department-english.json: does not match the catalog ({missing})")
    return Vocabulary(
        groups=[tuple(g) for g in synonyms["groups"]],
        symptoms=rules,
        readings=PinyinReadings(
            places={k: tuple(v) for k, v in readings["places"].items()},
            surnames={k: tuple(v) for k, v in readings["surnames"].items()},
        ),
        sources={
            "department-synonyms.json": list(synonyms["sources"]),
            "symptoms.json": [*symptoms["sources"], symptoms["status"]],
            "lay-terms.json": [*lay["sources"], lay["status"]],
            "pinyin-readings.json": list(readings["sources"]),
            "department-english.json": [*english["sources"], english["status"]],
        },
        english=names,
        english_rules=english_rules,
    )


def load_districts(path: str = "") -> DistrictMap:
    """District positions from ``path``, or the demo region's shipped with the package."""
    raw = json.loads(Path(path).read_text(encoding="utf-8")) if path else _read("districts.json")
    return DistrictMap({k: (float(v[0]), float(v[1])) for k, v in raw["districts"].items()})

"""English in a query: catalog department names and plain words for complaints and errands.

The region's foreign residents type ``cardiology``, ``ENT``, ``dentist`` or ``my kid has a
fever``. The index holds Chinese and pinyin only; English is read here, at planning time, into
catalog codes, the way triage guidance is (one-way, as Meilisearch's synonyms are too):

* a whole English department name (``internal medicine``, ``ent``) → its catalog codes;
* a plain word of ``lay-terms.json`` (``teeth``, ``vaccine``, ``check-up``) → its rule, which
  the answer shows as guidance like a Chinese symptom;
* a distinctive word of a department name, or the start of one of four letters or more
  (``pediatric``, ``cardio``) → every department whose English name holds it;
* one of those words mistyped (``cardiolgy``, ``dermatolgy``): within one edit up to six
  letters, two beyond, and said so in ``corrections``.

Reading happens on normalised text (``normalise``), longest phrase first, at word boundaries.

>>> reader = EnglishReader(load_vocabulary())
>>> [(r.text, r.catalog_codes[:2]) for r in reader.read("ent")]
[('ent', ('11',))]
>>> [(r.text, r.rule is not None) for r in reader.read("teeth cleaning")]
[('teeth cleaning', True)]
>>> reader.read("cardiolgy")[0].corrected, reader.read("xinneike")
('cardiology', [])
"""

from __future__ import annotations

import re
from functools import lru_cache

import msgspec
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from guahao.search.normalisation import normalise
from guahao.search.vocabulary import SymptomRule, Vocabulary, load_vocabulary

__all__ = [
    "GENERIC_WORDS",
    "STOP_WORDS",
    "EnglishReader",
    "EnglishReading",
    "english_words",
    "reader_for",
]

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_POSSESSIVE = re.compile(r"(?<=[a-z])'s\b")

GENERIC_WORDS = frozenset(
    {
        "and",
        "of",
        "other",
        "the",
        "care",
        "health",
        "clinic",
        "center",
        "centre",
        "medicine",
        "medical",
        "clinical",
        "diseases",
        "disease",
        "department",
        "general",
        "diagnosis",
        "room",
        "special",
        "surgery",
        "tcm",
    }
)
"""Words of department names too common to point at departments alone (``surgery`` would
name twenty); they still count inside a whole name (``general surgery``). ``surgery`` and
``tcm`` alone are read as their subjects through the names ``Surgery`` and ``TCM``."""

STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "i",
        "me",
        "my",
        "our",
        "his",
        "her",
        "is",
        "am",
        "are",
        "has",
        "have",
        "had",
        "need",
        "needs",
        "want",
        "to",
        "for",
        "with",
        "in",
        "on",
        "at",
        "get",
        "see",
        "find",
        "book",
        "booking",
        "appointment",
        "doctor",
        "doctors",
        "dr",
        "please",
        "near",
        "nearby",
        "specialist",
        "department",
        "dept",
        "clinic",
        "and",
        "the",
        "of",
        "some",
        "got",
        "feel",
        "feeling",
        "bad",
        "very",
        "really",
        "pain",
        "hurts",
        "hurt",
        "sore",
    }
)
"""English words that carry no search meaning in a request like ``I need a doctor for my
teeth``: dropped when other words remain."""


class EnglishReading(msgspec.Struct, frozen=True):
    """What an English phrase of the query was read as."""

    text: str
    """The phrase as typed (normalised)."""
    catalog_codes: tuple[str, ...]
    rule: SymptomRule | None = None
    """The lay-terms rule, for guidance in the answer; ``None`` for a department name."""
    corrected: str = ""
    """The word it was read as when mistyped."""


def english_words(text: str) -> list[str]:
    """The English words of normalised text, possessives dropped (children's → children).

    >>> english_words("children's hospital, ob/gyn")
    ['children', 'hospital', 'ob', 'gyn']
    """
    return _WORD.findall(_POSSESSIVE.sub("", text))


class EnglishReader:
    """Reads English phrases of a query into catalog codes; built once per vocabulary."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._phrases: dict[str, EnglishReading] = {}
        by_word: dict[str, list[str]] = {}
        for code, names in vocabulary.english.items():
            for name in names:
                words = english_words(normalise(name))
                phrase = " ".join(words)
                known = self._phrases.get(phrase)
                codes = (*known.catalog_codes, code) if known else (code,)
                self._phrases[phrase] = EnglishReading(text=phrase, catalog_codes=codes)
                for word in words:
                    if word not in GENERIC_WORDS and len(word) >= 4:
                        by_word.setdefault(word, [])
                        if code not in by_word[word]:
                            by_word[word].append(code)
        for word, rule in vocabulary.english_rules:
            phrase = " ".join(english_words(word))
            self._phrases[phrase] = EnglishReading(
                text=phrase, catalog_codes=rule.catalog_codes, rule=rule
            )
        self._words = {w: tuple(codes) for w, codes in by_word.items()}
        self._longest = max(len(p.split()) for p in self._phrases)
        self._sorted_words = sorted({*self._words, *(p for p in self._phrases if " " not in p)})

    def _word(self, word: str) -> EnglishReading | None:
        """One word: a whole phrase, a distinctive word of a name, or the start of one."""
        if word in self._phrases:
            return self._phrases[word]
        codes = set(self._words.get(word, ()))
        if len(word) >= 4:
            codes.update(c for w, cs in self._words.items() if w.startswith(word) for c in cs)
        if not codes:
            return None
        return EnglishReading(text=word, catalog_codes=tuple(sorted(codes)))

    def _mistyped(self, word: str) -> EnglishReading | None:
        if len(word) < 5:
            return None
        budget = 1 if len(word) <= 6 else 2
        found = process.extractOne(
            word, self._sorted_words, scorer=Levenshtein.distance, score_cutoff=budget
        )
        if found is None:
            return None
        reading = self._word(found[0])
        if reading is None:
            return None
        return msgspec.structs.replace(reading, text=word, corrected=found[0])

    def read(self, text: str) -> list[EnglishReading]:
        """Readings of ``text``'s words, in order; words read as nothing are left out (they
        stay pinyin or Latin terms). Phrases are tried longest first at each word."""
        return [reading for _, _, reading in self.spans(tuple(english_words(text)))]

    @lru_cache(maxsize=4096)  # noqa: B019 - one reader per vocabulary; queries repeat
    def spans(self, words: tuple[str, ...]) -> list[tuple[int, int, EnglishReading]]:
        """``(first word, word count, reading)`` of each English phrase among ``words``."""
        out: list[tuple[int, int, EnglishReading]] = []
        at = 0
        while at < len(words):
            for size in range(min(self._longest, len(words) - at), 1, -1):
                phrase = " ".join(words[at : at + size])
                if phrase in self._phrases:
                    out.append((at, size, self._phrases[phrase]))
                    at += size
                    break
            else:
                word = words[at]
                reading = self._word(word) or self._mistyped(word)
                if reading is not None:
                    out.append((at, 1, reading))
                at += 1
        return out


@lru_cache(maxsize=8)
def reader_for(vocabulary: Vocabulary | None = None) -> EnglishReader:
    """The reader of a vocabulary (the shipped one by default), built once."""
    return EnglishReader(vocabulary or load_vocabulary())

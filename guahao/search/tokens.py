"""Text analysis: Chinese characters, jieba words, pinyin in full and as initials.

Search engines built for space-separated languages cannot find 王伟 inside 王伟明, 内科 inside
心内科, or 心内科 from ``xnk``. So every searchable value is turned into tokens the engine
matches as whole words or prefixes:

* each pair of neighbouring Chinese characters, and the last character of a run on its own
  (``心内科`` → ``心内 内科 科``): a query of two or more characters becomes a phrase of its
  pairs and one character a prefix, so two-character names and parts of words are found
  (FTS5's trigram tokenizer cannot), and common characters (科, 医) never make a query
  walk the whole index as single-character tokens would;
* each character's pinyin syllable (``wang wei``, typed with a space);
* at every jieba word boundary, the pinyin of the rest of the phrase run together, and its
  initials (``xinneike``/``xnk``, ``renminyiyuan``/``rmyy``), which prefix queries then find;
* Latin words, lower-cased (``IgA`` → ``iga``).

Pinyin comes from pypinyin with the place-name and surname readings of
``data/pinyin-readings.json`` (朝阳 → chaoyang, surname 单 → shan); jieba knows the catalog's
department names, synonyms and symptoms as whole words (it splits 耳鼻咽喉科 wrongly otherwise).

>>> analyzer = TextAnalyzer()
>>> analyzer.person_name_tokens("单伟")
['单伟', '伟', 'shan', 'wei', 'shanwei', 'sw', 'wei']
>>> "xnk" in analyzer.text_tokens(["心内科"])
True
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, cast

from pypinyin import lazy_pinyin, load_phrases_dict

from guahao.search.normalisation import normalise
from guahao.search.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "MAX_JOINED_SYLLABLES",
    "TextAnalyzer",
    "char_grams",
    "is_cjk",
    "query_grams",
    "split_scripts",
]

MAX_JOINED_SYLLABLES = 10
"""Longest run of syllables joined into one token; longer phrases are found by their parts."""

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_SCRIPT_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[0-9a-z]+")
_PHRASE_BREAK = re.compile(
    r"[\s,.;:!?()\[\]{}<>/\\|·、，。；：！？（）【】《》“”‘’\"'—\-_+*&^%$#@~`=]+"
)


_SEGMENTERS: dict[int, object] = {}


def is_cjk(text: str) -> bool:
    """Whether ``text`` is made of Chinese characters only.

    >>> is_cjk("心内科"), is_cjk("xnk"), is_cjk("IgA肾病")
    (True, False, False)
    """
    return bool(text) and _CJK.fullmatch(text) is not None


def char_grams(run: str) -> list[str]:
    """The index tokens of a run of Chinese characters: neighbouring pairs, then the last
    character alone (so every character starts a token, for one-character prefix queries).

    >>> char_grams("心内科"), char_grams("王")
    (['心内', '内科', '科'], ['王'])
    """
    return [run[i : i + 2] for i in range(len(run) - 1)] + [run[-1]] if run else []


def query_grams(text: str) -> list[str]:
    """What a Chinese query looks for: its pairs in a row, or one character as a prefix.

    >>> query_grams("心内科"), query_grams("王伟"), query_grams("王")
    (['心内', '内科'], ['王伟'], ['王'])
    """
    return [text[i : i + 2] for i in range(len(text) - 1)] if len(text) > 1 else [text]


def split_scripts(text: str) -> list[str]:
    """Runs of Chinese characters and of Latin letters or digits, lower-cased; the rest is
    a separator.

    >>> split_scripts("王伟 Shan-Wei IgA肾病")
    ['王伟', 'shan', 'wei', 'iga', '肾病']
    """
    return _SCRIPT_RUN.findall(text.lower())


class TextAnalyzer:
    """Turns values into index tokens and query text into terms; thread-safe after start-up."""

    _lock = threading.Lock()
    _readings_loaded = False

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self.vocabulary = vocabulary or load_vocabulary()
        self._segmenter: object | None = None
        self._extra_words: set[str] = set()
        self._load_readings()

    def _load_readings(self) -> None:
        # pypinyin keeps its phrase dictionary process-wide; load our overrides into it once.
        with TextAnalyzer._lock:
            if not TextAnalyzer._readings_loaded:
                load_phrases_dict(
                    {
                        word: [[syllable] for syllable in syllables]
                        for word, syllables in self.vocabulary.readings.places.items()
                    }
                )
                TextAnalyzer._readings_loaded = True

    # -- segmentation -----------------------------------------------------------------------

    def _jieba(self) -> object:
        if self._segmenter is None:
            with TextAnalyzer._lock:
                # Loading jieba's dictionary takes about a second: one segmenter per
                # vocabulary and process, shared by every analyzer.
                shared = _SEGMENTERS.get(id(self.vocabulary))
                if shared is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)
                    shared = jieba.Tokenizer()
                    shared.initialize()
                    for word in self.vocabulary.dictionary_words():
                        shared.add_word(word, freq=200_000)
                    _SEGMENTERS[id(self.vocabulary)] = shared
                self._segmenter = shared
        return self._segmenter

    def warm(self) -> None:
        """Load jieba's dictionary now (about a second of CPU): the platform calls this at
        start-up in a thread, so the first search or the search indexer's first outbox run
        does not stall the event loop loading it."""
        self._jieba()

    def add_words(self, words: Iterable[str]) -> None:
        """Teach the segmenter names from the platform (hospital names and aliases, local
        department names), so that a query like 市一院心内科 splits where the data does."""
        fresh = [w for w in words if len(w) >= 2 and is_cjk(w) and w not in self._extra_words]
        if not fresh:
            return
        tokenizer = self._jieba()
        for word in fresh:
            tokenizer.add_word(word, freq=100_000)  # type: ignore[attr-defined]
            self._extra_words.add(word)
        self._phrase_tokens.cache_clear()

    def knows(self, word: str) -> bool:
        """Whether the platform taught ``word`` as a name (a hospital, an alias, a department
        name): such a query is searched whole, not cut into words."""
        return word in self._extra_words

    def _word_starts(self, run: str) -> list[int]:
        """Where words begin in a run, including the words inside a long one: a hospital
        name taught as one word (澜江市第一人民医院) must still be found from 人民 or 医院."""
        starts: set[int] = set()
        at = 0
        for word in self.words(run):
            starts.add(at)
            if len(word) > 3:
                for inner in self._jieba().cut_for_search(word, HMM=False):  # type: ignore[attr-defined]
                    found = word.find(inner)
                    if found > 0 and len(inner) > 1:
                        starts.add(at + found)
            at += len(word)
        return sorted(starts)

    def words(self, run: str) -> list[str]:
        """jieba's words of a run of Chinese characters."""
        cut = self._jieba().cut(run, HMM=False)  # type: ignore[attr-defined]
        return [w for w in cut if w]

    # -- pinyin -----------------------------------------------------------------------------

    @staticmethod
    def syllables(run: str) -> list[str]:
        """One pinyin syllable (no tone) per character of a Chinese run."""
        # pypinyin accepts a list from ``errors`` (one entry per character), though its type
        # hints say str; a list keeps syllables aligned with characters.
        out = lazy_pinyin(run, errors=cast(Any, lambda chars: list(chars)))
        return [s.lower() for s in out] if len(out) == len(run) else list(run)

    def _name_syllables(self, run: str) -> list[str]:
        surnames = self.vocabulary.readings.surnames
        for size in (2, 1):
            head = run[:size]
            if len(run) > size and head in surnames:
                return list(surnames[head]) + self.syllables(run[size:])
        return self.syllables(run)

    @staticmethod
    def _joined(syllables: list[str], starts: list[int]) -> list[str]:
        tokens: list[str] = []
        for start in starts:
            tail = syllables[start : start + MAX_JOINED_SYLLABLES]
            if len(tail) > 1:
                tokens.append("".join(tail))
                tokens.append("".join(s[0] for s in tail))
        return tokens

    # -- index tokens -----------------------------------------------------------------------

    @lru_cache(maxsize=200_000)  # noqa: B019 - one analyzer per process; values repeat a lot
    def _phrase_tokens(self, phrase: str) -> tuple[str, ...]:
        tokens: list[str] = []
        for run in _SCRIPT_RUN.findall(phrase.lower()):
            if not is_cjk(run):
                tokens.append(run)
                continue
            tokens.extend(char_grams(run))
            syllables = self.syllables(run)
            tokens.extend(syllables)
            tokens.extend(self._joined(syllables, self._word_starts(run)))
        return tuple(tokens)

    def text_tokens(self, values: Iterable[str]) -> list[str]:
        """Index tokens of free text (names of places, departments, expertise)."""
        tokens: list[str] = []
        for value in values:
            for phrase in _PHRASE_BREAK.split(normalise(value)):
                if phrase:
                    tokens.extend(self._phrase_tokens(phrase))
        return tokens

    @lru_cache(maxsize=200_000)  # noqa: B019 - one analyzer per process; values repeat a lot
    def _prose_tokens(self, phrase: str) -> tuple[str, ...]:
        tokens: list[str] = []
        for run in _SCRIPT_RUN.findall(phrase):
            if not is_cjk(run):
                tokens.append(run)
                continue
            tokens.extend(char_grams(run))
            for word in self.words(run):
                if len(word) > 1:
                    syllables = self.syllables(word)
                    tokens += ["".join(syllables), "".join(s[0] for s in syllables)]
        return tuple(tokens)

    def prose_tokens(self, values: Iterable[str]) -> list[str]:
        """Index tokens of prose (a doctor's expertise, title): character pairs, and each
        word's pinyin and initials (``xuanyun``/``xy`` for 眩晕). Not every syllable, nor the
        rest of the phrase run together as names get: nobody types a whole sentence in
        pinyin, and those tokens were a third of the index."""
        tokens: list[str] = []
        for value in values:
            for phrase in _PHRASE_BREAK.split(normalise(value)):
                if phrase:
                    tokens.extend(self._prose_tokens(phrase))
        return tokens

    def person_name_tokens(self, name: str) -> list[str]:
        """Index tokens of a person's name: characters, syllables with the surname's reading,
        the whole name and the given name run together, and the initials."""
        runs = _SCRIPT_RUN.findall(normalise(name))
        tokens: list[str] = []
        all_syllables: list[str] = []
        for index, run in enumerate(runs):
            if not is_cjk(run):
                tokens.append(run)
                all_syllables.append(run)
                continue
            tokens.extend(char_grams(run))
            syllables = self._name_syllables(run) if index == 0 else self.syllables(run)
            tokens.extend(syllables)
            all_syllables.extend(syllables)
        if len(all_syllables) > 1:
            tokens.append("".join(all_syllables))
            tokens.append("".join(s[0] for s in all_syllables))
            given = self._given_name(runs, all_syllables)
            if given:
                tokens.append(given)
        return tokens

    def _given_name(self, runs: list[str], syllables: list[str]) -> str:
        if len(runs) != 1 or not is_cjk(runs[0]):
            return ""
        surnames = self.vocabulary.readings.surnames
        size = 2 if runs[0][:2] in surnames and len(runs[0]) > 2 else 1
        return "".join(syllables[size:])

    def keys(self, value: str, *, person: bool = False) -> list[str]:
        """What counts as typing ``value`` exactly: itself, its pinyin, its initials.

        >>> TextAnalyzer().keys("心内科")
        ['心内科', 'xinneike', 'xnk']
        """
        lowered = normalise(value)
        runs = _SCRIPT_RUN.findall(lowered)
        syllables: list[str] = []
        for index, run in enumerate(runs):
            if not is_cjk(run):
                syllables.append(run)
            elif person and index == 0:
                syllables.extend(self._name_syllables(run))
            else:
                syllables.extend(self.syllables(run))
        keys = [lowered]
        if any(is_cjk(r) for r in runs) and syllables:
            keys += ["".join(syllables), "".join(s[0] for s in syllables)]
        return list(dict.fromkeys(k for k in keys if k))

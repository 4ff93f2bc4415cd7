"""Search answers remembered per process, for as long as the index they came from stands.

At a release the crowd types the same few words (a department, a doctor's name, 发烧) and
each query cost a worker thread's FTS5 match, numpy filtering and ranking, and the encoding of
the page (bench/profiles/surge-reads-1-search-reads.txt: the index thread half the samples).
An answer depends only on the normalised text, the filters, sort, page and facets, the local
date (what "within N days" and each hit's next free day mean) and the index itself; so it is
kept under that key with the index generation it was computed at (``IndexChanges``), and used
only while the generation has not moved and the process follows the change channel. Memory is
bounded: an LRU of ``SEARCH_ANSWERS_SIZE`` answers.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date

import msgspec

from guahao.search.index_changes import IndexChanges
from guahao.search.normalisation import normalise
from guahao.search.query import SearchQuery, SearchResult

__all__ = ["SEARCH_ANSWERS_SIZE", "SearchAnswers"]

SEARCH_ANSWERS_SIZE = 10_000
"""Answers kept at most; past it the least recently used goes."""

_Key = tuple[date, str, SearchQuery]


class _Answer:
    __slots__ = ("body", "generation", "result")

    def __init__(self, result: SearchResult, generation: int) -> None:
        self.result = result
        self.generation = generation
        self.body: bytes | None = None


class SearchAnswers:
    """Per-process answers of ``SearchService.search``, keyed by what decides them."""

    def __init__(self, changes: IndexChanges, *, size: int = SEARCH_ANSWERS_SIZE) -> None:
        self._changes = changes
        self._size = size
        self._answers: OrderedDict[_Key, _Answer] = OrderedDict()
        self._encoder = msgspec.json.Encoder()

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(query: SearchQuery, today: date) -> _Key:
        """``q`` in the form search compares (full width, Traditional, case and spacing make
        one answer), the rest as given."""
        return today, normalise(query.q), msgspec.structs.replace(query, q="")

    def ticket(self) -> int:
        """Taken before asking the index: ``keep`` stores the answer only if the index did
        not move (and the channel was followed) in between."""
        return self._changes.generation

    def found(self, key: _Key) -> SearchResult | None:
        answer = self._current(key)
        return None if answer is None else answer.result

    def encoded(self, key: _Key) -> bytes | None:
        """The answer's JSON, encoded once per answer."""
        answer = self._current(key)
        if answer is None:
            return None
        if answer.body is None:
            answer.body = self._encoder.encode(answer.result)
        return answer.body

    def keep(self, key: _Key, result: SearchResult, ticket: int) -> None:
        if not self._changes.live or ticket != self._changes.generation:
            return
        self._answers[key] = _Answer(result, ticket)
        self._answers.move_to_end(key)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)

    def _current(self, key: _Key) -> _Answer | None:
        answer = self._answers.get(key)
        if answer is None:
            return None
        if not self._changes.live or answer.generation != self._changes.generation:
            # the index moved since: every answer of the old generation goes
            self._answers.clear()
            return None
        self._answers.move_to_end(key)
        return answer

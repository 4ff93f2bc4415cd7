"""One process's view of every sliding-window counter it touched, in parallel lists.

A counter is a number; its view is the lists' items at that number. Not an object a counter: a
release crowd leaves tens of thousands of counters in each worker (an account's, a device's and
an address's for every citizen), and as objects (one each and a tuple per limit) they were two
thirds of what every full collection of the garbage collector walks (42 000-59 000 counters and
23 000-31 000 tuples of the 84 000-112 000 objects of a worker's oldest generation, 40-107 ms
of CPU a collection; a crowd refused at its address limits makes more each second, an account's
counters with its first request, and that brought about one full collection into each paced row: the
loop stood still for it and the paced p99 went over 100 ms; bench/README.md, "issue 15, branch
tail3"). Kept in lists, a counter's numbers, strings and bytes are no objects the collector
tracks (it walks a list as one, looking at each item's type only), and its limit item is one
of a few shared by all counters: however many counters a process keeps, a full collection
walks the same score of lists.

The numbers of forgotten counters are used again (``release``, ``add``): only counters with
no call of theirs on its way to Redis are released, so a reply never lands on a counter that
has since become another's.
"""

from __future__ import annotations

import asyncio

from guahao.platform.rate_limiting.limit_items import LimitItem
from guahao.platform.rate_limiting.packed_commands import window_keys

__all__ = ["EXACT_UP_TO", "FRESH_SECONDS", "CounterViews"]

EXACT_UP_TO = 20
"""Limits of at most this many hits a window are decided by Redis's own script every time
(the whole suite once saw a 5/minute limit pass one hit too many from memory under a burst)."""

FRESH_SECONDS = 1.0
"""A counter whose last word from Redis is older admits one more hit from memory at most
before asking Redis again (the other processes may have counted meanwhile)."""

_GROWTH = 1024
"""Counters the lists grow by when every number is in use."""


class CounterViews:
    """Every counter's view, one item of each list a counter (the attributes' docstrings
    say what an item holds)."""

    __slots__ = (
        "_released",
        "amount",
        "current",
        "deciding",
        "exchanges",
        "flying",
        "following",
        "heard",
        "item",
        "known",
        "packed_keys",
        "pending",
        "placed",
        "refused_until",
        "sending",
        "sent",
        "used",
    )

    def __init__(self) -> None:
        self.item: list[LimitItem | None] = []
        """The limit item the counter counts (its name, window and bytes: a few objects
        shared by all counters, not one a counter)."""
        self.current: list[str] = []
        """The counter's current-window key in Redis."""
        self.amount: list[int] = []
        """The hits its item allows a window (the item's, kept beside the tallies the check
        of every request compares it with)."""
        self.packed_keys: list[bytes] = []
        """The previous and the current window's keys as the sync sends them (RESP, made
        once)."""
        self.known: list[int] = []
        """Its weighted count as Redis last reported it, this process's sent hits
        included."""
        self.pending: list[int] = []
        """Hits this process admitted that Redis has not been told of."""
        self.sent: list[int] = []
        """Hits this process admitted that are on their way to Redis (a sync's or a
        decision's call not answered yet): in no report yet, so the view counts them beside
        ``known``."""
        self.deciding: list[int] = []
        """Hits waiting for Redis's decision or on their way to it: each may be counted
        there already and is in no report yet, so the view counts them as admitted until
        their answers come."""
        self.exchanges: list[int] = []
        """Calls to Redis that carried this counter (syncs and decisions), ever: a report is
        exact only if no other call of the counter's was sent while it was on its way (and
        none at all: the counter is new to this process, most likely to Redis too)."""
        self.flying: list[int] = []
        """Those calls not answered yet: a report of a call sent beside another may miss
        that one's hits, so it may raise ``known``, never lower it."""
        self.refused_until: list[float] = []
        """``time.monotonic()`` before which Redis's window has no room (set by a refusal,
        from the time its call was sent): the process refuses from memory until then, as
        Redis would (other processes' hits only add), with the same ``Retry-After``."""
        self.heard: list[float] = []
        """``time.monotonic()`` of Redis's last report (0: never)."""
        self.used: list[float] = []
        """``time.monotonic()`` of the last report or decision of Redis's (for
        forgetting)."""
        self.placed: list[float] = []
        """``time.monotonic()`` when its limit was last put at the end of the process's
        memory (``RequestLimiter._forget_idle``)."""
        self.following: list[int] = []
        """The next counter of the same limit of the same identifier, -1 after its last (set
        by the limiter: a limit's counters are found from its first)."""
        self.sending: list[asyncio.Future[None] | None] = []
        """Done when the hits a sync has on their way to Redis are counted there (None: no
        sync carries the counter's hits)."""
        self._released: list[int] = []

    def add(self, item: LimitItem, identifier: str, now: float) -> int:
        """A new counter's number: its keys and limit set, nothing counted, heard never.

        A released number's tallies other than ``known`` and ``exchanges`` are 0 already
        (only a counter with no hits pending and no call on its way is released)."""
        if not self._released:
            self._grow()
        number = self._released.pop()
        current = item.key(identifier)
        self.item[number] = item
        self.current[number] = current
        self.amount[number] = item.amount
        self.packed_keys[number] = window_keys(current)
        self.known[number] = self.exchanges[number] = 0
        self.refused_until[number] = self.heard[number] = 0.0
        self.used[number] = self.placed[number] = now
        return number

    def _grow(self) -> None:
        """``_GROWTH`` more numbers, released: a release crowd's new counters came one item
        of each list at a time, about a microsecond a counter."""
        start, more = len(self.known), _GROWTH
        self.item.extend([None] * more)
        self.current.extend([""] * more)
        self.packed_keys.extend([b""] * more)
        for numbers in (self.amount, *self._tallies()):
            numbers.extend([0] * more)
        for times in (self.refused_until, self.heard, self.used, self.placed):
            times.extend([0.0] * more)
        self.sending.extend([None] * more)
        self.following.extend([-1] * more)
        self._released.extend(range(start + more - 1, start - 1, -1))  # the lowest first

    def _tallies(self) -> tuple[list[int], ...]:
        """The counts a counter starts from nothing."""
        return (
            self.known,
            self.pending,
            self.sent,
            self.deciding,
            self.exchanges,
            self.flying,
        )

    def release(self, number: int) -> None:
        """Let ``number`` be used for another counter (its keys dropped)."""
        self.item[number] = None
        self.current[number] = ""
        self.packed_keys[number] = b""
        self._released.append(number)

    def chain(self, first: int) -> list[int]:
        """A limit's counters from its first (``following``), in order."""
        counters = []
        while first >= 0:
            counters.append(first)
            first = self.following[first]
        return counters

    def limit_item(self, number: int) -> LimitItem:
        """The limit item of a counter in use."""
        item = self.item[number]
        assert item is not None  # a released number is in no check and no call
        return item

    def previous(self, number: int) -> str:
        """The counter's previous-window key (``current/-1``, the library's naming)."""
        return f"{self.current[number]}/-1"

    def on_its_way(self, number: int) -> bool:
        """Whether a call carrying the counter is on its way to Redis or about to be."""
        return self.flying[number] > 0 or self.deciding[number] > 0

    def admit_from_memory(self, counters: list[int], now: float) -> bool:
        """Whether every one of ``counters`` is below its limit in this view, its view either
        fresh or without any hit of this process still unheard by Redis (so one hit at most
        rides on a stale view). Small limits (``EXACT_UP_TO`` a window or fewer: secrets
        guessed, codes sent, sign-ins) are always Redis's to decide: one hit over them
        matters, and they are never hot. (One call for a request's counters, the lists
        looked up once: the check runs for every request.)"""
        amount, known, heard = self.amount, self.known, self.heard
        pending, sent, deciding = self.pending, self.sent, self.deciding
        for counter in counters:
            limit = amount[counter]
            unheard = pending[counter] + sent[counter] + deciding[counter]
            if not (
                limit > EXACT_UP_TO
                and known[counter] + unheard < limit
                and (now - heard[counter] <= FRESH_SECONDS or unheard == 0)
            ):
                return False
        return True

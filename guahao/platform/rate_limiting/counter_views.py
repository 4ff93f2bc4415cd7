"""One process's view of every sliding-window counter it touched, in parallel arrays.

A counter is a number; its view is the arrays' items at that number. Not an object a counter:
a release crowd leaves tens of thousands of counters in each worker (an account's, a device's
and an address's for every citizen), and as objects (one each and a tuple per limit) they were
two thirds of what every full collection of the garbage collector walks (42 000 counters and
24 000 tuples of the 90 000-110 000 objects of a worker's oldest generation, 40-110 ms of CPU a
collection; a crowd refused at its address limits makes more each second, an account's
counters with its first request, and that brought a full collection into every paced row:
the loop stood still for it and the paced p99 went over 100 ms; bench/README.md, "issue 15,
branch tail3"). Numbers in arrays are no objects to the collector, and the strings and bytes
of a list are not walked: however many counters a process keeps, a full collection walks the
same two dozen containers.

The numbers of forgotten counters are used again (``release``, ``add``): only counters with
no call of theirs on its way to Redis are released, so a reply never lands on a counter that
has since become another's.
"""

from __future__ import annotations

import asyncio
from array import array

from guahao.platform.rate_limiting.packed_commands import bulk

__all__ = ["EXACT_UP_TO", "FRESH_SECONDS", "CounterViews"]

EXACT_UP_TO = 20
"""Limits of at most this many hits a window are decided by Redis's own script every time
(the whole suite once saw a 5/minute limit pass one hit too many from memory under a burst)."""

FRESH_SECONDS = 1.0
"""A counter whose last word from Redis is older admits one more hit from memory at most
before asking Redis again (the other processes may have counted meanwhile)."""


class CounterViews:
    """Every counter's view, one item of each array a counter (the attributes' docstrings
    say what an item holds)."""

    def __init__(self) -> None:
        self.limit_name: list[str] = []
        """The name of the counter's limit, as a refusal names it."""
        self.current: list[str] = []
        """The counter's current-window key in Redis."""
        self.previous: list[str] = []
        """The previous window's key (``current/-1``, the library's naming)."""
        self.amount = array("q")
        """The hits the counter's limit item allows a window."""
        self.expiry = array("q")
        """The item's window in seconds (``RateLimitItem.get_expiry``), which the scripts
        take."""
        self.packed_keys: list[bytes] = []
        """``previous`` and ``current`` as the sync sends them (RESP, made once)."""
        self.packed_expiry: list[bytes] = []
        """``expiry`` as the sync sends it."""
        self.packed_hit: list[bytes] = []
        """``expiry`` and one hit, the arguments the sync sends most (a hit since the last
        one)."""
        self.known = array("q")
        """Its weighted count as Redis last reported it, this process's sent hits
        included."""
        self.pending = array("q")
        """Hits this process admitted that Redis has not been told of."""
        self.sent = array("q")
        """Hits this process admitted that are on their way to Redis (a sync's or a
        decision's call not answered yet): in no report yet, so the view counts them beside
        ``known``."""
        self.deciding = array("q")
        """Hits waiting for Redis's decision or on their way to it: each may be counted
        there already and is in no report yet, so the view counts them as admitted until
        their answers come."""
        self.exchanges = array("q")
        """Calls to Redis that carried this counter (syncs and decisions), ever: a report is
        exact only if no other call of the counter's was sent while it was on its way."""
        self.flying = array("q")
        """Those calls not answered yet: a report of a call sent beside another may miss
        that one's hits, so it may raise ``known``, never lower it."""
        self.refused_until = array("d")
        """``time.monotonic()`` before which Redis's window has no room (set by a refusal,
        from the time its call was sent): the process refuses from memory until then, as
        Redis would (other processes' hits only add), with the same ``Retry-After``."""
        self.heard = array("d")
        """``time.monotonic()`` of Redis's last report (0: never)."""
        self.used = array("d")
        """``time.monotonic()`` of the last report or decision of Redis's (for
        forgetting)."""
        self.placed = array("d")
        """``time.monotonic()`` when its limit was last put at the end of the process's
        memory (``RequestLimiter._forget_idle``)."""
        self.sending: dict[int, asyncio.Future[None]] = {}
        """Counters whose hits a sync has on their way to Redis: done when they are
        counted there."""
        self._released: list[int] = []

    def __len__(self) -> int:
        """Counters in use (numbers released are not)."""
        return len(self.known) - len(self._released)

    def add(self, limit_name: str, current: str, amount: int, expiry: int, now: float) -> int:
        """A new counter's number: its keys and limit set, nothing counted, heard never."""
        if self._released:
            number = self._released.pop()
        else:  # one more item in every array, set below
            number = len(self.known)
            for names in (self.limit_name, self.current, self.previous):
                names.append("")
            for packed in (self.packed_keys, self.packed_expiry, self.packed_hit):
                packed.append(b"")
            for counts in self._counts():
                counts.append(0)
            for times in (self.refused_until, self.heard, self.used, self.placed):
                times.append(0.0)
        previous = f"{current}/-1"
        self.limit_name[number] = limit_name
        self.current[number] = current
        self.previous[number] = previous
        self.amount[number] = amount
        self.expiry[number] = expiry
        self.packed_keys[number] = bulk(previous) + bulk(current)
        self.packed_expiry[number] = bulk(expiry)
        self.packed_hit[number] = bulk(expiry) + bulk(1)
        for counts in self._counts()[2:]:
            counts[number] = 0
        self.refused_until[number] = self.heard[number] = 0.0
        self.used[number] = self.placed[number] = now
        return number

    def _counts(self) -> tuple[array[int], ...]:
        return (
            self.amount,
            self.expiry,
            self.known,
            self.pending,
            self.sent,
            self.deciding,
            self.exchanges,
            self.flying,
        )

    def release(self, number: int) -> None:
        """Let ``number`` be used for another counter (its keys dropped)."""
        self.limit_name[number] = self.current[number] = self.previous[number] = ""
        self.packed_keys[number] = self.packed_expiry[number] = self.packed_hit[number] = b""
        self._released.append(number)

    def on_its_way(self, number: int) -> bool:
        """Whether a call carrying the counter is on its way to Redis or about to be."""
        return self.flying[number] > 0 or self.deciding[number] > 0

    def admits_from_memory(self, number: int, now: float) -> bool:
        """Below the limit in this view, and the view either fresh or without any hit of
        this process still unheard by Redis (so one hit at most rides on a stale view).
        Small limits (``EXACT_UP_TO`` a window or fewer: secrets guessed, codes sent,
        sign-ins) are always Redis's to decide: one hit over them matters, and they are never
        hot."""
        amount = self.amount[number]
        unheard = self.pending[number] + self.sent[number] + self.deciding[number]
        return (
            amount > EXACT_UP_TO
            and self.known[number] + unheard < amount
            and (now - self.heard[number] <= FRESH_SECONDS or unheard == 0)
        )

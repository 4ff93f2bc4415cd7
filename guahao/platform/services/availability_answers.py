"""A doctor's availability as its encoded answer, remembered per process for a release's crowd.

At a release thousands of citizens reload the same doctors. Each answer was one SQL select of
every session and slot in the range, one pipelined Redis script per slot (a hundred for a
doctor of the demo) and the encoding of as many structs (bench/profiles/surge-reads-1-*):
milliseconds of CPU for an answer that changes a few times a second at most. This cache keeps
the encoded bytes per doctor and date range, and drops them when the answer can have changed:

- **at once**, for every step any process takes on one of its slots: the pool's scripts
  announce a unit given back, a session stopped or reopened, a capacity change, a slot loaded
  again or rebuilt (``<prefix>guahao:slot-returns``) and every grant (``<prefix>guahao:slot-takes``;
  a slot published for the first time is announced by nothing: the last point covers it);
  the steps this process takes itself drop the answer before their reply is even read;
- **at its instant**, by the platform's clock, for what changes with time alone: a release, a
  slot's start, a hold running out, a cancelled unit's return delay ending (the counts script
  names the first such instant of each slot);
- **within ``ANSWER_MAX_AGE_SECONDS`` (10 s)** for a session newly published for the doctor
  (its slots are new to the answer, and their announcements cannot be tied to the doctor
  without a read). Schedules are published hours or days before their release, so that bound
  costs nobody a unit.

An answer asked for in the last part of its life (past a point drawn for each answer within
``REFRESH_AHEAD``, shares of the max age) is read again once in the background while the
remembered one is still served: a popular doctor's readers never wait for its read, and the
answers read in one moment (every doctor in a worker's first second at a release) are read
again spread over that part instead of all running out, and all being read again while their
readers wait, in one moment (the read rows' p99, bench/README.md, sessions 13 and 14). The
refreshed answer counts its max age from its own read's start and is kept under the same
ticket as any other.

A process that lost its subscription (starting, connection lost, Redis restarted) empties the
cache and keeps nothing until it is subscribed again, as the sold-out view does, whose
subscription this cache shares (``SoldOutView.listen``). An answer is only kept when nothing
about its slots was heard between the start of its read and its end (the view's ticket
scheme), and concurrent misses of one key share one read. The hold stays the authority: an
answer read a moment before a grant can still show the unit, and the hold then refuses.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime

import msgspec

from guahao.platform.clock import Clock
from guahao.platform.inventory.sold_out_view import SoldOutView
from guahao.platform.services.queries import QueryService, SessionAvailability
from guahao.platform.shared_calls import SharedCalls
from guahao.platform.task_stops import cancel_and_wait

__all__ = ["ANSWERS_SIZE", "ANSWER_MAX_AGE_SECONDS", "REFRESH_AHEAD", "AvailabilityAnswers"]

log = logging.getLogger(__name__)

ANSWER_MAX_AGE_SECONDS = 10.0
"""How long an answer is kept at most: the bound for a session newly published for the
doctor, the one change no message names."""

REFRESH_AHEAD = (0.85, 0.95)
"""The shares of the max age between which each answer's refresh point is drawn: late enough
that a hot answer is read hardly more often than its max age allows (0.7-0.9 read it every
8 s instead of 10 and cost the warm read row 7 % of its ratio to the ceiling; bench/README.md,
session 14), spread so that answers read together are not read again together, early enough
that the refresh's read (milliseconds, more in a loaded loop) ends before the old answer runs
out (0.5 s at least)."""

ANSWERS_SIZE = 20_000
"""Answers kept at most (doctor × date range); past it the least recently used goes."""

_HEARD_MEMORY = 100_000
"""Slots whose latest change is remembered for the reads under way (as the sold-out view)."""

_Key = tuple[str, date, date]


class _Answer(msgspec.Struct, frozen=True, gc=False):
    """Never tracked by the garbage collector (bytes, numbers, a datetime and a tuple of
    strings: nothing that could point back): a new doctor's answer is nothing a young
    collection walks."""

    body: bytes
    fresh_until: float  # on the monotonic ticker
    refresh_at: float  # on the ticker too: the first reader from here on starts a refresh
    changes_at: datetime | None  # the next release or slot start, by the platform's clock
    slot_ids: tuple[str, ...]


class AvailabilityAnswers:
    """Encoded availability answers of this process, kept true by the pool's announcements."""

    def __init__(
        self,
        queries: QueryService,
        view: SoldOutView,
        clock: Clock,
        *,
        size: int = ANSWERS_SIZE,
        max_age_seconds: float = ANSWER_MAX_AGE_SECONDS,
        refresh_ahead: tuple[float, float] = REFRESH_AHEAD,
        ticker: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queries = queries
        self._view = view
        self._clock = clock
        self._size = size
        self._max_age = max_age_seconds
        self._refresh_ahead = refresh_ahead
        self._spread = random.Random()  # spreads refresh points: nothing here to guess
        self._ticker = ticker
        self._encoder = msgspec.json.Encoder()
        self._answers: OrderedDict[_Key, _Answer] = OrderedDict()
        # the answer a slot is in, and the slot's other answers (another date range of its
        # doctor) apart: not a set a slot, which every new doctor's answer made for each of
        # its slots and the young collections walked (bench/README.md, issue 15)
        self._key_of_slot: dict[str, _Key] = {}
        self._more_keys_of_slot: dict[str, set[_Key]] = {}
        self._loading: SharedCalls[_Key, bytes] = SharedCalls()
        self._refreshing: dict[_Key, asyncio.Task[None]] = {}
        self._closed = False
        # slot changes heard, and the count at each slot's latest one (bounded like the
        # answers; ``_forgotten_at`` covers the slots dropped from that memory)
        self._heard = 0
        self._heard_at: OrderedDict[str, int] = OrderedDict()
        self._forgotten_at = 0
        self._epoch = 0
        self.reads = 0
        """Answers read from SQL and Redis since the start (tests and the bench's report)."""
        self.refreshes = 0
        """Of those, the reads started ahead of an answer's expiry."""
        view.listen(self)

    def __len__(self) -> int:
        return len(self._answers)

    def today(self) -> date:
        """The platform clock's date (the default start of a range)."""
        return self._clock.now().date()

    async def answer(self, doctor_id: str, *, start: date, end: date) -> bytes:
        """The JSON of ``QueryService.doctor_availability`` for these arguments."""
        key = (doctor_id, start, end)
        found = self.remembered(doctor_id, start=start, end=end)
        if found is not None:
            return found
        return await self._loading(key, lambda: self._read(key))

    def remembered(self, doctor_id: str, *, start: date, end: date) -> bytes | None:
        """The remembered answer if it is still true, else None (never reads: the front
        answers, ``guahao.web.front_answers``, leave a miss to the route)."""
        key = (doctor_id, start, end)
        found = self._answers.get(key)
        if found is None or not self._view.live:
            return None
        now = self._ticker()
        if now < found.fresh_until and (
            found.changes_at is None or self._clock.now() < found.changes_at
        ):
            self._answers.move_to_end(key)
            if now >= found.refresh_at and key not in self._refreshing and not self._closed:
                self._refresh(key, found)
            return found.body
        self._forget(key)
        return None

    async def close(self) -> None:
        """Cancel the refreshes under way and wait for their end (the platform's stop: a
        read must not outlive the engine and the Redis client it uses)."""
        self._closed = True
        for task in tuple(self._refreshing.values()):
            await cancel_and_wait(task)

    @property
    def refreshing(self) -> int:
        """Refreshes under way (tests)."""
        return len(self._refreshing)

    def _refresh(self, key: _Key, found: _Answer) -> None:
        """Start the one background read of ``key``; its readers go on with the old answer,
        which starts no other: if this read fails, it runs out as it would have without."""
        self._answers[key] = msgspec.structs.replace(found, refresh_at=math.inf)
        self.refreshes += 1
        task = asyncio.ensure_future(self._read_ahead(key))
        self._refreshing[key] = task
        task.add_done_callback(lambda _done: self._refreshing.pop(key, None))

    async def _read_ahead(self, key: _Key) -> None:
        """``_read`` for a refresh: its failure is no reader's, so it is logged here and the
        old answer runs out as it would have without the refresh."""
        try:
            await self._read(key)
        except Exception:
            log.warning("availability answer of %s not refreshed", key[0], exc_info=True)

    async def _read(self, key: _Key) -> bytes:
        ticket = (self._epoch, self._heard)
        started = self._ticker()
        fresh_until = started + self._max_age
        refresh_at = started + self._max_age * self._spread.uniform(*self._refresh_ahead)
        doctor_id, start, end = key
        self.reads += 1
        sessions, counts_change_at = await self._queries.doctor_availability_until(
            doctor_id, start=start, end=end
        )
        body = self._encoder.encode(sessions)
        now = self._clock.now()
        slot_ids = tuple(slot.id for found in sessions for slot in found.slots)
        if self._still_true(ticket, slot_ids):
            changes_at = _next_change(sessions, now)
            if counts_change_at is not None and (
                changes_at is None or counts_change_at < changes_at
            ):
                changes_at = counts_change_at
            self._keep(key, _Answer(body, fresh_until, refresh_at, changes_at, slot_ids))
        return body

    def _still_true(self, ticket: tuple[int, int], slot_ids: tuple[str, ...]) -> bool:
        epoch, heard = ticket
        if not self._view.live or epoch != self._epoch or heard < self._forgotten_at:
            return False
        return all(self._heard_at.get(slot_id, 0) <= heard for slot_id in slot_ids)

    def _keep(self, key: _Key, answer: _Answer) -> None:
        self._forget(key)
        self._answers[key] = answer
        key_of_slot = self._key_of_slot
        for slot_id in answer.slot_ids:
            first = key_of_slot.setdefault(slot_id, key)
            if first != key:
                self._more_keys_of_slot.setdefault(slot_id, set()).add(key)
        while len(self._answers) > self._size:
            self._forget(next(iter(self._answers)))

    def _forget(self, key: _Key) -> None:
        answer = self._answers.pop(key, None)
        if answer is None:
            return
        key_of_slot, more_keys = self._key_of_slot, self._more_keys_of_slot
        for slot_id in answer.slot_ids:
            others = more_keys.get(slot_id)
            if key_of_slot.get(slot_id) == key:
                if others is None:
                    del key_of_slot[slot_id]
                    continue
                key_of_slot[slot_id] = others.pop()  # the slot stays in its other answer
            elif others is not None:
                others.discard(key)
            if others is not None and not others:
                del more_keys[slot_id]

    # ------------------------------------------------------------------ SlotChangeListener

    def slot_changed(self, slot_id: str) -> None:
        self._heard += 1
        self._heard_at[slot_id] = self._heard
        self._heard_at.move_to_end(slot_id)
        while len(self._heard_at) > _HEARD_MEMORY:
            _slot, count = self._heard_at.popitem(last=False)
            self._forgotten_at = max(self._forgotten_at, count)
        first = self._key_of_slot.get(slot_id)
        if first is not None:
            for key in (first, *self._more_keys_of_slot.get(slot_id, ())):
                self._forget(key)

    def blind(self) -> None:
        self._epoch += 1
        self._answers.clear()
        self._key_of_slot.clear()
        self._more_keys_of_slot.clear()
        self._heard_at.clear()
        self._forgotten_at = self._heard


def _next_change(sessions: list[SessionAvailability], now: datetime) -> datetime | None:
    """The first instant after ``now`` at which the answer changes by time alone: a session
    or slot released, a slot started (its units stop counting)."""
    instants = [s.release_at for s in sessions if s.release_at > now]
    for found in sessions:
        instants += [
            t for slot in found.slots for t in (slot.release_at, slot.starts_at) if t > now
        ]
    return min(instants, default=None)

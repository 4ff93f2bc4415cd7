"""Which slots this process knows to have nothing left to hold: the sold-out view.

At a release most hold attempts land on slots already sold out. Asking Redis each time costs
a script per attempt; answering from memory costs nothing, but is only right while nothing has
come back. Units come back in two ways, and the view follows both:

- **by time**: a hold runs out or a cancelled unit's return delay ends, with no script
  running. The slot's sold-out answer carries the earliest such instant (``next_free``); an
  entry is believed only before it, by the platform's clock.
- **by a step**: a release, an abandonment, a cancellation, added units, a reopened session,
  a rebuild's load. Every slot script that can give a unit back publishes the slot's id on
  the region's channel (``announce()`` in ``slot_prelude.lua``); every process follows the
  channel and drops that slot's entry when the message arrives.

A process that is not following the channel (not started yet, its connection lost, Redis
restarted) has no view at all: it drops every entry, keeps none until it is subscribed again,
and answers every attempt from Redis meanwhile. An entry is only kept when nothing about its
slot was announced between the question to Redis and the answer (``mark`` compares the
announcement counter taken before the question), so an answer overtaken by a give-back is
never remembered.

The view also remembers the accounts holding or having booked a unit of the slot: their
repeated requests may be answered by their first grant (idempotency), so they always go to
Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import Redis

from guahao.platform.channel_follower import ChannelFollower
from guahao.platform.inventory.slot_keys import TAKES_SEPARATOR

__all__ = ["SOLD_OUT_VIEW_SIZE", "SlotChangeListener", "SoldOutView"]

log = logging.getLogger(__name__)

SOLD_OUT_VIEW_SIZE = 100_000
"""Slots remembered at most; past it the oldest entry goes and that slot asks Redis again."""


class SlotChangeListener(Protocol):
    """Another per-process memory of slots that rides on the view's subscription (the
    availability answers): told of every slot the view hears about, and of every loss."""

    def slot_changed(self, slot_id: str) -> None:
        """A unit of ``slot_id`` may have come back or been taken, or the slot changed."""
        ...

    def blind(self) -> None:
        """The subscription is lost (or stopped): announcements may be missed from now on."""
        ...


class SoldOutView:
    """The per-process sold-out view and the subscription that keeps it true."""

    def __init__(
        self, channel: str, *, size: int = SOLD_OUT_VIEW_SIZE, takes_channel: str | None = None
    ) -> None:
        self.channel = channel
        self.takes_channel = takes_channel
        """Where grants are announced: followed on the same connection, for the listeners
        only (a unit taken changes nothing the view remembers)."""
        self._size = size
        # slot id -> (believed while now_ms < this, accounts that must still ask Redis)
        self._entries: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()
        self._live = False
        # Announcements seen, and the count at each slot's latest one (bounded like the
        # entries; ``_forgotten_at`` covers the slots dropped from that memory).
        self._announced = 0
        self._announced_at: OrderedDict[str, int] = OrderedDict()
        self._forgotten_at = 0
        self._epoch = 0
        self._subscribed = asyncio.Event()
        self._follower = ChannelFollower(
            [c for c in (channel, takes_channel) if c],
            _ViewFollowing(self),
            name="guahao-sold-out-view",
        )
        self.announcements = 0
        """Announcements received since the start (for tests and the bench's report)."""
        self.takes = 0
        """Announced grants received since the start (tests)."""
        self._listeners: list[SlotChangeListener] = []

    def listen(self, listener: SlotChangeListener) -> None:
        """Tell ``listener`` of every slot change heard from here on and of every loss."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ answering

    @property
    def live(self) -> bool:
        """Whether the process follows the channel (and so may answer from memory)."""
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def refuses(self, slot_id: str, account_id: str, now_ms: int) -> bool:
        """True when this process knows ``slot_id`` has no unit to hold for ``account_id``
        at ``now_ms``."""
        entry = self._entries.get(slot_id)
        if entry is None or not self._live:
            return False
        until, holders = entry
        if now_ms >= until:
            del self._entries[slot_id]
            return False
        return account_id not in holders

    def ticket(self) -> tuple[int, int]:
        """Taken before asking Redis: ``mark`` keeps the answer only if nothing was announced
        (and the subscription not lost) in between."""
        return self._epoch, self._announced

    def mark(
        self, slot_id: str, ticket: tuple[int, int], until_ms: int, holders: Iterable[str]
    ) -> bool:
        """Remember Redis's sold-out answer for ``slot_id``; False when it was not kept."""
        epoch, announced = ticket
        if not self._live or epoch != self._epoch:
            return False
        if announced < self._forgotten_at or self._announced_at.get(slot_id, 0) > announced:
            return False
        self._entries[slot_id] = (until_ms, frozenset(holders))
        self._entries.move_to_end(slot_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return True

    def drop(self, slot_id: str) -> None:
        """Something this process did on the slot may have given a unit back."""
        self._entries.pop(slot_id, None)
        for listener in self._listeners:
            listener.slot_changed(slot_id)

    def taken(self, slot_id: str) -> None:
        """This process was granted a unit of ``slot_id`` (nothing came back: the view keeps
        its entries; only the listeners' counts moved)."""
        for listener in self._listeners:
            listener.slot_changed(slot_id)

    def announced(self, slot_id: str) -> None:
        """A give-back on ``slot_id`` was announced (from the channel)."""
        self.announcements += 1
        self._announced += 1
        self._entries.pop(slot_id, None)
        self._announced_at[slot_id] = self._announced
        self._announced_at.move_to_end(slot_id)
        while len(self._announced_at) > self._size:
            _slot, count = self._announced_at.popitem(last=False)
            self._forgotten_at = max(self._forgotten_at, count)
        for listener in self._listeners:
            listener.slot_changed(slot_id)

    def _taken_elsewhere(self, slot_id: str) -> None:
        self.takes += 1
        for listener in self._listeners:
            listener.slot_changed(slot_id)

    def _go_blind(self) -> None:
        self._live = False
        self._epoch += 1
        self._entries.clear()
        self._announced_at.clear()
        self._forgotten_at = self._announced
        self._subscribed.clear()
        for listener in self._listeners:
            listener.blind()

    # ------------------------------------------------------------------ following

    def start(self, redis: Redis) -> None:
        """Follow the channel on its own connection (to the server ``redis`` talks to) until
        ``stop``."""
        self._follower.start(redis)

    async def stop(self) -> None:
        self._go_blind()
        await self._follower.stop()

    async def subscribed(self) -> None:
        """Wait until the view is live (tests; bound the wait with ``asyncio.timeout``)."""
        await self._subscribed.wait()


class _ViewFollowing:
    """What the channel follower tells the view (``guahao.platform.channel_follower``)."""

    def __init__(self, view: SoldOutView) -> None:
        self._view = view
        self._takes = view.takes_channel

    def following(self) -> None:
        # from here on every give-back (and grant) reaches this process
        self._view._live = True
        self._view._subscribed.set()

    def message(self, channel: str, data: str) -> None:
        if self._takes is not None and channel == self._takes:
            for slot_id in data.split(TAKES_SEPARATOR):
                self._view._taken_elsewhere(slot_id)
        else:
            self._view.announced(data)

    def lost(self) -> None:
        self._view._go_blind()

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
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from guahao.platform.task_stops import cancel_and_wait

__all__ = ["SOLD_OUT_VIEW_SIZE", "SlotChangeListener", "SoldOutView"]

log = logging.getLogger(__name__)

SOLD_OUT_VIEW_SIZE = 100_000
"""Slots remembered at most; past it the oldest entry goes and that slot asks Redis again."""

_RESUBSCRIBE_PAUSES_S = (0.05, 0.2, 1.0, 2.0)


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
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
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
        if self._task is None:
            self._task = asyncio.create_task(self._follow(redis), name="guahao-sold-out-view")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._go_blind()
        if task is not None:
            await cancel_and_wait(task)

    async def subscribed(self) -> None:
        """Wait until the view is live (tests; bound the wait with ``asyncio.timeout``)."""
        await self._subscribed.wait()

    async def _follow(self, shared: Redis) -> None:
        redis = await _without_silent_reconnects(shared)
        try:
            await self._follow_on(redis)
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    async def _follow_on(self, redis: Redis) -> None:
        failures = 0
        while True:
            try:
                channels = [c for c in (self.channel, self.takes_channel) if c]
                takes = self.takes_channel.encode() if self.takes_channel else None
                async with redis.pubsub(ignore_subscribe_messages=False) as pubsub:
                    await pubsub.subscribe(*channels)
                    confirmed = 0
                    async for message in pubsub.listen():
                        kind = message.get("type")
                        if kind == "subscribe":
                            confirmed += 1
                            if confirmed == len(channels):
                                # from here on every give-back (and grant) reaches this process
                                self._live = True
                                self._subscribed.set()
                                failures = 0
                        elif kind == "message":
                            data = message["data"]
                            slot_id = data.decode() if isinstance(data, bytes) else data
                            if takes is not None and message["channel"] in (takes, takes.decode()):
                                self._taken_elsewhere(slot_id)
                            else:
                                self.announced(slot_id)
                    raise ConnectionError("subscription ended")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._go_blind()
                pause = _RESUBSCRIBE_PAUSES_S[min(failures, len(_RESUBSCRIBE_PAUSES_S) - 1)]
                failures += 1
                log.warning("sold-out view lost its subscription (%s); retrying", exc)
                await asyncio.sleep(pause)
            except Exception:
                self._go_blind()
                log.exception("sold-out view stopped unexpectedly; retrying")
                await asyncio.sleep(_RESUBSCRIBE_PAUSES_S[-1])


async def _without_silent_reconnects(redis: Redis) -> Redis:
    """A client of the same server whose connections never retry by themselves.

    redis-py's ``PubSub`` reconnects and subscribes again inside a failed read, so its
    reader never learns that messages published meanwhile were lost. Without retries the
    failure reaches ``_follow`` at once, which drops the view before anything else runs and
    subscribes again itself.

    On a Redis Cluster the client of one master will do: a classic ``PUBLISH`` reaches the
    subscribers of every node of the cluster."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        node = redis.get_default_node() or redis.get_random_node()
        connection_class, kwargs = node.connection_class, dict(node.connection_kwargs)
    else:
        pool = redis.connection_pool
        connection_class, kwargs = pool.connection_class, dict(pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0, supported_errors=())
    kwargs.pop("retry_on_error", None)
    kwargs.pop("retry_on_timeout", None)
    return Redis(
        connection_pool=ConnectionPool(
            connection_class=connection_class, max_connections=2, **kwargs
        )
    )

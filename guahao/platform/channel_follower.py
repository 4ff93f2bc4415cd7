"""Following Redis pub/sub channels for a per-process memory that is right only while every
message reaches it.

Two memories of a process ride on a channel this way: the sold-out view (the pool's
give-backs and grants, ``guahao.platform.inventory.sold_out_view``) and the search index's
generation (``guahao.search.index_changes``). Both need the same three things, which this
module holds once:

- **no silent reconnects.** redis-py's ``PubSub`` reconnects and subscribes again inside a
  failed read, so its reader never learns that messages published meanwhile were lost. The
  follower reads on a client of its own whose connections never retry, so a lost connection
  reaches it at once and its owner is told (``lost``) before anything else runs.
- **a resynchronisation after every gap.** ``following`` is called each time all the channels
  are subscribed again: from then on every message arrives, and whatever was published
  before may have been missed, so the owner starts afresh.
- **a stop that ends for sure.** The loop is ended with ``cancel_and_wait`` and checks
  ``raise_if_cancelling`` before every callback: a cancel lost inside one of redis-py's socket
  writes (Python 3.11's ``asyncio.wait_for``) neither keeps the loop alive nor lets it tell
  the owner anything after ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final, Protocol

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from guahao.platform.task_stops import cancel_and_wait, raise_if_cancelling

__all__ = [
    "RESUBSCRIBE_PAUSES_S",
    "ChannelFollower",
    "ChannelListener",
    "without_silent_reconnects",
]

log = logging.getLogger(__name__)

RESUBSCRIBE_PAUSES_S: Final = (0.05, 0.2, 1.0, 2.0)
"""Pauses before the 1st, 2nd, 3rd and every later attempt to subscribe again after a loss;
short at first (a restarted Redis answers within a second), never a busy loop."""


class ChannelListener(Protocol):
    """The owner of a memory kept true by the channels' messages."""

    def following(self) -> None:
        """Every channel is subscribed: each message reaches the listener from now on, and
        any published before may have been missed (resynchronise)."""
        ...

    def message(self, channel: str, data: str) -> None:
        """A message arrived on ``channel`` (both decoded as UTF-8)."""
        ...

    def lost(self) -> None:
        """The subscription is lost: messages may be missed until ``following`` again."""
        ...


class ChannelFollower:
    """Follows ``channels`` on a connection of its own, from ``start`` until ``stop``, and
    tells ``listener`` of each message, each (re)subscription and each loss."""

    def __init__(self, channels: Sequence[str], listener: ChannelListener, *, name: str) -> None:
        if not channels:
            raise ValueError("a follower needs at least one channel")
        self.channels = tuple(channels)
        self.name = name
        """The task's name and the logs' subject (``guahao-sold-out-view`` …)."""
        self._listener = listener
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, redis: Redis) -> None:
        """Follow the channels on a connection to the server ``redis`` talks to (a no-op
        when already following)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(redis), name=self.name)

    async def stop(self) -> None:
        """End the loop for sure (see the module's doc); the listener hears nothing after."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _follow(self, shared: Redis) -> None:
        redis = await without_silent_reconnects(shared)
        try:
            await self._follow_on(redis)
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    async def _follow_on(self, redis: Redis) -> None:
        self._failures = 0
        while True:
            raise_if_cancelling()
            try:
                await self._subscribe_and_read(redis)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self._listener.lost()
                pause = RESUBSCRIBE_PAUSES_S[min(self._failures, len(RESUBSCRIBE_PAUSES_S) - 1)]
                self._failures += 1
                log.warning("%s lost its subscription (%s); retrying", self.name, exc)
                await asyncio.sleep(pause)
            except Exception:
                raise_if_cancelling()
                self._listener.lost()
                log.exception("%s stopped unexpectedly; retrying", self.name)
                await asyncio.sleep(RESUBSCRIBE_PAUSES_S[-1])

    async def _subscribe_and_read(self, redis: Redis) -> None:
        """Subscribe, then hand each message on until the connection fails (it always ends
        by raising)."""
        async with redis.pubsub(ignore_subscribe_messages=False) as pubsub:
            await pubsub.subscribe(*self.channels)
            confirmed = 0
            async for message in pubsub.listen():
                raise_if_cancelling()
                kind = message.get("type")
                if kind == "subscribe":
                    confirmed += 1
                    if confirmed == len(self.channels):
                        self._failures = 0
                        self._listener.following()
                elif kind == "message":
                    self._listener.message(_text(message["channel"]), _text(message["data"]))
            raise ConnectionError("subscription ended")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def without_silent_reconnects(redis: Redis) -> Redis:
    """A client of the same server whose connections never retry by themselves (see the
    module's doc: a retry inside ``PubSub`` would hide the messages lost meanwhile).

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

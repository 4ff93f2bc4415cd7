"""Every process learns when the search index changed, wherever the change was written.

Search answers are remembered per process (``answers.py``) and are right only while the index
is the one they were computed on. Writes come from the outbox's indexer, the sweep's refresh or
a reindex, in whichever process runs them; with Meilisearch every worker reads the same index.
So each write, once done, bumps this process's generation and is published on the region's
channel (``<prefix>guahao:search-changes``); every process follows the channel and bumps its
own generation when a message arrives. A process that is not following it (starting, its
connection lost, Redis restarted) is ``live`` no more, and its answers are not used until it
is subscribed again, as the sold-out view does with the pool's give-backs.

Without a Redis (a command-line tool on the embedded index) the generation is local, which is
the whole truth for an index only this process writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from guahao.platform.channel_follower import ChannelFollower
from guahao.search.backend import Progress, SearchBackend
from guahao.search.documents import Kind, SearchDocument
from guahao.search.query import SearchRequest, SearchResult

__all__ = ["CHANNEL", "AnnouncingBackend", "IndexChanges"]

log = logging.getLogger(__name__)

CHANNEL = "guahao:search-changes"
"""The channel's name after the key prefix (a durable name: every process listens on it)."""


class IndexChanges:
    """This process's generation of the search index, moved by every write anywhere."""

    def __init__(self, key_prefix: str = "") -> None:
        self.channel = f"{key_prefix}{CHANNEL}"
        self.generation = 0
        self._redis: Redis | None = None
        self._live = False
        self._subscribed = asyncio.Event()
        self._follower = ChannelFollower(
            [self.channel], _ChangesFollowing(self), name="guahao-search-changes"
        )

    @property
    def live(self) -> bool:
        """Whether a remembered answer may be used: no Redis at all (only this process writes
        its index), or the channel followed."""
        return self._redis is None or self._live

    def moved(self) -> None:
        self.generation += 1

    async def written(self) -> None:
        """A write to the index finished here: move, and tell the other processes."""
        self.moved()
        if self._redis is None:
            return
        try:
            await self._redis.publish(self.channel, "1")
        except (RedisError, OSError) as exc:
            # the others cannot be told: they may keep answers of the old index
            log.error("search change not announced (%s); the next write announces again", exc)

    def start(self, redis: Redis) -> None:
        """Follow the channel on its own connection until ``stop``."""
        self._redis = redis
        self._follower.start(redis)

    async def stop(self) -> None:
        self._go_blind()
        await self._follower.stop()

    async def subscribed(self) -> None:
        """Wait until the channel is followed (tests; bound the wait with ``asyncio.timeout``)."""
        await self._subscribed.wait()

    def _go_blind(self) -> None:
        self._live = False
        self.moved()
        self._subscribed.clear()


class _ChangesFollowing:
    """What the channel follower tells the generation (``guahao.platform.channel_follower``)."""

    def __init__(self, changes: IndexChanges) -> None:
        self._changes = changes

    def following(self) -> None:
        self._changes.moved()  # changes may have been missed until now
        self._changes._live = True
        self._changes._subscribed.set()

    def message(self, channel: str, data: str) -> None:
        self._changes.moved()

    def lost(self) -> None:
        self._changes._go_blind()


class AnnouncingBackend:
    """A search backend whose every finished write moves ``IndexChanges`` (reads pass)."""

    def __init__(self, backend: SearchBackend, changes: IndexChanges) -> None:
        self.inner = backend
        self.name = backend.name
        self._changes = changes

    async def replace_all(
        self, documents: Iterable[SearchDocument], total: int, progress: Progress | None = None
    ) -> int:
        try:
            return await self.inner.replace_all(documents, total, progress)
        finally:
            await self._changes.written()

    async def upsert(self, documents: Sequence[SearchDocument]) -> None:
        try:
            await self.inner.upsert(documents)
        finally:
            await self._changes.written()

    async def delete(self, ids: Sequence[str]) -> None:
        try:
            await self.inner.delete(ids)
        finally:
            await self._changes.written()

    async def documents(
        self,
        *,
        kind: Kind,
        hospital_id: str | None = None,
        department_id: str | None = None,
        catalog_codes: Sequence[str] = (),
    ) -> list[SearchDocument]:
        return await self.inner.documents(
            kind=kind,
            hospital_id=hospital_id,
            department_id=department_id,
            catalog_codes=catalog_codes,
        )

    async def search(self, request: SearchRequest) -> SearchResult:
        return await self.inner.search(request)

    async def count(self) -> int:
        return await self.inner.count()

    async def close(self) -> None:
        await self.inner.close()

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
import contextlib
import logging
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from guahao.platform.inventory.sold_out_view import _without_silent_reconnects
from guahao.platform.task_stops import cancel_and_wait
from guahao.search.backend import Progress, SearchBackend
from guahao.search.documents import Kind, SearchDocument
from guahao.search.query import SearchRequest, SearchResult

__all__ = ["CHANNEL", "AnnouncingBackend", "IndexChanges"]

log = logging.getLogger(__name__)

CHANNEL = "guahao:search-changes"
"""The channel's name after the key prefix (a durable name: every process listens on it)."""

_RESUBSCRIBE_PAUSES_S = (0.05, 0.2, 1.0, 2.0)


class IndexChanges:
    """This process's generation of the search index, moved by every write anywhere."""

    def __init__(self, key_prefix: str = "") -> None:
        self.channel = f"{key_prefix}{CHANNEL}"
        self.generation = 0
        self._redis: Redis | None = None
        self._live = False
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

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
        if self._task is None:
            self._task = asyncio.create_task(self._follow(redis), name="guahao-search-changes")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._go_blind()
        if task is not None:
            await cancel_and_wait(task)

    async def subscribed(self) -> None:
        """Wait until the channel is followed (tests; bound the wait with ``asyncio.timeout``)."""
        await self._subscribed.wait()

    def _go_blind(self) -> None:
        self._live = False
        self.moved()
        self._subscribed.clear()

    async def _follow(self, shared: Redis) -> None:
        redis = await _without_silent_reconnects(shared)
        try:
            failures = 0
            while True:
                try:
                    async with redis.pubsub(ignore_subscribe_messages=False) as pubsub:
                        await pubsub.subscribe(self.channel)
                        async for message in pubsub.listen():
                            kind = message.get("type")
                            if kind == "subscribe":
                                self.moved()  # changes may have been missed until now
                                self._live = True
                                self._subscribed.set()
                                failures = 0
                            elif kind == "message":
                                self.moved()
                        raise ConnectionError("subscription ended")
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as exc:
                    self._go_blind()
                    pause = _RESUBSCRIBE_PAUSES_S[min(failures, len(_RESUBSCRIBE_PAUSES_S) - 1)]
                    failures += 1
                    log.warning("search changes: subscription lost (%s); retrying", exc)
                    await asyncio.sleep(pause)
                except Exception:
                    self._go_blind()
                    log.exception("search changes: follower stopped unexpectedly; retrying")
                    await asyncio.sleep(_RESUBSCRIBE_PAUSES_S[-1])
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()


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

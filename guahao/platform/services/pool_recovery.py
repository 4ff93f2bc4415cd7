"""Noticing that Redis lost the slot pool, and rebuilding it once.

Redis restarted empty (no persistence, a failover to an empty replica, a FLUSHALL) leaves
every slot unknown to Redis. Steps on a slot then load it lazily from SQL
(``InventorySync.with_slot_loaded``), but the account markers ("one unfinished hold per
account") and slots nobody touches stay missing until a full rebuild. The pool therefore
carries a generation marker, written after each full rebuild: a sweep that finds it gone
rebuilds every slot, under a lock so that of several workers only one does. The rebuild
fences slot by slot, so it runs while the platform serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import LockError

from guahao.platform.ids import new_id
from guahao.platform.services.inventory_sync import InventorySync

__all__ = ["GENERATION_KEY", "REBUILD_LOCK_KEY", "PoolRecovery"]

log = logging.getLogger(__name__)

GENERATION_KEY = "inventory:generation"
"""Present while Redis still holds the pool a rebuild wrote (or one loaded since); gone with
everything else when Redis comes back empty."""

REBUILD_LOCK_KEY = "inventory:rebuild-lock"

REBUILD_LOCK_SECONDS = 600
"""How long one worker may take over the rebuild before another may try (a worker that dies
mid-rebuild holds it no longer than this); a rebuild of a region's future slots takes
seconds to a minute."""


class PoolRecovery:
    """The sweep's first step: rebuild the pool when its generation marker is gone."""

    def __init__(self, redis: Redis, sync: InventorySync, key_prefix: str = "") -> None:
        self._redis = redis
        self._sync = sync
        self._generation = f"{key_prefix}{GENERATION_KEY}"
        self._lock = f"{key_prefix}{REBUILD_LOCK_KEY}"
        self._running: asyncio.Task[int] | None = None

    async def generation(self) -> str | None:
        """The current pool's generation; None when Redis has lost (or never had) it."""
        value = await self._redis.get(self._generation)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every future slot and mark the pool's new generation (the
        ``guahao inventory rebuild`` command); returns how many slots were loaded."""
        loaded = await self._sync.rebuild_all(progress)
        await self._redis.set(self._generation, new_id())
        return loaded

    async def rebuild_if_lost(self) -> int:
        """Rebuild once if the marker is gone; 0 when it is there or another worker is
        rebuilding (it holds the lock).

        The rebuild runs in a task of its own, awaited through a shield: the sweep gives each
        step a budget of seconds, and a region's rebuild may take longer. A step that runs out
        of budget stops waiting; the rebuild goes on, holding the lock, and a later round
        finds the marker back.
        """
        if self._running is not None and not self._running.done():
            return 0  # this worker's rebuild is still running
        # Everything from the check to the lock's release runs in the task: a step cut short
        # between taking the lock and starting the rebuild would leave the lock held by
        # nobody for REBUILD_LOCK_SECONDS.
        self._running = asyncio.create_task(self._rebuild_once(), name="pool-rebuild")
        return await asyncio.shield(self._running)

    async def _rebuild_once(self) -> int:
        if await self.generation() is not None:
            return 0
        lock = self._redis.lock(self._lock, timeout=REBUILD_LOCK_SECONDS, blocking=False)
        if not await lock.acquire():
            return 0
        try:
            if await self.generation() is not None:  # another worker finished meanwhile
                return 0
            log.warning("the slot pool's generation marker is gone: rebuilding from SQL")
            loaded = await self.rebuild()
            log.warning("slot pool rebuilt: %d slots", loaded)
            return loaded
        finally:
            try:
                await lock.release()
            except LockError:  # it lapsed (a rebuild longer than REBUILD_LOCK_SECONDS)
                log.warning("the pool rebuild outlived its lock")

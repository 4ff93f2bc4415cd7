"""One call at a time per key, its result shared by every caller who asks meanwhile.

At a release the crowd misses the same cold entries at once: a doctor's availability, a
search, the region's and a hospital's rules, a body's gzip. One read each instead of one a
caller is what keeps those misses off the database, the index and the cores (bench/README.md:
surge-reads, flow2, fresh). Each of those services wrote this by hand; it is kept here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SharedCalls"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedCalls(Generic[K, V]):
    """The calls under way, by key."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def __call__(self, key: K, make: Callable[[], Awaitable[V]]) -> V:
        """``make()``'s result, from the call under way for ``key`` if there is one."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(make())
            self._running[key] = running
            running.add_done_callback(lambda done: self._drop(key, done))
        # shielded: one caller going away must not cancel the call the others wait for
        return await asyncio.shield(running)

    def clear(self) -> None:
        """Later callers start calls of their own (the ones under way still end for theirs)."""
        self._running.clear()

    def _drop(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:  # not a later call of the same key
            del self._running[key]

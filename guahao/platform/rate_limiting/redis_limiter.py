"""Request rate limits on the shared Redis, with the ``limits`` library.

Sliding-window counters: two small keys per limit, one round trip per check, and no burst at a
window's edge (a fixed window lets a bot spend two windows' worth in the second around the
edge, which is exactly when slots are released). The limits are region rules
(``RegionRules.rate_limits``); the keys are the account, the device, the address and the
phone, each as given by the caller (addresses and devices as keyed hashes, never raw).

The counting itself is the library's own sliding-window script (``acquire_sliding_window.lua``
from the ``limits`` package, its keys named as the library names them, so its
``get_window_stats`` reads what was counted), sent through the inventory's automatic
pipeline: the limits of every request in one event-loop turn share one round trip, where the
library sent one script per limit per request, each on a connection of its own. At a release
surge that was three round trips per hold before the slot pool was even asked.

On Redis Cluster (a ``redis+cluster://`` URL) the library's cluster storage reads the windows'
statistics and the automatic pipeline routes each count to the node of its keys' hash slot
(the library tags both keys of a counter alike, ``prefix:{key}`` and ``prefix:{key}/-1``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from importlib.resources import files

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from guahao.platform.error_codes import refuse
from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.platform.redis_pools import (
    blocking_pool,
    cluster_node_url,
    is_cluster_url,
    shared_client,
)

__all__ = ["POOL_SIZE", "RequestLimiter"]

POOL_SIZE = 50
"""Connections the limiter keeps to Redis."""

SLIDING_WINDOW = LuaScript(
    "limits_acquire_sliding_window",
    files("limits")
    .joinpath("resources/redis/lua_scripts/acquire_sliding_window.lua")
    .read_text(encoding="utf-8"),
)
"""The ``limits`` library's own counting script, run here through the automatic pipeline."""


class RequestLimiter:
    """Checks and counts requests against named limits; refuses with ``RATE_LIMITED``.

    The adapter of the ``RequestLimits`` port (``guahao.platform.ports``)."""

    def __init__(self, redis_url: str, *, key_prefix: str = "guahao-limits") -> None:
        self._key_prefix = key_prefix
        self._url = redis_url
        self._parsed: dict[str, list[RateLimitItem]] = {}
        if is_cluster_url(redis_url):
            client = shared_client(redis_url, max_connections=POOL_SIZE, timeout=10.0)
            scheme, _, rest = cluster_node_url(redis_url).partition("://")
            # The library's scheme has no TLS variant: TLS is its client's ``ssl`` option.
            self._storage: RedisStorage = RedisClusterStorage(
                f"async+redis+cluster://{rest.partition('/')[0]}",
                implementation="redispy",
                key_prefix=key_prefix,
                ssl=scheme == "rediss",
            )
            self._limiter = SlidingWindowCounterRateLimiter(self._storage)
            self._client = client
            self._pipeline = AutoPipeline(client)
            return
        scheme, _, rest = redis_url.partition("://")
        if scheme == "unix":  # the library names a socket path ``redis+unix``
            scheme = "redis+unix"
        # A blocking pool of its own: at a release surge requests wait their turn for a
        # connection instead of failing (the library's default pool refuses past its size).
        pool = blocking_pool(redis_url, max_connections=POOL_SIZE, timeout=10.0)
        self._storage = RedisStorage(
            f"async+{scheme}://{rest}",
            implementation="redispy",
            key_prefix=key_prefix,
            connection_pool=pool,  # type: ignore[arg-type]  # passed through to redis-py
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._client = aioredis.Redis(connection_pool=pool)
        self._pipeline = AutoPipeline(self._client)

    async def close(self) -> None:
        """Close the connections this limiter opened (its pool, or its cluster clients)."""
        await self._client.aclose()
        if is_cluster_url(self._url):
            bridge = self._storage.bridge  # the library's own cluster client is inside
            assert isinstance(bridge, RedispyBridge)
            await bridge.storage.aclose()
        else:  # the pool was handed to both clients, so neither closes it by itself
            await self._client.connection_pool.disconnect()

    def _items(self, spec: str) -> list[RateLimitItem]:
        items = self._parsed.get(spec)
        if items is None:
            items = self._parsed[spec] = parse_many(spec)
        return items

    async def hit(self, checks: Sequence[tuple[str, str, str]]) -> None:
        """Count one request against every ``(limit name, spec, identifier)``; refuse if any
        is over. Checks with an empty identifier (unknown device, say) are skipped.

        Every attempt counts, refused or not: a client hammering past its limit stays
        limited. Each counter is changed atomically by the library's script.
        """
        pairs = [
            (name, ident, item)
            for name, spec, ident in checks
            if ident
            for item in self._items(spec)
        ]
        results = await asyncio.gather(
            *(self._acquire(item, name, ident) for name, ident, item in pairs)
        )
        for (name, ident, item), ok in zip(pairs, results, strict=True):
            if not ok:
                stats = await self._limiter.get_window_stats(item, name, ident)
                retry = max(1, int(stats.reset_time - time.time()) + 1)
                refuse("RATE_LIMITED", limit=name, retry_after_seconds=retry)

    async def _acquire(self, item: RateLimitItem, name: str, ident: str) -> bool:
        """``SlidingWindowCounterRateLimiter.hit`` through the pipeline: the same script on
        the same keys (``prefix:{key}`` and ``prefix:{key}/-1``, one hash slot)."""
        current = f"{self._key_prefix}:{{{item.key_for(name, ident)}}}"
        acquired = await self._pipeline.run(
            SLIDING_WINDOW, [f"{current}/-1", current], [item.amount, item.get_expiry(), 1]
        )
        return bool(acquired)

"""Request rate limits on the shared Redis, with the ``limits`` library.

Sliding-window counters: two small keys per limit, one round trip per check, and no burst at a
window's edge (a fixed window lets a bot spend two windows' worth in the second around the
edge, which is exactly when slots are released). The limits are region rules
(``RegionRules.rate_limits``); the keys are the account, the device, the address and the
phone, each as given by the caller (addresses and devices as keyed hashes, never raw).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from guahao.platform.error_codes import refuse
from guahao.platform.redis_pools import blocking_pool

__all__ = ["POOL_SIZE", "RequestLimiter"]

POOL_SIZE = 50
"""Connections the limiter keeps to Redis."""


class RequestLimiter:
    """Checks and counts requests against named limits; refuses with ``RATE_LIMITED``.

    The adapter of the ``RequestLimits`` port (``guahao.platform.ports``)."""

    def __init__(self, redis_url: str, *, key_prefix: str = "guahao-limits") -> None:
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
        self._parsed: dict[str, list[RateLimitItem]] = {}

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
            *(self._limiter.hit(item, name, ident) for name, ident, item in pairs)
        )
        for (name, ident, item), ok in zip(pairs, results, strict=True):
            if not ok:
                stats = await self._limiter.get_window_stats(item, name, ident)
                retry = max(1, int(stats.reset_time - time.time()) + 1)
                refuse("RATE_LIMITED", limit=name, retry_after_seconds=retry)

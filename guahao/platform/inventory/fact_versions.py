"""``FactVersions`` on Redis: one hash, a field per hospital, bumped with HINCRBY.

The hash lives beside the slot pool on the Redis every process already shares, so a policy
change made by one worker reaches the slot-facts cache of every other worker (each reads
the whole hash about once a second; a region has hundreds of hospitals, a few kilobytes).
A Redis that lost its data starts every hospital at version 0 again: processes see the
versions move and drop what they cached, which costs one SQL read per slot, never a stale
answer.
"""

from __future__ import annotations

from redis.asyncio import Redis

from guahao.platform.error_codes import error
from guahao.platform.inventory.redis_errors import UNAVAILABLE

__all__ = ["RedisFactVersions"]


class RedisFactVersions:
    """Per-hospital versions of what processes cache about hospitals."""

    def __init__(self, redis: Redis, key_prefix: str = "") -> None:
        self._redis = redis
        self._key = f"{key_prefix}cache:hospital-versions"

    async def current(self) -> dict[str, int]:
        try:
            found = await self._redis.hgetall(self._key)
        except UNAVAILABLE as exc:
            raise error("INVENTORY_UNAVAILABLE", operation="fact_versions") from exc
        return {_text(k): int(v) for k, v in found.items()}

    async def bump(self, hospital_id: str) -> int:
        try:
            return int(await self._redis.hincrby(self._key, hospital_id, 1))
        except UNAVAILABLE as exc:
            raise error("INVENTORY_UNAVAILABLE", operation="fact_versions") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""Whether this process can serve requests: the record of truth and Redis both answer.

Load balancers and orchestrators ask ``GET /health`` before sending traffic to a worker; the
check is a real round trip to each store (through the same connection pools the services use),
so a worker whose database or Redis is unreachable is taken out of rotation.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["Readiness"]


class Readiness:
    """One round trip to SQL and one to Redis; either failing raises (the caller's 5xx)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis) -> None:
        self._sessions = sessions
        self._redis = redis

    async def check(self) -> None:
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))
        await self._redis.ping()

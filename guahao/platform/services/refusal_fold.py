"""Unmet demand from Redis into SQL: the sweep's fold of refused holds.

A hold refused ``SLOT_SOLD_OUT`` never writes SQL on the hot path: the hold path adds the
account to a HyperLogLog per session in Redis and marks the session dirty
(``guahao.platform.refused_demand``). Each sweep round moves the dirty set aside atomically,
copies each session's count into ``refused_demand`` (never lowering it) and has the rollups
recompute those sessions' rows. A fold that fails puts its sessions back for the next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import date

import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.platform.persistence.tables import RefusedDemandRow, SessionRow
from guahao.platform.refused_demand import DIRTY_KEY, refused_key
from guahao.platform.services.runtime import Ports

__all__ = ["RefusalFold"]

_FOLDING_KEY = DIRTY_KEY + ":folding"

# KEYS[1] the folding set, KEYS[2] the dirty set (one hash tag): move the dirty set aside,
# keeping what a failed fold left there. A script rather than MULTI: redis-py's cluster
# pipeline refuses multi-key commands such as SUNIONSTORE even within one slot.
_MOVE_ASIDE = """
redis.call('SUNIONSTORE', KEYS[1], KEYS[1], KEYS[2])
redis.call('DEL', KEYS[2])
return redis.call('SCARD', KEYS[1])
"""


class RefusalFold:
    """Moves refused-demand counts from Redis to SQL and asks for the rows to be recomputed."""

    def __init__(
        self,
        ports: Ports,
        redis: aioredis.Redis,
        recompute: Callable[[Iterable[tuple[date, str]]], Awaitable[int]],
    ) -> None:
        self._p = ports
        self._redis = redis
        self._recompute = recompute
        self._move_aside = redis.register_script(_MOVE_ASIDE)

    async def fold(self) -> int:
        """Copy the refused-demand counts of sessions that changed into SQL and their rows;
        returns the sessions folded. Safe to repeat: counts are absolute and never lowered."""
        await self._move_aside(keys=[_FOLDING_KEY, DIRTY_KEY])
        raw = await self._redis.smembers(_FOLDING_KEY)
        session_ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)
        if not session_ids:
            return 0
        try:
            # One command per session, concurrently: the sessions' keys sit on different
            # cluster shards, and redis-py's cluster pipeline refuses PFCOUNT.
            counts = [
                int(n)
                for n in await asyncio.gather(
                    *(self._redis.pfcount(refused_key(session_id)) for session_id in session_ids)
                )
            ]
            now = self._p.clock.now()
            keys: set[tuple[date, str]] = set()
            async with self._p.sessions() as session, session.begin():
                found = {
                    r.session_id: r
                    for r in (
                        await session.scalars(
                            select(RefusedDemandRow).where(
                                RefusedDemandRow.session_id.in_(session_ids)
                            )
                        )
                    ).all()
                }
                for session_id, count in zip(session_ids, counts, strict=True):
                    row = found.get(session_id)
                    if row is None:
                        session.add(
                            RefusedDemandRow(session_id=session_id, refused=count, updated_at=now)
                        )
                    elif count > row.refused:
                        row.refused, row.updated_at = count, now
                keys = {
                    (day, department_id)
                    for day, department_id in (
                        await session.execute(
                            select(SessionRow.date, SessionRow.department_id).where(
                                SessionRow.id.in_(session_ids)
                            )
                        )
                    ).all()
                }
            await self._recompute(keys)
        except BaseException:
            # put the sessions back for the next fold rather than lose them
            await self._redis.sadd(DIRTY_KEY, *session_ids)
            raise
        await self._redis.delete(_FOLDING_KEY)
        return len(session_ids)

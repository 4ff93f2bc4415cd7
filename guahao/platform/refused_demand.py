"""Unmet demand counted on the hot path: who was refused ``SLOT_SOLD_OUT``, per session.

At a release surge most hold attempts are refusals, many answered from the worker's memory
without touching Redis (see ``RedisInventory``). Counting them must cost less than answering
them, so a refusal only adds the account to an in-process set; at most once a second the
worker sends what it gathered in one pipelined packet (``PFADD`` into the session's
HyperLogLog, ``SADD`` into a set of sessions to fold). The sweep folds the counts into SQL
(``SupplyDemandRollups.fold_refusals``). Distinct accounts rather than attempts: a citizen
pressing the button twenty times is one person who found nothing.

Counting is best effort by design: a failed flush is logged and dropped, never retried on the
request's path, and never fails a hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

__all__ = ["DIRTY_KEY", "RefusedDemandCounter", "refused_key"]

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
"""How long refusals gather in process before one packet carries them to Redis."""

MAX_PENDING = 200_000
"""Accounts a worker keeps between flushes; past it, further refusals of that second are
not counted (memory stays bounded whatever the crowd)."""

KEY_TTL_SECONDS = 8 * 24 * 3600
"""A session's HyperLogLog outlives its day by more than the sweep ever lags."""

DIRTY_KEY = "refused:{dirty}"
"""Sessions whose count changed since the last fold (hash-tagged with its folding twin)."""


def refused_key(session_id: str) -> str:
    """The HyperLogLog of accounts refused on a session (one hash tag per session).

    >>> refused_key("s1")
    'refused:{sess:s1}'
    """
    return f"refused:{{sess:{session_id}}}"


class RefusedDemandCounter:
    """Gathers refused accounts per session in process and flushes them to Redis."""

    def __init__(self, redis: aioredis.Redis, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._redis = redis
        self._flush_seconds = flush_seconds
        self._pending: dict[str, set[str]] = {}
        self._size = 0
        self._scheduled: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[int]] = set()
        self.dropped = 0
        """Refusals not counted because ``MAX_PENDING`` was reached (for the metrics)."""

    def note(self, session_id: str, account_id: str) -> None:
        """Record one refusal; never waits, never raises."""
        if self._size >= MAX_PENDING:
            self.dropped += 1
            return
        accounts = self._pending.get(session_id)
        if accounts is None:
            accounts = self._pending[session_id] = set()
        if account_id not in accounts:
            accounts.add(account_id)
            self._size += 1
        if self._scheduled is None:
            with contextlib.suppress(RuntimeError):  # no running loop: flushed explicitly
                loop = asyncio.get_running_loop()
                self._scheduled = loop.call_later(self._flush_seconds, self._start_flush)

    def _start_flush(self) -> None:
        self._scheduled = None
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> int:
        """Send what was gathered; returns how many sessions it touched."""
        pending, self._pending, self._size = self._pending, {}, 0
        if not pending:
            return 0
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id, accounts in pending.items():
                    key = refused_key(session_id)
                    pipe.pfadd(key, *accounts)
                    pipe.expire(key, KEY_TTL_SECONDS)
                pipe.sadd(DIRTY_KEY, *pending)
                await pipe.execute()
        except Exception as exc:  # best effort: a statistic, never a reason to fail
            log.warning("refused demand of %d sessions not counted: %s", len(pending), exc)
            return 0
        return len(pending)

    async def close(self) -> None:
        """Flush what is left (on shutdown)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()

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

The packet is written by hiredis through the automatic pipeline (a short script per session
and one for the set): redis-py's own packer, in Python, took 0.75 µs per account, about one
account per refusal at a release crowd (bench/profiles/refuse2-*).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.inventory.pipelining import AutoPipeline

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

_ADD_REFUSED = LuaScript(
    "guahao_add_refused",
    # KEYS[1] a session's HyperLogLog, ARGV[1] its time to live, ARGV[2..] the accounts;
    # unpacked a thousand at a time (Lua's stack holds fewer than a worker's second)
    """
for first = 2, #ARGV, 1000 do
  redis.call('pfadd', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('expire', KEYS[1], ARGV[1])
""",
)

_MARK_DIRTY = LuaScript(
    "guahao_mark_refused_sessions",
    # KEYS[1] the set of sessions to fold, ARGV the sessions
    """
for first = 1, #ARGV, 1000 do
  redis.call('sadd', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
""",
)


def refused_key(session_id: str) -> str:
    """The HyperLogLog of accounts refused on a session (one hash tag per session).

    >>> refused_key("s1")
    'refused:{sess:s1}'
    """
    return f"refused:{{sess:{session_id}}}"


class RefusedDemandCounter:
    """Gathers refused accounts per session in process and flushes them to Redis."""

    def __init__(self, redis: aioredis.Redis, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._pipeline = AutoPipeline(redis)
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
            await asyncio.gather(
                *(
                    self._pipeline.run(
                        _ADD_REFUSED, [refused_key(session_id)], [KEY_TTL_SECONDS, *accounts]
                    )
                    for session_id, accounts in pending.items()
                )
            )
            # marked after the counts are in: a fold between the two reads them all
            await self._pipeline.run(_MARK_DIRTY, [DIRTY_KEY], list(pending))
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

"""Tell every worker process that a session's free units changed (Redis pub/sub).

Pages showing live availability listen on one channel; a message names a session whose
counts may have moved, and each listener re-reads the counts it shows (the hot pool stays the
only truth, a message carries no number that could be stale or out of order). Messages are
published by the outbox subscriber below for every booking or session event (at least once,
from whichever process dispatches), and directly by the web layer right after a page's own
hold or release, so the citizen's second browser sees it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from guahao.platform.persistence.outbox import OutboxEvent

__all__ = ["CHANNEL", "AvailabilityFeed"]

CHANNEL = "guahao:availability:sessions"
"""The pub/sub channel (a durable name: every process of every version listens on it)."""


class AvailabilityFeed:
    """Publishes session ids whose availability changed."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def changed(self, session_ids: Iterable[str]) -> None:
        for session_id in sorted(set(session_ids)):
            if session_id:
                await self._redis.publish(CHANNEL, session_id)

    async def on_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber: booking and session events carry the session they touch."""
        session_id = event.payload.get("session_id")
        if isinstance(session_id, str):
            await self.changed([session_id])

    async def on_events(self, events: Sequence[OutboxEvent]) -> None:
        """Outbox batch entry point: each session a run touches is announced once, all in one
        round trip to Redis. Listeners re-read the counts a message names, so one message
        per session says what one per event said; a surge sent thousands of them, one
        round trip each."""
        sessions = {e.payload.get("session_id") for e in events}
        named = sorted(s for s in sessions if isinstance(s, str) and s)
        if not named:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in named:
                pipe.publish(CHANNEL, session_id)
            await pipe.execute()

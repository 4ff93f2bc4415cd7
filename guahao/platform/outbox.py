"""The transactional outbox: every state change writes its event in the same transaction.

Delivery is at least once and in order per aggregate (a booking's events never overtake each
other): the dispatcher reads pending rows in id order, stops at the first failure of an
aggregate for this round, and marks a row dispatched only after every handler accepted it.
Handlers must therefore be idempotent (they receive the row id as a dedupe key).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.platform.clock import Clock
from guahao.platform.persistence.tables import OutboxRow

__all__ = ["OutboxDispatcher", "OutboxEvent", "record_event"]

log = logging.getLogger(__name__)


class OutboxEvent(msgspec.Struct, frozen=True):
    """An event as handlers receive it."""

    id: int
    topic: str
    aggregate_id: str
    payload: dict[str, Any]
    created_at: datetime


Handler = Callable[[OutboxEvent], Awaitable[None]]


def record_event(
    session: AsyncSession,
    topic: str,
    aggregate_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """Add an event to the caller's transaction; it commits or rolls back with the change."""
    session.add(
        OutboxRow(
            topic=topic,
            aggregate_id=aggregate_id,
            payload=msgspec.to_builtins(payload),
            created_at=now,
        )
    )


class OutboxDispatcher:
    """Delivers pending outbox rows to the handlers subscribed to their topic prefix."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._handlers: list[tuple[str, Handler]] = []

    def subscribe(self, topic_prefix: str, handler: Handler) -> None:
        """Call ``handler`` for every event whose topic starts with ``topic_prefix``."""
        self._handlers.append((topic_prefix, handler))

    async def dispatch_pending(self, limit: int = 200) -> int:
        """One round: deliver up to ``limit`` pending events; returns how many were delivered."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.dispatched_at.is_(None))
                    .order_by(OutboxRow.id)
                    .limit(limit)
                )
            ).all()
            blocked: set[str] = set()
            delivered = 0
            for row in rows:
                if row.aggregate_id in blocked:
                    continue
                event = OutboxEvent(
                    id=row.id,
                    topic=row.topic,
                    aggregate_id=row.aggregate_id,
                    payload=row.payload,
                    created_at=row.created_at,
                )
                try:
                    for prefix, handler in self._handlers:
                        if row.topic.startswith(prefix):
                            await handler(event)
                except Exception as exc:  # a handler failed: retry later, keep order
                    log.warning("outbox event %s (%s) failed: %s", row.id, row.topic, exc)
                    row.attempts += 1
                    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    blocked.add(row.aggregate_id)
                else:
                    row.dispatched_at = self._clock.now()
                    row.attempts += 1
                    delivered += 1
                await session.commit()
            return delivered

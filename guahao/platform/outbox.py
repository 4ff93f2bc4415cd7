"""The transactional outbox: every state change writes its event in the same transaction.

Delivery is per subscriber: each subscriber (the inbox notifier, the search indexer, the HIS
notifier of a hospital connector, …) has its own cursor over the outbox and its own retry list,
so a hospital system that is down holds back only its own deliveries, never a citizen's
notifications. For each subscriber delivery is at least once and in order per aggregate (a
booking's events never overtake each other): an event the handler refuses is *parked* with a
backoff, and every later event of the same aggregate parks behind it until it goes through.
Handlers must therefore be idempotent (they receive the row id as a dedupe key).

An outbox row is marked ``dispatched_at`` once every subscriber of this process has it (its
cursor is past the row and the row is parked for nobody); ``attempts`` and ``last_error`` on the
row count and describe failed deliveries, summed over subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.platform.clock import Clock
from guahao.platform.persistence.connector_tables import OutboxCursorRow, OutboxParkedRow
from guahao.platform.persistence.tables import OutboxRow

__all__ = ["OutboxDispatcher", "OutboxEvent", "record_event"]

log = logging.getLogger(__name__)

FREE_RETRIES = 3
"""Failures retried at the very next round (the dispatch cron runs every 2 s): a blip."""

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
"""After the free retries the wait doubles from 2 s up to 5 minutes: an outage of the
receiving system costs it one attempt every 5 minutes, and nothing is lost meanwhile."""


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


def retry_delay(attempts: int) -> timedelta:
    """How long a subscriber waits before trying an event again after ``attempts`` failures.

    >>> [retry_delay(n).total_seconds() for n in (1, 3, 4, 5, 20)]
    [0.0, 0.0, 2.0, 4.0, 300.0]
    """
    if attempts <= FREE_RETRIES:
        return timedelta(0)
    seconds = BACKOFF_BASE_SECONDS * 2 ** min(attempts - FREE_RETRIES - 1, 30)
    return timedelta(seconds=min(seconds, BACKOFF_CAP_SECONDS))


@dataclass(frozen=True)
class Subscription:
    name: str
    prefix: str
    handler: Handler
    from_start: bool


def _event(row: OutboxRow) -> OutboxEvent:
    return OutboxEvent(
        id=row.id,
        topic=row.topic,
        aggregate_id=row.aggregate_id,
        payload=row.payload,
        created_at=row.created_at,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class OutboxDispatcher:
    """Delivers outbox rows to each subscriber on its own cursor."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._subscriptions: list[Subscription] = []

    @property
    def subscribers(self) -> list[str]:
        return [s.name for s in self._subscriptions]

    def subscribe(
        self,
        topic_prefix: str,
        handler: Handler,
        *,
        name: str | None = None,
        from_start: bool = True,
    ) -> str:
        """Call ``handler`` for every event whose topic starts with ``topic_prefix``.

        ``name`` identifies the subscriber's cursor across restarts (default: the handler's
        qualified name and the prefix). A new subscriber reads the outbox from its first row
        (``from_start``) or only from what is written after it joined. Returns the name.
        """
        if name is None:
            owner = handler if hasattr(handler, "__qualname__") else type(handler)
            name = f"{owner.__module__}.{owner.__qualname__}:{topic_prefix}"
        base, n = name, 1
        while name in self.subscribers:
            n += 1
            name = f"{base}#{n}"
        self._subscriptions.append(Subscription(name, topic_prefix, handler, from_start))
        return name

    async def dispatch_pending(self, limit: int = 200) -> int:
        """One round for every subscriber; returns how many outbox rows became fully
        delivered in it."""
        for subscription in self._subscriptions:
            await self._round(subscription, limit)
        return await self._mark_dispatched(limit)

    async def parked(self, subscriber: str) -> list[OutboxParkedRow]:
        """The events ``subscriber`` has not accepted yet, oldest first (for health pages)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(OutboxParkedRow)
                .where(OutboxParkedRow.subscriber == subscriber)
                .order_by(OutboxParkedRow.event_id)
            )
            return list(rows.all())

    async def _cursor(self, session: AsyncSession, subscription: Subscription) -> int:
        found = await session.get(OutboxCursorRow, subscription.name)
        if found is not None:
            return int(found.position)
        start = 0
        if not subscription.from_start:
            start = int(await session.scalar(select(func.coalesce(func.max(OutboxRow.id), 0))) or 0)
        session.add(
            OutboxCursorRow(
                subscriber=subscription.name, position=start, updated_at=self._clock.now()
            )
        )
        await session.commit()
        return start

    async def _deliver(self, subscription: Subscription, row: OutboxRow) -> BaseException | None:
        if not row.topic.startswith(subscription.prefix):
            return None
        try:
            await subscription.handler(_event(row))
        except Exception as exc:  # the subscriber refused: park it, keep order, retry later
            log.warning(
                "outbox event %s (%s) failed for %s: %s",
                row.id,
                row.topic,
                subscription.name,
                exc,
            )
            return exc
        return None

    async def _failed(
        self, session: AsyncSession, row: OutboxRow, parked: OutboxParkedRow, exc: BaseException
    ) -> None:
        now = self._clock.now()
        parked.attempts += 1
        parked.last_error = _describe(exc)
        parked.next_attempt_at = now + retry_delay(parked.attempts)
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == row.id)
            .values(attempts=OutboxRow.attempts + 1, last_error=parked.last_error)
        )

    async def _round(self, subscription: Subscription, limit: int) -> None:
        now = self._clock.now()
        blocked: set[str] = set()
        async with self._sessions() as session:
            position = await self._cursor(session, subscription)
            # 1. the retry list, oldest first; one failure blocks the rest of its aggregate
            waiting = (
                await session.execute(
                    select(OutboxParkedRow, OutboxRow)
                    .join(OutboxRow, OutboxRow.id == OutboxParkedRow.event_id)
                    .where(OutboxParkedRow.subscriber == subscription.name)
                    .order_by(OutboxParkedRow.event_id)
                )
            ).all()
            for parked, row in waiting:
                if parked.aggregate_id in blocked:
                    continue
                if parked.next_attempt_at > now:
                    blocked.add(parked.aggregate_id)
                    continue
                exc = await self._deliver(subscription, row)
                if exc is None:
                    await session.delete(parked)
                else:
                    await self._failed(session, row, parked, exc)
                    blocked.add(parked.aggregate_id)
                await session.commit()
            # 2. new rows past the cursor
            rows = (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.id > position)
                    .order_by(OutboxRow.id)
                    .limit(limit)
                )
            ).all()
            for row in rows:
                if row.topic.startswith(subscription.prefix):
                    if row.aggregate_id in blocked:
                        session.add(
                            OutboxParkedRow(
                                subscriber=subscription.name,
                                event_id=row.id,
                                aggregate_id=row.aggregate_id,
                                attempts=0,
                                next_attempt_at=now,
                            )
                        )
                    else:
                        exc = await self._deliver(subscription, row)
                        if exc is not None:
                            parked = OutboxParkedRow(
                                subscriber=subscription.name,
                                event_id=row.id,
                                aggregate_id=row.aggregate_id,
                                attempts=0,
                                next_attempt_at=now,
                            )
                            session.add(parked)
                            await self._failed(session, row, parked, exc)
                            blocked.add(row.aggregate_id)
                await session.execute(
                    update(OutboxCursorRow)
                    .where(
                        OutboxCursorRow.subscriber == subscription.name,
                        OutboxCursorRow.position < row.id,
                    )
                    .values(position=row.id, updated_at=now)
                )
                await session.commit()

    async def _mark_dispatched(self, limit: int) -> int:
        now = self._clock.now()
        names = self.subscribers
        async with self._sessions() as session, session.begin():
            query = select(OutboxRow.id).where(OutboxRow.dispatched_at.is_(None))
            if names:
                floor = await session.scalar(
                    select(func.min(OutboxCursorRow.position)).where(
                        OutboxCursorRow.subscriber.in_(names)
                    )
                )
                known = await session.scalar(
                    select(func.count()).where(OutboxCursorRow.subscriber.in_(names))
                )
                if floor is None or known != len(names):
                    return 0
                query = query.where(
                    OutboxRow.id <= floor,
                    OutboxRow.id.not_in(
                        select(OutboxParkedRow.event_id).where(
                            OutboxParkedRow.subscriber.in_(names)
                        )
                    ),
                )
            ids = list((await session.scalars(query.order_by(OutboxRow.id).limit(limit))).all())
            if ids:
                await session.execute(
                    update(OutboxRow).where(OutboxRow.id.in_(ids)).values(dispatched_at=now)
                )
            return len(ids)

    async def forget(self, subscriber: str) -> None:
        """Drop a retired subscriber's cursor and retry list (its events are then done)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(OutboxParkedRow).where(OutboxParkedRow.subscriber == subscriber)
            )
            await session.execute(
                delete(OutboxCursorRow).where(OutboxCursorRow.subscriber == subscriber)
            )

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

A cursor is stored under its subscription's name, so the name is declared, never derived from
where the handler's code happens to live: moving a handler must not silently replay the whole
outbox to it under a new name, nor leave its old cursor behind. At start (``start``) every
subscription must find its cursor in a database that has a history, unless it is declared new
with ``starts_at`` ("beginning": replay every event; "now": only what comes next); a fresh
database starts them all. Cursors no subscription uses any more are reported, not deleted.

This is the SQL adapter of the outbox port, beside the other persistence adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.platform.clock import Clock
from guahao.platform.persistence.connector_tables import OutboxCursorRow, OutboxParkedRow
from guahao.platform.persistence.tables import OutboxRow

__all__ = [
    "CursorReport",
    "OutboxBacklog",
    "OutboxDispatcher",
    "OutboxEvent",
    "StartsAt",
    "UnknownSubscriptionError",
    "record_event",
]

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

StartsAt = Literal["beginning", "now"]
"""Where a subscription declared new starts reading: the first outbox row (it replays the
history) or the current end (it sees only events written after it joined)."""

NAME_MAX_LENGTH = 200
"""The width of ``outbox_cursors.subscriber``."""


class UnknownSubscriptionError(RuntimeError):
    """Subscriptions without a cursor in a database that already has a history.

    Raised at platform start instead of guessing: a renamed subscriber would otherwise replay
    every event under its new name (or silently skip them). docs/operations.md says what an
    operator does about it.
    """

    def __init__(self, names: list[str], known: list[str]) -> None:
        self.names = names
        self.known = known
        listed = ", ".join(repr(n) for n in names)
        super().__init__(
            f"outbox subscription(s) {listed} have no cursor in this database, which already "
            "has outbox history. If a subscriber was renamed, move its cursor "
            "(`guahao outbox rename OLD NEW`); if it is new, declare where it starts "
            '(`subscribe(..., starts_at="now"|"beginning")` or `guahao outbox start NAME '
            "--at now|beginning`). Cursors in the database: "
            + (", ".join(repr(n) for n in known) or "none")
        )


class CursorReport(msgspec.Struct, frozen=True):
    """One cursor as an operator sees it (``guahao outbox cursors``).

    ``state`` is ``subscribed`` (a subscription reads it), ``unused`` (no subscription of
    this code reads it: a retired or renamed subscriber) or ``missing`` (a subscription has
    no cursor yet: the platform refuses to start unless it is declared new)."""

    name: str
    state: Literal["subscribed", "unused", "missing"]
    position: int | None
    behind: int | None
    """Outbox rows after the cursor (not yet read by this subscriber)."""
    parked: int
    """Events waiting in this subscriber's retry list."""


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
    starts_at: StartsAt | None
    """``None``: a deployed subscription, whose cursor the database must already hold."""


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


async def _positions(session: AsyncSession) -> dict[str, int]:
    """Every cursor in the database: subscriber name -> the last outbox row it has."""
    rows = await session.execute(select(OutboxCursorRow.subscriber, OutboxCursorRow.position))
    return {str(name): int(position) for name, position in rows.all()}


class OutboxBacklog(msgspec.Struct, frozen=True):
    """What waits to be delivered, for the operators' metrics (``/metrics``)."""

    pending: int
    """Rows not yet dispatched."""
    lag_seconds: float
    """Age of the oldest row not yet dispatched (0 when none)."""
    behind: dict[str, int]
    """Per subscriber cursor: rows written after it."""


class OutboxDispatcher:
    """Delivers outbox rows to each subscriber on its own cursor."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        self._checked: set[str] = set()

    @property
    def subscribers(self) -> list[str]:
        return [s.name for s in self._subscriptions]

    async def backlog(self) -> OutboxBacklog:
        """How far delivery is behind: three aggregate reads, cheap enough for a scrape."""
        now = self._clock.now()
        async with self._sessions() as session:
            pending, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxRow.created_at)).where(
                        OutboxRow.dispatched_at.is_(None)
                    )
                )
            ).one()
            newest = int(await session.scalar(select(func.max(OutboxRow.id))) or 0)
            positions = await _positions(session)
        lag = 0.0
        if oldest is not None:
            oldest_utc = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=now.tzinfo)
            lag = max(0.0, (now - oldest_utc).total_seconds())
        return OutboxBacklog(
            pending=int(pending),
            lag_seconds=lag,
            behind={name: max(0, newest - position) for name, position in positions.items()},
        )

    def subscribe(
        self,
        topic_prefix: str,
        handler: Handler,
        *,
        name: str,
        starts_at: StartsAt | None = None,
    ) -> str:
        """Call ``handler`` for every event whose topic starts with ``topic_prefix``.

        ``name`` is the subscriber's cursor in the database: keep it when the handler's code
        moves. ``starts_at`` declares a subscription new (see ``StartsAt``); without it the
        database must already know the name, unless it has no history at all. Once its cursor
        exists the declaration changes nothing and may stay. Returns the name.
        """
        if not name or len(name) > NAME_MAX_LENGTH:
            raise ValueError(f"an outbox subscription needs a name of 1 to {NAME_MAX_LENGTH} chars")
        if name in self.subscribers:
            raise ValueError(f"outbox subscription {name!r} is already taken")
        self._subscriptions.append(Subscription(name, topic_prefix, handler, starts_at))
        return name

    async def start(self) -> list[str]:
        """Check every subscription against the cursors in the database and open the cursors
        of a fresh database and of subscriptions declared new; returns the unused cursors
        (also logged as a warning).

        Raises ``UnknownSubscriptionError`` naming every subscription that has no cursor in a
        database with history and is not declared new. Several processes may start at once:
        a cursor another process opened first is simply kept.
        """
        for attempt in (1, 2):
            try:
                return await self._start()
            except IntegrityError:  # another process opened the same cursor first
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _start(self) -> list[str]:
        names = self.subscribers
        async with self._sessions() as session, session.begin():
            known = await _positions(session)
            end = int(await session.scalar(select(func.coalesce(func.max(OutboxRow.id), 0))) or 0)
            has_history = bool(known) or end > 0
            missing = [s for s in self._subscriptions if s.name not in known]
            unknown = [s.name for s in missing if s.starts_at is None and has_history]
            if unknown:
                raise UnknownSubscriptionError(unknown, sorted(known))
            now = self._clock.now()
            for subscription in missing:
                start = end if subscription.starts_at == "now" else 0
                session.add(
                    OutboxCursorRow(subscriber=subscription.name, position=start, updated_at=now)
                )
                log.info("outbox cursor %r opened at %s", subscription.name, start)
        self._checked = set(names)
        unused = sorted(set(known) - set(names))
        if unused:
            log.warning(
                "outbox cursors no subscription uses: %s (a retired or renamed subscriber; "
                "`guahao outbox forget NAME` drops one, `guahao outbox rename` moves one)",
                ", ".join(unused),
            )
        return unused

    async def cursors(self) -> list[CursorReport]:
        """Every cursor in the database and every subscription of this code, by name."""
        async with self._sessions() as session:
            known = await _positions(session)
            parked = {
                str(name): int(count)
                for name, count in (
                    await session.execute(
                        select(OutboxParkedRow.subscriber, func.count()).group_by(
                            OutboxParkedRow.subscriber
                        )
                    )
                ).all()
            }
            behind: dict[str, int] = {}
            for name, position in known.items():
                behind[name] = int(
                    await session.scalar(
                        select(func.count()).select_from(OutboxRow).where(OutboxRow.id > position)
                    )
                    or 0
                )
        subscribed = set(self.subscribers)
        reports = []
        for name in sorted(subscribed | set(known)):
            state: Literal["subscribed", "unused", "missing"] = (
                "missing" if name not in known else "subscribed" if name in subscribed else "unused"
            )
            reports.append(
                CursorReport(
                    name=name,
                    state=state,
                    position=known.get(name),
                    behind=behind.get(name),
                    parked=parked.get(name, 0),
                )
            )
        return reports

    async def open_cursor(self, subscriber: str, starts_at: StartsAt) -> int:
        """Open a cursor by hand (an operator's decision that a subscription is new); returns
        its position. Refuses a name that already has one."""
        async with self._sessions() as session, session.begin():
            if await session.get(OutboxCursorRow, subscriber) is not None:
                raise ValueError(f"outbox cursor {subscriber!r} already exists")
            start = 0
            if starts_at == "now":
                start = int(
                    await session.scalar(select(func.coalesce(func.max(OutboxRow.id), 0))) or 0
                )
            session.add(
                OutboxCursorRow(subscriber=subscriber, position=start, updated_at=self._clock.now())
            )
            return start

    async def rename(self, old: str, new: str) -> None:
        """Move a cursor and its retry list to a new name (a renamed subscriber keeps its
        place instead of replaying the outbox)."""
        if not new or len(new) > NAME_MAX_LENGTH:
            raise ValueError(f"an outbox cursor needs a name of 1 to {NAME_MAX_LENGTH} chars")
        async with self._sessions() as session, session.begin():
            if await session.get(OutboxCursorRow, old) is None:
                raise ValueError(f"there is no outbox cursor {old!r}")
            if await session.get(OutboxCursorRow, new) is not None:
                raise ValueError(f"outbox cursor {new!r} already exists")
            await session.execute(
                update(OutboxCursorRow)
                .where(OutboxCursorRow.subscriber == old)
                .values(subscriber=new, updated_at=self._clock.now())
            )
            await session.execute(
                update(OutboxParkedRow)
                .where(OutboxParkedRow.subscriber == old)
                .values(subscriber=new)
            )

    async def dispatch_pending(self, limit: int = 200) -> int:
        """One round for every subscriber; returns how many outbox rows became fully
        delivered in it. Subscriptions added since ``start`` are checked first."""
        if set(self.subscribers) - self._checked:
            await self.start()
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

    async def _cursor(self, session: AsyncSession, subscription: Subscription) -> int | None:
        found = await session.get(OutboxCursorRow, subscription.name)
        if found is None:  # dropped while running (``forget``): the next ``start`` decides
            self._checked.discard(subscription.name)
            log.error("outbox cursor %r vanished; its subscriber waits", subscription.name)
            return None
        return int(found.position)

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
            if position is None:
                return
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

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

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from guahao.platform.clock import Clock
from guahao.platform.persistence.connector_tables import OutboxCursorRow, OutboxParkedRow
from guahao.platform.persistence.outbox_horizon import CommitHorizon
from guahao.platform.persistence.tables import OutboxRow

__all__ = [
    "BatchFailures",
    "CursorReport",
    "OutboxBacklog",
    "OutboxDispatcher",
    "OutboxEvent",
    "StartsAt",
    "SubscriberDelay",
    "UnknownSubscriptionError",
    "event_values",
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


@dataclass(frozen=True)
class BatchFailures:
    """What a batch entry point did not do: event id -> why.

    For subscribers whose run is many independent calls to other systems (the HIS notifier:
    one call per booking, to many hospitals), a failure is one event's, not the run's. Each
    aggregate's events are done in order up to its first failure, which is the one reported;
    the dispatcher parks that event with its error and every later event of its aggregate
    behind it, exactly as when the handler refuses it one by one, and counts the rest of the
    run done. The parked event is retried alone from the retry list (free retries at the next
    round, then backoff)."""

    failed: dict[int, Exception]


BatchHandler = Callable[[Sequence[OutboxEvent]], Awaitable[bool | BatchFailures | None]]
"""A subscriber's optional second entry point (``subscribe(..., batch=...)``): a run of
events at once, in order, so that a surge costs it one transaction or one recomputation per
run instead of per event. It must have the same effect as calling the handler on each event
in turn; if it raises, the dispatcher calls the handler on each event instead, so that a
failure parks exactly its own event. Returning ``False`` declines the run without having
done anything: the handler then gets each event, as if there were no batch entry point.
Returning ``BatchFailures`` reports the events it could not deliver (see there)."""

BATCH_SIZE = 1000
"""Rows one subscriber reads per round."""

ROUND_BUDGET_SECONDS = 10.0
"""How long one ``dispatch_pending`` keeps a group of subscribers going while its batches come
back full. The dispatch cron runs every 2 s; a run that is still going when the next tick
comes makes that tick skip the subscribers it still holds (``_claims``), so nothing is
delivered twice at once, and deliver to those it has handed back."""

CONCURRENT_AGGREGATES = 4
"""Aggregates (bookings, sessions) one subscriber's round delivers side by side on
PostgreSQL: handlers spend most of their time waiting for the database or a HIS, and one
aggregate's events keep their order."""

CONCURRENT_SUBSCRIBERS = 4
"""Rounds that run side by side on PostgreSQL (each holds a session for its read, then up
to ``CONCURRENT_AGGREGATES`` handler sessions: 4 × 5 of the pool's 40, beside the run's one
advisory-lock connection). Each group of subscribers advances on its own loop and queues for
one of these slots per round, prompt subscribers first. Subscribers are independent unless
one declares otherwise (``subscribe(..., after=...)``): in filing mode A the filing sender
must run after the HIS notifier has filed the patient with the booking, so the two form one
group whose rounds run in that order. On SQLite (one writer) the groups take their turns,
prompt ones first, then in the order they subscribed."""

ADVISORY_LOCK_CLASS = 0x6775  # "gu"
"""First key of the PostgreSQL advisory locks that make one dispatcher per subscriber."""

MARKING_LOCK_CLASS = 0x6776  # "gv"
"""First key of the PostgreSQL advisory lock held while a dispatcher marks rows dispatched."""

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


def event_values(
    topic: str, aggregate_id: str, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The outbox row of an event as the columns of a bulk ``INSERT``, for writers that add
    many events in one statement (``HoldCommits``); ``record_event`` is the one-row form."""
    return {
        "topic": topic,
        "aggregate_id": aggregate_id,
        "payload": msgspec.to_builtins(payload),
        "created_at": now,
    }


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
    batch: BatchHandler | None = None
    after: tuple[str, ...] = ()
    """Subscriptions whose round must end before this one's starts, in every round."""
    prompt: bool = False
    """A citizen waits on it (notifications): its rounds go first whenever rounds queue."""


_IN_PROCESS: dict[tuple[str, str], asyncio.Lock] = {}
"""(database, subscriber) → the lock of the dispatcher of this process delivering to it."""


@dataclass
class _Outcome:
    """What one round did, written in one transaction at its end."""

    retried: list[int] = field(default_factory=list)
    """Event ids from the retry list that went through this time."""
    parked: list[OutboxEvent] = field(default_factory=list)
    """New rows for the retry list (failed, or behind a failed row of their aggregate)."""
    failed: list[tuple[OutboxEvent, int, BaseException]] = field(default_factory=list)
    """Rows refused this round, with the attempts they had before."""


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


HELD_BACK_PAUSE_SECONDS = 0.05
"""A round that stopped before an event still being committed is tried again after this."""

READ_REUSE_SECONDS = 10.0
"""How long a read of the outbox serves the subscribers that reach its position after the one
that made it. Subscribers advance on their own loops, so the slower ones reach a position
seconds later (in a surge, the authority's rollups run behind the inbox notifier); past this
age they read again, so the reads kept stay a few seconds of the stream."""


class _Reads:
    """The outbox rows of one job run, read once per cursor position and decoded once.

    In a surge every subscriber that keeps up passes the same cursor positions, so one query
    (and one decoding of the payloads into immutable events shared by every handler) serves
    them all instead of one per subscriber. A read that came back short is topped up with what
    was written since (an event an earlier subscriber wrote reaches the later ones, as when
    each read its own). Reads are dropped once no subscriber of the run is still behind them,
    or after ``READ_REUSE_SECONDS``."""

    def __init__(self, limit: int, *, shared: bool, horizon: CommitHorizon | None) -> None:
        self.limit = limit
        self._shared = shared
        self._horizon = horizon
        self._held: set[str] = set()
        """Subscribers whose last read stopped before an id that may still commit."""
        self._by_position: dict[int, tuple[float, asyncio.Future[list[OutboxEvent]]]] = {}
        self._at: dict[str, int] = {}
        """Where each subscriber of the run reads next; ``done`` removes it."""

    async def after(
        self, session: AsyncSession, subscriber: str, position: int
    ) -> list[OutboxEvent]:
        """Up to ``limit`` events after ``position``, oldest first."""
        self._at[subscriber] = position
        self._held.discard(subscriber)
        if not self._shared:
            return await self._read(session, position, held_for=subscriber)
        self._forget_passed()
        found = self._by_position.get(position)
        if found is not None and time.monotonic() - found[0] < READ_REUSE_SECONDS:
            events = await asyncio.shield(found[1])
            if len(events) < self.limit:  # the end of the outbox then: anything written since?
                events = events + await self._read(
                    session,
                    events[-1].id if events else position,
                    self.limit - len(events),
                    held_for=subscriber,
                )
            return events
        future: asyncio.Future[list[OutboxEvent]] = asyncio.get_running_loop().create_future()
        self._by_position[position] = (time.monotonic(), future)
        try:
            events = await self._read(session, position, held_for=subscriber)
        except BaseException as exc:
            del self._by_position[position]  # the next subscriber at this cursor reads again
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        future.set_result(events)
        return events

    def done(self, subscriber: str) -> None:
        """``subscriber`` reads nothing more in this run."""
        self._at.pop(subscriber, None)
        self._held.discard(subscriber)
        self._forget_passed()

    def held(self, subscriber: str) -> bool:
        """Whether ``subscriber``'s last read stopped before an event that may still commit
        (more is there to deliver as soon as it has)."""
        return subscriber in self._held

    def _forget_passed(self) -> None:
        floor = min(self._at.values(), default=None)
        old = time.monotonic() - READ_REUSE_SECONDS
        for position, (read_at, future) in list(self._by_position.items()):
            if future.done() and (floor is None or position < floor or read_at < old):
                del self._by_position[position]

    async def _read(
        self, session: AsyncSession, position: int, limit: int | None = None, *, held_for: str
    ) -> list[OutboxEvent]:
        if self._horizon is not None:
            await self._horizon.before_read(session, position)
        # columns, not ORM rows: handlers only read them, and the identity map and the
        # instance state of an ORM row cost more than the event itself
        rows = await session.execute(
            select(
                OutboxRow.id,
                OutboxRow.topic,
                OutboxRow.aggregate_id,
                OutboxRow.payload,
                OutboxRow.created_at,
            )
            .where(OutboxRow.id > position)
            .order_by(OutboxRow.id)
            .limit(limit or self.limit)
        )
        events = [
            OutboxEvent(
                id=id_, topic=topic, aggregate_id=aggregate_id, payload=payload, created_at=at
            )
            for id_, topic, aggregate_id, payload, at in rows.all()
        ]
        if self._horizon is not None:
            readable = await self._horizon.readable(session, position, [e.id for e in events])
            if readable < len(events):
                self._held.add(held_for)
                del events[readable:]
        return events


@dataclass
class _Progress:
    """A subscriber's place during one job run, which holds it (nobody else moves it)."""

    position: int | None = None
    """The cursor; ``None`` until the run's first round reads it from the database."""
    parked: bool = True
    """Whether its retry list may hold events (read again each round while it may)."""


class _CursorWrites:
    """Cursor advances of rounds that parked and retried nothing, written together.

    Subscribers advance side by side, each on its own loop; a round that only moves its
    cursor joins the statement being assembled while the previous one is in flight, so a
    surge costs one ``UPDATE`` for many subscribers' rounds instead of one transaction each
    (12 % of the dispatcher's time before: bench/profiles/outbox3-drain-4-lockstep.txt).
    Each round still returns only once its cursor is written: what it delivered is not
    delivered again unless the process dies."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pending: dict[str, int] = {}
        self._next: asyncio.Future[None] | None = None
        self._writing = asyncio.Lock()

    async def advance(self, subscriber: str, position: int) -> None:
        self._pending[subscriber] = max(position, self._pending.get(subscriber, position))
        joined = self._next
        if joined is not None:  # a statement is being assembled: it carries this one too
            await asyncio.shield(joined)
            return
        mine = self._next = asyncio.get_running_loop().create_future()
        try:
            async with self._writing:  # while the previous statement runs, others join
                self._next = None
                batch, self._pending = self._pending, {}
                await self._write(batch)
        except BaseException as exc:
            if self._next is mine:
                self._next = None
            mine.set_exception(exc)
            mine.exception()  # retrieved: no warning when nobody joined
            raise
        mine.set_result(None)

    async def _write(self, positions: dict[str, int]) -> None:
        if not positions:
            return
        new = case(positions, value=OutboxCursorRow.subscriber)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxCursorRow)
                .where(OutboxCursorRow.subscriber.in_(list(positions)))
                .where(OutboxCursorRow.position < new)
                .values(position=new, updated_at=self._clock.now())
                .execution_options(synchronize_session=False)
            )


class _Gate:
    """At most ``size`` rounds at once (each holds database connections); when rounds queue,
    prompt subscribers' go first, then the others in the order they came."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[tuple[bool, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, prompt: bool) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (not prompt, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # given the slot as it was cancelled
                    self._hand_on()
                raise
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class _Claims:
    """The subscribers one job run delivers to: the process's lock of each, and on
    PostgreSQL its advisory lock on one connection; a group's are released when it is done."""

    def __init__(self) -> None:
        self.owned: frozenset[str] = frozenset()
        self.local: dict[str, asyncio.Lock] = {}
        self.connection: AsyncConnection | None = None
        self._held: set[str] | None = None
        self._serial = asyncio.Lock()  # one statement at a time on the lock connection

    async def release(self, names: Sequence[str]) -> None:
        """Hand ``names`` back: the server's locks first, so that the next dispatcher of this
        process that takes the local lock also finds the server's free."""
        try:
            if self.connection is not None:
                if self._held is None:
                    self._held = set(self.owned)
                freed = [n for n in names if n in self._held]
                if freed:
                    self._held.difference_update(freed)
                    async with self._serial:
                        await self.connection.execute(
                            text(
                                "SELECT pg_advisory_unlock(:kind, hashtext(n)) "
                                "FROM unnest(CAST(:names AS text[])) AS n"
                            ),
                            {"kind": ADVISORY_LOCK_CLASS, "names": freed},
                        )
                        await self.connection.commit()
        finally:
            for name in names:
                local = self.local.pop(name, None)
                if local is not None:
                    local.release()


class OutboxBacklog(msgspec.Struct, frozen=True):
    """What waits to be delivered, for the operators' metrics (``/metrics``)."""

    pending: int
    """Rows not yet dispatched."""
    lag_seconds: float
    """Age of the oldest row not yet dispatched (0 when none)."""
    behind: dict[str, int]
    """Per subscriber cursor: rows written after it."""


def delays_statement() -> Select[str, int, datetime | None]:
    """Per cursor: its name, its parked events, and the creation time of its oldest
    undelivered event (its first parked one, else the first row past its cursor)."""
    first_parked = (
        select(OutboxParkedRow.event_id)
        .where(OutboxParkedRow.subscriber == OutboxCursorRow.subscriber)
        .order_by(OutboxParkedRow.event_id)
        .limit(1)
        .correlate(OutboxCursorRow)
        .scalar_subquery()
    )
    unread = aliased(OutboxRow)  # not correlated with the outbox row read below
    first_unread = (
        select(unread.id)
        .where(unread.id > OutboxCursorRow.position)
        .order_by(unread.id)
        .limit(1)
        .correlate(OutboxCursorRow)
        .scalar_subquery()
    )
    oldest = (
        select(OutboxRow.created_at)
        .where(OutboxRow.id == func.coalesce(first_parked, first_unread))
        .correlate(OutboxCursorRow)
        .scalar_subquery()
    )
    count = (
        select(func.count())
        .select_from(OutboxParkedRow)
        .where(OutboxParkedRow.subscriber == OutboxCursorRow.subscriber)
        .correlate(OutboxCursorRow)
        .scalar_subquery()
    )
    return select(OutboxCursorRow.subscriber, count, oldest)


class SubscriberDelay(msgspec.Struct, frozen=True):
    """How far one subscriber's delivery is held up, for the operators' metrics."""

    parked: int
    """Events in its retry list (refused by it, or parked behind a refused one)."""
    oldest_undelivered_seconds: float
    """Age of the oldest event it has not taken: its oldest parked event, else the first row
    past its cursor (0 when it has everything)."""


class OutboxDispatcher:
    """Delivers outbox rows to each subscriber on its own cursor."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        self._checked: set[str] = set()
        self._cursor_writes = _CursorWrites(sessions, clock)
        self._marking = asyncio.Lock()
        self._horizon = CommitHorizon()
        self.concurrent_subscribers = CONCURRENT_SUBSCRIBERS
        """Rounds side by side on PostgreSQL (1: one subscriber after another)."""
        self.shared_reads = True
        """Subscribers at the same cursor share one read of the outbox per round."""

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

    async def subscriber_delays(self) -> dict[str, SubscriberDelay]:
        """Per cursor of the database, its parked events and the age of its oldest undelivered
        event: one statement, each part an index lookup (``outbox_parked``'s key starts with
        the subscriber, ``outbox``'s with the id), whatever the size of the tables."""
        now = self._clock.now()
        async with self._sessions() as session:
            rows = (await session.execute(delays_statement())).all()
        delays = {}
        for name, parked_count, created_at in rows:
            age = 0.0
            if created_at is not None:
                created = (
                    created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
                )
                age = max(0.0, (now - created).total_seconds())
            delays[str(name)] = SubscriberDelay(
                parked=int(parked_count or 0), oldest_undelivered_seconds=age
            )
        return delays

    def subscribe(
        self,
        topic_prefix: str,
        handler: Handler,
        *,
        name: str,
        starts_at: StartsAt | None = None,
        batch: BatchHandler | None = None,
        after: Sequence[str] = (),
        prompt: bool = False,
    ) -> str:
        """Call ``handler`` for every event whose topic starts with ``topic_prefix``.

        ``name`` is the subscriber's cursor in the database: keep it when the handler's code
        moves. ``starts_at`` declares a subscription new (see ``StartsAt``); without it the
        database must already know the name, unless it has no history at all. Once its cursor
        exists the declaration changes nothing and may stay. ``batch`` is the handler's
        entry point for runs of events (see ``BatchHandler``). ``after`` names subscriptions
        (already subscribed, so dependencies never form a cycle) whose round ends before this
        one's starts: subscribers are otherwise delivered side by side. ``prompt`` marks a
        subscriber a citizen waits on (the inbox notifier): when more rounds are ready than
        run at once, its rounds go first, so a surge that the other subscribers take longer
        to work through does not make notifications late. Returns the name.
        """
        if not name or len(name) > NAME_MAX_LENGTH:
            raise ValueError(f"an outbox subscription needs a name of 1 to {NAME_MAX_LENGTH} chars")
        if name in self.subscribers:
            raise ValueError(f"outbox subscription {name!r} is already taken")
        unknown = [n for n in after if n not in self.subscribers]
        if unknown:
            raise ValueError(f"outbox subscription {name!r} comes after unknown {unknown!r}")
        self._subscriptions.append(
            Subscription(name, topic_prefix, handler, starts_at, batch, tuple(after), prompt)
        )
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

    async def dispatch_pending(
        self, limit: int = BATCH_SIZE, budget_seconds: float = ROUND_BUDGET_SECONDS
    ) -> int:
        """Deliver what is pending to every subscriber; returns how many outbox rows became
        fully delivered. Subscriptions added since ``start`` are checked first.

        Each group of subscribers (one subscriber, or those tied by ``after``) advances on its
        own loop: rounds repeat while it still reads full batches, for at most
        ``budget_seconds``, so that one job run drains a release surge; a subscriber that is
        slow (a hospital system that hangs) holds up only its own group. A group hands its
        subscribers back as soon as it is done, so the next tick of the dispatch cron (every
        2 s, while this run may still wait on a slow group) delivers to them again.
        """
        if set(self.subscribers) - self._checked:
            await self.start()
        deadline = time.monotonic() + budget_seconds
        # on PostgreSQL ids can commit out of order (outbox_horizon.py); SQLite's one writer
        # makes them visible in order
        reads = _Reads(
            limit, shared=self.shared_reads, horizon=self._horizon if self._concurrent() else None
        )
        async with self._claims() as claims:
            groups = [g for g in self._groups() if any(s.name in claims.owned for s in g)]
            if not self._concurrent() or self.concurrent_subscribers <= 1:
                for group in groups:  # in the order they subscribed: dependencies first
                    await self._drain(group, claims, reads, deadline, None)
            else:
                gate = _Gate(self.concurrent_subscribers)
                outcomes = await asyncio.gather(
                    *(self._drain(g, claims, reads, deadline, gate) for g in groups),
                    return_exceptions=True,
                )
                for outcome in outcomes:  # every group has ended: now a failure may propagate
                    if isinstance(outcome, BaseException):
                        raise outcome
        return await self._mark_dispatched()

    def _groups(self) -> list[list[Subscription]]:
        """The subscriptions tied together by ``after`` (each group in subscription order);
        subscriptions that declare nothing are groups of one."""
        group_of: dict[str, list[Subscription]] = {}
        groups: list[list[Subscription]] = []
        for subscription in self._subscriptions:
            joined = [group_of[name] for name in subscription.after]
            mine: list[Subscription] = []
            for group in joined:
                if group is not mine and group in groups:
                    mine.extend(group)
                    groups.remove(group)
            mine.append(subscription)
            mine.sort(key=self._subscriptions.index)
            groups.append(mine)
            for member in mine:
                group_of[member.name] = mine
        # prompt groups first (on SQLite, where groups take turns); then as subscribed
        return sorted(
            groups,
            key=lambda g: (not any(s.prompt for s in g), self._subscriptions.index(g[0])),
        )

    async def _drain(
        self,
        group: list[Subscription],
        claims: _Claims,
        reads: _Reads,
        deadline: float,
        gate: _Gate | None,
    ) -> None:
        """One group's rounds until it reads no full batch or the run's time is up; then its
        subscribers are handed back (claims released) for the next job run."""
        progress: dict[str, _Progress] = {}
        try:
            while True:
                full = await self._group_round(group, claims.owned, reads, gate, progress)
                if time.monotonic() >= deadline:
                    return
                if not full:
                    if not any(reads.held(s.name) for s in group):
                        return
                    # an earlier id is still being committed: it is there in milliseconds
                    await asyncio.sleep(HELD_BACK_PAUSE_SECONDS)
        finally:
            for subscription in group:
                reads.done(subscription.name)
            await claims.release([s.name for s in group])

    async def _group_round(
        self,
        group: list[Subscription],
        owned: frozenset[str],
        reads: _Reads,
        gate: _Gate | None,
        progress: dict[str, _Progress],
    ) -> bool:
        """One round of each subscriber of a group, each once the subscriptions it comes
        ``after`` have ended theirs; True when one of them read a full batch.

        A subscriber whose dependency this dispatcher did not deliver to the end of its round
        (another worker holds it, or its round failed) waits for the next round: the order it
        declared holds across workers and failures too."""
        delivered: set[str] = set()
        full = False
        for subscription in group:
            if any(name not in delivered for name in subscription.after):
                continue
            if subscription.name not in owned:
                continue
            async with gate.slot(subscription.prompt) if gate else contextlib.nullcontext():
                outcome = await self._round(
                    subscription, reads, progress.setdefault(subscription.name, _Progress())
                )
            if outcome is not None:
                delivered.add(subscription.name)
                full = full or outcome
        return full

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

    async def _deliver(self, subscription: Subscription, row: OutboxEvent) -> BaseException | None:
        if not row.topic.startswith(subscription.prefix):
            return None
        try:
            await subscription.handler(row)
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

    def _concurrent(self) -> bool:
        bind = self._sessions.kw.get("bind")
        return bind is not None and bind.dialect.name == "postgresql"

    @contextlib.asynccontextmanager
    async def _claims(self) -> AsyncIterator[_Claims]:
        """The subscribers this dispatcher may deliver to in this job run.

        Several dispatchers may run at once (two job workers, the cron's next tick while a
        run still waits on a slow subscriber, an operator's ``guahao outbox dispatch``): each
        subscriber is delivered by one of them at a time, or a row would reach the handler
        twice at once. Within a process an asyncio lock per database and subscriber says so
        (the embedded SQLite default is one process); across processes on PostgreSQL a
        session-level advisory lock keyed by the subscriber's name, released by the server if
        the process dies. The locks are taken at the start of the run, every subscriber's in
        one statement on one connection (taken per round, they cost a connection and two round
        trips per subscriber and round: 8 % of a surge's delivery), and each group's are
        released as soon as that group is done. A dispatcher that finds a subscriber taken
        skips it for the run.
        """
        bind = self._sessions.kw.get("bind")
        where = bind.url.render_as_string(hide_password=True) if bind is not None else ""
        claims = _Claims()
        try:
            for subscription in self._subscriptions:
                local = _IN_PROCESS.setdefault((where, subscription.name), asyncio.Lock())
                if not local.locked():
                    await local.acquire()  # free: returns at once, nothing can take it meanwhile
                    claims.local[subscription.name] = local
            mine = list(claims.local)
            if not self._concurrent() or bind is None or not mine:
                claims.owned = frozenset(mine)
                yield claims
                return
            async with bind.connect() as connection:
                taken = [
                    str(name)
                    for name, ok in (
                        await connection.execute(
                            text(
                                "SELECT n, pg_try_advisory_lock(:kind, hashtext(n)) "
                                "FROM unnest(CAST(:names AS text[])) AS n"
                            ),
                            {"kind": ADVISORY_LOCK_CLASS, "names": mine},
                        )
                    ).all()
                    if ok
                ]
                await connection.commit()
                claims.owned = frozenset(taken)
                # another process delivers the rest: this one's later runs may try them again
                await claims.release([n for n in mine if n not in claims.owned])
                claims.connection = connection
                try:
                    yield claims
                finally:
                    await claims.release(list(claims.owned))
        finally:
            await claims.release(list(claims.local))

    async def _round(
        self, subscription: Subscription, reads: _Reads, progress: _Progress
    ) -> bool | None:
        """One batch for one subscriber; True when it read a full batch (more may wait), None
        when its cursor vanished (``forget`` while running).

        Rows are read, then delivered with no transaction open (handlers write through
        sessions of their own; on SQLite an open write transaction here would lock them
        out), then the outcome (cursor, retry list) is written in one transaction. A process
        that dies in between delivers the batch again: delivery is at least once.

        The cursor is read from the database at the run's first round only: the run holds
        the subscriber, so nobody else moves it meanwhile; so is the retry list, read again
        only while it may hold something.
        """
        async with self._sessions() as session:
            position = progress.position
            if position is None:
                position = await self._cursor(session, subscription)
                if position is None:
                    return None
            waiting: list[tuple[OutboxParkedRow, OutboxEvent]] = []
            if progress.parked:
                waiting = [
                    (parked, _event(row))
                    for parked, row in (
                        await session.execute(
                            select(OutboxParkedRow, OutboxRow)
                            .join(OutboxRow, OutboxRow.id == OutboxParkedRow.event_id)
                            .where(OutboxParkedRow.subscriber == subscription.name)
                            .order_by(OutboxParkedRow.event_id)
                        )
                    ).all()
                ]
            rows = await reads.after(session, subscription.name, position)
        outcome = await self._deliver_all(subscription, waiting, rows)
        last_read = rows[-1].id if rows else None
        if outcome.retried or outcome.parked or outcome.failed:
            await self._record(subscription, outcome, last_read)
        elif last_read is not None:
            await self._cursor_writes.advance(subscription.name, last_read)
        progress.position = position if last_read is None else last_read
        progress.parked = len(outcome.retried) < len(waiting) or bool(outcome.parked)
        return len(rows) == reads.limit

    async def _deliver_all(
        self,
        subscription: Subscription,
        waiting: list[tuple[OutboxParkedRow, OutboxEvent]],
        rows: list[OutboxEvent],
    ) -> _Outcome:
        now = self._clock.now()
        outcome = _Outcome()
        blocked: set[str] = set()
        # 1. the retry list, oldest first; one failure blocks the rest of its aggregate
        for parked, row in waiting:
            if parked.aggregate_id in blocked:
                continue
            if parked.next_attempt_at > now:
                blocked.add(parked.aggregate_id)
                continue
            exc = await self._deliver(subscription, row)
            if exc is None:
                outcome.retried.append(row.id)
            else:
                outcome.failed.append((row, parked.attempts, exc))
                blocked.add(parked.aggregate_id)
        # 2. new rows past the cursor: runs of deliverable rows go to the handler together
        run: list[OutboxEvent] = []
        for row in rows:
            if not row.topic.startswith(subscription.prefix):
                continue
            if row.aggregate_id in blocked:
                await self._flush(subscription, run, outcome, blocked)
                outcome.parked.append(row)
            else:
                run.append(row)
        await self._flush(subscription, run, outcome, blocked)
        return outcome

    async def _flush(
        self,
        subscription: Subscription,
        run: list[OutboxEvent],
        outcome: _Outcome,
        blocked: set[str],
    ) -> None:
        """Deliver a run of rows: to the subscription's batch entry point in one call if it has
        one (one transaction for many notifications, one recomputation per rollup key), one
        by one otherwise or when the batch fails, so a failure parks exactly its own row."""
        if not run:
            return
        batch = subscription.batch
        if (
            batch is not None
            and len(run) > 1
            and not blocked.intersection(r.aggregate_id for r in run)
        ):
            try:
                result = await batch(list(run))  # shared events, immutable
            except Exception as refused:  # find the culprit one by one (handlers are idempotent)
                log.info(
                    "outbox batch of %s failed (%s); delivering one by one",
                    subscription.name,
                    refused,
                )
            else:
                if isinstance(result, BatchFailures):
                    self._park_failures(subscription, run, result, outcome, blocked)
                if result is not False:
                    run.clear()
                    return
        groups: dict[str, list[OutboxEvent]] = {}
        for row in run:
            groups.setdefault(row.aggregate_id, []).append(row)
        run.clear()
        if self._concurrent():  # aggregates side by side, each in its own order
            gate = asyncio.Semaphore(CONCURRENT_AGGREGATES)
            await asyncio.gather(
                *(
                    self._one_by_one(subscription, g, outcome, blocked, gate)
                    for g in groups.values()
                )
            )
        else:
            for group in groups.values():
                await self._one_by_one(subscription, group, outcome, blocked)

    @staticmethod
    def _park_failures(
        subscription: Subscription,
        run: list[OutboxEvent],
        report: BatchFailures,
        outcome: _Outcome,
        blocked: set[str],
    ) -> None:
        """A batch's failed events park with their errors, each with the rest of its
        aggregate behind it; the others are done."""
        for row in run:
            if row.aggregate_id in blocked:
                outcome.parked.append(row)
                continue
            exc = report.failed.get(row.id)
            if exc is None:
                continue
            log.warning(
                "outbox event %s (%s) failed for %s: %s",
                row.id,
                row.topic,
                subscription.name,
                exc,
            )
            outcome.failed.append((row, 0, exc))
            outcome.parked.append(row)
            blocked.add(row.aggregate_id)

    async def _one_by_one(
        self,
        subscription: Subscription,
        rows: list[OutboxEvent],
        outcome: _Outcome,
        blocked: set[str],
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        """One aggregate's rows in order; the first refused one parks the rest behind it."""
        async with gate or contextlib.nullcontext():
            for row in rows:
                if row.aggregate_id in blocked:
                    outcome.parked.append(row)
                    continue
                exc = await self._deliver(subscription, row)
                if exc is not None:
                    outcome.failed.append((row, 0, exc))
                    outcome.parked.append(row)
                    blocked.add(row.aggregate_id)

    async def _record(
        self, subscription: Subscription, outcome: _Outcome, last_read: int | None
    ) -> None:
        now = self._clock.now()
        name = subscription.name
        async with self._sessions() as session, session.begin():
            if outcome.retried:
                await session.execute(
                    delete(OutboxParkedRow).where(
                        OutboxParkedRow.subscriber == name,
                        OutboxParkedRow.event_id.in_(outcome.retried),
                    )
                )
            if outcome.parked:
                session.add_all(
                    OutboxParkedRow(
                        subscriber=name,
                        event_id=row.id,
                        aggregate_id=row.aggregate_id,
                        attempts=0,
                        next_attempt_at=now,
                    )
                    for row in outcome.parked
                )
                await session.flush()
            for row, attempts, exc in outcome.failed:
                error = _describe(exc)
                await session.execute(
                    update(OutboxParkedRow)
                    .where(OutboxParkedRow.subscriber == name, OutboxParkedRow.event_id == row.id)
                    .values(
                        attempts=attempts + 1,
                        last_error=error,
                        next_attempt_at=now + retry_delay(attempts + 1),
                    )
                )
                await session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id)
                    .values(attempts=OutboxRow.attempts + 1, last_error=error)
                )
            if last_read is not None:
                await session.execute(
                    update(OutboxCursorRow)
                    .where(OutboxCursorRow.subscriber == name, OutboxCursorRow.position < last_read)
                    .values(position=last_read, updated_at=now)
                )

    async def _mark_dispatched(self) -> int:
        """One statement: every row at or below the lowest cursor that nobody has parked.

        One dispatcher at a time marks: runs overlap (the cron's next tick while a run waits
        on a slow subscriber, other job workers), and two such updates over the same rows,
        each locking them in its own order, deadlock. A run that finds another marking
        leaves the rows to it (or to the next run)."""
        if self._marking.locked():
            return 0
        async with self._marking:
            return await self._mark_dispatched_once()

    async def _mark_dispatched_once(self) -> int:
        now = self._clock.now()
        names = self.subscribers
        async with self._sessions() as session, session.begin():
            if self._concurrent() and not await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:kind, 0)"), {"kind": MARKING_LOCK_CLASS}
            ):
                return 0  # released with this transaction
            condition: list[ColumnElement[bool]] = [OutboxRow.dispatched_at.is_(None)]
            if names:
                floor, known = (
                    await session.execute(
                        select(func.min(OutboxCursorRow.position), func.count()).where(
                            OutboxCursorRow.subscriber.in_(names)
                        )
                    )
                ).one()
                if floor is None or known != len(names):
                    return 0
                condition += [
                    OutboxRow.id <= floor,
                    OutboxRow.id.not_in(
                        select(OutboxParkedRow.event_id).where(
                            OutboxParkedRow.subscriber.in_(names)
                        )
                    ),
                ]
            marked = await session.execute(
                update(OutboxRow)
                .where(*condition)
                .values(dispatched_at=now)
                # nothing in this session to refresh: without it, PostgreSQL sends back the
                # id of every row marked (20,000 in a surge) for the ORM to look up
                .execution_options(synchronize_session=False)
            )
            return int(marked.rowcount or 0)  # type: ignore[attr-defined]

    async def forget(self, subscriber: str) -> None:
        """Drop a retired subscriber's cursor and retry list (its events are then done)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(OutboxParkedRow).where(OutboxParkedRow.subscriber == subscriber)
            )
            await session.execute(
                delete(OutboxCursorRow).where(OutboxCursorRow.subscriber == subscriber)
            )

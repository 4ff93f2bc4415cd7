"""Group commit of granted holds: the records of concurrent grants of one process written in
one transaction.

At a release every grant writes its booking row and its ``booking.held`` event. Written alone,
each is a transaction of four round trips to PostgreSQL (``BEGIN``, two ``INSERT``s,
``COMMIT``), and on a busy machine every round trip is a context switch the request waits for
(bench/profiles/8-*). Here grants arriving while a transaction is in flight wait for the next
one, which takes them all in one ``INSERT`` per table: under load tens of grants share the
round trips, while a lone grant is written at once, as before.

Every guarantee of a grant written alone holds:

- ``record`` returns only after the transaction carrying its row committed, so a client told
  201 has a durable booking;
- a batch refused by a constraint (a repeated idempotency key) is written again row by row, so
  only the row that breaks the rule is refused, with the ``IntegrityError`` it would have had
  alone, and the others are recorded;
- any other failure (the database away) is raised to every caller of the batch, and each gives
  its unit back in Redis as it did when its own transaction failed.

Once a transaction committed, the pool is asked in one call whether it still knows the holds of
the batch (``Inventory.holds_all``: the survival check each grant used to make alone, a
seventh of a grant's CPU, bench/profiles/grant4-*; made alone now only for a hold the batch
did not vouch for, ``HoldGrants._hold_survived``). ``record`` tells its caller whether
the pool said so; a hold it did not vouch for (gone, fenced, not loaded, the pool away) is
checked by the caller alone, as before, so the batch only ever saves the checks that pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from guahao.platform.persistence.outbox import event_values
from guahao.platform.persistence.recordset_inserts import RecordsetInsert
from guahao.platform.persistence.tables import BookingRow, OutboxRow
from guahao.platform.services.runtime import Ports

__all__ = ["MAX_BATCH", "HoldCommits"]

log = logging.getLogger(__name__)

MAX_BATCH = 200
"""The most grants one transaction carries: a release's burst is split into transactions of
this size, so one statement's parameters stay far below every driver's limits."""

Check = tuple[str, str, int]
"""(slot id, hold id, the grant's now in ms): a hold the pool is asked about after the commit."""

HELD_TOPIC = "booking.held"
BOOKINGS = cast("Table", BookingRow.__table__)
OUTBOX = cast("Table", OutboxRow.__table__)


@dataclass(slots=True)
class _Waiting:
    """One grant's record and the one future its request awaits: the commit and the pool's
    survival check after it answer together, so a grant suspends once for both, not once
    for each (bench/profiles/grant6-*)."""

    booking: dict[str, Any]
    event: dict[str, Any]
    answered: asyncio.Future[bool] = field(repr=False)
    """Whether the pool vouched for the committed hold; the database's error if the row
    was not committed."""
    check: Check | None = None
    """(slot id, hold id, the grant's now in ms) for the pool's survival check, or None."""


class HoldCommits:
    """Writes granted holds' records, coalescing the concurrent ones (see the module docstring).

    One per process (per ``BookingService``); it keeps no task alive while idle.
    """

    def __init__(self, ports: Ports, *, most: int = MAX_BATCH) -> None:
        self._p = ports
        self._most = most
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None
        """PostgreSQL: the writer's connection while batches follow each other."""
        self._asking: set[asyncio.Task[None]] = set()  # survival checks in flight
        self._statements: dict[tuple[tuple[str, ...], tuple[str, ...]], RecordsetInsert] = {}
        self.transactions = 0
        """Transactions committed or tried (for tests and the bench: grants per transaction)."""

    async def record(
        self,
        booking: dict[str, Any],
        payload: dict[str, Any],
        now: datetime,
        *,
        check: Check | None = None,
    ) -> bool:
        """Write a granted hold's booking row (``booking``: its columns) and its
        ``booking.held`` event; returns once both are committed, with whether the pool
        still knows the hold ``check`` names (``(slot_id, hold_id, now_ms)``, asked with the
        batch's others after the commit). False says only that the pool did not vouch for
        it: the caller asks alone.

        Raises ``IntegrityError`` when this row breaks a constraint, or the database's error
        when the transaction could not be written.
        """
        return await self._queued(booking, payload, now, check)

    async def record_all(
        self, grants: Sequence[tuple[dict[str, Any], dict[str, Any], datetime, Check | None]]
    ) -> list[bool | Exception]:
        """``record`` for each of a loop turn's grants (``(booking, payload, now, check)``),
        awaited once for them all: each its answer or its own error, in order."""
        answers = [self._queued(*grant) for grant in grants]
        for answer in answers:  # settled in the order queued: nearly always one wait
            if not answer.done():
                await asyncio.wait([answer])
        return [_outcome(answer) for answer in answers]

    def _queued(
        self,
        booking: dict[str, Any],
        payload: dict[str, Any],
        now: datetime,
        check: Check | None,
    ) -> asyncio.Future[bool]:
        waiting = _Waiting(
            booking,
            event_values(HELD_TOPIC, booking["id"], payload, now),
            asyncio.get_running_loop().create_future(),
            check,
        )
        self._queue.append(waiting)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queue(), name="hold-commits")
        return waiting.answered

    async def _write_queue(self) -> None:
        """Write batches until nothing waits. Requests arriving during a transaction are
        taken by the next one; the task ends when the queue is empty, in the same step
        that checks it, so no request is left behind."""
        try:
            while self._queue:
                batch = _alike(self._queue[: self._most])
                del self._queue[: len(batch)]
                await self._write_batch(batch)
        except BaseException as exc:  # cancelled with the process: nobody may wait forever
            for waiting in self._queue:
                _settle(waiting, exc)
            self._queue.clear()
            raise
        finally:
            self._writer = None
            connection, self._connection = self._connection, None
            if connection is not None:
                with contextlib.suppress(Exception):  # back to the pool, or dropped by it
                    await connection.close()

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        try:
            await self._insert(batch)
        except IntegrityError as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            # One row broke a rule: each alone, so only that one is refused.
            for waiting in batch:
                try:
                    await self._insert([waiting])
                except Exception as alone:
                    _settle(waiting, alone)
                else:
                    self._committed([waiting])
        except BaseException as exc:
            for waiting in batch:
                _settle(waiting, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._committed(batch)

    def _committed(self, committed: list[_Waiting]) -> None:
        """Answer the committed grants that asked for no check, and ask the pool about the
        others' holds in the background (the next transaction does not wait for it)."""
        asked = []
        for waiting in committed:
            if waiting.check is None:
                _settle(waiting, False)
            else:
                asked.append(waiting)
        if asked:
            task = asyncio.create_task(self._survival(asked), name="hold-commits-survival")
            self._asking.add(task)
            task.add_done_callback(self._asking.discard)

    async def _survival(self, asked: list[_Waiting]) -> None:
        found: dict[str, bool] = {}
        try:
            found = await self._p.inventory.holds_all([w.check for w in asked if w.check])
        except Exception as exc:  # the pool could not be asked: each grant asks alone
            log.info("the survival check of %d holds failed: %r", len(asked), exc)
        finally:  # answered even when cancelled: nobody may wait forever
            for waiting in asked:
                assert waiting.check is not None
                _settle(waiting, found.get(waiting.check[1], False))

    async def _insert(self, batch: list[_Waiting]) -> None:
        self.transactions += 1
        engine = self._p.sessions.kw.get("bind")
        if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
            # Both tables in one statement, its own transaction (nothing here begins one:
            # the statement goes to asyncpg directly): one round trip. The connection is kept
            # while batches follow each other (``_write_queue`` gives it back when the queue
            # runs dry): a checkout and its return cost 55-90 µs of client CPU a batch
            # (bench/group_commit_cost.py, ``kept`` against ``driver``). One the statement
            # found broken was invalidated and is replaced by the next use.
            if self._connection is None:
                self._connection = await engine.connect()
            statement = self._statement(engine.dialect, batch[0])
            await statement.execute(
                self._connection, [w.booking for w in batch], [w.event for w in batch]
            )
            return
        async with self._p.sessions() as session, session.begin():
            # Core inserts of the tables: the ORM's bulk path per row cost more than the
            # statement (bench/profiles/surge-grant2-*)
            connection = await session.connection()
            await connection.execute(insert(BOOKINGS), [w.booking for w in batch])
            await connection.execute(insert(OUTBOX), [w.event for w in batch])

    def _statement(self, dialect: Dialect, first: _Waiting) -> RecordsetInsert:
        """The statement for rows carrying ``first``'s columns (a batch's rows all do, see
        ``_alike``), made once per set of columns."""
        columns = (tuple(first.booking), tuple(first.event))
        statement = self._statements.get(columns)
        if statement is None:
            statement = RecordsetInsert(dialect, (BOOKINGS, columns[0]), (OUTBOX, columns[1]))
            self._statements[columns] = statement
        return statement


def _alike(waiting: list[_Waiting]) -> list[_Waiting]:
    """The longest run of ``waiting`` from its first whose rows carry the first's columns
    (of both tables): one statement's rows. A row with other columns starts the next batch,
    so a statement never meets a row it lacks a column for, nor one whose extra column it
    would drop (refused as ``MissingColumnError`` by ``RecordsetInsert.parameters``; Core's
    "a value is required", or a column left out, in ``executemany``)."""
    booking, event = waiting[0].booking.keys(), waiting[0].event.keys()
    for n, later in enumerate(waiting):
        if later.booking.keys() != booking or later.event.keys() != event:
            return waiting[:n]
    return waiting


def _settle(waiting: _Waiting, outcome: BaseException | bool) -> None:
    """Answer the waiting request (committed: whether the pool vouched for its hold),
    unless it went away (its client disconnected)."""
    answered = waiting.answered
    if answered.done():
        return
    if isinstance(outcome, bool):
        answered.set_result(outcome)
    elif isinstance(outcome, Exception):
        answered.set_exception(outcome)
    else:  # cancelled before its transaction ended: whether it committed is unknown
        answered.cancel()


def _outcome(answer: asyncio.Future[bool]) -> bool | Exception:
    """A settled record's answer, or its error (a cancellation is raised)."""
    failed = answer.exception()
    if failed is None:
        return answer.result()
    if isinstance(failed, Exception):
        return failed
    raise failed

"""Client CPU of a group commit of granted holds, by way of writing it (issue 15).

Not a test. ``HoldCommits`` writes a batch of granted holds (a booking row and a
``booking.held`` event each); this times that write alone, in one process against a
throwaway PostgreSQL (``infra/local_postgres.py``), for batches of ``--rows``, in turn:

- ``core``: ``BEGIN``, Core's ``insert`` of each table with ``executemany``, ``COMMIT`` (main's
  way before branch grant5);
- ``unnest``: both tables in one ``INSERT ... SELECT FROM unnest(...)`` statement on an
  autocommit connection of a session (``UnnestInsert``, branch grant5's way);
- ``driver``: the same statement sent by asyncpg itself on a connection of the engine, without
  SQLAlchemy's session and cursor around it (``UnnestInsert.execute``), a checkout per batch;
- ``kept``: the same on one connection kept from batch to batch (what ``HoldCommits`` does
  since branch grant6 while batches follow each other);
- ``recordset``: as ``kept``, each table's rows one JSON document parsed by PostgreSQL
  (``RecordsetInsert``, ``json_to_recordset``: what ``HoldCommits`` sends since branch commit3).

The process's CPU time and the wall time are divided by the rows written. The tables are copies
of ``bookings`` and ``outbox`` without their foreign keys, so no accounts or slots are seeded.

    .venv/bin/python bench/group_commit_cost.py --rows 4 32 128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import MetaData, insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.work_dirs import tidy
from guahao.platform.persistence.database import (
    create_engine,
    session_factory,
    upgrade_async,
)
from guahao.platform.persistence.outbox import event_values
from guahao.platform.persistence.recordset_inserts import RecordsetInsert
from guahao.platform.persistence.unnest_inserts import UnnestInsert
from guahao.platform.services.hold_commits import BOOKINGS, OUTBOX
from infra import local_postgres

Batch = list[tuple[dict[str, Any], dict[str, Any]]]
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def _batch(rows: int) -> Batch:
    """Rows shaped as ``grant_hold`` records them."""
    now = datetime.now(UTC)
    out = []
    for _ in range(rows):
        booking_id = uuid.uuid4().hex
        booking = {
            "id": booking_id,
            "account_id": uuid.uuid4().hex,
            "slot_id": "s" * 32,
            "session_id": "x" * 32,
            "status": "held",
            "idempotency_key": booking_id,
            "fee_cents": 500,
            "hold_expires_at": now + timedelta(minutes=10),
            "created_at": now,
            "updated_at": now,
            "ip_hash": "a" * 64,
            "device_hash": "b" * 64,
        }
        payload = {  # event_payload's keys
            "booking_id": booking_id,
            "account_id": booking["account_id"],
            "slot_id": booking["slot_id"],
            "session_id": booking["session_id"],
            "patient_id": None,
            "status": "held",
            "end_reason": None,
        }
        out.append((booking, event_values("booking.held", booking_id, payload, now)))
    return out


async def _measure(url: str, sizes: list[int], repeats: int, only: list[str]) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    copies = MetaData()
    bookings = BOOKINGS.to_metadata(copies, name="bench_bookings")
    outbox = OUTBOX.to_metadata(copies, name="bench_outbox")
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE bench_bookings (LIKE bookings INCLUDING ALL)"
        )
        await connection.exec_driver_sql("CREATE TABLE bench_outbox (LIKE outbox INCLUDING ALL)")
    first = _batch(1)[0]
    statement = UnnestInsert(engine.dialect, (bookings, tuple(first[0])), (outbox, tuple(first[1])))
    documents = RecordsetInsert(
        engine.dialect, (bookings, tuple(first[0])), (outbox, tuple(first[1]))
    )

    def parameters(batch: Batch) -> tuple[Any, ...]:
        return statement.parameters([b for b, _ in batch], [e for _, e in batch])

    async def core(batch: Batch) -> None:
        async with sessions() as session, session.begin():
            connection = await session.connection()
            await connection.execute(insert(bookings), [b for b, _ in batch])
            await connection.execute(insert(outbox), [e for _, e in batch])

    async def unnest(batch: Batch) -> None:
        async with sessions() as session:
            connection = await session.connection(execution_options=AUTOCOMMIT)
            await connection.exec_driver_sql(statement.sql, parameters(batch))

    async def driver(batch: Batch) -> None:
        async with engine.connect() as connection:
            await statement.execute(connection, [b for b, _ in batch], [e for _, e in batch])

    kept_connection = await engine.connect()

    async def kept(batch: Batch) -> None:
        await statement.execute(kept_connection, [b for b, _ in batch], [e for _, e in batch])

    async def recordset(batch: Batch) -> None:
        await documents.execute(kept_connection, [b for b, _ in batch], [e for _, e in batch])

    ways: dict[str, Callable[[Batch], Awaitable[None]]] = {
        "core": core,
        "unnest": unnest,
        "driver": driver,
        "kept": kept,
        "recordset": recordset,
    }
    print("| rows a batch | way | CPU µs a row | wall µs a row | ms a batch |")
    print("| --- | --- | --- | --- | --- |")
    for rows in sizes:
        for _ in range(repeats):
            for name, write in ways.items():
                if only and name not in only:
                    continue
                batches = [_batch(rows) for _ in range(200)]
                for batch in batches[:20]:  # connections, prepared statements
                    await write(batch)
                cpu, wall = time.process_time(), time.perf_counter()
                for batch in batches[20:]:
                    await write(batch)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                written = 180 * rows
                print(
                    f"| {rows} | {name} | {cpu * 1e6 / written:.1f} | "
                    f"{wall * 1e6 / written:.1f} | {wall * 1e3 / 180:.2f} |",
                    flush=True,
                )
    await kept_connection.close()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 32, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ways", nargs="+", default=[], help="only these ways (all by default)")
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="guahao-group-commit-")
    url = local_postgres.start(directory)
    try:
        uvloop.run(_measure(url, options.rows, options.repeats, options.ways))
    finally:
        local_postgres.stop(directory)
        tidy(directory)


if __name__ == "__main__":
    main()

"""What a Prometheus scrape costs PostgreSQL for the parked-event gauges, on a large outbox.

``/metrics`` reads, per subscriber, the events in its retry list and the age of its oldest
undelivered event (``OutboxDispatcher.subscriber_delays``: one statement, an index lookup per
part). This script fills a database with ``--rows`` outbox rows, ``--subscribers`` cursors
(some behind) and ``--parked`` parked events each for two of them, then times, side by side
in the same run:

- ``delays``: the new statement (what a scrape costs when its 5 s cache has run out);
- ``backlog``: the scrape's existing outbox reads (``OutboxDispatcher.backlog``), the
  baseline a scrape already paid before;
- ``cursors``: ``guahao outbox cursors`` (a count per cursor), the only way to see parked
  events before, for scale.

It also prints PostgreSQL's plan of the statement (every part an index scan).

    .venv/bin/python bench/parked_metrics.py --rows 500000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from guahao.platform.clock import ManualClock  # noqa: E402
from guahao.platform.persistence.connector_tables import (  # noqa: E402
    OutboxCursorRow,
    OutboxParkedRow,
)
from guahao.platform.persistence.database import (  # noqa: E402
    create_engine,
    session_factory,
    upgrade_async,
)
from guahao.platform.persistence.outbox import OutboxDispatcher, delays_statement  # noqa: E402
from guahao.platform.persistence.tables import OutboxRow  # noqa: E402
from infra import local_postgres  # noqa: E402
from tests.fixtures.platforms import START  # noqa: E402

BATCH = 10_000


async def fill(database_url: str, args: argparse.Namespace) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for start in range(0, args.rows, BATCH):
                await connection.execute(
                    insert(OutboxRow),
                    [
                        {
                            "topic": "booking.held",
                            "aggregate_id": f"b{i % 50_000}",
                            "payload": {"n": i},
                            "created_at": START + timedelta(milliseconds=i),
                        }
                        for i in range(start, min(start + BATCH, args.rows))
                    ],
                )
            await connection.execute(
                insert(OutboxCursorRow),
                [
                    {
                        "subscriber": f"subscriber-{s}",
                        "position": args.rows - (s * 1_000 if s % 4 == 0 else 0),
                        "updated_at": START,
                    }
                    for s in range(args.subscribers)
                ],
            )
            for s in (1, 2):
                await connection.execute(
                    insert(OutboxParkedRow),
                    [
                        {
                            "subscriber": f"subscriber-{s}",
                            "event_id": 1_000 + s * 100_000 + i,
                            "aggregate_id": "b1",
                            "attempts": 1,
                            "next_attempt_at": START,
                        }
                        for i in range(args.parked)
                    ],
                )
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


async def timed(read: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, float]:
    """Median and p95 in milliseconds."""
    await read()  # warm the pool and the plan
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await read()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


async def measure(database_url: str, args: argparse.Namespace) -> None:
    engine = create_engine(database_url)
    dispatcher = OutboxDispatcher(session_factory(engine), ManualClock(START))
    try:
        delays = await dispatcher.subscriber_delays()
        assert delays["subscriber-1"].parked == args.parked, delays["subscriber-1"]
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        for name, read in (
            ("delays", dispatcher.subscriber_delays),
            ("backlog", dispatcher.backlog),
            ("cursors", dispatcher.cursors),
        ):
            median, p95 = await timed(read, args.repeats)
            print(f"{name:<8} median {median:8.2f} ms   p95 {p95:8.2f} ms")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        async with engine.connect() as connection:
            statement = _delays_statement()
            plan = await connection.execute(text("EXPLAIN ANALYZE " + statement))
            print("\n".join(row[0] for row in plan))
    finally:
        await engine.dispose()


def _delays_statement() -> str:
    """The statement ``subscriber_delays`` sends, its limits inlined for EXPLAIN."""
    compiled = delays_statement().compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--subscribers", type=int, default=16)
    parser.add_argument("--parked", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--dir", default="/tmp/guahao-parked-metrics-bench")
    args = parser.parse_args()
    cluster = Path(args.dir)
    local_postgres.start(cluster)
    try:
        database_url = local_postgres.createdb(cluster, f"parked_{os.getpid()}")
        asyncio.run(upgrade_async(database_url))
        asyncio.run(fill(database_url, args))
        asyncio.run(measure(database_url, args))
    finally:
        local_postgres.stop(cluster)


if __name__ == "__main__":
    main()

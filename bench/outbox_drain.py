"""The outbox after a release surge: how fast every subscriber gets the events, on PostgreSQL.

A release writes thousands of events (held, patient chosen, awaiting payment, confirmed …)
in seconds; every subscriber (inbox notifications, search, strikes, suspicion, the waitlist,
offers, filings, the authority's rollups, live availability, the hospitals' HIS notifiers)
must receive them soon enough that a citizen's notification follows within seconds.

Two measurements on a real platform (PostgreSQL from ``infra/local_postgres.py``, a real
redis-server, every subscription the platform deploys):

1. **drain**: ``--bookings`` citizens book and pay through the real booking service with
   delivery stopped (``produce`` events/s is how fast the platform wrote them); copies of
   those events then top the backlog up to ``--surge`` rows (a release's backlog from several
   workers; a copy is a new event about the same booking, so idempotent subscribers find
   some of their work done); then the dispatcher delivers the whole backlog (``drain``
   events/s).
2. **lag**: copies written at ``--rate`` events/s for ``--seconds`` while the dispatch job
   runs as deployed (a run started every 2 s, whether or not the last one has ended); per
   batch of events, the time from its commit to its delivery to the inbox notifier, which
   writes the citizen's notification row (p50, p99, max; its cursor is looked at every
   0.1 s). Target: max ≤ 10 s at 2,000 events/s.

``--baseline`` runs everything twice in one process, each on a database of its own: first as
delivery was before issue 13's work (subscribers one after another, a read of the outbox per
subscriber, no batch entry points for the suspicion detector, visit reminders and filings), then as
it is now, and prints both side by side.

    .venv/bin/python bench/outbox_drain.py --baseline --bookings 1000 --surge 20000

JSON goes to ``bench/results/outbox_drain.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from guahao.bootstrap import Platform, open_platform  # noqa: E402
from guahao.platform.clock import ManualClock  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.persistence.connector_tables import OutboxCursorRow  # noqa: E402
from guahao.platform.persistence.tables import OutboxRow  # noqa: E402
from infra import local_postgres  # noqa: E402
from tests.fixtures.platforms import (  # noqa: E402
    START,
    bulk_accounts,
    clinic,
    confirmed_booking,
    settings_for,
)
from tests.fixtures.platforms import publish_clinic as publish  # noqa: E402

NOTIFIER = "guahao.platform.services.notifications.InboxNotifier:"
DISPATCH_EVERY_SECONDS = 2.0
"""As deployed: the ``dispatch_outbox`` cron runs every 2 s (guahao/bootstrap.py)."""


NEW_BATCH_ENTRY_POINTS = (
    "guahao.platform.services.suspicion.SuspicionDetector:booking.",
    "visit-reminders:schedule",
    "filings",
)
"""Subscriptions given a batch entry point by issue 13 (taken away again for ``--baseline``)."""


def as_before(platform: Platform) -> None:
    """Delivery as it was before issue 13's work, selectable here only: subscribers one after
    another, one read of the outbox per subscriber, the old one-event entry points."""
    dispatcher = platform.dispatcher
    dispatcher.concurrent_subscribers = 1
    dispatcher.shared_reads = False
    dispatcher._subscriptions = [  # the bench's own before/after switch
        replace(s, batch=None) if s.name in NEW_BATCH_ENTRY_POINTS else s
        for s in dispatcher._subscriptions
    ]


@dataclass
class Figures:
    mode: str
    bookings: int
    events: int
    surge_events: int
    produce_seconds: float
    produce_events_per_second: float
    drain_seconds: float
    drain_events_per_second: float
    drain_over_produce: float
    lag_rate: float
    lag_events: int
    lag_written_per_second: float
    lag_p50_seconds: float
    lag_p99_seconds: float
    lag_max_seconds: float
    subscribers: int


async def _pending(platform: Platform) -> int:
    return (await platform.dispatcher.backlog()).pending


async def produce(platform: Platform, bookings: int) -> tuple[int, float]:
    """Book and pay ``bookings`` units through the real service; returns (events, seconds)."""
    per_segment = bookings // 8 + 1  # a morning of eight 30-minute segments
    slots = await publish(platform, clinic(units=per_segment))
    await platform.dispatcher.dispatch_pending()  # the publication's own events
    while await _pending(platform):
        await platform.dispatcher.dispatch_pending()
    async with platform.ports.sessions() as session:
        first = int(await session.scalar(select(func.coalesce(func.max(OutboxRow.id), 0))) or 0)
    accounts = await bulk_accounts(platform, bookings)
    day = [s for s in slots[:8]]
    started = time.perf_counter()
    for chunk in range(0, bookings, 64):
        await asyncio.gather(
            *(
                confirmed_booking(platform, day[i % len(day)], account_id=accounts[i])
                for i in range(chunk, min(chunk + 64, bookings))
            )
        )
    seconds = time.perf_counter() - started
    async with platform.ports.sessions() as session:
        last = int(await session.scalar(select(func.max(OutboxRow.id))) or 0)
    return last - first, seconds


async def top_up(platform: Platform, produced: int, surge: int) -> int:
    """Copies of the produced events until ``surge`` rows wait; returns the backlog."""
    async with platform.ports.sessions() as session:
        templates = [
            {"topic": r.topic, "aggregate_id": r.aggregate_id, "payload": r.payload}
            for r in (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.dispatched_at.is_(None))
                    .order_by(OutboxRow.id)
                )
            ).all()
        ]
    missing = max(0, surge - produced)
    for start in range(0, missing, 2000):
        rows = [
            templates[i % len(templates)]
            | {"created_at": platform.ports.clock.now(), "attempts": 0}
            for i in range(start, min(start + 2000, missing))
        ]
        async with platform.ports.sessions() as session, session.begin():
            await session.execute(insert(OutboxRow), rows)
    return await _pending(platform)


async def drain(platform: Platform) -> float:
    started = time.perf_counter()
    while await _pending(platform):
        await platform.dispatcher.dispatch_pending()
    return time.perf_counter() - started


async def _position(platform: Platform) -> int:
    async with platform.ports.sessions() as session:
        return int(
            await session.scalar(
                select(OutboxCursorRow.position).where(OutboxCursorRow.subscriber == NOTIFIER)
            )
            or 0
        )


async def lag(platform: Platform, rate: float, seconds: float) -> tuple[list[float], float]:
    """Write copies of the surge's events at ``rate``/s while dispatch runs every 2 s;
    returns each event's commit-to-delivery time (inbox notifier) and the rate achieved."""
    async with platform.ports.sessions() as session:
        templates = [
            {"topic": r.topic, "aggregate_id": r.aggregate_id, "payload": r.payload}
            for r in (await session.scalars(select(OutboxRow).order_by(OutboxRow.id))).all()
        ]
    delivered: list[tuple[int, float]] = []  # (the inbox notifier's cursor, when seen)
    stop, drained = asyncio.Event(), asyncio.Event()

    async def dispatcher() -> None:
        # as deployed: the cron starts a job run every 2 s whether or not the last one has
        # ended (the job worker runs several at once); a run skips the subscribers that an
        # earlier run still holds
        runs: set[asyncio.Task[int]] = set()
        while not (stop.is_set() and not await _pending(platform)):
            run = asyncio.create_task(platform.dispatcher.dispatch_pending())
            runs.add(run)
            run.add_done_callback(runs.discard)
            await asyncio.sleep(DISPATCH_EVERY_SECONDS)
        await asyncio.gather(*runs)
        drained.set()

    async def watcher() -> None:
        # the inbox notifier's cursor, every 0.1 s: when each batch reached it
        while not drained.is_set():
            delivered.append((await _position(platform), time.time()))
            await asyncio.sleep(0.1)
        delivered.append((await _position(platform), time.time()))

    # the writer is a process of its own, as the app workers that write events are: in this
    # one it would compete with the dispatcher for the event loop and fall behind the rate
    with tempfile.NamedTemporaryFile(prefix="guahao-outbox-writes-", suffix=".json") as out:
        writer = multiprocessing.get_context("spawn").Process(
            target=write_stream,
            args=(platform.settings.database_url, templates, rate, seconds, out.name),
        )
        writer.start()

        async def writer_done() -> None:
            await asyncio.to_thread(writer.join)
            stop.set()

        await asyncio.gather(writer_done(), dispatcher(), watcher())
        stream = json.loads(await asyncio.to_thread(Path(out.name).read_text))
    lags = []
    for last_id, committed in stream["written"]:
        reached = next(t for position, t in delivered if position >= last_id)
        lags.append(reached - committed)
    return lags, float(stream["achieved"])


def write_stream(
    database_url: str, templates: list[dict[str, Any]], rate: float, seconds: float, out: str
) -> None:
    """The lag run's writer, in a process of its own: copies of ``templates`` at ``rate``
    events/s for ``seconds``, in batches every 50 ms; writes each batch's last id and commit
    time (wall clock, shared with the dispatcher's process) to ``out``."""
    stream = asyncio.run(_write_stream(database_url, templates, rate, seconds))
    Path(out).write_text(json.dumps(stream))


async def _write_stream(
    database_url: str, templates: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    engine = create_async_engine(database_url)
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    written: list[tuple[int, float]] = []
    started = time.time()
    n = 0
    try:
        async with engine.connect() as connection:
            while time.time() - started < seconds:
                rows = [
                    templates[(n + i) % len(templates)] | {"created_at": START, "attempts": 0}
                    for i in range(per_tick)
                ]
                n += per_tick
                ids = (
                    await connection.execute(insert(OutboxRow).returning(OutboxRow.id), rows)
                ).scalars()
                last = max(ids)
                await connection.commit()
                written.append((last, time.time()))
                next_at = started + (n / per_tick) * tick
                await asyncio.sleep(max(0.0, next_at - time.time()))
    finally:
        await engine.dispose()
    return {"written": written, "achieved": n / max(1e-9, written[-1][1] - started)}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, database_url: str, redis_url: str, mode: str) -> Figures:
    with tempfile.TemporaryDirectory(prefix="guahao-outbox-bench-") as data:
        async with open_platform(
            settings_for(Path(data), database_url, redis_url), clock=ManualClock(START)
        ) as platform:
            if mode == "before":
                as_before(platform)
            say(f"{mode}: producing {args.bookings} bookings")
            events, produce_seconds = await produce(platform, args.bookings)
            surge = await top_up(platform, events, args.surge)
            say(f"produced {events} events in {produce_seconds:.1f} s; draining {surge}")
            drain_seconds = await drain(platform)
            say(f"drained in {drain_seconds:.1f} s; lag run at {args.rate}/s")
            lags, achieved = await lag(platform, args.rate, args.seconds)
            subscribers = len(platform.dispatcher.subscribers)
    lags.sort()
    return Figures(
        mode=mode,
        bookings=args.bookings,
        events=events,
        surge_events=surge,
        produce_seconds=round(produce_seconds, 3),
        produce_events_per_second=round(events / produce_seconds, 1),
        drain_seconds=round(drain_seconds, 3),
        drain_events_per_second=round(surge / drain_seconds, 1),
        drain_over_produce=round((surge / drain_seconds) / (events / produce_seconds), 2),
        lag_rate=args.rate,
        lag_events=round(achieved * args.seconds),
        lag_written_per_second=round(achieved, 1),
        lag_p50_seconds=round(statistics.median(lags), 3),
        lag_p99_seconds=round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3),
        lag_max_seconds=round(lags[-1], 3),
        subscribers=subscribers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--surge", type=int, default=20000, help="backlog the drain starts from")
    parser.add_argument(
        "--baseline", action="store_true", help="also run delivery as before, in the same run"
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s in the lag run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the lag run")
    parser.add_argument("--dir", default="/tmp/guahao-outbox-bench")
    args = parser.parse_args()
    cluster = Path(args.dir)
    local_postgres.start(cluster)
    results: list[Figures] = []
    try:
        with EmbeddedRedis() as server:
            for mode in ("before", "after") if args.baseline else ("after",):
                database_url = local_postgres.createdb(cluster, f"outbox_{mode}_{os.getpid()}")
                asyncio.run(_flush(server.url))
                results.append(asyncio.run(run(args, database_url, server.url, mode)))
    finally:
        local_postgres.stop(cluster)
    print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine, shared)")
    rows = [asdict(f) for f in results]
    width = max(len(k) for k in rows[0])
    for key in rows[0]:
        print(f"{key:<{width}}  " + "  ".join(f"{r[key]!s:>12}" for r in rows))
    out = ROOT / "bench" / "results" / "outbox_drain.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "at": time.time()}, indent=2))


async def _flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


if __name__ == "__main__":
    main()

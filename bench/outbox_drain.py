"""The outbox after a release surge: how fast every subscriber gets the events, on PostgreSQL.

A release writes thousands of events (held, patient chosen, awaiting payment, confirmed …)
in seconds; every subscriber (inbox notifications, search, strikes, suspicion, the waitlist,
offers, filings, the authority's rollups, live availability, the hospitals' HIS notifiers)
must receive them soon enough that a citizen's notification follows within seconds.

Two measurements, in one run, on a real platform (PostgreSQL from ``infra/local_postgres.py``,
a real redis-server, every subscription the platform deploys):

1. **drain**: ``--bookings`` citizens book and pay through the real booking service with
   delivery stopped (``produce`` events/s is how fast the platform wrote them: the baseline);
   then the dispatcher delivers the whole backlog (``drain`` events/s). The ratio says whether
   delivery keeps up with what a surge writes.
2. **lag**: the same events written again at ``--rate`` events/s for ``--seconds`` while the
   dispatch job runs as deployed (every 2 s); per event, the time from its commit to its
   delivery to the inbox notifier (p50, p99, max). Target: max ≤ 10 s at 2,000 events/s.

    .venv/bin/python bench/outbox_drain.py                       # 1,500 bookings, 2,000 ev/s
    .venv/bin/python bench/outbox_drain.py --bookings 3000 --rate 3000 --seconds 30

JSON goes to ``bench/results/outbox_drain.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

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


@dataclass
class Figures:
    bookings: int
    events: int
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
    written: list[tuple[int, float]] = []  # (last id of a batch, its commit time)
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    stop = asyncio.Event()

    async def writer() -> None:
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            rows = [
                templates[(n + i) % len(templates)]
                | {"created_at": platform.ports.clock.now(), "attempts": 0}
                for i in range(per_tick)
            ]
            n += per_tick
            async with platform.ports.sessions() as session, session.begin():
                ids = (await session.scalars(insert(OutboxRow).returning(OutboxRow.id), rows)).all()
            written.append((max(ids), time.perf_counter()))
            next_at = started + (n / per_tick) * tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        stop.set()

    delivered: list[tuple[int, float]] = []

    async def dispatcher() -> None:
        while True:
            began = time.perf_counter()
            await platform.dispatcher.dispatch_pending()
            delivered.append((await _position(platform), time.perf_counter()))
            if stop.is_set() and not await _pending(platform):
                return
            await asyncio.sleep(max(0.0, DISPATCH_EVERY_SECONDS - (time.perf_counter() - began)))

    started = time.perf_counter()
    await asyncio.gather(writer(), dispatcher())
    achieved = sum(per_tick for _ in written) / max(1e-9, written[-1][1] - started)
    lags = []
    for last_id, committed in written:
        reached = next(t for position, t in delivered if position >= last_id)
        lags.append(reached - committed)
    return lags, achieved


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> Figures:
    with tempfile.TemporaryDirectory(prefix="guahao-outbox-bench-") as data:
        async with open_platform(
            settings_for(Path(data), database_url, redis_url), clock=ManualClock(START)
        ) as platform:
            say(f"producing: {args.bookings} bookings")
            events, produce_seconds = await produce(platform, args.bookings)
            say(f"produced {events} events in {produce_seconds:.1f} s; draining")
            drain_seconds = await drain(platform)
            say(f"drained in {drain_seconds:.1f} s; lag run at {args.rate}/s")
            lags, achieved = await lag(platform, args.rate, args.seconds)
            subscribers = len(platform.dispatcher.subscribers)
    lags.sort()
    return Figures(
        bookings=args.bookings,
        events=events,
        produce_seconds=round(produce_seconds, 3),
        produce_events_per_second=round(events / produce_seconds, 1),
        drain_seconds=round(drain_seconds, 3),
        drain_events_per_second=round(events / drain_seconds, 1),
        drain_over_produce=round(produce_seconds / drain_seconds, 2),
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
    parser.add_argument("--bookings", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s in the lag run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the lag run")
    parser.add_argument("--dir", default="/tmp/guahao-outbox-bench")
    args = parser.parse_args()
    cluster = Path(args.dir)
    local_postgres.start(cluster)
    name = f"outbox_{os.getpid()}"
    database_url = local_postgres.createdb(cluster, name)
    try:
        with EmbeddedRedis() as server:
            asyncio.run(_flush(server.url))
            figures = asyncio.run(run(args, database_url, server.url))
    finally:
        local_postgres.stop(cluster)
    print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine, shared)")
    width = max(len(k) for k in asdict(figures))
    for key, value in asdict(figures).items():
        print(f"{key:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "outbox_drain.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(asdict(figures) | {"at": time.time()}, indent=2))


async def _flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


if __name__ == "__main__":
    main()

"""Money and units under real faults, at a larger scale than the test suite runs them.

Not a test: it prints a table and writes ``bench/results/faults-<time>.json``.

On a PostgreSQL cluster and a Redis of its own (both started here), it opens ``--bookings``
online-paid bookings and then, in order: kills Redis and starts it empty (the pool is rebuilt,
and the orders the sandbox gateway lost with it are opened again by reconciliation); pays a
third with their notice delivered and a third with their notice lost; stops PostgreSQL (smart
shutdown, one session lingering, so the server answers "shutting down") while the gateway
re-sends the lost notices, then starts it; reconciles; re-sends every notice again
(duplicates, out of order); pays half the rest at the gateway with their notices lost, lets
the unpaid expire, and runs reconciliation and the refunds until nothing is left to settle.
After that the conservation checks of the test suite must hold: every unit free, held or
booked once with SQL and Redis agreeing, every order the gateway took money for confirming
its booking or refunded.

(Redis is killed before any payment: the sandbox gateway keeps its orders in the platform's
Redis, so a paid order would be lost with it, which a real gateway never does.)

    .venv/bin/python bench/faults.py --bookings 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.bootstrap import Platform, open_platform  # noqa: E402
from guahao.platform.clock import ManualClock  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.errors import GuahaoError  # noqa: E402
from guahao.platform.persistence.outages import is_database_outage  # noqa: E402
from infra import local_postgres  # noqa: E402
from tests.fixtures.conservation import (  # noqa: E402
    assert_money_conserved,
    assert_units_conserved,
)
from tests.fixtures.platforms import (  # noqa: E402
    START,
    clinic,
    held_with_patient,
    publish_clinic,
    settings_for,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Phases:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, phase: str, started: float, **counts: Any) -> None:
        self.rows.append(
            {"phase": phase, "seconds": round(time.perf_counter() - started, 3)} | counts
        )
        print(f"  {phase:<34} {self.rows[-1]['seconds']:>8.3f}s  {counts}", flush=True)


async def _deliver(platform: Platform, headers: dict[str, str], body: bytes) -> str:
    try:
        return (await platform.bookings.handle_payment_notice(headers, body)).result
    except GuahaoError as exc:
        return exc.code
    except Exception as exc:
        if is_database_outage(exc):
            return "503"
        raise


async def run(bookings: int, seed: int, directory: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    phases = Phases()
    pg_dir, redis_dir = directory / "pg", directory / "redis"
    admin = local_postgres.start(pg_dir)
    port = local_postgres.running_port(pg_dir)
    database_url = local_postgres.createdb(pg_dir, "faults")
    redis = EmbeddedRedis(redis_dir, port=_free_port(), persist=False)
    redis.start()
    clock = ManualClock(START)
    try:
        async with open_platform(
            settings_for(directory / "data", database_url, redis.url), clock=clock
        ) as platform:
            units = max(4, bookings // 8 + 1)
            slots = await publish_clinic(platform, clinic(units=units))
            started = time.perf_counter()
            orders: list[str] = []
            for i in range(bookings):
                account, _, booking_id = await held_with_patient(platform, slots[i % len(slots)])
                _, order = await platform.bookings.submit(
                    account_id=account, booking_id=booking_id, channel="self_pay"
                )
                assert order is not None
                orders.append(order.order_no)
            phases.add("open orders", started, bookings=bookings, slots=len(slots))

            started = time.perf_counter()
            redis.stop()
            redis.start()  # empty
            loaded = await platform.inventory_sync.rebuild_all()
            clock.advance(minutes=2)
            reopened = await platform.payment_reconciliation.reconcile_due(limit=10_000)
            phases.add(
                "redis killed, restarted empty", started, slots_rebuilt=loaded, reopened=reopened
            )

            rng.shuffle(orders)
            third = len(orders) // 3
            delivered, lost, unpaid = orders[:third], orders[third : 2 * third], orders[2 * third :]
            started = time.perf_counter()
            for order_no in delivered:
                headers, body = await platform.gateway.pay(order_no, channel="self_pay")
                await _deliver(platform, headers, body)
            notices = {}
            for order_no in lost:
                notices[order_no] = await platform.gateway.pay(order_no, channel="self_pay")
            phases.add(
                "pay (a third's notices lost)", started, delivered=len(delivered), lost=len(lost)
            )

            started = time.perf_counter()
            lingering = await asyncpg.connect(
                make_url(database_url).set(drivername="postgresql").render_as_string(False)
            )
            await platform.engine.dispose()
            await asyncio.to_thread(
                subprocess.run,
                local_postgres._as_server_user(
                    [
                        str(local_postgres.find_binary("pg_ctl")),
                        "stop",
                        "--pgdata",
                        str(pg_dir / "data"),
                        "--mode",
                        "smart",
                        "--no-wait",
                    ]
                ),
                check=True,
                capture_output=True,
            )
            answers: dict[str, int] = {}
            for order_no in lost:  # the gateway re-sends what it sent before
                result = await _deliver(platform, *notices[order_no])
                answers[result] = answers.get(result, 0) + 1
            await lingering.close()
            while local_postgres.is_running(pg_dir):  # noqa: ASYNC110 - a process, not an event
                await asyncio.sleep(0.05)
            local_postgres.start(pg_dir, port=port)
            phases.add("postgres stopped mid-notices", started, answers=answers)

            started = time.perf_counter()
            clock.advance(minutes=2)
            settled = 0
            while done := await platform.payment_reconciliation.reconcile_due(limit=500):
                settled += done
            phases.add("reconcile after the outages", started, settled=settled)

            started = time.perf_counter()
            replayed: dict[str, int] = {}
            for order_no in rng.sample(delivered + lost, len(delivered + lost)):
                headers, body = await platform.gateway.pay(order_no, channel="self_pay")
                result = await _deliver(platform, headers, body)
                replayed[result] = replayed.get(result, 0) + 1
            phases.add("notices duplicated, out of order", started, answers=replayed)

            started = time.perf_counter()
            clock.advance(minutes=9)
            late = unpaid[: len(unpaid) // 2]
            for order_no in late:
                await platform.gateway.pay(order_no, channel="self_pay")  # in time, notice lost
            clock.advance(minutes=10)
            expired = await platform.bookings.expire_due(limit=10_000)
            clock.advance(minutes=2)
            settled = 0
            while done := await platform.payment_reconciliation.reconcile_due(limit=500):
                settled += done
            refunds = 0
            for refund_no in await platform.bookings.pending_refunds():
                refunds += await platform.bookings.process_refund(refund_no)
            phases.add(
                "late payments, expiry, refunds",
                started,
                expired=expired,
                settled=settled,
                refunds=refunds,
            )

            started = time.perf_counter()
            money = await assert_money_conserved(platform)
            await assert_units_conserved(platform, slots)
            phases.add("conservation checks", started, money=money)
            del admin
    finally:
        redis.stop()
        local_postgres.stop(pg_dir)
    return {"bookings": bookings, "seed": seed, "phases": phases.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="guahao-faults-"))
    directory.chmod(0o755)  # the postgres OS user must get through to its cluster
    try:
        print(f"faults: {args.bookings} bookings, seed {args.seed}", flush=True)
        result = asyncio.run(run(args.bookings, args.seed, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"all conservation checks held; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

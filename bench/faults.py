"""Money and units under real faults, at a larger scale than the test suite runs them.

Not a test: it prints a table and writes ``bench/results/faults-<time>.json``.

On a PostgreSQL cluster and a Redis of its own (both started here), it opens ``--bookings``
online-paid bookings and then, in order: kills Redis and starts it empty (the pool is rebuilt;
reconciliation finds every order still payable at the gateway); pays a
third with their notice delivered and a third with their notice lost; stops PostgreSQL (smart
shutdown, one session lingering, so the server answers "shutting down") while the gateway
re-sends the lost notices, then starts it; reconciles; re-sends every notice again
(duplicates, out of order); pays half the rest at the gateway with their notices lost, lets
the unpaid expire, and runs reconciliation and the refunds until nothing is left to settle.
After that the conservation checks of the test suite must hold: every unit free, held or
booked once with SQL and Redis agreeing, every order the gateway took money for confirming
its booking or refunded.

Then a crowd of ``--crowd`` citizens (hold, leave, walk away, confirm with insurance or pay
online) runs through three more faults, each ending with the same checks (after one
reconciliation round): the pool rebuilt back to back under the crowd; Redis killed mid-crowd
and started empty, noticed by two sweeps at once that rebuild it once; and a second worker
whose clock runs 5 minutes fast (its ``SharedClock`` corrects it to the shared reference),
serving half the crowd and sweeping meanwhile. Last, a hospital whose HIS owns its inventory
(the reference HIS simulator, a real process): the HIS is killed mid-crowd, stays away for an
hour of the scenario's clock (sweeps, outbox deliveries failing), and comes back at the same
address with its store; the same checks follow, and the HIS's appointments are counted.

The sandbox gateway keeps its orders in a Redis of its own (another company's system), which
is never killed: payments made while the platform's Redis is away are remembered and settled.

    .venv/bin/python bench/faults.py --bookings 300 --crowd 120
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
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.bootstrap import Platform, open_platform  # noqa: E402
from guahao.hospital_connectors.simulator.store import HisStore  # noqa: E402
from guahao.platform.clock import ManualClock, SkewedClock  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.errors import GuahaoError  # noqa: E402
from guahao.platform.persistence.outages import is_database_outage  # noqa: E402
from guahao.platform.persistence.tables import (  # noqa: E402
    BookingRow,
    HospitalRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.shared_clock import ClockTime, SharedClock  # noqa: E402
from infra import local_postgres  # noqa: E402
from tests.fixtures.conservation import (  # noqa: E402
    assert_money_conserved,
    assert_units_conserved,
)
from tests.fixtures.crowd import CROWD_REFUSALS, journey  # noqa: E402
from tests.fixtures.his_simulator import SIM_DAY, SIM_HOSPITAL, sim_hospital  # noqa: E402
from tests.fixtures.platforms import (  # noqa: E402
    START,
    bulk_accounts,
    clinic,
    held_with_patient,
    publish_clinic,
    settings_for,
)

TOLERATED = CROWD_REFUSALS | {"INVENTORY_UNAVAILABLE", "SLOT_NOT_LOADED"}
"""What a crowd's journey may meet around a fault: a refusal of a healthy platform, or a 503
(retry) while Redis is away or a slot is being rebuilt. Anything else fails the run."""


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


def _crowd(
    workers: list[Platform],
    slots: list[str],
    accounts: list[str],
    rng: random.Random,
    *,
    choices: tuple[int, ...] = (0, 1, 2, 3),
    tolerated: frozenset[str] = TOLERATED,
) -> asyncio.Future[list[str]]:
    """Start every account's journey at once, spread over ``workers``; await the result."""
    return asyncio.gather(
        *(
            journey(
                workers[i % len(workers)],
                account,
                rng.choice(slots),
                rng.choice(choices),
                tolerated=tolerated,
            )
            for i, account in enumerate(accounts)
        )
    )


async def _start_his(port: int, store: Path, capacity: int) -> asyncio.subprocess.Process:
    """The reference HIS (``--port`` fixed so it comes back at the same address)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "guahao.hospital_connectors.simulator", "--hospital", SIM_HOSPITAL),
        *("--port", str(port), "--mllp-port", "0", "--doctors", "1", "--days", "1"),
        *("--start", SIM_DAY, "--capacity", str(capacity), "--store", str(store)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert line, "the HIS simulator did not start"
    return process


async def _bookings_on(platform: Platform, slots: list[str]) -> int:
    async with platform.ports.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(BookingRow).where(BookingRow.slot_id.in_(slots))
            )
            or 0
        )


async def _his_away(
    platform: Platform,
    clock: ManualClock,
    directory: Path,
    crowd: int,
    rng: random.Random,
    phases: Phases,
) -> None:
    """A hospital whose HIS owns its inventory; the HIS killed mid-crowd, away for an hour,
    then back at the same address with its store."""
    port, store = _free_port(), directory / "his.json"
    his = await _start_his(port, store, capacity=max(2, crowd // 8))
    try:
        await platform.supply.register_hospital(sim_hospital())
        await platform.connectors.registry.register(
            SIM_HOSPITAL,
            "fhir",
            base_url=f"http://127.0.0.1:{port}/fhir",
            config={"owns_inventory": True},
        )
        assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
        async with platform.ports.sessions() as session:
            slots = list(
                (
                    await session.scalars(
                        select(SlotRow.id)
                        .join(SessionRow, SessionRow.id == SlotRow.session_id)
                        .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                        .where(HospitalRow.code == SIM_HOSPITAL)
                    )
                ).all()
            )
        started = time.perf_counter()
        surge = _crowd(
            [platform],
            slots,
            await bulk_accounts(platform, crowd),
            rng,
            choices=(0, 1, 3),  # the simulator's hospital takes self-pay only
            tolerated=TOLERATED | {"HIS_HOLD_UNAVAILABLE"},
        )
        for _ in range(600):  # mid-crowd: once a quarter of the crowd holds in the HIS
            if surge.done() or await _bookings_on(platform, slots) >= crowd // 4:
                break
            await asyncio.sleep(0.05)
        his.terminate()
        await his.wait()
        outcomes = Counter(await surge)
        await platform.dispatcher.dispatch_pending()  # deliveries to the HIS fail meanwhile
        clock.advance(hours=1)
        await platform.sweep.run()
        his = await _start_his(port, store, capacity=max(2, crowd // 8))
        clock.advance(minutes=5)
        delivered = await platform.dispatcher.dispatch_pending()
        await platform.sweep.run()
        money = await _conserved(platform, clock, slots)
        in_his = Counter(
            appointment["status"]
            for appointment in HisStore.load(store).resources.get("Appointment", {}).values()
            if any(i.get("system") == "urn:guahao:booking" for i in appointment["identifier"])
        )
        assert in_his.get("booked", 0) == outcomes["confirmed"], (in_his, outcomes)
        assert "pending" not in in_his, in_his  # every hold the HIS kept was settled
        phases.add(
            "his away for an hour",
            started,
            slots=len(slots),
            outcomes=outcomes,
            delivered_after=delivered,
            his_appointments=in_his,
            money=money,
        )
    finally:
        if his.returncode is None:
            his.terminate()
            await his.wait()


async def _conserved(platform: Platform, clock: ManualClock, slots: list[str]) -> dict[str, int]:
    """Reconcile what the fault left (payments whose notice met a 503), then check."""
    clock.advance(minutes=2)
    while await platform.payment_reconciliation.reconcile_due(limit=500):
        pass
    for refund_no in await platform.bookings.pending_refunds():
        await platform.bookings.process_refund(refund_no)
    money = await assert_money_conserved(platform)
    await assert_units_conserved(platform, slots)
    return money


async def _crowd_faults(
    platform: Platform,
    clock: ManualClock,
    redis: EmbeddedRedis,
    settings: Any,
    crowd: int,
    rng: random.Random,
    phases: Phases,
) -> None:
    slots = await publish_clinic(platform, clinic(units=max(2, crowd // 4), code="h2"))
    await platform.pool_recovery.rebuild()

    started = time.perf_counter()
    surge = _crowd([platform], slots, await bulk_accounts(platform, crowd), rng)
    rebuilds = 0
    while not surge.done():
        await platform.pool_recovery.rebuild()
        rebuilds += 1
    outcomes = Counter(await surge)
    money = await _conserved(platform, clock, slots)
    phases.add("rebuild under traffic", started, rebuilds=rebuilds, outcomes=outcomes, money=money)

    started = time.perf_counter()
    surge = _crowd([platform], slots, await bulk_accounts(platform, crowd), rng)
    await asyncio.sleep(0.2)  # mid-crowd
    await asyncio.to_thread(redis.stop)
    await asyncio.to_thread(redis.start)  # empty
    lost = await platform.pool_recovery.generation() is None
    rounds = await asyncio.gather(platform.sweep.run(), platform.sweep.run())
    rebuilt = sorted(r.counts.get("pool_recovered", -1) for r in rounds)
    outcomes = Counter(await surge)
    assert lost, "the loss was not visible"
    assert rebuilt[0] == 0, rebuilt  # two sweeps at once: one rebuild
    assert rebuilt[1] > 0, rebuilt
    money = await _conserved(platform, clock, slots)
    phases.add(
        "redis lost mid-crowd, swept once",
        started,
        rebuilt=rebuilt,
        outcomes=outcomes,
        money=money,
    )

    started = time.perf_counter()
    fast_clock = SharedClock(SkewedClock(clock, timedelta(minutes=5)), ClockTime(clock))
    await fast_clock.calibrate()
    async with open_platform(settings, clock=fast_clock, migrate=False) as fast:
        surge = _crowd([platform, fast], slots, await bulk_accounts(platform, crowd), rng)
        sweeps = 0
        while not surge.done():
            await fast.sweep.run()
            sweeps += 1
        outcomes = Counter(await surge)
        money = await _conserved(platform, clock, slots)
    phases.add(
        "second worker 5 min fast",
        started,
        offset_s=fast_clock.offset.total_seconds(),
        sweeps=sweeps,
        outcomes=outcomes,
        money=money,
    )


async def run(bookings: int, crowd: int, seed: int, directory: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    phases = Phases()
    pg_dir, redis_dir = directory / "pg", directory / "redis"
    admin = local_postgres.start(pg_dir)
    port = local_postgres.running_port(pg_dir)
    database_url = local_postgres.createdb(pg_dir, "faults")
    redis = EmbeddedRedis(redis_dir, port=_free_port(), persist=False)
    redis.start()
    gateway_redis = EmbeddedRedis(directory / "gateway-redis", port=_free_port(), persist=True)
    gateway_redis.start()
    clock = ManualClock(START)
    settings = settings_for(
        directory / "data", database_url, redis.url, gateway_redis_url=gateway_redis.url
    )
    try:
        async with open_platform(settings, clock=clock) as platform:
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

            await _crowd_faults(platform, clock, redis, settings, crowd, rng, phases)
            await _his_away(platform, clock, directory, crowd, rng, phases)
            del admin
    finally:
        redis.stop()
        gateway_redis.stop()
        local_postgres.stop(pg_dir)
    return {"bookings": bookings, "crowd": crowd, "seed": seed, "phases": phases.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=300)
    parser.add_argument("--crowd", type=int, default=120)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="guahao-faults-"))
    directory.chmod(0o755)  # the postgres OS user must get through to its cluster
    try:
        print(
            f"faults: {args.bookings} bookings, a crowd of {args.crowd}, seed {args.seed}",
            flush=True,
        )
        result = asyncio.run(run(args.bookings, args.crowd, args.seed, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"all conservation checks held; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

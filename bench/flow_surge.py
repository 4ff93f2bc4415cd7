"""The whole booking flow at a release (issue 15): a crowd of citizens from hold to confirmed.

Not a test: it prints tables and writes ``bench/results/flow_surge-<time>.json``.

bench/http_surge.py measures single requests against the framework's ceiling; this one
measures what a release is made of: at least 1 000 citizens at once, each holding a unit,
choosing the patient, submitting, paying at the sandbox cashier and looking at the booking,
with a share leaving the hold, a share letting it run out and a share cancelling once
confirmed (``bench/flow_citizens.py``). The load generator is Locust (FastHttpUser, gevent),
run in an environment of its own that ``bench/run.sh flow-surge`` makes, beside a platform
served as in production: ``guahao serve`` (uvicorn, uvloop, httptools) on PostgreSQL and a
loopback Redis, jobs running (the sweep expires the holds left to run out), rate limits on.
Every hospital's hold time is set to one minute so that expiry happens within the run.

Reported: journeys per second, throughput and latency per step (p50, p95, p99), errors by
HTTP status and code, Locust's own CPU (so a saturated generator shows), and after the run,
once every hold left behind has expired, the conservation check: every unit free, held,
booked or returning exactly once in Redis, SQL's active bookings equal to Redis's per slot,
every paid order confirmed (or refunded when cancelled), every confirmed booking of a payable
hospital paid.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_surge import (  # noqa: E402
    _check,
    _environment,
    _free_port,
    _load_average,
    _serve_platform,
    _stop,
)
from bench.work_dirs import tidy  # noqa: E402
from guahao.bootstrap import open_platform  # noqa: E402
from guahao.config import load_settings  # noqa: E402
from guahao.platform.demo_region import build_demo_region  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.hospitals import FilingMode  # noqa: E402
from guahao.platform.persistence.tables import (  # noqa: E402
    BookingRow,
    HospitalRow,
    PaymentOrderRow,
    SessionRow,
    SlotRow,
)
from guahao.web.auth import TokenIssuer  # noqa: E402
from infra import local_postgres  # noqa: E402
from tests.fixtures.platforms import bulk_accounts, new_patient  # noqa: E402

LOCUST_ENV = ROOT / ".bench-venv" / "locust"
STEPS = ("1 hold", "2 leave", "3 choose patient", "4 submit", "5 pay", "6 view", "7 cancel")
CONFIRMED = ("confirmed", "checked_in", "no_show")


async def _seed(
    environ: dict[str, str], out: Path, accounts: int, days: int, hold_minutes: int = 1
) -> dict[str, Any]:
    """The demo region with holds of ``hold_minutes`` (one: expiry happens within the run),
    ``accounts`` accounts with a patient each and their tokens, and the slots the crowd aims
    at (released, and far enough ahead that the hospitals' cancellation deadlines have not
    passed)."""
    settings = load_settings(environ)
    region = build_demo_region()
    async with open_platform(settings) as platform:
        today = platform.ports.clock.now().date()
        for hospital in region.hospitals:
            policies = msgspec.structs.replace(hospital.policies, hold_minutes=hold_minutes)
            await platform.supply.register_hospital(
                msgspec.structs.replace(hospital, policies=policies)
            )
        sessions = []
        for hospital in region.hospitals:
            sessions += platform.supply.sessions_from_roster(
                hospital, [today + timedelta(days=i) for i in range(2, 2 + days)]
            )
        await platform.supply.publish_sessions(sessions)
        ids = await bulk_accounts(platform, accounts)
        patients: list[str] = []
        for start in range(0, len(ids), 50):
            patients += await asyncio.gather(
                *(new_patient(platform, a, name="张伟") for a in ids[start : start + 50])
            )
        issuer = TokenIssuer(settings.secret("secret_key"), settings.token_minutes)
        citizens = out / "citizens.txt"
        citizens.write_text(
            "".join(f"{issuer.issue(a)} {p}\n" for a, p in zip(ids, patients, strict=True))
        )
        now = platform.ports.clock.now()
        # a hospital that files patients before any online booking refuses the crowd's
        # unfiled patients (PATIENT_NOT_FILED): its units are left out of the crowd's aim
        filed_first = [
            h.code
            for h in region.hospitals
            if h.policies.filing_mode == FilingMode.REQUIRED_BEFORE_BOOKING
        ]
        async with platform.engine.connect() as connection:
            slots = list(
                (
                    await connection.scalars(
                        sa.select(SlotRow.id)
                        .join(SessionRow, SessionRow.id == SlotRow.session_id)
                        .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                        .where(
                            SessionRow.release_at <= now,
                            SlotRow.starts_at > now,
                            HospitalRow.code.not_in(filed_first),
                        )
                    )
                ).all()
            )
        counts = await platform.ports.inventory.counts(slots, now_ms=int(now.timestamp() * 1000))
        open_slots = [s for s in slots if counts[s].available > 0]
        (out / "slots.txt").write_text("".join(f"{s}\n" for s in open_slots))
        return {
            "citizens": citizens,
            "slots": out / "slots.txt",
            "units": sum(counts[s].available for s in open_slots),
            "open_slots": len(open_slots),
        }


def _cpu_seconds(pid: int) -> float:
    """The CPU time a process and its waited-for children have used (``/proc``), so a run
    reports the server's CPU per request beside rates that move with the shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _spy(pid: int, folder: Path, seconds: int) -> subprocess.Popen[bytes]:
    """py-spy on the server from a fifth of the run to four fifths (the crowd all in, Locust
    not yet stopping), raw folded stacks for ``bench/profile_summary.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%H%M%S")
    command = [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid", str(pid)]
    command += ["--rate", "200", "--nonblocking", "--format", "raw"]
    command += ["--duration", str(max(1, seconds * 3 // 5))]
    command += ["--output", str(folder / f"flow-surge-server-{stamp}.folded")]
    later = f"sleep {seconds / 5:.0f}; exec {shlex.join(command)}"  # Locust starts meanwhile
    return subprocess.Popen(
        ["sh", "-c", later], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _locust(
    url: str, seeded: dict[str, Any], users: int, seconds: int, shares: str, think: float, out: Path
) -> dict[str, Any]:
    """Run Locust headless; its CPU time beside the wall time says whether it kept up."""
    prefix = out / "locust"
    command = [
        str(LOCUST_ENV / "bin" / "locust"),
        "-f",
        str(ROOT / "bench" / "flow_citizens.py"),
        "--headless",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(max(1, users // 5)),  # the whole crowd within five seconds
        "-t",
        f"{seconds}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "10",
        "--loglevel",
        "WARNING",
    ]
    environ = os.environ | {
        "FLOW_CITIZENS": str(seeded["citizens"]),
        "FLOW_SLOTS": str(seeded["slots"]),
        "FLOW_SHARES": shares,
        "FLOW_THINK": str(think),
    }
    started = time.perf_counter()
    before = os.times()
    done = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
    after = os.times()
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: some requests failed, which the tables show
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    steps = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] in STEPS:
                steps[row["Name"]] = {
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "per_s": float(row["Requests/s"]),
                    "p50_ms": float(row["50%"] or 0),
                    "p95_ms": float(row["95%"] or 0),
                    "p99_ms": float(row["99%"] or 0),
                }
    errors: Counter[str] = Counter()
    with open(f"{prefix}_failures.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            errors[f"{row['Name']}: {row['Error']}"] += int(row["Occurrences"])
    return {"steps": steps, "errors": dict(errors), "wall_s": wall, "locust_cpu_s": cpu}


async def _settle_and_check(environ: dict[str, str], wait_s: float) -> dict[str, Any]:
    """Wait until no booking still holds a unit it may lose (holds left to run out are
    expired by the sweep), then check conservation and money."""
    settings = load_settings(environ)
    deadline = time.monotonic() + wait_s
    async with open_platform(settings, migrate=False) as platform:
        while True:
            async with platform.engine.connect() as connection:
                holding = await connection.scalar(
                    sa.select(sa.func.count())
                    .select_from(BookingRow)
                    .where(BookingRow.status.in_(["held", "patient_chosen"]))
                )
            if not holding or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        async with platform.engine.connect() as connection:
            statuses = dict(
                (
                    await connection.execute(
                        sa.select(BookingRow.status, sa.func.count()).group_by(BookingRow.status)
                    )
                ).all()
            )
            money = (
                await connection.execute(
                    sa.select(PaymentOrderRow.status, BookingRow.id, BookingRow.status).join(
                        BookingRow, BookingRow.id == PaymentOrderRow.booking_id
                    )
                )
            ).all()
    paid = {booking for order, booking, _ in money if order == "paid"}
    confirmed_with_orders = {booking for _, booking, status in money if status in CONFIRMED}
    checks = await _check(environ, granted=0)
    checks.pop("grants_answered")
    return checks | {
        "bookings_by_status": statuses,
        "still_holding_after_settling": holding or 0,
        "orders_by_status": dict(Counter(order for order, _, _ in money)),
        # no money kept without a booking, no booking confirmed without its money
        "paid_orders_without_a_confirmed_booking": sum(
            1 for order, _, status in money if order == "paid" and status not in CONFIRMED
        ),
        "confirmed_bookings_with_an_unpaid_order": len(confirmed_with_orders - paid),
    }


def _print(result: dict[str, Any], seconds: int) -> None:
    steps = result["steps"]
    print()
    print("| step | requests | req/s | p50 ms | p95 ms | p99 ms | failures |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in STEPS:
        s = steps.get(name)
        if s:
            print(
                f"| {name} | {s['requests']} | {s['per_s']:.0f} | {s['p50_ms']:.0f}"
                f" | {s['p95_ms']:.0f} | {s['p99_ms']:.0f} | {s['failures']} |"
            )
    views = steps.get("6 view", {}).get("requests", 0)
    answered = sum(s["requests"] for s in steps.values())
    cpu = result["server_cpu_s"]
    print(
        f"\njourneys reaching their booking: {views} in {seconds} s = {views / seconds:.0f}/s;"
        f" Locust used {result['locust_cpu_s']:.0f} s of CPU in {result['wall_s']:.0f} s"
    )
    if views and answered:
        print(
            f"the server used {cpu:.1f} s of CPU: {cpu * 1000 / answered:.2f} ms a request,"
            f" {cpu * 1000 / views:.1f} ms a journey reaching its booking"
        )
    print("\nerrors by step, status and code:")
    for error, count in sorted(result["errors"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7}  {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="citizens at once")
    parser.add_argument("--accounts", type=int, default=6000, help="citizens in all")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--days", type=int, default=3, help="days of sessions published")
    parser.add_argument(
        "--shares",
        default="0.1,0.1,0.15",
        help="fractions that leave the hold, let it run out, cancel once confirmed",
    )
    parser.add_argument("--think", type=float, default=1.0, help="seconds between steps, at most")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the server through the middle of the run (raw folded stacks here)",
    )
    options = parser.parse_args()
    if not (LOCUST_ENV / "bin" / "locust").exists():
        raise SystemExit("Locust's environment is missing: run `bash bench/run.sh flow-surge`")
    work = Path(tempfile.mkdtemp(prefix="guahao-flow-surge-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    load_before = _load_average()
    print(f"load average before: {load_before}")
    server = None
    redis = None
    try:
        local_postgres.start(pg_dir)
        redis = EmbeddedRedis(work / "redis", port=_free_port())
        redis.start()
        environ = _environment(
            work / "data", local_postgres.createdb(pg_dir, "guahao"), redis.url
        ) | {"GUAHAO_RUN_JOBS": "true"}
        print(f"seeding {options.accounts} citizens with a patient each …")
        seeded = asyncio.run(_seed(environ, work, options.accounts, options.days))
        print(f"  {seeded['units']} units open on {seeded['open_slots']} slots")
        port = _free_port()
        server = _serve_platform(environ, port, options.workers, work / "server.log")
        server_cpu = _cpu_seconds(server.pid)
        spy = _spy(server.pid, options.profile, options.seconds) if options.profile else None
        result = _locust(
            f"http://127.0.0.1:{port}",
            seeded,
            options.users,
            options.seconds,
            options.shares,
            options.think,
            work,
        )
        result["server_cpu_s"] = _cpu_seconds(server.pid) - server_cpu
        if spy is not None:
            spy.wait()
        _print(result, options.seconds)
        print("\nsettling: waiting for the holds left behind to expire …")
        result["checks"] = asyncio.run(_settle_and_check(environ, wait_s=150))
        _stop(server)
        server = None
        print("end checks:", json.dumps(result["checks"], ensure_ascii=False))
        load_after = _load_average()
        print(f"load average before {load_before}, after {load_after}")
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (results / f"flow_surge-{stamp}.json").write_text(
            json.dumps(
                {
                    "options": vars(options),
                    "load_before": load_before,
                    "load_after": load_after,
                    "seeded_units": seeded["units"],
                    **result,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    finally:
        if server is not None:
            _stop(server)
        if redis is not None:
            redis.stop()
        local_postgres.stop(pg_dir)
        tidy(work)


if __name__ == "__main__":
    main()

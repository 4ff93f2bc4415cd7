"""The authority's views over a year of a large region on PostgreSQL, beside a bookings scan.

Generates (COPY, in bulk) a region of ``--hospitals`` hospitals (default 200) of 20
departments each in 16 districts, releasing ``--units`` units a day (default 50 000) over
``--days`` days (default 365):

- the read models: one ``supply_demand_days`` row per department and day, one
  ``access_measures`` row per hospital, specialty and day;
- the record of truth for the last ``--source-days`` days (default 30): sessions, slots and
  bookings, so the same figures can be computed the way a console without read models would,
  by scanning bookings (the baseline column).

Then it times every view of ``AuthorityFigures`` (the service the API calls, on the real
engine and pool) ``--rounds`` times with random parameters and prints p50/p95 beside the
baseline. Target: every view p95 <= 300 ms. JSON goes to ``bench/results/``.

    .venv/bin/python bench/console_figures.py                  # generate and measure
    .venv/bin/python bench/console_figures.py --reuse          # measure the kept cluster again

The cluster lives in ``/tmp/guahao-console-bench`` (``--dir``) and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import text

from guahao.platform.persistence.database import create_engine, session_factory, upgrade_async
from guahao.platform.persistence.tables import SupplyDemandDayRow
from guahao.platform.reference.catalog import load_catalog
from guahao.platform.services.authority_figures import AuthorityFigures, FigureScope
from guahao.platform.services.staff import StaffActor, StaffRole
from infra import local_postgres

DISTRICTS = [f"{name}区" for name in "东西南北中江湖山海河林泉石云星月"]
DEPARTMENTS_PER_HOSPITAL = 20
LAST_DAY = date(2026, 11, 30)
ADMIN = StaffActor(id="bench", username="bench", role=StaffRole.AUTHORITY_ADMIN)


def _hex() -> str:
    return uuid.uuid4().hex


class Region:
    """The generated region's hospitals, departments and doctors (ids and labels)."""

    def __init__(self, hospitals: int, rng: random.Random) -> None:
        catalog = [e.code for e in load_catalog().roots()][:40]
        self.hospitals = [
            (_hex(), f"bench{i:03d}", f"测试医院{i:03d}", DISTRICTS[i % len(DISTRICTS)])
            for i in range(hospitals)
        ]
        self.departments: list[tuple[str, str, str]] = []  # id, hospital id, catalog code
        self.doctors: list[tuple[str, str, str]] = []  # id, hospital id, department id
        for hospital_id, *_ in self.hospitals:
            for code in rng.sample(catalog, DEPARTMENTS_PER_HOSPITAL):
                department_id = _hex()
                self.departments.append((department_id, hospital_id, code))
                self.doctors.append((_hex(), hospital_id, department_id))
        self.district_of = {h[0]: h[3] for h in self.hospitals}
        self.catalogs = sorted({d[2] for d in self.departments})


async def _copy(
    connection: asyncpg.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    for start in range(0, len(rows), 200_000):
        await connection.copy_records_to_table(
            table, records=rows[start : start + 200_000], columns=columns
        )


async def generate(dsn: str, args: argparse.Namespace) -> dict[str, float]:
    """Write the region; returns seconds per part."""
    rng = random.Random(7)
    gen = np.random.default_rng(7)
    region = Region(args.hospitals, rng)
    timings: dict[str, float] = {}
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await _copy(
            connection,
            "hospitals",
            [
                "id",
                "code",
                "name",
                "grade",
                "district",
                "address",
                "aliases",
                "timezone",
                "policies",
                "active",
            ],
            [
                (h, code, name, "3A", district, "", "[]", "Asia/Shanghai", "{}", True)
                for h, code, name, district in region.hospitals
            ],
        )
        await _copy(
            connection,
            "departments",
            ["id", "hospital_id", "code", "name", "catalog_code", "aliases", "location"],
            [
                (d, h, f"d{i}", f"科室{i}", c, "[]", "")
                for i, (d, h, c) in enumerate(region.departments)
            ],
        )
        await _copy(
            connection,
            "doctors",
            ["id", "hospital_id", "department_id", "code", "name", "title", "expertise", "sex"],
            [
                (d, h, dep, f"doc{i}", "医生", "attending", "", "")
                for i, (d, h, dep) in enumerate(region.doctors)
            ],
        )
        account = _hex()
        await _copy(
            connection,
            "accounts",
            ["id", "phone_hash", "phone_enc", "password_hash", "display_name", "created_at"],
            [(account, _hex(), b"x", "x", "", now)],
        )
        timings["reference rows"] = time.perf_counter() - t0

        # ---- the read models: a year of department days, units drawn around the daily total
        t0 = time.perf_counter()
        n_dep = len(region.departments)
        per_dep = args.units / n_dep
        share_of_hospital = {h[0]: rng.uniform(0.5, 0.95) for h in region.hospitals}
        demand_of_catalog = {c: rng.uniform(0.4, 1.3) for c in region.catalogs}
        share = np.array([share_of_hospital[h] for _, h, _ in region.departments])
        demand = np.array([demand_of_catalog[c] for _, _, c in region.departments])
        first_day = LAST_DAY - timedelta(days=args.days - 1)
        rollups: list[tuple[Any, ...]] = []
        days_source: dict[date, tuple[np.ndarray, ...]] = {}
        source_from = LAST_DAY - timedelta(days=args.source_days - 1)
        for offset in range(args.days):
            day = first_day + timedelta(days=offset)
            released = gen.poisson(per_dep, n_dep)
            online = np.floor(released * share).astype(int)
            wanted = gen.poisson(online * demand)
            booked = np.minimum(wanted, online)
            refused = np.maximum(wanted - online, 0)
            cancelled = gen.binomial(booked, 0.08)
            no_shows = gen.binomial(booked - cancelled, 0.05)
            checked_in = booked - cancelled - no_shows
            joined = gen.binomial(refused, 0.3)
            served = gen.binomial(joined, 0.4)
            midnight = (gen.random(n_dep) < 0.002).astype(int)
            if day >= source_from:
                days_source[day] = (released, online, booked, cancelled, no_shows)
            for i, (department_id, hospital_id, code) in enumerate(region.departments):
                rollups.append(
                    (
                        day,
                        department_id,
                        hospital_id,
                        region.district_of[hospital_id],
                        code,
                        1,
                        int(released[i]),
                        int(online[i]),
                        int(released[i] - online[i]),
                        int(booked[i]),
                        int(cancelled[i]),
                        int(no_shows[i]),
                        int(checked_in[i]),
                        0,
                        0,
                        int(refused[i]),
                        int(joined[i]),
                        int(served[i]),
                        int(joined[i] - served[i]),
                        0,
                        30,
                        int(midnight[i]),
                        now,
                    )
                )
        # the tuples above are in the table's column order
        columns = [c.name for c in SupplyDemandDayRow.__table__.columns]
        timings["rollups built"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await _copy(connection, "supply_demand_days", columns, rollups)
        timings[f"rollups copied ({len(rollups)} rows)"] = time.perf_counter() - t0
        del rollups

        t0 = time.perf_counter()
        pairs = sorted({(h, c) for _, h, c in region.departments})
        measures = []
        for offset in range(args.days):
            day = first_day + timedelta(days=offset)
            tnaa = gen.integers(0, 15, len(pairs))
            for j, (hospital_id, code) in enumerate(pairs):
                days_to = int(tnaa[j])
                measures.append(
                    (
                        day,
                        hospital_id,
                        code,
                        region.district_of[hospital_id],
                        days_to if days_to < 14 else None,
                        days_to * 3,
                        now,
                    )
                )
        await _copy(
            connection,
            "access_measures",
            [
                "measured_on",
                "hospital_id",
                "catalog_code",
                "district",
                "third_next_days",
                "free_units",
                "measured_at",
            ],
            measures,
        )
        timings[f"access measures ({len(measures)} rows)"] = time.perf_counter() - t0
        del measures

        # ---- the record of truth for the last source days: sessions, slots, bookings
        t0 = time.perf_counter()
        sessions, slots, bookings = [], [], []
        statuses = ("cancelled_by_patient", "no_show", "checked_in")
        for day, (released, online, booked, cancelled, no_shows) in days_source.items():
            start = datetime(day.year, day.month, day.day, 0, 30, tzinfo=UTC)
            for i, (department_id, hospital_id, _code) in enumerate(region.departments):
                if released[i] == 0:
                    continue
                session_id = _hex()
                sessions.append(
                    (
                        session_id,
                        hospital_id,
                        department_id,
                        region.doctors[i][0],
                        day,
                        "morning",
                        "general",
                        1000,
                        start,
                        start + timedelta(hours=2),
                        start - timedelta(days=7),
                        start - timedelta(hours=1),
                        "finished",
                        True,
                        True,
                        "",
                        "first_come",
                        False,
                        0,
                    )
                )
                caps = np.array_split(np.arange(int(released[i])), 4)
                onl = int(online[i])
                slot_ids = []
                for seq, unit_ids in enumerate(caps):
                    capacity = len(unit_ids)
                    slot_online = min(capacity, onl)
                    onl -= slot_online
                    slot_id = _hex()
                    slot_ids.append((slot_id, slot_online))
                    slots.append(
                        (
                            slot_id,
                            session_id,
                            seq,
                            start + timedelta(minutes=30 * seq),
                            start + timedelta(minutes=30 * (seq + 1)),
                            capacity,
                            slot_online,
                            capacity - slot_online,
                            0,
                            start - timedelta(days=7),
                            "closed",
                        )
                    )
                kinds = (
                    [statuses[0]] * int(cancelled[i])
                    + [statuses[1]] * int(no_shows[i])
                    + [statuses[2]] * int(booked[i] - cancelled[i] - no_shows[i])
                )
                fill = [s for s, n in slot_ids for _ in range(n)]
                for k, status in enumerate(kinds):
                    bookings.append(
                        (
                            _hex(),
                            account,
                            fill[k],
                            session_id,
                            status,
                            _hex(),
                            1000,
                            False,
                            False,
                            start,
                            start - timedelta(days=2),
                            start,
                            start - timedelta(days=2),
                            1,
                            "regular",
                            hospital_id,
                            department_id,
                            day,
                            "",
                            "",
                            0,
                        )
                    )
        timings["source rows built"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await _copy(
            connection,
            "sessions",
            [
                "id",
                "hospital_id",
                "department_id",
                "doctor_id",
                "date",
                "period",
                "category",
                "fee_cents",
                "starts_at",
                "ends_at",
                "release_at",
                "cutoff_at",
                "status",
                "cutoff_done",
                "no_shows_marked",
                "external_id",
                "allocation",
                "lottery_drawn",
                "add_on_count",
            ],
            sessions,
        )
        await _copy(
            connection,
            "slots",
            [
                "id",
                "session_id",
                "seq",
                "starts_at",
                "ends_at",
                "capacity",
                "online_quota",
                "offline_quota",
                "online_booked",
                "release_at",
                "status",
            ],
            slots,
        )
        await _copy(
            connection,
            "bookings",
            [
                "id",
                "account_id",
                "slot_id",
                "session_id",
                "status",
                "idempotency_key",
                "fee_cents",
                "payment_required",
                "paid",
                "hold_expires_at",
                "created_at",
                "updated_at",
                "confirmed_at",
                "version",
                "kind",
                "hospital_id",
                "department_id",
                "visit_date",
                "ip_hash",
                "device_hash",
                "follow_up_visits",
            ],
            bookings,
        )
        timings[
            f"source rows copied ({len(sessions)} sessions, {len(slots)} slots,"
            f" {len(bookings)} bookings)"
        ] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # VACUUM as autovacuum would after bulk inserts: it sets the visibility map that
        # index-only scans (the access view's index) rely on
        await connection.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - t0
    finally:
        await connection.close()
    return timings


DERIVE_AREAS = """
INSERT INTO supply_demand_areas (day, district, catalog_code, hospitals, departments, released,
    online_released, offline_released, booked, cancelled, no_shows, checked_in, refused,
    waitlist_joined, waitlist_unserved, waitlist_waiting, updated_at)
SELECT day, district, catalog_code, count(DISTINCT hospital_id), count(*), sum(released),
       sum(online_released), sum(offline_released), sum(booked), sum(cancelled), sum(no_shows),
       sum(checked_in), sum(refused), sum(waitlist_joined), sum(waitlist_unserved),
       sum(waitlist_waiting), now()
FROM supply_demand_days GROUP BY day, district, catalog_code
"""

DERIVE_HOSPITALS = """
INSERT INTO supply_demand_hospital_days (day, hospital_id, district, released, online_released,
    offline_released, booked, cancelled, no_shows, add_on_untraced, midnight_releases,
    max_segment_minutes, min_onsite_permille, updated_at)
SELECT day, hospital_id, min(district), sum(released), sum(online_released),
       sum(offline_released), sum(booked), sum(cancelled), sum(no_shows), sum(add_on_untraced),
       sum(midnight_releases), max(max_segment_minutes),
       min(CASE WHEN released > 0 THEN offline_released * 1000 / released ELSE 1000 END), now()
FROM supply_demand_days GROUP BY day, hospital_id
"""


async def derive(url: str) -> dict[str, float]:
    """The region's and the hospitals' rows, summed from the departments' rows in bulk (what
    the subscriber keeps current row by row). Creates the tables on a cluster generated
    before they existed (``--reuse``)."""
    from guahao.platform.persistence.tables import SupplyDemandAreaRow, SupplyDemandHospitalRow

    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda c: SupplyDemandAreaRow.__table__.create(c, checkfirst=True)
        )
        await connection.run_sync(
            lambda c: SupplyDemandHospitalRow.__table__.create(c, checkfirst=True)
        )
    await engine.dispose()
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    timings = {}
    try:
        for table, sql in (
            ("supply_demand_areas", DERIVE_AREAS),
            ("supply_demand_hospital_days", DERIVE_HOSPITALS),
        ):
            t0 = time.perf_counter()
            await connection.execute(f"TRUNCATE {table}")
            await connection.execute(sql)
            await connection.execute(f"VACUUM ANALYZE {table}")
            count = await connection.fetchval(f"SELECT count(*) FROM {table}")
            timings[f"{table} summed ({count} rows)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await connection.execute("VACUUM ANALYZE access_measures")
        timings["access_measures vacuumed"] = time.perf_counter() - t0
    finally:
        await connection.close()
    return timings


# ------------------------------------------------------------------------- baselines (scans)

SCAN_SUPPLY_DEMAND = """
SELECT s.date, h.district, d.catalog_code, count(DISTINCT s.hospital_id), count(*),
       sum(sl.released), sum(sl.online), sum(coalesce(bk.booked, 0)),
       sum(coalesce(bk.cancelled, 0)), sum(coalesce(bk.no_shows, 0))
FROM sessions s
JOIN hospitals h ON h.id = s.hospital_id
JOIN departments d ON d.id = s.department_id
JOIN (SELECT session_id, sum(capacity) AS released, sum(online_quota) AS online
      FROM slots GROUP BY session_id) sl ON sl.session_id = s.id
LEFT JOIN (SELECT session_id,
                  count(*) FILTER (WHERE confirmed_at IS NOT NULL) AS booked,
                  count(*) FILTER (WHERE status LIKE 'cancelled%') AS cancelled,
                  count(*) FILTER (WHERE status = 'no_show') AS no_shows
           FROM bookings GROUP BY session_id) bk ON bk.session_id = s.id
WHERE s.date BETWEEN :a AND :b {extra}
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""

SCAN_RANKINGS = """
SELECT s.hospital_id, sum(sl.released), sum(sl.online), sum(coalesce(bk.booked, 0))
FROM sessions s
JOIN (SELECT session_id, sum(capacity) AS released, sum(online_quota) AS online
      FROM slots GROUP BY session_id) sl ON sl.session_id = s.id
LEFT JOIN (SELECT session_id, count(*) AS booked FROM bookings
           WHERE confirmed_at IS NOT NULL GROUP BY session_id) bk ON bk.session_id = s.id
WHERE s.date BETWEEN :a AND :b
GROUP BY 1
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def timed(
    run: Callable[[], Awaitable[Any]], rounds: int, cpu: list[float] | None = None
) -> list[float]:
    """Wall milliseconds of ``rounds`` runs; with ``cpu``, also this process's CPU
    milliseconds (fetching and shaping the rows: what a loaded machine does not inflate by
    making the run wait; the server's own work is not in it)."""
    await run()  # warm caches once
    times = []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        await run()
        times.append((time.perf_counter() - start) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - start_cpu) * 1000)
    return times


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(url)
    sessions = session_factory(engine)

    class _Ports:  # the service reads only ``sessions``
        def __init__(self) -> None:
            self.sessions = sessions

    figures = AuthorityFigures(_Ports())  # type: ignore[arg-type]
    rng = random.Random(3)
    async with sessions() as session:
        districts = list(
            (await session.scalars(text("SELECT DISTINCT district FROM hospitals"))).all()
        )
        catalogs = list(
            (await session.scalars(text("SELECT DISTINCT catalog_code FROM departments"))).all()
        )
    last = LAST_DAY
    month = last.replace(day=1)
    src_from = last - timedelta(days=args.source_days - 1)

    def week() -> FigureScope:
        end = last - timedelta(days=rng.randrange(0, args.days - 7))
        return FigureScope(date_from=end - timedelta(days=6), date_to=end)

    async def scan(sql: str, **params: Any) -> None:
        async with sessions() as session:
            (await session.execute(text(sql), params)).all()

    views: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]] | None]] = [
        (
            "supply-demand: region, 30 days",
            lambda: figures.supply_demand(ADMIN, FigureScope(src_from, last)),
            lambda: scan(SCAN_SUPPLY_DEMAND.format(extra=""), a=src_from, b=last),
        ),
        (
            "supply-demand: one district, 30 days",
            lambda: figures.supply_demand(
                ADMIN, FigureScope(src_from, last, district=rng.choice(districts))
            ),
            lambda: scan(
                SCAN_SUPPLY_DEMAND.format(extra="AND h.district = :d"),
                a=src_from,
                b=last,
                d=rng.choice(districts),
            ),
        ),
        (
            "supply-demand: region, a random week",
            lambda: figures.supply_demand(ADMIN, week()),
            None,
        ),
        (
            "supply-demand: one specialty, a year",
            lambda: figures.supply_demand(
                ADMIN,
                FigureScope(
                    last - timedelta(days=args.days - 1), last, catalog_code=rng.choice(catalogs)
                ),
            ),
            None,
        ),
        (
            "access (3rd next): one specialty, 90 days",
            lambda: figures.access(
                ADMIN,
                FigureScope(last - timedelta(days=89), last, catalog_code=rng.choice(catalogs)),
            ),
            None,
        ),
        (
            "rankings: a month",
            lambda: figures.rankings(ADMIN, month),
            lambda: scan(SCAN_RANKINGS, a=month, b=last),
        ),
        (
            "compliance: a month",
            lambda: figures.compliance(ADMIN, FigureScope(month, last)),
            None,
        ),
        (
            "unmet demand: a month, top 50",
            lambda: figures.unmet_demand(ADMIN, FigureScope(month, last)),
            None,
        ),
    ]
    results: dict[str, Any] = {}
    header = (
        f"{'view':<42}{'p50 ms':>8}{'p95 ms':>8}{'cpu p95':>8}"
        f"   {'scan p50':>9}{'scan p95':>9}  {'p95 x':>6}"
    )
    load_before = os.getloadavg()
    print(f"load average before the views: {load_before[0]:.2f}")
    print(header)
    print("-" * len(header))
    for name, view, baseline in views:
        cpu: list[float] = []
        times = await timed(view, args.rounds, cpu)
        row: dict[str, Any] = {
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "cpu_p95": percentile(cpu, 95),
        }
        line = f"{name:<42}{row['p50']:>8.1f}{row['p95']:>8.1f}{row['cpu_p95']:>8.1f}"
        if baseline is not None:
            scan_times = await timed(baseline, max(3, args.rounds // 4))
            row["scan_p50"] = percentile(scan_times, 50)
            row["scan_p95"] = percentile(scan_times, 95)
            ratio = row["scan_p95"] / row["p95"]
            line += f"   {row['scan_p50']:>9.1f}{row['scan_p95']:>9.1f}  {ratio:>6.1f}"
        print(line, flush=True)
        results[name] = row
    load_after = os.getloadavg()
    print(f"load average after the views: {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min)")
    results["load_average"] = {"before": load_before, "after": load_after}
    await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hospitals", type=int, default=200)
    parser.add_argument("--units", type=int, default=50_000, help="units released a day")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--source-days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--dir", default="/tmp/guahao-console-bench")
    parser.add_argument("--reuse", action="store_true", help="measure the kept cluster again")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()

    directory = Path(args.dir)
    admin_url = local_postgres.start(directory)
    try:
        url = local_postgres.url(directory, "console_bench")
        timings: dict[str, float] = {}
        if args.reuse:  # a cluster generated before the latest migrations (indexes) gets them
            t0 = time.perf_counter()
            asyncio.run(upgrade_async(url))
            timings["migrations"] = time.perf_counter() - t0
        else:
            local_postgres.dropdb(directory, "console_bench")
            url = local_postgres.createdb(directory, "console_bench")
            t0 = time.perf_counter()
            asyncio.run(upgrade_async(url))
            timings["migrations"] = time.perf_counter() - t0
            dsn = url.replace("postgresql+asyncpg://", "postgresql://")
            timings.update(asyncio.run(generate(dsn, args)))
        timings.update(asyncio.run(derive(url)))
        if timings:
            total = sum(timings.values())
            for part, seconds in timings.items():
                print(f"  {part}: {seconds:.1f} s")
            print(f"generated in {total:.0f} s", flush=True)
        results = asyncio.run(measure(url, args))
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        (out / f"console_figures-{stamp}.json").write_text(
            json.dumps(
                {"args": vars(args), "generation_seconds": timings, "views": results},
                indent=2,
                ensure_ascii=False,
            )
        )
        del admin_url
    finally:
        if not args.keep:
            local_postgres.stop(directory)


if __name__ == "__main__":
    main()

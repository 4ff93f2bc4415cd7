"""The release surge over HTTP (issue 15): the platform against the framework's own ceiling.

Not a test: it prints a table and writes ``bench/results/http_surge-<time>.json``.

What runs, against servers this script starts and stops itself (one throwaway PostgreSQL
cluster, one loopback Redis per platform, uvicorn on uvloop + httptools for every server):

- **ceiling**: ``bench/http_ceiling.py``'s ``GET /plain``, a plain Litestar route returning a
  small JSON object, served exactly as the platform is;
- **platform (PostgreSQL)**: ``guahao serve`` on the demo region, with 30 000 accounts;
  ``POST /api/v1/holds`` on a sold-out slot and on open slots (every grant by an account of its
  own), a doctor's availability and a search, and sold-out holds at 1 000 connections;
- **platform (SQLite)**: the embedded default, the same hold rows;
- **row lock**: ``bench/http_ceiling.py``'s ``POST /pg/holds``, the common approach (``SELECT …
  FOR UPDATE`` in PostgreSQL), sold out and granted.

wrk drives every row (``bench/wrk/surge.lua``): each request is a citizen of its own, with a
token, a fresh ``Idempotency-Key`` and an ``X-Forwarded-For`` address among 2 000 (carrier
NAT puts many citizens behind one address; the rate limits stay on). The end checks that
nothing was oversold: every slot balanced in Redis, SQL's active bookings equal to Redis's
held + booked units per slot, and grants answered equal to the units taken.

The machine has 2 cores shared by servers, wrk and other people's work: only ratios from the
same run mean anything; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psutil
import sqlalchemy as sa
from limits import parse_many

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.work_dirs import tidy  # noqa: E402
from guahao.bootstrap import open_platform  # noqa: E402
from guahao.config import load_settings  # noqa: E402
from guahao.platform.bookings import ACTIVE_STATUSES  # noqa: E402
from guahao.platform.demo_region import build_demo_region  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.persistence.tables import (  # noqa: E402
    AccountRow,
    BookingRow,
    SessionRow,
    SlotRow,
)
from guahao.web.auth import TokenIssuer  # noqa: E402
from guahao.worker_processes import ACCEPT_BALANCES  # noqa: E402
from infra import local_postgres  # noqa: E402

LUA = ROOT / "bench" / "wrk" / "surge.lua"
SECRET = base64.b64encode(b"http-surge-bench-secret-key-0123456789ab").decode()
DATA_KEY = base64.b64encode(b"http-surge-bench-data-key-012345").decode()
SEARCHES = ["心内科", "儿科", "头痛", "xnk", "眼科", "发烧", "皮肤科", "王"]
SOLD_OUT_ACCOUNTS = 40_000
"""The signed-in crowd (``--signed-in``): each account must stay under the region's
``hold_per_account`` (30 a minute) over the warm-up and the sold-out pairs, or the row measures
429s. At 20 000 a faster day (27 000 answers/s, 8 s + 3 × 6 s) made each account ask 31 times
and the third pair answered 19 172 429s (session 17)."""
GRANT_ACCOUNTS = 160_000
"""Accounts of the granted rows, half for the one-worker row and half for the two-worker row:
each account holds once (its marker refuses a second unfinished hold with a 409), so a row must
not grant more than its half. At 40 000 a one-worker row of 6 s granting 4 200 /s ran into the
two-worker row's accounts, which then answered 5 664 409s (session 14); at 80 000 a quiet day's
one-worker row granted 48 905 (session 17)."""
GRANT_DAYS = 4
"""Days after the demo's own set apart for the granted rows, their sessions' units scaled by
``GRANT_SCALE``: the whole row must grant (the demo's own two days hold about 850 open units,
a few hundred milliseconds of grants), so a 409 in it means a unit ran out, not the bench."""
GRANT_SCALE = 50


@dataclass
class Row:
    """One wrk run."""

    name: str
    server: str
    connections: int
    requests: int = 0
    seconds: float = 0.0
    per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: int = 0
    ceiling_per_s: float = 0.0
    ratio: float = 0.0
    cpu_ms: float = 0.0
    """CPU time of the serving processes (all workers) per answered request: whether a row
    is bound by the server's CPU (``cpu_ms * req/s`` near 1 000 per worker) or waits."""
    cores_server: float = 0.0
    """Cores the serving processes used over the row (CPU seconds ÷ wall seconds)."""
    cores_wrk: float = 0.0
    """Cores wrk used over the row: the load generator shares the machine's 2 cores."""
    cores_others: float = 0.0
    """Cores every other process on the machine used over the row (``/proc/stat``'s busy
    time less the server's and wrk's): other people's work competing for the cores."""
    cpu_ratio: float = 0.0
    """The ceiling's CPU per answer over this row's (from the same ceiling row as ``ratio``):
    the answers per second the row would give beside the ceiling if both had the same share
    of the cores. Less moved than ``ratio`` by other work taking cores during one of the two
    rows, though not immune (a contended core also costs more CPU per answer)."""
    pg_cpu_ms: float = 0.0
    """CPU time of the PostgreSQL cluster (the postmaster and every backend and helper it
    started) per answered request: what each request cost the database sharing the cores."""
    redis_cpu_ms: float = 0.0
    """CPU time of the platform's Redis per answered request (the same sharing)."""
    redis_commands: dict[str, float] = field(default_factory=dict)
    """The commands Redis ran per answered request (``INFO commandstats``; those a script
    runs counted under their own names and in its ``evalsha``)."""
    redis_usec: dict[str, float] = field(default_factory=dict)
    """The microseconds Redis spent in each command per answered request (the same
    ``commandstats``; a script's ``evalsha`` includes the commands it ran)."""
    ceiling_cpu_ms: float = 0.0
    """The ceiling row's server CPU per answer (``cpu_ratio``'s numerator)."""
    per_worker: list[int] = field(default_factory=list)
    """Several workers: the connections each worker held halfway through the row (how
    evenly the kernel handed out the crowd's connections)."""


@dataclass
class Target:
    """A served platform: its URL, its token file, slots and reads."""

    url: str
    tokens: Path
    crowd_tokens: Path
    """The sold-out accounts' tokens only (``--signed-in``: the crowd that retries)."""
    sold_out: Path
    open_slots: Path
    availability: Path
    searches: Path
    units_open: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")
        time.sleep(0.3)


def _environment(data_dir: Path, database_url: str, redis_url: str) -> dict[str, str]:
    return {
        "GUAHAO_DATA_DIR": str(data_dir),
        "GUAHAO_DATABASE_URL": database_url,
        "GUAHAO_REDIS_URL": redis_url,
        "GUAHAO_SECRET_KEY": SECRET,
        "GUAHAO_DATA_KEY": DATA_KEY,
        "GUAHAO_RUN_JOBS": "false",
        "GUAHAO_LOG_LEVEL": "WARNING",
    }


async def _seed(environ: dict[str, str], out: Path, days: int, *, settled: bool = False) -> Target:
    """The demo region, the accounts and their tokens, the slots the rows aim at.

    ``settled``: for served workers that run the jobs (``--run-jobs``), the region as a running
    one is: its pool rebuilt once (the generation the sweep looks for marked, as ``guahao run``
    does on a restart) and the outbox's backlog of the publishing delivered. Otherwise the
    first sweep rebuilds every slot, and the relay works off the publishing, inside the
    first row."""
    settings = load_settings(environ)
    region = build_demo_region()
    async with open_platform(settings) as platform:
        today = platform.ports.clock.now().date()
        for hospital in region.hospitals:
            await platform.supply.register_hospital(hospital)
        sessions = []
        for hospital in region.hospitals:
            sessions += platform.supply.sessions_from_roster(
                hospital, [today + timedelta(days=i) for i in range(days)]
            )
            sessions += [
                msgspec.structs.replace(
                    spec,
                    segments=tuple(
                        msgspec.structs.replace(segment, capacity=segment.capacity * GRANT_SCALE)
                        for segment in spec.segments
                    ),
                )
                for spec in platform.supply.sessions_from_roster(
                    hospital, [today + timedelta(days=i) for i in range(days, days + GRANT_DAYS)]
                )
            ]
        started = time.perf_counter()
        await platform.supply.publish_sessions(sessions)
        print(f"  {len(sessions)} sessions published in {time.perf_counter() - started:.1f} s")
        await platform.search.reindex()
        if settled:
            await platform.pool_recovery.rebuild()
            while await platform.dispatcher.dispatch_pending():
                pass
        now = platform.ports.clock.now()
        issuer = TokenIssuer(settings.secret("secret_key"), settings.token_minutes)
        accounts = [secrets.token_hex(8) for _ in range(SOLD_OUT_ACCOUNTS + GRANT_ACCOUNTS)]
        async with platform.engine.begin() as connection:
            await connection.execute(
                sa.insert(AccountRow),
                [
                    {
                        "id": account,
                        "phone_hash": account,
                        "phone_enc": b"",
                        "password_hash": "",
                        "display_name": "bench",
                        "created_at": now,
                    }
                    for account in accounts
                ],
            )
            rows = (
                await connection.execute(
                    sa.select(SlotRow.id, SlotRow.online_quota, SessionRow.doctor_id)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(
                        SessionRow.release_at <= now, SlotRow.starts_at > now + timedelta(hours=2)
                    )
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        slot_ids = [row.id for row in rows]
        counts = await platform.ports.inventory.counts(slot_ids, now_ms=int(now.timestamp() * 1000))
        open_slots = [s for s in slot_ids if counts[s].available > 0]
        if len(open_slots) < 2:
            raise RuntimeError("the demo region has no open slots to hold")
        # one slot sold out by holds of accounts the rows never use
        hot, *rest = open_slots
        for n in range(counts[hot].available):
            await platform.bookings.hold(
                account_id=accounts[-1 - n], slot_id=hot, idempotency_key=f"sellout-{n}"
            )
        # the granted rows aim at the scaled sessions only: a demo slot of two units would
        # answer 409 once they are gone, and the row would measure refusals
        rest = [s for s in rest if counts[s].available >= GRANT_SCALE] or rest
        tokens = out / "tokens.txt"
        tokens.write_text("".join(f"{issuer.issue(a)}\n" for a in accounts[:-50]))
        crowd_tokens = out / "crowd_tokens.txt"
        crowd_tokens.write_text(
            "".join(f"{issuer.issue(a)}\n" for a in accounts[:SOLD_OUT_ACCOUNTS])
        )
        (out / "sold_out.txt").write_text(hot + "\n")
        (out / "open.txt").write_text("".join(f"{s}\n" for s in rest))
        doctors = sorted({row.doctor_id for row in rows})
        (out / "availability.txt").write_text(
            "".join(f"/api/v1/doctors/{d}/availability\n" for d in doctors)
        )
        (out / "searches.txt").write_text(
            "".join(f"/api/v1/search?q={urllib.request.quote(q)}\n" for q in SEARCHES)
        )
        return Target(
            url="",
            tokens=tokens,
            crowd_tokens=crowd_tokens,
            sold_out=out / "sold_out.txt",
            open_slots=out / "open.txt",
            availability=out / "availability.txt",
            searches=out / "searches.txt",
            units_open=sum(counts[s].available for s in rest),
        )


async def _check(environ: dict[str, str], granted: int) -> dict[str, Any]:
    """Oversold 0: Redis balanced per slot, SQL's active bookings equal Redis's held + booked
    per slot, and the grants answered over HTTP no more than the active bookings."""
    settings = load_settings(environ)
    async with open_platform(settings, migrate=False) as platform:
        now = platform.ports.clock.now()
        async with platform.engine.connect() as connection:
            slot_ids = list((await connection.scalars(sa.select(SlotRow.id))).all())
            active = dict(
                (
                    await connection.execute(
                        sa.select(BookingRow.slot_id, sa.func.count())
                        .where(BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]))
                        .group_by(BookingRow.slot_id)
                    )
                ).all()
            )
            per_transaction = None
            if connection.dialect.name == "postgresql":  # rows of one transaction share xmin
                per_transaction = await connection.scalar(
                    sa.text(
                        "SELECT round(count(*)::numeric / greatest(count(DISTINCT xmin::text), 1),"
                        " 1) FROM bookings WHERE status = 'held'"
                    )
                )
        counts = await platform.ports.inventory.counts(slot_ids, now_ms=int(now.timestamp() * 1000))
    oversold = sum(
        1
        for c in counts.values()
        if c.held + c.booked + c.returning + c.available != c.capacity or c.available < 0
    )
    disagree = sum(1 for s, c in counts.items() if c.held + c.booked != active.get(s, 0))
    return {
        "slots": len(slot_ids),
        "oversold_slots": oversold,
        "sql_redis_disagreeing_slots": disagree,
        "active_bookings": sum(active.values()),
        "grants_answered": granted,
        "held_rows_a_transaction": None if per_transaction is None else float(per_transaction),
    }


PROFILE: dict[str, Any] = {}
PINNED: dict[str, set[int]] = {}
"""With ``--pin``: ``server`` the cores of the server under test, ``rest`` everyone else's."""


def _on_server_cores() -> None:
    """Popen's ``preexec_fn``: the server under test (the ceiling's and the platform's alike)
    runs on its own core, as it would on a machine of its own."""
    if PINNED:
        os.sched_setaffinity(0, PINNED["server"])


"""``--profile DIR``: the directory and the served platform's pid, set while it runs."""

SERVED: dict[str, int] = {}
"""The pid of the server each kind of row runs against (``platform``, ``ceiling``; and
``postgresql``, the cluster's postmaster, whose backends are its children), for
the CPU it spends per request."""


def _redis_pid(port: int) -> int:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "server"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"^process_id:(\d+)", info, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def _redis_commands() -> dict[str, tuple[int, int]]:
    """Calls and microseconds of each command the platform's Redis has run so far (none: no
    such Redis)."""
    if "redis port" not in SERVED:
        return {}
    info = subprocess.run(
        ["redis-cli", "-p", str(SERVED["redis port"]), "info", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.findall(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", info, re.MULTILINE)
    return {name: (int(calls), int(usec)) for name, calls, usec in found}


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU of ``pid`` and its children (a supervisor's workers)."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        return 0.0
    return total


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (``/proc/stat``, every core)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    """CPU seconds of this script's waited-for children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _connections_per_worker(pid: int | None, port: int) -> list[int]:
    """Established connections on ``port`` held by each child of ``pid`` (a supervisor's
    workers), in the order of their pids; empty for a single process."""
    if pid is None or not port:
        return []
    try:
        workers = sorted(psutil.Process(pid).children(), key=lambda p: p.pid)
        return [
            sum(
                1
                for c in worker.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
            )
            for worker in workers
        ]
    except psutil.Error:
        return []


def _wrk(row: Row, url: str, args: list[str], seconds: int) -> Row:
    threads = 2
    spy = None
    if PROFILE.get("pid") and row.server == "platform":
        name = re.sub(r"[^a-z0-9]+", "-", f"{row.name} c{row.connections}".lower()).strip("-")
        spy = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(PROFILE["pid"]),
                "--duration",
                str(max(1, seconds - 1)),
                *(["--idle"] if PROFILE.get("idle") else ["--gil"]),
                "--nonblocking",
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(PROFILE["dir"] / f"{name}.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{row.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        *args[:4],
        str(threads),
        *args[4:],
    ]
    served = SERVED.get(row.server)
    cpu_before = _cpu_seconds(served)
    pg_before = _cpu_seconds(SERVED.get("postgresql"))
    redis_before = _cpu_seconds(SERVED.get("redis"))
    commands_before = _redis_commands()
    wrk_before = _children_seconds()
    busy_before = _busy_seconds()
    started = time.monotonic()
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if served is not None and psutil.Process(served).children():
        try:
            driver.wait(timeout=seconds / 2)
        except subprocess.TimeoutExpired:
            row.per_worker = _connections_per_worker(served, int(url.rsplit(":", 1)[1]))
    stdout, stderr = driver.communicate()
    wall = time.monotonic() - started
    cpu_spent = _cpu_seconds(served) - cpu_before
    pg_spent = _cpu_seconds(SERVED.get("postgresql")) - pg_before
    redis_spent = _cpu_seconds(SERVED.get("redis")) - redis_before
    commands = _redis_commands()
    wrk_spent = _children_seconds() - wrk_before
    busy = _busy_seconds() - busy_before
    row.cores_server = cpu_spent / wall
    row.cores_wrk = wrk_spent / wall
    row.cores_others = max(0.0, busy - cpu_spent - wrk_spent) / wall
    if spy is not None:
        spy.wait()
    if driver.returncode != 0:
        raise RuntimeError(f"wrk failed ({driver.returncode}):\n{stdout}\n{stderr}")
    found = re.search(r"^WRK-RESULT (.*)$", stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk gave no result:\n{stdout}\n{stderr}")
    result = json.loads(found.group(1))
    row.requests = result["requests"]
    row.seconds = result["seconds"]
    row.per_s = row.requests / row.seconds
    row.p50_ms = result["p50_us"] / 1000
    row.p99_ms = result["p99_us"] / 1000
    row.cpu_ms = cpu_spent * 1000 / row.requests if row.requests else 0.0
    row.pg_cpu_ms = pg_spent * 1000 / row.requests if row.requests else 0.0
    row.redis_cpu_ms = redis_spent * 1000 / row.requests if row.requests else 0.0
    if row.requests and row.server == "platform":
        ran = {
            name: (calls - before[0], usec - before[1])
            for name, (calls, usec) in sorted(commands.items())
            for before in [commands_before.get(name, (0, 0))]
            if calls > before[0]
        }
        row.redis_commands = {name: calls / row.requests for name, (calls, _) in ran.items()}
        row.redis_usec = {name: usec / row.requests for name, (_, usec) in ran.items()}
    row.statuses = {str(k): v for k, v in result["statuses"].items()}
    row.socket_errors = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return row


def _serve_platform(
    environ: dict[str, str], port: int, workers: int, log: Path, balance: str = "reuseport"
) -> subprocess.Popen[bytes]:
    command = [str(ROOT / ".venv" / "bin" / "guahao"), "serve", "--port", str(port)]
    if workers > 1:  # the supervisor of `guahao serve --workers`, on the embedded search
        command = [
            sys.executable,
            "-m",
            "bench.serve_workers",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--balance",
            balance,
        ]
    process = subprocess.Popen(
        command,
        env=os.environ | environ,
        cwd=ROOT,
        start_new_session=True,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=_on_server_cores,
    )
    _wait_http(f"http://127.0.0.1:{port}/health")
    return process


_CEILING_SERVER = """
import sys, uvicorn
from guahao.http_server import DropLoggingHttpToolsProtocol, accepting_sockets
from guahao.worker_processes import bind_listener
config = uvicorn.Config("bench.http_ceiling:app", loop="uvloop",
                        http=DropLoggingHttpToolsProtocol, log_level="warning",
                        access_log=False)
uvicorn.Server(config).run(sockets=accepting_sockets(bind_listener("127.0.0.1", int(sys.argv[1]))))
"""


def _serve_ceiling(dsn: str, port: int, *, stock: bool = False) -> subprocess.Popen[bytes]:
    """The plain route served as ``guahao serve`` serves (``guahao.http_server``: the same
    protocol and accepting sockets), or with ``stock`` by uvicorn's own command line as it
    ships (httptools, one descriptor on the listening socket)."""
    command = [sys.executable, "-c", _CEILING_SERVER, str(port)]
    if stock:
        command = [
            str(ROOT / ".venv" / "bin" / "uvicorn"),
            "bench.http_ceiling:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
        ]
    process = subprocess.Popen(
        command,
        env=os.environ | {"BENCH_PG_DSN": dsn},
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_on_server_cores,
    )
    _wait_http(f"http://127.0.0.1:{port}/plain")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _prepare_row_lock(dsn: str, open_slots: int, units: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "DROP TABLE IF EXISTS bench_holds; DROP TABLE IF EXISTS bench_slots;"
            "CREATE TABLE bench_slots (id text PRIMARY KEY, remaining int NOT NULL"
            " CHECK (remaining >= 0));"
            "CREATE TABLE bench_holds (id text PRIMARY KEY, slot_id text NOT NULL"
            " REFERENCES bench_slots, account text NOT NULL)"
        )
        await connection.executemany(
            "INSERT INTO bench_slots VALUES ($1, $2)",
            [("hot", 0), *((f"s{n}", units) for n in range(open_slots))],
        )
    finally:
        await connection.close()


async def _row_lock_balance(dsn: str, units: int) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        # one statement, one snapshot: holds committed in between cannot skew the two counts
        given, taken = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM bench_holds),"
            " (SELECT coalesce(sum($1::int - remaining), 0) FROM bench_slots WHERE id <> 'hot')",
            units,
        )
        return {"holds": int(given), "units_taken": int(taken)}
    finally:
        await connection.close()


def _ratio(row: Row, ceiling: Row) -> Row:
    row.ceiling_per_s = ceiling.per_s
    row.ratio = row.per_s / ceiling.per_s if ceiling.per_s else 0.0
    row.cpu_ratio = ceiling.cpu_ms / row.cpu_ms if row.cpu_ms else 0.0
    row.ceiling_cpu_ms = ceiling.cpu_ms
    return row


def _machine_bound(row: Row, cores: int) -> str | None:
    """What the processes beside the server leave a row on this machine, or None for a row
    that measured none of them (the reads, the ceilings).

    PostgreSQL, Redis and wrk take ``rest`` ms of CPU a request whatever the server's code
    does. Were the server's answer to cost no more than the ceiling's plain JSON, ``cores``
    cores entirely busy would answer at most ``cores / (ceiling's cpu + rest)`` a ms, and with
    the server pinned to a core of its own (``--pin``) the other cores at most
    ``(cores - 1) / rest``: both as ratios to the ceiling, the bound any server code meets
    at this row's cost to the others (issue 15's granted target is 0.5). Not for the
    embedded default's rows: their database is in the server's process, and the cluster and
    Redis measured beside them are the PostgreSQL platform's, idling."""
    if row.pg_cpu_ms < 0.001 or "SQLite" in row.name or not row.per_s or not row.ceiling_per_s:
        return None
    wrk = row.cores_wrk / row.per_s * 1000
    rest = row.pg_cpu_ms + row.redis_cpu_ms + wrk
    free = cores * 1000 / (row.ceiling_cpu_ms + rest) / row.ceiling_per_s
    pinned = (cores - 1) * 1000 / rest / row.ceiling_per_s
    return (
        f"What the rest of the machine leaves, {row.name}: PostgreSQL {row.pg_cpu_ms:.3f} + "
        f"Redis {row.redis_cpu_ms:.3f} + wrk {wrk:.3f} = {rest:.3f} ms a request; a server "
        f"answering it at the ceiling's {row.ceiling_cpu_ms:.3f} ms would reach at most "
        f"{free:.2f} of the ceiling with {cores} cores entirely busy, {pinned:.2f} pinned"
    )


def _print(rows: list[Row]) -> None:
    print(
        f"\n| {'row':<48} | conns | req/s   | ceiling | ratio | p50 ms | p99 ms | cpu ms/req "
        f"| cpu ratio | cores srv/wrk/other | statuses |\n"
        f"| {'-' * 48} | ----- | ------- | ------- | ----- | ------ | ------ | ---------- "
        f"| --------- | ------------------- | -------- |"
    )
    for r in rows:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        if r.socket_errors:
            statuses += f" socket-errors:{r.socket_errors}"
        if r.pg_cpu_ms >= 0.001:
            statuses += f" pg-cpu-ms:{r.pg_cpu_ms:.3f}"
        if r.redis_cpu_ms >= 0.001:
            statuses += f" redis-cpu-ms:{r.redis_cpu_ms:.3f}"
        if r.per_worker:
            statuses += " conns/worker:" + "+".join(str(n) for n in r.per_worker)
        cores = f"{r.cores_server:.2f}/{r.cores_wrk:.2f}/{r.cores_others:.2f}"
        print(
            f"| {r.name:<48} | {r.connections:>5} | {r.per_s:>7.0f} | {r.ceiling_per_s:>7.0f} "
            f"| {r.ratio:>5.2f} | {r.p50_ms:>6.1f} | {r.p99_ms:>6.1f} | {r.cpu_ms:>10.3f} "
            f"| {r.cpu_ratio:>9.2f} | {cores:>19} | {statuses} |"
        )
    for r in rows:
        if r.redis_commands:
            each = ", ".join(f"{name} {calls:.2f}" for name, calls in r.redis_commands.items())
            print(f"Redis's commands a request, {r.name}: {each}")
            each = ", ".join(f"{name} {usec:.2f}" for name, usec in r.redis_usec.items())
            print(f"Redis's usec a request by command, {r.name}: {each}")
    for r in rows:
        bound = _machine_bound(r, os.cpu_count() or 1)
        if bound is not None:
            print(bound)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


CROWD_ADDRESSES = 2000
"""The ``X-Forwarded-For`` addresses ``bench/wrk/surge.lua`` spreads every row over."""


async def _addresses_at_limit(environ: dict[str, str], window: str) -> int:
    """Put every crowd address's ``hold:ip`` counter at its limit: as a minute above it leaves
    it (``window`` "previous": the previous window full and expiring over the next one, the
    current one empty, so the window frees hits as the crowd sends them), or as a client
    hammering leaves it ("current": the current window full, every request refused until it
    shifts). The full two-worker sequence brings the addresses near the first, on a fast
    machine only: a reproducer of the limiter's exact path that does not depend on the rates
    of the rows before. The keys are the ``limits`` library's, as the limiter names them."""
    settings = load_settings(environ)
    async with open_platform(settings) as platform:
        spec = (await platform.rules.region()).rate_limits.hold_per_ip
        (item,) = parse_many(spec)
        window_ms = item.get_expiry() * 1000
        async with platform.redis.pipeline(transaction=False) as pipe:
            for n in range(CROWD_ADDRESSES):  # the addresses of surge.lua's ``request()``
                address = f"10.{n % 250}.{n // 250 % 8}.7"
                ident = platform.ports.vault.index("ip", address)
                current = f"guahao-limits:{{{item.key_for('hold:ip', ident)}}}"
                if window == "previous":
                    pipe.set(f"{current}/-1", item.amount, px=window_ms)
                    pipe.delete(current)
                else:
                    pipe.delete(f"{current}/-1")
                    pipe.set(current, item.amount, px=2 * window_ms)
            await pipe.execute()
        return item.amount


def _paced_row(
    options: argparse.Namespace,
    target: Target,
    url: str,
    label: str,
    closed_loop: Row | None,
    crowd: Row,
    ceiling: Row,
    seconds: int,
) -> Row:
    """Sold-out holds from ``--crowd`` connections that each pause between an answer and their
    next request (wrk's ``delay()``), so that together they offer ``--paced-share`` of the
    sold-out capacity the closed-loop rows just measured (the lower of the 64- and the
    1 000-connection rates: 1 000 open connections cost the server too): citizens at a
    release, who each wait for their answer and look at it, rather than 1 000 clients sending
    with no pause, whose latency is the queue Little's law predicts. Each request's latency is
    measured from its send, so the figures are the answer time of a request arriving at that
    rate."""
    capacity = min(closed_loop.per_s, crowd.per_s) if closed_loop else crowd.per_s
    offered = options.paced_rate or options.paced_share * capacity
    pause_ms = max(1, round(options.crowd / offered * 1000)) if offered > 0 else 1000
    pace = f"{offered:.0f}/s" if options.paced_rate else f"{options.paced_share:.0%}"
    row = Row(
        f"sold-out holds, paced {pace} ({label})",
        "platform",
        options.crowd,
    )
    args = ["hold", str(target.tokens), str(target.sold_out), "0", "/api/v1/holds"]
    return _ratio(_wrk(row, url, [*args, str(pause_ms)], seconds), ceiling)


def _read_rows(
    name: str, url: str, paths: Path, ceiling: Row, options: argparse.Namespace
) -> list[Row]:
    """A read row (``name`` without its closing parenthesis); with ``--warm-up`` the same
    requests first for that many seconds on the same server, reported as the cold row: the
    measured row then starts with every answer remembered, as a release's crowd finds them
    minutes in, where the cold row reads each first answer while its connections wait."""
    rows: list[Row] = []
    suffix = ")"
    if options.warm_up:
        rows.append(
            _ratio(
                _wrk(
                    Row(
                        f"{name}, cold: warm-up {options.warm_up} s)",
                        "platform",
                        options.connections,
                    ),
                    url,
                    ["get", "-", str(paths), "0"],
                    options.warm_up,
                ),
                ceiling,
            )
        )
        suffix = ", warm)"
    rows.append(
        _ratio(
            _wrk(
                Row(name + suffix, "platform", options.connections),
                url,
                ["get", "-", str(paths), "0"],
                options.seconds,
            ),
            ceiling,
        )
    )
    return rows


def _row_lock_rows(
    options: argparse.Namespace,
    pg: Target,
    row_lock_dsn: str,
    ceiling_url: str,
    ceiling: Row,
    rows: list[Row],
    checks: dict[str, Any],
    work: Path,
) -> None:
    """The common approach beside the platform: a PostgreSQL row lock per hold."""
    seconds, c = options.seconds, options.connections
    units = 50
    asyncio.run(_prepare_row_lock(row_lock_dsn, 2_000, units))
    slots = work / "rowlock-open.txt"
    slots.write_text("".join(f"s{n}\n" for n in range(2_000)))
    hot = work / "rowlock-hot.txt"
    hot.write_text("hot\n")
    rows.append(
        _ratio(
            _wrk(
                Row("row lock: sold-out holds", "row lock", c),
                ceiling_url,
                ["hold", str(pg.tokens), str(hot), "0", "/pg/holds"],
                seconds,
            ),
            ceiling,
        )
    )
    lock_granted = _ratio(
        _wrk(
            Row("row lock: granted holds", "row lock", c),
            ceiling_url,
            ["hold", str(pg.tokens), str(slots), "0", "/pg/holds"],
            seconds,
        ),
        ceiling,
    )
    rows.append(lock_granted)
    balance = asyncio.run(_row_lock_balance(row_lock_dsn, units))
    checks["row_lock"] = balance | {"grants_answered": lock_granted.statuses.get("201", 0)}


ROW_KINDS = ("sold-out", "availability", "search", "granted", "crowd", "row-lock")
"""The rows ``--only`` selects (``crowd``: the 1 000-connection rows, closed loop and paced;
it paces from ``sold-out``'s row too when that runs, else from its own closed loop, unless
``--paced-rate`` sets the pace)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="each wrk row's duration")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--crowd", type=int, default=1000, help="connections of the p99 rows")
    parser.add_argument(
        "--paced-share",
        type=float,
        default=0.7,
        help="the paced row's offered rate, a share of the closed-loop sold-out rate",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=0.0,
        help="the paced rows' offered rate in requests/s instead of a share (the same load "
        "for every worker count and balance of the run)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--balance",
        nargs="+",
        choices=ACCEPT_BALANCES,
        default=["reuseport"],
        help="how several workers share the port (each is run in turn): a SO_REUSEPORT "
        "socket each, or one shared socket (guahao/worker_processes.py)",
    )
    parser.add_argument("--days", type=int, default=2, help="demo days published")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="one worker only: the server under test (ceiling and platform alike) alone on "
        "core 0, PostgreSQL, Redis, wrk and this script on the other cores, as when they run "
        "on machines of their own; without it the kernel lets Redis and PostgreSQL run on the "
        "server's core whenever the server's write wakes them",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ROW_KINDS,
        default=list(ROW_KINDS),
        help="the rows to run (the ceiling always runs): a profile of one kind of request",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the platform during its rows (folded stacks here)"
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="sample the waiting loop too (py-spy --idle instead of --gil): how much of the "
        "worker's time is spent waiting on the network",
    )
    parser.add_argument(
        "--signed-in",
        type=int,
        default=0,
        metavar="SECONDS",
        help="the 64-connection sold-out row by the 40 000 sold-out accounts only, after "
        "SECONDS of the same requests unrecorded: a crowd whose tokens each worker has "
        "already verified, retrying (0: every account in turn, each token new)",
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        metavar="SECONDS",
        help="each read row (availability, search) first driven SECONDS on the same server "
        "and reported as its cold row, then measured warm (0: the read rows cold only, as "
        "tables before session 14)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="the 64-connection sold-out row this many times, each right after a ceiling "
        "row of its own (its ratio is to that one), and the median of the ratios",
    )
    parser.add_argument(
        "--addresses-at-limit",
        choices=["previous", "current"],
        help="a reproducer of the crowd at its address limits: before each 1 000-connection "
        "pair, every address's hold counter is put where a minute above the limit leaves it "
        "(previous: its previous window full) or where a client hammering leaves it "
        "(current: its current window full, every request refused)",
    )
    parser.add_argument(
        "--run-jobs",
        action="store_true",
        help="the served workers run the platform's jobs during the rows, as a deployment's "
        "do (the outbox relay every 2 s, whose suspicion detector reads every booking.held, "
        "and the sweeps); off by default: the rows measure the request path",
    )
    options = parser.parse_args()
    if options.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or options.workers != [1]:
            parser.error("--pin needs two cores or more and --workers 1")
        PINNED.update(server={cores[0]}, rest=set(cores[1:]))
        os.sched_setaffinity(0, PINNED["rest"])  # PostgreSQL, Redis and wrk inherit it
        print(f"pinned: servers on core {cores[0]}, the rest on {cores[1:]}")
    work = Path(tempfile.mkdtemp(prefix="guahao-http-surge-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    rows: list[Row] = []
    checks: dict[str, Any] = {}
    medians: dict[str, dict[str, Any]] = {}
    load_before = _load_average()
    print(f"load average before: {load_before}")
    seconds, c = options.seconds, options.connections
    pg_dir = work / "pg"
    servers: list[subprocess.Popen[bytes]] = []
    redises: list[EmbeddedRedis] = []
    try:
        local_postgres.start(pg_dir)
        SERVED["postgresql"] = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        pg_url = local_postgres.createdb(pg_dir, "guahao")
        row_lock_dsn = local_postgres.createdb(pg_dir, "rowlock").replace("+asyncpg", "", 1)
        redis = EmbeddedRedis(work / "redis-pg", port=_free_port())
        redis.start()
        redises.append(redis)
        assert redis.port is not None
        SERVED["redis port"] = redis.port
        SERVED["redis"] = _redis_pid(redis.port)
        pg_env = _environment(work / "data-pg", pg_url, redis.url)
        print("seeding the PostgreSQL platform …")
        (work / "pg-files").mkdir()
        pg = asyncio.run(_seed(pg_env, work / "pg-files", options.days, settled=options.run_jobs))
        ceiling_port = _free_port()
        servers.append(_serve_ceiling(row_lock_dsn, ceiling_port))
        SERVED["ceiling"] = SERVED["row lock"] = servers[-1].pid
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        plain = work / "plain.txt"
        plain.write_text("/plain\n")
        ceiling = _wrk(
            Row("ceiling: plain Litestar JSON", "ceiling", c),
            ceiling_url,
            ["get", "-", str(plain), "0"],
            seconds,
        )
        rows.append(_ratio(ceiling, ceiling))
        stock_port = _free_port()
        servers.append(_serve_ceiling(row_lock_dsn, stock_port, stock=True))
        SERVED["stock ceiling"] = servers[-1].pid
        rows.append(
            _ratio(
                _wrk(
                    Row("ceiling on uvicorn's own protocol (reference)", "stock ceiling", c),
                    f"http://127.0.0.1:{stock_port}",
                    ["get", "-", str(plain), "0"],
                    seconds,
                ),
                ceiling,
            )
        )
        _stop(servers.pop())
        granted_total = 0
        servings = [
            (workers, balance)
            for workers in options.workers
            for balance in (options.balance if workers > 1 else ["-"])
        ]
        for workers, balance in servings:
            port = _free_port()
            served_env = pg_env | {"GUAHAO_RUN_JOBS": "true"} if options.run_jobs else pg_env
            server = _serve_platform(served_env, port, workers, work / "server-pg.log", balance)
            servers.append(server)
            SERVED["platform"] = server.pid
            if options.profile and workers == 1:
                options.profile.mkdir(parents=True, exist_ok=True)
                PROFILE.update(pid=server.pid, dir=options.profile, idle=options.profile_idle)
            url = f"http://127.0.0.1:{port}"
            sold_out: Row | None = None  # the 64-connection sold-out row, when it runs
            label = f"PostgreSQL, {workers} worker{'s' if workers > 1 else ''}"
            if workers > 1 and len(options.balance) > 1:
                label += f", {balance}"
            if "sold-out" in options.only or "crowd" in options.only:
                hold_tokens = pg.crowd_tokens if options.signed_in else pg.tokens
                if options.signed_in:  # each worker verifies the crowd's tokens first
                    _wrk(
                        Row("warm-up", "warm-up", c),
                        url,
                        ["hold", str(hold_tokens), str(pg.sold_out), "0"],
                        options.signed_in,
                    )
                name = f"sold-out holds ({label}" + (", signed in)" if options.signed_in else ")")
                pairs: list[Row] = []
                for repeat in range(options.repeats):
                    # each repeat measures the ceiling right before its sold-out row: a ratio
                    # of two rows a few seconds apart, not of rows minutes apart
                    beside = ceiling
                    if options.repeats > 1:
                        beside = _wrk(
                            Row(f"ceiling (pair {repeat + 1})", "ceiling", c),
                            ceiling_url,
                            ["get", "-", str(plain), "0"],
                            seconds,
                        )
                        rows.append(_ratio(beside, beside))
                    rows.append(
                        _ratio(
                            _wrk(
                                Row(
                                    name + (f" pair {repeat + 1}" if options.repeats > 1 else ""),
                                    "platform",
                                    c,
                                ),
                                url,
                                ["hold", str(hold_tokens), str(pg.sold_out), "0"],
                                seconds,
                            ),
                            beside,
                        )
                    )
                    pairs.append(rows[-1])
                if options.repeats > 1:
                    medians[name] = {
                        "ratios": [round(r.ratio, 3) for r in pairs],
                        "median_ratio": round(_median([r.ratio for r in pairs]), 3),
                        "median_per_s": round(_median([r.per_s for r in pairs])),
                        "cpu_ratios": [round(r.cpu_ratio, 3) for r in pairs],
                        "median_cpu_ratio": round(_median([r.cpu_ratio for r in pairs]), 3),
                    }
                # the paced row offers a share of what this row answered (the median pair)
                sold_out = sorted(pairs, key=lambda r: r.per_s)[len(pairs) // 2]
            if "availability" in options.only:
                rows += _read_rows(
                    f"availability reads ({label}", url, pg.availability, ceiling, options
                )
            if "search" in options.only:
                rows += _read_rows(f"search reads ({label}", url, pg.searches, ceiling, options)
            if "granted" in options.only:
                first = SOLD_OUT_ACCOUNTS + (workers - 1) * GRANT_ACCOUNTS // 2
                granted = _ratio(
                    _wrk(
                        Row(f"granted holds ({label})", "platform", c),
                        url,
                        ["hold", str(pg.tokens), str(pg.open_slots), str(first)],
                        seconds,
                    ),
                    ceiling,
                )
                granted_total += granted.statuses.get("201", 0)
                rows.append(granted)
            if "crowd" in options.only:
                if options.addresses_at_limit:
                    limit = asyncio.run(_addresses_at_limit(pg_env, options.addresses_at_limit))
                    print(f"  {CROWD_ADDRESSES} addresses put at their limit ({limit}/minute)")
                crowd = _ratio(
                    _wrk(
                        Row(f"sold-out holds ({label})", "platform", options.crowd),
                        url,
                        ["hold", str(pg.tokens), str(pg.sold_out), "0"],
                        seconds,
                    ),
                    ceiling,
                )
                rows.append(crowd)
                rows.append(_paced_row(options, pg, url, label, sold_out, crowd, ceiling, seconds))
            PROFILE.clear()
            _stop(server)
            servers.remove(server)
        if "crowd" in options.only:
            rows.append(
                _ratio(
                    _wrk(
                        Row("ceiling: plain Litestar JSON", "ceiling", options.crowd),
                        ceiling_url,
                        ["get", "-", str(plain), "0"],
                        seconds,
                    ),
                    ceiling,
                )
            )
        checks["postgresql"] = asyncio.run(_check(pg_env, granted_total))
        if "row-lock" in options.only:
            _row_lock_rows(options, pg, row_lock_dsn, ceiling_url, ceiling, rows, checks, work)
        if not options.no_sqlite:
            redis_lite = EmbeddedRedis(work / "redis-lite", port=_free_port())
            redis_lite.start()
            redises.append(redis_lite)
            lite_env = _environment(work / "data-lite", "", redis_lite.url)
            print("seeding the SQLite platform …")
            (work / "lite-files").mkdir()
            lite = asyncio.run(
                _seed(lite_env, work / "lite-files", options.days, settled=options.run_jobs)
            )
            port = _free_port()
            served_env = lite_env | {"GUAHAO_RUN_JOBS": "true"} if options.run_jobs else lite_env
            server = _serve_platform(served_env, port, 1, work / "server-lite.log")
            SERVED["platform"] = server.pid
            servers.append(server)
            url = f"http://127.0.0.1:{port}"
            if "sold-out" in options.only:
                rows.append(
                    _ratio(
                        _wrk(
                            Row("sold-out holds (SQLite, 1 worker)", "platform", c),
                            url,
                            ["hold", str(lite.tokens), str(lite.sold_out), "0"],
                            seconds,
                        ),
                        ceiling,
                    )
                )
            lite_grants = 0
            if "granted" in options.only:
                lite_granted = _ratio(
                    _wrk(
                        Row("granted holds (SQLite, 1 worker)", "platform", c),
                        url,
                        ["hold", str(lite.tokens), str(lite.open_slots), str(SOLD_OUT_ACCOUNTS)],
                        seconds,
                    ),
                    ceiling,
                )
                rows.append(lite_granted)
                lite_grants = lite_granted.statuses.get("201", 0)
            _stop(server)
            servers.remove(server)
            checks["sqlite"] = asyncio.run(_check(lite_env, lite_grants))
    finally:
        for server in servers:
            _stop(server)
        for redis_server in redises:
            redis_server.stop()
        local_postgres.stop(pg_dir)
        tidy(work)
    load_after = _load_average()
    print(f"server logs in {work}")
    _print(rows)
    for name, summary in medians.items():
        print(
            f"\n{name}: ratios to the ceiling beside each {summary['ratios']}, "
            f"median {summary['median_ratio']} ({summary['median_per_s']} req/s); "
            f"CPU ratios {summary['cpu_ratios']}, median {summary['median_cpu_ratio']}"
        )
    print(f"\nend checks: {json.dumps(checks)}")
    print(f"load average before {load_before}, after {load_after}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"http_surge-{stamp}.json").write_text(
        json.dumps(
            {
                "rows": [asdict(r) for r in rows],
                "checks": checks,
                "medians": medians,
                "load_before": load_before,
                "load_after": load_after,
                "options": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()
                },
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()

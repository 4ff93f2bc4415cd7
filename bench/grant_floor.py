"""The floor of a granted hold over HTTP in this stack, beside the ceiling, in the same run.

Issue 15 asks granted holds at 0.5 × the ceiling (a plain Litestar route served as ``guahao
serve`` serves). This bench serves, in one process and on the same server settings as the
ceiling, the least any correct grant must do (``bench/grant_floor_server.py``: body, a signed
token, one Redis script a loop turn for the turn's holds: idempotency record, unit, expiry;
``pg`` also one row a grant written in one statement a turn) and drives the ceiling and both
floors with the same wrk script as ``http_surge.py``, in turn. A platform grant does all of
that and more (rate limits, rules, the booking row's indexes and foreign keys, its outbox
event, a replayable answer, logs and metrics), so its ratio cannot pass the floor's.

    .venv/bin/python bench/grant_floor.py [--seconds 6] [--repeats 3] [--connections 64]

Each row prints req/s, the ratio to the ceiling row just before it, CPU per request of the
server, of Redis and of PostgreSQL, and p50/p99; the end checks that every 201 is one unit
taken in Redis and (``pg``) one row.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import http_surge  # noqa: E402
from bench.http_surge import (  # noqa: E402
    SERVED,
    Row,
    _cpu_seconds,
    _free_port,
    _load_average,
    _median,
    _ratio,
    _stop,
)
from bench.work_dirs import tidy  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from infra import local_postgres  # noqa: E402

SECRET = "grant-floor-bench-secret"
ACCOUNTS = 40_000
SLOTS = 2_000
UNITS = 1_000_000
"""Units a slot: no row may sell one out (a 409 would be a refusal, not a grant)."""

_SERVER = """
import sys, uvicorn
from guahao.http_server import DropLoggingHttpToolsProtocol, accepting_sockets
from guahao.worker_processes import bind_listener
config = uvicorn.Config("bench.grant_floor_server:app", loop="uvloop",
                        http=DropLoggingHttpToolsProtocol, log_level="warning",
                        access_log=False)
uvicorn.Server(config).run(sockets=accepting_sockets(bind_listener("127.0.0.1", int(sys.argv[1]))))
"""


@dataclass
class FloorRow(Row):
    """A row with the Redis server's CPU per answered request beside the rest."""

    redis_cpu_ms: float = 0.0


def _token(account: str) -> str:
    return f"{account}.{hmac.new(SECRET.encode(), account.encode(), hashlib.sha256).hexdigest()}"


async def _prepare(dsn: str, redis_url: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE floor_holds (id text PRIMARY KEY, slot_id text NOT NULL, "
            "account text NOT NULL, expires_at bigint NOT NULL)"
        )
    finally:
        await connection.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.mset({f"slot:s{i}": UNITS for i in range(SLOTS)})
    finally:
        await client.aclose()


async def _check(dsn: str, redis_url: str, granted: dict[str, int]) -> dict[str, int]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        left = [int(v) for v in await client.mget([f"slot:s{i}" for i in range(SLOTS)])]
        holds = 0
        for i in range(SLOTS):
            holds += await client.zcard(f"slot:s{i}:holds")
    finally:
        await client.aclose()
    connection = await asyncpg.connect(dsn)
    try:
        rows = int(await connection.fetchval("SELECT count(*) FROM floor_holds"))
    finally:
        await connection.close()
    return {
        "201 answered": granted["redis"] + granted["pg"],
        "units taken in Redis": SLOTS * UNITS - sum(left),
        "holds recorded in Redis": holds,
        "201 answered with a row": granted["pg"],
        "rows in PostgreSQL": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="guahao-grant-floor-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    print(f"load average before: {_load_average()}")
    tokens = work / "tokens.txt"
    tokens.write_text("".join(f"{_token(f'a{i}')}\n" for i in range(ACCOUNTS)))
    slots = work / "slots.txt"
    slots.write_text("".join(f"s{i}\n" for i in range(SLOTS)))
    plain = work / "plain.txt"
    plain.write_text("/plain\n")
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    server: subprocess.Popen[bytes] | None = None
    rows: list[FloorRow] = []
    granted = {"redis": 0, "pg": 0}
    try:
        local_postgres.start(pg_dir)
        SERVED["postgresql"] = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        dsn = local_postgres.createdb(pg_dir, "floor").replace("+asyncpg", "", 1)
        redis.start()
        redis_pid = int(
            next(
                p.pid
                for p in psutil.process_iter(["cmdline"])
                if f":{redis.port}" in " ".join(p.info["cmdline"] or [])
            )
        )
        asyncio.run(_prepare(dsn, redis.url))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(port)],
            env={
                **dict(__import__("os").environ),
                "BENCH_FLOOR_REDIS": redis.url,
                "BENCH_FLOOR_PG": dsn,
                "BENCH_FLOOR_SECRET": SECRET,
            },
            cwd=ROOT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        http_surge._wait_http(f"{url}/plain")
        SERVED["floor"] = server.pid
        c = options.connections
        first = 0

        def row(name: str, args: list[str], seconds: int) -> FloorRow:
            redis_before = _cpu_seconds(redis_pid)
            done = FloorRow(name, "floor", c)
            http_surge._wrk(done, url, args, seconds)
            done.redis_cpu_ms = (
                (_cpu_seconds(redis_pid) - redis_before) * 1000 / max(1, done.requests)
            )
            return done

        for kind in ("redis", "pg"):  # warm-up: connections opened, the script loaded
            warm = row(
                "warm-up", ["hold", str(tokens), str(slots), str(first), f"/floor/{kind}"], 1
            )
            granted[kind] += warm.statuses.get("201", 0)
            first += warm.requests + 64
        for _ in range(options.repeats):
            ceiling = row(
                "ceiling: plain Litestar JSON", ["get", "-", str(plain), "0"], options.seconds
            )
            rows.append(_ratio(ceiling, ceiling))
            for kind in ("redis", "pg"):
                done = row(
                    f"floor: grant, Redis{' + a PostgreSQL row' if kind == 'pg' else ''}",
                    ["hold", str(tokens), str(slots), str(first), f"/floor/{kind}"],
                    options.seconds,
                )
                first += done.requests + 64
                granted[kind] += done.statuses.get("201", 0)
                rows.append(_ratio(done, ceiling))
        checks = asyncio.run(_check(dsn, redis.url, granted))
    finally:
        if server is not None:
            _stop(server)
        redis.stop()
        if pg_dir.exists():
            local_postgres.stop(pg_dir)
    print(f"load average after: {_load_average()}")
    print(
        "\n| row | req/s | ratio | p50 ms | p99 ms | server ms/req | Redis ms/req | PG ms/req "
        "| cores srv/wrk/other | statuses |\n" + "| --- " * 10 + "|"
    )
    for r in rows:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        print(
            f"| {r.name} | {r.per_s:.0f} | {r.ratio:.2f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.cpu_ms:.3f} | {r.redis_cpu_ms:.3f} | {r.pg_cpu_ms:.3f} "
            f"| {r.cores_server:.2f}/{r.cores_wrk:.2f}/{r.cores_others:.2f} | {statuses} |"
        )
    for kind in ("Redis", "Redis + a PostgreSQL row"):
        ratios = [r.ratio for r in rows if r.name.endswith(kind)]
        each = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"median ratio, floor {kind}: {_median(ratios):.2f} ({each})")
    print("end checks:", checks)
    tidy(work)
    print(f"logs and files kept in {work}")


if __name__ == "__main__":
    main()

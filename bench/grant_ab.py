"""Granted holds of two code trees, alternately, on one seeded platform (issue 15).

Not a test. On a machine shared with other people's work, ``http_surge.py`` run once per
tree compares runs minutes apart, whose ceilings moved by half (bench/README.md). Here one
PostgreSQL and one Redis are seeded once (``http_surge``'s seeding, 40 000 accounts for the
grants), then the granted row (``POST /api/v1/holds`` on open slots, each request an account
of its own, 64 connections) is served by each tree's ``guahao serve`` in turn, A B A B …,
every round on fresh accounts; the plain-Litestar ceiling runs between rounds. Every round's
figures are printed with the load average and the server's CPU per request (the granted
row's and the ceiling's: a ratio that the machine's load moves less than the rates); the end
check is ``http_surge``'s (oversold 0, SQL and Redis agreeing).

    .venv/bin/python bench/grant_ab.py --other /path/to/main-export --rounds 3 --seconds 6

``--other`` is a tree of the same schema (an export of main: ``git archive main | tar -x``);
its server runs with ``PYTHONPATH`` set to it, this tree's with none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_surge import (  # noqa: E402
    GRANT_ACCOUNTS,
    SERVED,
    SOLD_OUT_ACCOUNTS,
    Row,
    _check,
    _environment,
    _free_port,
    _load_average,
    _seed,
    _serve_ceiling,
    _serve_platform,
    _stop,
    _wrk,
)
from bench.work_dirs import tidy  # noqa: E402
from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from infra import local_postgres  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="guahao-grant-ab-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    trees = {"other": str(options.other.resolve()), "this": ""}
    results: list[dict[str, object]] = []
    granted = 0
    print(f"load average before: {_load_average()}")
    local_postgres.start(pg_dir)
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    redis.start()
    ceiling_server = None
    try:
        pg_url = local_postgres.createdb(pg_dir, "guahao")
        row_lock_dsn = local_postgres.createdb(pg_dir, "rowlock").replace("+asyncpg", "", 1)
        env = _environment(work / "data", pg_url, redis.url)
        (work / "files").mkdir()
        target = asyncio.run(_seed(env, work / "files", 2))
        ceiling_port = _free_port()
        ceiling_server = _serve_ceiling(row_lock_dsn, ceiling_port)
        SERVED["ceiling"] = ceiling_server.pid
        plain = work / "plain.txt"
        plain.write_text("/plain\n")
        per_round = GRANT_ACCOUNTS // (2 * options.rounds)
        step = 0
        for round_no in range(options.rounds):
            for name, tree in trees.items():
                ceiling = _wrk(
                    Row("ceiling", "ceiling", options.connections),
                    f"http://127.0.0.1:{ceiling_port}",
                    ["get", "-", str(plain), "0"],
                    options.seconds,
                )
                port = _free_port()
                server_env = env | ({"PYTHONPATH": tree} if tree else {})
                server = _serve_platform(server_env, port, 1, work / f"server-{name}.log")
                SERVED["platform"] = server.pid
                try:
                    load = _load_average()
                    row = _wrk(
                        Row(f"granted holds ({name})", "platform", options.connections),
                        f"http://127.0.0.1:{port}",
                        [
                            "hold",
                            str(target.tokens),
                            str(target.open_slots),
                            str(SOLD_OUT_ACCOUNTS + step * per_round),
                        ],
                        options.seconds,
                    )
                finally:
                    _stop(server)
                step += 1
                granted += row.statuses.get("201", 0)
                if row.requests > per_round:
                    print(
                        f"warning: {row.requests} requests overran the round's {per_round} "
                        "accounts; the next round meets their holds (409): use fewer rounds",
                        flush=True,
                    )
                result = {
                    "round": round_no,
                    "tree": name,
                    "granted_per_s": round(row.per_s),
                    "ceiling_per_s": round(ceiling.per_s),
                    "ratio": round(row.per_s / ceiling.per_s, 3) if ceiling.per_s else 0.0,
                    "p50_ms": row.p50_ms,
                    "p99_ms": row.p99_ms,
                    "cpu_ms": round(row.cpu_ms, 3),
                    "ceiling_cpu_ms": round(ceiling.cpu_ms, 3),
                    "statuses": row.statuses,
                    "load": load,
                }
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(env, granted))))
    finally:
        if ceiling_server is not None:
            _stop(ceiling_server)
        redis.stop()
        local_postgres.stop(pg_dir)
        tidy(work)
    for name in trees:
        mine = [r for r in results if r["tree"] == name]
        print(
            f"{name}: granted/s {[r['granted_per_s'] for r in mine]}, "
            f"ratio to the ceiling {[r['ratio'] for r in mine]}, "
            f"server CPU ms per grant {[r['cpu_ms'] for r in mine]}"
        )
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()

"""CPU per granted hold inside the app, for two code trees in turn (issue 15).

Not a test. On a machine shared with other people's work the rates of ``grant_ab.py`` move
by a third between rounds, and the server's CPU per grant with them (fewer grants in flight
share fewer round trips). Here the app of each tree is driven in one process, without a
server or a socket: ``POST /api/v1/holds`` as ASGI calls, 64 at a time, each by an account
of its own on open slots (``http_surge``'s seeding, on PostgreSQL and Redis), and the
process's own CPU time is divided by the grants. What the HTTP server adds (uvicorn's
parsing and socket writes) is the same for both trees and is left out, so the figure is the
code's CPU per grant, and the difference between trees is what a change saved.

    .venv/bin/python bench/grant_cpu.py --other /path/to/main-export --rounds 3 --grants 3000

``--other`` is a tree of the same schema (``git archive main | tar -x``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent


async def _drive(environ: dict[str, str], tokens: list[str], slots: list[str]) -> dict[str, Any]:
    """In a child process whose ``sys.path`` starts with the tree under test."""
    from guahao.bootstrap import open_platform
    from guahao.config import load_settings
    from guahao.web.app import create_app

    settings = load_settings(environ)
    statuses: Counter[int] = Counter()
    async with open_platform(settings, migrate=False) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform  # what the lifespan does

        async def one(n: int) -> None:
            body = json.dumps({"slotId": slots[n % len(slots)]}).encode()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/api/v1/holds",
                "raw_path": b"/api/v1/holds",
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", b"bench"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"authorization", f"Bearer {tokens[n]}".encode()),
                    (b"idempotency-key", f"cpu-{n}-{time.time_ns()}".encode()),
                ],
                "client": (f"10.{n % 250}.{(n // 250) % 8}.7", 40000),
                "server": ("127.0.0.1", 80),
                "state": {},
            }
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.sleep(3600)  # a client that stays connected
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] += 1

            await app(scope, receive, send)  # type: ignore[arg-type]

        async def run(numbers: range) -> None:
            queue = iter(numbers)

            async def worker() -> None:
                for n in queue:
                    await one(n)

            await asyncio.gather(*(worker() for _ in range(64)))

        warm = max(1, len(tokens) // 10)
        await run(range(warm))  # caches, prepared statements, connections
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        await run(range(warm, len(tokens)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    grants = statuses.get(201, 0)
    return {
        "grants": grants,
        "statuses": dict(statuses),
        "cpu_ms_per_grant": round(cpu * 1000 / grants, 3) if grants else None,
        "wall_s": round(wall, 2),
    }


def _child(options: argparse.Namespace) -> None:
    spec = json.loads(Path(options.child).read_text())
    # the loop ``guahao serve`` runs on
    result = uvloop.run(_drive(spec["environ"], spec["tokens"], spec["slots"]))
    print("GRANT-CPU " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grants", type=int, default=3000, help="requests per round and tree")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each round's child (raw folded stacks here)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(options)
        return
    if options.other is None:
        parser.error("--other is required")
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import (
        SOLD_OUT_ACCOUNTS,
        _check,
        _environment,
        _free_port,
        _load_average,
        _seed,
    )
    from guahao.platform.embedded_redis import EmbeddedRedis
    from infra import local_postgres

    work = Path(tempfile.mkdtemp(prefix="guahao-grant-cpu-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    trees = {"other": str(options.other.resolve()), "this": str(ROOT)}
    print(f"load average before: {_load_average()}", flush=True)
    local_postgres.start(pg_dir)
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    redis.start()
    results: list[dict[str, Any]] = []
    granted = 0
    try:
        environ = _environment(work / "data", local_postgres.createdb(pg_dir, "guahao"), redis.url)
        (work / "files").mkdir()
        target = asyncio.run(_seed(environ, work / "files", 2))
        tokens = target.tokens.read_text().split()
        slots = target.open_slots.read_text().split()
        step = SOLD_OUT_ACCOUNTS
        for round_no in range(options.rounds):
            for name, tree in trees.items():
                spec = work / f"round-{round_no}-{name}.json"
                spec.write_text(
                    json.dumps(
                        {
                            "environ": environ,
                            "tokens": tokens[step : step + options.grants],
                            "slots": slots,
                        }
                    )
                )
                step += options.grants
                load = _load_average()
                command = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec)]
                if options.profile:
                    options.profile.mkdir(parents=True, exist_ok=True)
                    folded = options.profile / f"grant-cpu-{name}-{round_no}.folded"
                    spy = [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--rate", "250"]
                    command = [*spy, "--format", "raw", "--output", str(folded), "--", *command]
                done = subprocess.run(
                    command,
                    env=os.environ | {"PYTHONPATH": tree},
                    cwd=tree,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                line = next(row for row in done.stdout.splitlines() if row.startswith("GRANT-CPU "))
                result = json.loads(line.removeprefix("GRANT-CPU ")) | {
                    "round": round_no,
                    "tree": name,
                    "load": load,
                }
                granted += int(result["statuses"].get("201", 0))
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(environ, granted))))
    finally:
        redis.stop()
        local_postgres.stop(pg_dir)
    for name in trees:
        mine = [r["cpu_ms_per_grant"] for r in results if r["tree"] == name]
        print(f"{name}: CPU ms per grant {mine}")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()

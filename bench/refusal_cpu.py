"""CPU per sold-out refusal inside the app, for two code trees in turn (issue 15).

Not a test. The sold-out row of ``http_surge.py`` divides the server's CPU by its answers,
but at 12 000 answers a second on two shared cores its figure moves with everyone else's
work. Here each tree's app is driven in one process without a server or a socket, as
``grant_cpu.py`` drives grants: ``POST /api/v1/holds`` as ASGI calls, 64 at a time, by the
20 000 crowd accounts of ``http_surge``'s seeding on its sold-out slot (PostgreSQL and Redis),
each account signed in once before the measured pass (the crowd that retries), and the
process's CPU time is divided by the refusals. uvicorn's parsing and socket writes are the
same for both trees and left out, so the difference between trees is what a change saved.

    .venv/bin/python bench/refusal_cpu.py --other /path/to/main-export --rounds 3

``--other`` is a tree of the same schema (``git archive main | tar -x``). Trees run A B A B.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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


async def _drive(environ: dict[str, str], tokens: list[str], slot: str, requests: int) -> Any:
    """In a child process whose ``sys.path`` starts with the tree under test."""
    from guahao.bootstrap import open_platform
    from guahao.config import load_settings
    from guahao.web.app import create_app

    settings = load_settings(environ)
    statuses: Counter[int] = Counter()
    body = json.dumps({"slotId": slot}).encode()
    async with open_platform(settings, migrate=False) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform  # what the lifespan does
        gc.collect()  # what ``guahao serve`` does before its first request (cli.py)
        gc.freeze()

        async def one(n: int) -> None:
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
                    (b"authorization", f"Bearer {tokens[n % len(tokens)]}".encode()),
                    (b"idempotency-key", f"k{n}-{time.time_ns()}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
                # wrk's addresses (bench/wrk/surge.lua), as the proxy-headers middleware sets them
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

        await run(range(len(tokens)))  # every token verified once: the crowd is signed in
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        await run(range(requests))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    refused = statuses.get(409, 0)
    return {
        "refused": refused,
        "statuses": dict(statuses),
        "cpu_us_per_refusal": round(cpu * 1e6 / refused, 2) if refused else None,
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40_000, help="per round and tree")
    parser.add_argument("--profile", type=Path, help="py-spy each child (raw folded stacks)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        spec = json.loads(Path(options.child).read_text())
        result = uvloop.run(  # the loop ``guahao serve`` runs on
            _drive(spec["environ"], spec["tokens"], spec["slot"], spec["requests"])
        )
        print("REFUSAL-CPU " + json.dumps(result), flush=True)
        return
    if options.other is None:
        parser.error("--other is required")
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import _check, _environment, _free_port, _load_average, _seed
    from guahao.platform.embedded_redis import EmbeddedRedis
    from infra import local_postgres

    work = Path(tempfile.mkdtemp(prefix="guahao-refusal-cpu-"))
    work.chmod(0o755)  # the cluster runs as the postgres user when we are root
    pg_dir = work / "pg"
    trees = {"other": str(options.other.resolve()), "this": str(ROOT)}
    print(f"load average before: {_load_average()}", flush=True)
    local_postgres.start(pg_dir)
    redis = EmbeddedRedis(work / "redis", port=_free_port())
    redis.start()
    results: list[dict[str, Any]] = []
    try:
        environ = _environment(work / "data", local_postgres.createdb(pg_dir, "guahao"), redis.url)
        (work / "files").mkdir()
        target = asyncio.run(_seed(environ, work / "files", 2))
        spec = work / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "environ": environ,
                    "tokens": target.crowd_tokens.read_text().split(),
                    "slot": target.sold_out.read_text().strip(),
                    "requests": options.requests,
                }
            )
        )
        for round_no in range(options.rounds):
            for name, tree in trees.items():
                load = _load_average()
                command = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec)]
                if options.profile:
                    options.profile.mkdir(parents=True, exist_ok=True)
                    folded = options.profile / f"refusal-cpu-{name}-{round_no}.folded"
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
                line = next(r for r in done.stdout.splitlines() if r.startswith("REFUSAL-CPU "))
                result = json.loads(line.removeprefix("REFUSAL-CPU ")) | {
                    "round": round_no,
                    "tree": name,
                    "load": load,
                }
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(environ, 0))))
    finally:
        redis.stop()
        local_postgres.stop(pg_dir)
    for name in trees:
        mine = sorted(r["cpu_us_per_refusal"] for r in results if r["tree"] == name)
        print(f"{name}: CPU µs per refusal {mine}, median {mine[len(mine) // 2]}")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()

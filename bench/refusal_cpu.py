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
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop
from in_app_holds import child_result, hold, in_parallel, seeded  # beside this script

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
            await hold(app, tokens[n % len(tokens)], body, n, statuses)

        async def run(numbers: range) -> None:
            await in_parallel(numbers, one)

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
        print("RESULT " + json.dumps(result), flush=True)
        return
    if options.other is None:
        parser.error("--other is required")
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import _check, _load_average

    trees = {"other": str(options.other.resolve()), "this": str(ROOT)}
    print(f"load average before: {_load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    with seeded("guahao-refusal-cpu-") as (environ, target):
        spec = target.tokens.parent / "spec.json"
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
                result = child_result(
                    Path(__file__).resolve(),
                    spec,
                    tree,
                    name=name,
                    round_no=round_no,
                    profile=options.profile,
                )
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(environ, 0))))
    for name in trees:
        mine = sorted(r["cpu_us_per_refusal"] for r in results if r["tree"] == name)
        print(f"{name}: CPU µs per refusal {mine}, median {mine[len(mine) // 2]}")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()

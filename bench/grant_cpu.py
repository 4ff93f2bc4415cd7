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

``--other`` is a tree of the same schema (``git archive main | tar -x``). Beside each round,
Redis's CPU (``INFO cpu``) over the child's run divided by the requests it sent (its warm-up
included): what the tree's calls cost Redis a request, the same for both trees but for
their code.
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

import redis
import uvloop
from in_app_holds import child_result, hold, in_parallel, seeded  # beside this script

ROOT = Path(__file__).resolve().parent.parent


async def _drive(
    environ: dict[str, str], tokens: list[str], slots: list[str], *, garbage: bool = False
) -> dict[str, Any]:
    """In a child process whose ``sys.path`` starts with the tree under test; ``garbage``:
    count the objects the grants left in reference cycles (what only the collector frees)."""
    from guahao.bootstrap import open_platform
    from guahao.config import load_settings
    from guahao.web.app import create_app

    settings = load_settings(environ)
    statuses: Counter[int] = Counter()
    async with open_platform(settings, migrate=False) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform  # what the lifespan does
        # what ``guahao serve`` does before its first request (cli.py): without it a full
        # collection of the whole unfrozen heap now and then weighed on one round and not on
        # the next (bench/profiles/grant6-*); a tree with ``collector_settings`` (front4)
        # sets the young generation's threshold too
        threshold = getattr(settings, "gc_young_threshold", None)
        if threshold is None:
            gc.collect()
            gc.freeze()
        else:
            from guahao.collector_settings import settle_collector

            settle_collector(threshold)

        async def one(n: int) -> None:
            body = json.dumps({"slotId": slots[n % len(slots)]}).encode()
            await hold(app, tokens[n], body, n, statuses)

        async def run(numbers: range) -> None:
            await in_parallel(numbers, one)

        warm = max(1, len(tokens) // 10)
        await run(range(warm))  # caches, prepared statements, connections
        statuses.clear()
        if garbage:  # every cycle the grants leave is kept, to be counted by type below
            gc.collect()
            before = Counter(type(o).__qualname__ for o in gc.get_objects())
            gc.set_debug(gc.DEBUG_SAVEALL)
        collections = [s["collections"] for s in gc.get_stats()]
        cpu, wall = time.process_time(), time.perf_counter()
        await run(range(warm, len(tokens)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        collections = [
            s["collections"] - c for s, c in zip(gc.get_stats(), collections, strict=True)
        ]
    grants = statuses.get(201, 0)
    cycles: dict[str, float] = {}
    kept: dict[str, float] = {}
    if garbage and grants:
        gc.collect()
        gc.set_debug(0)
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
        cycles = {k: round(n / grants, 2) for k, n in kinds.most_common(25)}
        cycles["(all)"] = round(len(gc.garbage) / grants, 2)
        gc.garbage.clear()
        gc.collect()
        after = Counter(type(o).__qualname__ for o in gc.get_objects())
        after.subtract(before)
        kept = {k: round(n / grants, 2) for k, n in after.most_common(25)}
        kept["(all)"] = round(sum(after.values()) / grants, 2)
    return {
        "grants": grants,
        "collections": collections,
        **({"cyclic_garbage_per_grant": cycles, "kept_per_grant": kept} if garbage else {}),
        "statuses": dict(statuses),
        "cpu_ms_per_grant": round(cpu * 1000 / grants, 3) if grants else None,
        "wall_s": round(wall, 2),
    }


def _child(options: argparse.Namespace) -> None:
    spec = json.loads(Path(options.child).read_text())
    # the loop ``guahao serve`` runs on
    result = uvloop.run(
        _drive(spec["environ"], spec["tokens"], spec["slots"], garbage=spec.get("garbage", False))
    )
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grants", type=int, default=3000, help="requests per round and tree")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each round's child (raw folded stacks here)"
    )
    parser.add_argument(
        "--garbage",
        action="store_true",
        help="count the objects each grant leaves in reference cycles, by type (slower: "
        "every cycle is kept until the round's end)",
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
    from bench.http_surge import SOLD_OUT_ACCOUNTS, _check, _load_average

    trees = {"other": str(options.other.resolve()), "this": str(ROOT)}
    print(f"load average before: {_load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    granted = 0
    with seeded("guahao-grant-cpu-") as (environ, target):
        tokens = target.tokens.read_text().split()
        slots = target.open_slots.read_text().split()
        step = SOLD_OUT_ACCOUNTS
        for round_no in range(options.rounds):
            for name, tree in trees.items():
                spec = target.tokens.parent / f"round-{round_no}-{name}.json"
                spec.write_text(
                    json.dumps(
                        {
                            "environ": environ,
                            "tokens": tokens[step : step + options.grants],
                            "slots": slots,
                            "garbage": options.garbage,
                        }
                    )
                )
                step += options.grants
                redis_before = _redis_cpu(environ["GUAHAO_REDIS_URL"])
                result = child_result(
                    Path(__file__).resolve(),
                    spec,
                    tree,
                    name=name,
                    round_no=round_no,
                    profile=options.profile,
                )
                redis_spent = _redis_cpu(environ["GUAHAO_REDIS_URL"]) - redis_before
                result["redis_ms_per_request"] = round(redis_spent * 1000 / options.grants, 4)
                granted += int(result["statuses"].get("201", 0))
                results.append(result)
                print(json.dumps(result), flush=True)
        print("end checks:", json.dumps(asyncio.run(_check(environ, granted))))
    for name in trees:
        mine = [r["cpu_ms_per_grant"] for r in results if r["tree"] == name]
        print(f"{name}: CPU ms per grant {mine}")
        spent = [r["redis_ms_per_request"] for r in results if r["tree"] == name]
        print(f"{name}: Redis CPU ms per request {spent}")
    print(f"load average after: {_load_average()}")


def _redis_cpu(url: str) -> float:
    """Redis's user and system CPU seconds so far."""
    client = redis.Redis.from_url(url)
    try:
        found = client.info("cpu")
    finally:
        client.close()
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


if __name__ == "__main__":
    main()

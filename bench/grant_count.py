"""What one granted hold costs the event loop, counted: callbacks run, tasks created, futures
created and socket system calls, per grant, for two code trees in turn (issue 15).

Not a test, and not a timing: ``grant_cpu.py``'s in-app drive (``POST /api/v1/holds`` as ASGI
calls, 64 at a time, each by an account of its own) on the standard asyncio loop, whose
callbacks, tasks and futures can be counted (uvloop's cannot; the counts are the code's, not
the loop's), under ``strace -f -c`` for the system calls. A shape that removes round trips,
writes or suspensions shows here whatever the machine's load.

    .venv/bin/python bench/grant_count.py --other /path/to/main-export --grants 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from in_app_holds import child_result, hold, in_parallel, seeded  # beside this script

ROOT = Path(__file__).resolve().parent.parent
_SYSCALLS = "write,writev,sendto,sendmsg,read,recvfrom,recvmsg,epoll_wait,epoll_pwait"


async def _drive(environ: dict[str, str], tokens: list[str], slots: list[str]) -> dict[str, Any]:
    from guahao.bootstrap import open_platform
    from guahao.config import load_settings
    from guahao.web.app import create_app

    loop = asyncio.get_running_loop()
    counts: Counter[str] = Counter()
    sites: Counter[str] = Counter()  # where the futures and tasks were made (``--detail``)
    detail = environ.get("GRANT_COUNT_DETAIL") == "1"
    run_handle = asyncio.Handle._run
    create_future = loop.create_future

    def counted_run(handle: asyncio.Handle) -> None:
        counts["callbacks"] += 1
        run_handle(handle)

    def counted_future() -> asyncio.Future[Any]:
        counts["futures"] += 1
        if detail:
            caller = sys._getframe(1).f_code
            sites[f"future {caller.co_qualname} ({Path(caller.co_filename).name})"] += 1
        return create_future()

    def counted_task(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        counts["tasks"] += 1
        if detail:
            sites[f"task {coro.__qualname__}"] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    statuses: Counter[int] = Counter()
    settings = load_settings(environ)
    async with open_platform(settings, migrate=False) as platform:
        app = create_app(settings, platform=platform)
        app.state.platform = platform

        async def one(n: int) -> None:
            body = json.dumps({"slotId": slots[n % len(slots)]}).encode()
            await hold(app, tokens[n], body, n, statuses)

        warm = max(1, len(tokens) // 10)
        await in_parallel(range(warm), one)
        statuses.clear()
        asyncio.Handle._run = counted_run  # type: ignore[method-assign]
        loop.create_future = counted_future  # type: ignore[method-assign]
        loop.set_task_factory(counted_task)
        os.write(2, b"grant-count: start\n")  # the system calls are counted from here
        await in_parallel(range(warm, len(tokens)), one)
        os.write(2, b"grant-count: end\n")
        asyncio.Handle._run = run_handle  # type: ignore[method-assign]
        loop.set_task_factory(None)
    grants = statuses.get(201, 0)
    return {"grants": grants, "statuses": dict(statuses)} | {
        name: round(value / grants, 3) for name, value in (counts + sites).most_common()
    }


def _syscalls(trace: str) -> Counter[str]:
    """System calls between the child's two marks in an ``strace -f`` log."""
    counted: Counter[str] = Counter()
    inside = False
    for line in trace.splitlines():
        if "grant-count: start" in line:
            inside = True
        elif "grant-count: end" in line:
            break
        elif inside:
            found = re.match(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\(", line)
            if found:
                counted[found.group(1)] += 1
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, required=False, help="the tree to compare with")
    parser.add_argument("--grants", type=int, default=3000)
    parser.add_argument(
        "--detail", action="store_true", help="also where futures and tasks are made"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        spec = json.loads(Path(options.child).read_text())
        result = asyncio.run(_drive(spec["environ"], spec["tokens"], spec["slots"]))
        print("RESULT " + json.dumps(result), flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from bench.http_surge import SOLD_OUT_ACCOUNTS

    trees = {"this": str(ROOT)}
    if options.other is not None:
        trees = {"other": str(options.other.resolve()), **trees}
    with seeded("guahao-grant-count-") as (environ, target):
        tokens = target.tokens.read_text().split()
        slots = target.open_slots.read_text().split()
        step = SOLD_OUT_ACCOUNTS
        for name, tree in trees.items():
            spec = target.tokens.parent / f"count-{name}.json"
            chosen = tokens[step : step + options.grants]
            step += options.grants
            env = environ | {"GRANT_COUNT_DETAIL": "1" if options.detail else "0"}
            spec.write_text(json.dumps({"environ": env, "tokens": chosen, "slots": slots}))
            with tempfile.NamedTemporaryFile(suffix=".strace") as trace:
                result = child_result(
                    Path(__file__).resolve(),
                    spec,
                    tree,
                    name=name,
                    round_no=0,
                    profile=None,
                    wrapper=["strace", "-f", "-e", f"trace={_SYSCALLS}", "-o", trace.name],
                )
                calls = _syscalls(Path(trace.name).read_text())
            grants = result["grants"] or 1
            result["syscalls_per_grant"] = {
                call: round(n / grants, 2) for call, n in sorted(calls.items())
            }
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

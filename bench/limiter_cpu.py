"""CPU per request of the rate limiter alone, as a sold-out refusal uses it (issue 15).

Not a test. One process, one Redis of its own (``redis-server`` from the PATH, on a free
port): the limiter is asked as ``refuse_known_sold_out`` asks it, an account's
``30/minute;300/hour``, no device, an address's ``600/minute``, by 20 000 accounts behind
2 000 addresses, 64 requests at a time, and its own 50 ms syncs run as they do in a worker.
The process's CPU time per request, less a pass that awaits nothing, is the limiter's
(``hit`` and its share of the syncs); Redis's own CPU per request (``INFO cpu``, the whole
child run, every pass) beside it. Trees in turn, A B A B:

    .venv/bin/python bench/limiter_cpu.py --other /path/to/main-export --rounds 3

``--new-accounts``: every request by an account new to the process and to Redis, as the
HTTP granted row (each citizen holds once at a release): two new counters a request, sent at
the next sync; the addresses as before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [f"account-{n:05d}-{'x' * 20}" for n in range(20_000)]
ADDRESSES = [f"address-hash-{n:04d}-{'y' * 40}" for n in range(2_000)]


async def _measure(url: str, hits: int, rounds: int, new_accounts: bool) -> dict[str, Any]:
    """In a child whose ``sys.path`` starts with the tree under test."""
    from guahao.platform.rate_limiting import RequestLimiter

    limiter = RequestLimiter(url, key_prefix=f"bench-{time.time_ns()}")
    accounts = [f"new-{n:07d}-{'x' * 20}" for n in range(hits * 4)] if new_accounts else ACCOUNTS

    async def counted(n: int) -> None:
        await limiter.hit(
            [
                ("hold:account", "30/minute;300/hour", accounts[n % len(accounts)]),
                ("hold:device", "60/minute;600/hour", ""),
                ("hold:ip", "600/minute", ADDRESSES[n % len(ADDRESSES)]),
            ]
        )

    async def nothing(n: int) -> None:
        return None

    async def cpu_per_hit(one: Any, first: int) -> float:
        gc.collect()
        cpu = time.process_time()
        for start in range(first, first + hits, 64):
            await asyncio.gather(*(one(n) for n in range(start, start + 64)))
            await asyncio.sleep(0)
        await limiter.sync()
        return (time.process_time() - cpu) * 1e6 / hits

    await cpu_per_hit(counted, 0)  # every counter known once
    idle = await cpu_per_hit(nothing, 0)
    results = [await cpu_per_hit(counted, (r + 1) * hits) - idle for r in range(rounds)]
    await limiter.close()
    return {"us_per_hit": [round(r, 2) for r in results], "driver_us": round(idle, 2)}


def _redis_cpu(port: int) -> float:
    """The Redis server's CPU seconds so far (user and system)."""
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "cpu"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hits", type=int, default=40_000)
    parser.add_argument("--new-accounts", action="store_true", help="every request a new account")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        import uvloop

        print(
            json.dumps(uvloop.run(_measure(options.child, options.hits, 3, options.new_accounts))),
            flush=True,
        )
        return
    if options.other is None:
        parser.error("--other is required")
    port = 16_000 + os.getpid() % 1_000
    work = Path(tempfile.mkdtemp(prefix="guahao-limiter-cpu-"))
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        found: dict[str, list[float]] = {"other": [], "this": []}
        redis_us: dict[str, list[float]] = {"other": [], "this": []}
        child = [sys.executable, __file__, "--hits", str(options.hits), "--child"]
        if options.new_accounts:
            child.insert(-1, "--new-accounts")
        for round_no in range(options.rounds):
            for name, tree in (("other", options.other.resolve()), ("this", ROOT)):
                before = _redis_cpu(port)
                done = subprocess.run(
                    [*child, f"redis://127.0.0.1:{port}/0"],
                    env=os.environ | {"PYTHONPATH": str(tree)},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                hits = options.hits * 4  # the first pass and three measured ones
                result["redis_us_per_hit"] = round((_redis_cpu(port) - before) * 1e6 / hits, 2)
                found[name] += result["us_per_hit"]
                redis_us[name].append(result["redis_us_per_hit"])
                print(round_no, name, result, flush=True)
        for name, values in found.items():
            print(f"{name}: µs per hit, median {statistics.median(values):.2f} of {values}")
            print(f"{name}: Redis µs per hit {redis_us[name]}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)  # Redis's directory: nothing to keep


if __name__ == "__main__":
    main()

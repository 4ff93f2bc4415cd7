"""Redis's CPU for the limiter's sync script alone, two trees' ``add_to_windows.lua`` in turn.

Not a test. The HTTP granted row's Redis CPU a grant (``http_surge.py``'s ``redis-cpu-ms``)
holds the hold script, the commit's survival check and the sockets beside the limiter's sync,
and moves by more than the sync costs on a shared machine. Here one ``redis-server`` of its
own runs only the sync's calls as a release crowd makes them: per grant, the
two counters of a new account (``30/minute;300/hour``, the counter's first call) and its
address's counter (``600/minute``, one of 2 000), 85 grants a call (255 counters, about the
sync's batch of 256), 400 calls a round, each tree's script in turn on keys of its own. Redis's
CPU (``INFO cpu``) and its commands (``INFO commandstats``) per grant:

    .venv/bin/python bench/limiter_script_cost.py --other /path/to/main-export --rounds 3

``--aged``: every address's counter older than its window, as a crowd's carrier addresses are
a minute into a release (a previous window counted, the current one shifted 30 s ago) instead
of new in its first window as in the HTTP rows.

A tree without ``rate_limiting/limit_items.py`` (before branch limiter3) is sent its counters'
first calls as any other call (its script takes no negative hits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402

SCRIPT = Path("guahao/platform/rate_limiting/add_to_windows.lua")
GRANTS_A_CALL = 85
CALLS = 400


def _takes_first_calls(tree: Path) -> bool:
    return (tree / "guahao/platform/rate_limiting/limit_items.py").exists()


def _round(
    client: redis.Redis, tree: Path, prefix: str, *, aged: bool
) -> tuple[float, dict[str, float]]:
    sha = client.script_load((tree / SCRIPT).read_text(encoding="utf-8"))
    first_hit = -1 if _takes_first_calls(tree) else 1
    if aged:  # as a shift 30 s ago leaves them: the previous window runs out a window earlier
        seeding = client.pipeline(transaction=False)
        for address in range(2000):
            key = f"{prefix}:{{LIMITER/hold:ip/address-{address}/600/1/minute}}"
            seeding.set(f"{key}/-1", 300, px=30_000)
            seeding.set(key, 100, px=90_000)
        seeding.execute()
    client.config_resetstat()
    before = _cpu(client)
    pipeline = client.pipeline(transaction=False)
    grant = 0
    for call in range(CALLS):
        keys: list[str] = []
        args: list[int] = []
        for _ in range(GRANTS_A_CALL):
            grant += 1
            for item, window in (("30/1/minute", 60), ("300/1/hour", 3600)):
                key = f"{prefix}:{{LIMITER/hold:account/citizen-{grant}/{item}}}"
                keys += [f"{key}/-1", key]
                args += [window, first_hit]
            key = f"{prefix}:{{LIMITER/hold:ip/address-{grant % 2000}/600/1/minute}}"
            keys += [f"{key}/-1", key]
            args += [60, 1]
        pipeline.evalsha(sha, len(keys), *keys, *args)
        if call % 20 == 19:
            pipeline.execute()
    pipeline.execute()
    spent = _cpu(client) - before
    stats = client.info("commandstats")
    commands = {
        name.removeprefix("cmdstat_"): int(found["calls"]) / grant
        for name, found in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }
    return spent * 1e6 / grant, commands


def _cpu(client: redis.Redis) -> float:
    found = client.info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aged", action="store_true", help="addresses' counters past a window")
    options = parser.parse_args()
    server = EmbeddedRedis()
    try:
        client = redis.Redis.from_url(server.start())
        found: dict[str, list[float]] = {"other": [], "this": []}
        print(f"load average before: {os.getloadavg()}")
        for round_no in range(options.rounds):
            for name, tree in (("other", options.other.resolve()), ("this", ROOT)):
                us, commands = _round(client, tree, f"{name}-{round_no}", aged=options.aged)
                found[name].append(us)
                each = ", ".join(f"{c} {n:.2f}" for c, n in sorted(commands.items()))
                print(f"{round_no} {name}: Redis {us:.2f} µs a grant; commands a grant: {each}")
                client.flushall()
        for name, values in found.items():
            rounded = [round(v, 2) for v in values]
            print(f"{name}: Redis µs a grant, median {statistics.median(values):.2f} of {rounded}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

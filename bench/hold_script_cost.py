"""What a grant costs Redis itself: CPU per grant of ``hold_many.lua`` and of variants of it.

Not a test. ``release_surge.py``'s ``cpu µs/dec`` column gives the servers' CPU per decision
over a whole surge; this isolates the hold script. 20 000 grants (200 slots of 100 units by
default, each attempt a new account; ``--slots 5``: a hot release's few slots) go through the
inventory's own automatic pipeline, 200 callers at once; Redis's ``used_cpu_user +
used_cpu_sys`` (``INFO cpu``) before and after, divided by the grants. CPU time, unlike
``usec_per_call`` (wall time inside Redis), is less moved by a loaded machine; beside it the
commands the scripts ran a grant (``INFO commandstats``), a count no load moves. Rows, each
with a call of one hold and with calls of ``HOLD_BATCH``:

- ``hold_many``: the script as the adapter runs it (grants on one server, marker included;
  a call of one is how a hold on a fenced slot or the platform's offer is sent);
- ``empty``: an immediate reply, the same keys and arguments: what a call costs before its
  first ``redis.call`` (parsing, the pipeline, the reply);
- one row per ``--variant FILE``: another hold script (for instance an older
  ``hold_many.lua`` from git, or one without some command), the same keys and arguments.

    .venv/bin/python bench/hold_script_cost.py --variant /tmp/old_hold_many.lua --rounds 2
    .venv/bin/python bench/hold_script_cost.py --slots 5      # a hot release
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.inventory import RedisInventory  # noqa: E402
from guahao.platform.inventory.hold_batches import (  # noqa: E402
    HOLD_BATCH,
    HoldRequest,
    hold_many_call,
)
from guahao.platform.inventory.lua_scripts import HOLD_MANY, LuaScript  # noqa: E402
from guahao.platform.inventory.redis_inventory import MARKER_GRACE_MS  # noqa: E402
from guahao.platform.inventory.slot_keys import KeyNames  # noqa: E402
from guahao.platform.ports import SlotState  # noqa: E402

RELEASE_MS = 1_780_000_000_000
TTL_MS = 15 * 60 * 1000
REPLAY_TTL_MS = 86_400_000
GRANTS = 20_000
SLOTS = 200


def scripts(variants: list[Path]) -> dict[str, LuaScript]:
    found = {"hold_many": HOLD_MANY, "empty": LuaScript("empty", "return {}")}
    for path in variants:
        found[path.name] = LuaScript(path.name, path.read_text())
    return found


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def requests(slots: int) -> list[HoldRequest]:
    keys = KeyNames("cost:")
    expires = RELEASE_MS + TTL_MS
    return [
        HoldRequest(
            keys.family(f"s{n % slots}"),
            keys.replay_record(f"s{n % slots}", f"k{n}"),
            keys.account_marker(f"a{n}"),
            f"h{n}",
            f"a{n}",
            RELEASE_MS,
            expires,
            f'["s{n % slots}","h{n}","{expires}"]',
            TTL_MS + MARKER_GRACE_MS,
        )
        for n in range(GRANTS)
    ]


async def one_row(
    client: aioredis.Redis, script: LuaScript, per_call: int, slots: int
) -> tuple[float, int, float]:
    await client.flushdb()
    inventory = RedisInventory(client, key_prefix="cost:")
    for s in range(slots):
        await inventory.load(
            SlotState(slot_id=f"s{s}", capacity=GRANTS // slots, booked=0, release_at_ms=RELEASE_MS)
        )
    holds = requests(slots)
    calls = [
        hold_many_call(holds[start : start + per_call], REPLAY_TTL_MS)
        for start in range(0, GRANTS, per_call)
    ]
    pipeline = inventory._pipeline  # the adapter's own batching, as a worker runs it
    warm = HoldRequest(holds[0].family, "warm", "warm-marker", "warm", "warm", 0, 1)
    await pipeline.run(script, *hold_many_call([warm], REPLAY_TTL_MS))  # loads the script
    todo = iter(calls)
    granted = 0

    async def caller() -> None:
        nonlocal granted
        for call_keys, args in todo:
            replies: Any = await pipeline.run(script, call_keys, args)
            granted += sum(1 for reply in replies if reply[0] == b"GRANTED")

    await client.config_resetstat()
    before = await redis_cpu(client)
    await asyncio.gather(*(caller() for _ in range(max(1, 200 // per_call))))
    micros = (await redis_cpu(client) - before) / GRANTS * 1e6
    return micros, granted, await commands_inside(client) / GRANTS


async def commands_inside(client: aioredis.Redis) -> int:
    """The commands the scripts ran (every command counted since the row began but the
    script calls themselves and the CPU reading): a count, steady where CPU time is not on a
    shared machine."""
    stats = await client.info("commandstats")
    outside = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_info", "cmdstat_config"}
    return sum(int(v["calls"]) for k, v in stats.items() if k not in outside)


async def measure(url: str, variants: list[Path], rounds: int, slots: int) -> None:
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=16)
    )
    try:
        for round_ in range(rounds):
            for name, script in scripts(variants).items():
                for per_call in (1, HOLD_BATCH):
                    micros, granted, commands = await one_row(client, script, per_call, slots)
                    print(
                        f"round {round_}  {name:28} {per_call:3} a call"
                        f"  Redis CPU {micros:6.1f} µs/grant  {commands:5.2f} commands/grant"
                        f"  {granted=}"
                    )
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--slots", type=int, default=SLOTS, help="the grants spread over this many slots"
    )
    args = parser.parse_args()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    server = EmbeddedRedis()
    url = server.start()
    try:
        uvloop.run(measure(url, args.variant, args.rounds, args.slots))
    finally:
        server.stop()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()

"""What the group commit's survival check costs Redis: CPU per hold of ``held_all.lua``.

Not a test. After a group commit ``HoldCommits`` asks the pool, in one call, whether it still
knows the batch's holds (``RedisInventory.holds_all``). This grants ``--holds`` holds over
``--slots`` slots, then asks about them in batches of ``--batch`` (the holds of a batch in the
order they were granted, so a batch spans ``min(batch, slots)`` slots: a release's grants
crowd onto a few slots, the http_surge bench spreads them over thousands), and divides Redis's
``used_cpu_user + used_cpu_sys`` (``INFO cpu``) by the holds asked about. Rows, in turn:

- ``by slot``: ``holds_all`` as the adapter runs it (a slot's keys and its fence and meta
  read once for all its holds, since branch commit3);
- ``by hold``: ``--by-hold FILE``, the script of before (main's ``held_all.lua``: four keys and
  two reads of the slot for every hold), the same holds in that script's layout.

    git -C /work/main show main:guahao/platform/inventory/held_all.lua > /tmp/held_all_main.lua
    .venv/bin/python bench/survival_check_cost.py --by-hold /tmp/held_all_main.lua --slots 1 4 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.inventory import RedisInventory  # noqa: E402
from guahao.platform.inventory.lua_scripts import LuaScript  # noqa: E402
from guahao.platform.inventory.redis_inventory import _held_keys  # noqa: E402
from guahao.platform.ports import SlotState  # noqa: E402

RELEASE_MS = 1_780_000_000_000
TTL_MS = 15 * 60 * 1000

Check = tuple[str, str, int]


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def granted(inventory: RedisInventory, holds: int, slots: int) -> list[Check]:
    for s in range(slots):
        await inventory.load(
            SlotState(slot_id=f"s{s}", capacity=holds, booked=0, release_at_ms=RELEASE_MS)
        )
    checks = []
    for n in range(holds):
        slot_id = f"s{n % slots}"
        await inventory.hold(
            slot_id,
            hold_id=f"h{n}",
            account_id=f"a{n}",
            now_ms=RELEASE_MS,
            ttl_ms=TTL_MS,
            idempotency_key=f"k{n}",
        )
        checks.append((slot_id, f"h{n}", RELEASE_MS))
    return checks


async def by_hold(inventory: RedisInventory, script: LuaScript, batch: list[Check]) -> int:
    """The script of before: four keys and the hold id and now of every hold."""
    keys: list[str] = []
    args: list[str | int] = []
    for slot_id, hold_id, now_ms in batch:
        keys += _held_keys(inventory._keys.family(slot_id))
        args += [hold_id, now_ms]
    replies = await inventory._run(script, keys, args)
    return sum(1 for reply in replies if reply == b"HELD")


async def measure(url: str, options: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(url)
    old = LuaScript("held_all_by_hold", options.by_hold.read_text()) if options.by_hold else None
    try:
        for round_ in range(options.rounds):
            for slots in options.slots:
                await client.flushdb()
                inventory = RedisInventory(client, key_prefix="survival:")
                checks = await granted(inventory, options.holds, slots)
                batches = [
                    checks[n : n + options.batch] for n in range(0, len(checks), options.batch)
                ]
                ways = ["by slot", "by hold"] if old else ["by slot"]
                for way in ways if round_ % 2 == 0 else ways[::-1]:
                    await inventory.holds_all(batches[0])  # the script loaded
                    held = 0
                    before = await redis_cpu(client)
                    for batch in batches:
                        if way == "by slot":
                            held += sum((await inventory.holds_all(batch)).values())
                        else:
                            assert old is not None
                            held += await by_hold(inventory, old, batch)
                    micros = (await redis_cpu(client) - before) / len(checks) * 1e6
                    print(
                        f"| {round_} | {slots} | {options.batch} | {way} | {micros:.2f} "
                        f"| {held == len(checks)} |",
                        flush=True,
                    )
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=20_000)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 20])
    parser.add_argument("--batch", type=int, default=20, help="holds a commit asks about")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--by-hold", type=Path, help="the script of before (main's)")
    options = parser.parse_args()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| round | slots | holds a call | way | Redis CPU µs a hold | every hold held |")
    print("| --- | --- | --- | --- | --- | --- |")
    server = EmbeddedRedis()
    url = server.start()
    try:
        uvloop.run(measure(url, options))
    finally:
        server.stop()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()

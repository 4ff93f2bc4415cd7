"""What a hold costs the worker's own CPU: ``RedisInventory.hold_or_refusal`` per grant and
per refusal from the worker's memory, on a real Redis.

Not a test. ``release_surge.py``'s ``cpu µs/dec`` column is the worker's CPU over a whole
surge of half a second, grants and refusals mixed; on a shared machine it moves by a tenth
from one run to the next, more than a change of a microsecond a grant. This runs the two
kinds of decision apart, many of them, in one process, and reads the process's own
``getrusage`` (user + system) around them:

- ``grants``: 60,000 holds spread over 200 slots with room for all, 200 coroutines (the
  surge's crowd), so every decision is a ``hold_many`` grant answered by Redis;
- ``refusals``: 200,000 holds on slots the worker's sold-out view already knows, so every
  decision is answered from memory (no round trip).

Run each tree in turn, its own first on the path, and compare the medians (load alike):

    .venv/bin/python bench/hold_worker_cost.py --rounds 5
    PYTHONPATH=/tmp/main-export .venv/bin/python bench/hold_worker_cost.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import sys
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a PYTHONPATH tree given first stays first
    sys.path.append(str(ROOT))

from guahao.platform.embedded_redis import EmbeddedRedis  # noqa: E402
from guahao.platform.error_codes import Refusal  # noqa: E402
from guahao.platform.inventory import RedisInventory  # noqa: E402
from guahao.platform.ports import SlotState  # noqa: E402

RELEASE_MS = 1_780_000_000_000
TTL_MS = 15 * 60 * 1000
SLOTS = 200
CROWD = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _row(url: str, prefix: str, attempts: int, *, sold_out: bool) -> float:
    """The worker's CPU µs a decision over ``attempts`` holds by ``CROWD`` coroutines."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32)
    client = aioredis.Redis(connection_pool=pool)
    inventory = RedisInventory(client, key_prefix=prefix)
    capacity = 0 if sold_out else attempts
    for s in range(SLOTS):
        await inventory.load(
            SlotState(slot_id=f"s{s}", capacity=capacity, booked=0, release_at_ms=RELEASE_MS)
        )
    inventory.follow_returns()
    async with asyncio.timeout(10):
        await inventory.sold_out.subscribed()
    hold = inventory.hold_or_refusal
    if sold_out:  # one refusal from Redis a slot teaches the view
        for s in range(SLOTS):
            await hold(
                f"s{s}",
                hold_id=f"learn{s}",
                account_id=f"learn{s}",
                now_ms=RELEASE_MS,
                ttl_ms=TTL_MS,
                idempotency_key=f"learn{s}",
            )
    todo = iter([(f"s{n % SLOTS}", f"h{n}", f"a{n}", f"k{n}") for n in range(attempts)])
    expected = Refusal if sold_out else object
    wrong = 0

    async def person() -> None:
        nonlocal wrong
        for slot_id, hold_id, account_id, key in todo:
            answer = await hold(
                slot_id,
                hold_id=hold_id,
                account_id=account_id,
                now_ms=RELEASE_MS,
                ttl_ms=TTL_MS,
                idempotency_key=key,
            )
            if not isinstance(answer, expected) or (not sold_out and isinstance(answer, Refusal)):
                wrong += 1

    before = _cpu_s()
    await asyncio.gather(*(person() for _ in range(CROWD)))
    used = _cpu_s() - before
    await inventory.stop_following()
    await client.aclose()
    if wrong:
        raise SystemExit(f"{wrong} answers were not {'refusals' if sold_out else 'grants'}")
    return used / attempts * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--grants", type=int, default=60_000)
    parser.add_argument("--refusals", type=int, default=200_000)
    options = parser.parse_args()
    import guahao

    print(f"code: {Path(guahao.__file__).parent.parent}")
    server = EmbeddedRedis(port=_free_port())  # loopback TCP, as release_surge.py
    url = server.start()
    rows: dict[str, list[float]] = {"grants": [], "refusals": []}
    try:
        for n in range(options.rounds):
            grant = uvloop.run(_row(url, f"g{n}:", options.grants, sold_out=False))
            refusal = uvloop.run(_row(url, f"r{n}:", options.refusals, sold_out=True))
            rows["grants"].append(grant)
            rows["refusals"].append(refusal)
            print(f"round {n}  µs a grant {grant:6.2f}  µs a refusal from memory {refusal:5.2f}")
    finally:
        server.stop()
    for name, values in rows.items():
        print(f"{name:<9} median {statistics.median(values):6.2f}  min {min(values):6.2f} µs")


if __name__ == "__main__":
    main()

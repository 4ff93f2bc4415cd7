"""A worker killed while it runs a request: its claim on the request's idempotency key is a
lease it keeps renewing, so while it lives a retry elsewhere waits (``REQUEST_IN_PROGRESS``)
and once it is dead the retry is served within one lease, not after a minute.

The worker is a real OS process, killed with SIGKILL: no ``finally`` of its runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import redis.asyncio as aioredis

from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.web import idempotency
from guahao.web.idempotency import LEASE_SECONDS, IdempotencyRecords, claim_lease

RECORD = "idem:{acct:lease-test}:record"
LEASE = 1.0

_WORKER = f"""
import asyncio, sys
import redis.asyncio as aioredis
from guahao.web.idempotency import claim_lease, kept_leased

async def main():
    redis = aioredis.Redis.from_url(sys.argv[1])
    lease = await claim_lease(redis, {RECORD!r}, "fp", seconds={LEASE})
    assert lease is not None
    async with kept_leased(redis, {RECORD!r}, lease, seconds={LEASE}):
        print("claimed", flush=True)
        await asyncio.sleep(3600)  # the request that never finishes

asyncio.run(main())
"""


async def test_a_killed_workers_claim_lapses_within_a_lease_while_a_live_one_keeps_it(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    assert LEASE_SECONDS <= 5  # the production lease: a retry waits seconds, not a minute
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WORKER, redis_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert worker.stdout is not None
        assert (await worker.stdout.readline()).strip() == b"claimed"
        # Alive past several lease lengths: it renews, the retry is told to wait.
        await asyncio.sleep(LEASE * 2.5)
        assert await claim_lease(redis_client, RECORD, "fp", seconds=LEASE) is None

        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await worker.wait()
        while (taken := await claim_lease(redis_client, RECORD, "fp", seconds=LEASE)) is None:
            assert time.monotonic() - killed_at < LEASE * 3, "the dead worker's claim stayed"
            await asyncio.sleep(0.05)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert taken.startswith(b"pending:fp:")
    assert time.monotonic() - killed_at <= LEASE + 0.5


async def test_a_claim_sent_again_after_a_lost_reply_is_still_the_requests_own(
    redis_client: aioredis.Redis,
) -> None:
    """The pipeline resends a call whose connection broke; the claim it already made must not
    then look like someone else's (the request would answer REQUEST_IN_PROGRESS to itself)."""
    pipeline = AutoPipeline(redis_client)
    record, lease = "idem:{acct:resend}:record", b"pending:fp:0123456789abcdef"
    first = await pipeline.run(idempotency._CLAIM, [record], [lease, 5000])
    again = await pipeline.run(idempotency._CLAIM, [record], [lease, 5000])
    other = await pipeline.run(idempotency._CLAIM, [record], [b"pending:fp:another", 5000])
    assert [int(first[0]), int(again[0])] == [1, 1]
    assert int(other[0]) == 0
    assert other[1] == lease  # what stands, answered in the same round trip


async def test_a_lapsed_claim_does_not_drop_the_retry_that_took_it_over(
    redis_client: aioredis.Redis,
) -> None:
    records = IdempotencyRecords(redis_client, seconds=LEASE)
    record = "idem:{acct:lapsed}:record"
    stalled, _ = await records.claim(record, "fp")
    assert stalled is not None
    await redis_client.delete(record)  # its lease ran out while it stalled
    retry, _ = await records.claim(record, "fp")
    assert retry is not None
    await records.settle(record, stalled, None)  # the stalled request ends refused
    assert await redis_client.get(record) == retry  # the retry still holds its key
    await records.settle(record, retry, b"answer")
    assert await redis_client.get(record) == b"answer"

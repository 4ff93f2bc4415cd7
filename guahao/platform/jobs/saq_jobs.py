"""Background jobs on a Redis-backed queue (saq): expiries, no-shows, outbox, refunds.

Correctness never depends on a job running on time: holds expire inside the inventory scripts
and every job is a sweep that is safe to repeat. Jobs only make the record of truth catch up
quickly (a payment order expires the moment its time is up, not at the next sweep).

On Redis Cluster the queue's name is wrapped in a hash tag (``{guahao}``): saq's scripts and
transactions touch several keys of one queue at once, and the tag keeps them all (and every
job's own keys, which carry the queue's name) on one shard. saq names one key by the job's
key alone (its abort flag, read by the enqueue script), so on a cluster job keys carry the tag
too. Jobs are few beside the slot pool, so one shard carries them easily.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from saq import CronJob, Job, Worker
from saq.queue.redis import RedisQueue

from guahao.platform.redis_pools import cluster_node_url, is_cluster_url

__all__ = ["SaqJobs"]

log = logging.getLogger(__name__)


JobFunction = Callable[..., Awaitable[Any]]


class _ClusterQueue(RedisQueue):
    """A queue whose every key shares its name's hash tag, the jobs' abort flags included."""

    async def _enqueue(self, job: Job) -> Job | None:
        # Every job passes here, ours and the worker's cron jobs alike.
        if not job.key.startswith(self.name):
            job.key = f"{self.name}{job.key}"
        return await super()._enqueue(job)


class SaqJobs:
    """The saq queue and, when asked, a worker running our job functions in this process.

    The ``JobScheduler`` port (``guahao.platform.ports``) is what services see of it.
    """

    def __init__(self, redis_url: str, *, name: str = "guahao") -> None:
        # Built from a client (not ``Queue.from_url``) so unix:// URLs of the embedded Redis work.
        if is_cluster_url(redis_url):
            # saq types its client as ``Redis``; the cluster client offers the same commands.
            client = cast(aioredis.Redis, RedisCluster.from_url(cluster_node_url(redis_url)))
            self.queue: RedisQueue = _ClusterQueue(client, name=f"{{{name}}}")
        else:
            self.queue = RedisQueue(aioredis.Redis.from_url(redis_url), name=name)
        self._worker: Worker[Any] | None = None

    async def connect(self) -> None:
        await self.queue.connect()

    async def schedule(
        self, function: str, *, key: str, at: datetime | None = None, **kwargs: Any
    ) -> None:
        scheduled = int(at.timestamp()) + 1 if at is not None else 0
        await self.queue.enqueue(
            function,
            key=key,
            scheduled=scheduled,
            timeout=60,
            retries=5,
            retry_delay=2.0,
            retry_backoff=True,
            **kwargs,
        )

    def worker(
        self,
        functions: dict[str, JobFunction],
        *,
        sweeps: dict[str, str],
        context: dict[str, Any],
    ) -> Worker[Any]:
        """A worker for ``functions``; ``sweeps`` maps a function name to its cron schedule."""

        async def startup(ctx: dict[str, Any]) -> None:
            ctx.update(context)

        named = []
        for name, fn in functions.items():

            async def job(ctx: dict[str, Any], *, _fn: JobFunction = fn, **kw: Any) -> Any:
                return await _fn(**kw)

            job.__qualname__ = job.__name__ = name
            named.append(job)
        by_name = {fn.__name__: fn for fn in named}
        cron: list[Any] = [
            CronJob(by_name[name], cron=spec, timeout=120) for name, spec in sweeps.items()
        ]
        self._worker = Worker(
            self.queue,
            functions=named,
            cron_jobs=cron,
            startup=startup,
            concurrency=8,
            shutdown_grace_period_s=2,  # let a running job finish on a clean stop
        )
        return self._worker

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        await self.queue.disconnect()

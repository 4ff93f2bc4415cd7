"""The Redis connection pools every part of the platform uses, built one way.

A pooled connection outlives a Redis restart as a dead socket; redis-py by default sends the
next command on it and fails ("Connection closed by server"), once per pooled connection, so
for a while after Redis was back requests kept answering 503. Each pool here retries a command
that met a broken connection on a fresh one, a couple of times with a short backoff: the first
request after Redis returns succeeds. Retrying is safe for what the platform sends: every
inventory and gateway script is idempotent per hold, order or refund number (they were written
for a client that re-sends after a lost reply), and a rate-limit counter counted twice errs on
the strict side.

Redis Cluster is chosen by the URL's scheme (``redis+cluster://host:port``, or
``rediss+cluster://`` with TLS; any one node, the client discovers the rest): ``shared_client``
then builds redis-py's ``RedisCluster``, which routes every command by its key's hash slot.
Every multi-key script and transaction of the platform keeps its keys under one hash tag (the
slot pool's ``{slot:<id>}``, an account's ``{acct:<id>}``, the job queue's ``{guahao}``), so each
runs on one shard; ``tests/unit/test_cluster_key_slots.py`` checks it.
"""

from __future__ import annotations

from typing import Final, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "CLUSTER_SCHEME",
    "RETRIES_ON_BROKEN_CONNECTION",
    "blocking_pool",
    "cluster_node_url",
    "is_cluster_url",
    "shared_client",
]

CLUSTER_SCHEME: Final = "redis+cluster"
"""The URL scheme that selects Redis Cluster (``rediss+cluster`` for TLS)."""

RETRIES_ON_BROKEN_CONNECTION: Final = 2
"""Enough to get past one dead pooled socket and a server still accepting; few enough that a
Redis really away costs a request well under a second before its 503."""


def blocking_pool(
    url: str, *, max_connections: int, timeout: float
) -> aioredis.BlockingConnectionPool:
    """A pool where a request past ``max_connections`` waits up to ``timeout`` seconds for a
    connection (instead of failing), and a broken connection is replaced and retried."""
    return aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), RETRIES_ON_BROKEN_CONNECTION),
        retry_on_error=[RedisConnectionError],
    )


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster.

    >>> is_cluster_url("redis+cluster://10.0.0.5:6379"), is_cluster_url("redis://r:6379/0")
    (True, False)
    """
    return url.partition("://")[0] in {CLUSTER_SCHEME, "rediss+cluster"}


def cluster_node_url(url: str) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL of the node a cluster URL names.

    >>> cluster_node_url("rediss+cluster://10.0.0.5:6379")
    'rediss://10.0.0.5:6379'
    """
    scheme, _, rest = url.partition("://")
    return f"{scheme.removesuffix('+cluster')}://{rest}"


def shared_client(url: str, *, max_connections: int, timeout: float) -> aioredis.Redis:
    """The client a process shares: a blocking pool on one server, or a cluster client.

    On a cluster each node gets up to ``max_connections`` connections (``timeout`` does not
    apply: past them a command fails at once, ``MaxConnectionsError``, a ``ConnectionError``)
    and commands are routed by hash slot (MOVED and ASK followed, the slot map refreshed).
    The cluster client is typed
    as ``Redis`` for the code that takes the shared client: it offers the same command methods
    (the single-key commands, scripts, one-slot pipelines, pub/sub and locks the platform
    uses), and the cluster suites run that code on a real cluster.
    """
    if is_cluster_url(url):
        cluster = RedisCluster.from_url(
            cluster_node_url(url),
            max_connections=max_connections,
            retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), RETRIES_ON_BROKEN_CONNECTION),
        )
        return cast(aioredis.Redis, cluster)
    return aioredis.Redis.from_pool(
        blocking_pool(url, max_connections=max_connections, timeout=timeout)
    )

"""The Redis connection pools every part of the platform uses, built one way.

A pooled connection outlives a Redis restart as a dead socket; redis-py by default sends the
next command on it and fails ("Connection closed by server"), once per pooled connection, so
for a while after Redis was back requests kept answering 503. Each pool here retries a command
that met a broken connection on a fresh one, a couple of times with a short backoff: the first
request after Redis returns succeeds. Retrying is safe for what the platform sends: every
inventory and gateway script is idempotent per hold, order or refund number (they were written
for a client that re-sends after a lost reply), and a rate-limit counter counted twice errs on
the strict side.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["RETRIES_ON_BROKEN_CONNECTION", "blocking_pool"]

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

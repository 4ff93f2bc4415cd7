"""What Redis answers when it cannot serve now, as opposed to refusing a command."""

from __future__ import annotations

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)

__all__ = ["UNAVAILABLE"]

UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,  # Redis Cluster: no node serves the slot now
    TryAgainError,  # Redis Cluster: the slot is moving
    RedisClusterException,  # Redis Cluster: no node could be reached to learn the map
)
"""Redis did not answer, or answered that it cannot serve now: the caller may retry, and
callers answer ``INVENTORY_UNAVAILABLE`` (503) rather than an unknown error."""

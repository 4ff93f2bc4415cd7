"""The real Redis server the application starts for itself when no Redis URL is configured."""

from guahao.platform.embedded_redis.server import (
    EmbeddedRedis,
    bundled_redis_server,
    find_redis_server,
)

__all__ = ["EmbeddedRedis", "bundled_redis_server", "find_redis_server"]

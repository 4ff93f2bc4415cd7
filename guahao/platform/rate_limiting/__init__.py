"""Request rate limits on the shared Redis: the adapter of the ``RequestLimits`` port."""

from guahao.platform.rate_limiting.redis_limiter import (
    POOL_SIZE,
    SYNC_SECONDS,
    RequestLimiter,
)

__all__ = ["POOL_SIZE", "SYNC_SECONDS", "RequestLimiter"]

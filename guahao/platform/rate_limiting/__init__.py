"""Request rate limits on the shared Redis: the adapter of the ``RequestLimits`` port."""

from guahao.platform.rate_limiting.redis_limiter import (
    FRESH_SECONDS,
    POOL_SIZE,
    SYNC_SECONDS,
    RequestLimiter,
)

__all__ = ["FRESH_SECONDS", "POOL_SIZE", "SYNC_SECONDS", "RequestLimiter"]

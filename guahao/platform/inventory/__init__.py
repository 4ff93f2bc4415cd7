"""The hot slot pool (号源池): holds, confirmations and restocks as atomic Redis scripts."""

from guahao.platform.inventory.redis_inventory import DEFAULT_REPLAY_TTL_MS, RedisInventory

__all__ = ["DEFAULT_REPLAY_TTL_MS", "RedisInventory"]

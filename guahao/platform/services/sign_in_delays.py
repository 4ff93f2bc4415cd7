"""Progressive delays after wrong passwords, per phone and per address: never a lockout.

A lock after ten wrong passwords is a weapon: a scalper types ten wrong passwords for a rival's
phone just before a release and the rival cannot sign in for fifteen minutes. Whoever guesses
is rarely the owner, so wrong answers only space out further attempts: after a few free
failures each attempt must wait twice as long as the last, capped at a minute. Guessing stays
hopeless (a minute per guess), while the real owner, holding the right password, waits at most
a minute whatever anyone else typed. The same delays apply per address, with more free
failures (many people share an office's or a carrier's address), so one address cannot guess
across many phones either. A right password clears its phone's count, not its address's.

The state is two Redis hashes per subject (failure count and the earliest next attempt, epoch
milliseconds by the platform's clock), forgotten an hour after the last failure. Staff sign-in
uses the same delays under its own key prefix, keyed by the username's keyed hash.
"""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio as aioredis

from guahao.platform.clock import Clock, to_epoch_ms
from guahao.platform.error_codes import refuse

__all__ = [
    "ADDRESS_FREE_FAILURES",
    "FAILURE_MEMORY",
    "MAX_DELAY_SECONDS",
    "PHONE_FREE_FAILURES",
    "SignInDelays",
    "delay_after",
]

PHONE_FREE_FAILURES = 3
"""Wrong passwords for one phone before attempts start to be spaced out."""

ADDRESS_FREE_FAILURES = 10
"""Wrong passwords from one address before its attempts start to be spaced out."""

MAX_DELAY_SECONDS = 60
"""The longest wait between attempts: nobody is ever kept out for longer."""

FAILURE_MEMORY = timedelta(hours=1)
"""A subject's failure count is forgotten this long after its last failure."""


def delay_after(failures: int, free: int) -> int:
    """Seconds the next attempt must wait after ``failures`` wrong answers in a row.

    >>> [delay_after(n, 3) for n in (0, 3, 4, 5, 6, 9, 20)]
    [0, 0, 2, 4, 8, 60, 60]
    """
    if failures <= free:
        return 0
    return int(min(2 ** (failures - free), MAX_DELAY_SECONDS))


class SignInDelays:
    """Waits between password attempts, keyed by the phone's and the address's keyed hashes
    (never the phone itself: Redis holds no personal data in clear)."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, prefix: str = "sign-in-pw") -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        """Citizens' and staff's counts live apart (``staff-sign-in-pw`` for staff)."""

    def _subjects(self, phone_index: str, address_hash: str) -> list[tuple[str, int]]:
        subjects = [(f"{self._prefix}:{{{phone_index}}}:failures", PHONE_FREE_FAILURES)]
        if address_hash:
            subjects.append(
                (f"{self._prefix}-ip:{{{address_hash}}}:failures", ADDRESS_FREE_FAILURES)
            )
        return subjects

    async def check(self, phone_index: str, address_hash: str) -> None:
        """Refuse ``SIGN_IN_WAIT`` (with ``retry_after_seconds``) while either the phone or
        the address must still wait; otherwise return at once."""
        now_ms = to_epoch_ms(self._clock.now())
        wait_until = 0
        for key, _free in self._subjects(phone_index, address_hash):
            stored = await self._redis.hget(key, "wait_until_ms")
            wait_until = max(wait_until, int(stored or 0))
        if now_ms < wait_until:
            refuse("SIGN_IN_WAIT", retry_after_seconds=max(1, -(-(wait_until - now_ms) // 1000)))

    async def failed(self, phone_index: str, address_hash: str) -> int:
        """Count a wrong answer for the phone and the address; the seconds the next attempt
        must wait (the longer of the two)."""
        now_ms = to_epoch_ms(self._clock.now())
        longest = 0
        for key, free in self._subjects(phone_index, address_hash):
            failures = await self._redis.hincrby(key, "count", 1)
            delay = delay_after(int(failures), free)
            await self._redis.hset(key, "wait_until_ms", now_ms + delay * 1000)
            await self._redis.expire(key, int(FAILURE_MEMORY.total_seconds()))
            longest = max(longest, delay)
        return longest

    async def succeeded(self, phone_index: str) -> None:
        """The right password: the phone's count starts again (the address's does not, or
        one known account would reset an address's guessing across others)."""
        key, _free = self._subjects(phone_index, "")[0]
        await self._redis.delete(key)

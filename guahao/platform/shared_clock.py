"""One clock for every worker: each process's time, corrected to a reference they all share.

Every decision that several workers must agree on is taken on the platform's ``Clock``: when
a hold runs out (the slot scripts purge with the caller's time), when a release opens, which
bookings a sweep expires, when an idempotency lease or a payment order lapses. Two app
processes whose machines disagree by 30 seconds would then disagree on all of these: the
fast one opens a release early and purges holds the slow one just granted; the slow one
confirms holds already over. ``SharedClock`` keeps each process's own ticking (no round trip
per reading) but measures, at start and every ``CALIBRATION_SECONDS``, how far it is from the
reference, Redis's ``TIME``: the one server every worker already talks to for the pool. All
workers then read the reference's time to within half a round trip plus the drift of one
interval.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis

from guahao.platform.clock import Clock
from guahao.platform.task_stops import raise_if_cancelling

__all__ = [
    "CALIBRATION_SECONDS",
    "SKEW_WARNING",
    "ClockTime",
    "RedisTime",
    "ReferenceTime",
    "SharedClock",
]

log = logging.getLogger(__name__)

CALIBRATION_SECONDS = 10.0
"""How often the offset is measured again. A host clock disciplined by NTP drifts by well
under a millisecond in this time; one stepped by hand is followed within it."""

SKEW_WARNING = timedelta(seconds=1)
"""A host clock further than this from the reference is logged: decisions stay right (they use
the reference), but the host's NTP needs looking at."""


class ReferenceTime(Protocol):
    """The time all workers agree on."""

    async def now(self) -> datetime:
        """The reference's current instant, timezone-aware UTC."""
        ...


class RedisTime:
    """Redis's ``TIME``: the pool's own server, which every worker reaches anyway."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def now(self) -> datetime:
        seconds, micros = await self._redis.time()
        return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=int(micros))


class ClockTime:
    """A reference read from a clock of this process: scenario replays (``bench/faults.py``)
    where workers skewed from one ``ManualClock`` must agree on it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def now(self) -> datetime:
        return self._clock.now()


class SharedClock:
    """``Clock``: the local clock plus the last measured offset to the reference.

    Reading it costs nothing (no round trip); ``calibrate`` measures the offset, ``run``
    keeps measuring until cancelled. A failed measurement keeps the last offset (a Redis
    away for a moment must not send the clock back to the host's own idea of time).
    """

    def __init__(
        self,
        local: Clock,
        reference: ReferenceTime,
        *,
        interval_seconds: float = CALIBRATION_SECONDS,
    ) -> None:
        self._local = local
        self._reference = reference
        self._interval = interval_seconds
        self._offset = timedelta(0)
        self._calibrated = False

    @property
    def offset(self) -> timedelta:
        """How far the reference is ahead of the local clock (negative: behind)."""
        return self._offset

    @property
    def calibrated(self) -> bool:
        return self._calibrated

    def now(self) -> datetime:
        return self._local.now() + self._offset

    async def calibrate(self) -> timedelta:
        """Measure the offset once; the reference's reading is taken as the midpoint of the
        round trip, so the error is at most half of it."""
        before = self._local.now()
        reference = await self._reference.now()
        after = self._local.now()
        offset = reference - (before + (after - before) / 2)
        if abs(offset) > SKEW_WARNING and (
            not self._calibrated or abs(offset - self._offset) > SKEW_WARNING
        ):
            log.warning(
                "this host's clock is %.3f s off the reference; deciding on the reference",
                -offset.total_seconds(),
            )
        self._offset = offset
        self._calibrated = True
        return offset

    async def run(self) -> None:
        """Calibrate every ``interval_seconds`` until cancelled."""
        while True:
            raise_if_cancelling()  # a cancel lost inside the last calibration still ends it
            await asyncio.sleep(self._interval)
            try:
                await self.calibrate()
            except Exception as exc:  # keep the last offset, try again next interval
                log.warning("clock calibration failed, keeping offset %s: %r", self._offset, exc)

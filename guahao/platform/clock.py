"""The Clock port: time is injected, never patched.

Everything inside the platform is UTC and timezone-aware. Hospital wall time is converted at
the edges (see ``guahao.platform.hospitals``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SkewedClock", "SystemClock", "to_epoch_ms"]


@runtime_checkable
class Clock(Protocol):
    """Tells the current UTC time.

    Checkable at run time because route handlers receive it as a dependency
    (``clock: NamedDependency[Clock]``) and Litestar checks each dependency against its type.
    """

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock of the machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: scenario tests walk through time without sleeps.

    >>> c = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> c.advance(minutes=15).isoformat()
    '2026-01-01T00:15:00+00:00'
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


class SkewedClock:
    """Another clock, off by a fixed amount: a machine whose clock is wrong.

    Fault drills and tests inject clock skew between workers through it (the platform's
    ``SharedClock`` must absorb it).

    >>> c = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> SkewedClock(c, timedelta(seconds=-30)).now().isoformat()
    '2025-12-31T23:59:30+00:00'
    """

    def __init__(self, inner: Clock, skew: timedelta) -> None:
        self._inner = inner
        self.skew = skew

    def now(self) -> datetime:
        return self._inner.now() + self.skew


def to_epoch_ms(instant: datetime) -> int:
    """Milliseconds since the epoch, the unit Redis scripts compare.

    >>> to_epoch_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000
    """
    return int(instant.timestamp() * 1000)

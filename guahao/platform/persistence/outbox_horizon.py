"""How far the outbox may be read in id order on PostgreSQL without passing an event that is
still being committed.

Outbox ids come from a sequence when the row is inserted, but transactions commit in their own
order: a booking's transaction may take id 100, a second one id 101 and commit first. A cursor
that read 101 and moved past it would never see 100, and that booking's notification and HIS
message would be lost without an error. (SQLite cannot do this: its one writer holds the
database until it commits, so ids become visible in order.)

So a reader never passes a missing id while a transaction that might hold it could still
commit. A missing id (a *gap*) is passed only when a read made after every transaction that was
running when the gap was first seen has ended still lacks it: it was rolled back, or taken by an
insert that failed, and can never appear. Until then the cursor stops before it, which delays
the rows behind it by about the length of the transactions that were open (milliseconds), not
forever. ``GRACE_SECONDS`` also covers the instant in which an insert has drawn its id but its
transaction has no transaction id yet, so it is in no snapshot's list of running transactions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["GRACE_SECONDS", "CommitHorizon"]

GRACE_SECONDS = 0.5
"""The least time a gap is waited for, whatever the running transactions say."""

FORGET_SECONDS = 600.0
"""Gaps known to be for good are remembered this long, for the slower subscribers to pass."""


@dataclass
class _Gap:
    end: int
    """The first id after the missing ones."""
    running_up_to: int | None
    """The newest transaction id running when the gap was first seen (``None``: none ran)."""
    seen_at: float
    passable: bool = False


class CommitHorizon:
    """One dispatcher's knowledge of the outbox's gaps (by their first missing id), shared by
    all its subscribers."""

    def __init__(self, grace_seconds: float = GRACE_SECONDS) -> None:
        self._grace = grace_seconds
        self._gaps: dict[int, _Gap] = {}

    async def before_read(self, session: AsyncSession, position: int) -> None:
        """Decide, before the read, which gaps past ``position`` a read may now pass: one whose
        transactions have all ended since, and that the read then still lacks, never fills."""
        waiting = [
            gap for first, gap in self._gaps.items() if gap.end > position and not gap.passable
        ]
        if not waiting:
            return
        oldest_running = int(
            await session.scalar(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
        )
        now = time.monotonic()
        for gap in waiting:
            ended = gap.running_up_to is None or gap.running_up_to < oldest_running
            gap.passable = ended and now - gap.seen_at >= self._grace

    async def readable(self, session: AsyncSession, position: int, ids: Sequence[int]) -> int:
        """How many of ``ids`` (read after ``position``, ascending) may be delivered: up to the
        first gap that ``before_read`` did not find passable. A gap part of which was filled
        since is passed on what was decided for the whole of it."""
        expected = position + 1
        for count, found in enumerate(ids):
            if found > expected:
                gap = self._gaps.get(expected)
                if gap is None or gap.end < found:
                    await self._note(session, expected, found)
                    return count
                if not gap.passable:
                    return count
            expected = found + 1
        self._forget_old()
        return len(ids)

    async def _note(self, session: AsyncSession, first: int, end: int) -> None:
        running = await session.scalar(
            text("SELECT max(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x")
        )
        self._gaps[first] = _Gap(end, None if running is None else int(running), time.monotonic())

    def _forget_old(self) -> None:
        old = time.monotonic() - FORGET_SECONDS
        for first in [f for f, gap in self._gaps.items() if gap.passable and gap.seen_at < old]:
            del self._gaps[first]

"""Availability summaries computed the way the platform's own queries compute them.

SQL says which sessions and slots exist (and whether a session is stopped); the hot pool in
Redis says how many units are left right now. A unit counts as free only when a hold would be
granted now: the slot is open in Redis, released, and not started. Units not yet released
give ``next_release_at`` instead, so a citizen sees when the next batch opens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from guahao.platform.clock import to_epoch_ms
from guahao.platform.persistence.tables import HospitalRow, SessionRow, SlotRow
from guahao.platform.services.runtime import Ports
from guahao.search.documents import Availability, AvailabilityCell

__all__ = [
    "FREE_WINDOW_DAYS",
    "HORIZON_DAYS",
    "AvailabilityReader",
    "combine",
    "local_today",
]

HORIZON_DAYS = 31
"""How far ahead availability is summarised (and "within N days" may reach)."""

FREE_WINDOW_DAYS = 7
"""The window of ``free_7d``: today and the six days after it."""

_BATCH = 500
_REGION_TZ = ZoneInfo("Asia/Shanghai")


def local_today(now: datetime, timezone: str = "Asia/Shanghai") -> date:
    """The local calendar date of ``now`` in a hospital's time zone."""
    return now.astimezone(ZoneInfo(timezone) if timezone else _REGION_TZ).date()


@dataclass
class _Tally:
    categories: set[str] = field(default_factory=set)
    free: dict[tuple[date, str], int] = field(default_factory=lambda: defaultdict(int))
    next_release: datetime | None = None

    def summary(self, now: datetime, today: date) -> Availability:
        cells = tuple(
            AvailabilityCell(day=d, category=c, free=n)
            for (d, c), n in sorted(self.free.items())
            if n > 0
        )
        window_end = today + timedelta(days=FREE_WINDOW_DAYS)
        return Availability(
            computed_at=now,
            next_date=cells[0].day if cells else None,
            free_7d=sum(c.free for c in cells if today <= c.day < window_end),
            next_release_at=self.next_release,
            categories=tuple(sorted(self.categories)),
            cells=cells,
        )


def combine(summaries: Iterable[Availability], now: datetime, today: date) -> Availability:
    """The availability of a department or hospital: the sum of its doctors'.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> a = Availability(computed_at=t, categories=("general",),
    ...     cells=(AvailabilityCell(date(2026, 1, 2), "general", 3),))
    >>> b = Availability(computed_at=t, categories=("premium",),
    ...     cells=(AvailabilityCell(date(2026, 1, 2), "general", 2),))
    >>> combine([a, b], t, date(2026, 1, 1)).free_7d
    5
    """
    tally = _Tally()
    for summary in summaries:
        tally.categories.update(summary.categories)
        for cell in summary.cells:
            tally.free[(cell.day, cell.category)] += cell.free
        if summary.next_release_at is not None and (
            tally.next_release is None or summary.next_release_at < tally.next_release
        ):
            tally.next_release = summary.next_release_at
    return tally.summary(now, today)


class AvailabilityReader:
    """Reads availability of doctors from SQL and the hot pool (never writes)."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def doctors(self, doctor_ids: Sequence[str] | None = None) -> dict[str, Availability]:
        """Summaries of the given doctors (every doctor with sessions, when ``None``).

        A doctor without a session in the horizon has no entry: callers treat that as "no
        supply" (an empty ``Availability``).
        """
        now = self._p.clock.now()
        first_day = local_today(now) - timedelta(days=1)  # time zones east of the region's
        last_day = first_day + timedelta(days=HORIZON_DAYS + 1)
        ids = list(doctor_ids) if doctor_ids is not None else None
        tallies: dict[str, _Tally] = {}
        today_of: dict[str, date] = {}
        chunks = [ids[i : i + _BATCH] for i in range(0, len(ids), _BATCH)] if ids else [None]
        if ids is not None and not ids:
            return {}
        for chunk in chunks:
            query = (
                select(
                    SessionRow.doctor_id,
                    SessionRow.date,
                    SessionRow.category,
                    SessionRow.status,
                    SlotRow.id,
                    SlotRow.starts_at,
                    SlotRow.release_at,
                    HospitalRow.timezone,
                )
                .join(SlotRow, SlotRow.session_id == SessionRow.id)
                .join(HospitalRow, HospitalRow.id == SessionRow.hospital_id)
                .where(SessionRow.date >= first_day, SessionRow.date <= last_day)
            )
            if chunk is not None:
                query = query.where(SessionRow.doctor_id.in_(chunk))
            async with self._p.sessions() as session:
                rows = (await session.execute(query)).all()
            await self._tally(rows, now, tallies, today_of)
        return {
            doctor_id: tally.summary(now, today_of[doctor_id])
            for doctor_id, tally in tallies.items()
        }

    async def _tally(
        self,
        rows: Sequence[tuple[str, date, str, str, str, datetime, datetime, str]],
        now: datetime,
        tallies: dict[str, _Tally],
        today_of: dict[str, date],
    ) -> None:
        live = []
        for row in rows:
            doctor_id, day, category, status, _slot_id, starts_at, release_at, tz = row
            today = today_of.setdefault(doctor_id, local_today(now, tz))
            if day < today or starts_at <= now or status != "open":
                continue
            tally = tallies.setdefault(doctor_id, _Tally())
            tally.categories.add(category)
            if release_at > now:
                if tally.next_release is None or release_at < tally.next_release:
                    tally.next_release = release_at
                continue
            live.append(row)
        now_ms = to_epoch_ms(now)
        for start in range(0, len(live), 2000):
            part = live[start : start + 2000]
            counts = await self._p.inventory.counts([r[4] for r in part], now_ms=now_ms)
            for doctor_id, day, category, _status, slot_id, *_rest in part:
                snap = counts.get(slot_id)
                if snap is not None and snap.status == "open" and snap.available > 0:
                    tallies[doctor_id].free[(day, category)] += snap.available

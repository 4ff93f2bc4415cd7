"""The third next available appointment, the standard access measure, kept per day.

Once a day (the sweep's first round after local midnight) and per hospital and catalog
specialty: the days from today to the visit day of the third unit free for online booking now
(released, open, in the future; confirmed bookings counted, holds of the moment not). Kept
per measuring day in ``access_measures``, the measure is its own trend: the authority's view
reads it instead of reconstructing the past.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from guahao.platform.persistence.tables import (
    AccessMeasureRow,
    DepartmentRow,
    HospitalRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.runtime import Ports

__all__ = ["ACCESS_HORIZON_DAYS", "AccessMeasures", "third_next_days"]

ACCESS_HORIZON_DAYS = 60
"""How far ahead the third-next-available measure looks for free units."""


def third_next_days(free_units_by_day: Iterable[tuple[date, int]], today: date) -> int | None:
    """Days from ``today`` to the day of the third free unit, in visit order.

    >>> d = date(2026, 3, 2)
    >>> third_next_days([(date(2026, 3, 3), 1), (date(2026, 3, 5), 1), (date(2026, 3, 9), 4)], d)
    7
    >>> third_next_days([(date(2026, 3, 2), 3)], d)
    0
    >>> third_next_days([(date(2026, 3, 3), 2)], d) is None
    True
    """
    seen = 0
    for day, free in sorted(free_units_by_day):
        seen += max(free, 0)
        if seen >= 3:
            return (day - today).days
    return None


class AccessMeasures:
    """Measures and keeps the third-next-available per hospital and specialty."""

    def __init__(self, ports: Ports, *, zone: str = "Asia/Shanghai") -> None:
        self._p = ports
        self._zone = ZoneInfo(zone)

    def today(self) -> date:
        return self._p.clock.now().astimezone(self._zone).date()

    async def measure_access_if_due(self) -> int:
        """Measure today's third-next-available once (the sweep calls this every round)."""
        today = self.today()
        async with self._p.sessions() as session:
            done = await session.scalar(
                select(AccessMeasureRow.hospital_id)
                .where(AccessMeasureRow.measured_on == today)
                .limit(1)
            )
        if done is not None:
            return 0
        try:
            return await self.measure_access()
        except IntegrityError:
            # Another job worker's sweep measured today between the check and the write:
            # its measure stands, and this round's (the same figures) is not written twice.
            return 0

    async def measure_access(self) -> int:
        """For each hospital and catalog specialty: the days until the third unit free for
        online booking now (released, open, in the future). Replaces today's measure."""
        now = self._p.clock.now()
        today = self.today()
        async with self._p.sessions() as session, session.begin():
            pairs = (
                await session.execute(
                    select(
                        DepartmentRow.hospital_id, DepartmentRow.catalog_code, HospitalRow.district
                    )
                    .join(HospitalRow, HospitalRow.id == DepartmentRow.hospital_id)
                    .where(HospitalRow.active.is_(True))
                    .distinct()
                )
            ).all()
            free = (
                await session.execute(
                    select(
                        SessionRow.hospital_id,
                        DepartmentRow.catalog_code,
                        SessionRow.date,
                        func.sum(SlotRow.online_quota - SlotRow.online_booked),
                    )
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(DepartmentRow, DepartmentRow.id == SessionRow.department_id)
                    .where(
                        SlotRow.release_at <= now,
                        SlotRow.starts_at > now,
                        SlotRow.status == "open",
                        SessionRow.status == "open",
                        SlotRow.online_quota > SlotRow.online_booked,
                        SessionRow.date <= today + timedelta(days=ACCESS_HORIZON_DAYS),
                    )
                    .group_by(SessionRow.hospital_id, DepartmentRow.catalog_code, SessionRow.date)
                )
            ).all()
            by_pair: dict[tuple[str, str], list[tuple[date, int]]] = defaultdict(list)
            for hospital_id, catalog_code, day, free_units in free:
                by_pair[(hospital_id, catalog_code)].append((day, int(free_units or 0)))
            await session.execute(
                delete(AccessMeasureRow).where(AccessMeasureRow.measured_on == today)
            )
            for hospital_id, catalog_code, district in pairs:
                units = by_pair.get((hospital_id, catalog_code), [])
                session.add(
                    AccessMeasureRow(
                        measured_on=today,
                        hospital_id=hospital_id,
                        catalog_code=catalog_code,
                        district=district,
                        third_next_days=third_next_days(units, today),
                        free_units=sum(n for _, n in units),
                        measured_at=now,
                    )
                )
        return len(pairs)

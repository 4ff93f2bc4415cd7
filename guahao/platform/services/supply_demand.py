"""The authority's read models, kept current from the outbox and rebuilt from the record.

``supply_demand_days`` holds one row per department and visit day. An event does not add to
or subtract from a row: it names the keys it touches (a booking's session, a session, a
waitlist entry) and those keys are *recomputed* from the record of truth. A recomputation
reads one department's day (tens to hundreds of rows) and gives the same row however often
and in whatever order events arrive, so at-least-once delivery needs no applied-events
ledger, and the rebuild command (``guahao console rebuild``) is the same code over every key.

Refused holds (unmet demand) are not in SQL at all on the hot path: the hold path feeds a
HyperLogLog per session in Redis (``guahao.platform.refused_demand``) and the sweep folds
the counts into ``refused_demand`` and the rollups here.

``access_measures`` keeps the third-next-available measure once a day per hospital and
catalog specialty (``measure_access``), so its trend is a read, not a reconstruction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from sqlalchemy import case, delete, func, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import (
    CUTOFF_EVENTS,
    AddOnUnitRow,
    BookingRow,
    DepartmentRow,
    HospitalRow,
    OutboxRow,
    RefusedDemandRow,
    SessionRow,
    SlotRow,
    SupplyDemandAreaRow,
    SupplyDemandDayRow,
    SupplyDemandHospitalRow,
    WaitlistEntryRow,
)
from guahao.platform.services.access_measures import AccessMeasures, third_next_days
from guahao.platform.services.refusal_fold import RefusalFold
from guahao.platform.services.runtime import Ports

__all__ = ["ROLLUP_SUBSCRIBER", "RollupKey", "SupplyDemandRollups", "third_next_days"]

log = logging.getLogger(__name__)

ROLLUP_SUBSCRIBER = "supply-demand-rollups"
"""The outbox cursor's stable name (declared, never derived from the class)."""

RollupKey = tuple[date, str]
"""(visit day, department id)."""

AreaKey = tuple[date, str, str]
"""(visit day, district, catalog code)."""

AREA_SUMS = (
    "released",
    "online_released",
    "offline_released",
    "booked",
    "cancelled",
    "no_shows",
    "checked_in",
    "refused",
    "waitlist_joined",
    "waitlist_unserved",
    "waitlist_waiting",
)
"""The counts the region's rows sum from the departments' rows."""

_CANCELLED = frozenset({"cancelled_by_patient", "cancelled_by_hospital"})


@dataclass
class _Tally:
    hospital_id: str
    district: str
    catalog_code: str
    session_ids: set[str] = field(default_factory=set)
    released: int = 0
    online_released: int = 0
    booked: int = 0
    cancelled: int = 0
    no_shows: int = 0
    checked_in: int = 0
    add_on_units: int = 0
    add_on_untraced: int = 0
    refused: int = 0
    waitlist_joined: int = 0
    waitlist_served: int = 0
    waitlist_unserved: int = 0
    waitlist_waiting: int = 0
    max_segment_minutes: int = 0
    midnight_releases: int = 0

    def row(self, key: RollupKey, now: datetime) -> SupplyDemandDayRow:
        return SupplyDemandDayRow(
            day=key[0],
            department_id=key[1],
            hospital_id=self.hospital_id,
            district=self.district,
            catalog_code=self.catalog_code,
            sessions=len(self.session_ids),
            released=self.released,
            online_released=self.online_released,
            offline_released=self.released - self.online_released,
            booked=self.booked,
            cancelled=self.cancelled,
            no_shows=self.no_shows,
            checked_in=self.checked_in,
            add_on_units=self.add_on_units,
            add_on_untraced=self.add_on_untraced,
            refused=self.refused,
            waitlist_joined=self.waitlist_joined,
            waitlist_served=self.waitlist_served,
            waitlist_unserved=self.waitlist_unserved,
            waitlist_waiting=self.waitlist_waiting,
            max_segment_minutes=self.max_segment_minutes,
            midnight_releases=self.midnight_releases,
            updated_at=now,
        )


def _released_at_midnight(release_at: datetime, zone: str) -> bool:
    local = release_at.astimezone(ZoneInfo(zone))
    return local.time() == time(0, 0)


class SupplyDemandRollups:
    """Outbox subscriber and rebuild of the supply-and-demand read models."""

    def __init__(self, ports: Ports, redis: aioredis.Redis, *, zone: str = "Asia/Shanghai") -> None:
        self._p = ports
        self._redis = redis
        self._zone = ZoneInfo(zone)
        self._access = AccessMeasures(ports, zone=zone)
        self._fold = RefusalFold(ports, redis, self.recompute)

    # ------------------------------------------------------------------ the subscriber

    async def on_event(self, event: OutboxEvent) -> None:
        """Recompute the rows the event touches (idempotent: a recomputation, not a sum)."""
        topic = event.topic
        if topic == "hospital.registered":
            await self._refresh_labels(str(event.payload.get("hospital_id") or event.aggregate_id))
            return
        async with self._p.sessions() as session:
            keys = await self._keys_of(session, event)
        if keys:
            await self.recompute(keys)

    async def on_events(self, events: Sequence[OutboxEvent]) -> None:
        """A run of events (the outbox's batch delivery): every key they touch is recomputed
        once, however many events of the run touched it. A release surge writes thousands of
        events on a few departments and days; one by one, each recomputed the same rows."""
        keys: set[RollupKey] = set()
        session_ids: set[str] = set()
        for event in events:
            if event.topic == "hospital.registered":
                await self.on_event(event)
            elif event.topic.startswith(("booking.", "session.", "slot.")):
                session_id = event.payload.get("session_id")
                if session_id is None and event.topic.startswith("session."):
                    session_id = event.aggregate_id
                if session_id is not None:
                    session_ids.add(str(session_id))
        async with self._p.sessions() as session:
            if session_ids:
                found = await session.execute(
                    select(SessionRow.date, SessionRow.department_id).where(
                        SessionRow.id.in_(sorted(session_ids))
                    )
                )
                keys |= {(day, department) for day, department in found.all()}
            for event in events:
                if event.topic.startswith("waitlist."):
                    keys |= await self._keys_of(session, event)
        if keys:
            await self.recompute(keys)

    async def _keys_of(self, session: AsyncSession, event: OutboxEvent) -> set[RollupKey]:
        topic, payload = event.topic, event.payload
        if topic.startswith(("booking.", "session.", "slot.")):
            session_id = payload.get("session_id")
            if session_id is None and topic.startswith("session."):
                session_id = event.aggregate_id
            if session_id is None:
                return set()
            found = (
                await session.execute(
                    select(SessionRow.date, SessionRow.department_id).where(
                        SessionRow.id == str(session_id)
                    )
                )
            ).first()
            return {(found[0], found[1])} if found is not None else set()
        if topic.startswith("waitlist."):
            entry_id = str(payload.get("entry_id") or event.aggregate_id)
            entry = await session.get(WaitlistEntryRow, entry_id)
            if entry is None:
                return set()
            key = await self._waitlist_key(session, entry)
            return {key} if key is not None else set()
        return set()

    async def _waitlist_key(
        self, session: AsyncSession, entry: WaitlistEntryRow
    ) -> RollupKey | None:
        if entry.session_id is not None:
            found = (
                await session.execute(
                    select(SessionRow.date, SessionRow.department_id).where(
                        SessionRow.id == entry.session_id
                    )
                )
            ).first()
            return (found[0], found[1]) if found is not None else None
        if entry.department_id is not None:
            return (entry.date_from, entry.department_id)
        return None

    async def _refresh_labels(self, hospital_id: str) -> None:
        """A hospital's district or a department's specialty changed: relabel its rows."""
        async with self._p.sessions() as session, session.begin():
            hospital = await session.get(HospitalRow, hospital_id)
            if hospital is None:
                return
            departments = (
                await session.execute(
                    select(DepartmentRow.id, DepartmentRow.catalog_code).where(
                        DepartmentRow.hospital_id == hospital_id
                    )
                )
            ).all()
            s = SupplyDemandDayRow
            areas: set[AreaKey] = {
                (r[0], r[1], r[2])
                for r in (
                    await session.execute(
                        select(s.day, s.district, s.catalog_code).where(
                            s.hospital_id == hospital_id
                        )
                    )
                ).all()
            }
            moved = 0
            for department_id, catalog_code in departments:
                done = await session.execute(
                    update(s)
                    .where(s.department_id == department_id)
                    .where((s.district != hospital.district) | (s.catalog_code != catalog_code))
                    .values(district=hospital.district, catalog_code=catalog_code)
                )
                moved += done.rowcount  # type: ignore[attr-defined]
            if not moved:
                return
            changed = {
                (r[0], r[1], r[2])
                for r in (
                    await session.execute(
                        select(s.day, s.district, s.catalog_code).where(
                            s.hospital_id == hospital_id
                        )
                    )
                ).all()
            }
            now = self._p.clock.now()
            await self._recompute_areas(session, areas | changed, now)
            days = {(day, hospital_id) for day, *_ in areas}
            await self._recompute_hospitals(session, days, now)

    # ------------------------------------------------------------------ recomputation

    async def recompute(self, keys: Iterable[RollupKey]) -> int:
        """Recompute every (day, department) of the days × departments the keys span;
        returns the rows written."""
        keys = set(keys)
        if not keys:
            return 0
        days = sorted({k[0] for k in keys})
        departments = sorted({k[1] for k in keys})
        for attempt in range(3):
            now = self._p.clock.now()
            try:
                async with self._p.sessions() as session, session.begin():
                    tallies = await self._tally(session, days, departments)
                    mine = (
                        SupplyDemandDayRow.day.in_(days),
                        SupplyDemandDayRow.department_id.in_(departments),
                    )
                    before = (
                        await session.execute(
                            select(
                                SupplyDemandDayRow.day,
                                SupplyDemandDayRow.district,
                                SupplyDemandDayRow.catalog_code,
                                SupplyDemandDayRow.hospital_id,
                            ).where(*mine)
                        )
                    ).all()
                    areas: set[AreaKey] = {(r[0], r[1], r[2]) for r in before}
                    hospitals: set[tuple[date, str]] = {(r[0], r[3]) for r in before}
                    await session.execute(delete(SupplyDemandDayRow).where(*mine))
                    rows = [tally.row(key, now) for key, tally in tallies.items()]
                    session.add_all(rows)
                    areas |= {(r.day, r.district, r.catalog_code) for r in rows}
                    hospitals |= {(r.day, r.hospital_id) for r in rows}
                    await session.flush()
                    await self._recompute_areas(session, areas, now)
                    await self._recompute_hospitals(session, hospitals, now)
            except IntegrityError:
                # another worker recomputed the same key at the same moment: read again
                if attempt == 2:
                    raise
                continue
            return len(tallies)
        return 0

    async def _recompute_areas(
        self, session: AsyncSession, areas: set[AreaKey], now: datetime
    ) -> None:
        """Sum the region's rows (district × specialty × day) of ``areas`` again.

        On PostgreSQL each area is locked for the transaction first (advisory locks, in one
        order), so two workers changing departments of one area take turns and the second
        sums what the first committed; SQLite has one writer at a time anyway."""
        if not areas:
            return
        ordered = sorted(areas)
        if session.get_bind().dialect.name == "postgresql":
            for day, district, catalog_code in ordered:
                await session.execute(
                    select(
                        func.pg_advisory_xact_lock(
                            func.hashtext(f"{day}|{district}|{catalog_code}")
                        )
                    )
                )
        s = SupplyDemandDayRow
        area = tuple_(s.day, s.district, s.catalog_code)
        sums = (
            await session.execute(
                select(
                    s.day,
                    s.district,
                    s.catalog_code,
                    func.count(func.distinct(s.hospital_id)),
                    func.count(),
                    *[func.sum(getattr(s, name)) for name in AREA_SUMS],
                )
                .where(area.in_(ordered))
                .group_by(s.day, s.district, s.catalog_code)
            )
        ).all()
        a = SupplyDemandAreaRow
        await session.execute(
            delete(a).where(tuple_(a.day, a.district, a.catalog_code).in_(ordered))
        )
        session.add_all(
            [
                SupplyDemandAreaRow(
                    day=row[0],
                    district=row[1],
                    catalog_code=row[2],
                    hospitals=int(row[3]),
                    departments=int(row[4]),
                    **{name: int(v or 0) for name, v in zip(AREA_SUMS, row[5:], strict=True)},
                    updated_at=now,
                )
                for row in sums
            ]
        )

    async def _recompute_hospitals(
        self, session: AsyncSession, keys: set[tuple[date, str]], now: datetime
    ) -> None:
        """Sum the hospitals' days of ``keys`` again from their departments' rows (locked per
        key on PostgreSQL, as the areas are)."""
        if not keys:
            return
        ordered = sorted(keys)
        if session.get_bind().dialect.name == "postgresql":
            for day, hospital_id in ordered:
                await session.execute(
                    select(func.pg_advisory_xact_lock(func.hashtext(f"h|{day}|{hospital_id}")))
                )
        s = SupplyDemandDayRow
        onsite = case((s.released > 0, (s.offline_released * 1000) / s.released), else_=1000)
        sums = (
            await session.execute(
                select(
                    s.day,
                    s.hospital_id,
                    func.min(s.district),
                    func.sum(s.released),
                    func.sum(s.online_released),
                    func.sum(s.offline_released),
                    func.sum(s.booked),
                    func.sum(s.cancelled),
                    func.sum(s.no_shows),
                    func.sum(s.add_on_untraced),
                    func.sum(s.midnight_releases),
                    func.max(s.max_segment_minutes),
                    func.min(onsite),
                )
                .where(tuple_(s.day, s.hospital_id).in_(ordered))
                .group_by(s.day, s.hospital_id)
            )
        ).all()
        h = SupplyDemandHospitalRow
        await session.execute(delete(h).where(tuple_(h.day, h.hospital_id).in_(ordered)))
        session.add_all(
            [
                SupplyDemandHospitalRow(
                    day=row[0],
                    hospital_id=row[1],
                    district=row[2],
                    released=int(row[3] or 0),
                    online_released=int(row[4] or 0),
                    offline_released=int(row[5] or 0),
                    booked=int(row[6] or 0),
                    cancelled=int(row[7] or 0),
                    no_shows=int(row[8] or 0),
                    add_on_untraced=int(row[9] or 0),
                    midnight_releases=int(row[10] or 0),
                    max_segment_minutes=int(row[11] or 0),
                    min_onsite_permille=int(row[12] if row[12] is not None else 1000),
                    updated_at=now,
                )
                for row in sums
            ]
        )

    async def _tally(
        self, session: AsyncSession, days: list[date], departments: list[str]
    ) -> dict[RollupKey, _Tally]:
        labels = {
            row[0]: (row[1], row[2], row[3], row[4])
            for row in (
                await session.execute(
                    select(
                        DepartmentRow.id,
                        DepartmentRow.hospital_id,
                        HospitalRow.district,
                        DepartmentRow.catalog_code,
                        HospitalRow.timezone,
                    )
                    .join(HospitalRow, HospitalRow.id == DepartmentRow.hospital_id)
                    .where(DepartmentRow.id.in_(departments))
                )
            ).all()
        }
        tallies: dict[RollupKey, _Tally] = {}

        def tally(key: RollupKey) -> _Tally | None:
            found = tallies.get(key)
            if found is None:
                label = labels.get(key[1])
                if label is None:
                    return None
                found = tallies[key] = _Tally(label[0], label[1], label[2])
            return found

        sessions = (
            await session.execute(
                select(
                    SessionRow.id, SessionRow.date, SessionRow.department_id, SessionRow.release_at
                ).where(SessionRow.department_id.in_(departments), SessionRow.date.in_(days))
            )
        ).all()
        key_of_session: dict[str, RollupKey] = {}
        for session_id, day, department_id, release_at in sessions:
            key = (day, department_id)
            found = tally(key)
            if found is None:
                continue
            key_of_session[session_id] = key
            found.session_ids.add(session_id)
            if _released_at_midnight(release_at, labels[department_id][3]):
                found.midnight_releases += 1
        session_ids = list(key_of_session)
        if session_ids:
            await self._tally_sessions(session, session_ids, key_of_session, tallies)
        await self._tally_waitlist(session, days, departments, key_of_session, tally)
        return {k: t for k, t in tallies.items() if t.session_ids or t.waitlist_joined}

    async def _tally_sessions(
        self,
        session: AsyncSession,
        session_ids: list[str],
        key_of_session: dict[str, RollupKey],
        tallies: dict[RollupKey, _Tally],
    ) -> None:
        for chunk_start in range(0, len(session_ids), 500):
            chunk = session_ids[chunk_start : chunk_start + 500]
            for session_id, starts_at, ends_at, capacity, online in (
                await session.execute(
                    select(
                        SlotRow.session_id,
                        SlotRow.starts_at,
                        SlotRow.ends_at,
                        SlotRow.capacity,
                        SlotRow.online_quota,
                    ).where(SlotRow.session_id.in_(chunk))
                )
            ).all():
                t = tallies[key_of_session[session_id]]
                t.released += capacity
                t.online_released += online
                minutes = int((ends_at - starts_at).total_seconds() // 60)
                t.max_segment_minutes = max(t.max_segment_minutes, minutes)
            # units moved on-site at the cut-off were opened online all the same (the
            # condition written out as the partial index's own, so every plan can use it)
            for aggregate_id, payload in (
                await session.execute(
                    select(OutboxRow.aggregate_id, OutboxRow.payload).where(
                        text(CUTOFF_EVENTS), OutboxRow.aggregate_id.in_(chunk)
                    )
                )
            ).all():
                moved = int(payload.get("moved_to_offline", 0))
                tallies[key_of_session[aggregate_id]].online_released += moved
            bookings = (
                await session.execute(
                    select(
                        BookingRow.id,
                        BookingRow.session_id,
                        BookingRow.status,
                        BookingRow.kind,
                        BookingRow.confirmed_at,
                    ).where(BookingRow.session_id.in_(chunk))
                )
            ).all()
            add_on_ids = [b[0] for b in bookings if b[3] == "add_on" and b[4] is not None]
            traced: set[str] = set()
            if add_on_ids:
                traced = set(
                    (
                        await session.scalars(
                            select(AddOnUnitRow.booking_id).where(
                                AddOnUnitRow.booking_id.in_(add_on_ids)
                            )
                        )
                    ).all()
                )
            for booking_id, session_id, status, kind, confirmed_at in bookings:
                if confirmed_at is None:
                    continue
                t = tallies[key_of_session[session_id]]
                if kind == "add_on":
                    t.add_on_units += 1
                    t.add_on_untraced += booking_id not in traced
                    continue
                t.booked += 1
                t.cancelled += status in _CANCELLED
                t.no_shows += status == "no_show"
                t.checked_in += status == "checked_in"
            for session_id, refused in (
                await session.execute(
                    select(RefusedDemandRow.session_id, RefusedDemandRow.refused).where(
                        RefusedDemandRow.session_id.in_(chunk)
                    )
                )
            ).all():
                tallies[key_of_session[session_id]].refused += refused

    async def _tally_waitlist(
        self,
        session: AsyncSession,
        days: list[date],
        departments: list[str],
        key_of_session: dict[str, RollupKey],
        tally: Callable[[RollupKey], _Tally | None],
    ) -> None:
        entries = (
            await session.execute(
                select(
                    WaitlistEntryRow.session_id,
                    WaitlistEntryRow.department_id,
                    WaitlistEntryRow.date_from,
                    WaitlistEntryRow.status,
                ).where(
                    WaitlistEntryRow.department_id.in_(departments),
                    WaitlistEntryRow.date_from.in_(days)
                    | WaitlistEntryRow.session_id.in_(list(key_of_session) or [""]),
                )
            )
        ).all()
        wanted = set(days)
        for session_id, department_id, date_from, status in entries:
            if session_id is not None:
                key = key_of_session.get(session_id)
                if key is None:
                    continue
            else:
                if department_id is None or date_from not in wanted:
                    continue
                key = (date_from, department_id)
            found = tally(key)
            if found is None:
                continue
            found.waitlist_joined += 1
            found.waitlist_served += status == "fulfilled"
            found.waitlist_unserved += status == "expired"
            found.waitlist_waiting += status == "waiting"

    # ------------------------------------------------------------------ backfill

    async def rebuild(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        progress: Callable[[date, int], None] | None = None,
    ) -> int:
        """Recompute every row of the days from ``since`` to ``until`` (default: every day
        with a session or a wait) from the record of truth; returns the rows written.

        Refused demand comes from ``refused_demand`` (folded from Redis), which this keeps."""
        async with self._p.sessions() as session:
            bounds = (
                await session.execute(select(func.min(SessionRow.date), func.max(SessionRow.date)))
            ).first()
            departments = list((await session.scalars(select(DepartmentRow.id))).all())
        if bounds is None or bounds[0] is None or not departments:
            return 0
        first = since or bounds[0]
        last = until or bounds[1]
        written = 0
        day = first
        while day <= last:
            for start in range(0, len(departments), 2000):
                written += await self.recompute((day, d) for d in departments[start : start + 2000])
            if progress is not None:
                progress(day, written)
            day += timedelta(days=1)
        return written

    # ------------------------------------------------------------------ refused demand

    async def fold_refusals(self) -> int:
        """Fold the refused-demand counts from Redis into SQL and these rows
        (``RefusalFold``); returns the sessions folded."""
        return await self._fold.fold()

    # ------------------------------------------------------------------ access measure

    def today(self) -> date:
        return self._access.today()

    async def measure_access_if_due(self) -> int:
        """Measure today's third-next-available once (the sweep calls this every round)."""
        return await self._access.measure_access_if_due()

    async def measure_access(self) -> int:
        """Today's third-next-available for every hospital and specialty (``AccessMeasures``)."""
        return await self._access.measure_access()

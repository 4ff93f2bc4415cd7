"""The health authority's figures of supply and demand, read from the rollups only.

Every figure here is an aggregate of ``supply_demand_days`` or ``access_measures`` (kept by
``SupplyDemandRollups``): no booking is scanned on a page load, and no figure carries a
person (ids of hospitals and departments, counts and rates only). Authority staff (admins and
auditors) see the region; hospital staff see their own hospital and nothing else, whatever
they ask for. Reading figures changes nothing, so every staff role may read them.

Definitions (the API guide repeats them):

- booking rate = booked / units opened online;
- online share = units opened online / all units released;
- utilisation = bookings kept (booked − cancelled) / units opened online;
- no-show rate = no-shows / bookings kept; cancellation rate = cancelled / booked;
- unmet demand = accounts refused ``SLOT_SOLD_OUT`` + waits ended without a unit;
- monthly ranking: release rate = opened online / released, booking rate as above, booking
  ratio = booked / released (the share of all units booked ahead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Protocol

import msgspec
from sqlalchemy import Select, func, select
from sqlalchemy.sql.elements import ColumnElement

from guahao.platform.error_codes import refuse
from guahao.platform.persistence.tables import (
    AccessMeasureRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    SupplyDemandDayRow,
)
from guahao.platform.reference.catalog import load_catalog
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import AUTHORITY_ROLES, StaffActor, StaffRole, require_role

__all__ = [
    "AccessFigure",
    "AuthorityFigures",
    "ComplianceCheck",
    "ComplianceFigure",
    "ComplianceRules",
    "FigureScope",
    "HospitalRanking",
    "NearbyOption",
    "NearbySupply",
    "SupplyDemandFigure",
    "UnmetDemandFigure",
]

MAX_RANGE_DAYS = 400
"""The longest period one request may cover (a year and a margin)."""


class NearbyOption(msgspec.Struct, frozen=True, rename="camel"):
    """A department of the same specialty elsewhere with units free now."""

    hospital_id: str
    hospital_name: str
    district: str
    department_id: str
    department_name: str
    distance_km: float | None
    free_units_7d: int
    next_available_date: date | None


class NearbySupply(Protocol):
    """Where else a doctor's specialty has free units (the search service answers this;
    the platform names the question and never imports search)."""

    async def nearby(
        self, doctor_id: str, *, within_days: int, limit: int
    ) -> list[NearbyOption]: ...


class ComplianceRules(msgspec.Struct, frozen=True):
    """Thresholds of the national and city rules the compliance checks apply."""

    max_segment_minutes: int = 30
    """分时段预约: each segment 30 minutes or less."""
    min_online_share: float = 0.5
    """The share of units opened for booking ahead (online)."""
    min_onsite_share: float = 0.1
    """An on-site quota (现场号) kept for people who cannot book online."""


class FigureScope(msgspec.Struct, frozen=True):
    """What a request asks for; hospital staff are held to their own hospital."""

    date_from: date
    date_to: date
    district: str | None = None
    catalog_code: str | None = None
    hospital_id: str | None = None


class SupplyDemandFigure(msgspec.Struct, frozen=True, rename="camel"):
    day: date
    district: str
    catalog_code: str
    specialty: str
    hospitals: int
    departments: int
    released: int
    online_released: int
    offline_released: int
    booked: int
    cancelled: int
    no_shows: int
    checked_in: int
    booking_rate: float | None
    online_share: float | None
    utilisation: float | None
    no_show_rate: float | None
    cancellation_rate: float | None
    waitlist_joined: int
    waitlist_length: int
    waitlist_unserved: int
    refused: int
    unmet_demand: int


class AccessFigure(msgspec.Struct, frozen=True, rename="camel"):
    measured_on: date
    hospital_id: str
    hospital_name: str
    district: str
    catalog_code: str
    specialty: str
    third_next_days: int | None
    free_units: int


class HospitalRanking(msgspec.Struct, frozen=True, rename="camel"):
    rank: int
    hospital_id: str
    hospital_name: str
    district: str
    released: int
    online_released: int
    booked: int
    release_rate: float | None
    booking_rate: float | None
    booking_ratio: float | None


class ComplianceCheck(msgspec.Struct, frozen=True, rename="camel"):
    rule: str
    passed: bool
    value: float
    limit: float


class ComplianceFigure(msgspec.Struct, frozen=True, rename="camel"):
    hospital_id: str
    hospital_name: str
    district: str
    passed: bool
    checks: list[ComplianceCheck]


class UnmetDemandFigure(msgspec.Struct, frozen=True, rename="camel"):
    hospital_id: str
    hospital_name: str
    district: str
    department_id: str
    department_name: str
    catalog_code: str
    specialty: str
    days: int
    refused: int
    waitlist_unserved: int
    unmet_demand: int
    online_released: int
    offline_released: int
    suggested_more_online_per_day: int
    """How many more units a day, opened online, would have met the unmet demand."""
    of_which_from_onsite_per_day: int
    """How many of those the department's own on-site quota could give."""
    nearby: list[NearbyOption]


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to four places; ``None`` when there is no whole.

    >>> ratio(1, 3), ratio(0, 0)
    (0.3333, None)
    """
    return round(part / whole, 4) if whole else None


def suggestion(unmet_by_day: Sequence[int], offline_by_day: Sequence[int]) -> tuple[int, int]:
    """More online units a day that would have met the unmet demand, and how many of them
    the on-site quota could give (the mean day, rounded up, over the days with sessions).

    >>> suggestion([4, 0, 2], [1, 1, 1])
    (2, 1)
    >>> suggestion([], [])
    (0, 0)
    """
    if not unmet_by_day:
        return 0, 0
    more = math.ceil(sum(unmet_by_day) / len(unmet_by_day))
    onsite = math.ceil(sum(offline_by_day) / len(offline_by_day)) if offline_by_day else 0
    return more, min(more, onsite)


_S = SupplyDemandDayRow
_SUMS: dict[str, Any] = {
    "released": func.sum(_S.released),
    "online_released": func.sum(_S.online_released),
    "offline_released": func.sum(_S.offline_released),
    "booked": func.sum(_S.booked),
    "cancelled": func.sum(_S.cancelled),
    "no_shows": func.sum(_S.no_shows),
    "checked_in": func.sum(_S.checked_in),
    "waitlist_joined": func.sum(_S.waitlist_joined),
    "waitlist_waiting": func.sum(_S.waitlist_waiting),
    "waitlist_unserved": func.sum(_S.waitlist_unserved),
    "refused": func.sum(_S.refused),
    "add_on_untraced": func.sum(_S.add_on_untraced),
    "midnight_releases": func.sum(_S.midnight_releases),
    "max_segment_minutes": func.max(_S.max_segment_minutes),
}


def _n(value: Any) -> int:
    return int(value or 0)


class AuthorityFigures:
    """Supply and demand, access, rankings, compliance and unmet demand, from the rollups."""

    def __init__(
        self,
        ports: Ports,
        nearby: NearbySupply | None = None,
        compliance_rules: ComplianceRules | None = None,
    ) -> None:
        self._p = ports
        self._nearby = nearby
        self.compliance_rules = compliance_rules or ComplianceRules()
        self._catalog = load_catalog()

    def use_nearby(self, nearby: NearbySupply) -> None:
        """Wire the alternatives finder (the composition root does, after search exists)."""
        self._nearby = nearby

    # ------------------------------------------------------------------ scope

    def _scoped(self, staff: StaffActor, scope: FigureScope) -> FigureScope:
        require_role(staff, *AUTHORITY_ROLES, StaffRole.HOSPITAL_STAFF)
        if scope.date_to < scope.date_from:
            refuse("FIGURES_RANGE_INVALID", date_from=scope.date_from, date_to=scope.date_to)
        if (scope.date_to - scope.date_from).days >= MAX_RANGE_DAYS:
            refuse("FIGURES_RANGE_INVALID", max_days=MAX_RANGE_DAYS)
        if staff.role in AUTHORITY_ROLES:
            return scope
        if staff.hospital_id is None:
            refuse("HOSPITAL_SCOPE_DENIED", reason="staff of no hospital")
        if scope.hospital_id not in (None, staff.hospital_id):
            refuse("HOSPITAL_SCOPE_DENIED", hospital_id=scope.hospital_id)
        return msgspec.structs.replace(scope, hospital_id=staff.hospital_id)

    def _where(self, scope: FigureScope) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [_S.day >= scope.date_from, _S.day <= scope.date_to]
        if scope.district is not None:
            where.append(_S.district == scope.district)
        if scope.catalog_code is not None:
            where.append(_S.catalog_code == scope.catalog_code)
        if scope.hospital_id is not None:
            where.append(_S.hospital_id == scope.hospital_id)
        return where

    def _specialty(self, code: str) -> str:
        entry = self._catalog.get(code)
        return self._catalog.qualified_name(code) if entry is not None else code

    async def _hospitals(self, ids: set[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(HospitalRow.id, HospitalRow.name, HospitalRow.district).where(
                        HospitalRow.id.in_(ids)
                    )
                )
            ).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    # ------------------------------------------------------------------ figures

    async def supply_demand(
        self, staff: StaffActor, scope: FigureScope
    ) -> list[SupplyDemandFigure]:
        """By district × catalog specialty × day."""
        scope = self._scoped(staff, scope)
        query: Select[Any] = (
            select(
                _S.day,
                _S.district,
                _S.catalog_code,
                func.count(func.distinct(_S.hospital_id)),
                func.count(),
                *_SUMS.values(),
            )
            .where(*self._where(scope))
            .group_by(_S.day, _S.district, _S.catalog_code)
            .order_by(_S.day, _S.district, _S.catalog_code)
        )
        async with self._p.sessions() as session:
            rows = (await session.execute(query)).all()
        names = list(_SUMS)
        result = []
        for row in rows:
            s = {name: _n(v) for name, v in zip(names, row[5:], strict=True)}
            kept = s["booked"] - s["cancelled"]
            result.append(
                SupplyDemandFigure(
                    day=row[0],
                    district=row[1],
                    catalog_code=row[2],
                    specialty=self._specialty(row[2]),
                    hospitals=_n(row[3]),
                    departments=_n(row[4]),
                    released=s["released"],
                    online_released=s["online_released"],
                    offline_released=s["offline_released"],
                    booked=s["booked"],
                    cancelled=s["cancelled"],
                    no_shows=s["no_shows"],
                    checked_in=s["checked_in"],
                    booking_rate=ratio(s["booked"], s["online_released"]),
                    online_share=ratio(s["online_released"], s["released"]),
                    utilisation=ratio(kept, s["online_released"]),
                    no_show_rate=ratio(s["no_shows"], kept),
                    cancellation_rate=ratio(s["cancelled"], s["booked"]),
                    waitlist_joined=s["waitlist_joined"],
                    waitlist_length=s["waitlist_waiting"],
                    waitlist_unserved=s["waitlist_unserved"],
                    refused=s["refused"],
                    unmet_demand=s["refused"] + s["waitlist_unserved"],
                )
            )
        return result

    async def access(self, staff: StaffActor, scope: FigureScope) -> list[AccessFigure]:
        """The third-next-available measure per hospital and specialty, day by day (the
        trend); ``thirdNextDays`` is null where fewer than three units were free."""
        scope = self._scoped(staff, scope)
        a = AccessMeasureRow
        where: list[ColumnElement[bool]] = [
            a.measured_on >= scope.date_from,
            a.measured_on <= scope.date_to,
        ]
        if scope.district is not None:
            where.append(a.district == scope.district)
        if scope.catalog_code is not None:
            where.append(a.catalog_code == scope.catalog_code)
        if scope.hospital_id is not None:
            where.append(a.hospital_id == scope.hospital_id)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(a, HospitalRow.name)
                    .join(HospitalRow, HospitalRow.id == a.hospital_id)
                    .where(*where)
                    .order_by(a.catalog_code, a.hospital_id, a.measured_on)
                )
            ).all()
        return [
            AccessFigure(
                measured_on=m.measured_on,
                hospital_id=m.hospital_id,
                hospital_name=name,
                district=m.district,
                catalog_code=m.catalog_code,
                specialty=self._specialty(m.catalog_code),
                third_next_days=m.third_next_days,
                free_units=m.free_units,
            )
            for m, name in rows
        ]

    async def _by_hospital(self, scope: FigureScope) -> list[tuple[str, dict[str, int]]]:
        names = list(_SUMS)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(_S.hospital_id, *_SUMS.values())
                    .where(*self._where(scope))
                    .group_by(_S.hospital_id)
                )
            ).all()
        return [
            (row[0], {name: _n(v) for name, v in zip(names, row[1:], strict=True)}) for row in rows
        ]

    async def rankings(self, staff: StaffActor, month: date) -> list[HospitalRanking]:
        """The month's hospitals ranked by booking ratio (then booking rate, then release
        rate), as authorities publish them. Hospital staff get their own hospital's line,
        ranked among all."""
        require_role(staff, *AUTHORITY_ROLES, StaffRole.HOSPITAL_STAFF)
        first = month.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        totals = await self._by_hospital(FigureScope(date_from=first, date_to=last))
        labels = await self._hospitals({h for h, _ in totals})

        def key(item: tuple[str, dict[str, int]]) -> tuple[float, float, float, str]:
            s = item[1]
            return (
                -(ratio(s["booked"], s["released"]) or 0.0),
                -(ratio(s["booked"], s["online_released"]) or 0.0),
                -(ratio(s["online_released"], s["released"]) or 0.0),
                labels.get(item[0], ("", ""))[0],
            )

        ranked = []
        for rank, (hospital_id, s) in enumerate(sorted(totals, key=key), start=1):
            name, district = labels.get(hospital_id, ("", ""))
            ranked.append(
                HospitalRanking(
                    rank=rank,
                    hospital_id=hospital_id,
                    hospital_name=name,
                    district=district,
                    released=s["released"],
                    online_released=s["online_released"],
                    booked=s["booked"],
                    release_rate=ratio(s["online_released"], s["released"]),
                    booking_rate=ratio(s["booked"], s["online_released"]),
                    booking_ratio=ratio(s["booked"], s["released"]),
                )
            )
        if staff.role not in AUTHORITY_ROLES:
            ranked = [r for r in ranked if r.hospital_id == staff.hospital_id]
        return ranked

    async def compliance(self, staff: StaffActor, scope: FigureScope) -> list[ComplianceFigure]:
        """Each hospital against the rules: segments of 30 minutes or less, the share of
        units open online, no release at midnight, an on-site quota kept on every department
        day, every add-on unit traceable to who added it for whom."""
        scope = self._scoped(staff, scope)
        rules = self.compliance_rules
        totals = dict(await self._by_hospital(scope))
        without_onsite: dict[str, int] = {}
        async with self._p.sessions() as session:
            for hospital_id, n in (
                await session.execute(
                    select(_S.hospital_id, func.count())
                    .where(
                        *self._where(scope),
                        _S.released > 0,
                        _S.offline_released < _S.released * rules.min_onsite_share,
                    )
                    .group_by(_S.hospital_id)
                )
            ).all():
                without_onsite[hospital_id] = int(n)
        labels = await self._hospitals(set(totals))
        result = []
        for hospital_id, s in sorted(totals.items(), key=lambda kv: labels.get(kv[0], ("",))[0]):
            online_share = ratio(s["online_released"], s["released"]) or 0.0
            checks = [
                ComplianceCheck(
                    rule="segment_minutes",
                    passed=s["max_segment_minutes"] <= rules.max_segment_minutes,
                    value=float(s["max_segment_minutes"]),
                    limit=float(rules.max_segment_minutes),
                ),
                ComplianceCheck(
                    rule="online_share",
                    passed=online_share >= rules.min_online_share,
                    value=online_share,
                    limit=rules.min_online_share,
                ),
                ComplianceCheck(
                    rule="midnight_releases",
                    passed=s["midnight_releases"] == 0,
                    value=float(s["midnight_releases"]),
                    limit=0.0,
                ),
                ComplianceCheck(
                    rule="onsite_quota",
                    passed=without_onsite.get(hospital_id, 0) == 0,
                    value=float(without_onsite.get(hospital_id, 0)),
                    limit=0.0,
                ),
                ComplianceCheck(
                    rule="add_on_traceable",
                    passed=s["add_on_untraced"] == 0,
                    value=float(s["add_on_untraced"]),
                    limit=0.0,
                ),
            ]
            name, district = labels.get(hospital_id, ("", ""))
            result.append(
                ComplianceFigure(
                    hospital_id=hospital_id,
                    hospital_name=name,
                    district=district,
                    passed=all(c.passed for c in checks),
                    checks=checks,
                )
            )
        return result

    async def unmet_demand(
        self,
        staff: StaffActor,
        scope: FigureScope,
        *,
        limit: int = 50,
        nearby_within_days: int = 7,
    ) -> list[UnmetDemandFigure]:
        """Departments where demand went unmet, most first, each with how many more units a
        day online would have met it and which hospitals nearby have the specialty free now."""
        scope = self._scoped(staff, scope)
        if not 1 <= limit <= 500:
            refuse("VALIDATION_FAILED", field="limit", value=limit)
        unmet = _S.refused + _S.waitlist_unserved
        async with self._p.sessions() as session:
            top = (
                await session.execute(
                    select(_S.department_id, func.sum(unmet))
                    .where(*self._where(scope))
                    .group_by(_S.department_id)
                    .having(func.sum(unmet) > 0)
                    .order_by(func.sum(unmet).desc(), _S.department_id)
                    .limit(limit)
                )
            ).all()
            department_ids = [r[0] for r in top]
            if not department_ids:
                return []
            days = (
                await session.execute(
                    select(
                        _S.department_id,
                        _S.refused,
                        _S.waitlist_unserved,
                        _S.online_released,
                        _S.offline_released,
                    ).where(*self._where(scope), _S.department_id.in_(department_ids))
                )
            ).all()
            departments = {
                r[0]: r
                for r in (
                    await session.execute(
                        select(
                            DepartmentRow.id,
                            DepartmentRow.name,
                            DepartmentRow.catalog_code,
                            HospitalRow.id,
                            HospitalRow.name,
                            HospitalRow.district,
                        )
                        .join(HospitalRow, HospitalRow.id == DepartmentRow.hospital_id)
                        .where(DepartmentRow.id.in_(department_ids))
                    )
                ).all()
            }
            doctors: dict[str, str] = {}
            for department_id, doctor_id in (
                await session.execute(
                    select(DoctorRow.department_id, func.min(DoctorRow.id))
                    .where(DoctorRow.department_id.in_(department_ids))
                    .group_by(DoctorRow.department_id)
                )
            ).all():
                if doctor_id is not None:
                    doctors[department_id] = doctor_id
        per_day: dict[str, list[tuple[int, int, int, int]]] = {}
        for department_id, refused, unserved, online, offline in days:
            per_day.setdefault(department_id, []).append((refused, unserved, online, offline))
        result = []
        for department_id in department_ids:
            rows = per_day.get(department_id, [])
            dep = departments[department_id]
            refused = sum(r[0] for r in rows)
            unserved = sum(r[1] for r in rows)
            more, onsite = suggestion([r[0] + r[1] for r in rows], [r[3] for r in rows])
            nearby: list[NearbyOption] = []
            first_doctor = doctors.get(department_id)
            if self._nearby is not None and first_doctor is not None:
                nearby = await self._nearby.nearby(
                    first_doctor, within_days=nearby_within_days, limit=5
                )
            result.append(
                UnmetDemandFigure(
                    hospital_id=dep[3],
                    hospital_name=dep[4],
                    district=dep[5],
                    department_id=department_id,
                    department_name=dep[1],
                    catalog_code=dep[2],
                    specialty=self._specialty(dep[2]),
                    days=len(rows),
                    refused=refused,
                    waitlist_unserved=unserved,
                    unmet_demand=refused + unserved,
                    online_released=sum(r[2] for r in rows),
                    offline_released=sum(r[3] for r in rows),
                    suggested_more_online_per_day=more,
                    of_which_from_onsite_per_day=onsite,
                    nearby=nearby,
                )
            )
        return result

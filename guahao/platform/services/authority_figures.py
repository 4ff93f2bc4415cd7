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

from datetime import date, timedelta
from typing import Any

import msgspec
from sqlalchemy import Executable, Select, func, select
from sqlalchemy.sql.elements import ColumnElement

from guahao.platform.error_codes import refuse
from guahao.platform.persistence.tables import (
    AccessMeasureRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    SupplyDemandAreaRow,
    SupplyDemandDayRow,
    SupplyDemandHospitalRow,
)
from guahao.platform.reference.catalog import load_catalog
from guahao.platform.services.figure_shapes import (
    AccessFigure,
    ComplianceCheck,
    ComplianceFigure,
    ComplianceRules,
    FigureScope,
    HospitalRanking,
    NearbyOption,
    NearbySupply,
    SupplyDemandFigure,
    UnmetDemandFigure,
    ratio,
    suggestion_of,
)
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
    "suggestion_of",
]

MAX_RANGE_DAYS = 400
"""The longest period one request may cover (a year and a margin)."""


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
        self._specialties: dict[str, str] = {}

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
        found = self._specialties.get(code)
        if found is None:
            entry = self._catalog.get(code)
            found = self._catalog.qualified_name(code) if entry is not None else code
            self._specialties[code] = found
        return found

    async def _rows(self, query: Executable) -> list[Any]:
        """The rows of a column query through the Core connection: the figures select columns,
        never entities, and the ORM's result machinery doubled the cost of fetching the tens
        of thousands of rows a region's month or a specialty's year is."""
        async with self._p.sessions() as session:
            connection = await session.connection()
            rows: list[Any] = list((await connection.execute(query)).all())
            return rows

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
        """By district × catalog specialty × day: from the region's rows, or from the
        departments' rows when one hospital is asked for (a hospital's own view)."""
        scope = self._scoped(staff, scope)
        counts = (
            "released",
            "online_released",
            "offline_released",
            "booked",
            "cancelled",
            "no_shows",
            "checked_in",
            "waitlist_joined",
            "waitlist_waiting",
            "waitlist_unserved",
            "refused",
        )
        if scope.hospital_id is None:
            a = SupplyDemandAreaRow
            where: list[ColumnElement[bool]] = [a.day >= scope.date_from, a.day <= scope.date_to]
            if scope.district is not None:
                where.append(a.district == scope.district)
            if scope.catalog_code is not None:
                where.append(a.catalog_code == scope.catalog_code)
            query: Select[Any] = (
                select(
                    a.day,
                    a.district,
                    a.catalog_code,
                    a.hospitals,
                    a.departments,
                    *[getattr(a, c) for c in counts],
                )
                .where(*where)
                .order_by(a.day, a.district, a.catalog_code)
            )
        else:
            query = (
                select(
                    _S.day,
                    _S.district,
                    _S.catalog_code,
                    func.count(func.distinct(_S.hospital_id)),
                    func.count(),
                    *[_SUMS[c] for c in counts],
                )
                .where(*self._where(scope))
                .group_by(_S.day, _S.district, _S.catalog_code)
                .order_by(_S.day, _S.district, _S.catalog_code)
            )
        rows = await self._rows(query)
        specialty = self._specialty
        figure = SupplyDemandFigure
        # One positional constructor call per line and the rates inlined (``ratio``'s rule):
        # the whole region's month is 16 800 lines, and keyword arguments, a generator per
        # row and a call per rate were most of its time.
        result: list[SupplyDemandFigure] = []
        append = result.append
        for row in rows:
            (
                released,
                online,
                offline,
                booked,
                cancelled,
                no_shows,
                checked_in,
                joined,
                waiting,
                unserved,
                refused,
            ) = row[5:]  # NOT NULL counts, or their sums over a non-empty group
            kept = booked - cancelled
            append(
                figure(
                    row[0],
                    row[1],
                    row[2],
                    specialty(row[2]),
                    row[3],
                    row[4],
                    released,
                    online,
                    offline,
                    booked,
                    cancelled,
                    no_shows,
                    checked_in,
                    round(booked / online, 4) if online else None,
                    round(online / released, 4) if released else None,
                    round(kept / online, 4) if online else None,
                    round(no_shows / kept, 4) if kept else None,
                    round(cancelled / booked, 4) if booked else None,
                    joined,
                    waiting,
                    unserved,
                    refused,
                    refused + unserved,
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
        rows = await self._rows(
            select(
                a.measured_on,
                a.hospital_id,
                a.district,
                a.catalog_code,
                a.third_next_days,
                a.free_units,
            )
            .where(*where)
            .order_by(a.catalog_code, a.hospital_id, a.measured_on)
        )
        names = {h: name for h, (name, _) in (await self._hospitals({r[1] for r in rows})).items()}
        specialty = self._specialty
        figure = AccessFigure
        return [
            figure(
                measured_on,
                hospital_id,
                names.get(hospital_id, ""),
                district,
                catalog_code,
                specialty(catalog_code),
                days,
                free,
            )
            for measured_on, hospital_id, district, catalog_code, days, free in rows
        ]

    async def _by_hospital(self, scope: FigureScope) -> list[tuple[str, dict[str, int]]]:
        h = SupplyDemandHospitalRow
        where: list[ColumnElement[bool]] = [h.day >= scope.date_from, h.day <= scope.date_to]
        if scope.district is not None:
            where.append(h.district == scope.district)
        if scope.hospital_id is not None:
            where.append(h.hospital_id == scope.hospital_id)
        sums = {
            "released": func.sum(h.released),
            "online_released": func.sum(h.online_released),
            "offline_released": func.sum(h.offline_released),
            "booked": func.sum(h.booked),
            "cancelled": func.sum(h.cancelled),
            "no_shows": func.sum(h.no_shows),
            "add_on_untraced": func.sum(h.add_on_untraced),
            "midnight_releases": func.sum(h.midnight_releases),
            "max_segment_minutes": func.max(h.max_segment_minutes),
            "min_onsite_permille": func.min(h.min_onsite_permille),
        }
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(h.hospital_id, *sums.values()).where(*where).group_by(h.hospital_id)
                )
            ).all()
        return [
            (row[0], {name: _n(v) for name, v in zip(sums, row[1:], strict=True)}) for row in rows
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
        day (the check's value is the smallest share kept on any), every add-on unit
        traceable to who added it for whom."""
        scope = self._scoped(staff, scope)
        rules = self.compliance_rules
        totals = dict(await self._by_hospital(scope))
        labels = await self._hospitals(set(totals))
        result = []
        for hospital_id, s in sorted(totals.items(), key=lambda kv: labels.get(kv[0], ("",))[0]):
            online_share = ratio(s["online_released"], s["released"]) or 0.0
            onsite_share = s["min_onsite_permille"] / 1000  # the least kept on any dept day
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
                    passed=onsite_share >= rules.min_onsite_share,
                    value=onsite_share,
                    limit=rules.min_onsite_share,
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
                    select(
                        _S.department_id,
                        func.sum(_S.refused),
                        func.sum(_S.waitlist_unserved),
                        func.count(),
                        func.sum(_S.online_released),
                        func.sum(_S.offline_released),
                    )
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
        result = []
        for department_id, refused_sum, unserved_sum, days, online_sum, offline_sum in top:
            dep = departments[department_id]
            refused, unserved = _n(refused_sum), _n(unserved_sum)
            more, onsite = suggestion_of(refused + unserved, _n(offline_sum), _n(days))
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
                    days=_n(days),
                    refused=refused,
                    waitlist_unserved=unserved,
                    unmet_demand=refused + unserved,
                    online_released=_n(online_sum),
                    offline_released=_n(offline_sum),
                    suggested_more_online_per_day=more,
                    of_which_from_onsite_per_day=onsite,
                    nearby=nearby,
                )
            )
        return result

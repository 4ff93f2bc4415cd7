"""The canonical shapes in which schedules enter the platform.

Every source of supply (the demo region, a FHIR or HL7 v2 connector, a batch file, the push
API) maps its own format to these structs; the platform then turns them into sessions and
slots in one place (``guahao.platform.services.supply``). Inbound shapes ignore unknown fields
so a hospital can add data without breaking its feed.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

import msgspec

from guahao.platform.hospitals import (
    HospitalGrade,
    HospitalPolicies,
    Period,
    SlotCategory,
    Title,
    local_to_utc,
)

__all__ = [
    "PERIOD_HOURS",
    "DepartmentSpec",
    "DoctorSpec",
    "HospitalSpec",
    "RegionSpec",
    "SegmentSpec",
    "SessionSpec",
    "WeeklySession",
    "cut_segments",
]

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Units = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
SegmentMinutes = Annotated[int, msgspec.Meta(ge=5, le=240)]

PERIOD_HOURS: dict[Period, tuple[time, time]] = {
    Period.MORNING: (time(8, 0), time(12, 0)),
    Period.AFTERNOON: (time(13, 30), time(17, 30)),
    Period.EVENING: (time(18, 0), time(21, 0)),
}


class DepartmentSpec(msgspec.Struct, frozen=True):
    """A department as the hospital names it, mapped to the national catalog (诊疗科目)."""

    code: Code
    name: Name
    catalog_code: Annotated[str, msgspec.Meta(pattern=r"^\d{2}(\.\d{2})?$")]
    aliases: tuple[str, ...] = ()
    location: str = ""


class DoctorSpec(msgspec.Struct, frozen=True):
    """A doctor of one department."""

    code: Code
    name: Name
    title: Title
    department_code: Code
    expertise: str = ""
    sex: str = ""


class WeeklySession(msgspec.Struct, frozen=True):
    """A recurring clinic: this doctor, this weekday (0 = Monday), this period."""

    doctor_code: Code
    weekday: Annotated[int, msgspec.Meta(ge=0, le=6)]
    period: Period
    category: SlotCategory
    fee_cents: Cents
    units_per_segment: Units
    segment_minutes: SegmentMinutes = 30


class HospitalSpec(msgspec.Struct, frozen=True):
    """A hospital joining the region, with its policies, departments, doctors and roster."""

    code: Code
    name: Name
    grade: HospitalGrade
    district: Name
    address: str = ""
    aliases: tuple[str, ...] = ()
    timezone: str = "Asia/Shanghai"
    policies: HospitalPolicies = HospitalPolicies()
    departments: tuple[DepartmentSpec, ...] = ()
    doctors: tuple[DoctorSpec, ...] = ()
    roster: tuple[WeeklySession, ...] = ()


class RegionSpec(msgspec.Struct, frozen=True):
    """A whole region: what ``guahao demo`` builds and a health authority onboards."""

    code: Code
    name: Name
    hospitals: tuple[HospitalSpec, ...]


class SegmentSpec(msgspec.Struct, frozen=True):
    """One time segment of a session (分时段) with its whole capacity (online + offline)."""

    start: datetime
    end: datetime
    capacity: Units


class SessionSpec(msgspec.Struct, frozen=True):
    """One doctor, one date, one period, cut into segments: the unit connectors deliver."""

    hospital_code: Code
    doctor_code: Code
    date: date
    period: Period
    category: SlotCategory
    fee_cents: Cents
    segments: tuple[SegmentSpec, ...]
    external_id: str = ""


def cut_segments(
    day: date, period: Period, *, minutes: int, capacity: int, zone: str
) -> tuple[SegmentSpec, ...]:
    """Cut a period of a day into equal segments, each with ``capacity`` units.

    >>> segs = cut_segments(date(2026, 3, 9), Period.MORNING, minutes=60, capacity=4,
    ...                     zone="Asia/Shanghai")
    >>> [(s.start.hour, s.end.hour, s.capacity) for s in segs]
    [(0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 4, 4)]
    """
    begin, finish = PERIOD_HOURS[period]
    start = local_to_utc(day, begin, zone)
    end_of_period = local_to_utc(day, finish, zone)
    step = timedelta(minutes=minutes)
    segments: list[SegmentSpec] = []
    while start + step <= end_of_period:
        segments.append(SegmentSpec(start=start, end=start + step, capacity=capacity))
        start += step
    return tuple(segments)

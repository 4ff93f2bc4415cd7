"""What the authority's figures look like on the wire, and the two pure rules behind them.

The shapes the figures service returns (and the API sends as camelCase JSON, CSV or XLSX),
the scope a request asks for, the compliance thresholds, and the port to the search side
that knows which nearby hospitals have free units. Kept apart from the service's SQL so that
a reader of the API finds every field and its meaning in one place.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Protocol

import msgspec

__all__ = [
    "AccessFigure",
    "ComplianceCheck",
    "ComplianceFigure",
    "ComplianceRules",
    "FigureScope",
    "HospitalRanking",
    "NearbyOption",
    "NearbySupply",
    "SupplyDemandFigure",
    "UnmetDemandFigure",
    "ratio",
    "suggestion_of",
]


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


def suggestion_of(unmet: int, offline: int, days: int) -> tuple[int, int]:
    """More online units a day that would have met the unmet demand, and how many of them
    the on-site quota could give: the mean day, rounded up, over the days with sessions.

    >>> suggestion_of(6, 3, 3)
    (2, 1)
    >>> suggestion_of(0, 0, 0)
    (0, 0)
    """
    if days <= 0:
        return 0, 0
    more = math.ceil(unmet / days)
    return more, min(more, math.ceil(offline / days))

"""Hospitals and the policies each one sets: payment, filing, release, quota split, deadlines.

Policies are values with the rule as a method, so the rule is tested once and every caller
(slot generation, booking, connectors) asks the same object. Wall-clock rules ("08:00",
"15:00 the day before") are in the hospital's own time zone; results are UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec

__all__ = [
    "CancelPolicy",
    "CutoffPolicy",
    "FilingMode",
    "HospitalGrade",
    "HospitalPolicies",
    "PaymentChannel",
    "PaymentMode",
    "Period",
    "QuotaPolicy",
    "ReleasePolicy",
    "SlotCategory",
    "Title",
    "local_to_utc",
]

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d\Z")]


class HospitalGrade(StrEnum):
    """National hospital grading (医院等级), highest first."""

    GRADE_3A = "3A"  # 三级甲等
    GRADE_3B = "3B"  # 三级乙等
    GRADE_2A = "2A"  # 二级甲等
    GRADE_2B = "2B"  # 二级乙等
    GRADE_1 = "1"  # 一级 / 社区卫生服务中心


class Title(StrEnum):
    """Doctor titles (职称)."""

    CHIEF = "chief"  # 主任医师
    ASSOCIATE_CHIEF = "associate_chief"  # 副主任医师
    ATTENDING = "attending"  # 主治医师
    RESIDENT = "resident"  # 住院医师


class SlotCategory(StrEnum):
    """普通号 / 专家号 / 特需号."""

    GENERAL = "general"
    SPECIALIST = "specialist"
    PREMIUM = "premium"


class Period(StrEnum):
    """Half-day periods of a session (出诊单元)."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


class PaymentMode(StrEnum):
    """The four payment modes of the article, plus pay-after-visit (诊后付费).

    1. ``pay_at_hospital``: nothing is paid online; everyone pays (insurance too) on site.
    2. ``online_self_pay``: self-pay patients pay online; insured patients pay on site.
    3. ``online_self_pay_or_insurance``: both self-pay and insurance are settled online.
    4. ``online_no_insurance``: the hospital takes no insurance; everyone pays online, self-pay.
    5. ``pay_after_visit``: no fee at booking at all; the visit is billed afterwards.
    """

    PAY_AT_HOSPITAL = "pay_at_hospital"
    ONLINE_SELF_PAY = "online_self_pay"
    ONLINE_SELF_PAY_OR_INSURANCE = "online_self_pay_or_insurance"
    ONLINE_NO_INSURANCE = "online_no_insurance"
    PAY_AFTER_VISIT = "pay_after_visit"

    def online_payment_required(self, channel: PaymentChannel) -> bool | None:
        """Whether a booking paying by ``channel`` goes through an online payment order.

        ``None`` means this hospital refuses that channel.

        >>> PaymentMode.ONLINE_SELF_PAY.online_payment_required("insurance")
        False
        >>> PaymentMode.ONLINE_NO_INSURANCE.online_payment_required("insurance") is None
        True
        >>> PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE.online_payment_required("insurance")
        True
        """
        match self:
            case PaymentMode.PAY_AT_HOSPITAL | PaymentMode.PAY_AFTER_VISIT:
                return False
            case PaymentMode.ONLINE_SELF_PAY:
                return channel == "self_pay"
            case PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE:
                return True
            case PaymentMode.ONLINE_NO_INSURANCE:
                return True if channel == "self_pay" else None


PaymentChannel = Literal["self_pay", "insurance"]


class FilingMode(StrEnum):
    """How a patient gets a record in the hospital's HIS (建档)."""

    AUTO_AT_BOOKING = "auto_at_booking"  # A: the connector files the patient when booking
    ON_SITE = "on_site"  # B: filed at the hospital before the visit
    REQUIRED_BEFORE_BOOKING = "required_before_booking"  # must be filed before booking online


def local_to_utc(day: date, at: time, zone: str) -> datetime:
    """A hospital wall-clock moment as UTC.

    >>> local_to_utc(date(2026, 3, 2), time(8, 0), "Asia/Shanghai").isoformat()
    '2026-03-02T00:00:00+00:00'
    """
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


class ReleasePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Scheduled release (定时放号): slots of day D open ``days_ahead`` days before at ``at``.

    >>> p = ReleasePolicy(days_ahead=7, at="08:00")
    >>> p.release_at(date(2026, 3, 9), "Asia/Shanghai").isoformat()
    '2026-03-02T00:00:00+00:00'
    """

    days_ahead: Annotated[int, msgspec.Meta(ge=0, le=90)] = 7
    at: ClockTime = "08:00"

    def release_at(self, session_date: date, zone: str) -> datetime:
        return local_to_utc(session_date - timedelta(days=self.days_ahead), _clock(self.at), zone)


class QuotaPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The online/offline split of each segment (线上/线下号源), by ratio and by segment.

    The first ``offline_first_segments`` segments of a session stay wholly on site, for
    patients who come early without a phone (the elderly, the unregistered).

    >>> QuotaPolicy(online_share=0.6).split(5, segment_index=3)
    (3, 2)
    >>> QuotaPolicy(online_share=0.6, offline_first_segments=1).split(5, segment_index=0)
    (0, 5)
    """

    online_share: Share = 0.7
    offline_first_segments: NonNegative = 0

    def split(self, capacity: int, *, segment_index: int) -> tuple[int, int]:
        if segment_index < self.offline_first_segments:
            return 0, capacity
        online = math.floor(capacity * self.online_share + 1e-9)
        return online, capacity - online


class CancelPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The cancellation deadline (退号截止): a time the day before, or hours before the visit.

    >>> start = local_to_utc(date(2026, 3, 9), time(9, 0), "Asia/Shanghai")
    >>> CancelPolicy(kind="day_before_at", at="15:00").deadline(start, "Asia/Shanghai").isoformat()
    '2026-03-08T07:00:00+00:00'
    >>> CancelPolicy(kind="hours_before", hours=2).deadline(start, "Asia/Shanghai").isoformat()
    '2026-03-08T23:00:00+00:00'
    """

    kind: Literal["day_before_at", "hours_before"] = "day_before_at"
    at: ClockTime = "15:00"
    hours: Annotated[int, msgspec.Meta(ge=0, le=168)] = 2

    def deadline(self, segment_start: datetime, zone: str) -> datetime:
        if self.kind == "hours_before":
            return segment_start - timedelta(hours=self.hours)
        local_day = segment_start.astimezone(ZoneInfo(zone)).date()
        return local_to_utc(local_day - timedelta(days=1), _clock(self.at), zone)


class CutoffPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When unsold online units move to the on-site quota, before the session starts.

    >>> start = datetime(2026, 3, 9, 1, 0, tzinfo=UTC)
    >>> CutoffPolicy(hours_before=2).cutoff_at(start).isoformat()
    '2026-03-08T23:00:00+00:00'
    """

    hours_before: Annotated[float, msgspec.Meta(ge=0, le=72)] = 2.0

    def cutoff_at(self, session_start: datetime) -> datetime:
        return session_start - timedelta(hours=self.hours_before)


class HospitalPolicies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a hospital decides about online booking, in one value."""

    payment_mode: PaymentMode = PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
    filing_mode: FilingMode = FilingMode.AUTO_AT_BOOKING
    release: ReleasePolicy = ReleasePolicy()
    quota: QuotaPolicy = QuotaPolicy()
    cancel: CancelPolicy = CancelPolicy()
    cutoff: CutoffPolicy = CutoffPolicy()
    hold_minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] = 10
    payment_minutes: Annotated[int, msgspec.Meta(ge=1, le=120)] = 15
    cancel_return_delay_seconds: tuple[NonNegative, NonNegative] = (60, 300)
    """Bounds of the random delay before a cancelled unit returns to the public pool."""

    def __post_init__(self) -> None:
        low, high = self.cancel_return_delay_seconds
        if low > high:
            raise ValueError("cancel_return_delay_seconds must be (low, high) with low <= high")

"""A hospital's policies as rules: who pays online, when slots open, how a segment is split,
until when a patient may cancel, when unsold units go on site, and which values are refused.

Wall-clock rules are read in the hospital's zone and answered in UTC: Asia/Shanghai has no
daylight saving time, Europe/Berlin changes its clocks on 2026-03-29 (02:00 CET → 03:00 CEST)
and on 2026-10-25 (03:00 CEST → 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.hospitals import (
    CancelPolicy,
    CutoffPolicy,
    HospitalPolicies,
    PaymentChannel,
    PaymentMode,
    QuotaPolicy,
    ReleasePolicy,
    local_to_utc,
)

SHANGHAI = "Asia/Shanghai"
BERLIN = "Europe/Berlin"
CHANNELS: tuple[PaymentChannel, ...] = ("self_pay", "insurance")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ----------------------------------------------------------------------------- payment modes

# The docstring of PaymentMode, one row per mode: (self-pay, insurance).
# True: an online payment order; False: nothing paid online; None: channel refused.
PAYMENT_RULES: dict[PaymentMode, tuple[bool | None, bool | None]] = {
    PaymentMode.PAY_AT_HOSPITAL: (False, False),
    PaymentMode.ONLINE_SELF_PAY: (True, False),
    PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE: (True, True),
    PaymentMode.ONLINE_NO_INSURANCE: (True, None),
    PaymentMode.PAY_AFTER_VISIT: (False, False),
}


def test_the_payment_table_names_every_mode() -> None:
    assert set(PAYMENT_RULES) == set(PaymentMode)


@pytest.mark.parametrize(
    ("mode", "channel", "expected"),
    [
        (mode, channel, rule[i])
        for mode, rule in PAYMENT_RULES.items()
        for i, channel in enumerate(CHANNELS)
    ],
    ids=[f"{mode.value}-{channel}" for mode in PAYMENT_RULES for channel in CHANNELS],
)
def test_the_payment_mode_decides_per_channel_whether_to_pay_online(
    mode: PaymentMode, channel: PaymentChannel, expected: bool | None
) -> None:
    assert mode.online_payment_required(channel) is expected


@pytest.mark.parametrize("channel", CHANNELS)
def test_paying_at_the_hospital_or_after_the_visit_never_opens_an_online_order(
    channel: PaymentChannel,
) -> None:
    assert PaymentMode.PAY_AT_HOSPITAL.online_payment_required(channel) is False
    assert PaymentMode.PAY_AFTER_VISIT.online_payment_required(channel) is False


def test_insured_patients_pay_on_site_where_only_self_pay_is_online() -> None:
    assert PaymentMode.ONLINE_SELF_PAY.online_payment_required("self_pay") is True
    assert PaymentMode.ONLINE_SELF_PAY.online_payment_required("insurance") is False


def test_a_hospital_without_insurance_refuses_the_insurance_channel() -> None:
    assert PaymentMode.ONLINE_NO_INSURANCE.online_payment_required("insurance") is None
    assert PaymentMode.ONLINE_NO_INSURANCE.online_payment_required("self_pay") is True


def test_every_mode_accepts_self_pay() -> None:
    assert all(mode.online_payment_required("self_pay") is not None for mode in PaymentMode)


# ----------------------------------------------------------------------------- release time


def test_slots_open_days_ahead_at_the_local_release_time() -> None:
    policy = ReleasePolicy(days_ahead=7, at="08:00")
    assert policy.release_at(date(2026, 3, 9), SHANGHAI) == utc(2026, 3, 2, 0, 0)


def test_a_release_at_local_midnight_falls_on_the_previous_utc_day() -> None:
    policy = ReleasePolicy(days_ahead=1, at="00:00")
    assert policy.release_at(date(2026, 3, 9), SHANGHAI) == utc(2026, 3, 7, 16, 0)


def test_zero_days_ahead_releases_on_the_session_day() -> None:
    policy = ReleasePolicy(days_ahead=0, at="07:30")
    assert policy.release_at(date(2026, 3, 9), SHANGHAI) == utc(2026, 3, 8, 23, 30)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (SHANGHAI, utc(2026, 3, 2, 0, 0)),  # UTC+8
        ("Asia/Urumqi", utc(2026, 3, 2, 2, 0)),  # UTC+6
        ("Asia/Kolkata", utc(2026, 3, 2, 2, 30)),  # UTC+5:30
        ("UTC", utc(2026, 3, 2, 8, 0)),
        ("America/Los_Angeles", utc(2026, 3, 2, 16, 0)),  # PST, UTC-8
    ],
)
def test_the_same_wall_clock_release_is_a_different_instant_in_each_zone(
    zone: str, expected: datetime
) -> None:
    assert ReleasePolicy(days_ahead=7, at="08:00").release_at(date(2026, 3, 9), zone) == expected


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    st.integers(min_value=0, max_value=90),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
)
def test_shanghai_releases_are_always_eight_hours_before_the_same_utc_wall_clock(
    session_day: date, days_ahead: int, hour: int, minute: int
) -> None:
    policy = ReleasePolicy(days_ahead=days_ahead, at=f"{hour:02d}:{minute:02d}")
    released = policy.release_at(session_day, SHANGHAI)
    wall = datetime.combine(session_day - timedelta(days=days_ahead), time(hour, minute), UTC)
    assert released == wall - timedelta(hours=8)
    assert released.tzinfo is UTC


@pytest.mark.parametrize(
    ("session_day", "expected"),
    [
        (date(2026, 4, 2), utc(2026, 3, 26, 7, 0)),  # released in winter time, 08:00 CET
        (date(2026, 4, 5), utc(2026, 3, 29, 6, 0)),  # released on the change day, 08:00 CEST
        (date(2026, 10, 31), utc(2026, 10, 24, 6, 0)),  # still summer time, 08:00 CEST
        (date(2026, 11, 1), utc(2026, 10, 25, 7, 0)),  # released on the change day, 08:00 CET
    ],
    ids=["before_spring", "spring_change_day", "before_autumn", "autumn_change_day"],
)
def test_a_dst_zone_releases_at_the_wall_clock_of_the_release_day(
    session_day: date, expected: datetime
) -> None:
    released = ReleasePolicy(days_ahead=7, at="08:00").release_at(session_day, BERLIN)
    assert released == expected
    assert released.astimezone(ZoneInfo(BERLIN)).time() == time(8, 0)


def test_daily_releases_across_the_spring_change_are_23_hours_apart() -> None:
    policy = ReleasePolicy(days_ahead=7, at="08:00")
    before = policy.release_at(date(2026, 4, 4), BERLIN)
    after = policy.release_at(date(2026, 4, 5), BERLIN)
    assert after - before == timedelta(hours=23)


def test_a_release_time_in_the_spring_gap_is_read_with_the_winter_offset() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin; it is read as 02:30 CET (= 03:30 CEST).
    policy = ReleasePolicy(days_ahead=0, at="02:30")
    assert policy.release_at(date(2026, 3, 29), BERLIN) == utc(2026, 3, 29, 1, 30)


def test_a_release_time_that_happens_twice_in_autumn_is_the_first_one() -> None:
    # 02:30 happens twice on 2026-10-25 in Berlin; the first (CEST, UTC+2) is the release.
    policy = ReleasePolicy(days_ahead=0, at="02:30")
    assert policy.release_at(date(2026, 10, 25), BERLIN) == utc(2026, 10, 25, 0, 30)


def test_local_to_utc_reads_the_wall_clock_of_the_zone() -> None:
    assert local_to_utc(date(2026, 3, 2), time(8, 0), SHANGHAI) == utc(2026, 3, 2, 0, 0)
    assert local_to_utc(date(2026, 7, 2), time(8, 0), BERLIN) == utc(2026, 7, 2, 6, 0)
    assert local_to_utc(date(2026, 1, 2), time(8, 0), BERLIN) == utc(2026, 1, 2, 7, 0)


# ----------------------------------------------------------------------------- quota split


@pytest.mark.parametrize("share", [0.0, 0.3, 0.7, 1.0])
def test_an_empty_segment_splits_into_nothing(share: float) -> None:
    assert QuotaPolicy(online_share=share).split(0, segment_index=0) == (0, 0)


@pytest.mark.parametrize("capacity", [1, 7, 30])
def test_share_zero_keeps_every_unit_on_site(capacity: int) -> None:
    assert QuotaPolicy(online_share=0.0).split(capacity, segment_index=4) == (0, capacity)


@pytest.mark.parametrize("capacity", [1, 7, 30])
def test_share_one_puts_every_unit_online(capacity: int) -> None:
    assert QuotaPolicy(online_share=1.0).split(capacity, segment_index=4) == (capacity, 0)


@pytest.mark.parametrize(
    ("share", "capacity", "expected"),
    [
        (0.7, 3, (2, 1)),  # 2.1 online units: the fraction stays on site
        (0.5, 1, (0, 1)),  # half a unit is no unit online
        (0.6, 5, (3, 2)),
        (0.7, 10, (7, 3)),  # 0.7 * 10 is 7.000000000000001 in floats: still 7
        (0.29, 100, (29, 71)),  # 0.29 * 100 is 28.999999999999996 in floats: still 29
        (0.57, 100, (57, 43)),  # 0.57 * 100 is 56.99999999999999 in floats: still 57
    ],
)
def test_online_units_round_down_and_the_rest_stays_on_site(
    share: float, capacity: int, expected: tuple[int, int]
) -> None:
    assert QuotaPolicy(online_share=share).split(capacity, segment_index=0) == expected


def test_the_first_segments_stay_wholly_on_site() -> None:
    policy = QuotaPolicy(online_share=1.0, offline_first_segments=2)
    assert policy.split(6, segment_index=0) == (0, 6)
    assert policy.split(6, segment_index=1) == (0, 6)
    assert policy.split(6, segment_index=2) == (6, 0)


def test_offline_first_segments_beyond_the_session_keep_everything_on_site() -> None:
    policy = QuotaPolicy(online_share=0.7, offline_first_segments=99)
    assert [policy.split(10, segment_index=i) for i in range(8)] == [(0, 10)] * 8


def test_no_offline_first_segments_splits_from_the_first_segment() -> None:
    assert QuotaPolicy(online_share=0.7).split(10, segment_index=0) == (7, 3)


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=10),
)
def test_a_split_in_whole_percent_is_exact_and_loses_no_unit(
    capacity: int, percent: int, offline_first: int, segment: int
) -> None:
    policy = QuotaPolicy(online_share=percent / 100, offline_first_segments=offline_first)
    online, offline = policy.split(capacity, segment_index=segment)
    assert online + offline == capacity
    assert 0 <= online <= capacity
    expected = 0 if segment < offline_first else capacity * percent // 100
    assert online == expected


# ----------------------------------------------------------------------------- cancel deadline


def test_the_default_deadline_is_the_day_before_at_15_00() -> None:
    start = local_to_utc(date(2026, 3, 9), time(9, 0), SHANGHAI)
    assert CancelPolicy().deadline(start, SHANGHAI) == utc(2026, 3, 8, 7, 0)


def test_the_day_before_is_the_hospital_s_day_not_the_utc_day() -> None:
    # 00:30 on 9 March in Shanghai is still 8 March in UTC; the deadline is 8 March 15:00 local.
    start = local_to_utc(date(2026, 3, 9), time(0, 30), SHANGHAI)
    assert start.date() == date(2026, 3, 8)
    policy = CancelPolicy(kind="day_before_at", at="15:00")
    assert policy.deadline(start, SHANGHAI) == utc(2026, 3, 8, 7, 0)


def test_an_evening_session_shares_the_deadline_of_the_morning_one() -> None:
    policy = CancelPolicy(kind="day_before_at", at="15:00")
    morning = local_to_utc(date(2026, 3, 9), time(8, 0), SHANGHAI)
    evening = local_to_utc(date(2026, 3, 9), time(23, 30), SHANGHAI)
    assert policy.deadline(morning, SHANGHAI) == policy.deadline(evening, SHANGHAI)


@pytest.mark.parametrize(
    ("session_day", "expected"),
    [
        (date(2026, 3, 29), utc(2026, 3, 28, 14, 0)),  # deadline in winter time
        (date(2026, 3, 30), utc(2026, 3, 29, 13, 0)),  # deadline on the change day, CEST
    ],
)
def test_the_day_before_deadline_follows_the_wall_clock_across_a_dst_change(
    session_day: date, expected: datetime
) -> None:
    start = local_to_utc(session_day, time(9, 0), BERLIN)
    deadline = CancelPolicy(kind="day_before_at", at="15:00").deadline(start, BERLIN)
    assert deadline == expected
    assert deadline.astimezone(ZoneInfo(BERLIN)).time() == time(15, 0)


def test_hours_before_counts_back_from_the_segment_start() -> None:
    start = local_to_utc(date(2026, 3, 9), time(9, 0), SHANGHAI)
    policy = CancelPolicy(kind="hours_before", hours=2)
    assert policy.deadline(start, SHANGHAI) == utc(2026, 3, 8, 23, 0)


def test_zero_hours_before_allows_cancelling_until_the_segment_starts() -> None:
    start = utc(2026, 3, 9, 1, 0)
    assert CancelPolicy(kind="hours_before", hours=0).deadline(start, SHANGHAI) == start


def test_hours_before_counts_real_hours_across_a_dst_change() -> None:
    # 04:00 CEST on the spring change day; three real hours earlier is 00:00 CET.
    start = local_to_utc(date(2026, 3, 29), time(4, 0), BERLIN)
    deadline = CancelPolicy(kind="hours_before", hours=3).deadline(start, BERLIN)
    assert start - deadline == timedelta(hours=3)
    assert deadline == local_to_utc(date(2026, 3, 29), time(0, 0), BERLIN)


def test_hours_before_ignores_the_clock_time_and_day_before_ignores_the_hours() -> None:
    start = local_to_utc(date(2026, 3, 9), time(9, 0), SHANGHAI)
    hours = CancelPolicy(kind="hours_before", hours=2, at="03:00")
    day_before = CancelPolicy(kind="day_before_at", hours=100, at="15:00")
    assert hours.deadline(start, SHANGHAI) == utc(2026, 3, 8, 23, 0)
    assert day_before.deadline(start, SHANGHAI) == utc(2026, 3, 8, 7, 0)


# ----------------------------------------------------------------------------- cutoff


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        (2.0, utc(2026, 3, 8, 23, 0)),
        (0.0, utc(2026, 3, 9, 1, 0)),
        (1.5, utc(2026, 3, 8, 23, 30)),
        (72.0, utc(2026, 3, 6, 1, 0)),
    ],
)
def test_unsold_online_units_move_on_site_hours_before_the_session(
    hours: float, expected: datetime
) -> None:
    assert CutoffPolicy(hours_before=hours).cutoff_at(utc(2026, 3, 9, 1, 0)) == expected


def test_the_default_cutoff_is_two_hours_before() -> None:
    assert CutoffPolicy().cutoff_at(utc(2026, 3, 9, 1, 0)) == utc(2026, 3, 8, 23, 0)


# ----------------------------------------------------------------------------- validation


def decode(kind: type[Any], raw: dict[str, Any]) -> Any:
    """Decode as a policy arrives: from JSON, with msgspec's validation."""
    return msgspec.json.decode(msgspec.json.encode(raw), type=kind)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (ReleasePolicy, {"at": "25:00"}),
        (ReleasePolicy, {"at": "24:00"}),
        (ReleasePolicy, {"at": "08:60"}),
        (ReleasePolicy, {"at": "8:00"}),
        (ReleasePolicy, {"at": "08:00:00"}),
        (ReleasePolicy, {"at": " 08:00"}),
        (ReleasePolicy, {"at": ""}),
        (ReleasePolicy, {"days_ahead": -1}),
        (ReleasePolicy, {"days_ahead": 91}),
        (ReleasePolicy, {"days_ahead": 7.5}),
        (ReleasePolicy, {"days_ahead": True}),
        (ReleasePolicy, {"release_days": 7}),
        (QuotaPolicy, {"online_share": 1.5}),
        (QuotaPolicy, {"online_share": -0.1}),
        (QuotaPolicy, {"online_share": "0.7"}),
        (QuotaPolicy, {"offline_first_segments": -1}),
        (QuotaPolicy, {"online_percent": 70}),
        (CancelPolicy, {"kind": "week_before"}),
        (CancelPolicy, {"at": "15:00pm"}),
        (CancelPolicy, {"hours": -1}),
        (CancelPolicy, {"hours": 169}),
        (CancelPolicy, {"minutes": 30}),
        (CutoffPolicy, {"hours_before": -0.5}),
        (CutoffPolicy, {"hours_before": 72.5}),
        (CutoffPolicy, {"minutes_before": 30}),
        (HospitalPolicies, {"quota": {"online_share": 1.5}}),
        (HospitalPolicies, {"release": {"at": "25:00"}}),
        (HospitalPolicies, {"cancel": {"kind": "hours_before", "extra": 1}}),
        (HospitalPolicies, {"payment_mode": "cash_only"}),
        (HospitalPolicies, {"hold_minutes": 0}),
        (HospitalPolicies, {"payment_minutes": 121}),
        (HospitalPolicies, {"sms_reminders": True}),
    ],
)
def test_a_bad_policy_value_is_refused(kind: type[Any], raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(kind, raw)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, kind)


def test_a_refusal_names_the_field_at_fault() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.quota\.online_share"):
        decode(HospitalPolicies, {"quota": {"online_share": 1.5}})
    with pytest.raises(msgspec.ValidationError, match="unknown field `sms_reminders`"):
        decode(HospitalPolicies, {"sms_reminders": True})


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (ReleasePolicy, {"days_ahead": 0, "at": "00:00"}),
        (ReleasePolicy, {"days_ahead": 90, "at": "23:59"}),
        (QuotaPolicy, {"online_share": 0.0, "offline_first_segments": 0}),
        (QuotaPolicy, {"online_share": 1}),
        (CancelPolicy, {"kind": "hours_before", "hours": 168}),
        (CancelPolicy, {"kind": "day_before_at", "at": "19:59"}),
        (CutoffPolicy, {"hours_before": 0}),
        (CutoffPolicy, {"hours_before": 72}),
        (HospitalPolicies, {}),
    ],
)
def test_boundary_values_are_accepted(kind: type[Any], raw: dict[str, Any]) -> None:
    assert decode(kind, raw) == msgspec.convert(raw, kind)


def test_a_policy_round_trips_through_json() -> None:
    policies = HospitalPolicies(
        payment_mode=PaymentMode.ONLINE_NO_INSURANCE,
        release=ReleasePolicy(days_ahead=14, at="07:30"),
        quota=QuotaPolicy(online_share=0.5, offline_first_segments=1),
        cancel=CancelPolicy(kind="hours_before", hours=4),
        cutoff=CutoffPolicy(hours_before=1.5),
    )
    assert msgspec.json.decode(msgspec.json.encode(policies), type=HospitalPolicies) == policies


def test_policies_are_frozen_values() -> None:
    policy = ReleasePolicy()
    with pytest.raises(AttributeError):
        policy.at = "09:00"  # type: ignore[misc]


def test_a_clock_time_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(ReleasePolicy, {"at": "08:00\n"})

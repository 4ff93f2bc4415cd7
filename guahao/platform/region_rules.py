"""The region's rules as data: one versioned value the health authority changes, with the
fields it lets each hospital override.

Every number here is a default a real platform publishes (the ``source`` of each section says
where it comes from); the authority changes them through ``RuleBook`` (a new version each
time, with who and why), never by editing code. Rules are plain values so that a rule check
is a pure function of the rules, the record and the clock.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from guahao.platform.department_policies import DepartmentPolicyRules
from guahao.platform.error_codes import refuse
from guahao.platform.lottery import LotteryRules
from guahao.platform.reminders import ReminderRules
from guahao.platform.strikes import BlacklistRules
from guahao.platform.suspicion_rules import SuspicionRules
from guahao.platform.waitlist import WaitlistRules

__all__ = [
    "BookingLimitRules",
    "IdentityRules",
    "RateLimitRules",
    "RegionRules",
    "apply_changes",
    "flatten_changes",
    "merged_for_hospital",
]

Count = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Minutes = Annotated[int, msgspec.Meta(ge=0, le=60 * 24 * 30)]
RateLimit = Annotated[
    str, msgspec.Meta(pattern=r"^\s*\d+\s*/\s*\d*\s*[a-z]+(\s*;\s*\d+\s*/\s*\d*\s*[a-z]+)*\s*$")
]
"""One or more ``limits`` rate strings, e.g. ``"10/minute;60/hour"``."""


class IdentityRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """实名制: who may be a patient of an account.

    Sources: the 京医通 / 北京114 and 健康深圳 apps let one account manage five 就诊人 and
    tie each document to one "self"; the identity-change limit follows their rule that a
    patient's real-name data can be corrected only a few times a year.
    """

    max_patients_per_account: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    patient_additions_per_30_days: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Adding and removing people again and again is how a scalper books for buyers."""
    identity_changes_per_year: Annotated[int, msgspec.Meta(ge=0, le=12)] = 2
    self_min_age_years: Annotated[int, msgspec.Meta(ge=0, le=18)] = 14
    """Younger people are booked by a guardian (relation ``child``), typically on the
    household register (户口簿)."""


class BookingLimitRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-person and per-account booking limits, counted over every hospital of the region.

    Sources: 北京市预约挂号统一平台 (114): one booking per patient per department per day and
    at most three bookings a day; 上海 申康「医联预约」 and 健康深圳 cap bookings per patient in
    a month; 北京 114 makes a patient wait before rebooking after a cancellation.
    """

    per_patient_department_day: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    per_patient_day: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    per_patient_month: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Live bookings whose visit falls in one calendar month."""
    per_account_month: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20
    rebook_same_session_wait_minutes: Minutes = 60
    """After a 退号 the same person and the same account cannot book that session again for
    this long: the unit goes to the waitlist and then back to the public pool at a random
    moment, so a cancel-then-rebook hand-over to a buyer cannot be arranged."""
    rebook_department_wait_minutes: Minutes = 10
    """A short wait before the same person books the same department again after a 退号."""


class RateLimitRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Request rates at hold time and sign-in, enforced on Redis with the ``limits`` library.

    Per IP is generous because hospitals, offices and mobile carriers put many people behind
    one address; per device and per account are tight because one person needs few holds.
    """

    hold_per_account: RateLimit = "30/minute;300/hour"
    hold_per_device: RateLimit = "60/minute;600/hour"
    hold_per_ip: RateLimit = "600/minute"
    sign_in_per_phone: RateLimit = "10/15minutes"
    """No longer applied: a hard limit per phone locked its owner out on a rival's guesses.
    Password sign-in spaces attempts out instead (``services/sign_in_delays.py``); the field
    stays so that stored rule versions still decode."""
    register_per_ip: RateLimit = "30/hour"
    sign_in_code_per_phone: RateLimit = "1/minute;5/hour"
    """SMS sign-in codes sent to one phone (each costs an SMS and annoys its owner)."""
    sign_in_code_per_ip: RateLimit = "20/hour"
    """SMS sign-in codes asked for from one address (bulk SMS bombing, bulk accounts)."""
    sign_in_attempt_per_ip: RateLimit = "60/hour"
    """SMS codes entered from one address (guessing across many phones)."""


class RegionRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything the authority decides for the whole region, as one value."""

    identity: IdentityRules = IdentityRules()
    limits: BookingLimitRules = BookingLimitRules()
    rate_limits: RateLimitRules = RateLimitRules()
    blacklist: BlacklistRules = BlacklistRules()
    suspicion: SuspicionRules = SuspicionRules()
    waitlist: WaitlistRules = WaitlistRules()
    lottery: LotteryRules = LotteryRules()
    reminders: ReminderRules = ReminderRules()
    add_on_per_session: Annotated[int, msgspec.Meta(ge=0, le=50)] = 5
    """诊间加号 a doctor may give in one session (each to a named, real-name patient)."""
    follow_up_valid_days: Annotated[int, msgspec.Meta(ge=0, le=30)] = 0
    """复诊有效期: days a visit that could not finish on the day (waiting for test results)
    stays valid without a new registration; 0 = not offered (hospitals opt in)."""
    department_policy: DepartmentPolicyRules = DepartmentPolicyRules()
    """What a hospital's departments may choose for their online/offline split and release."""
    hospital_overridable: frozenset[str] = frozenset(
        {
            "limits.per_patient_department_day",
            "limits.rebook_department_wait_minutes",
            "add_on_per_session",
            "follow_up_valid_days",
        }
    )
    """Dotted fields a hospital may override for itself; anything else is region-wide."""


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    node = tree
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            refuse("RULES_INVALID", field=path, reason="no such rule")
        node = child
    if parts[-1] not in node:
        refuse("RULES_INVALID", field=path, reason="no such rule")
    node[parts[-1]] = value


def _flatten(changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))  # an empty section changes nothing
        else:
            flat[path] = value
    return flat


def flatten_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Nested or dotted changes as dotted paths.

    >>> flatten_changes({"limits": {"per_patient_day": 2}, "add_on_per_session": 3})
    {'limits.per_patient_day': 2, 'add_on_per_session': 3}
    """
    return _flatten(changes)


def _convert(tree: dict[str, Any]) -> RegionRules:
    try:
        rules = msgspec.convert(tree, RegionRules)
    except msgspec.ValidationError as exc:
        refuse("RULES_INVALID", reason=str(exc))
    leaves = set(_flatten(tree))
    unknown = sorted(set(rules.hospital_overridable) - leaves)
    if unknown:  # a typo here would silently let hospitals override nothing
        refuse("RULES_INVALID", field="hospital_overridable", unknown=unknown)
    return rules


def apply_changes(rules: RegionRules, changes: dict[str, Any]) -> RegionRules:
    """A new rules value with ``changes`` (nested or dotted keys) applied and validated.

    >>> r = apply_changes(RegionRules(), {"limits": {"per_patient_day": 2}})
    >>> r.limits.per_patient_day, r.limits.per_patient_department_day
    (2, 1)
    >>> apply_changes(r, {"limits.per_patient_day": 0})
    Traceback (most recent call last):
    ...
    guahao.platform.errors.InvalidInputError: RULES_INVALID: The rules are invalid
    """
    tree: dict[str, Any] = msgspec.to_builtins(rules)
    for path, value in _flatten(changes).items():
        _set_path(tree, path, value)
    return _convert(tree)


def merged_for_hospital(rules: RegionRules, overrides: dict[str, Any]) -> RegionRules:
    """The rules in force at one hospital: the region's, with the overrides it allows.

    >>> r = merged_for_hospital(RegionRules(), {"follow_up_valid_days": 7})
    >>> r.follow_up_valid_days
    7
    >>> from guahao.platform.errors import GuahaoError
    >>> try:
    ...     merged_for_hospital(RegionRules(), {"limits.per_patient_day": 9})
    ... except GuahaoError as refused:
    ...     print(refused.code)
    RULE_NOT_OVERRIDABLE
    """
    flat = _flatten(overrides)
    for path in flat:
        if path not in rules.hospital_overridable:
            refuse("RULE_NOT_OVERRIDABLE", field=path)
    return apply_changes(rules, flat)

"""Strikes (违约记录) and the shared blacklist (黑名单) as data, and the pure decision over them.

A strike is one counted violation of a *person* (never an account): a no-show (爽约), a late
退号, an unpaid order left to expire, or simply a 退号 (too many cancellations). A strike policy
says which kinds it counts, over how many days, how many make a ban, how many warnings come
before it and how long the ban lasts. The policies live in the region's rules (versioned data,
``RegionRules.blacklist``); ``evaluate`` is a pure function of the policies, the person's
strikes and the clock, so every rule is testable without a database.

Session stops by the hospital (停诊) are never a strike: the services never record one. Nor
is anything the platform started rather than the patient: every booking carries its origin
(``BookingOrigin``) and a policy counts only the origins it names (``StrikePolicy.origins``),
by default the bookings a patient asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

__all__ = [
    "DEFAULT_POLICIES",
    "PATIENT_ORIGINS",
    "BlacklistRules",
    "BookingOrigin",
    "Decision",
    "Strike",
    "StrikeKind",
    "StrikePolicy",
    "ban_exempts",
    "evaluate",
    "in_window",
]


class StrikeKind(StrEnum):
    """What a person did that counts against them."""

    NO_SHOW = "no_show"
    """爽约: a confirmed booking, never checked in, whose session is over."""
    LATE_CANCELLATION = "late_cancellation"
    """退号 allowed by the hospital's deadline but within ``late_cancellation_hours`` of the
    visit: the unit is hard to give to someone else in time."""
    CANCELLATION = "cancellation"
    """Any 退号 by the patient (the "too many cancellations" rule counts these)."""
    UNPAID_EXPIRY = "unpaid_expiry"
    """A patient was chosen (or an order opened) and then the hold or order ran out unpaid."""


class BookingOrigin(StrEnum):
    """Who started a booking: what decides whether its failures may count against the patient."""

    PATIENT = "patient"
    """The patient held a unit and chose the patient themselves (or entered a lottery)."""
    PATIENT_WAIT = "patient_wait"
    """A unit granted from a wait the patient joined, confirmed with no step of theirs
    (paid in advance, or nothing to pay online)."""
    PLATFORM_OFFER = "platform_offer"
    """A unit granted from a wait whose fee could not be taken in advance: the platform
    reserved it and asked the patient to pay by a deadline they never chose."""
    PRIORITY_REBOOKING = "priority_rebooking"
    """A unit proposed after the hospital cancelled the patient's booking or stopped the
    session: the patient did not ask for it."""


PATIENT_ORIGINS: tuple[BookingOrigin, ...] = (BookingOrigin.PATIENT, BookingOrigin.PATIENT_WAIT)
"""The origins a policy counts unless it says otherwise: what the patient asked for."""

Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]


class StrikePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One rule: ``threshold`` strikes of the counted kinds within ``window_days`` make a ban of
    ``ban_days``; the ``warnings_before_ban`` strikes just below the threshold each bring a
    warning saying how many are left."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    counts: frozenset[StrikeKind]
    window_days: Days
    threshold: Annotated[int, msgspec.Meta(ge=1, le=100)]
    ban_days: Days
    warnings_before_ban: Annotated[int, msgspec.Meta(ge=0, le=99)] = 0
    source: str = ""
    """Where the numbers come from (a published rule, or "platform default")."""
    origins: tuple[BookingOrigin, ...] = PATIENT_ORIGINS
    """The kinds of booking whose strikes this policy counts (``BookingOrigin``). Versions of
    the rules saved before origins existed read as the default: the patient's own bookings."""


DEFAULT_POLICIES: tuple[StrikePolicy, ...] = (
    StrikePolicy(
        name="no_show",
        counts=frozenset({StrikeKind.NO_SHOW}),
        window_days=90,
        threshold=3,
        warnings_before_ban=2,
        ban_days=90,
        source=(
            "Published example quoted in issue 3 [rules]: 3 no-shows (爽约) in 90 days → no "
            "online booking for 90 days (the rule regional platforms such as Beijing 114 publish)."
        ),
    ),
    StrikePolicy(
        name="cancellations",
        counts=frozenset({StrikeKind.CANCELLATION}),
        window_days=30,
        threshold=3,
        warnings_before_ban=1,
        ban_days=30,
        source=(
            "Published example quoted in issue 3 [rules]: 3 cancellations (退号) in a month → no "
            "online booking for a month."
        ),
    ),
    StrikePolicy(
        name="violations",
        counts=frozenset({StrikeKind.LATE_CANCELLATION, StrikeKind.UNPAID_EXPIRY}),
        window_days=90,
        threshold=3,
        warnings_before_ban=2,
        ban_days=30,
        source=(
            "Platform default, not a published figure: late cancellations and unpaid orders "
            "left to expire, 3 in 90 days → 30 days, after two warnings. Regions set their own."
        ),
    ),
)


class BlacklistRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The blacklist part of the region's rules (``RegionRules.blacklist``)."""

    policies: tuple[StrikePolicy, ...] = DEFAULT_POLICIES
    late_cancellation_hours: Annotated[int, msgspec.Meta(ge=0, le=24 * 14)] = 24
    """A 退号 this close to the visit counts as late (though the hospital still allowed it)."""
    exempt_catalog_codes: frozenset[str] = frozenset({"20"})
    """National catalog codes (and their sub-codes) a ban never blocks: 20 急诊医学科."""
    exempt_department_names: tuple[str, ...] = ("发热门诊", "发热")
    """Parts of department names a ban never blocks (发热门诊, 儿科发热门诊, …)."""
    appeal_window_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    """Days from the start of a ban in which the patient may appeal (申诉)."""


class Strike(msgspec.Struct, frozen=True):
    """A strike as the pure rules see it."""

    kind: StrikeKind
    occurred_at: datetime
    origin: BookingOrigin = BookingOrigin.PATIENT
    """The origin of the booking the strike came from."""


class Decision(msgspec.Struct, frozen=True):
    """What a new strike leads to: a ban (until ``ends_at``), a warning (``remaining`` strikes
    left before a ban) or nothing."""

    outcome: Literal["ban", "warning", "none"]
    policy: str | None = None
    count: int = 0
    remaining: int = 0
    ends_at: datetime | None = None


NOTHING = Decision("none")


def in_window(policy: StrikePolicy, strikes: Iterable[Strike], now: datetime) -> int:
    """How many of ``strikes`` the policy counts at ``now``: its kinds and origins, within the
    last ``window_days`` (a strike exactly ``window_days`` old has left the window).

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> p = DEFAULT_POLICIES[0]
    >>> s = [Strike(StrikeKind.NO_SHOW, t), Strike(StrikeKind.CANCELLATION, t)]
    >>> in_window(p, s, t + timedelta(days=89)), in_window(p, s, t + timedelta(days=90))
    (1, 0)
    >>> offered = Strike(StrikeKind.NO_SHOW, t, BookingOrigin.PRIORITY_REBOOKING)
    >>> in_window(p, [offered], t + timedelta(days=1))
    0
    """
    start = now - timedelta(days=policy.window_days)
    return sum(
        1
        for s in strikes
        if s.kind in policy.counts and s.origin in policy.origins and start < s.occurred_at <= now
    )


def evaluate(
    policies: Iterable[StrikePolicy],
    strikes_in_window: Iterable[Strike],
    now: datetime,
    *,
    counted_since: Mapping[str, datetime] | None = None,
) -> Decision:
    """The decision the person's strikes call for at ``now``.

    ``counted_since`` maps a policy name to the start of its last ban: strikes up to then were
    answered by that ban and are not counted again. Several policies may apply: the longest
    ban wins; without a ban, the warning closest to a ban.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> no_shows = [Strike(StrikeKind.NO_SHOW, t + timedelta(days=d)) for d in (0, 30, 60)]
    >>> now = t + timedelta(days=60)
    >>> evaluate(DEFAULT_POLICIES, no_shows[:1], now).outcome
    'warning'
    >>> evaluate(DEFAULT_POLICIES, no_shows[:2], now).remaining
    1
    >>> d = evaluate(DEFAULT_POLICIES, no_shows, now)
    >>> d.outcome, d.policy, (d.ends_at - now).days
    ('ban', 'no_show', 90)
    >>> evaluate(DEFAULT_POLICIES, no_shows, now, counted_since={"no_show": now}).outcome
    'none'
    """
    strikes = list(strikes_in_window)
    since = counted_since or {}
    best_ban: Decision | None = None
    best_warning: Decision | None = None
    for policy in policies:
        floor = since.get(policy.name)
        counted = [s for s in strikes if floor is None or s.occurred_at > floor]
        count = in_window(policy, counted, now)
        if count == 0:
            continue
        if count >= policy.threshold:
            ends_at = now + timedelta(days=policy.ban_days)
            if best_ban is None or (best_ban.ends_at is not None and ends_at > best_ban.ends_at):
                best_ban = Decision("ban", policy.name, count, 0, ends_at)
            continue
        remaining = policy.threshold - count
        if remaining <= policy.warnings_before_ban and (
            best_warning is None or remaining < best_warning.remaining
        ):
            best_warning = Decision("warning", policy.name, count, remaining)
    return best_ban or best_warning or NOTHING


def ban_exempts(rules: BlacklistRules, catalog_code: str, department_name: str) -> bool:
    """Whether a banned person may still book this department online (emergency, fever
    clinics): by national catalog code (or any sub-code of an exempt code) or by name.

    >>> r = BlacklistRules()
    >>> ban_exempts(r, "20", "急诊科"), ban_exempts(r, "20.01", "")
    (True, True)
    >>> ban_exempts(r, "07", "儿科发热门诊"), ban_exempts(r, "03.04", "心内科")
    (True, False)
    >>> ban_exempts(r, "200", "")
    False
    """
    code = catalog_code.strip()
    for exempt in rules.exempt_catalog_codes:
        if code == exempt or code.startswith(exempt + "."):
            return True
    name = re.sub(r"\s+", "", department_name)
    return any(part and part in name for part in rules.exempt_department_names)

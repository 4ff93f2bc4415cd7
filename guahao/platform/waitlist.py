"""The waitlist (候补) as pure rules: who is first in line, what a wait covers, where one stands.

A wait names a session, or a doctor or a department over a date range. Freed units go to the
first eligible wait that covers them, in the order of the line: priority first (patients whose
session the hospital stopped are put ahead), then who joined first, then the entry id so that
two waits joined in the same microsecond still have one order everywhere.

The services (``guahao.platform.services.waitlist``) read and write the rows; everything that
decides is here, so the rules are tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import msgspec

__all__ = [
    "AWAKE_MINUTES",
    "Scope",
    "Wait",
    "WaitlistRules",
    "could_compete",
    "covers",
    "in_line",
    "line_key",
    "local_deadline",
    "out_of_quiet_hours",
    "position",
    "waitlist_rules_of",
]

ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]

Scope = Literal["session", "doctor", "department"]


class WaitlistRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The region's waitlist rules (part of the versioned region rules as ``waitlist``)."""

    max_waits_per_patient: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    """Waits one person (an identity document, across accounts) may hold at once."""
    max_days_ahead: Annotated[int, msgspec.Meta(ge=1, le=90)] = 14
    """How far ahead of today a wait's dates may reach (slots are released about a week
    ahead; two weeks lets a wait span the next release)."""
    hospital_stop_priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    """The priority of a wait given to a patient whose session the hospital stopped (停诊);
    everyone else waits at 0, so they go first."""
    stopped_patients_auto_join: bool = True
    """Put the patients of a stopped session on the waitlist by themselves."""
    auto_join_days: Annotated[int, msgspec.Meta(ge=0, le=30)] = 7
    """The date range of that automatic wait: the stopped session's day and this many after."""
    auto_join_scope: Literal["doctor", "department"] = "department"
    """What that automatic wait covers: the same doctor, or any doctor of the department."""
    offer_payment_minutes: Annotated[int, msgspec.Meta(ge=5, le=240)] = 30
    """When a freed unit is given to a waiter and the hospital takes payment online, how long
    the waiter has to pay (longer than a hold: the waiter is told, not at the screen)."""
    rebooking_offer_hours: Annotated[int, msgspec.Meta(ge=1, le=72)] = 24
    """优先改约: how long the patient of a booking the hospital cancelled (or whose session it
    stopped) has to accept one of the proposed units or decline (the end moved out of the
    quiet hours). Meanwhile the payment is kept, to carry over to the accepted unit."""
    prepay_waits: bool = True
    """候补预付: where the hospital takes payment online, a patient's wait is paid in advance
    and a grant confirms at once; off, a grant is held with a message to pay by a deadline
    (``offer_payment_minutes``), as before prepaid waits existed."""
    prepay_minutes: Annotated[int, msgspec.Meta(ge=5, le=240)] = 30
    """候补预付: how long a patient joining a wait at a hospital that takes payment online has
    to pay the fee in advance; the wait is served only once paid, and ends if never paid."""
    quiet_hours_start: ClockTime = "22:00"
    """The start of the night in the hospital's own time: no deadline a patient is given
    (to pay, to answer an offer) ends between this and ``quiet_hours_end``."""
    quiet_hours_end: ClockTime = "07:00"
    """The end of the night; a deadline that would fall in the night moves to this time plus
    the time it would have given, so the patient has it awake."""


def waitlist_rules_of(rules: Any) -> WaitlistRules:
    """The ``waitlist`` part of the region's rules, or the defaults when the rules carry none.

    >>> waitlist_rules_of(object()).max_waits_per_patient
    3
    """
    found = getattr(rules, "waitlist", None)
    return found if isinstance(found, WaitlistRules) else WaitlistRules()


class Wait(msgspec.Struct, frozen=True):
    """What the rules need to know about one waiting entry."""

    id: str
    scope: Scope
    priority: int
    joined_at: datetime
    department_id: str
    date_from: date
    date_to: date
    doctor_id: str | None = None
    session_id: str | None = None


def line_key(wait: Wait) -> tuple[int, datetime, str]:
    """The order of the line: priority (highest first), then joined first, then id."""
    return (-wait.priority, wait.joined_at, wait.id)


def in_line(waits: Iterable[Wait]) -> list[Wait]:
    """The waits in the order they are served.

    >>> from datetime import UTC
    >>> t = datetime(2026, 3, 2, tzinfo=UTC)
    >>> d = date(2026, 3, 4)
    >>> early = Wait("b", "session", 0, t, "dep", d, d, session_id="s")
    >>> late = Wait("a", "session", 0, t.replace(hour=1), "dep", d, d, session_id="s")
    >>> stopped = Wait("c", "department", 100, t.replace(hour=2), "dep", d, d)
    >>> [w.id for w in in_line([late, early, stopped])]
    ['c', 'b', 'a']
    """
    return sorted(waits, key=line_key)


def covers(wait: Wait, *, session_id: str, doctor_id: str, department_id: str, day: date) -> bool:
    """Whether a unit of this session may be given to this wait.

    >>> from datetime import UTC
    >>> t = datetime(2026, 3, 2, tzinfo=UTC)
    >>> w = Wait("w", "department", 0, t, "dep", date(2026, 3, 4), date(2026, 3, 6))
    >>> covers(w, session_id="s", doctor_id="d", department_id="dep", day=date(2026, 3, 5))
    True
    >>> covers(w, session_id="s", doctor_id="d", department_id="dep", day=date(2026, 3, 7))
    False
    """
    if wait.scope == "session":
        return wait.session_id == session_id
    if wait.department_id != department_id or not wait.date_from <= day <= wait.date_to:
        return False
    return wait.scope == "department" or wait.doctor_id == doctor_id


def could_compete(a: Wait, b: Wait) -> bool:
    """Whether some unit could be wanted by both waits (so one may stand before the other).

    A session wait is pinned to its session, a doctor wait to its doctor, and both carry the
    session's or the range's dates, so overlap of department, doctor and dates decides.
    """
    if a.department_id != b.department_id:
        return False
    if a.date_from > b.date_to or b.date_from > a.date_to:
        return False
    if a.scope == "session" and b.scope == "session":
        return a.session_id == b.session_id
    if a.scope != "department" and b.scope != "department":
        return a.doctor_id == b.doctor_id
    return True


def position(wait: Wait, waiting: Iterable[Wait]) -> int:
    """Where ``wait`` stands: 1 + the waits ahead of it that could take a unit it wants.

    For a wide wait (a department over several days) this is the worst case over the units it
    covers: someone ahead on one doctor's Tuesday is not ahead for another doctor's Wednesday.

    >>> from datetime import UTC
    >>> t = datetime(2026, 3, 2, tzinfo=UTC)
    >>> d = date(2026, 3, 4)
    >>> a = Wait("a", "session", 0, t, "dep", d, d, doctor_id="d1", session_id="s1")
    >>> b = Wait("b", "session", 0, t.replace(hour=1), "dep", d, d, doctor_id="d2", session_id="s2")
    >>> c = Wait("c", "department", 0, t.replace(hour=2), "dep", d, d)
    >>> position(a, [a, b, c]), position(b, [a, b, c]), position(c, [a, b, c])
    (1, 1, 3)
    """
    mine = line_key(wait)
    ahead = sum(
        1
        for other in waiting
        if other.id != wait.id and line_key(other) < mine and could_compete(wait, other)
    )
    return ahead + 1


AWAKE_MINUTES = 120
"""The most a deadline moved out of the night gives after the night ends."""


def _clock_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def out_of_quiet_hours(
    start: datetime, minutes: int, *, zone: str, quiet_start: str, quiet_end: str
) -> datetime:
    """The end of a ``minutes``-long deadline given at ``start``, moved out of the night.

    A deadline that would end in the hospital's quiet hours (local ``quiet_start`` to
    ``quiet_end``, across midnight when start > end) ends instead ``minutes`` after the quiet
    hours are over (at most ``AWAKE_MINUTES``: a day-long offer needs no second day), so the
    patient has that time awake. Returns a UTC-aware instant.

    >>> from datetime import UTC
    >>> at = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai
    >>> out_of_quiet_hours(at, 30, zone="Asia/Shanghai", quiet_start="22:00", quiet_end="07:00")
    datetime.datetime(2026, 3, 2, 13, 30, tzinfo=datetime.timezone.utc)
    >>> late = at + timedelta(hours=4, minutes=53)  # 01:53 local
    >>> local_deadline(
    ...     out_of_quiet_hours(late, 30, zone="Asia/Shanghai", quiet_start="22:00",
    ...                        quiet_end="07:00"), "Asia/Shanghai")
    '2026-03-03 07:30'
    """
    tz = ZoneInfo(zone)
    end = start + timedelta(minutes=minutes)
    local = end.astimezone(tz)
    q_start, q_end = _clock_time(quiet_start), _clock_time(quiet_end)
    if q_start == q_end:
        return end
    wall = local.time()
    if q_start < q_end:
        quiet = q_start <= wall < q_end
        wake_day = local.date()
    else:
        quiet = wall >= q_start or wall < q_end
        wake_day = local.date() + timedelta(days=1) if wall >= q_start else local.date()
    if not quiet:
        return end
    wake = datetime.combine(wake_day, q_end, tzinfo=tz)
    return (wake + timedelta(minutes=min(minutes, AWAKE_MINUTES))).astimezone(start.tzinfo)


def local_deadline(instant: datetime, zone: str) -> str:
    """A deadline as a patient reads it: the hospital's wall time, with the date.

    >>> from datetime import UTC
    >>> local_deadline(datetime(2026, 3, 2, 23, 30, tzinfo=UTC), "Asia/Shanghai")
    '2026-03-03 07:30'
    """
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")

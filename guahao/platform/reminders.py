"""Reminders before a visit (就诊提醒) as pure rules: when each one is sent.

Missed appointments are prevented before they are punished: a confirmed booking is reminded
the day before and two hours before the visit (region rules, ``reminders.hours_before``), each
message with a one-tap 退号 link so a patient who cannot come frees the unit instead of
earning a no-show. A reminder never arrives in the hospital's quiet hours: one that would is
sent at the start of those hours' evening instead (the last awake moment before the visit).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec

__all__ = ["ReminderRules", "reminder_times"]

HoursBefore = Annotated[int, msgspec.Meta(ge=1, le=168)]


class ReminderRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The region's reminder rules (``RegionRules.reminders``)."""

    hours_before: tuple[HoursBefore, ...] = (24, 2)
    """Hours before the visit at which a reminder is sent: by default the day before and two
    hours before. An empty list sends none."""


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _in_quiet(wall: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end


def reminder_times(
    visit_at: datetime,
    *,
    hours_before: tuple[int, ...],
    zone: str,
    quiet_start: str,
    quiet_end: str,
) -> list[tuple[int, datetime]]:
    """(hours before, when to send) for each reminder, moved out of the quiet hours.

    A reminder due in the night goes out a minute before the quiet hours begin on the evening
    before it, never later than planned.

    >>> from datetime import UTC
    >>> visit = datetime(2026, 3, 4, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
    >>> for hours, at in reminder_times(visit, hours_before=(24, 2), zone="Asia/Shanghai",
    ...                                 quiet_start="22:00", quiet_end="07:00"):
    ...     print(hours, at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M"))
    24 03-03 08:30
    2 03-03 21:59
    """
    tz = ZoneInfo(zone)
    start, end = _clock(quiet_start), _clock(quiet_end)
    times = []
    for hours in sorted(set(hours_before), reverse=True):
        due = (visit_at - timedelta(hours=hours)).astimezone(tz)
        if _in_quiet(due.time(), start, end):
            evening: date = due.date() if due.time() >= start else due.date() - timedelta(days=1)
            due = datetime.combine(evening, start, tzinfo=tz) - timedelta(minutes=1)
        times.append((hours, due.astimezone(visit_at.tzinfo)))
    return times

"""复诊有效期: a visit that could not finish on the day stays valid for a few days.

A patient seen in the morning and sent for blood tests often comes back with the results a
day or two later; where the hospital offers it (``follow_up_valid_days`` > 0 in its rules),
the doctor marks the checked-in booking as continuing, and the return visit needs no new
registration, no new unit and no new fee. Each return visit is counted on the booking.
"""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from guahao.platform.bookings import BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import BookingRow, HospitalRow
from guahao.platform.services.audit import record_audit
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role

__all__ = ["FollowUps"]


class FollowUps:
    """Grant follow-up validity to a visit, and record return visits within it."""

    def __init__(self, ports: Ports, rules: RuleBook) -> None:
        self._p = ports
        self._rules = rules

    async def grant(self, *, staff: StaffActor, booking_id: str) -> date:
        """The visit continues: valid until the returned date (inclusive, hospital time)."""
        require_role(staff, StaffRole.HOSPITAL_STAFF)
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, booking_id)
        if row is None:
            refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
        self._own(staff, row)
        days = (await self._rules.for_hospital(row.hospital_id or "")).follow_up_valid_days
        if days <= 0:
            refuse("FOLLOW_UP_NOT_OFFERED", hospital_id=row.hospital_id)
        if row.status != BookingStatus.CHECKED_IN.value or row.visit_date is None:
            refuse("BOOKING_STATE_INVALID", booking_id=booking_id, status=row.status)
        until = row.visit_date + timedelta(days=days)
        async with self._p.sessions() as session, session.begin():
            row = await session.get(BookingRow, booking_id)
            assert row is not None
            if row.status != BookingStatus.CHECKED_IN.value:  # changed since it was read
                refuse("BOOKING_STATE_INVALID", booking_id=booking_id, status=row.status)
            row.follow_up_until = until
            row.updated_at = now
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "booking.follow_up_granted",
                "booking",
                booking_id,
                {"until": until.isoformat()},
                now,
            )
            record_event(
                session,
                "booking.follow_up_granted",
                booking_id,
                {
                    "booking_id": booking_id,
                    "account_id": row.account_id,
                    "until": until.isoformat(),
                },
                now,
            )
        return until

    async def record_visit(self, *, staff: StaffActor, booking_id: str) -> int:
        """A return visit on the same registration; refused once the validity has ended."""
        require_role(staff, StaffRole.HOSPITAL_STAFF)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(BookingRow, booking_id)
            if row is None:
                refuse("BOOKING_NOT_FOUND", booking_id=booking_id)
            self._own(staff, row)
            if row.follow_up_until is None:
                refuse("FOLLOW_UP_NOT_OFFERED", booking_id=booking_id)
            hospital = await session.get(HospitalRow, row.hospital_id)
            assert hospital is not None
            today = now.astimezone(ZoneInfo(hospital.timezone)).date()
            if today > row.follow_up_until:
                refuse("FOLLOW_UP_EXPIRED", until=row.follow_up_until.isoformat())
            row.follow_up_visits += 1
            row.updated_at = now
            visits = row.follow_up_visits
            record_audit(
                session,
                staff.username,
                staff.role.value,
                "booking.follow_up_visit",
                "booking",
                booking_id,
                {"visit": visits},
                now,
            )
            record_event(
                session,
                "booking.follow_up_visit",
                booking_id,
                {"booking_id": booking_id, "account_id": row.account_id, "visit": visits},
                now,
            )
        return visits

    @staticmethod
    def _own(staff: StaffActor, row: BookingRow) -> None:
        if staff.hospital_id != row.hospital_id:
            refuse("PERMISSION_DENIED", reason="another hospital's booking")

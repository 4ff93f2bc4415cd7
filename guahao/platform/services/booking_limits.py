"""Admission: may this person take one more booking? Checked when a patient is put on a unit.

One person (an identity document) is limited across every hospital and every account of the
region, so the checks read the person's bookings, bans and filings, never the account's alone.

Concurrency: the check runs inside the transaction that records the booking's patient, and its
first statement bumps the person's ``lock_version``. On PostgreSQL that row lock makes two
transactions of one person (even at two hospitals) take turns, and the second one's counts
(READ COMMITTED: each statement sees what committed before it) include the first one's
booking. On SQLite the same first write takes the database's single write lock before any
read, so the later transaction's reads start after the earlier commit. Either way two requests
racing for the last allowance cannot both pass. The account is locked second (PostgreSQL
``FOR UPDATE``; SQLite is already serialised) for the per-account limit; the order person →
account is the same everywhere, so no two transactions wait on each other in a circle.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import LIVE_WITH_PATIENT, BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import FilingMode, HospitalPolicies
from guahao.platform.persistence.tables import (
    AccountRow,
    BookingRow,
    DepartmentRow,
    PatientFilingRow,
    SessionRow,
)
from guahao.platform.region_rules import RegionRules
from guahao.platform.services.ban_checks import refuse_if_banned

__all__ = ["LIVE_WITH_PATIENT", "admit", "month_bounds"]


def month_bounds(day: date) -> tuple[date, date]:
    """The first day of ``day``'s month and the first day of the next.

    >>> month_bounds(date(2026, 12, 31))
    (datetime.date(2026, 12, 1), datetime.date(2027, 1, 1))
    """
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


async def _count(session: AsyncSession, *conditions: Any) -> int:
    value = await session.scalar(
        select(func.count())
        .select_from(BookingRow)
        .where(BookingRow.status.in_(LIVE_WITH_PATIENT), *conditions)
    )
    return int(value or 0)


async def admit(
    session: AsyncSession,
    *,
    rules: RegionRules,
    policies: HospitalPolicies,
    person_id: str,
    account_id: str,
    sess: SessionRow,
    now: datetime,
    exclude_booking_id: str | None = None,
) -> None:
    """Refuse (with the rule's code) unless this person may take a unit of ``sess`` now.

    Call inside the write transaction that records the booking, after ``lock_person``.
    """
    department = await session.get(DepartmentRow, sess.department_id)
    assert department is not None
    await refuse_if_banned(
        session,
        person_id=person_id,
        rules=rules.blacklist,
        catalog_code=department.catalog_code,
        department_name=department.name,
        now=now,
    )
    if policies.filing_mode is FilingMode.REQUIRED_BEFORE_BOOKING:
        filed = await session.scalar(
            select(PatientFilingRow.id).where(
                PatientFilingRow.person_id == person_id,
                PatientFilingRow.hospital_id == sess.hospital_id,
                PatientFilingRow.status == "filed",
            )
        )
        if filed is None:
            refuse("PATIENT_NOT_FILED", hospital_id=sess.hospital_id)
    await _check_rebook_waits(session, rules, person_id, account_id, sess, now)

    limits = rules.limits
    others = [BookingRow.id != exclude_booking_id] if exclude_booking_id else []
    mine = [BookingRow.person_id == person_id, *others]
    if await _count(session, *mine, BookingRow.session_id == sess.id):
        refuse("PATIENT_ALREADY_BOOKED_SESSION", session_id=sess.id)
    same_day = [*mine, BookingRow.visit_date == sess.date]
    used = await _count(session, *same_day, BookingRow.department_id == sess.department_id)
    if used >= limits.per_patient_department_day:
        refuse("LIMIT_PATIENT_DEPARTMENT_DAY", limit=limits.per_patient_department_day)
    used = await _count(session, *same_day)
    if used >= limits.per_patient_day:
        refuse("LIMIT_PATIENT_DAY", limit=limits.per_patient_day, date=sess.date.isoformat())
    first, following = month_bounds(sess.date)
    in_month = [BookingRow.visit_date >= first, BookingRow.visit_date < following]
    used = await _count(session, *mine, *in_month)
    if used >= limits.per_patient_month:
        refuse("LIMIT_PATIENT_MONTH", limit=limits.per_patient_month, month=first.isoformat()[:7])
    await session.execute(
        select(AccountRow.id).where(AccountRow.id == account_id).with_for_update()
    )
    used = await _count(session, BookingRow.account_id == account_id, *others, *in_month)
    if used >= limits.per_account_month:
        refuse("LIMIT_ACCOUNT_MONTH", limit=limits.per_account_month, month=first.isoformat()[:7])


async def _check_rebook_waits(
    session: AsyncSession,
    rules: RegionRules,
    person_id: str,
    account_id: str,
    sess: SessionRow,
    now: datetime,
) -> None:
    limits = rules.limits
    cancelled = BookingRow.status == BookingStatus.CANCELLED_BY_PATIENT.value
    session_wait = timedelta(minutes=limits.rebook_same_session_wait_minutes)
    if session_wait:
        last = await session.scalar(
            select(func.max(BookingRow.ended_at)).where(
                cancelled,
                BookingRow.session_id == sess.id,
                or_(BookingRow.person_id == person_id, BookingRow.account_id == account_id),
                BookingRow.ended_at > now - session_wait,
            )
        )
        if last is not None:
            refuse(
                "REBOOK_TOO_SOON", retry_after=(last + session_wait).isoformat(), scope="session"
            )
    department_wait = timedelta(minutes=limits.rebook_department_wait_minutes)
    if department_wait:
        last = await session.scalar(
            select(func.max(BookingRow.ended_at)).where(
                cancelled,
                BookingRow.person_id == person_id,
                BookingRow.department_id == sess.department_id,
                BookingRow.ended_at > now - department_wait,
            )
        )
        if last is not None:
            refuse(
                "REBOOK_TOO_SOON",
                retry_after=(last + department_wait).isoformat(),
                scope="department",
            )

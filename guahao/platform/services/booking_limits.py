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
account is the same everywhere, so no two transactions wait on each other in a circle. Every
count and wait is then read in one statement, after both turns.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, or_, select
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
    department: DepartmentRow | None = None,
) -> None:
    """Refuse (with the rule's code) unless this person may take a unit of ``sess`` now.

    Call inside the write transaction that records the booking, after ``lock_person``.
    ``department`` is ``sess``'s, when the caller has it already (it is read otherwise).
    """
    if department is None:
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
    # the account's turn after the person's (the order is the same everywhere), then every
    # count and wait of both in one statement that sees what committed before both turns
    await session.execute(_ACCOUNT_TURN, {"account": account_id})
    tally = await _tally(session, rules, person_id, account_id, sess, now, exclude_booking_id)
    limits = rules.limits
    for last, minutes, scope in (
        (tally.last_cancelled_in_session, limits.rebook_same_session_wait_minutes, "session"),
        (tally.last_cancelled_in_department, limits.rebook_department_wait_minutes, "department"),
    ):
        if last is not None and minutes:  # a wait of 0 minutes is no wait
            retry_after = last + timedelta(minutes=minutes)
            refuse("REBOOK_TOO_SOON", retry_after=retry_after.isoformat(), scope=scope)
    if tally.in_session:
        refuse("PATIENT_ALREADY_BOOKED_SESSION", session_id=sess.id)
    if tally.in_department_that_day >= limits.per_patient_department_day:
        refuse("LIMIT_PATIENT_DEPARTMENT_DAY", limit=limits.per_patient_department_day)
    if tally.that_day >= limits.per_patient_day:
        refuse("LIMIT_PATIENT_DAY", limit=limits.per_patient_day, date=sess.date.isoformat())
    month = month_bounds(sess.date)[0].isoformat()[:7]
    if tally.in_month >= limits.per_patient_month:
        refuse("LIMIT_PATIENT_MONTH", limit=limits.per_patient_month, month=month)
    if tally.account_in_month >= limits.per_account_month:
        refuse("LIMIT_ACCOUNT_MONTH", limit=limits.per_account_month, month=month)


class _Tally(NamedTuple):
    """What the limits and the waits count of one person and account (``_TALLY``)."""

    last_cancelled_in_session: datetime | None
    last_cancelled_in_department: datetime | None
    in_session: int
    in_department_that_day: int
    that_day: int
    in_month: int
    account_in_month: int


def _tally_statement() -> Select[datetime, datetime, int, int, int, int, int]:
    """Every count and wait ``admit`` checks, in one statement over the bookings of the
    person or the account: each column an aggregate of the rows its own condition picks.
    Seven statements before, each a round trip inside the person's turn, most of a patient
    choice's time; built once, with the values bound at each execution: building it at each
    call was two thirds of its cost (bench/profiles/flow2-*)."""
    live = BookingRow.status.in_(LIVE_WITH_PATIENT)
    others = BookingRow.id != bindparam("exclude")  # "" when none: no booking has that id
    mine = and_(live, BookingRow.person_id == bindparam("person"), others)
    that_day = BookingRow.visit_date == bindparam("day")
    in_month = and_(
        BookingRow.visit_date >= bindparam("month_first"),
        BookingRow.visit_date < bindparam("next_month_first"),
    )
    cancelled = BookingRow.status == BookingStatus.CANCELLED_BY_PATIENT.value

    def counted(*conditions: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count(case((and_(*conditions), 1)))

    def last_ended(*conditions: ColumnElement[bool]) -> ColumnElement[datetime]:
        return func.max(case((and_(cancelled, *conditions), BookingRow.ended_at)))

    session_here = BookingRow.session_id == bindparam("session")
    department_here = BookingRow.department_id == bindparam("department")
    return select(
        last_ended(session_here, BookingRow.ended_at > bindparam("session_wait_from")),
        last_ended(
            BookingRow.person_id == bindparam("person"),
            department_here,
            BookingRow.ended_at > bindparam("department_wait_from"),
        ),
        counted(mine, session_here),
        counted(mine, that_day, department_here),
        counted(mine, that_day),
        counted(mine, in_month),
        counted(live, BookingRow.account_id == bindparam("account"), others, in_month),
    ).where(
        or_(
            BookingRow.person_id == bindparam("person"),
            BookingRow.account_id == bindparam("account"),
        )
    )


_TALLY = _tally_statement()
_ACCOUNT_TURN = select(AccountRow.id).where(AccountRow.id == bindparam("account")).with_for_update()


async def _tally(
    session: AsyncSession,
    rules: RegionRules,
    person_id: str,
    account_id: str,
    sess: SessionRow,
    now: datetime,
    exclude_booking_id: str | None,
) -> _Tally:
    limits = rules.limits
    first, following = month_bounds(sess.date)
    row = (
        await session.execute(
            _TALLY,
            {
                "person": person_id,
                "account": account_id,
                "session": sess.id,
                "department": sess.department_id,
                "day": sess.date,
                "month_first": first,
                "next_month_first": following,
                "exclude": exclude_booking_id or "",
                "session_wait_from": now
                - timedelta(minutes=limits.rebook_same_session_wait_minutes),
                "department_wait_from": now
                - timedelta(minutes=limits.rebook_department_wait_minutes),
            },
        )
    ).one()
    return _Tally(*row)

"""The waitlist under concurrent cancellations, duplicated deliveries and sweeps, as a property
(hypothesis) on a real Redis and both databases.

Whatever the stock, the line and the number of cancellations: no unit is given twice, SQL's
``online_booked`` equals Redis' booked count, the units go to the first people in line, and
nobody gets more than one unit of a session even when waiting for it twice (a session wait
and a department wait of the same person).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from guahao.platform.persistence.tables import BookingRow, SessionRow, WaitlistEntryRow
from tests.fixtures.platforms import (
    SESSION_DAY,
    confirmed_booking,
    counts,
    new_account,
    new_patient,
)
from tests.integration.offer_scenarios import (
    advance,
    deliver,
    one_slot_clinic,
    online_booked,
    slots_of,
)

_codes = itertools.count(1)


async def fresh_sold_out_session(platform, units: int) -> tuple[str, str, list[tuple[str, str]]]:
    """A new hospital with one one-slot session on SESSION_DAY, sold out."""
    spec = one_slot_clinic(units=units, code=f"hc{next(_codes)}")
    hospital_id = await platform.supply.register_hospital(spec)
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [SESSION_DAY])
    )
    async with platform.ports.sessions() as session:
        sess = await session.scalar(select(SessionRow).where(SessionRow.hospital_id == hospital_id))
        assert sess is not None
    [slot] = await slots_of(platform, sess.id)
    holders = [await confirmed_booking(platform, slot) for _ in range(units)]
    return sess.id, slot, [(account, booking) for account, booking, _ in holders]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    units=st.integers(1, 3),
    waiters=st.integers(0, 5),
    greedy_at=st.integers(0, 5),
    cancelled=st.integers(0, 3),
    repeats=st.integers(1, 2),
)
async def test_concurrent_cancellations_never_give_a_unit_twice_and_follow_the_line(
    platform, units, waiters, greedy_at, cancelled, repeats
):
    cancelled = min(cancelled, units)
    session_id, slot, holders = await fresh_sold_out_session(platform, units)
    async with platform.ports.sessions() as session:
        sess = await session.get(SessionRow, session_id)
        assert sess is not None
        department_id = sess.department_id
    # The line: ``waiters`` people, one at a time; the greedy person waits twice (for the
    # session and for the department) at position ``greedy_at``.
    line: list[str] = []  # person ids in line order (a person once, at their first wait)
    accounts: dict[str, str] = {}
    for n in range(waiters + 1):
        account = await new_account(platform)
        patient = await new_patient(platform, account)
        person = await _person(platform, patient)
        if n == min(greedy_at, waiters):
            await platform.waitlist.join(
                account_id=account, patient_id=patient, scope="session", session_id=session_id
            )
            advance(platform, seconds=1)
            await platform.waitlist.join(
                account_id=account,
                patient_id=patient,
                scope="department",
                department_id=department_id,
                date_from=SESSION_DAY,
                date_to=SESSION_DAY + timedelta(days=1),
            )
        else:
            await platform.waitlist.join(
                account_id=account, patient_id=patient, scope="session", session_id=session_id
            )
        line.append(person)
        accounts[person] = account
        advance(platform, seconds=1)

    gone = holders[:cancelled]
    await asyncio.gather(*(platform.bookings.cancel(account_id=a, booking_id=b) for a, b in gone))
    deliveries = [platform.waitlist.serve_returned_unit(b) for _, b in gone for _ in range(repeats)]
    await asyncio.gather(*deliveries, platform.waitlist.serve_due())
    await deliver(platform)

    # No unit given twice: the pool balances and SQL agrees with Redis.
    snap = await counts(platform, slot)
    assert min(snap.available, snap.held, snap.booked, snap.returning) >= 0
    assert snap.booked + snap.held + snap.returning + snap.available == snap.capacity
    assert await online_booked(platform, slot) == snap.booked
    async with platform.ports.sessions() as session:
        granted = (
            await session.execute(
                select(BookingRow.person_id, func.count())
                .where(
                    BookingRow.session_id == session_id,
                    BookingRow.kind == "waitlist",
                    BookingRow.status == "confirmed",
                )
                .group_by(BookingRow.person_id)
            )
        ).all()
        fulfilled = await session.scalar(
            select(func.count())
            .select_from(WaitlistEntryRow)
            .join(BookingRow, BookingRow.id == WaitlistEntryRow.booking_id)
            .where(BookingRow.session_id == session_id, WaitlistEntryRow.status == "fulfilled")
        )
    # Nobody beyond their limit: one unit of a session per person.
    assert all(n == 1 for _, n in granted), granted
    served = {person for person, _ in granted}
    # Every freed unit went to the line while someone was waiting, first in line first.
    expected = min(cancelled, len(line))
    assert len(served) == expected == fulfilled
    assert served == set(line[:expected])
    assert snap.booked == units - cancelled + expected
    assert snap.returning == cancelled - expected


async def _person(platform, patient_id: str) -> str:
    from guahao.platform.persistence.tables import PatientRow

    async with platform.ports.sessions() as session:
        patient = await session.get(PatientRow, patient_id)
        assert patient is not None
        return patient.person_id

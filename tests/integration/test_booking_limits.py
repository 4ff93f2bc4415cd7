"""The region's booking limits, checked when a patient is put on a unit: one person is limited
across every hospital and every account, the rules are data the authority changes, and two
requests racing for the last allowance cannot both pass (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import (
    CancelPolicy,
    FilingMode,
    HospitalGrade,
    HospitalPolicies,
    PaymentMode,
    Period,
    QuotaPolicy,
    ReleasePolicy,
    SlotCategory,
    Title,
)
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import (
    BlacklistEntryRow,
    BookingRow,
    PatientRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.personal_data import patient_name
from guahao.platform.schedules import DepartmentSpec, DoctorSpec, HospitalSpec, WeeklySession
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.fixtures.platforms import (
    SESSION_DAY,
    add_confirmed,
    assert_refused,
    hold,
    manual_clock,
    new_account,
    new_patient,
)

ADMIN = StaffActor(id="s1", username="admin", role=StaffRole.AUTHORITY_ADMIN)


def hospital(code: str, filing: FilingMode = FilingMode.AUTO_AT_BOOKING) -> HospitalSpec:
    """Two cardiologists, a dermatologist and an emergency doctor, each with a morning and an
    afternoon session on ``SESSION_DAY``; paid at the hospital, so a chosen patient confirms."""
    doctors = (("d1", "xnk"), ("d2", "xnk"), ("d3", "pfk"), ("d4", "jzk"))
    return HospitalSpec(
        code=code,
        name=f"医院{code}",
        grade=HospitalGrade.GRADE_3A,
        district="朝阳区",
        policies=HospitalPolicies(
            payment_mode=PaymentMode.PAY_AT_HOSPITAL,
            filing_mode=filing,
            release=ReleasePolicy(days_ahead=7, at="08:00"),
            quota=QuotaPolicy(online_share=1.0),
            cancel=CancelPolicy(kind="hours_before", hours=1),
            cancel_return_delay_seconds=(60, 120),
        ),
        departments=(
            DepartmentSpec(code="xnk", name="心内科", catalog_code="03.04"),
            DepartmentSpec(code="pfk", name="皮肤科", catalog_code="13"),
            DepartmentSpec(code="jzk", name="急诊科", catalog_code="20"),
        ),
        doctors=tuple(
            DoctorSpec(code=d, name=f"医生{d}", title=Title.CHIEF, department_code=dept)
            for d, dept in doctors
        ),
        roster=tuple(
            WeeklySession(
                doctor_code=d,
                weekday=SESSION_DAY.weekday(),
                period=period,
                category=SlotCategory.GENERAL,
                fee_cents=500,
                units_per_segment=3,
            )
            for d, _ in doctors
            for period in (Period.MORNING, Period.AFTERNOON)
        ),
    )


async def publish(platform: Platform, spec: HospitalSpec) -> dict[tuple[str, str], str]:
    """Publish ``spec`` for ``SESSION_DAY``; returns the first slot of each (doctor, period)."""
    hospital_id = await platform.supply.register_hospital(spec)
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [SESSION_DAY])
    )
    from guahao.platform.persistence.tables import DoctorRow

    async with platform.ports.sessions() as session:
        rows = (
            await session.execute(
                select(DoctorRow.code, SessionRow.period, SlotRow.id)
                .join(SessionRow, SessionRow.id == SlotRow.session_id)
                .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                .where(SessionRow.hospital_id == hospital_id, SlotRow.seq == 0)
            )
        ).all()
    return {(code, period): slot for code, period, slot in rows}


async def book(platform: Platform, account: str, patient: str, slot: str) -> str:
    """Hold, choose the patient, submit: a confirmed booking (paid at the hospital)."""
    booking = await hold(platform, account, slot)
    await platform.bookings.choose_patient(
        account_id=account, booking_id=booking.id, patient_id=patient
    )
    await platform.bookings.submit(account_id=account, booking_id=booking.id, channel="self_pay")
    return booking.id


async def refused_choice(
    platform: Platform, code: str, account: str, patient: str, slot: str
) -> GuahaoError:
    """Hold ``slot`` and expect choosing ``patient`` to be refused with ``code``, changing
    nothing; then give the hold back so the account may go on."""
    booking = await hold(platform, account, slot)
    refused: GuahaoError = await assert_refused(
        platform,
        code,
        platform.bookings.choose_patient(
            account_id=account, booking_id=booking.id, patient_id=patient
        ),
    )
    await platform.bookings.leave(account_id=account, booking_id=booking.id)
    return refused


async def family_member(platform: Platform, other_account: str, of_patient: str) -> str:
    """The same person as ``of_patient`` added on ``other_account`` (a parent's second phone)."""
    from tests.fixtures.platforms import resident_id  # noqa: F401  (documents come from rows)

    async with platform.ports.sessions() as session:
        row = await session.get(PatientRow, of_patient)
        assert row is not None
        number = platform.ports.vault.open("document", row.document_enc)
    view = await add_confirmed(
        platform,
        other_account,
        name=patient_name(platform.ports.vault, row),
        document_type=row.document_type,
        document_number=number,
        relation="parent",
    )
    return view.id


async def test_one_booking_per_patient_per_department_per_day(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await book(platform, account, patient, slots["d1", "morning"])
    await refused_choice(
        platform, "LIMIT_PATIENT_DEPARTMENT_DAY", account, patient, slots["d2", "afternoon"]
    )


async def test_another_department_the_same_day_is_allowed(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await book(platform, account, patient, slots["d1", "morning"])
    await book(platform, account, patient, slots["d3", "afternoon"])


async def test_the_daily_limit_counts_every_hospital_of_the_region(platform: Platform) -> None:
    first, second = await publish(platform, hospital("h1")), await publish(platform, hospital("h2"))
    await platform.rules.change_region(
        {"limits": {"per_patient_day": 2}}, staff=ADMIN, reason="two a day"
    )
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await book(platform, account, patient, first["d1", "morning"])
    await book(platform, account, patient, second["d3", "morning"])
    await refused_choice(platform, "LIMIT_PATIENT_DAY", account, patient, second["d1", "afternoon"])


async def test_limits_follow_the_person_not_the_account(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    mother, father = await new_account(platform), await new_account(platform)
    child = await new_patient(platform, mother, relation="child")
    same_child = await family_member(platform, father, child)
    await book(platform, mother, child, slots["d1", "morning"])
    await refused_choice(
        platform, "LIMIT_PATIENT_DEPARTMENT_DAY", father, same_child, slots["d2", "morning"]
    )


async def test_a_month_holds_at_most_the_monthly_limit_per_patient(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    await platform.rules.change_region(
        {"limits": {"per_patient_month": 2, "per_patient_day": 5}}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await book(platform, account, patient, slots["d1", "morning"])
    await book(platform, account, patient, slots["d3", "morning"])
    await refused_choice(platform, "LIMIT_PATIENT_MONTH", account, patient, slots["d4", "morning"])


async def test_an_account_holds_at_most_the_monthly_limit_for_all_its_patients(
    platform: Platform,
) -> None:
    slots = await publish(platform, hospital("h1"))
    await platform.rules.change_region(
        {"limits": {"per_account_month": 2}}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    patients = [await new_patient(platform, account) for _ in range(3)]
    await book(platform, account, patients[0], slots["d1", "morning"])
    await book(platform, account, patients[1], slots["d1", "morning"])
    await refused_choice(
        platform, "LIMIT_ACCOUNT_MONTH", account, patients[2], slots["d3", "morning"]
    )


async def test_after_a_cancellation_the_same_session_waits_for_person_and_account(
    platform: Platform,
) -> None:
    slots = await publish(platform, hospital("h1"))
    clock = manual_clock(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    sibling = await new_patient(platform, account)
    booking = await book(platform, account, patient, slots["d1", "morning"])
    await platform.bookings.cancel(account_id=account, booking_id=booking)
    # the account may not move the unit to someone else by cancel-then-rebook
    refused = await refused_choice(
        platform, "REBOOK_TOO_SOON", account, sibling, slots["d1", "morning"]
    )
    assert refused.detail["scope"] == "session"
    clock.advance(minutes=61)
    await book(platform, account, sibling, slots["d1", "morning"])


async def test_after_a_cancellation_the_department_waits_a_little(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    clock = manual_clock(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    booking = await book(platform, account, patient, slots["d1", "morning"])
    await platform.bookings.cancel(account_id=account, booking_id=booking)
    refused = await refused_choice(
        platform, "REBOOK_TOO_SOON", account, patient, slots["d2", "morning"]
    )
    assert refused.detail["scope"] == "department"
    clock.advance(minutes=11)
    await book(platform, account, patient, slots["d2", "morning"])


async def ban(platform: Platform, patient: str, days: int = 30) -> None:
    now = platform.ports.clock.now()
    async with platform.ports.sessions() as session, session.begin():
        row = await session.get(PatientRow, patient)
        assert row is not None
        session.add(
            BlacklistEntryRow(
                id=new_id(),
                person_id=row.person_id,
                policy="no_show",
                reason="3 no-shows in 90 days",
                source="automatic",
                starts_at=now,
                ends_at=now + timedelta(days=days),
                created_by="system",
                created_at=now,
            )
        )


async def test_a_blacklisted_patient_is_refused_everywhere_with_until_and_how_to_appeal(
    platform: Platform,
) -> None:
    slots = await publish(platform, hospital("h1"))
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await ban(platform, patient)
    refused = await refused_choice(
        platform, "PATIENT_BLACKLISTED", account, patient, slots["d1", "morning"]
    )
    assert refused.detail["until"]
    assert refused.detail["appeal"]
    assert refused.message_zh
    assert refused.message_en


async def test_the_blacklist_does_not_close_the_emergency_department(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await ban(platform, patient)
    await book(platform, account, patient, slots["d4", "morning"])


async def test_a_ban_ends_by_itself(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1"))
    clock = manual_clock(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await ban(platform, patient, days=1)
    clock.advance(days=1, seconds=1)
    await book(platform, account, patient, slots["d1", "afternoon"])


async def test_a_hospital_that_files_first_refuses_unfiled_patients(platform: Platform) -> None:
    slots = await publish(platform, hospital("h1", FilingMode.REQUIRED_BEFORE_BOOKING))
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await refused_choice(platform, "PATIENT_NOT_FILED", account, patient, slots["d1", "morning"])


async def test_two_holds_racing_for_the_last_allowance_at_two_hospitals_cannot_both_pass(
    platform: Platform,
) -> None:
    first, second = await publish(platform, hospital("h1")), await publish(platform, hospital("h2"))
    await platform.rules.change_region(
        {"limits": {"per_patient_day": 1}}, staff=ADMIN, reason="one a day"
    )
    account, other = await new_account(platform), await new_account(platform)
    patient = await new_patient(platform, account)
    same_person = await family_member(platform, other, patient)
    a = await hold(platform, account, first["d1", "morning"])
    b = await hold(platform, other, second["d3", "afternoon"])
    results = await asyncio.gather(
        platform.bookings.choose_patient(account_id=account, booking_id=a.id, patient_id=patient),
        platform.bookings.choose_patient(account_id=other, booking_id=b.id, patient_id=same_person),
        return_exceptions=True,
    )
    passed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, GuahaoError)]
    assert len(passed) == 1, results
    assert [r.code for r in refused] == ["LIMIT_PATIENT_DAY"]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    allowance=st.integers(min_value=1, max_value=3), racers=st.integers(min_value=2, max_value=6)
)
async def test_concurrent_choices_never_exceed_the_daily_allowance(
    sqlite_platform: Platform, allowance: int, racers: int
) -> None:
    """Property: however many holds of one person race, at most ``allowance`` get a patient."""
    platform = sqlite_platform
    spec = hospital(f"p{new_id()[:6]}")
    slots = await publish(platform, spec)
    await platform.rules.change_region(
        {"limits": {"per_patient_day": allowance, "per_patient_department_day": 10}},
        staff=ADMIN,
        reason="property",
    )
    accounts = [await new_account(platform) for _ in range(racers)]
    first = await new_patient(platform, accounts[0])
    people = [first] + [await family_member(platform, a, first) for a in accounts[1:]]
    order = [s for key, s in sorted(slots.items())]
    holds = [await hold(platform, a, order[i % len(order)]) for i, a in enumerate(accounts)]
    results = await asyncio.gather(
        *(
            platform.bookings.choose_patient(account_id=a, booking_id=h.id, patient_id=p)
            for a, h, p in zip(accounts, holds, people, strict=True)
        ),
        return_exceptions=True,
    )
    passed = sum(not isinstance(r, BaseException) for r in results)
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, GuahaoError), r
            assert r.code in {
                "LIMIT_PATIENT_DAY",
                "PATIENT_ALREADY_BOOKED_SESSION",
            }, r
    assert passed <= allowance
    async with platform.ports.sessions() as session:
        person = (await session.get(PatientRow, first)).person_id  # type: ignore[union-attr]
        live = await session.scalar(
            select(func.count())
            .select_from(BookingRow)
            .where(BookingRow.person_id == person, BookingRow.status == "patient_chosen")
        )
    assert live == passed
    # let the next example start from a clean slate for this person's allowance
    for a, h in zip(accounts, holds, strict=True):
        await platform.bookings.leave(account_id=a, booking_id=h.id)


@pytest.mark.parametrize("field", ["per_patient_day", "per_patient_department_day"])
async def test_the_limits_are_data_the_authority_changes(platform: Platform, field: str) -> None:
    before = await platform.rules.version()
    version = await platform.rules.change_region(
        {f"limits.{field}": 4}, staff=ADMIN, reason="winter season"
    )
    assert version == before + 1
    assert getattr((await platform.rules.region()).limits, field) == 4

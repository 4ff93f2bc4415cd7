"""建档 in each filing mode, through time: requested at booking (A), on site (B), or required
before an online booking; a filing belongs to the person, whichever account books."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import FilingMode
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import (
    HospitalRow,
    OutboxRow,
    PatientFilingRow,
    PatientRow,
    PersonRow,
)
from guahao.platform.schedules import HospitalSpec
from tests.fixtures.platforms import (
    add_confirmed,
    assert_refused,
    booking_row,
    clinic,
    confirmed_booking,
    hold,
    new_account,
    new_patient,
    publish_clinic,
    resident_id,
)

SQLITE_ONLY = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
"""For checks of roles and input that no database behaviour can change: one backend is
enough (the suite's time goes to setting platforms up)."""


def clinic_filing(mode: FilingMode, code: str = "h1") -> HospitalSpec:
    spec = clinic(code=code)
    return msgspec.structs.replace(
        spec, policies=msgspec.structs.replace(spec.policies, filing_mode=mode)
    )


async def hospital_id_of(platform: Platform, code: str) -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(select(HospitalRow.id).where(HospitalRow.code == code))
    assert found is not None
    return found


async def filings(platform: Platform) -> list[tuple[str, str, str]]:
    """Every filing as (person, hospital, status)."""
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(PatientFilingRow))).all()
    return sorted((r.person_id, r.hospital_id, r.status) for r in rows)


async def requested_events(platform: Platform) -> list[dict[str, object]]:
    async with platform.ports.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxRow.payload)
                .where(OutboxRow.topic == "patient.filing_requested")
                .order_by(OutboxRow.id)
            )
        ).all()
    return list(rows)


async def person_of(platform: Platform, patient_id: str) -> str:
    async with platform.ports.sessions() as session:
        patient = await session.get(PatientRow, patient_id)
    assert patient is not None
    return patient.person_id


async def confirmed_event(platform: Platform, booking_id: str) -> OutboxEvent:
    async with platform.ports.sessions() as session:
        row = await session.scalar(
            select(OutboxRow).where(
                OutboxRow.topic == "booking.confirmed", OutboxRow.aggregate_id == booking_id
            )
        )
    assert row is not None
    return OutboxEvent(row.id, row.topic, row.aggregate_id, dict(row.payload), row.created_at)


async def test_mode_a_requests_one_filing_per_person_and_hospital_after_confirmation(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.AUTO_AT_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    _, first, _ = await confirmed_booking(platform, slots[0])
    assert await filings(platform) == []  # asked for through the outbox, not inline

    await platform.dispatcher.dispatch_pending()

    person = (await booking_row(platform, first)).person_id
    assert await filings(platform) == [(person, hospital_id, "pending")]
    events = await requested_events(platform)
    assert len(events) == 1
    assert events[0]["person_id"] == person
    assert events[0]["hospital_id"] == hospital_id

    # the same confirmation delivered again (a retried subscriber) asks nothing more
    await platform.filings.on_booking_confirmed(await confirmed_event(platform, first))
    await platform.dispatcher.dispatch_pending()
    assert await filings(platform) == [(person, hospital_id, "pending")]
    assert len(await requested_events(platform)) == 1

    # another person's booking gets its own request
    _, second, _ = await confirmed_booking(platform, slots[1])
    await platform.dispatcher.dispatch_pending()
    other = (await booking_row(platform, second)).person_id
    assert await filings(platform) == sorted(
        [(person, hospital_id, "pending"), (other, hospital_id, "pending")]
    )
    assert len(await requested_events(platform)) == 2


@SQLITE_ONLY
async def test_mode_a_answered_by_the_his_shows_filed_to_the_citizen(platform: Platform) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.AUTO_AT_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    account_id, booking_id, _ = await confirmed_booking(platform, slots[0])
    await platform.dispatcher.dispatch_pending()
    patient_id = (await booking_row(platform, booking_id)).patient_id
    [pending] = await platform.filings.for_patient(account_id=account_id, patient_id=patient_id)
    await assert_refused(
        platform,
        "VALIDATION_FAILED",
        platform.filings.record_result(
            hospital_id=hospital_id, filing_id=pending.id, status="filed"
        ),
    )

    await platform.filings.record_result(
        hospital_id=hospital_id, filing_id=pending.id, status="filed", his_patient_id="MRN-1"
    )

    [filed] = await platform.filings.for_patient(account_id=account_id, patient_id=patient_id)
    assert (filed.id, filed.status, filed.his_patient_id) == (pending.id, "filed", "MRN-1")
    # a later booking of a filed person asks for nothing again
    await platform.filings.on_booking_confirmed(await confirmed_event(platform, booking_id))
    assert len(await requested_events(platform)) == 1


@SQLITE_ONLY
async def test_mode_on_site_requests_nothing_online(platform: Platform) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.ON_SITE))
    await confirmed_booking(platform, slots[0])
    await platform.dispatcher.dispatch_pending()
    assert await filings(platform) == []
    assert await requested_events(platform) == []


async def test_required_before_booking_refuses_the_patient_until_the_his_reports_them_filed(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)
    booking = await hold(platform, account_id, slots[0])

    async def choose() -> object:
        return await platform.bookings.choose_patient(
            account_id=account_id, booking_id=booking.id, patient_id=patient_id
        )

    error = await assert_refused(platform, "PATIENT_NOT_FILED", choose())
    assert error.detail["hospital_id"] == hospital_id

    requested = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    assert requested.status == "pending"
    again = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    assert again.id == requested.id  # asking twice is one request
    assert len(await requested_events(platform)) == 1
    await assert_refused(platform, "PATIENT_NOT_FILED", choose())  # pending is not filed

    await platform.filings.record_result(
        hospital_id=hospital_id, filing_id=requested.id, status="failed", detail="证件不清"
    )
    await assert_refused(platform, "PATIENT_NOT_FILED", choose())
    retried = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    assert (retried.id, retried.status) == (requested.id, "pending")
    assert len(await requested_events(platform)) == 2  # a failed filing may be asked again

    await platform.filings.record_result(
        hospital_id=hospital_id, filing_id=requested.id, status="filed", his_patient_id="MRN-7"
    )
    chosen = await choose()
    assert getattr(chosen, "patient_id", None) == patient_id


async def test_a_filing_by_one_accounts_patient_serves_the_same_person_on_another_account(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    number = resident_id(777)
    mother, father = await new_account(platform), await new_account(platform)
    patients = []
    for account in (mother, father):
        view = await add_confirmed(
            platform,
            account,
            name="王小宝",
            document_type="resident_id",
            document_number=number,
            relation="other",
        )
        patients.append(view.id)
    filing = await platform.filings.request(
        account_id=mother, patient_id=patients[0], hospital_id=hospital_id
    )
    await platform.filings.record_result(
        hospital_id=hospital_id, filing_id=filing.id, status="filed", his_patient_id="MRN-9"
    )

    seen = await platform.filings.for_patient(account_id=father, patient_id=patients[1])
    assert [(f.id, f.status) for f in seen] == [(filing.id, "filed")]
    booking = await hold(platform, father, slots[0])
    chosen = await platform.bookings.choose_patient(
        account_id=father, booking_id=booking.id, patient_id=patients[1]
    )
    assert chosen.patient_id == patients[1]
    # a request from the other account is the same filing, not a second one
    same = await platform.filings.request(
        account_id=father, patient_id=patients[1], hospital_id=hospital_id
    )
    assert same.id == filing.id
    # but an account sees and asks for its own patients only
    await assert_refused(
        platform,
        "PATIENT_NOT_OWNED",
        platform.filings.for_patient(account_id=mother, patient_id=patients[1]),
    )
    await assert_refused(
        platform,
        "PATIENT_NOT_OWNED",
        platform.filings.request(
            account_id=mother, patient_id=patients[1], hospital_id=hospital_id
        ),
    )


@SQLITE_ONLY
async def test_a_hospital_cannot_answer_another_hospitals_filing_request(
    platform: Platform,
) -> None:
    await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    await platform.supply.register_hospital(clinic_filing(FilingMode.ON_SITE, code="h2"))
    h1, h2 = await hospital_id_of(platform, "h1"), await hospital_id_of(platform, "h2")
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)
    filing = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=h1
    )
    await assert_refused(
        platform,
        "FILING_NOT_FOUND",
        platform.filings.record_result(
            hospital_id=h2, filing_id=filing.id, status="filed", his_patient_id="X"
        ),
    )
    await assert_refused(
        platform,
        "FILING_NOT_FOUND",
        platform.filings.record_result(
            hospital_id=h1, filing_id="nope", status="filed", his_patient_id="X"
        ),
    )
    await assert_refused(
        platform,
        "HOSPITAL_NOT_FOUND",
        platform.filings.request(account_id=account_id, patient_id=patient_id, hospital_id="no"),
    )
    [still] = await platform.filings.for_patient(account_id=account_id, patient_id=patient_id)
    assert still.status == "pending"


async def test_a_his_report_by_document_files_a_person_the_platform_did_not_know_yet(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    number = resident_id(31337)
    async with platform.ports.sessions() as session:
        persons_before = await session.scalar(select(func.count()).select_from(PersonRow))

    reported = await platform.filings.record_filed_by_document(
        hospital_id=hospital_id,
        document_type="resident_id",
        document_number=number,
        his_patient_id="MRN-42",
    )

    assert (reported.status, reported.his_patient_id) == ("filed", "MRN-42")
    async with platform.ports.sessions() as session:
        persons_after = await session.scalar(select(func.count()).select_from(PersonRow))
    assert persons_after == (persons_before or 0) + 1
    # reported again (ADT A31 after A28): the same person, the same filing
    again = await platform.filings.record_filed_by_document(
        hospital_id=hospital_id,
        document_type="resident_id",
        document_number=number,
        his_patient_id="MRN-42",
    )
    assert again.id == reported.id
    # the citizen adds that person later: already filed, and admitted at once
    account_id = await new_account(platform)
    view = await platform.accounts.add_patient(
        account_id=account_id,
        name="赵六",
        document_type="resident_id",
        document_number=number,
        relation="self",
    )
    seen = await platform.filings.for_patient(account_id=account_id, patient_id=view.id)
    assert [(f.id, f.status, f.his_patient_id) for f in seen] == [(reported.id, "filed", "MRN-42")]
    booking = await hold(platform, account_id, slots[0])
    chosen = await platform.bookings.choose_patient(
        account_id=account_id, booking_id=booking.id, patient_id=view.id
    )
    assert chosen.patient_id == view.id


@SQLITE_ONLY
async def test_a_his_report_by_document_refuses_bad_input_and_writes_nothing(
    platform: Platform,
) -> None:
    await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    number = resident_id(4711)
    wrong_check = number[:-1] + ("0" if number[-1] != "0" else "1")
    cases = [
        ("HOSPITAL_NOT_FOUND", "no_such_hospital", number, "M1"),
        ("ID_NUMBER_CHECKSUM_MISMATCH", hospital_id, wrong_check, "M1"),
        ("VALIDATION_FAILED", hospital_id, number, ""),
    ]
    for code, hospital, document, his in cases:
        async with platform.ports.sessions() as session:
            before = await session.scalar(select(func.count()).select_from(PersonRow))
        with pytest.raises(GuahaoError) as refused:
            await platform.filings.record_filed_by_document(
                hospital_id=hospital,
                document_type="resident_id",
                document_number=document,
                his_patient_id=his,
            )
        assert refused.value.code == code
        async with platform.ports.sessions() as session:
            after = await session.scalar(select(func.count()).select_from(PersonRow))
        assert after == before, code
    assert await filings(platform) == []


async def test_two_accounts_asking_at_once_for_the_same_person_get_one_filing(
    platform: Platform,
) -> None:
    await publish_clinic(platform, clinic_filing(FilingMode.REQUIRED_BEFORE_BOOKING))
    hospital_id = await hospital_id_of(platform, "h1")
    number = resident_id(2024)
    pairs = []
    for _ in range(4):
        account = await new_account(platform)
        view = await add_confirmed(
            platform,
            account,
            name="孙七",
            document_type="resident_id",
            document_number=number,
            relation="other",
        )
        pairs.append((account, view.id))

    answers = await asyncio.gather(
        *(
            platform.filings.request(account_id=a, patient_id=p, hospital_id=hospital_id)
            for a, p in pairs
        )
    )

    assert len({f.id for f in answers}) == 1
    assert len(await filings(platform)) == 1
    assert len(await requested_events(platform)) == 1

"""实名制: the patients an account manages, as the region's rules allow them.

Every refusal changes nothing (``assert_refused`` compares the record before and after)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.identity_documents import check_character
from guahao.platform.persistence.tables import PatientRow, PersonRow
from guahao.platform.services.staff import StaffActor, StaffRole
from tests.fixtures.platforms import (
    assert_refused,
    confirmed_booking,
    manual_clock,
    new_account,
    new_patient,
    publish_clinic,
    resident_id,
)

ADMIN = StaffActor(id="s1", username="admin", role=StaffRole.AUTHORITY_ADMIN)
CHILD_ID = "110105202001010015"  # born 2020-01-01: six at the scenarios' time


def add(platform: Platform, account: str, number: str, **fields: str) -> object:
    return platform.accounts.add_patient(
        account_id=account,
        name=fields.pop("name", "张三"),
        document_type=fields.pop("document_type", "resident_id"),
        document_number=number,
        relation=fields.pop("relation", "self"),
        **fields,
    )


async def test_a_patient_is_stored_sealed_masked_and_with_what_the_number_tells(
    platform: Platform,
) -> None:
    account = await new_account(platform)
    view = await add(platform, account, "11010519491231002x")
    assert view.document_masked == "110105********002X"  # type: ignore[attr-defined]
    assert view.sex == "female"  # type: ignore[attr-defined]  # 17th digit 2: even
    assert view.verification_level == "checksum_valid"  # type: ignore[attr-defined]
    async with platform.ports.sessions() as session:
        row = await session.scalar(select(PatientRow).where(PatientRow.account_id == account))
        assert row is not None
        assert b"1949" not in row.document_enc
        person = await session.get(PersonRow, row.person_id)
        assert person is not None
        assert str(person.birth_date) == "1949-12-31"


async def test_full_width_digits_and_a_lower_case_x_are_the_same_document(
    platform: Platform,
) -> None:
    account = await new_account(platform)
    await add(platform, account, "１１０１０５１９４９１２３１００２ｘ")
    await assert_refused(
        platform,
        "PATIENT_ALREADY_ADDED",
        add(platform, account, "11010519491231002X", relation="other"),
    )


async def test_a_document_is_the_account_holder_of_one_account_only(platform: Platform) -> None:
    first, second = await new_account(platform), await new_account(platform)
    await add(platform, first, "11010519491231002X")
    await assert_refused(
        platform, "PERSON_IS_SELF_ELSEWHERE", add(platform, second, "11010519491231002X")
    )
    # as a family member on the other account it is fine, and it is the same person
    await add(platform, second, "11010519491231002X", relation="parent")
    async with platform.ports.sessions() as session:
        persons = await session.scalar(select(func.count()).select_from(PersonRow))
    assert persons == 1


async def test_a_child_on_the_household_register_is_booked_by_a_guardian(
    platform: Platform,
) -> None:
    account = await new_account(platform)
    await assert_refused(
        platform,
        "PATIENT_TOO_YOUNG_FOR_SELF",
        add(platform, account, CHILD_ID, document_type="household_register"),
    )
    view = await add(
        platform, account, CHILD_ID, name="张小明", document_type="户口簿", relation="child"
    )
    assert view.booked_by_guardian  # type: ignore[attr-defined]


async def test_a_child_cannot_be_an_account_holder_even_with_an_id_card(platform: Platform) -> None:
    account = await new_account(platform)
    await assert_refused(platform, "PATIENT_TOO_YOUNG_FOR_SELF", add(platform, account, CHILD_ID))


async def test_the_household_register_and_the_id_card_of_a_child_are_one_person(
    platform: Platform,
) -> None:
    mother, father = await new_account(platform), await new_account(platform)
    await add(platform, mother, CHILD_ID, document_type="household_register", relation="child")
    await add(platform, father, CHILD_ID, relation="child")
    async with platform.ports.sessions() as session:
        persons = await session.scalar(select(func.count()).select_from(PersonRow))
    assert persons == 1


async def test_minority_and_foreign_names_are_accepted_in_their_own_script(
    platform: Platform,
) -> None:
    account = await new_account(platform)
    view = await add(platform, account, resident_id(11), name="买买提・艾力")
    assert view.name == "买买提·艾力"  # type: ignore[attr-defined]
    foreign = await add(
        platform,
        account,
        "E12345678",
        name="Smith, John",
        document_type="passport",
        relation="spouse",
    )
    assert foreign.name == "SMITH, JOHN"  # type: ignore[attr-defined]
    assert foreign.verification_level == "format_checked"  # type: ignore[attr-defined]


async def test_bad_input_is_refused_with_its_own_code_and_nothing_is_stored(
    platform: Platform,
) -> None:
    account = await new_account(platform)
    body = resident_id(12)[:17]
    wrong_check = body + ("0" if check_character(body) != "0" else "1")
    for code, number, fields in (
        ("ID_NUMBER_CHECKSUM_MISMATCH", wrong_check, {}),
        ("ID_BIRTH_DATE_INVALID", "110105194902300020", {}),
        ("DOCUMENT_TYPE_UNKNOWN", resident_id(13), {"document_type": "library_card"}),
        ("PATIENT_NAME_INVALID", resident_id(14), {"name": "张3"}),
        ("VALIDATION_FAILED", resident_id(15), {"relation": "cousin"}),
        ("VALIDATION_FAILED", resident_id(16), {"phone": "12345"}),
    ):
        await assert_refused(platform, code, add(platform, account, number, **fields))
    assert await platform.accounts.patients(account) == []


async def test_an_account_manages_at_most_the_region_limit_of_patients(platform: Platform) -> None:
    await platform.rules.change_region(
        {"identity.max_patients_per_account": 2}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    await new_patient(platform, account)
    await new_patient(platform, account)
    await assert_refused(
        platform, "PATIENT_LIMIT_REACHED", add(platform, account, resident_id(21), relation="other")
    )


async def test_two_additions_racing_for_the_last_place_cannot_both_pass(platform: Platform) -> None:
    await platform.rules.change_region(
        {"identity.max_patients_per_account": 1}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    results = await asyncio.gather(
        add(platform, account, resident_id(31), relation="other"),  # type: ignore[arg-type]
        add(platform, account, resident_id(32), relation="other"),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    codes = sorted(r.code if isinstance(r, GuahaoError) else "ok" for r in results)
    assert codes == ["PATIENT_LIMIT_REACHED", "ok"], results


async def test_adding_and_removing_people_again_and_again_is_limited(platform: Platform) -> None:
    await platform.rules.change_region(
        {"identity.patient_additions_per_30_days": 2}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    for serial in (41, 42):
        view = await add(platform, account, resident_id(serial), relation="other")
        await platform.accounts.remove_patient(account_id=account, patient_id=view.id)  # type: ignore[attr-defined]
    await assert_refused(
        platform,
        "PATIENT_ADDITIONS_TOO_FREQUENT",
        add(platform, account, resident_id(43), relation="other"),
    )
    manual_clock(platform).advance(days=31)
    await add(platform, account, resident_id(43), relation="other")


async def test_a_patient_with_a_live_booking_cannot_be_removed_or_changed(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    account, _booking, _ = await confirmed_booking(platform, slots[0])
    [patient] = await platform.accounts.patients(account)
    await assert_refused(
        platform,
        "PATIENT_HAS_ACTIVE_BOOKINGS",
        platform.accounts.remove_patient(account_id=account, patient_id=patient.id),
    )
    await assert_refused(
        platform,
        "PATIENT_HAS_ACTIVE_BOOKINGS",
        platform.accounts.change_identity(
            account_id=account,
            patient_id=patient.id,
            name="李四",
            document_type="resident_id",
            document_number=resident_id(51),
        ),
    )


async def test_a_patients_identity_changes_only_a_few_times_a_year(platform: Platform) -> None:
    await platform.rules.change_region(
        {"identity.identity_changes_per_year": 1}, staff=ADMIN, reason="test"
    )
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    changed = await platform.accounts.change_identity(
        account_id=account,
        patient_id=patient,
        name="李四",
        document_type="resident_id",
        document_number=resident_id(61),
    )
    assert changed.name == "李四"
    await assert_refused(
        platform,
        "IDENTITY_CHANGE_LIMIT",
        platform.accounts.change_identity(
            account_id=account,
            patient_id=patient,
            name="王五",
            document_type="resident_id",
            document_number=resident_id(62),
        ),
    )
    manual_clock(platform).advance(days=366)
    await platform.accounts.change_identity(
        account_id=account,
        patient_id=patient,
        name="王五",
        document_type="resident_id",
        document_number=resident_id(62),
    )


async def test_a_removed_patient_can_be_added_again(platform: Platform) -> None:
    account = await new_account(platform)
    view = await add(platform, account, resident_id(71))
    await platform.accounts.remove_patient(account_id=account, patient_id=view.id)  # type: ignore[attr-defined]
    assert await platform.accounts.patients(account) == []
    again = await add(platform, account, resident_id(71))
    assert again.id == view.id  # type: ignore[attr-defined]

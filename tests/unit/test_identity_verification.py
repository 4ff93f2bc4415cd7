"""Identity verification: the levels, their order, and what the embedded verifier may claim."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest

from guahao.platform.errors import InvalidInputError
from guahao.platform.identity_documents import (
    DocumentType,
    IdentityDocument,
    check_character,
    validate_document,
)
from guahao.platform.identity_verification import (
    FormatChecksumVerifier,
    IdentityVerifier,
    Verification,
    VerificationLevel,
)
from guahao.platform.person_names import NameScript, PersonName, validate_person_name

CHECKED_AT = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)
ZHANG = validate_person_name("张三")
SMITH = validate_person_name("John Smith")


async def verify(document: IdentityDocument, name: PersonName = ZHANG) -> Verification:
    verifier: IdentityVerifier = FormatChecksumVerifier()
    return await verifier.verify(document, name, checked_at=CHECKED_AT)


def test_levels_are_ordered_by_what_they_establish_not_by_their_spelling() -> None:
    levels = list(VerificationLevel)
    assert levels == [
        VerificationLevel.FORMAT_CHECKED,
        VerificationLevel.CHECKSUM_VALID,
        VerificationLevel.NAME_MATCHED_GOVERNMENT,
        VerificationLevel.FACE_VERIFIED,
    ]
    assert sorted(reversed(levels)) == levels
    assert VerificationLevel.CHECKSUM_VALID < VerificationLevel.FACE_VERIFIED
    assert VerificationLevel.FORMAT_CHECKED < VerificationLevel.CHECKSUM_VALID
    assert VerificationLevel.FACE_VERIFIED >= VerificationLevel.NAME_MATCHED_GOVERNMENT
    assert max(levels) is VerificationLevel.FACE_VERIFIED


def test_a_level_reaches_itself_and_every_level_below() -> None:
    for i, level in enumerate(VerificationLevel):
        for j, other in enumerate(VerificationLevel):
            assert level.reaches(other) is (i >= j)


def test_levels_refuse_to_compare_with_plain_strings() -> None:
    with pytest.raises(TypeError):
        _ = VerificationLevel.FACE_VERIFIED > "checksum_valid"


def test_level_values_are_the_stored_ones() -> None:
    assert [level.value for level in VerificationLevel] == [
        "format_checked",
        "checksum_valid",
        "name_matched_government",
        "face_verified",
    ]


@pytest.mark.parametrize(
    ("document_type", "body"),
    [
        (DocumentType.RESIDENT_ID, "11010519491231002"),
        (DocumentType.HOUSEHOLD_REGISTER, "11010520200315004"),
        (DocumentType.HMT_RESIDENCE_PERMIT, "81000019900101123"),
        (DocumentType.FOREIGN_PERMANENT_RESIDENT, "93268219850101001"),
    ],
)
async def test_embedded_verifier_reaches_checksum_valid_for_numbers_with_a_check_character(
    document_type: DocumentType, body: str
) -> None:
    number = body + check_character(body)
    name = ZHANG if document_type is not DocumentType.FOREIGN_PERMANENT_RESIDENT else SMITH
    result = await verify(validate_document(document_type, number, today=TODAY), name)
    assert result.level is VerificationLevel.CHECKSUM_VALID
    assert "check_character" in result.checks
    assert "birth_date" in result.checks


@pytest.mark.parametrize(
    ("document_type", "number"),
    [
        (DocumentType.PASSPORT, "E12345678"),
        (DocumentType.HK_MACAO_PERMIT, "H12345678"),
        (DocumentType.TAIWAN_PERMIT, "05616820"),
        (DocumentType.FOREIGN_PERMANENT_RESIDENT, "KAZ110090123105"),
    ],
)
async def test_embedded_verifier_reaches_only_format_checked_without_a_check_character(
    document_type: DocumentType, number: str
) -> None:
    result = await verify(validate_document(document_type, number, today=TODAY), SMITH)
    assert result.level is VerificationLevel.FORMAT_CHECKED
    assert "check_character" not in result.checks


async def test_embedded_verifier_never_claims_a_name_match() -> None:
    result = await verify(validate_document("resident_id", "11010519491231002X", today=TODAY))
    assert not result.level.reaches(VerificationLevel.NAME_MATCHED_GOVERNMENT)
    assert result.reference is None, "nothing outside was asked"


async def test_embedded_verifier_records_who_checked_and_when() -> None:
    result = await verify(validate_document("resident_id", "11010519491231002X", today=TODAY))
    assert (result.verifier, result.checked_at) == ("format_checksum", CHECKED_AT)
    assert result.checks == ("format", "name_script", "birth_date", "check_character")


async def test_embedded_verifier_rechecks_a_document_read_back_from_storage() -> None:
    tampered = IdentityDocument(
        type=DocumentType.RESIDENT_ID,
        number="110105194912310021",
        holder_number="110105194912310021",
    )
    with pytest.raises(InvalidInputError) as refused:
        await verify(tampered)
    assert refused.value.code == "ID_NUMBER_CHECKSUM_MISMATCH"


async def test_embedded_verifier_refuses_a_latin_name_on_a_resident_id() -> None:
    doc = validate_document("resident_id", "11010519491231002X", today=TODAY)
    with pytest.raises(InvalidInputError) as refused:
        await verify(doc, PersonName(value="ZHANG SAN", script=NameScript.LATIN))
    assert refused.value.code == "PATIENT_NAME_SCRIPT_MISMATCH"


async def test_embedded_verifier_judges_birth_dates_on_the_regions_calendar_day() -> None:
    # Born 2026-11-27 in Shanghai, checked at 2026-11-26T17:30Z = 2026-11-27 01:30 there.
    body = "11010520261127002"
    newborn = IdentityDocument(
        type=DocumentType.HOUSEHOLD_REGISTER,
        number=body + check_character(body),
        holder_number=body + check_character(body),
    )
    just_after_midnight_in_shanghai = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)
    result = await FormatChecksumVerifier().verify(
        newborn, ZHANG, checked_at=just_after_midnight_in_shanghai
    )
    assert result.level is VerificationLevel.CHECKSUM_VALID
    with pytest.raises(InvalidInputError) as refused:
        await FormatChecksumVerifier(zone="UTC").verify(
            newborn, ZHANG, checked_at=just_after_midnight_in_shanghai
        )
    assert refused.value.code == "ID_BIRTH_DATE_IN_FUTURE"


async def test_embedded_verifier_refuses_a_naive_time() -> None:
    doc = validate_document("passport", "E12345678", today=TODAY)
    with pytest.raises(ValueError, match="aware"):
        await FormatChecksumVerifier().verify(
            doc,
            SMITH,
            checked_at=datetime(2026, 11, 26, 3, 0),  # noqa: DTZ001 - the point of the test
        )


async def test_a_verification_is_a_frozen_wire_shape() -> None:
    result = await verify(validate_document("resident_id", "11010519491231002X", today=TODAY))
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=Verification)
    assert decoded == result
    assert b'"level":"checksum_valid"' in msgspec.json.encode(result)
    with pytest.raises(AttributeError):
        result.level = VerificationLevel.FACE_VERIFIED  # type: ignore[misc]

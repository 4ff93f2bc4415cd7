"""Identity documents: which numbers each document accepts, what they tell, how they are shown."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from guahao.platform.errors import InvalidInputError
from guahao.platform.identity_documents import (
    EARLIEST_BIRTH_DATE,
    PROVINCE_CODES,
    DocumentType,
    IdentityDocument,
    Sex,
    age_on,
    check_character,
    mask_document,
    normalise_document_number,
    parse_document_type,
    validate_document,
)
from guahao.platform.personal_data import mask_document as mask_any_document

TODAY = date(2026, 11, 26)
STANDARD_FEMALE = "11010519491231002X"  # GB 11643-1999's own examples
STANDARD_MALE = "440524188001010014"
FPR_2023 = "932682198501010017"  # 2023 card: Jiangsu (32), Saudi Arabia (682), 1985-01-01


def gb11643(body: str) -> str:
    return body + check_character(body)


def refusal(document_type: str, number: str, *, today: date = TODAY) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as refused:
        validate_document(document_type, number, today=today)
    if number:
        assert number not in str(refused.value.detail), "a refusal never carries the number"
    return refused.value


# ----------------------------------------------------------------------------- resident ID


def test_resident_id_accepts_the_standards_examples() -> None:
    female = validate_document(DocumentType.RESIDENT_ID, STANDARD_FEMALE, today=TODAY)
    male = validate_document(DocumentType.RESIDENT_ID, STANDARD_MALE, today=TODAY)
    assert (female.birth_date, female.sex, female.area_code) == (
        date(1949, 12, 31),
        Sex.FEMALE,
        "110105",
    )
    assert (male.birth_date, male.sex, male.area_code) == (date(1880, 1, 1), Sex.MALE, "440524")


def test_resident_id_accepts_lower_case_check_character() -> None:
    doc = validate_document("resident_id", "11010519491231002x", today=TODAY)
    assert doc.number == STANDARD_FEMALE


def test_resident_id_accepts_full_width_digits_and_check_character() -> None:
    doc = validate_document("resident_id", "１１０１０５１９４９１２３１００２Ｘ", today=TODAY)
    assert doc.number == STANDARD_FEMALE


@pytest.mark.parametrize(
    "typed",
    [
        "110105 19491231 002X",
        "110105-19491231-002X",
        " 11010519491231002X\t",
        "110105　19491231002X",
    ],
)
def test_resident_id_ignores_spaces_and_hyphens_people_type(typed: str) -> None:
    assert validate_document("resident_id", typed, today=TODAY).number == STANDARD_FEMALE


def test_resident_id_derives_sex_from_the_parity_of_the_seventeenth_digit() -> None:
    odd = validate_document("resident_id", gb11643("11010520000101001"), today=TODAY)
    even = validate_document("resident_id", gb11643("11010520000101002"), today=TODAY)
    zero = validate_document("resident_id", gb11643("11010520000101000"), today=TODAY)
    assert (odd.sex, even.sex, zero.sex) == (Sex.MALE, Sex.FEMALE, Sex.FEMALE)


def test_resident_id_with_a_wrong_check_character_is_refused() -> None:
    err = refusal("resident_id", "110105194912310021")
    assert err.code == "ID_NUMBER_CHECKSUM_MISMATCH"
    assert err.detail == {"field": "document_number", "type": "resident_id"}


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("11010519491231002", "format"),
        ("1101051949123100211", "format"),
        ("11010519491231002Y", "format"),
        ("X10105194912310021", "format"),
        ("", "format"),
        ("110105491231002", "first_generation"),
    ],
)
def test_resident_id_of_the_wrong_shape_is_refused(number: str, reason: str) -> None:
    err = refusal("resident_id", number)
    assert (err.code, err.detail["reason"]) == ("ID_NUMBER_INVALID", reason)


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490000", "20230229", "19491232"])
def test_resident_id_with_an_impossible_birth_date_is_refused(birth: str) -> None:
    err = refusal("resident_id", gb11643(f"110105{birth}002"))
    assert (err.code, err.detail["reason"]) == ("ID_BIRTH_DATE_INVALID", "no_such_day")


def test_resident_id_born_on_29_february_of_a_leap_year_is_accepted() -> None:
    doc = validate_document("resident_id", gb11643("11010520240229002"), today=TODAY)
    assert doc.birth_date == date(2024, 2, 29)


def test_resident_id_born_in_the_future_is_refused() -> None:
    err = refusal("resident_id", gb11643("11010520261127002"))
    assert err.code == "ID_BIRTH_DATE_IN_FUTURE"


def test_resident_id_of_a_baby_born_today_is_accepted() -> None:
    doc = validate_document("resident_id", gb11643("11010520261126002"), today=TODAY)
    assert doc.birth_date == TODAY


def test_resident_id_born_before_the_earliest_possible_holder_is_refused() -> None:
    err = refusal("resident_id", gb11643("11010518691231002"))
    assert (err.code, err.detail["reason"]) == ("ID_BIRTH_DATE_INVALID", "too_early")
    assert date(1870, 1, 1) == EARLIEST_BIRTH_DATE


@pytest.mark.parametrize("province", ["00", "10", "16", "20", "39", "47", "55", "66", "70", "80"])
def test_resident_id_with_an_unknown_province_is_refused(province: str) -> None:
    err = refusal("resident_id", gb11643(f"{province}010519491231002"))
    assert err.code == "ID_NUMBER_AREA_UNKNOWN"


def test_resident_id_keeps_a_county_code_that_no_longer_exists() -> None:
    # 110105 is current, but a number keeps the county it was issued under: Chongqing's old
    # Sichuan codes (51xxxx before 1997) and retired codes stay valid for life.
    doc = validate_document("resident_id", gb11643("51022119700101003"), today=TODAY)
    assert doc.area_code == "510221"


def test_resident_id_that_is_a_permanent_residence_number_is_refused_naming_its_type() -> None:
    err = refusal("resident_id", FPR_2023)
    assert err.code == "DOCUMENT_NUMBER_TYPE_MISMATCH"
    assert err.detail["number_is"] == "foreign_permanent_resident"


def test_resident_id_that_is_a_residence_permit_number_is_refused_naming_its_type() -> None:
    err = refusal("resident_id", gb11643("81000019900101123"))
    assert err.code == "DOCUMENT_NUMBER_TYPE_MISMATCH"
    assert err.detail["number_is"] == "hmt_residence_permit"


# --------------------------------------------------------------------- household register


def test_household_register_takes_the_childs_resident_id_number() -> None:
    child = gb11643("11010520200315004")
    doc = validate_document("household_register", child, today=TODAY)
    assert (doc.type, doc.number, doc.birth_date, doc.sex) == (
        DocumentType.HOUSEHOLD_REGISTER,
        child,
        date(2020, 3, 15),
        Sex.FEMALE,
    )


def test_household_register_records_that_a_guardian_books() -> None:
    assert DocumentType.HOUSEHOLD_REGISTER.booked_by_guardian
    assert not any(t.booked_by_guardian for t in DocumentType if t is not t.HOUSEHOLD_REGISTER)


def test_household_register_refuses_what_a_resident_id_refuses() -> None:
    assert refusal("household_register", "110105194912310021").code == (
        "ID_NUMBER_CHECKSUM_MISMATCH"
    )
    assert refusal("household_register", gb11643("11010520261231002")).code == (
        "ID_BIRTH_DATE_IN_FUTURE"
    )


# ------------------------------------------------------------------------ residence permit


@pytest.mark.parametrize(("area", "region"), [("810000", "HK"), ("820000", "MO"), ("830000", "TW")])
def test_residence_permit_takes_gb11643_numbers_of_hong_kong_macao_and_taiwan(
    area: str, region: str
) -> None:
    number = gb11643(f"{area}19900101123")
    doc = validate_document("hmt_residence_permit", number, today=TODAY)
    assert (doc.area_code, doc.birth_date, doc.sex) == (area, date(1990, 1, 1), Sex.MALE)


def test_residence_permit_with_a_mainland_area_code_is_refused_naming_its_type() -> None:
    err = refusal("hmt_residence_permit", STANDARD_FEMALE)
    assert (err.code, err.detail["number_is"]) == ("DOCUMENT_NUMBER_TYPE_MISMATCH", "resident_id")


def test_residence_permit_with_an_area_other_than_810000_820000_830000_is_refused() -> None:
    err = refusal("hmt_residence_permit", gb11643("81010019900101123"))
    assert err.code == "ID_NUMBER_AREA_UNKNOWN"


@pytest.mark.parametrize("digits", ["١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "११०१०५१९४९१२३१००२X"])
def test_resident_id_in_digits_of_other_scripts_is_refused(digits: str) -> None:
    assert refusal("resident_id", digits).code == "ID_NUMBER_INVALID"


def test_residence_permit_with_a_wrong_check_character_is_refused() -> None:
    number = gb11643("81000019900101123")
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    assert refusal("hmt_residence_permit", wrong).code == "ID_NUMBER_CHECKSUM_MISMATCH"


# --------------------------------------------------------------- permanent residence card


def test_permanent_residence_card_of_2023_derives_birth_sex_province_and_nationality() -> None:
    doc = validate_document("foreign_permanent_resident", FPR_2023, today=TODAY)
    assert (doc.birth_date, doc.sex, doc.area_code, doc.nationality) == (
        date(1985, 1, 1),
        Sex.MALE,
        "320000",
        "682",
    )


def test_permanent_residence_card_of_2023_with_a_wrong_check_character_is_refused() -> None:
    err = refusal("foreign_permanent_resident", "932682198501010018")
    assert err.code == "ID_NUMBER_CHECKSUM_MISMATCH"


def test_permanent_residence_card_of_2023_with_an_unknown_province_is_refused() -> None:
    assert refusal("foreign_permanent_resident", gb11643("90068219850101001")).code == (
        "ID_NUMBER_AREA_UNKNOWN"
    )


def test_permanent_residence_card_given_a_citizen_number_is_refused_naming_its_type() -> None:
    err = refusal("foreign_permanent_resident", STANDARD_FEMALE)
    assert (err.code, err.detail["number_is"]) == ("DOCUMENT_NUMBER_TYPE_MISMATCH", "resident_id")


def test_permanent_residence_card_of_2017_derives_nationality_and_province() -> None:
    doc = validate_document("foreign_permanent_resident", "kaz110090123105", today=TODAY)
    assert (doc.number, doc.nationality, doc.area_code, doc.sex) == (
        "KAZ110090123105",
        "KAZ",
        "110000",
        None,
    )


def test_permanent_residence_card_of_2017_derives_a_birth_date_only_when_one_century_fits() -> None:
    only_1990 = validate_document("foreign_permanent_resident", "KAZ110090123105", today=TODAY)
    either = validate_document("foreign_permanent_resident", "KAZ110010123105", today=TODAY)
    assert only_1990.birth_date == date(1990, 12, 31)
    assert either.birth_date is None, "1910 or 2010: not guessed"


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("KAZ1100901331", "DOCUMENT_NUMBER_INVALID"),
        ("KA1110090123105", "DOCUMENT_NUMBER_INVALID"),
        ("KAZ110090133105", "ID_BIRTH_DATE_INVALID"),
        ("KAZ110001022905", "ID_BIRTH_DATE_INVALID"),  # 29 Feb 1901 and 2001: neither exists
        ("KAZ990090123105", "ID_NUMBER_AREA_UNKNOWN"),
    ],
)
def test_permanent_residence_card_of_2017_with_a_bad_number_is_refused(
    number: str, code: str
) -> None:
    assert refusal("foreign_permanent_resident", number).code == code


def test_permanent_residence_card_of_2017_born_later_this_year_is_refused() -> None:
    # 26-12-31: 2026-12-31 has not come, and 1926 is accepted only because it has.
    assert validate_document(
        "foreign_permanent_resident", "KAZ110026123105", today=TODAY
    ).birth_date == date(1926, 12, 31)
    later = date(1926, 12, 30)
    assert refusal("foreign_permanent_resident", "KAZ110026123105", today=later).code == (
        "ID_BIRTH_DATE_IN_FUTURE"
    )


# -------------------------------------------------------------------------- travel permits


@pytest.mark.parametrize(
    ("typed", "number", "holder", "area"),
    [
        ("H12345678", "H12345678", "H12345678", "810000"),
        ("m 1234 5678 01", "M1234567801", "M12345678", "820000"),
        ("Ｈ１２３４５６７８００", "H1234567800", "H12345678", "810000"),
    ],
)
def test_hong_kong_macao_permit_takes_h_or_m_and_8_or_10_digits(
    typed: str, number: str, holder: str, area: str
) -> None:
    doc = validate_document("hk_macao_permit", typed, today=TODAY)
    assert (doc.number, doc.holder_number, doc.area_code) == (number, holder, area)


@pytest.mark.parametrize("number", ["H1234567", "H123456789", "K12345678", "12345678", "HM2345678"])
def test_hong_kong_macao_permit_of_the_wrong_shape_is_refused(number: str) -> None:
    err = refusal("hk_macao_permit", number)
    assert (err.code, err.detail["type"]) == ("DOCUMENT_NUMBER_INVALID", "hk_macao_permit")


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("05616820", "05616820"),
        ("0561682001", "0561682001"),
        ("0561682001(D)", "0561682001(D)"),
        ("0561682001（d）", "0561682001(D)"),
        ("0561682001D", "0561682001(D)"),
    ],
)
def test_taiwan_permit_takes_8_digits_and_the_older_10_with_issuing_office(
    typed: str, number: str
) -> None:
    doc = validate_document("taiwan_permit", typed, today=TODAY)
    assert (doc.number, doc.holder_number, doc.area_code) == (number, "05616820", "830000")


@pytest.mark.parametrize("number", ["0561682", "056168200", "T0561682", "0561682001(DD)"])
def test_taiwan_permit_of_the_wrong_shape_is_refused(number: str) -> None:
    assert refusal("taiwan_permit", number).code == "DOCUMENT_NUMBER_INVALID"


# -------------------------------------------------------------------------------- passport


@pytest.mark.parametrize(
    "number", ["E12345678", "EA1234567", "G12345678", "123456789", "C01X00T47", "X1234"]
)
def test_passport_takes_5_to_17_letters_and_digits(number: str) -> None:
    doc = validate_document("passport", number.lower(), today=TODAY)
    assert (doc.number, doc.birth_date, doc.sex, doc.area_code) == (number, None, None, None)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("E123", "format"),
        ("E" * 9 + "1" * 9, "format"),
        ("E1234_678", "format"),
        ("ZHANGSAN", "no_digit"),
    ],
)
def test_passport_of_the_wrong_shape_is_refused(number: str, reason: str) -> None:
    err = refusal("passport", number)
    assert (err.code, err.detail["reason"]) == ("DOCUMENT_NUMBER_INVALID", reason)


def test_a_number_longer_than_anyone_would_type_is_refused_before_any_work() -> None:
    err = refusal("passport", "1" * 65)
    assert (err.code, err.detail["reason"]) == ("DOCUMENT_NUMBER_INVALID", "length")


# ---------------------------------------------------------------------------- document type


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("resident_id", DocumentType.RESIDENT_ID),
        ("RESIDENT_ID", DocumentType.RESIDENT_ID),
        ("居民身份证", DocumentType.RESIDENT_ID),
        ("身份证", DocumentType.RESIDENT_ID),
        ("户口簿", DocumentType.HOUSEHOLD_REGISTER),
        ("户口本", DocumentType.HOUSEHOLD_REGISTER),
        ("回乡证", DocumentType.HK_MACAO_PERMIT),
        ("台胞证", DocumentType.TAIWAN_PERMIT),
        ("永居证", DocumentType.FOREIGN_PERMANENT_RESIDENT),
        ("港澳台居民居住证", DocumentType.HMT_RESIDENCE_PERMIT),
        ("护照", DocumentType.PASSPORT),
    ],
)
def test_document_type_is_read_from_its_value_or_chinese_name(
    raw: str, expected: DocumentType
) -> None:
    assert parse_document_type(raw) is expected


@pytest.mark.parametrize("raw", ["driving_licence", "", "居住证", "军官证"])
def test_unknown_document_type_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_document(raw, STANDARD_FEMALE, today=TODAY)
    assert refused.value.code == "DOCUMENT_TYPE_UNKNOWN"
    assert refused.value.detail["accepted"] == [t.value for t in DocumentType]


def test_document_type_values_are_the_stored_ones() -> None:
    # Stored in the patients table and named in the API: values never change.
    assert [t.value for t in DocumentType] == [
        "resident_id",
        "household_register",
        "hmt_residence_permit",
        "foreign_permanent_resident",
        "hk_macao_permit",
        "taiwan_permit",
        "passport",
    ]
    assert all(t.label_zh and t.label_en for t in DocumentType)


# ---------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("document_type", "number", "masked"),
    [
        ("resident_id", STANDARD_FEMALE, "110105********002X"),
        ("household_register", STANDARD_MALE, "440524********0014"),
        ("foreign_permanent_resident", FPR_2023, "932682********0017"),
        ("foreign_permanent_resident", "KAZ110090123105", "KAZ**********05"),
        ("passport", "E12345678", "E12****78"),
        ("hk_macao_permit", "H12345678", "H12****78"),
    ],
)
def test_documents_are_masked_by_type(document_type: str, number: str, masked: str) -> None:
    assert mask_document(document_type, number) == masked


def test_a_document_shows_and_logs_only_its_masked_number() -> None:
    doc = validate_document("resident_id", STANDARD_FEMALE, today=TODAY)
    assert doc.masked == "110105********002X"
    assert STANDARD_FEMALE not in repr(doc)
    assert STANDARD_FEMALE not in str(doc)
    assert STANDARD_FEMALE not in f"{doc}"


# ---------------------------------------------------------------------------- age


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2012, 11, 26), date(2026, 11, 26), 14),
        (date(2012, 11, 27), date(2026, 11, 26), 13),
        (date(2026, 11, 26), date(2026, 11, 26), 0),
        (date(2012, 2, 29), date(2026, 2, 28), 13),
        (date(2012, 2, 29), date(2026, 3, 1), 14),
        (date(2012, 2, 29), date(2028, 2, 29), 16),
    ],
)
def test_age_counts_completed_years(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


def test_age_before_birth_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(date(2020, 1, 2), date(2020, 1, 1))


# ---------------------------------------------------------------------------- properties

provinces = st.sampled_from(sorted(PROVINCE_CODES))
birth_dates = st.dates(min_value=EARLIEST_BIRTH_DATE, max_value=TODAY)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    area = draw(provinces) + draw(st.text("0123456789", min_size=4, max_size=4))
    born = draw(birth_dates).strftime("%Y%m%d")
    order = draw(st.text("0123456789", min_size=3, max_size=3))
    return gb11643(area + born + order)


@given(resident_ids())
def test_any_area_date_and_order_with_its_check_character_validates(number: str) -> None:
    doc = validate_document("resident_id", number, today=TODAY)
    assert doc.number == number
    assert doc.birth_date == date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    assert doc.sex is (Sex.MALE if int(number[16]) % 2 else Sex.FEMALE)


@given(resident_ids(), st.integers(0, 17), st.integers(1, 10))
def test_any_single_character_change_is_refused(number: str, position: int, shift: int) -> None:
    alphabet = "0123456789X" if position == 17 else "0123456789"
    changed_to = alphabet[(alphabet.index(number[position]) + shift) % len(alphabet)]
    assume(changed_to != number[position])
    changed = number[:position] + changed_to + number[position + 1 :]
    with pytest.raises(InvalidInputError):
        validate_document("resident_id", changed, today=TODAY)


@given(resident_ids(), st.integers(0, 16))
def test_any_swap_of_two_adjacent_different_digits_is_refused(number: str, position: int) -> None:
    a, b = number[position], number[position + 1]
    assume(a != b and "X" not in (a, b))
    swapped = number[:position] + b + a + number[position + 2 :]
    with pytest.raises(InvalidInputError):
        validate_document("resident_id", swapped, today=TODAY)


@given(st.sampled_from(list(DocumentType)), st.text(max_size=40))
def test_normalisation_is_idempotent(document_type: DocumentType, raw: str) -> None:
    once = normalise_document_number(document_type, raw)
    assert normalise_document_number(document_type, once) == once


@given(resident_ids())
def test_a_typed_number_validates_as_its_normal_form(number: str) -> None:
    typed = " ".join([number[:6], number[6:14], number[14:]]).lower()
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in number)
    assert validate_document("resident_id", typed, today=TODAY).number == number
    assert validate_document("resident_id", full_width, today=TODAY).number == number


@given(resident_ids())
def test_masks_of_resident_ids_never_show_the_birth_date_or_order_code(number: str) -> None:
    masked = mask_document("resident_id", number)
    assert len(masked) == 18
    assert masked[:6] == number[:6]
    assert masked[6:14] == "*" * 8
    assert masked[14:] == number[14:]


@given(st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=5, max_size=17))
def test_masks_of_other_documents_hide_at_least_a_third_and_keep_length(number: str) -> None:
    for document_type in (DocumentType.PASSPORT, DocumentType.HK_MACAO_PERMIT):
        masked = mask_document(document_type, number)
        assert len(masked) == len(number)
        assert masked.count("*") >= len(number) / 3
        if len(number) < 15:
            assert masked == mask_any_document(number), "one masking rule across the platform"
        shown = [ch for ch in masked if ch != "*"]
        assert len(shown) <= 2 * max(1, len(number) // 4) + 1


@given(st.dates(min_value=date(1900, 1, 1), max_value=TODAY), st.integers(0, 40_000))
def test_age_grows_by_one_on_each_birthday_and_never_goes_down(born: date, days: int) -> None:
    day = born + timedelta(days=days)
    assert 0 <= age_on(born, day) <= age_on(born, day + timedelta(days=1)) <= age_on(born, day) + 1


def test_document_structs_are_frozen() -> None:
    doc = validate_document("passport", "E12345678", today=TODAY)
    assert isinstance(doc, IdentityDocument)
    with pytest.raises(AttributeError):
        doc.number = "E00000000"  # type: ignore[misc]


@st.composite
def residence_permits(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from(["810000", "820000", "830000"]))
    born = draw(birth_dates).strftime("%Y%m%d")
    return gb11643(area + born + draw(st.text("0123456789", min_size=3, max_size=3)))


@st.composite
def permanent_residence_cards_2023(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(PROVINCE_CODES - {"71"})))
    nationality = draw(st.text("0123456789", min_size=3, max_size=3))
    born = draw(birth_dates).strftime("%Y%m%d")
    order = draw(st.text("0123456789", min_size=3, max_size=3))
    return gb11643("9" + province + nationality + born + order)


@given(residence_permits())
def test_any_residence_permit_number_validates_and_is_no_resident_id(number: str) -> None:
    doc = validate_document("hmt_residence_permit", number, today=TODAY)
    assert doc.area_code == number[:6]
    assert refusal("resident_id", number).code == "DOCUMENT_NUMBER_TYPE_MISMATCH"


@given(permanent_residence_cards_2023())
def test_any_2023_permanent_residence_number_validates_and_is_no_resident_id(number: str) -> None:
    doc = validate_document("foreign_permanent_resident", number, today=TODAY)
    assert (doc.area_code, doc.nationality) == (number[1:3] + "0000", number[3:6])
    assert mask_document("foreign_permanent_resident", number)[6:14] == "*" * 8
    assert refusal("resident_id", number).code == "DOCUMENT_NUMBER_TYPE_MISMATCH"

"""Patient names: Chinese names with the minority middle dot, Latin names as on passports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.errors import InvalidInputError
from guahao.platform.identity_documents import DocumentType
from guahao.platform.person_names import (
    HAN_NAME_LENGTH,
    LATIN_NAME_LENGTH,
    NameScript,
    PersonName,
    name_scripts_for,
    normalise_person_name,
    validate_person_name,
)


def refused(raw: str, document_type: DocumentType | None = None) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as refusal:
        validate_person_name(raw, document_type)
    assert refusal.value.detail["field"] == "name"
    return refusal.value


# ------------------------------------------------------------------------------- Chinese


@pytest.mark.parametrize("name", ["张三", "欧阳娜娜", "王〇", "𠈌乐", "买买提·艾力"])
def test_chinese_names_are_accepted_as_written(name: str) -> None:
    assert validate_person_name(name) == PersonName(value=name, script=NameScript.HAN)


@pytest.mark.parametrize("dot", ["\u00b7", "\u30fb", "\u2022", "\uff0e", ".", "\uff65", "\u2027"])
def test_chinese_names_take_every_middle_dot_people_type_as_u00b7(dot: str) -> None:
    assert validate_person_name(f"买买提{dot}艾力").value == "买买提·艾力"


def test_chinese_names_drop_spaces_people_type_between_characters() -> None:
    assert validate_person_name(" 张　三 ").value == "张三"
    assert validate_person_name("买买提 · 艾力").value == "买买提·艾力"


@pytest.mark.parametrize("name", ["·买买提艾力", "买买提艾力·", "买买提··艾力", "买买提·・艾力"])
def test_chinese_names_with_a_leading_trailing_or_doubled_middle_dot_are_refused(
    name: str,
) -> None:
    assert refused(name).code == "PATIENT_NAME_SEPARATOR_MISPLACED"


def test_chinese_names_of_one_character_are_refused() -> None:
    err = refused("张")
    assert (err.code, err.detail["script"]) == ("PATIENT_NAME_LENGTH_INVALID", "han")


def test_chinese_names_up_to_thirty_characters_are_accepted_and_longer_refused() -> None:
    low, high = HAN_NAME_LENGTH
    assert (low, high) == (2, 30)
    assert validate_person_name("阿" * 15 + "·" + "阿" * 15).script is NameScript.HAN
    assert refused("阿" * 31).code == "PATIENT_NAME_LENGTH_INVALID"


@pytest.mark.parametrize("name", ["张-三", "张,三", "张'三", "张三!", "张三。"])
def test_chinese_names_with_punctuation_are_refused(name: str) -> None:
    assert refused(name).code == "PATIENT_NAME_INVALID"


# ------------------------------------------------------------------------------- Latin


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("John Smith", "JOHN SMITH"),
        ("  mary   o'brien ", "MARY O'BRIEN"),
        ("Mary O’Brien", "MARY O'BRIEN"),
        ("anne-marie dupont", "ANNE-MARIE DUPONT"),
        ("Anne–Marie Dupont", "ANNE-MARIE DUPONT"),
        ("Smith,John", "SMITH, JOHN"),
        ("Smith , John", "SMITH, JOHN"),
        ("José Müller", "JOSÉ MÜLLER"),
        ("ｊｏｈｎ ｓｍｉｔｈ", "JOHN SMITH"),
        ("Sukarno", "SUKARNO"),
    ],
)
def test_latin_names_are_upper_cased_with_single_separators(typed: str, value: str) -> None:
    assert validate_person_name(typed) == PersonName(value=value, script=NameScript.LATIN)


@pytest.mark.parametrize(
    "name", ["-JOHN", "JOHN-", "JOHN--SMITH", "JOHN ,, SMITH", "O''BRIEN", "SMITH,", "'JOHN"]
)
def test_latin_names_with_a_leading_trailing_or_doubled_separator_are_refused(name: str) -> None:
    assert refused(name).code == "PATIENT_NAME_SEPARATOR_MISPLACED"


def test_latin_names_of_one_letter_or_over_seventy_characters_are_refused() -> None:
    assert LATIN_NAME_LENGTH == (2, 70)
    assert refused("J").code == "PATIENT_NAME_LENGTH_INVALID"
    assert validate_person_name("A" * 70).value == "A" * 70
    assert refused("A" * 71).detail["script"] == "latin"


@pytest.mark.parametrize("name", ["J. SMITH", "JOHN·SMITH", "JOHN_SMITH", "JOHN/SMITH"])
def test_latin_names_with_other_punctuation_are_refused(name: str) -> None:
    assert refused(name).code == "PATIENT_NAME_INVALID"


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["张3", "张三2", "JOHN 2ND", "张３", "李①"])
def test_names_with_digits_are_refused(name: str) -> None:
    err = refused(name)
    assert (err.code, err.detail["reason"]) == ("PATIENT_NAME_INVALID", "digit")


def test_latin_names_keep_accents_nfkc_cannot_compose() -> None:
    # Q with a combining acute has no precomposed form; the mark stays with its letter.
    assert validate_person_name("Q\u0301uinn").value == "Q\u0301UINN"


@pytest.mark.parametrize(
    "name", ["张三😀", "JOHN 👍🏽", "张\u200d三", "张三♥", "张\u0301三", "\u0301AB"]
)
def test_names_with_emoji_or_symbols_are_refused(name: str) -> None:
    err = refused(name)
    assert (err.code, err.detail["reason"]) == ("PATIENT_NAME_INVALID", "symbol")


@pytest.mark.parametrize("name", ["张San", "赵C", "JOHN 张"])
def test_names_mixing_chinese_and_latin_are_refused(name: str) -> None:
    assert refused(name).code == "PATIENT_NAME_MIXED_SCRIPTS"


@pytest.mark.parametrize("name", ["Иван Петров", "김민준", "すずき", "محمد"])
def test_names_in_other_scripts_are_refused_asking_for_the_passport_spelling(name: str) -> None:
    err = refused(name)
    assert (err.code, err.detail["reason"]) == ("PATIENT_NAME_INVALID", "script")


@pytest.mark.parametrize("name", ["", "   ", "\u3000"])
def test_empty_names_are_refused(name: str) -> None:
    err = refused(name)
    assert (err.code, err.detail["reason"]) == ("PATIENT_NAME_LENGTH_INVALID", "empty")


def test_names_of_only_separators_are_refused() -> None:
    assert refused("··").code == "PATIENT_NAME_INVALID"
    assert refused("- '").code == "PATIENT_NAME_INVALID"


def test_absurdly_long_input_is_refused_before_any_work() -> None:
    err = refused("张" * 201)
    assert (err.code, err.detail["reason"]) == ("PATIENT_NAME_LENGTH_INVALID", "too_long")


# ------------------------------------------------------------------------ script per document


@pytest.mark.parametrize(
    "document_type", [DocumentType.RESIDENT_ID, DocumentType.HOUSEHOLD_REGISTER]
)
def test_resident_id_and_household_register_names_must_be_chinese(
    document_type: DocumentType,
) -> None:
    err = refused("ZHANG SAN", document_type)
    assert (err.code, err.detail["type"]) == ("PATIENT_NAME_SCRIPT_MISMATCH", document_type.value)
    assert validate_person_name("张三", document_type).value == "张三"


@pytest.mark.parametrize(
    "document_type",
    [
        t
        for t in DocumentType
        if t not in {DocumentType.RESIDENT_ID, DocumentType.HOUSEHOLD_REGISTER}
    ],
)
def test_other_documents_take_chinese_or_latin_names(document_type: DocumentType) -> None:
    assert name_scripts_for(document_type) == {NameScript.HAN, NameScript.LATIN}
    assert validate_person_name("John Smith", document_type).value == "JOHN SMITH"
    assert validate_person_name("陈大文", document_type).value == "陈大文"


# ------------------------------------------------------------------------------ properties

han = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
latin_letters = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzéüñç")


@st.composite
def chinese_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.text(han, min_size=1, max_size=6), min_size=1, max_size=4))
    name = draw(st.sampled_from(["·", "・", "•", "．"])).join(parts)
    return name if len(name.replace("·", "")) >= 2 else name + "三"


@st.composite
def latin_names(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.text(latin_letters, min_size=2, max_size=10), min_size=1, max_size=4))
    separators = draw(
        st.lists(st.sampled_from([" ", "-", "'", ", ", "  "]), min_size=3, max_size=3)
    )
    return "".join(w + s for w, s in zip(words, separators, strict=False)).rstrip(" ,-'") + (
        words[-1] if len(words) > 3 else ""
    )


@given(chinese_names())
def test_any_chinese_name_with_inner_middle_dots_validates_to_u00b7(name: str) -> None:
    person = validate_person_name(name)
    assert person.script is NameScript.HAN
    assert set(person.value) - {"·"} <= set(name)
    assert validate_person_name(person.value) == person


@given(latin_names())
def test_any_latin_name_validates_upper_case_and_is_stable(name: str) -> None:
    person = validate_person_name(name)
    assert person.value == person.value.upper()
    assert validate_person_name(person.value) == person


@given(st.text(max_size=30))
def test_name_normalisation_is_idempotent(raw: str) -> None:
    once = normalise_person_name(raw)
    assert normalise_person_name(once) == once


@given(st.text(max_size=30))
def test_any_input_is_either_a_valid_name_or_a_catalogued_refusal(raw: str) -> None:
    code = ""
    try:
        person = validate_person_name(raw)
    except InvalidInputError as err:
        code = err.code
    if code:
        assert code.startswith("PATIENT_NAME_")
    else:
        assert not any(ch.isdigit() for ch in person.value)
        assert person.value == normalise_person_name(person.value)

"""Identity documents (证件) of patients (就诊人): their formats and what their numbers tell.

Pure domain: no clock, no I/O. Every function that judges a birth date takes ``today``.

A number is first *normalised* the way a person would have meant it (full-width characters and
lower-case ``x`` made ASCII upper-case, spaces and hyphens dropped), then *validated* against the
rules of its document type. A refusal carries a stable code from the catalogue
(``guahao.platform.error_codes``) and never the number itself, so that errors can be logged.

Formats and their sources:

- 居民身份证 (resident identity card) and 户口簿 (household register): the citizen identity
  number of GB 11643-1999: six-digit address code (GB/T 2260), birth date ``YYYYMMDD``, a
  three-digit order code whose last digit is odd for men and even for women, and a check
  character by ISO 7064 MOD 11-2. A child without an ID card is registered with the household
  register, which carries the same number (a newborn is given one when registered).
  Only the province of the address code is checked: counties are created, merged and renamed
  every year, and a number keeps the code it was issued under for life (this is why
  python-stdnum, which checks the full code against the year of birth, refuses valid numbers).
- 港澳台居民居住证 (residence permit for Hong Kong, Macao and Taiwan residents, issued since
  2018-09-01 under 《港澳台居民居住证申领发放办法》, 国办发〔2018〕81号): a GB 11643 number whose
  address code is 810000 (Hong Kong), 820000 (Macao) or 830000 (Taiwan).
- 外国人永久居留身份证 (foreigner's permanent residence ID card). The 2023 card (issued since
  2023-12-01) has 18 characters: ``9``, the two-digit province code of the accepting office,
  a three-digit nationality code (ISO 3166-1 numeric), the birth date, a three-digit order code
  and a MOD 11-2 check character, exactly as a citizen number (National Immigration
  Administration, 《新版外国人永久居留身份证适配性改造要点》, 2023; reproduced at
  http://www.eastcoms.com/service/pro/840.html; the example ``932682198501010017`` is the one
  the published adaptation guides use). The same document says the earlier cards (2004 and 2017
  versions) have 15 characters, three Latin letters (the nationality, ISO 3166-1 alpha-3) and
  twelve digits; the digits are read, as integrators' validators do, as a four-digit
  accepting-office code (province first), the birth date as ``YYMMDD`` and two more digits.
  That split is not in a primary source we could read, so only the province and the birth day
  are checked, and no check character.
- 港澳居民来往内地通行证 (回乡证, Mainland travel permit for Hong Kong and Macao residents):
  ``H`` (Hong Kong) or ``M`` (Macao), an eight-digit lifelong number and a two-digit renewal
  count, 00 on the first card (Ministry of Public Security, 《港澳居民来往内地通行证号码规则》,
  2010). The card issued since 2013 prints the nine-character lifelong part only; both forms
  are accepted and share ``holder_number``.
- 台湾居民来往大陆通行证 (台胞证, Mainland travel permit for Taiwan residents): an eight-digit
  lifelong number since 2008-09-25; earlier permits added a two-digit issue count and, for
  permits issued in Hong Kong and Macao, an issuing-office code in brackets, e.g.
  ``0561682001(D)`` (China News Service, 2008-09-11, "台胞证9月25日起实行一人一号、终身不变").
- 护照 (passport): Chinese ordinary passports are ``E`` or ``G`` with eight digits, or ``E``, a
  letter and seven digits; a foreign passport number is whatever its state issues, 5 to 17
  letters and digits (ICAO Doc 9303 allows letters and digits; we know of none without a digit,
  and requiring one catches a name typed into the number field).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from enum import StrEnum
from typing import Final

import msgspec

from guahao.platform.error_codes import refuse
from guahao.platform.personal_data import mask_middle

__all__ = [
    "EARLIEST_BIRTH_DATE",
    "PROVINCE_CODES",
    "DocumentType",
    "IdentityDocument",
    "Sex",
    "age_on",
    "check_character",
    "mask_document",
    "normalise_document_number",
    "parse_document_type",
    "validate_document",
]


class DocumentType(StrEnum):
    """The documents a patient can be registered with; values are stable API and stored."""

    RESIDENT_ID = "resident_id"
    HOUSEHOLD_REGISTER = "household_register"
    HMT_RESIDENCE_PERMIT = "hmt_residence_permit"
    FOREIGN_PERMANENT_RESIDENT = "foreign_permanent_resident"
    HK_MACAO_PERMIT = "hk_macao_permit"
    TAIWAN_PERMIT = "taiwan_permit"
    PASSPORT = "passport"

    @property
    def label_zh(self) -> str:
        """The name printed on the document, as patients know it.

        >>> DocumentType.HK_MACAO_PERMIT.label_zh
        '港澳居民来往内地通行证'
        """
        return _LABELS[self][0]

    @property
    def label_en(self) -> str:
        return _LABELS[self][1]

    @property
    def booked_by_guardian(self) -> bool:
        """Whether the holder is a child booked by a guardian (the household register)."""
        return self is DocumentType.HOUSEHOLD_REGISTER


_LABELS: Final[dict[DocumentType, tuple[str, str]]] = {
    DocumentType.RESIDENT_ID: ("居民身份证", "Resident identity card"),
    DocumentType.HOUSEHOLD_REGISTER: ("户口簿", "Household register"),
    DocumentType.HMT_RESIDENCE_PERMIT: (
        "港澳台居民居住证",
        "Residence permit for Hong Kong, Macao and Taiwan residents",
    ),
    DocumentType.FOREIGN_PERMANENT_RESIDENT: (
        "外国人永久居留身份证",
        "Foreigner's permanent residence ID card",
    ),
    DocumentType.HK_MACAO_PERMIT: (
        "港澳居民来往内地通行证",
        "Mainland travel permit for Hong Kong and Macao residents",
    ),
    DocumentType.TAIWAN_PERMIT: (
        "台湾居民来往大陆通行证",
        "Mainland travel permit for Taiwan residents",
    ),
    DocumentType.PASSPORT: ("护照", "Passport"),
}

# What people call the documents besides their printed names (imports, forms, support staff).
_ALIASES: Final[dict[str, DocumentType]] = {
    "身份证": DocumentType.RESIDENT_ID,
    "户口本": DocumentType.HOUSEHOLD_REGISTER,
    "回乡证": DocumentType.HK_MACAO_PERMIT,
    "台胞证": DocumentType.TAIWAN_PERMIT,
    "永居证": DocumentType.FOREIGN_PERMANENT_RESIDENT,
}

_GB11643_TYPES: Final = frozenset(
    {
        DocumentType.RESIDENT_ID,
        DocumentType.HOUSEHOLD_REGISTER,
        DocumentType.HMT_RESIDENCE_PERMIT,
    }
)


class Sex(StrEnum):
    """Sex as a document records it (GB 11643: odd order code male, even female)."""

    MALE = "male"
    FEMALE = "female"


#: Province-level codes of GB/T 2260 that begin a citizen number (71 is Taiwan province).
PROVINCE_CODES: Final = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71",
    }
)  # fmt: skip

#: Address codes of residence permits: Hong Kong, Macao, Taiwan.
_PERMIT_AREAS: Final = {"810000": "HK", "820000": "MO", "830000": "TW"}

#: The earliest birth date a number may carry. Numbers began on 1999-10-01 (国发〔1999〕15号)
#: and nobody has been recorded living past 122, so nobody born much before 1877 was ever given
#: one; 1870 leaves a margin and keeps GB 11643-1999's own example (born 1880-01-01) valid.
EARLIEST_BIRTH_DATE: Final = date(1870, 1, 1)

_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS: Final = "10X98765432"
_MAX_RAW_LENGTH: Final = 64

# Whitespace and the dashes people type between groups of digits (NFKC has already turned the
# full-width ones into these).
_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc]+")
# Patterns are ASCII-only: NFKC leaves digits of other scripts (Arabic-Indic, Devanagari…)
# as they are, and \d would take them.
_GB11643: Final = re.compile(r"\d{17}[\dX]", re.ASCII)
_FIRST_GENERATION: Final = re.compile(r"\d{15}", re.ASCII)
_FPR_2017: Final = re.compile(r"[A-Z]{3}\d{12}", re.ASCII)
_HK_MACAO: Final = re.compile(r"[HM]\d{8}(?:\d{2})?", re.ASCII)
_TAIWAN: Final = re.compile(r"\d{8}|\d{10}|\d{10}\([A-Z0-9]\)", re.ASCII)
_TAIWAN_UNBRACKETED: Final = re.compile(r"(\d{10})\(?([A-Z])\)?|(\d{10})\(([0-9])\)", re.ASCII)
_PASSPORT: Final = re.compile(r"[A-Z0-9]{5,17}", re.ASCII)


class IdentityDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A validated document: its type, its normalised number and what the number tells.

    ``holder_number`` is the part that stays the same for the holder's life (a travel permit's
    renewal count and issuing office are left out), so one person is found again whichever of
    their cards they show. ``area_code`` is the GB/T 2260 address code where the number has
    one (the province followed by ``0000`` where only the province is known);
    ``nationality`` is the code as the number carries it: ISO 3166-1 alpha-3 on the 15-character
    permanent residence cards, ISO 3166-1 numeric on the 2023 card.

    The ``repr`` is masked: a document can be logged without leaking its number.
    """

    type: DocumentType
    number: str
    holder_number: str
    birth_date: date | None = None
    sex: Sex | None = None
    area_code: str | None = None
    nationality: str | None = None

    @property
    def masked(self) -> str:
        return mask_document(self.type, self.number)

    def __repr__(self) -> str:
        return f"IdentityDocument(type={self.type.value!r}, number={self.masked!r})"

    __str__ = __repr__


def parse_document_type(raw: str) -> DocumentType:
    """The document type for a stored value, its Chinese name or a common short name.

    >>> parse_document_type("resident_id"), parse_document_type(" 台胞证 ")
    (<DocumentType.RESIDENT_ID: 'resident_id'>, <DocumentType.TAIWAN_PERMIT: 'taiwan_permit'>)
    >>> parse_document_type("driving_licence")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    guahao.platform.errors.InvalidInputError: DOCUMENT_TYPE_UNKNOWN: ...
    """
    if isinstance(raw, DocumentType):
        return raw
    text = unicodedata.normalize("NFKC", raw).strip()
    try:
        return DocumentType(text.lower())
    except ValueError:
        pass
    for kind, (zh, _) in _LABELS.items():
        if text == zh:
            return kind
    if text in _ALIASES:
        return _ALIASES[text]
    refuse(
        "DOCUMENT_TYPE_UNKNOWN",
        field="document_type",
        accepted=[kind.value for kind in DocumentType],
    )


def normalise_document_number(document_type: DocumentType | str, raw: str) -> str:
    """The number as the document prints it, from what a person typed.

    Idempotent, and it never refuses a number for its content: that is ``validate_document``'s
    job (an unknown type or an absurdly long input is refused here already).

    >>> normalise_document_number("resident_id", "１１０１０５ 1949-1231 002ｘ")
    '11010519491231002X'
    >>> normalise_document_number("taiwan_permit", "0561682001（d）")
    '0561682001(D)'
    >>> normalise_document_number("hk_macao_permit", "h 1234 5678")
    'H12345678'
    """
    kind = parse_document_type(document_type)
    if len(raw) > _MAX_RAW_LENGTH:
        refuse("DOCUMENT_NUMBER_INVALID", field="document_number", type=kind.value, reason="length")
    text = raw
    for _ in range(4):  # dropping a separator can leave an accent to recompose: repeat to rest
        again = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()
        if again == text:
            break
        text = again
    if kind is DocumentType.TAIWAN_PERMIT and (m := _TAIWAN_UNBRACKETED.fullmatch(text)):
        digits, code = (m[1], m[2]) if m[1] else (m[3], m[4])
        text = f"{digits}({code})"
    return text


def check_character(body: str) -> str:
    """The GB 11643-1999 (ISO 7064 MOD 11-2) check character of a 17-digit body.

    >>> check_character("11010519491231002"), check_character("44052418800101001")
    ('X', '4')
    """
    total = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True))
    return _CHECK_CHARACTERS[total % 11]


def validate_document(
    document_type: DocumentType | str, raw_number: str, *, today: date
) -> IdentityDocument:
    """Normalise and check a document number against its type; derive what it tells.

    ``today`` is the local calendar day of the region (a birth date after it is refused).

    >>> doc = validate_document("resident_id", "11010519491231002x", today=date(2026, 11, 26))
    >>> doc.number, doc.birth_date, doc.sex.value, doc.area_code
    ('11010519491231002X', datetime.date(1949, 12, 31), 'female', '110105')
    >>> doc
    IdentityDocument(type='resident_id', number='110105********002X')
    >>> validate_document("resident_id", "110105194912310021", today=date(2026, 11, 26))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    guahao.platform.errors.InvalidInputError: ID_NUMBER_CHECKSUM_MISMATCH: ...
    """
    kind = parse_document_type(document_type)
    number = normalise_document_number(kind, raw_number)
    if kind in _GB11643_TYPES:
        return _gb11643(kind, number, today)
    if kind is DocumentType.FOREIGN_PERMANENT_RESIDENT:
        if len(number) == 18:
            return _gb11643(kind, number, today)
        return _permanent_residence_2017(number, today)
    if kind is DocumentType.HK_MACAO_PERMIT:
        _expect(kind, _HK_MACAO, number, "H or M and 8 or 10 digits")
        return IdentityDocument(
            type=kind,
            number=number,
            holder_number=number[:9],
            area_code="810000" if number[0] == "H" else "820000",
        )
    if kind is DocumentType.TAIWAN_PERMIT:
        _expect(kind, _TAIWAN, number, "8 digits (10 digits on permits before 2008)")
        return IdentityDocument(
            type=kind, number=number, holder_number=number[:8], area_code="830000"
        )
    _expect(kind, _PASSPORT, number, "5 to 17 letters and digits")
    if not any(ch in "0123456789" for ch in number):
        refuse(
            "DOCUMENT_NUMBER_INVALID", field="document_number", type=kind.value, reason="no_digit"
        )
    return IdentityDocument(type=kind, number=number, holder_number=number)


def age_on(birth_date: date, day: date) -> int:
    """Completed years (周岁) on ``day``; someone born on 29 February gains a year on 1 March.

    >>> age_on(date(2012, 2, 29), date(2026, 2, 28)), age_on(date(2012, 2, 29), date(2026, 3, 1))
    (13, 14)
    """
    if day < birth_date:
        raise ValueError("the day is before the birth date")
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - before_birthday


def mask_document(document_type: DocumentType | str, number: str) -> str:
    """The number as it may be shown or logged: never the birth date, never the order code.

    GB 11643-style numbers keep the address code and the last four characters (the national
    habit, ``110105********002X``); the 15-character permanent residence cards keep the
    nationality and the last two; other documents keep about a quarter of their characters at
    each end, one more at the start (``personal_data.mask_document``'s rule for short
    numbers, applied at every length so that a long passport number is not shown 6 + 4).

    >>> mask_document("resident_id", "11010519491231002X")
    '110105********002X'
    >>> mask_document("foreign_permanent_resident", "KAZ110090123105")
    'KAZ**********05'
    >>> mask_document("passport", "E12345678")
    'E12****78'
    """
    kind = parse_document_type(document_type)
    if kind is DocumentType.FOREIGN_PERMANENT_RESIDENT and len(number) == 15:
        return mask_middle(number, 3, 2)
    if len(number) == 18 and (
        kind in _GB11643_TYPES or kind is DocumentType.FOREIGN_PERMANENT_RESIDENT
    ):
        return mask_middle(number, 6, 4)
    keep = max(1, len(number) // 4)
    return mask_middle(number, keep + 1, keep)


def _expect(kind: DocumentType, pattern: re.Pattern[str], number: str, expected: str) -> None:
    if not pattern.fullmatch(number):
        refuse(
            "DOCUMENT_NUMBER_INVALID",
            field="document_number",
            type=kind.value,
            reason="format",
            expected=expected,
        )


def _family(number: str) -> DocumentType:
    """Which kind of GB 11643-style number this is, by its first characters."""
    if number[0] == "9":
        return DocumentType.FOREIGN_PERMANENT_RESIDENT
    if number[:2] in {"81", "82", "83"}:
        return DocumentType.HMT_RESIDENCE_PERMIT
    return DocumentType.RESIDENT_ID


def _gb11643(kind: DocumentType, number: str, today: date) -> IdentityDocument:
    if not _GB11643.fullmatch(number):
        reason = "first_generation" if _FIRST_GENERATION.fullmatch(number) else "format"
        refuse("ID_NUMBER_INVALID", field="document_number", type=kind.value, reason=reason)
    birth = _birth_date(number[6:14], today, kind)
    if check_character(number[:17]) != number[17]:
        refuse("ID_NUMBER_CHECKSUM_MISMATCH", field="document_number", type=kind.value)
    family = _family(number)
    # The household register carries the child's citizen number.
    expected = DocumentType.RESIDENT_ID if kind is DocumentType.HOUSEHOLD_REGISTER else kind
    if family is not expected:
        refuse(
            "DOCUMENT_NUMBER_TYPE_MISMATCH",
            field="document_number",
            type=kind.value,
            number_is=family.value,
        )
    area_code: str
    nationality: str | None = None
    if family is DocumentType.FOREIGN_PERMANENT_RESIDENT:
        province, nationality = number[1:3], number[3:6]
        if province not in PROVINCE_CODES - {"71"}:
            refuse("ID_NUMBER_AREA_UNKNOWN", field="document_number", type=kind.value)
        area_code = province + "0000"
    elif family is DocumentType.HMT_RESIDENCE_PERMIT:
        if number[:6] not in _PERMIT_AREAS:
            refuse("ID_NUMBER_AREA_UNKNOWN", field="document_number", type=kind.value)
        area_code = number[:6]
    else:
        if number[:2] not in PROVINCE_CODES:
            refuse("ID_NUMBER_AREA_UNKNOWN", field="document_number", type=kind.value)
        area_code = number[:6]
    return IdentityDocument(
        type=kind,
        number=number,
        holder_number=number,
        birth_date=birth,
        sex=Sex.MALE if int(number[16]) % 2 else Sex.FEMALE,
        area_code=area_code,
        nationality=nationality,
    )


def _birth_date(digits: str, today: date, kind: DocumentType) -> date:
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        refuse(
            "ID_BIRTH_DATE_INVALID", field="document_number", type=kind.value, reason="no_such_day"
        )
    if born < EARLIEST_BIRTH_DATE:
        refuse(
            "ID_BIRTH_DATE_INVALID", field="document_number", type=kind.value, reason="too_early"
        )
    if born > today:
        refuse("ID_BIRTH_DATE_IN_FUTURE", field="document_number", type=kind.value)
    return born


def _permanent_residence_2017(number: str, today: date) -> IdentityDocument:
    """The 15-character card (2004 and 2017 versions): the birth year has two digits only.

    The century is derived only where one alone gives a possible date (on or before ``today``
    and not before 1900); otherwise the birth date is left unknown rather than guessed.
    """
    kind = DocumentType.FOREIGN_PERMANENT_RESIDENT
    _expect(kind, _FPR_2017, number, "18 characters (2023 card) or 3 letters and 12 digits")
    if number[3:5] not in PROVINCE_CODES - {"71"}:
        refuse("ID_NUMBER_AREA_UNKNOWN", field="document_number", type=kind.value)
    yy, month, day = int(number[7:9]), int(number[9:11]), int(number[11:13])
    possible: list[date] = []
    for century in (1900, 2000):
        try:
            candidate = date(century + yy, month, day)
        except ValueError:
            continue
        if candidate <= today:
            possible.append(candidate)
    if not possible:
        # No century gives a real day that has already come.
        if any(_real_day(c + yy, month, day) for c in (1900, 2000)):
            refuse("ID_BIRTH_DATE_IN_FUTURE", field="document_number", type=kind.value)
        refuse(
            "ID_BIRTH_DATE_INVALID", field="document_number", type=kind.value, reason="no_such_day"
        )
    return IdentityDocument(
        type=kind,
        number=number,
        holder_number=number,
        birth_date=possible[0] if len(possible) == 1 else None,
        area_code=number[3:5] + "0000",
        nationality=number[:3],
    )


def _real_day(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True

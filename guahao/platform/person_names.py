"""Patient names (就诊人姓名): what a real name may look like, and its one spelling.

A name is compared with the government's record, printed on hospital slips and matched across
hospitals, so it is kept in one form: NFKC (full-width letters become ASCII), Chinese names
without spaces and with U+00B7 as the middle dot of minority names (people type it as ・ • ．
or a full stop), Latin names upper-case as on a passport's machine-readable zone (ICAO Doc 9303)
with single spaces. Mixing scripts (赵C), digits, symbols and emoji are refused: the public
security organs register none of them (《姓名登记条例》 drafts and the 2009 赵C case), and a
hospital information system could not store them safely.

Which script a document requires is a name rule too: a resident identity card and a household
register carry a Chinese name; the other documents may carry either.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Final

import msgspec

from guahao.platform.error_codes import refuse
from guahao.platform.identity_documents import DocumentType

__all__ = [
    "HAN_NAME_LENGTH",
    "LATIN_NAME_LENGTH",
    "MIDDLE_DOT",
    "NameScript",
    "PersonName",
    "name_scripts_for",
    "normalise_person_name",
    "validate_person_name",
]


class NameScript(StrEnum):
    HAN = "han"
    LATIN = "latin"


class PersonName(msgspec.Struct, frozen=True):
    """A validated name in its one spelling, and the script it is written in."""

    value: str
    script: NameScript


#: Han characters in a Chinese name, middle dots not counted. Two is the shortest real name;
#: transliterated minority names (Uyghur, Tibetan) run well past the 15 of most forms.
HAN_NAME_LENGTH: Final = (2, 30)
#: Characters in a Latin name, separators counted; 70 holds the longest names on passports.
LATIN_NAME_LENGTH: Final = (2, 70)

MIDDLE_DOT: Final = "\u00b7"
# The middle dots people type: U+00B7 itself, katakana middle dot (and its half-width form,
# which NFKC folds into it), bullet, full-width full stop (NFKC: "."), hyphenation point,
# bullet operator and dot operator.
_DOTS: Final = frozenset("\u00b7\u30fb\u2022.\u2027\u2219\u22c5")
_APOSTROPHES: Final = str.maketrans(dict.fromkeys("\u2018\u2019\u02bc\u0060\u00b4\u2032", "'"))
_HYPHENS: Final = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2212", "-"))
_LATIN_SEPARATORS: Final = frozenset(" -',")
_LATIN_TOKENS: Final = re.compile(r"(, |[ \-',])")
_MN: Final = "".join(chr(cp) for cp in range(0x300, 0x370))  # combining diacritical marks
_AROUND_COMMA: Final = re.compile(r"\s*,\s*")
_MAX_RAW_LENGTH: Final = 200

_STRICT_HAN: Final = {DocumentType.RESIDENT_ID, DocumentType.HOUSEHOLD_REGISTER}


def name_scripts_for(document_type: DocumentType) -> frozenset[NameScript]:
    """The scripts a name may be written in for this document.

    >>> sorted(s.value for s in name_scripts_for(DocumentType.PASSPORT))
    ['han', 'latin']
    >>> sorted(s.value for s in name_scripts_for(DocumentType.RESIDENT_ID))
    ['han']
    """
    if document_type in _STRICT_HAN:
        return frozenset({NameScript.HAN})
    return frozenset(NameScript)


def normalise_person_name(raw: str) -> str:
    """The one spelling of a name; idempotent, refuses nothing (``validate_person_name`` does).

    >>> normalise_person_name(" 买买提・艾力 ")
    '买买提·艾力'
    >>> normalise_person_name("o’brien-smith,  ｍａｒｙ")
    "O'BRIEN-SMITH, MARY"
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    if any(_is_han(ch) for ch in text) and not any(_is_latin_letter(ch) for ch in text):
        text = "".join(MIDDLE_DOT if ch in _DOTS else ch for ch in text if not ch.isspace())
        return text
    text = text.translate(_APOSTROPHES).translate(_HYPHENS)
    text = _AROUND_COMMA.sub(", ", " ".join(text.split()))
    return unicodedata.normalize("NFKC", text.upper()).strip()


def validate_person_name(raw: str, document_type: DocumentType | None = None) -> PersonName:
    """Check a patient's name, optionally against the script its document requires.

    >>> validate_person_name("买买提.艾力", DocumentType.RESIDENT_ID)
    PersonName(value='买买提·艾力', script=<NameScript.HAN: 'han'>)
    >>> validate_person_name("张3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    guahao.platform.errors.InvalidInputError: PATIENT_NAME_INVALID: A name is written in ...
    """
    if len(raw) > _MAX_RAW_LENGTH:
        refuse("PATIENT_NAME_LENGTH_INVALID", field="name", reason="too_long")
    text = normalise_person_name(raw)
    if not text:
        refuse("PATIENT_NAME_LENGTH_INVALID", field="name", reason="empty")
    has_han = has_latin = False
    for position, ch in enumerate(text):
        if _is_han(ch):
            has_han = True
        elif _is_latin_letter(ch):
            has_latin = True
        elif unicodedata.category(ch)[0] == "N":
            refuse("PATIENT_NAME_INVALID", field="name", reason="digit")
        elif unicodedata.category(ch)[0] == "L":
            refuse("PATIENT_NAME_INVALID", field="name", reason="script")
        elif ch == MIDDLE_DOT or ch in _LATIN_SEPARATORS:
            continue
        elif unicodedata.category(ch) == "Mn" and _is_latin_letter(
            text[:position].rstrip(_MN)[-1:]
        ):
            continue  # a combining accent NFKC could not compose into its Latin letter
        else:
            refuse("PATIENT_NAME_INVALID", field="name", reason="symbol")
    if has_han and has_latin:
        refuse("PATIENT_NAME_MIXED_SCRIPTS", field="name")
    script = NameScript.HAN if has_han else NameScript.LATIN
    if not has_han and not has_latin:
        refuse("PATIENT_NAME_INVALID", field="name", reason="no_letter")
    if script is NameScript.HAN:
        _check_han(text)
    else:
        _check_latin(text)
    if document_type is not None and script not in name_scripts_for(document_type):
        refuse("PATIENT_NAME_SCRIPT_MISMATCH", field="name", type=document_type.value)
    return PersonName(value=text, script=script)


def _check_han(text: str) -> None:
    if any(ch in _LATIN_SEPARATORS for ch in text):
        refuse("PATIENT_NAME_INVALID", field="name", reason="symbol")
    if any(part == "" for part in text.split(MIDDLE_DOT)):
        refuse("PATIENT_NAME_SEPARATOR_MISPLACED", field="name")
    low, high = HAN_NAME_LENGTH
    if not low <= len(text.replace(MIDDLE_DOT, "")) <= high:
        refuse("PATIENT_NAME_LENGTH_INVALID", field="name", script=NameScript.HAN.value)


def _check_latin(text: str) -> None:
    if MIDDLE_DOT in text:
        refuse("PATIENT_NAME_INVALID", field="name", reason="symbol")
    # Split on separators, keeping them: every piece between two separators holds letters.
    parts = _LATIN_TOKENS.split(text)
    if any(part == "" for part in parts[::2]):
        refuse("PATIENT_NAME_SEPARATOR_MISPLACED", field="name")
    low, high = LATIN_NAME_LENGTH
    if not low <= len(text) <= high:
        refuse("PATIENT_NAME_LENGTH_INVALID", field="name", script=NameScript.LATIN.value)


def _is_han(ch: str) -> bool:
    """Han ideographs, by block, so that extensions newer than Python's Unicode data count."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= cp <= 0x4DBF  # Extension A
        or 0x20000 <= cp <= 0x323AF  # Extensions B to H (including I at 2EBF0)
        or 0xF900 <= cp <= 0xFAFF  # compatibility ideographs NFKC leaves alone
        or cp == 0x3007  # 〇, used in names
    )


def _is_latin_letter(ch: str) -> bool:
    if len(ch) != 1 or not ch.isalpha():
        return False
    try:
        return "LATIN" in unicodedata.name(ch)
    except ValueError:
        return False

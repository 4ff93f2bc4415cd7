"""Identity verification (实名核验): the port, its levels, and the embedded default verifier.

The real verifier is a government service (the public security organs' citizen identity
verification, or the National Immigration Administration's for permanent residence cards) that
says whether a number and a name belong to one living person, sometimes with a face comparison.
Which one a region uses is a deployment choice; the platform only needs the port.

The levels are ordered by how much of the real-name rule (实名制) they establish, and each one
includes the ones below it:

``FORMAT_CHECKED``
    The number has the shape of its document type. All a passport or a travel permit allows
    offline: they carry no check character.
``CHECKSUM_VALID``
    Also: the check character matches and the embedded birth date is a real day that has come.
    Catches typing mistakes and made-up numbers, but says nothing about who holds the number.
``NAME_MATCHED_GOVERNMENT``
    An authoritative register confirmed that this name holds this number. Only an online
    government service can reach it; this is the level real-name booking rules usually ask for.
``FACE_VERIFIED``
    Also: a live face was compared with the register's photograph. Proves the person at the
    screen is the holder, not merely someone who knows their name and number.

Levels are strings on the wire and in storage (values never change; a level may be inserted
between two others later), and compare by their order, never alphabetically.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import msgspec

from guahao.platform.identity_documents import IdentityDocument, validate_document
from guahao.platform.person_names import PersonName, validate_person_name

__all__ = [
    "FormatChecksumVerifier",
    "IdentityVerifier",
    "Verification",
    "VerificationLevel",
]


class VerificationLevel(StrEnum):
    FORMAT_CHECKED = "format_checked"
    CHECKSUM_VALID = "checksum_valid"
    NAME_MATCHED_GOVERNMENT = "name_matched_government"
    FACE_VERIFIED = "face_verified"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def reaches(self, required: VerificationLevel) -> bool:
        """Whether this level is at least ``required``.

        >>> VerificationLevel.CHECKSUM_VALID.reaches(VerificationLevel.FORMAT_CHECKED)
        True
        >>> VerificationLevel.FORMAT_CHECKED < VerificationLevel.CHECKSUM_VALID
        True
        >>> VerificationLevel.FACE_VERIFIED < "zzz"
        Traceback (most recent call last):
        ...
        TypeError: a verification level compares only with another level
        """
        return self.rank >= required.rank

    # Ordered by rank, not by the alphabet of the values (which would put "checksum_valid"
    # below "face_verified" below "format_checked"); a plain string on the left still compares
    # as a string, which Python's reflected operators cannot prevent: compare levels only.
    def __lt__(self, other: str) -> bool:
        return self.rank < _level(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= _level(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > _level(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= _level(other).rank


def _level(other: object) -> VerificationLevel:
    if not isinstance(other, VerificationLevel):
        raise TypeError("a verification level compares only with another level")
    return other


_ORDER: Final = tuple(VerificationLevel)


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """What a verifier established, when, and under which reference.

    ``verifier`` names the implementation (stored, so a level can be re-judged if a verifier is
    found wanting); ``reference`` is the external service's transaction number, ``None`` when
    nothing outside was asked; ``checks`` lists what was actually checked, for the audit trail.
    """

    level: VerificationLevel
    verifier: str
    checked_at: datetime
    reference: str | None = None
    checks: tuple[str, ...] = ()


class IdentityVerifier(Protocol):
    """Establishes how far a document and a name are known to belong to one real person.

    Refuses (with the catalogue's codes) what it finds wrong; returns the level it reached.
    ``checked_at`` is passed in (UTC, from the Clock port) so that verifiers read no clock.
    """

    @property
    def name(self) -> str: ...

    async def verify(
        self, document: IdentityDocument, name: PersonName, *, checked_at: datetime
    ) -> Verification: ...


class FormatChecksumVerifier:
    """The embedded default: checks everything that can be checked without a register.

    It re-validates the number against its type (a document read back from storage is checked
    as strictly as a new one), the name's script against the document, and reaches
    ``CHECKSUM_VALID`` for numbers with a check character, ``FORMAT_CHECKED`` for the others.
    It never claims a name match: nothing here knows who holds a number.
    """

    name: Final = "format_checksum"

    def __init__(self, zone: str = "Asia/Shanghai") -> None:
        # Birth dates are calendar days where people live: for a baby born in Shanghai at
        # 01:00, that day has not yet begun in UTC, so the check uses the region's day.
        self._zone = ZoneInfo(zone)

    async def verify(
        self, document: IdentityDocument, name: PersonName, *, checked_at: datetime
    ) -> Verification:
        if checked_at.tzinfo is None or checked_at.utcoffset() is None:
            raise ValueError("checked_at must be an aware datetime (UTC inside)")
        today = checked_at.astimezone(self._zone).date()
        again = validate_document(document.type, document.number, today=today)
        validate_person_name(name.value, document.type)
        checks = ["format", "name_script"]
        level = VerificationLevel.FORMAT_CHECKED
        if again.birth_date is not None:
            checks.append("birth_date")
        if len(again.number) == 18:  # every 18-character number is GB 11643-style
            checks.append("check_character")
            level = VerificationLevel.CHECKSUM_VALID
        return Verification(
            level=level, verifier=self.name, checked_at=checked_at, checks=tuple(checks)
        )

"""Personal data at rest: encrypted, looked up by keyed hash, shown only masked.

Patient names, document numbers and phones are sealed with AES-256-GCM (a fresh nonce each
time, the field name as associated data so a ciphertext cannot be moved to another column);
documents and phones are found again through an HMAC-SHA256 "blind index", so equality lookups
never need the plaintext. No lookup goes by a patient's name (the verification port is given
the name as entered, staff lists go by session or booking), so names carry no index.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "NAME_FIELD",
    "PersonalDataVault",
    "mask_document",
    "mask_middle",
    "mask_name",
    "mask_phone",
    "open_patient_name",
    "patient_name",
]

NAME_FIELD = "patient_name"
"""The associated data a patient's sealed name is bound to."""


class PersonalDataVault:
    """Seals, opens and hashes personal fields with keys derived from one data key."""

    def __init__(self, data_key: str) -> None:
        key = base64.b64decode(data_key)
        if len(key) != 32:
            raise ValueError("the data key must be 32 bytes, base64-encoded")
        self._aead = AESGCM(hashlib.sha256(b"guahao/aead/" + key).digest())
        self._index_key = hashlib.sha256(b"guahao/index/" + key).digest()

    def seal(self, field: str, value: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), field.encode())

    def open(self, field: str, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], field.encode()).decode()

    def index(self, field: str, value: str) -> str:
        """A keyed hash of the normalised value: equal inputs, equal hashes, nothing else."""
        return hmac.new(
            self._index_key, f"{field}\x00{value.strip().upper()}".encode(), hashlib.sha256
        ).hexdigest()


def mask_document(number: str) -> str:
    """Keep the area code and the last four characters.

    >>> mask_document("11010519491231002X")
    '110105********002X'
    >>> mask_document("E12345678")
    'E12****78'
    """
    if len(number) >= 15:
        return mask_middle(number, 6, 4)
    keep = max(1, len(number) // 4)
    return mask_middle(number, keep + 1, keep)


def mask_middle(value: str, head: int, tail: int) -> str:
    """Keep ``head`` characters at the start and ``tail`` at the end, star the rest.

    A value too short to keep that much is starred whole: a mask never shows more than asked.

    >>> mask_middle("13812345678", 3, 4), mask_middle("1234", 3, 4)
    ('138****5678', '****')
    """
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_name(name: str) -> str:
    """Keep the first character of a name.

    >>> mask_name("张三"), mask_name("欧阳娜娜"), mask_name("X")
    ('张*', '欧***', '*')
    """
    return mask_middle(name, 1, 0)


def mask_phone(phone: str) -> str:
    """Keep the first three and the last four digits.

    >>> mask_phone("13812345678")
    '138****5678'
    """
    if len(phone) < 7:
        return "*" * len(phone)
    return mask_middle(phone, 3, 4)


class _NamedPatient(Protocol):
    clear_name: str | None
    name_enc: bytes | None


def patient_name(vault: PersonalDataVault, row: _NamedPatient) -> str:
    """A patient's name: opened from its seal, or, for a row the backfill has not reached yet
    (written by a release before migration 0012), the clear column."""
    return open_patient_name(vault, row.name_enc, row.clear_name)


def open_patient_name(vault: PersonalDataVault, sealed: bytes | None, clear: str | None) -> str:
    """``patient_name`` for the two columns selected on their own (``name_enc``, ``name``)."""
    if sealed is not None:
        return vault.open(NAME_FIELD, sealed)
    return clear or ""

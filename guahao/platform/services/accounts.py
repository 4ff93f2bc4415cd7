"""Accounts (账号) and the patients (就诊人) each one manages.

The full real-name rules (document types, limits, verification levels) belong to the rules
work; here every patient already carries a validated document, sealed at rest, and the
account's phone is sealed too. Passwords are hashed with scrypt (memory-hard, in the standard
library).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from typing import Literal

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import AccountRow, PatientRow, PersonRow
from guahao.platform.personal_data import mask_document, mask_phone
from guahao.platform.services.runtime import Ports

__all__ = ["AccountService", "PatientView", "check_resident_id", "hash_password", "verify_password"]

DocumentType = Literal[
    "resident_id",
    "passport",
    "hk_macao_permit",
    "taiwan_permit",
    "foreign_permanent_resident",
    "household_register",
]
PHONE = re.compile(r"^1[3-9]\d{9}$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_resident_id(number: str) -> str:
    """Normalise and check a resident identity number (GB 11643-1999); returns it upper-case.

    >>> check_resident_id("11010519491231002x")
    '11010519491231002X'
    >>> check_resident_id("110105194912310021")
    Traceback (most recent call last):
    ...
    guahao.platform.errors.InvalidInputError: ID_NUMBER_INVALID: The identity number is invalid
    """
    value = unicodedata.normalize("NFKC", number).strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        refuse("ID_NUMBER_INVALID", reason="format")
    total = sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True))
    if _CHECK[total % 11] != value[17]:
        refuse("ID_NUMBER_INVALID", reason="check_character")
    return value


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
    except ValueError:
        return False
    again = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=2**14, r=8, p=1)
    return hmac.compare_digest(again, base64.b64decode(digest))


class PatientView(msgspec.Struct, frozen=True, rename="camel"):
    """A patient as shown: masked, never the plain document or phone."""

    id: str
    name: str
    relation: str
    document_type: str
    document_masked: str
    phone_masked: str


class AccountService:
    """Register, sign in, and manage the patients of an account."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def register(self, *, phone: str, password: str, display_name: str = "") -> str:
        phone = unicodedata.normalize("NFKC", phone).strip()
        if not PHONE.fullmatch(phone):
            refuse("VALIDATION_FAILED", field="phone")
        if len(password) < 8:
            refuse("VALIDATION_FAILED", field="password", reason="at least 8 characters")
        account_id = new_id()
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(
                    AccountRow(
                        id=account_id,
                        phone_hash=self._p.vault.index("phone", phone),
                        phone_enc=self._p.vault.seal("phone", phone),
                        password_hash=hash_password(password),
                        display_name=display_name,
                        created_at=self._p.clock.now(),
                    )
                )
        except IntegrityError:
            refuse("ACCOUNT_EXISTS")
        return account_id

    async def authenticate(self, *, phone: str, password: str) -> str:
        phone = unicodedata.normalize("NFKC", phone).strip()
        async with self._p.sessions() as session:
            row = await session.scalar(
                select(AccountRow).where(
                    AccountRow.phone_hash == self._p.vault.index("phone", phone)
                )
            )
        if row is None or not verify_password(password, row.password_hash):
            refuse("CREDENTIALS_INVALID")
        return row.id

    async def add_patient(
        self,
        *,
        account_id: str,
        name: str,
        document_type: DocumentType,
        document_number: str,
        phone: str = "",
        relation: str = "self",
    ) -> PatientView:
        name = unicodedata.normalize("NFKC", name).strip()
        if not name or len(name) > 50 or any(ch.isdigit() for ch in name):
            refuse("VALIDATION_FAILED", field="name")
        if document_type == "resident_id":
            number = check_resident_id(document_number)
        else:
            number = unicodedata.normalize("NFKC", document_number).strip().upper()
            if not re.fullmatch(r"[A-Z0-9]{5,20}", number):
                refuse("ID_NUMBER_INVALID", reason="format")
        if phone and not PHONE.fullmatch(phone):
            refuse("VALIDATION_FAILED", field="phone")
        document_hash = self._p.vault.index("document", f"{document_type}:{number}")
        row = PatientRow(
            id=new_id(),
            account_id=account_id,
            person_id="",
            name=name,
            relation=relation,
            document_type=document_type,
            document_hash=document_hash,
            document_enc=self._p.vault.seal("document", number),
            document_masked=mask_document(number),
            phone_enc=self._p.vault.seal("phone", phone) if phone else None,
            phone_masked=mask_phone(phone) if phone else "",
            created_at=self._p.clock.now(),
        )
        try:
            async with self._p.sessions() as session, session.begin():
                row.person_id = await self._person_for(session, document_hash, document_type)
                session.add(row)
        except IntegrityError:
            refuse("VALIDATION_FAILED", field="document_number", reason="already a patient here")
        return _view(row)

    async def _person_for(
        self, session: AsyncSession, document_hash: str, document_type: str
    ) -> str:
        person = await session.scalar(
            select(PersonRow).where(PersonRow.document_hash == document_hash)
        )
        if person is None:
            person = PersonRow(
                id=new_id(),
                document_hash=document_hash,
                document_type=document_type,
                created_at=self._p.clock.now(),
            )
            session.add(person)
            await session.flush()
        return person.id

    async def patients(self, account_id: str) -> list[PatientView]:
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(PatientRow)
                    .where(PatientRow.account_id == account_id)
                    .order_by(PatientRow.created_at)
                )
            ).all()
        return [_view(r) for r in rows]


def _view(row: PatientRow) -> PatientView:
    return PatientView(
        id=row.id,
        name=row.name,
        relation=row.relation,
        document_type=row.document_type,
        document_masked=row.document_masked,
        phone_masked=row.phone_masked,
    )

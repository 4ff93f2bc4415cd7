"""Staff accounts of the health authority and of hospitals (never citizens).

Roles:

- ``authority_admin``: the health authority's officers: decide appeals, add and lift bans,
  review suspicion signals, read everything.
- ``authority_auditor``: read-only: bans, appeals, person records, the audit log, signals.
- ``hospital_staff``: a hospital's own staff, tied to one hospital; no blacklist powers.

Passwords are scrypt-hashed exactly as citizens' are. Creating staff is audited.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from guahao.platform.client_context import ClientContext
from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.passwords import (
    hash_password_off_loop,
    verify_password_off_loop,
    verify_unknown_off_loop,
)
from guahao.platform.persistence.tables import HospitalRow, StaffAccountRow
from guahao.platform.services.audit import SYSTEM_ACTOR, record_audit
from guahao.platform.services.runtime import Ports
from guahao.platform.services.sign_in_delays import SignInDelays

__all__ = [
    "AUTHORITY_ROLES",
    "StaffActor",
    "StaffRole",
    "StaffService",
    "StaffView",
    "require_role",
]


class StaffRole(StrEnum):
    AUTHORITY_ADMIN = "authority_admin"
    AUTHORITY_AUDITOR = "authority_auditor"
    HOSPITAL_STAFF = "hospital_staff"


AUTHORITY_ROLES = frozenset({StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR})


STAFF_DELAYS_PREFIX = "staff-sign-in-pw"
"""The Redis key prefix of staff sign-in delays (apart from citizens')."""


class StaffActor(msgspec.Struct, frozen=True):
    """Who is acting: what every staff command takes and what the audit log records."""

    id: str
    username: str
    role: StaffRole
    hospital_id: str | None = None


class StaffView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    username: str
    display_name: str
    role: str
    hospital_id: str | None
    active: bool
    created_at: datetime


def _view(row: StaffAccountRow) -> StaffView:
    return StaffView(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
        hospital_id=row.hospital_id,
        active=row.active,
        created_at=row.created_at,
    )


def _username(value: str) -> str:
    name = unicodedata.normalize("NFKC", value).strip().lower()
    if not (3 <= len(name) <= 64) or not name.replace("_", "").replace(".", "").isalnum():
        refuse("VALIDATION_FAILED", field="username", reason="3-64 letters, digits, _ or .")
    return name


class StaffService:
    """Create, authenticate and look up staff."""

    def __init__(self, ports: Ports, delays: SignInDelays | None = None) -> None:
        self._p = ports
        self._delays = delays
        """Waits after wrong passwords; ``None`` only where nobody signs in (tools)."""

    async def create(
        self,
        *,
        username: str,
        password: str,
        role: str,
        hospital_code: str | None = None,
        display_name: str = "",
        created_by: StaffActor | None = None,
    ) -> StaffView:
        """A new staff account; ``hospital_code`` is required for (and only for) hospital
        staff. ``created_by`` is None when the operator uses the CLI on the server."""
        name = _username(username)
        if len(password) < 10:
            refuse("VALIDATION_FAILED", field="password", reason="at least 10 characters")
        try:
            staff_role = StaffRole(role)
        except ValueError:
            refuse("STAFF_ROLE_INVALID", role=role)
        if (staff_role is StaffRole.HOSPITAL_STAFF) != bool(hospital_code):
            refuse("STAFF_ROLE_INVALID", role=role, hospital=hospital_code or "")
        now = self._p.clock.now()
        password_hash = await hash_password_off_loop(password)
        try:
            async with self._p.sessions() as session, session.begin():
                hospital_id = None
                if hospital_code:
                    hospital_id = await session.scalar(
                        select(HospitalRow.id).where(HospitalRow.code == hospital_code)
                    )
                    if hospital_id is None:
                        refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
                row = StaffAccountRow(
                    id=new_id(),
                    username=name,
                    password_hash=password_hash,
                    display_name=display_name,
                    role=staff_role.value,
                    hospital_id=hospital_id,
                    active=True,
                    created_at=now,
                )
                session.add(row)
                await session.flush()
                record_audit(
                    session,
                    created_by.username if created_by else SYSTEM_ACTOR,
                    created_by.role if created_by else "operator",
                    "staff.create",
                    "staff",
                    row.id,
                    {"username": name, "role": staff_role.value, "hospital_id": hospital_id},
                    now,
                )
        except IntegrityError:
            refuse("STAFF_USERNAME_TAKEN", username=name)
        return _view(row)

    async def authenticate(
        self, *, username: str, password: str, client: ClientContext | None = None
    ) -> StaffActor:
        """Wrong passwords space out further attempts for the username and the address, as
        for citizens (``SignInDelays``), but never lock the owner out: a lock after ten wrong
        passwords let anyone keep an officer out for fifteen minutes by typing ten."""
        name = unicodedata.normalize("NFKC", username).strip().lower()
        subject = self._p.vault.index("staff-username", name)
        address = client.ip_hash if client is not None else ""
        if self._delays is not None:
            await self._delays.check(subject, address)
        async with self._p.sessions() as session:
            row = await session.scalar(
                select(StaffAccountRow).where(StaffAccountRow.username == name)
            )
        if row is None:  # the same work as a real check: timing does not tell who is staff
            await verify_unknown_off_loop(password)
            right = False
        else:
            right = await verify_password_off_loop(password, row.password_hash) and row.active
        if row is None or not right:
            delay = 0
            if self._delays is not None:
                delay = await self._delays.failed(subject, address)
            refuse("STAFF_CREDENTIALS_INVALID", retry_after_seconds=delay)
        if self._delays is not None:
            await self._delays.succeeded(subject)
        return _actor(row)

    async def actor(self, staff_id: str) -> StaffActor | None:
        """The staff member as they stand now (None if gone or deactivated): guards check
        this on every request, so a deactivation or role change takes effect at once."""
        async with self._p.sessions() as session:
            row = await session.get(StaffAccountRow, staff_id)
        if row is None or not row.active:
            return None
        return _actor(row)

    async def deactivate(self, staff_id: str, *, by: StaffActor) -> None:
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(StaffAccountRow, staff_id)
            if row is None:
                refuse("STAFF_NOT_FOUND", staff_id=staff_id)
            row.active = False
            record_audit(
                session, by.username, by.role, "staff.deactivate", "staff", staff_id, {}, now
            )


def require_role(staff: StaffActor, *roles: StaffRole) -> None:
    """Refuse ``STAFF_ROLE_REQUIRED`` unless ``staff`` has one of ``roles`` (services check
    this themselves: the web guard is not the only way in)."""
    if staff.role not in roles:
        refuse("STAFF_ROLE_REQUIRED", role=staff.role.value, needs=[r.value for r in roles])


def _actor(row: StaffAccountRow) -> StaffActor:
    return StaffActor(
        id=row.id, username=row.username, role=StaffRole(row.role), hospital_id=row.hospital_id
    )

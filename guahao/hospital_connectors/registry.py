"""The connector layer's own records: registrations, OAuth2 clients, message log, sync runs.

These tables belong to the connectors (``connector_tables.py``); the platform's own tables are
only ever changed through its services.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.hospital_connectors.mllp_senders import binding_of
from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.passwords import (
    hash_password_off_loop,
    verify_password_off_loop,
    verify_unknown_off_loop,
)
from guahao.platform.persistence.connector_tables import (
    ConnectorMessageRow,
    ConnectorRow,
    HospitalClientRow,
    SyncRunRow,
)
from guahao.platform.persistence.tables import HospitalRow

__all__ = [
    "SCOPES",
    "ConnectorHealth",
    "ConnectorInfo",
    "ConnectorRegistry",
    "HospitalClient",
    "IssuedClient",
]

Kind = Literal["fhir", "hl7v2", "push", "batch"]

SCOPES = ("hospital:push", "hospital:read")
"""What a hospital's OAuth2 client may be granted: the vocabulary of the clients this registry
issues, read by the push API's guard (``guahao.web.hospital_auth``) to check a token."""


class ConnectorInfo(msgspec.Struct, frozen=True):
    id: str
    hospital_id: str
    hospital_code: str
    timezone: str
    kind: Kind
    base_url: str
    config: dict[str, Any]
    notify: bool
    sync_cursor: datetime | None


class IssuedClient(msgspec.Struct, frozen=True):
    """Shown once at onboarding: the secret is stored only as a hash."""

    client_id: str
    client_secret: str
    hospital_code: str


class HospitalClient(msgspec.Struct, frozen=True):
    """An OAuth2 client as the authority and the hospital see it (the secret never)."""

    client_id: str
    hospital_code: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ConnectorHealth(msgspec.Struct, frozen=True):
    """For the console: how a connector is doing."""

    hospital_code: str
    kind: str
    last_sync_at: datetime | None
    last_status: str
    lag_seconds: float | None
    runs: int
    failures: int
    error_rate: float
    last_error: str | None


class ConnectorRegistry:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self.on_change: list[Callable[[], None]] = []
        """Called after a registration changed (caches of connector facts forget them)."""

    async def register(
        self,
        hospital_code: str,
        kind: Kind,
        *,
        base_url: str = "",
        config: dict[str, Any] | None = None,
        notify: bool = False,
    ) -> ConnectorInfo:
        """Record (or update) how a hospital's system is reached.

        An ``hl7v2`` connector must carry a sender binding (``mllp_senders``): without one,
        anyone who reaches the MLLP port could speak for the hospital.
        """
        if kind == "hl7v2" and not binding_of(config or {}).bound:
            refuse("HL7_SENDER_BINDING_INVALID", hospital_code=hospital_code, field="senders")
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            hospital = await session.scalar(
                select(HospitalRow).where(HospitalRow.code == hospital_code)
            )
            if hospital is None:
                refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
            row = await session.scalar(
                select(ConnectorRow).where(
                    ConnectorRow.hospital_id == hospital.id, ConnectorRow.kind == kind
                )
            )
            if row is None:
                row = ConnectorRow(
                    id=new_id(), hospital_id=hospital.id, kind=kind, created_at=now, active=True
                )
                session.add(row)
            row.base_url = base_url.rstrip("/")
            row.config = dict(config or {})
            row.notify = notify
            row.updated_at = now
        for changed in self.on_change:
            changed()
        return await self.get(hospital_code, kind)

    async def get(self, hospital_code: str, kind: str) -> ConnectorInfo:
        found = [c for c in await self.all() if c.hospital_code == hospital_code and c.kind == kind]
        if not found:
            refuse("CONNECTOR_NOT_FOUND", hospital_code=hospital_code, kind=kind)
        return found[0]

    async def all(self) -> list[ConnectorInfo]:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(ConnectorRow, HospitalRow.code, HospitalRow.timezone)
                    .join(HospitalRow, HospitalRow.id == ConnectorRow.hospital_id)
                    .where(ConnectorRow.active.is_(True))
                    .order_by(HospitalRow.code, ConnectorRow.kind)
                )
            ).all()
        return [
            ConnectorInfo(
                id=row.id,
                hospital_id=row.hospital_id,
                hospital_code=code,
                timezone=zone,
                kind=row.kind,  # type: ignore[arg-type]
                base_url=row.base_url,
                config=row.config,
                notify=row.notify,
                sync_cursor=row.sync_cursor,
            )
            for row, code, zone in rows
        ]

    async def by_facility(self, facility: str) -> ConnectorInfo | None:
        """The HL7 v2 connector whose sending facility (MSH-4) is ``facility``."""
        for info in await self.all():
            if info.kind == "hl7v2" and info.config.get("facility") == facility:
                return info
        return None

    async def set_cursor(self, connector_id: str, cursor: datetime) -> None:
        async with self._sessions() as session, session.begin():
            row = await session.get(ConnectorRow, connector_id)
            if row is not None:
                row.sync_cursor = cursor

    # ------------------------------------------------------------------ OAuth2 clients

    async def issue_client(self, hospital_code: str, scopes: list[str]) -> IssuedClient:
        """A new client id and secret for the hospital (the secret is returned only here)."""
        client_id = f"{hospital_code}.{secrets.token_hex(6)}"
        secret = secrets.token_urlsafe(32)
        secret_hash = await hash_password_off_loop(secret)
        async with self._sessions() as session, session.begin():
            hospital = await session.scalar(
                select(HospitalRow).where(HospitalRow.code == hospital_code)
            )
            if hospital is None:
                refuse("HOSPITAL_NOT_FOUND", hospital_code=hospital_code)
            session.add(
                HospitalClientRow(
                    client_id=client_id,
                    hospital_id=hospital.id,
                    secret_hash=secret_hash,
                    scopes=scopes,
                    created_at=self._clock.now(),
                )
            )
        return IssuedClient(client_id, secret, hospital_code)

    async def authenticate(self, client_id: str, secret: str) -> tuple[str, list[str]]:
        """The hospital code and scopes of valid client credentials."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(HospitalClientRow, HospitalRow.code)
                    .join(HospitalRow, HospitalRow.id == HospitalClientRow.hospital_id)
                    .where(HospitalClientRow.client_id == client_id)
                )
            ).first()
        if found is None:
            # the same work as a real check, so a missing client cannot be told by timing
            await verify_unknown_off_loop(secret)
            refuse("HOSPITAL_CLIENT_INVALID")
        client, code = found
        valid = await verify_password_off_loop(secret, client.secret_hash)
        if client.revoked_at is not None or not valid:
            refuse("HOSPITAL_CLIENT_INVALID")
        return code, list(client.scopes)

    async def client_active(self, client_id: str) -> bool:
        """Whether a client may still act: checked on every push-API request, so that a revoked
        client's tokens stop working at once rather than when they expire."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(HospitalClientRow.revoked_at).where(
                        HospitalClientRow.client_id == client_id
                    )
                )
            ).first()
        return found is not None and found.revoked_at is None

    async def clients(self, hospital_code: str) -> list[HospitalClient]:
        """A hospital's OAuth2 clients, newest first (never their secrets)."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(HospitalClientRow)
                    .join(HospitalRow, HospitalRow.id == HospitalClientRow.hospital_id)
                    .where(HospitalRow.code == hospital_code)
                    .order_by(HospitalClientRow.created_at.desc())
                )
            ).scalars()
            return [
                HospitalClient(
                    client_id=row.client_id,
                    hospital_code=hospital_code,
                    scopes=list(row.scopes),
                    created_at=row.created_at,
                    revoked_at=row.revoked_at,
                )
                for row in rows
            ]

    async def revoke_client(self, client_id: str) -> HospitalClient:
        """Revoke a client: its secret no longer signs in and its tokens stop working.

        Revoking twice keeps the first time. ``HOSPITAL_CLIENT_INVALID`` for an unknown id.
        """
        async with self._sessions() as session, session.begin():
            found = (
                await session.execute(
                    select(HospitalClientRow, HospitalRow.code)
                    .join(HospitalRow, HospitalRow.id == HospitalClientRow.hospital_id)
                    .where(HospitalClientRow.client_id == client_id)
                )
            ).first()
            if found is None:
                refuse("HOSPITAL_CLIENT_INVALID", client_id=client_id)
            row, code = found
            if row.revoked_at is None:
                row.revoked_at = self._clock.now()
            return HospitalClient(
                client_id=row.client_id,
                hospital_code=code,
                scopes=list(row.scopes),
                created_at=row.created_at,
                revoked_at=row.revoked_at,
            )

    # ------------------------------------------------------------------ message log

    async def answered(
        self, hospital_id: str, channel: str, control_id: str
    ) -> ConnectorMessageRow | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(ConnectorMessageRow).where(
                    ConnectorMessageRow.hospital_id == hospital_id,
                    ConnectorMessageRow.channel == channel,
                    ConnectorMessageRow.control_id == control_id,
                )
            )

    async def remember(
        self,
        hospital_id: str,
        channel: str,
        control_id: str,
        message_type: str,
        outcome: str,
        detail: str,
    ) -> bool:
        """Log an answered message; False if a concurrent copy was logged first."""
        try:
            async with self._sessions() as session, session.begin():
                session.add(
                    ConnectorMessageRow(
                        id=new_id(),
                        hospital_id=hospital_id,
                        channel=channel,
                        control_id=control_id[:100],
                        message_type=message_type[:32],
                        outcome=outcome,
                        detail=detail[:4000],
                        received_at=self._clock.now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    # ------------------------------------------------------------------ sync runs

    async def start_run(self, connector_id: str) -> str:
        run_id = new_id()
        async with self._sessions() as session, session.begin():
            session.add(
                SyncRunRow(
                    id=run_id,
                    connector_id=connector_id,
                    started_at=self._clock.now(),
                    status="running",
                )
            )
        return run_id

    async def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        received: int = 0,
        created: int = 0,
        changed: int = 0,
        drift: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        async with self._sessions() as session, session.begin():
            row = await session.get(SyncRunRow, run_id)
            assert row is not None
            row.finished_at = self._clock.now()
            row.status = status
            row.received, row.created, row.changed = received, created, changed
            row.drift = drift or {}
            row.error = error

    async def health(
        self, window: int = 50, *, hospital_code: str | None = None
    ) -> list[ConnectorHealth]:
        """Last sync, lag behind now and error rate over the last ``window`` runs (of one
        hospital's connectors only when ``hospital_code`` is given: its console's view)."""
        now = self._clock.now()
        result = []
        for info in await self.all():
            if hospital_code is not None and info.hospital_code != hospital_code:
                continue
            async with self._sessions() as session:
                runs = (
                    await session.scalars(
                        select(SyncRunRow)
                        .where(SyncRunRow.connector_id == info.id, SyncRunRow.status != "running")
                        .order_by(SyncRunRow.started_at.desc())
                        .limit(window)
                    )
                ).all()
                total = await session.scalar(
                    select(func.count()).where(SyncRunRow.connector_id == info.id)
                )
            ok = next((r for r in runs if r.status == "ok"), None)
            failures = sum(1 for r in runs if r.status == "failed")
            result.append(
                ConnectorHealth(
                    hospital_code=info.hospital_code,
                    kind=info.kind,
                    last_sync_at=ok.finished_at if ok else None,
                    last_status=runs[0].status if runs else "never",
                    lag_seconds=(now - ok.finished_at).total_seconds()
                    if ok and ok.finished_at
                    else None,
                    runs=int(total or 0),
                    failures=failures,
                    error_rate=failures / len(runs) if runs else 0.0,
                    last_error=next((r.error for r in runs if r.error), None),
                )
            )
        return result


def fingerprint(*parts: bytes) -> str:
    return hashlib.sha256(b"\n".join(parts)).hexdigest()

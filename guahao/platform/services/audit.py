"""The audit log (审计日志): every change made by staff (or by the platform to the blacklist)
and every staff access to personal data, written in the same transaction as the thing it
records, so an action without its audit row cannot exist. Append-only: nothing here updates
or deletes a row, and each row is linked into a hash chain as it is inserted
(guahao/platform/persistence/audit_chain.py), so a row changed or removed behind the
platform's back is found by ``guahao audit verify``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.persistence.audit_chain import ChainReport, verify_chain
from guahao.platform.persistence.tables import AuditRow
from guahao.platform.services.runtime import Ports

__all__ = ["SYSTEM_ACTOR", "AuditEntry", "AuditLog", "AuditPage", "record_audit"]

SYSTEM_ACTOR = "system"
"""The actor of changes the platform makes by itself (automatic bans)."""


def record_audit(
    session: AsyncSession,
    actor: str,
    role: str,
    action: str,
    subject_type: str,
    subject_id: str,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    """Add one audit row to the caller's transaction (it commits or rolls back with it).

    ``detail`` must already be masked: the audit log is itself read by staff.
    """
    session.add(
        AuditRow(
            actor=actor,
            actor_role=role,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=msgspec.to_builtins(detail),
            at=now,
        )
    )


class AuditEntry(msgspec.Struct, frozen=True, rename="camel"):
    id: int
    actor: str
    actor_role: str
    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]
    at: datetime


class AuditPage(msgspec.Struct, frozen=True, rename="camel"):
    items: list[AuditEntry]
    total: int
    page: int
    per_page: int


class AuditLog:
    """The authority's query over the audit log (newest first, paged)."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def query(
        self,
        *,
        subject_type: str | None = None,
        subject_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> AuditPage:
        page, per_page = max(page, 1), min(max(per_page, 1), 200)
        filters = []
        if subject_type:
            filters.append(AuditRow.subject_type == subject_type)
        if subject_id:
            filters.append(AuditRow.subject_id == subject_id)
        if actor:
            filters.append(AuditRow.actor == actor)
        if action:
            filters.append(AuditRow.action == action)
        if since is not None:
            filters.append(AuditRow.at >= since)
        if until is not None:
            filters.append(AuditRow.at < until)
        async with self._p.sessions() as session:
            total = int(
                await session.scalar(select(func.count()).select_from(AuditRow).where(*filters))
                or 0
            )
            rows = (
                await session.scalars(
                    select(AuditRow)
                    .where(*filters)
                    .order_by(AuditRow.at.desc(), AuditRow.id.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            ).all()
        return AuditPage(
            items=[
                AuditEntry(
                    id=r.id,
                    actor=r.actor,
                    actor_role=r.actor_role,
                    action=r.action,
                    subject_type=r.subject_type,
                    subject_id=r.subject_id,
                    detail=r.detail,
                    at=r.at,
                )
                for r in rows
            ],
            total=total,
            page=page,
            per_page=per_page,
        )

    async def record_export(
        self, actor: str, role: str, filters: dict[str, Any], rows: int
    ) -> None:
        """A copy of the log taken away from the platform (the console's CSV/XLSX export) is
        itself recorded: who took which part, and how many rows."""
        async with self._p.sessions() as session, session.begin():
            record_audit(
                session,
                actor,
                role,
                "audit.export",
                "audit_log",
                "*",
                {"filters": filters, "rows": rows},
                self._p.clock.now(),
            )

    async def verify(self) -> ChainReport:
        """Walk the whole hash chain (``guahao audit verify``); reads in batches of 1,000."""
        async with self._p.sessions() as session:
            return await verify_chain(session)

"""How bans, strikes and appeals read: the views given to citizens and the authority, and
the words and times people see (policy labels, the region's wall clock, masked names).

Pure shaping of rows already read; the reads themselves belong to the services that audit
them (``blacklist``, ``appeals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.persistence.tables import (
    BlacklistAppealRow,
    BlacklistEntryRow,
    HospitalRow,
    StrikeRow,
)
from guahao.platform.personal_data import mask_name
from guahao.platform.services.accounts import REGION_ZONE
from guahao.platform.strikes import Strike, StrikePolicy, in_window

__all__ = [
    "POLICY_LABELS",
    "AppealView",
    "BanView",
    "PersonPatient",
    "PersonRecord",
    "PolicyProgress",
    "Standing",
    "StrikeView",
    "appeal_view",
    "ban_view",
    "citizen_appeal_view",
    "citizen_ban_view",
    "is_active",
    "label_of",
    "local_time",
    "mask_name",
    "progress",
    "strike_views",
]

POLICY_LABELS = {
    "no_show": "爽约",
    "cancellations": "退号",
    "violations": "违约（临近退号或未支付）",
}
"""How the default policies are named to patients (other policies show their own name)."""


def local_time(instant: datetime) -> str:
    """A moment as people of the region read it (their wall clock, to the minute).

    >>> from datetime import UTC
    >>> local_time(datetime(2026, 6, 1, 16, 0, tzinfo=UTC))
    '2026-06-02 00:00'
    """
    return instant.astimezone(ZoneInfo(REGION_ZONE)).strftime("%Y-%m-%d %H:%M")


def label_of(policy: str | None) -> str:
    """The Chinese label of a policy.

    >>> label_of("no_show"), label_of("custom")
    ('爽约', 'custom')
    """
    return POLICY_LABELS.get(policy or "", policy or "")


class BanView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    person_id: str
    policy: str
    reason: str
    source: str
    starts_at: datetime
    ends_at: datetime
    active: bool
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    lift_reason: str | None


class AppealView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    entry_id: str
    person_id: str
    account_id: str
    statement: str
    status: str
    filed_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None


class StrikeView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    kind: str
    occurred_at: datetime
    booking_id: str | None
    hospital_id: str | None
    hospital_name: str | None
    note: str


class PolicyProgress(msgspec.Struct, frozen=True, rename="camel"):
    """Where a person stands against one policy right now."""

    policy: str
    counted: int
    threshold: int
    window_days: int
    ban_days: int
    remaining: int


class Standing(msgspec.Struct, frozen=True, rename="camel"):
    """A patient's own view: strikes, how close to a ban, the ban and appeals."""

    patient_id: str
    strikes: list[StrikeView]
    policies: list[PolicyProgress]
    ban: BanView | None
    appeal_until: datetime | None
    appeals: list[AppealView]


class PersonPatient(msgspec.Struct, frozen=True, rename="camel"):
    """One account's patient record of the person, masked."""

    patient_id: str
    account_id: str
    name_masked: str
    relation: str
    document_type: str
    document_masked: str
    phone_masked: str


class PersonRecord(msgspec.Struct, frozen=True, rename="camel"):
    """The authority's view of one person (masked): who they are to each account, their
    strikes, bans and appeals."""

    person_id: str
    document_type: str
    patients: list[PersonPatient]
    strikes: list[StrikeView]
    bans: list[BanView]
    appeals: list[AppealView]


def is_active(entry: BlacklistEntryRow, now: datetime) -> bool:
    """In force now: started, not ended, not lifted."""
    return entry.lifted_at is None and entry.starts_at <= now < entry.ends_at


def ban_view(entry: BlacklistEntryRow, now: datetime) -> BanView:
    """A blacklist entry as citizens and the authority see it."""
    return BanView(
        id=entry.id,
        person_id=entry.person_id,
        policy=entry.policy,
        reason=entry.reason,
        source=entry.source,
        starts_at=entry.starts_at,
        ends_at=entry.ends_at,
        active=is_active(entry, now),
        created_by=entry.created_by,
        created_at=entry.created_at,
        lifted_at=entry.lifted_at,
        lifted_by=entry.lifted_by,
        lift_reason=entry.lift_reason,
    )


def appeal_view(row: BlacklistAppealRow) -> AppealView:
    """An appeal as its appellant and the authority see it."""
    return AppealView(
        id=row.id,
        entry_id=row.entry_id,
        person_id=row.person_id,
        account_id=row.account_id,
        statement=row.statement,
        status=row.status,
        filed_at=row.filed_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
    )


def citizen_ban_view(entry: BlacklistEntryRow, now: datetime) -> BanView:
    """A ban as the banned person's accounts see it: without the names of the staff who
    imposed or lifted it (a citizen has no use for them, and anyone who added the person's
    number to an account could otherwise read them)."""
    return msgspec.structs.replace(ban_view(entry, now), created_by="", lifted_by=None)


def citizen_appeal_view(row: BlacklistAppealRow) -> AppealView:
    """An appeal as its appellant sees it: the decision and its reason, not who decided."""
    return msgspec.structs.replace(appeal_view(row), decided_by=None)


async def strike_views(session: AsyncSession, rows: Sequence[StrikeRow]) -> list[StrikeView]:
    """Strikes with the names of their hospitals (one query for all of them)."""
    ids = {r.hospital_id for r in rows if r.hospital_id}
    names: dict[str, str] = {}
    if ids:
        found = await session.execute(
            select(HospitalRow.id, HospitalRow.name).where(HospitalRow.id.in_(ids))
        )
        names = {str(row[0]): str(row[1]) for row in found.all()}
    return [
        StrikeView(
            id=r.id,
            kind=r.kind,
            occurred_at=r.occurred_at,
            booking_id=r.booking_id,
            hospital_id=r.hospital_id,
            hospital_name=names.get(r.hospital_id) if r.hospital_id else None,
            note=r.note,
        )
        for r in rows
    ]


def progress(
    policies: Sequence[StrikePolicy],
    strikes: Sequence[Strike],
    since: dict[str, datetime],
    now: datetime,
) -> list[PolicyProgress]:
    """Where the person stands against each policy (strikes after the last ban by it count)."""
    out = []
    for p in policies:
        floor = since.get(p.name)
        counted = in_window(p, [s for s in strikes if floor is None or s.occurred_at > floor], now)
        out.append(
            PolicyProgress(
                policy=p.name,
                counted=counted,
                threshold=p.threshold,
                window_days=p.window_days,
                ban_days=p.ban_days,
                remaining=max(p.threshold - counted, 0),
            )
        )
    return out

"""What the strike recorder, the authority and appeals share about the blacklist's rows: where
the rules in force come from, reading a person's strikes, lifting an entry, the notifications
and outbox payloads of bans.

One copy of each, so a ban lifted by an appeal and one lifted by hand tell people the same
thing and publish the same event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BlacklistEntryRow,
    BookingRow,
    NotificationRow,
    PatientRow,
    StrikeRow,
)
from guahao.platform.services.staff import StaffRole
from guahao.platform.strikes import BlacklistRules

__all__ = [
    "DECIDERS",
    "MESSAGES",
    "READERS",
    "RegionRulesBook",
    "RulesSource",
    "accounts_of",
    "blacklist_rules_of",
    "counted_since",
    "default_rules",
    "entry_payload",
    "lift_entry",
    "notify",
    "person_of_booking",
    "strikes_of",
]

READERS = (StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)
DECIDERS = (StaffRole.AUTHORITY_ADMIN,)

RulesSource = Callable[[], Awaitable[BlacklistRules]]
"""Where the blacklist rules in force come from (the region's rule book)."""


class RegionRulesBook(Protocol):
    """What the rule sources need of ``RuleBook``."""

    async def region(self) -> Any: ...


def blacklist_rules_of(book: RegionRulesBook) -> RulesSource:
    """The blacklist rules in force, read from the region's rules (``RegionRules.blacklist``;
    the defaults while the region's rules have no such section)."""

    async def current() -> BlacklistRules:
        found = getattr(await book.region(), "blacklist", None)
        return found if isinstance(found, BlacklistRules) else BlacklistRules()

    return current


async def default_rules() -> BlacklistRules:
    """The built-in rules, for a service given no rule source (tests, tools)."""
    return BlacklistRules()


MESSAGES: dict[str, tuple[str, str]] = {
    "blacklist.warning": (
        "您已有{count}次{label}记录，再有{remaining}次将被暂停网上预约。",
        "You have {count} violation(s) under '{policy}'; {remaining} more and online booking "
        "will be suspended.",
    ),
    "blacklist.added": (
        "因违约，就诊人已被暂停网上预约至{until}（全区所有医院）。急诊和发热门诊不受影响，现场挂号不受影响。"
        "如有异议可在APP中申诉。",
        "Because of violations, online booking for this patient is suspended until {until} "
        "at every hospital of the region. Emergency and fever clinics and on-site "
        "registration are not affected. You may appeal in the app.",
    ),
    "blacklist.lifted": (
        "就诊人的网上预约限制已解除。",
        "The suspension of online booking for this patient has been lifted.",
    ),
    "appeal.granted": (
        "您的申诉已通过，网上预约限制已解除。",
        "Your appeal was granted; the suspension has been lifted.",
    ),
    "appeal.rejected": (
        "您的申诉未通过：{reason}",
        "Your appeal was not granted: {reason}",
    ),
}


def notify(
    session: AsyncSession,
    account_id: str,
    template: str,
    dedupe_key: str,
    params: dict[str, Any],
    now: datetime,
) -> None:
    """Add a notification row in the caller's transaction (``dedupe_key`` keeps a repeated
    delivery from telling twice), with both languages filled in."""
    zh, en = MESSAGES[template]
    values = {k: str(v) for k, v in params.items()}
    session.add(
        NotificationRow(
            id=new_id(),
            account_id=account_id,
            template=template,
            params=values | {"zh": zh.format(**values), "en": en.format(**values)},
            dedupe_key=dedupe_key[:100],
            created_at=now,
        )
    )


async def person_of_booking(session: AsyncSession, booking: BookingRow) -> str | None:
    """The person a booking is for (from the booking, else from its patient), or None for a
    hold whose patient was never chosen."""
    if booking.person_id:
        return booking.person_id
    if booking.patient_id:
        patient = await session.get(PatientRow, booking.patient_id)
        return patient.person_id if patient is not None else None
    return None


async def strikes_of(
    session: AsyncSession, person_id: str, since: datetime | None = None
) -> Sequence[StrikeRow]:
    """The person's strikes after ``since`` (all of them without), oldest first."""
    query = select(StrikeRow).where(StrikeRow.person_id == person_id)
    if since is not None:
        query = query.where(StrikeRow.occurred_at > since)
    return (await session.scalars(query.order_by(StrikeRow.occurred_at))).all()


async def counted_since(session: AsyncSession, person_id: str) -> dict[str, datetime]:
    """Per policy, the start of the person's last automatic ban by it."""
    rows = (
        await session.execute(
            select(BlacklistEntryRow.policy, func.max(BlacklistEntryRow.starts_at))
            .where(
                BlacklistEntryRow.person_id == person_id,
                BlacklistEntryRow.source == "automatic",
            )
            .group_by(BlacklistEntryRow.policy)
        )
    ).all()
    return {str(row[0]): row[1] for row in rows if row[1] is not None}


def entry_payload(entry: BlacklistEntryRow) -> dict[str, Any]:
    """The payload of ``blacklist.added`` and ``blacklist.lifted``."""
    return {
        "entry_id": entry.id,
        "person_id": entry.person_id,
        "policy": entry.policy,
        "source": entry.source,
        "starts_at": entry.starts_at.isoformat(),
        "ends_at": entry.ends_at.isoformat(),
    }


async def lift_entry(
    session: AsyncSession, entry: BlacklistEntryRow, reason: str, by: str, now: datetime
) -> None:
    """End a ban now (by hand, by a granted appeal): event and notices to every account that
    manages the person. The caller holds the person's lock and writes the audit row."""
    entry.lifted_at = now
    entry.lifted_by = by
    entry.lift_reason = reason
    record_event(
        session,
        "blacklist.lifted",
        entry.person_id,
        entry_payload(entry) | {"reason": reason},
        now,
    )
    for account_id in await accounts_of(session, entry.person_id):
        notify(session, account_id, "blacklist.lifted", f"lifted:{entry.id}", {}, now)


async def accounts_of(session: AsyncSession, person_id: str) -> list[str]:
    """The accounts that manage the person (each is told about a ban)."""
    rows = await session.scalars(
        select(PatientRow.account_id)
        .where(PatientRow.person_id == person_id, PatientRow.removed_at.is_(None))
        .distinct()
    )
    return sorted(rows.all())

"""The hot-path ban check: is this person banned now, and the one refusal a banned person
gets wherever they try to take a unit (choosing a patient, a waitlist offer, a lottery win,
joining the waitlist).

Kept apart from the rest of the blacklist because the booking flow runs it inside its own
transaction, after the person's lock, on every admission: it reads one indexed row and
imports nothing of the authority's or the appeals' side.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import error
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import BlacklistEntryRow
from guahao.platform.strikes import BlacklistRules, ban_exempts

__all__ = [
    "APPEAL_PATH",
    "active_ban",
    "ban_refusal",
    "ban_refusal_detail",
    "refuse_if_banned",
]

APPEAL_PATH = "/api/v1/appeals"
"""Where a banned patient appeals (``POST``); the refusal names it so clients need not."""


_BAN_IN_FORCE = (
    select(BlacklistEntryRow)
    .where(
        BlacklistEntryRow.person_id == bindparam("person"),
        BlacklistEntryRow.lifted_at.is_(None),
        BlacklistEntryRow.starts_at <= bindparam("now"),
        BlacklistEntryRow.ends_at > bindparam("now"),
    )
    .order_by(BlacklistEntryRow.ends_at.desc())
    .limit(1)
)
"""Built once: building it at each patient choice was half its cost
(bench/profiles/flow2-*)."""


async def active_ban(
    session: AsyncSession, person_id: str, now: datetime
) -> BlacklistEntryRow | None:
    """The ban in force for ``person_id`` at ``now`` (the one ending last), or None.

    For the booking flow inside its own transaction. A ban is in force from ``starts_at``
    until ``ends_at`` unless lifted; it expires by itself.
    """
    found: BlacklistEntryRow | None = await session.scalar(
        _BAN_IN_FORCE, {"person": person_id, "now": now}
    )
    return found


def ban_refusal_detail(
    entry: BlacklistEntryRow, rules: BlacklistRules | None = None
) -> dict[str, object]:
    """The detail of a ``PATIENT_BLACKLISTED`` refusal: why, until when, how to appeal.

    ``appeal`` is the request that files the appeal (``{method, path, entry_id}``), so a
    client builds it without knowing the API; ``appeal_until`` is when appeals close.
    """
    detail: dict[str, object] = {
        "entry_id": entry.id,
        "until": entry.ends_at.isoformat(),
        "reason": entry.reason,
        "policy": entry.policy,
        "source": entry.source,
        "appeal": {"method": "POST", "path": APPEAL_PATH, "entry_id": entry.id},
    }
    if rules is not None:
        closes = min(entry.starts_at + timedelta(days=rules.appeal_window_days), entry.ends_at)
        detail["appeal_until"] = closes.isoformat()
    return detail


def ban_refusal(entry: BlacklistEntryRow, rules: BlacklistRules) -> GuahaoError:
    """The ``PATIENT_BLACKLISTED`` error for a person under ``entry`` (the one builder)."""
    return error("PATIENT_BLACKLISTED", **ban_refusal_detail(entry, rules))


async def refuse_if_banned(
    session: AsyncSession,
    *,
    person_id: str,
    rules: BlacklistRules,
    catalog_code: str,
    department_name: str,
    now: datetime,
) -> None:
    """Raise ``PATIENT_BLACKLISTED`` if the person is banned now, unless the department is
    exempt (emergency, fever clinics: ``strikes.ban_exempts``)."""
    ban = await active_ban(session, person_id, now)
    if ban is not None and not ban_exempts(rules, catalog_code, department_name):
        raise ban_refusal(ban, rules)

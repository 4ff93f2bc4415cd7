"""Strikes, the shared blacklist (黑名单), appeals (申诉) and the authority's hand on them.

How a ban comes about: booking events reach ``StrikeRecorder`` through the outbox (at least
once). It records the strike (unique per booking and kind, so a repeated delivery records
nothing new), evaluates the region's strike policies over the person's strikes and, in the
same transaction, bans, warns, notifies the booking's account and writes the outbox event and
the audit row. Everything is keyed by the *person* (the identity document), so the ban holds
for every account that manages that person and at every hospital of the region.

Bans end by themselves: ``active_ban`` compares the clock with ``ends_at``; nothing needs to
run at the end of a ban. A ban answers the strikes that caused it: after a ban by a policy
only strikes later than its start count for that policy again.

The booking flow refuses a banned person with ``PATIENT_BLACKLISTED`` (detail from
``ban_refusal_detail``) unless the department is exempt (``strikes.ban_exempts``); on-site
registration never asks the platform, so it is never affected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.identity_documents import validate_document
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BlacklistAppealRow,
    BlacklistEntryRow,
    BookingRow,
    HospitalRow,
    NotificationRow,
    PatientRow,
    PersonRow,
    SessionRow,
    SlotRow,
    StrikeRow,
)
from guahao.platform.personal_data import mask_middle
from guahao.platform.services.accounts import REGION_ZONE, person_key
from guahao.platform.services.audit import SYSTEM_ACTOR, record_audit
from guahao.platform.services.person_locks import try_lock_person
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role
from guahao.platform.strikes import (
    BlacklistRules,
    Decision,
    Strike,
    StrikeKind,
    StrikePolicy,
    evaluate,
    in_window,
)

__all__ = [
    "APPEAL_PATH",
    "AppealView",
    "BanView",
    "BlacklistService",
    "PersonPatient",
    "PersonRecord",
    "PolicyProgress",
    "RegionRulesBook",
    "RulesSource",
    "Standing",
    "StrikeRecorder",
    "StrikeView",
    "active_ban",
    "ban_refusal_detail",
    "blacklist_rules_of",
    "label_of",
    "local_time",
    "mask_name",
    "person_of_booking",
]

log = logging.getLogger(__name__)

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


APPEAL_PATH = "/api/v1/appeals"
MAX_BAN_DAYS = 3650

KINDS = frozenset(k.value for k in StrikeKind)

STRIKE_TOPICS = ("booking.no_show", "booking.cancelled_by_patient", "booking.expired")

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


# --------------------------------------------------------------------------- views


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


def _is_active(entry: BlacklistEntryRow, now: datetime) -> bool:
    return entry.lifted_at is None and entry.starts_at <= now < entry.ends_at


def _ban_view(entry: BlacklistEntryRow, now: datetime) -> BanView:
    return BanView(
        id=entry.id,
        person_id=entry.person_id,
        policy=entry.policy,
        reason=entry.reason,
        source=entry.source,
        starts_at=entry.starts_at,
        ends_at=entry.ends_at,
        active=_is_active(entry, now),
        created_by=entry.created_by,
        created_at=entry.created_at,
        lifted_at=entry.lifted_at,
        lifted_by=entry.lifted_by,
        lift_reason=entry.lift_reason,
    )


def _appeal_view(row: BlacklistAppealRow) -> AppealView:
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


def mask_name(name: str) -> str:
    """Keep the first character of a name.

    >>> mask_name("张三"), mask_name("欧阳娜娜"), mask_name("X")
    ('张*', '欧***', '*')
    """
    return mask_middle(name, 1, 0)


# --------------------------------------------------------------------------- shared reads


async def active_ban(
    session: AsyncSession, person_id: str, now: datetime
) -> BlacklistEntryRow | None:
    """The ban in force for ``person_id`` at ``now`` (the one ending last), or None.

    For the booking flow inside its own transaction. A ban is in force from ``starts_at``
    until ``ends_at`` unless lifted; it expires by itself.
    """
    found: BlacklistEntryRow | None = await session.scalar(
        select(BlacklistEntryRow)
        .where(
            BlacklistEntryRow.person_id == person_id,
            BlacklistEntryRow.lifted_at.is_(None),
            BlacklistEntryRow.starts_at <= now,
            BlacklistEntryRow.ends_at > now,
        )
        .order_by(BlacklistEntryRow.ends_at.desc())
        .limit(1)
    )
    return found


def ban_refusal_detail(
    entry: BlacklistEntryRow, rules: BlacklistRules | None = None
) -> dict[str, object]:
    """The detail of a ``PATIENT_BLACKLISTED`` refusal: why, until when, how to appeal."""
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


def _notify(
    session: AsyncSession,
    account_id: str,
    template: str,
    dedupe_key: str,
    params: dict[str, Any],
    now: datetime,
) -> None:
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


async def _strikes(
    session: AsyncSession, person_id: str, since: datetime | None = None
) -> Sequence[StrikeRow]:
    query = select(StrikeRow).where(StrikeRow.person_id == person_id)
    if since is not None:
        query = query.where(StrikeRow.occurred_at > since)
    return (await session.scalars(query.order_by(StrikeRow.occurred_at))).all()


async def _strike_views(session: AsyncSession, rows: Sequence[StrikeRow]) -> list[StrikeView]:
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


async def _counted_since(session: AsyncSession, person_id: str) -> dict[str, datetime]:
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


def _progress(
    policies: Sequence[StrikePolicy],
    strikes: Sequence[Strike],
    since: dict[str, datetime],
    now: datetime,
) -> list[PolicyProgress]:
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


async def _default_rules() -> BlacklistRules:
    return BlacklistRules()


# --------------------------------------------------------------------------- the recorder


class StrikeRecorder:
    """Outbox subscriber (``booking.``): strikes from no-shows, cancellations and unpaid
    expiries, and the bans and warnings they call for. Idempotent per booking and kind."""

    def __init__(self, ports: Ports, rules: RulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or _default_rules

    async def __call__(self, event: OutboxEvent) -> None:
        if event.topic not in STRIKE_TOPICS:
            return  # booking.cancelled_by_hospital (停诊) and every other event never count
        booking_id = event.payload.get("booking_id") or event.aggregate_id
        rules = await self._rules()
        try:
            async with self._p.sessions() as session, session.begin():
                await self._record(session, event, str(booking_id), rules)
        except IntegrityError:
            # The same event delivered twice at once: the other delivery recorded it.
            log.info("strike for %s already recorded", booking_id)

    async def _record(
        self, session: AsyncSession, event: OutboxEvent, booking_id: str, rules: BlacklistRules
    ) -> None:
        now = self._p.clock.now()
        booking = await session.get(BookingRow, booking_id)
        if booking is None:
            return
        person_id = await person_of_booking(session, booking)
        if person_id is None:
            return  # a plain hold without a patient: nobody to count against
        slot = await session.get(SlotRow, booking.slot_id)
        visit_at = slot.starts_at if slot is not None else None
        ended_at = booking.ended_at or event.created_at
        kinds: list[tuple[StrikeKind, datetime, str]] = []
        if event.topic == "booking.no_show":
            kinds.append((StrikeKind.NO_SHOW, visit_at or ended_at, "no check-in"))
        elif event.topic == "booking.cancelled_by_patient":
            kinds.append((StrikeKind.CANCELLATION, ended_at, "退号"))
            if visit_at is not None and visit_at - ended_at < timedelta(
                hours=rules.late_cancellation_hours
            ):
                hours = (visit_at - ended_at).total_seconds() / 3600
                kinds.append(
                    (StrikeKind.LATE_CANCELLATION, ended_at, f"{hours:.1f} h before the visit")
                )
        elif event.topic == "booking.expired":
            # Only a hold the person committed to (a patient chosen, or an order opened) and
            # let run out; a hold the inventory lost on its own is not the person's doing.
            if booking.patient_id is None or booking.end_reason == "hold_lost":
                return
            kinds.append((StrikeKind.UNPAID_EXPIRY, ended_at, booking.end_reason or "expired"))
        if not kinds:
            return
        if not await try_lock_person(session, person_id):
            return
        known = set(
            (
                await session.scalars(
                    select(StrikeRow.kind).where(StrikeRow.booking_id == booking.id)
                )
            ).all()
        )
        new = [(k, at, note) for k, at, note in kinds if k.value not in known]
        if not new:
            return  # a repeated delivery
        hospital_id = booking.hospital_id
        if hospital_id is None and slot is not None:
            hospital_id = await _hospital_of(session, slot)
        for kind, at, note in new:
            session.add(
                StrikeRow(
                    id=new_id(),
                    person_id=person_id,
                    kind=kind.value,
                    booking_id=booking.id,
                    hospital_id=hospital_id,
                    occurred_at=at,
                    recorded_at=now,
                    note=note,
                )
            )
            record_event(
                session,
                "strike.recorded",
                person_id,
                {"person_id": person_id, "kind": kind.value, "booking_id": booking.id},
                now,
            )
        await session.flush()
        new_kinds = {k for k, _, _ in new}
        policies = [p for p in rules.policies if p.counts & new_kinds]
        if not policies:
            return
        horizon = max(p.window_days for p in policies)
        rows = await _strikes(session, person_id, now - timedelta(days=horizon))
        strikes = [Strike(StrikeKind(r.kind), r.occurred_at) for r in rows if r.kind in KINDS]
        decision = evaluate(
            policies, strikes, now, counted_since=await _counted_since(session, person_id)
        )
        policy = next((p for p in policies if p.name == decision.policy), None)
        await _apply(session, decision, policy, person_id, booking, now)


async def _hospital_of(session: AsyncSession, slot: SlotRow) -> str | None:
    found = await session.get(SessionRow, slot.session_id)
    return found.hospital_id if found is not None else None


async def _apply(
    session: AsyncSession,
    decision: Decision,
    policy: StrikePolicy | None,
    person_id: str,
    booking: BookingRow,
    now: datetime,
) -> None:
    if decision.outcome == "warning":
        _notify(
            session,
            booking.account_id,
            "blacklist.warning",
            f"strike-warning:{booking.id}:{decision.policy}",
            {
                "policy": decision.policy,
                "label": label_of(decision.policy),
                "count": decision.count,
                "remaining": decision.remaining,
            },
            now,
        )
        return
    if decision.outcome != "ban" or decision.ends_at is None or policy is None:
        return
    current = await active_ban(session, person_id, now)
    if current is not None and current.ends_at >= decision.ends_at:
        return  # already banned at least as long: no second entry
    reason = (
        f"{policy.window_days}天内{label_of(policy.name)}{decision.count}次 / "
        f"{decision.count} strikes under '{policy.name}' within {policy.window_days} days"
    )
    entry = BlacklistEntryRow(
        id=new_id(),
        person_id=person_id,
        policy=decision.policy,
        reason=reason,
        source="automatic",
        starts_at=now,
        ends_at=decision.ends_at,
        created_by=SYSTEM_ACTOR,
        created_at=now,
    )
    session.add(entry)
    await session.flush()
    if current is not None:  # a longer ban replaces the shorter one: one entry in force
        current.lifted_at = now
        current.lifted_by = SYSTEM_ACTOR
        current.lift_reason = f"superseded by {entry.id}"
    record_audit(
        session,
        SYSTEM_ACTOR,
        "system",
        "ban.add",
        "person",
        person_id,
        {
            "entry_id": entry.id,
            "policy": decision.policy,
            "count": decision.count,
            "ends_at": entry.ends_at.isoformat(),
            "supersedes": current.id if current is not None else None,
        },
        now,
    )
    record_event(session, "blacklist.added", person_id, _entry_payload(entry), now)
    _notify(
        session,
        booking.account_id,
        "blacklist.added",
        f"blacklist:{entry.id}",
        {"entry_id": entry.id, "policy": decision.policy, "until": local_time(entry.ends_at)},
        now,
    )


def _entry_payload(entry: BlacklistEntryRow) -> dict[str, Any]:
    return {
        "entry_id": entry.id,
        "person_id": entry.person_id,
        "policy": entry.policy,
        "source": entry.source,
        "starts_at": entry.starts_at.isoformat(),
        "ends_at": entry.ends_at.isoformat(),
    }


# --------------------------------------------------------------------------- the service


READERS = (StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)
DECIDERS = (StaffRole.AUTHORITY_ADMIN,)


class BlacklistService:
    """Bans, appeals and records, for the authority and for citizens."""

    def __init__(self, ports: Ports, rules: RulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or _default_rules
        self.recorder = StrikeRecorder(ports, self._rules)

    async def rules(self) -> BlacklistRules:
        return await self._rules()

    # ---- the authority's commands

    async def add_ban(self, person_id: str, days: int, reason: str, staff: StaffActor) -> BanView:
        """A ban by hand (e.g. proven scalping), from now for ``days``."""
        require_role(staff, *DECIDERS)
        reason = reason.strip()
        if not reason:
            refuse("REASON_REQUIRED")
        if not 1 <= days <= MAX_BAN_DAYS:
            refuse("BAN_LENGTH_INVALID", days=days)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            if not await try_lock_person(session, person_id):
                refuse("PERSON_NOT_FOUND", person_id=person_id)
            current = await active_ban(session, person_id, now)
            if current is not None:
                refuse("BAN_ALREADY_ACTIVE", entry_id=current.id, until=current.ends_at.isoformat())
            entry = BlacklistEntryRow(
                id=new_id(),
                person_id=person_id,
                policy="manual",
                reason=reason,
                source="manual",
                starts_at=now,
                ends_at=now + timedelta(days=days),
                created_by=staff.username,
                created_at=now,
            )
            session.add(entry)
            await session.flush()
            record_audit(
                session,
                staff.username,
                staff.role,
                "ban.add",
                "person",
                person_id,
                {"entry_id": entry.id, "days": days, "reason": reason},
                now,
            )
            record_event(session, "blacklist.added", person_id, _entry_payload(entry), now)
            for account_id in await self._accounts_of(session, person_id):
                _notify(
                    session,
                    account_id,
                    "blacklist.added",
                    f"blacklist:{entry.id}",
                    {"entry_id": entry.id, "policy": "manual", "until": local_time(entry.ends_at)},
                    now,
                )
            return _ban_view(entry, now)

    async def lift_ban(self, entry_id: str, reason: str, staff: StaffActor) -> BanView:
        require_role(staff, *DECIDERS)
        reason = reason.strip()
        if not reason:
            refuse("REASON_REQUIRED")
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            entry = await session.get(BlacklistEntryRow, entry_id)
            if entry is None:
                refuse("BAN_NOT_FOUND", entry_id=entry_id)
            await try_lock_person(session, entry.person_id)
            await session.refresh(entry)
            if not _is_active(entry, now):
                refuse("BAN_NOT_ACTIVE", entry_id=entry_id)
            await self._lift(session, entry, reason, staff.username, now)
            record_audit(
                session,
                staff.username,
                staff.role,
                "ban.lift",
                "person",
                entry.person_id,
                {"entry_id": entry.id, "reason": reason},
                now,
            )
            return _ban_view(entry, now)

    async def remove_strike(self, strike_id: str, reason: str, staff: StaffActor) -> StrikeView:
        """Strike a strike out (a no-show the hospital reported wrongly, say). The row goes;
        the audit row keeps everything it said. A ban it helped cause stays until lifted:
        lifting is a decision of its own."""
        require_role(staff, *DECIDERS)
        reason = reason.strip()
        if not reason:
            refuse("REASON_REQUIRED")
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(StrikeRow, strike_id)
            if row is None:
                refuse("STRIKE_NOT_FOUND", strike_id=strike_id)
            await try_lock_person(session, row.person_id)
            view = (await _strike_views(session, [row]))[0]
            record_audit(
                session,
                staff.username,
                staff.role,
                "strike.remove",
                "person",
                row.person_id,
                {
                    "strike_id": row.id,
                    "kind": row.kind,
                    "booking_id": row.booking_id,
                    "hospital_id": row.hospital_id,
                    "occurred_at": row.occurred_at.isoformat(),
                    "reason": reason,
                },
                now,
            )
            record_event(
                session,
                "strike.removed",
                row.person_id,
                {"strike_id": row.id, "kind": row.kind, "booking_id": row.booking_id},
                now,
            )
            await session.delete(row)
            return view

    async def _lift(
        self, session: AsyncSession, entry: BlacklistEntryRow, reason: str, by: str, now: datetime
    ) -> None:
        entry.lifted_at = now
        entry.lifted_by = by
        entry.lift_reason = reason
        record_event(
            session,
            "blacklist.lifted",
            entry.person_id,
            _entry_payload(entry) | {"reason": reason},
            now,
        )
        for account_id in await self._accounts_of(session, entry.person_id):
            _notify(session, account_id, "blacklist.lifted", f"lifted:{entry.id}", {}, now)

    async def decide_appeal(
        self, appeal_id: str, grant: bool, reason: str, staff: StaffActor
    ) -> AppealView:
        """Grant (the ban is lifted) or reject (it stays); the appellant is told either way."""
        require_role(staff, *DECIDERS)
        reason = reason.strip()
        if not reason:
            refuse("REASON_REQUIRED")
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            appeal = await session.get(BlacklistAppealRow, appeal_id)
            if appeal is None:
                refuse("APPEAL_NOT_FOUND", appeal_id=appeal_id)
            await try_lock_person(session, appeal.person_id)
            await session.refresh(appeal)
            if appeal.status != "pending":
                refuse("APPEAL_ALREADY_DECIDED", appeal_id=appeal_id, status=appeal.status)
            appeal.status = "granted" if grant else "rejected"
            appeal.decided_at = now
            appeal.decided_by = staff.username
            appeal.decision_reason = reason
            lifted = None
            if grant:
                entry = await session.get(BlacklistEntryRow, appeal.entry_id)
                if entry is not None:
                    target = entry
                    if not _is_active(entry, now) and (entry.lift_reason or "").startswith(
                        "superseded by "
                    ):
                        # the ban appealed against was replaced by a longer one: lift that
                        target = await active_ban(session, entry.person_id, now) or entry
                    if _is_active(target, now):
                        await self._lift(
                            session,
                            target,
                            f"appeal {appeal.id} granted: {reason}",
                            staff.username,
                            now,
                        )
                        lifted = target.id
            record_audit(
                session,
                staff.username,
                staff.role,
                "appeal.grant" if grant else "appeal.reject",
                "person",
                appeal.person_id,
                {
                    "appeal_id": appeal.id,
                    "entry_id": appeal.entry_id,
                    "reason": reason,
                    "lifted": lifted,
                },
                now,
            )
            record_event(
                session,
                "appeal.decided",
                appeal.person_id,
                {"appeal_id": appeal.id, "entry_id": appeal.entry_id, "status": appeal.status},
                now,
            )
            _notify(
                session,
                appeal.account_id,
                "appeal.granted" if grant else "appeal.rejected",
                f"appeal:{appeal.id}",
                {"reason": reason},
                now,
            )
            return _appeal_view(appeal)

    # ---- the authority's reads (each one audited: they show personal data)

    async def list_bans(
        self,
        staff: StaffActor,
        *,
        active_only: bool = True,
        person_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[BanView]:
        require_role(staff, *READERS)
        now = self._p.clock.now()
        query = select(BlacklistEntryRow)
        if active_only:
            query = query.where(
                BlacklistEntryRow.lifted_at.is_(None),
                BlacklistEntryRow.starts_at <= now,
                BlacklistEntryRow.ends_at > now,
            )
        if person_id:
            query = query.where(BlacklistEntryRow.person_id == person_id)
        async with self._p.sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    query.order_by(BlacklistEntryRow.created_at.desc(), BlacklistEntryRow.id)
                    .offset(max(offset, 0))
                    .limit(min(max(limit, 1), 500))
                )
            ).all()
            record_audit(
                session,
                staff.username,
                staff.role,
                "ban.list",
                "blacklist",
                person_id or "*",
                {"active_only": active_only, "returned": len(rows)},
                now,
            )
            return [_ban_view(r, now) for r in rows]

    async def list_appeals(
        self,
        staff: StaffActor,
        *,
        status: Literal["pending", "granted", "rejected"] | None = "pending",
        limit: int = 100,
        offset: int = 0,
    ) -> list[AppealView]:
        require_role(staff, *READERS)
        now = self._p.clock.now()
        query = select(BlacklistAppealRow)
        if status:
            query = query.where(BlacklistAppealRow.status == status)
        async with self._p.sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    query.order_by(BlacklistAppealRow.filed_at, BlacklistAppealRow.id)
                    .offset(max(offset, 0))
                    .limit(min(max(limit, 1), 500))
                )
            ).all()
            record_audit(
                session,
                staff.username,
                staff.role,
                "appeal.list",
                "appeals",
                status or "*",
                {"returned": len(rows)},
                now,
            )
            return [_appeal_view(r) for r in rows]

    async def person_record(self, person_id: str, staff: StaffActor) -> PersonRecord:
        require_role(staff, *READERS)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            person = await session.get(PersonRow, person_id)
            if person is None:
                refuse("PERSON_NOT_FOUND", person_id=person_id)
            patients = (
                await session.scalars(
                    select(PatientRow)
                    .where(PatientRow.person_id == person_id)
                    .order_by(PatientRow.created_at)
                )
            ).all()
            strikes = await _strike_views(session, await _strikes(session, person_id))
            bans = (
                await session.scalars(
                    select(BlacklistEntryRow)
                    .where(BlacklistEntryRow.person_id == person_id)
                    .order_by(BlacklistEntryRow.created_at)
                )
            ).all()
            appeals = (
                await session.scalars(
                    select(BlacklistAppealRow)
                    .where(BlacklistAppealRow.person_id == person_id)
                    .order_by(BlacklistAppealRow.filed_at)
                )
            ).all()
            record_audit(
                session,
                staff.username,
                staff.role,
                "person.read",
                "person",
                person_id,
                {"patients": len(patients)},
                now,
            )
            return PersonRecord(
                person_id=person.id,
                document_type=person.document_type,
                patients=[
                    PersonPatient(
                        patient_id=p.id,
                        account_id=p.account_id,
                        name_masked=mask_name(p.name),
                        relation=p.relation,
                        document_type=p.document_type,
                        document_masked=p.document_masked,
                        phone_masked=p.phone_masked,
                    )
                    for p in patients
                ],
                strikes=strikes,
                bans=[_ban_view(b, now) for b in bans],
                appeals=[_appeal_view(a) for a in appeals],
            )

    async def find_person(self, document_type: str, document_number: str, staff: StaffActor) -> str:
        """The person id of a document (the authority looks people up by document, which is
        itself an access to personal data and is audited)."""
        require_role(staff, *READERS)
        now = self._p.clock.now()
        today = now.astimezone(ZoneInfo(REGION_ZONE)).date()
        document = validate_document(document_type, document_number, today=today)
        digest = self._p.vault.index("document", person_key(document))
        async with self._p.sessions() as session, session.begin():
            person_id = await session.scalar(
                select(PatientRow.person_id).where(PatientRow.document_hash == digest).limit(1)
            )
            if person_id is None:
                person_id = await session.scalar(
                    select(PersonRow.id).where(PersonRow.document_hash == digest)
                )
            record_audit(
                session,
                staff.username,
                staff.role,
                "person.find",
                "person",
                person_id or "-",
                {"document_type": document_type, "found": person_id is not None},
                now,
            )
        if person_id is None:
            refuse("PERSON_NOT_FOUND")
        return str(person_id)

    # ---- the citizen's side

    async def _own_patient(
        self, session: AsyncSession, account_id: str, patient_id: str
    ) -> PatientRow:
        patient = await session.get(PatientRow, patient_id)
        if patient is None or patient.removed_at is not None:
            refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
        if patient.account_id != account_id:
            refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
        return patient

    async def file_appeal(
        self, account_id: str, patient_id: str, entry_id: str | None, statement: str
    ) -> AppealView:
        """申诉 against the patient's ban (``entry_id``; default: the ban in force)."""
        statement = statement.strip()
        if not statement:
            refuse("REASON_REQUIRED", field="statement")
        rules = await self._rules()
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            patient = await self._own_patient(session, account_id, patient_id)
            await try_lock_person(session, patient.person_id)
            if entry_id is None:
                entry = await active_ban(session, patient.person_id, now)
                if entry is None:
                    refuse("APPEAL_NOT_ALLOWED", patient_id=patient_id, reason="not_banned")
            else:
                found = await session.get(BlacklistEntryRow, entry_id)
                if found is None or found.person_id != patient.person_id:
                    refuse("BAN_NOT_FOUND", entry_id=entry_id)
                entry = found
            if not _is_active(entry, now):
                refuse("BAN_NOT_ACTIVE", entry_id=entry.id)
            if now >= entry.starts_at + timedelta(days=rules.appeal_window_days):
                refuse("APPEAL_WINDOW_CLOSED", entry_id=entry.id)
            pending = await session.scalar(
                select(BlacklistAppealRow.id).where(
                    BlacklistAppealRow.entry_id == entry.id,
                    BlacklistAppealRow.status == "pending",
                )
            )
            if pending is not None:
                refuse("APPEAL_ALREADY_PENDING", appeal_id=pending)
            appeal = BlacklistAppealRow(
                id=new_id(),
                entry_id=entry.id,
                person_id=patient.person_id,
                account_id=account_id,
                statement=statement[:4000],
                status="pending",
                filed_at=now,
            )
            session.add(appeal)
            record_event(
                session,
                "appeal.filed",
                patient.person_id,
                {"appeal_id": appeal.id, "entry_id": entry.id, "account_id": account_id},
                now,
            )
            await session.flush()
            return _appeal_view(appeal)

    async def appeals_of(self, account_id: str) -> list[AppealView]:
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(BlacklistAppealRow)
                    .where(BlacklistAppealRow.account_id == account_id)
                    .order_by(BlacklistAppealRow.filed_at.desc())
                )
            ).all()
        return [_appeal_view(r) for r in rows]

    async def standing(self, account_id: str, patient_id: str) -> Standing:
        """What the account's own patient has against them, and how to appeal."""
        rules = await self._rules()
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            patient = await self._own_patient(session, account_id, patient_id)
            person_id = patient.person_id
            horizon = max((p.window_days for p in rules.policies), default=90)
            rows = await _strikes(session, person_id, now - timedelta(days=horizon))
            strikes = [Strike(StrikeKind(r.kind), r.occurred_at) for r in rows if r.kind in KINDS]
            since = await _counted_since(session, person_id)
            ban = await active_ban(session, person_id, now)
            appeals = (
                await session.scalars(
                    select(BlacklistAppealRow)
                    .where(
                        BlacklistAppealRow.person_id == person_id,
                        BlacklistAppealRow.account_id == account_id,
                    )
                    .order_by(BlacklistAppealRow.filed_at.desc())
                )
            ).all()
            views = await _strike_views(session, rows)
        appeal_until = None
        if ban is not None:
            appeal_until = min(
                ban.starts_at + timedelta(days=rules.appeal_window_days), ban.ends_at
            )
        return Standing(
            patient_id=patient_id,
            strikes=views,
            policies=_progress(rules.policies, strikes, since, now),
            ban=_ban_view(ban, now) if ban is not None else None,
            appeal_until=appeal_until,
            appeals=[_appeal_view(a) for a in appeals],
        )

    @staticmethod
    async def _accounts_of(session: AsyncSession, person_id: str) -> list[str]:
        rows = await session.scalars(
            select(PatientRow.account_id)
            .where(PatientRow.person_id == person_id, PatientRow.removed_at.is_(None))
            .distinct()
        )
        return sorted(rows.all())

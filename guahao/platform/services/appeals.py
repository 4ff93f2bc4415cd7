"""Appeals (申诉) against bans: a citizen files one for their own patient within the region's
window, sees the patient's standing (strikes, progress against each policy, the ban in force),
and the authority lists and decides them.

A granted appeal lifts the ban it was filed against, or the longer ban that replaced it, so
the person is free after the decision whatever happened in between.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.patient_proof import refuse_unless_usable
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BlacklistAppealRow,
    BlacklistEntryRow,
    BookingRow,
    PatientRow,
)
from guahao.platform.services.audit import record_audit
from guahao.platform.services.ban_checks import active_ban
from guahao.platform.services.ban_records import (
    DECIDERS,
    READERS,
    RulesSource,
    counted_since,
    default_rules,
    lift_entry,
    notify,
    strikes_of,
)
from guahao.platform.services.ban_views import (
    AppealView,
    Standing,
    appeal_view,
    citizen_appeal_view,
    citizen_ban_view,
    is_active,
    progress,
    strike_views,
)
from guahao.platform.services.person_locks import try_lock_person
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, require_role
from guahao.platform.services.strike_recorder import KINDS
from guahao.platform.strikes import Strike, StrikeKind

__all__ = ["Appeals"]


class Appeals:
    """Filing, reading and deciding appeals (see the module docstring)."""

    def __init__(self, ports: Ports, rules: RulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or default_rules

    # ---- the citizen's side

    async def _own_patient(
        self, session: AsyncSession, account_id: str, patient_id: str
    ) -> PatientRow:
        patient = await session.get(PatientRow, patient_id)
        if patient is None or patient.removed_at is not None:
            refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
        if patient.account_id != account_id:
            refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
        refuse_unless_usable(patient)
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
            if not is_active(entry, now):
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
            return citizen_appeal_view(appeal)

    async def appeals_of(self, account_id: str) -> list[AppealView]:
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(BlacklistAppealRow)
                    .where(BlacklistAppealRow.account_id == account_id)
                    .order_by(BlacklistAppealRow.filed_at.desc())
                )
            ).all()
        return [citizen_appeal_view(r) for r in rows]

    async def standing(self, account_id: str, patient_id: str) -> Standing:
        """What the account's own patient has against them, and how to appeal.

        The strikes listed are those on this account's own bookings: the person may have been
        added by other accounts too, and one account must not read where and when the person
        booked through another. The progress towards a ban counts them all (it is the
        person's standing), and the ban is shown without staff names."""
        rules = await self._rules()
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            patient = await self._own_patient(session, account_id, patient_id)
            person_id = patient.person_id
            horizon = max((p.window_days for p in rules.policies), default=90)
            rows = await strikes_of(session, person_id, now - timedelta(days=horizon))
            strikes = [Strike(StrikeKind(r.kind), r.occurred_at) for r in rows if r.kind in KINDS]
            since = await counted_since(session, person_id)
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
            booked_here = set(
                (
                    await session.scalars(
                        select(BookingRow.id).where(
                            BookingRow.account_id == account_id,
                            BookingRow.id.in_({r.booking_id for r in rows if r.booking_id}),
                        )
                    )
                ).all()
            )
            views = await strike_views(session, [r for r in rows if r.booking_id in booked_here])
        appeal_until = None
        if ban is not None:
            appeal_until = min(
                ban.starts_at + timedelta(days=rules.appeal_window_days), ban.ends_at
            )
        return Standing(
            patient_id=patient_id,
            strikes=views,
            policies=progress(rules.policies, strikes, since, now),
            ban=citizen_ban_view(ban, now) if ban is not None else None,
            appeal_until=appeal_until,
            appeals=[citizen_appeal_view(a) for a in appeals],
        )

    # ---- the authority's side

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
                    if not is_active(entry, now) and (entry.lift_reason or "").startswith(
                        "superseded by "
                    ):
                        # the ban appealed against was replaced by a longer one: lift that
                        target = await active_ban(session, entry.person_id, now) or entry
                    if is_active(target, now):
                        await lift_entry(
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
            notify(
                session,
                appeal.account_id,
                "appeal.granted" if grant else "appeal.rejected",
                f"appeal:{appeal.id}",
                {"reason": reason},
                now,
            )
            return appeal_view(appeal)

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
            return [appeal_view(r) for r in rows]

"""The shared blacklist (黑名单) as the authority handles it, and the one facade of the
blacklist's parts.

Everything is keyed by the *person* (the identity document), so a ban holds for every account
that manages that person and at every hospital of the region. The parts:

* ``strike_recorder``: booking events become strikes, warnings and automatic bans (outbox);
* ``ban_checks``: the hot-path check and the one ``PATIENT_BLACKLISTED`` refusal;
* ``appeals``: 申诉, a patient's standing, the authority's decisions;
* ``ban_views``: what people are shown; ``ban_records``: rows and notices the parts share;
* this module: the authority's commands (ban by hand, lift, strike out) and audited reads.

Bans end by themselves: ``active_ban`` compares the clock with ``ends_at``; nothing needs to
run at the end of a ban. On-site registration never asks the platform, so it is never affected.
The names other modules imported from here before the split are re-exported, so they keep
working.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select

from guahao.platform.error_codes import refuse
from guahao.platform.identity_documents import validate_document
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BlacklistAppealRow,
    BlacklistEntryRow,
    PatientRow,
    PersonRow,
    StrikeRow,
)
from guahao.platform.personal_data import patient_name
from guahao.platform.phone_numbers import normalise_phone
from guahao.platform.services.accounts import REGION_ZONE, account_id_by_phone, person_key
from guahao.platform.services.appeals import Appeals
from guahao.platform.services.audit import record_audit
from guahao.platform.services.ban_checks import (
    APPEAL_PATH,
    active_ban,
    ban_refusal,
    ban_refusal_detail,
)
from guahao.platform.services.ban_records import (
    DECIDERS,
    READERS,
    RegionRulesBook,
    RulesSource,
    accounts_of,
    blacklist_rules_of,
    default_rules,
    entry_payload,
    lift_entry,
    notify,
    person_of_booking,
    strikes_of,
)
from guahao.platform.services.ban_views import (
    AppealView,
    BanView,
    PersonPatient,
    PersonRecord,
    PolicyProgress,
    Standing,
    StrikeView,
    appeal_view,
    ban_view,
    is_active,
    label_of,
    local_time,
    mask_name,
    strike_views,
)
from guahao.platform.services.person_locks import try_lock_person
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, require_role
from guahao.platform.services.strike_recorder import StrikeRecorder
from guahao.platform.strikes import BlacklistRules

__all__ = [
    "APPEAL_PATH",
    "AppealView",
    "BanView",
    "BlacklistService",
    "PersonMatch",
    "PersonPatient",
    "PersonRecord",
    "PolicyProgress",
    "RegionRulesBook",
    "RulesSource",
    "Standing",
    "StrikeRecorder",
    "StrikeView",
    "active_ban",
    "ban_refusal",
    "ban_refusal_detail",
    "blacklist_rules_of",
    "label_of",
    "local_time",
    "mask_name",
    "person_of_booking",
]

MAX_BAN_DAYS = 3650


class PersonMatch(msgspec.Struct, frozen=True, rename="camel"):
    """A person found by a phone: who they are to the account that phone registered (masked)."""

    person_id: str
    patient: PersonPatient


class BlacklistService:
    """Bans, appeals and records, for the authority and for citizens.

    The strike recorder (``recorder``, an outbox subscriber) and the appeals (``appeals``) are
    its parts; the appeal methods here forward to them, so callers keep one object.
    """

    def __init__(self, ports: Ports, rules: RulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or default_rules
        self.recorder = StrikeRecorder(ports, self._rules)
        self.appeals = Appeals(ports, self._rules)

    async def rules(self) -> BlacklistRules:
        """The blacklist rules in force."""
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
            record_event(session, "blacklist.added", person_id, entry_payload(entry), now)
            for account_id in await accounts_of(session, person_id):
                notify(
                    session,
                    account_id,
                    "blacklist.added",
                    f"blacklist:{entry.id}",
                    {"entry_id": entry.id, "policy": "manual", "until": local_time(entry.ends_at)},
                    now,
                )
            return ban_view(entry, now)

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
            if not is_active(entry, now):
                refuse("BAN_NOT_ACTIVE", entry_id=entry_id)
            await lift_entry(session, entry, reason, staff.username, now)
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
            return ban_view(entry, now)

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
            view = (await strike_views(session, [row]))[0]
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
            return [ban_view(r, now) for r in rows]

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
            strikes = await strike_views(session, await strikes_of(session, person_id))
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
                patients=[self._patient_view(p) for p in patients],
                strikes=strikes,
                bans=[ban_view(b, now) for b in bans],
                appeals=[appeal_view(a) for a in appeals],
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

    async def find_persons_by_phone(self, phone: str, staff: StaffActor) -> list[PersonMatch]:
        """The persons an account manages, found by the account's phone (masked; a family's
        phone finds every member it books for). Audited as a lookup of personal data."""
        require_role(staff, *READERS)
        phone = normalise_phone(phone)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            account_id = await account_id_by_phone(session, self._p.vault, phone)
            patients = (
                []
                if account_id is None
                else (
                    await session.scalars(
                        select(PatientRow)
                        .where(PatientRow.account_id == account_id, PatientRow.removed_at.is_(None))
                        .order_by(PatientRow.created_at)
                    )
                ).all()
            )
            record_audit(
                session,
                staff.username,
                staff.role,
                "person.find",
                "account",
                account_id or "-",
                {"by": "phone", "found": len(patients)},
                now,
            )
        if not patients:
            refuse("PERSON_NOT_FOUND")
        return [PersonMatch(person_id=p.person_id, patient=self._patient_view(p)) for p in patients]

    def _patient_view(self, p: PatientRow) -> PersonPatient:
        """A patient record as staff see it: masked, the name opened from its seal first."""
        return PersonPatient(
            patient_id=p.id,
            account_id=p.account_id,
            name_masked=mask_name(patient_name(self._p.vault, p)),
            relation=p.relation,
            document_type=p.document_type,
            document_masked=p.document_masked,
            phone_masked=p.phone_masked,
        )

    # ---- appeals (forwarded to ``Appeals``)

    async def file_appeal(
        self, account_id: str, patient_id: str, entry_id: str | None, statement: str
    ) -> AppealView:
        """申诉 against the patient's ban (``entry_id``; default: the ban in force)."""
        return await self.appeals.file_appeal(account_id, patient_id, entry_id, statement)

    async def appeals_of(self, account_id: str) -> list[AppealView]:
        """The account's appeals, newest first."""
        return await self.appeals.appeals_of(account_id)

    async def standing(self, account_id: str, patient_id: str) -> Standing:
        """What the account's own patient has against them, and how to appeal."""
        return await self.appeals.standing(account_id, patient_id)

    async def decide_appeal(
        self, appeal_id: str, grant: bool, reason: str, staff: StaffActor
    ) -> AppealView:
        """Grant (the ban is lifted) or reject (it stays); the appellant is told either way."""
        return await self.appeals.decide_appeal(appeal_id, grant, reason, staff)

    async def list_appeals(
        self,
        staff: StaffActor,
        *,
        status: Literal["pending", "granted", "rejected"] | None = "pending",
        limit: int = 100,
        offset: int = 0,
    ) -> list[AppealView]:
        """Appeals by status, oldest first (audited)."""
        return await self.appeals.list_appeals(staff, status=status, limit=limit, offset=offset)

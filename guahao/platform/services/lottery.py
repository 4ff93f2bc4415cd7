"""Lottery release (摇号) for the scarcest sessions: mark, enter, withdraw, draw.

A hospital marks a session as a lottery before its release. From then on its slots carry the
status ``lottery`` in SQL and in Redis, so the ordinary hold script refuses them (the hold path
tells the patient ``SESSION_IS_LOTTERY``). During the window ``[lottery_opens_at,
lottery_draw_at)`` each person may enter once per session. At ``lottery_draw_at`` the sweep
draws: one transaction sets ``lottery_drawn`` and fixes every entry's rank from a fresh secret
seed (see ``guahao.platform.lottery`` for why uniform), so the draw happens once. Then the
entries are served in rank order, each in its own transaction like a waitlist grant (the
region's admission rules are asked at that moment; a person refused becomes ``ineligible`` and
the unit goes to the next rank) until the units run out; the rest lose and, by the rules, join
the session's waitlist in drawn order. Finally the slots open first-come for whatever is left.
Every step is resumable: a sweep finds a drawn session with entries still ``entered`` or
slots still ``lottery`` and finishes it. The draw and serving are ``lottery_draws``; this
module is the hospital's and the entrants' side and the facade ``LotteryService``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from guahao.platform.bookings import ACTIVE_STATUSES
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
from guahao.platform.lottery import LotteryRules, lottery_rules_of
from guahao.platform.patient_proof import refuse_unless_bookable
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    LotteryEntryRow,
    PatientRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.booking_limits import admit
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.lottery_draws import LotteryDraws
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    UnitOffers,
)

__all__ = ["LotteryEntryView", "LotteryService", "LotterySessionView"]

log = logging.getLogger(__name__)


class LotteryEntryView(msgspec.Struct, frozen=True, rename="camel"):
    """An entry as its patient sees it."""

    id: str
    session_id: str
    patient_id: str
    channel: str
    status: str
    booking_id: str | None
    entered_at: datetime
    draw_at: datetime | None
    drawn_at: datetime | None


class LotterySessionView(msgspec.Struct, frozen=True, rename="camel"):
    """A session's lottery settings."""

    session_id: str
    allocation: str
    opens_at: datetime | None
    draw_at: datetime | None
    drawn: bool


class LotteryService:
    """Mark lottery sessions and take entries; the draw is ``draws`` (``LotteryDraws``)."""

    def __init__(
        self, ports: Ports, inventory_sync: InventorySync, offers: UnitOffers, rules: RuleBook
    ) -> None:
        self._p = ports
        self._rules = rules
        self.draws = LotteryDraws(ports, inventory_sync, offers, rules)

    async def rules_for(self, hospital_id: str) -> LotteryRules:
        """The lottery rules in force at this hospital."""
        return lottery_rules_of(await self._rules.for_hospital(hospital_id))

    # ------------------------------------------------------------------ the hospital's side

    async def mark_lottery(
        self,
        session_id: str,
        *,
        opens_at: datetime | None = None,
        draw_at: datetime | None = None,
        actor: str = "hospital",
    ) -> LotterySessionView:
        """Make a session a lottery before its release; without a window, entries open
        ``window_hours`` before the release and the draw is at the release."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
        rules = await self.rules_for(sess.hospital_id)
        draw_at = draw_at or sess.release_at
        opens_at = opens_at or draw_at - timedelta(hours=rules.window_hours)
        if opens_at.tzinfo is None or draw_at.tzinfo is None:
            refuse("LOTTERY_WINDOW_INVALID", reason="times need a zone")
        # The draw must leave the winners their session: before online booking closes.
        latest = min(sess.starts_at, sess.cutoff_at)
        if not opens_at < draw_at or draw_at <= now or draw_at >= latest:
            refuse(
                "LOTTERY_WINDOW_INVALID",
                opens_at=opens_at.isoformat(),
                draw_at=draw_at.isoformat(),
                latest=latest.isoformat(),
            )
        async with self._p.sessions() as session, session.begin():
            sess = await session.get(SessionRow, session_id)
            assert sess is not None
            if sess.lottery_drawn:
                refuse("LOTTERY_ALREADY_DRAWN", session_id=session_id)
            if sess.status != "open" or now >= sess.release_at:
                refuse(
                    "LOTTERY_MARK_TOO_LATE",
                    session_id=session_id,
                    release_at=sess.release_at.isoformat(),
                    status=sess.status,
                )
            booked = await session.scalar(
                select(func.count())
                .select_from(BookingRow)
                .where(
                    BookingRow.session_id == session_id,
                    BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]),
                )
            )
            if booked:
                refuse("LOTTERY_MARK_TOO_LATE", session_id=session_id, active_bookings=booked)
            sess.allocation = "lottery"
            sess.lottery_opens_at = opens_at
            sess.lottery_draw_at = draw_at
            await session.execute(
                update(SlotRow)
                .where(SlotRow.session_id == session_id, SlotRow.status == "open")
                .values(status="lottery")
            )
            record_event(
                session,
                "session.lottery_marked",
                session_id,
                {
                    "session_id": session_id,
                    "opens_at": opens_at.isoformat(),
                    "draw_at": draw_at.isoformat(),
                    "actor": actor,
                },
                now,
            )
        await self.draws.set_slots(session_id, "lottery", "lottery")
        return LotterySessionView(session_id, "lottery", opens_at, draw_at, False)

    # ------------------------------------------------------------------ the patient's side

    async def enter(
        self, *, account_id: str, patient_id: str, session_id: str, channel: str = "self_pay"
    ) -> LotteryEntryView:
        """Ask for a unit of a lottery session during its window (one entry per person)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            patient = await session.get(PatientRow, patient_id)
            if patient is None or patient.removed_at is not None:
                refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
            if patient.account_id != account_id:
                refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
            refuse_unless_bookable(patient)
            sess = await session.get(SessionRow, session_id)
            if sess is None:
                refuse("SESSION_NOT_FOUND", session_id=session_id)
            hospital = await session.get(HospitalRow, sess.hospital_id)
            assert hospital is not None
        if sess.allocation != "lottery":
            refuse("SESSION_NOT_LOTTERY", session_id=session_id)
        if sess.lottery_drawn:
            refuse("LOTTERY_ALREADY_DRAWN", session_id=session_id)
        assert sess.lottery_opens_at is not None
        assert sess.lottery_draw_at is not None
        if not sess.lottery_opens_at <= now < sess.lottery_draw_at:
            refuse(
                "LOTTERY_NOT_OPEN",
                opens_at=sess.lottery_opens_at.isoformat(),
                draw_at=sess.lottery_draw_at.isoformat(),
            )
        policies = msgspec.convert(hospital.policies, HospitalPolicies)
        if policies.payment_mode.online_payment_required(channel) is None:  # type: ignore[arg-type]
            refuse(
                "PAYMENT_MODE_UNSUPPORTED",
                channel=channel,
                payment_mode=policies.payment_mode.value,
            )
        region = await self._rules.for_hospital(sess.hospital_id)
        rules = lottery_rules_of(region)
        person_id = patient.person_id
        try:
            async with self._p.sessions() as session, session.begin():
                await lock_person(session, person_id)
                # Eligible now (ban, filing, limits, already booked there): the same rules are
                # asked again at the draw, when the unit is actually given.
                await admit(
                    session,
                    rules=region,
                    policies=policies,
                    person_id=person_id,
                    account_id=account_id,
                    sess=sess,
                    now=now,
                )
                existing = await session.scalar(
                    select(LotteryEntryRow).where(
                        LotteryEntryRow.session_id == session_id,
                        LotteryEntryRow.person_id == person_id,
                    )
                )
                if existing is not None and existing.status != "withdrawn":
                    refuse("LOTTERY_ALREADY_ENTERED", entry_id=existing.id)
                same_day = await session.scalar(
                    select(func.count())
                    .select_from(LotteryEntryRow)
                    .join(SessionRow, SessionRow.id == LotteryEntryRow.session_id)
                    .where(
                        LotteryEntryRow.person_id == person_id,
                        LotteryEntryRow.status == "entered",
                        SessionRow.date == sess.date,
                    )
                )
                if (same_day or 0) >= rules.max_entries_per_person_per_day:
                    refuse(
                        "LOTTERY_ENTRY_LIMIT_REACHED",
                        limit=rules.max_entries_per_person_per_day,
                        date=sess.date.isoformat(),
                    )
                if existing is not None:  # entering again after withdrawing
                    entry = existing
                    entry.account_id = account_id
                    entry.patient_id = patient_id
                    entry.channel = channel
                    entry.status = "entered"
                    entry.entered_at = now
                else:
                    entry = LotteryEntryRow(
                        id=new_id(),
                        session_id=session_id,
                        account_id=account_id,
                        patient_id=patient_id,
                        person_id=person_id,
                        channel=channel,
                        status="entered",
                        entered_at=now,
                    )
                    session.add(entry)
                record_event(
                    session,
                    "lottery.entered",
                    entry.id,
                    {
                        "entry_id": entry.id,
                        "account_id": account_id,
                        "session_id": session_id,
                        "draw_at": sess.lottery_draw_at.isoformat(),
                    },
                    now,
                )
        except IntegrityError:  # a concurrent entry of the same person won
            refuse("LOTTERY_ALREADY_ENTERED", session_id=session_id)
        return _entry_view(entry, sess.lottery_draw_at)

    async def withdraw(self, *, account_id: str, entry_id: str) -> LotteryEntryView:
        """Take an entry back before the draw."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            entry = await session.get(LotteryEntryRow, entry_id)
            if entry is None or entry.account_id != account_id:
                refuse("LOTTERY_ENTRY_NOT_FOUND", entry_id=entry_id)
            sess = await session.get(SessionRow, entry.session_id)
            assert sess is not None
            if entry.status != "entered" or sess.lottery_drawn:
                if entry.status == "withdrawn":
                    refuse("LOTTERY_ENTRY_NOT_FOUND", entry_id=entry_id, status=entry.status)
                refuse("LOTTERY_ALREADY_DRAWN", entry_id=entry_id, status=entry.status)
            if sess.lottery_draw_at is not None and now >= sess.lottery_draw_at:
                refuse("LOTTERY_ALREADY_DRAWN", entry_id=entry_id)
            entry.status = "withdrawn"
            record_event(
                session,
                "lottery.withdrawn",
                entry_id,
                {"entry_id": entry_id, "account_id": account_id, "session_id": sess.id},
                now,
            )
        return _entry_view(entry, sess.lottery_draw_at)

    async def entries(self, account_id: str) -> list[LotteryEntryView]:
        """The account's entries, newest first."""
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(LotteryEntryRow, SessionRow.lottery_draw_at)
                    .join(SessionRow, SessionRow.id == LotteryEntryRow.session_id)
                    .where(LotteryEntryRow.account_id == account_id)
                    .order_by(LotteryEntryRow.entered_at.desc(), LotteryEntryRow.id)
                )
            ).all()
        return [_entry_view(entry, draw_at) for entry, draw_at in rows]

    # ------------------------------------------------------------------ the draw (forwarded)

    async def draw_due(self) -> int:
        """Sweep: draw every lottery due and finish interrupted draws (``LotteryDraws``)."""
        return await self.draws.draw_due()

    async def draw(self, session_id: str) -> int:
        """Draw this session's lottery now if it is due (``LotteryDraws.draw``)."""
        return await self.draws.draw(session_id)


def _entry_view(entry: LotteryEntryRow, draw_at: datetime | None) -> LotteryEntryView:
    return LotteryEntryView(
        id=entry.id,
        session_id=entry.session_id,
        patient_id=entry.patient_id,
        channel=entry.channel,
        status=entry.status,
        booking_id=entry.booking_id,
        entered_at=entry.entered_at,
        draw_at=draw_at,
        drawn_at=entry.drawn_at,
    )

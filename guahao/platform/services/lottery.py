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
slots still ``lottery`` and finishes it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import ACTIVE_STATUSES
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
from guahao.platform.lottery import LotteryRules, draw_order, lottery_rules_of, new_seed
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    LotteryEntryRow,
    PatientRow,
    SessionRow,
    SlotRow,
    WaitlistEntryRow,
)
from guahao.platform.services.booking_limits import admit
from guahao.platform.services.booking_records import BookingRecords
from guahao.platform.services.person_locks import lock_person
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    GrantOutcome,
    Recipient,
    UnitOffers,
    derived_id,
)
from guahao.platform.waitlist import waitlist_rules_of

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


def _rank(entry: LotteryEntryRow) -> int:
    try:
        return int(json.loads(entry.detail)["rank"])
    except (ValueError, KeyError, TypeError):
        return 1 << 30


class LotteryService:
    """Mark lottery sessions, take entries, draw and serve (see the module docstring)."""

    def __init__(
        self, ports: Ports, bookings: BookingRecords, offers: UnitOffers, rules: RuleBook
    ) -> None:
        self._p = ports
        self._bookings = bookings
        self._offers = offers
        self._rules = rules

    async def rules_for(self, hospital_id: str) -> LotteryRules:
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
        await self._set_slots(session_id, "lottery", "lottery")
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

    # ------------------------------------------------------------------ the draw

    async def draw_due(self) -> int:
        """Sweep: draw every lottery whose time has come, finish draws that were interrupted,
        and keep undrawn lottery slots closed in Redis (a rebuild may have reopened them).
        Returns how many sessions were drawn now."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            due = list(
                (
                    await session.scalars(
                        select(SessionRow.id).where(
                            SessionRow.allocation == "lottery",
                            SessionRow.lottery_drawn.is_(False),
                            SessionRow.lottery_draw_at <= now,
                        )
                    )
                ).all()
            )
            unfinished = set(
                (
                    await session.scalars(
                        select(SlotRow.session_id)
                        .join(SessionRow, SessionRow.id == SlotRow.session_id)
                        .where(SessionRow.lottery_drawn.is_(True), SlotRow.status == "lottery")
                    )
                ).all()
            )
            waiting = list(
                (
                    await session.scalars(
                        select(SessionRow.id).where(
                            SessionRow.allocation == "lottery",
                            SessionRow.lottery_drawn.is_(False),
                            SessionRow.lottery_draw_at > now,
                            SessionRow.status == "open",
                        )
                    )
                ).all()
            )
        for session_id in waiting:
            await self._set_slots(session_id, "lottery", "lottery")
        drawn = 0
        for session_id in due:
            drawn += await self.draw(session_id)
        for session_id in unfinished - set(due):
            await self._allocate(session_id)
        for booking_id in await self._offers.unfinished("lottery"):
            await self._complete(booking_id)
        return drawn

    async def draw(self, session_id: str) -> int:
        """Draw this session now if it is due and not drawn; then serve the ranks. Returns 1
        if this call drew, 0 if the draw had happened (it still finishes serving)."""
        now = self._p.clock.now()
        seed = new_seed()
        async with self._p.sessions() as session, session.begin():
            claimed = await session.execute(
                update(SessionRow)
                .where(
                    SessionRow.id == session_id,
                    SessionRow.allocation == "lottery",
                    SessionRow.lottery_drawn.is_(False),
                    SessionRow.lottery_draw_at <= now,
                )
                .values(lottery_drawn=True)
            )
            drew = claimed.rowcount == 1  # type: ignore[attr-defined]
            if drew:
                entries = (
                    await session.scalars(
                        select(LotteryEntryRow).where(
                            LotteryEntryRow.session_id == session_id,
                            LotteryEntryRow.status == "entered",
                        )
                    )
                ).all()
                order = draw_order([e.id for e in entries], seed)
                rank = {entry_id: n for n, entry_id in enumerate(order)}
                for entry in entries:
                    entry.detail = json.dumps({"rank": rank[entry.id]})
                    entry.drawn_at = now
                record_event(
                    session,
                    "lottery.drawn",
                    session_id,
                    {
                        "session_id": session_id,
                        "seed": seed.hex(),
                        "order": order,
                        "entries": len(order),
                    },
                    now,
                )
        if drew or await self._is_drawn(session_id):
            await self._allocate(session_id)
        return 1 if drew else 0

    async def _is_drawn(self, session_id: str) -> bool:
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            return bool(sess is not None and sess.lottery_drawn)

    async def _allocate(self, session_id: str) -> None:
        """Serve the drawn entries in rank order until the units run out, then open the
        slots. Resumable: only entries still ``entered`` are served."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            sess = await session.get(SessionRow, session_id)
            assert sess is not None
            entries = sorted(
                (
                    await session.scalars(
                        select(LotteryEntryRow).where(
                            LotteryEntryRow.session_id == session_id,
                            LotteryEntryRow.status == "entered",
                        )
                    )
                ).all(),
                key=lambda e: (_rank(e), e.id),
            )
            slot_ids = list(
                (
                    await session.scalars(
                        select(SlotRow.id)
                        .where(SlotRow.session_id == session_id, SlotRow.status == "lottery")
                        .order_by(SlotRow.starts_at)
                    )
                ).all()
            )
        rules = await self.rules_for(sess.hospital_id)
        losers: list[LotteryEntryRow] = []
        open_slots = list(slot_ids) if sess.status == "open" else []
        for entry in entries:
            if not open_slots:
                losers.append(entry)
                continue
            while open_slots:
                outcome = await self._grant(entry, sess, open_slots[0])
                if outcome is GrantOutcome.UNIT_GONE:
                    open_slots.pop(0)  # this slot has no unit left: the next one
                    continue
                break
            else:
                losers.append(entry)
        for entry in losers:
            await self._lose(entry, sess, rules, now)
        await self._set_slots(session_id, "open", "lottery")

    async def _grant(self, entry: LotteryEntryRow, sess: SessionRow, slot_id: str) -> GrantOutcome:
        booking_id = derived_id("lottery", entry.id)
        inventory = self._p.inventory
        now = self._p.clock.now()
        entry_id = entry.id

        async def guard(session: AsyncSession, at: datetime) -> bool:
            done = await session.execute(
                update(LotteryEntryRow)
                .where(LotteryEntryRow.id == entry_id, LotteryEntryRow.status == "entered")
                .values(status="won")
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

        async def link(session: AsyncSession, booking_id: str) -> None:
            await session.execute(
                update(LotteryEntryRow)
                .where(LotteryEntryRow.id == entry_id)
                .values(booking_id=booking_id)
            )

        async def claim(expires_ms: int) -> None:
            async def attempt() -> None:
                await inventory.grant_drawn(
                    slot_id,
                    hold_id=booking_id,
                    account_id=entry.account_id,
                    now_ms=to_epoch_ms(now),
                    expires_at_ms=expires_ms,
                )

            try:
                await attempt()
            except KeyError:
                await self._bookings._sync.load_slot(slot_id, only_if_missing=True)
                await self._set_slots(sess.id, "lottery", "lottery")
                await attempt()

        async def undo() -> None:
            await inventory.release(
                slot_id,
                hold_id=booking_id,
                account_id=entry.account_id,
                now_ms=to_epoch_ms(self._p.clock.now()),
            )

        outcome, refusal = await self._offers.grant(
            Recipient(
                entry_id=entry.id,
                account_id=entry.account_id,
                patient_id=entry.patient_id,
                person_id=entry.person_id,
                channel=entry.channel,
                kind="lottery",
            ),
            sess=sess,
            slot_id=slot_id,
            booking_id=booking_id,
            guard=guard,
            link=link,
            claim=claim,
            undo=undo,
            event=("lottery.won", {"rank": _rank(entry)}),
        )
        if outcome is GrantOutcome.INELIGIBLE:
            await self._mark(entry, "ineligible", refusal)
        elif outcome is GrantOutcome.GRANTED:
            await self._complete(booking_id)
        return outcome

    async def _mark(self, entry: LotteryEntryRow, status: str, refusal: GuahaoError | None) -> None:
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            done = await session.execute(
                update(LotteryEntryRow)
                .where(LotteryEntryRow.id == entry.id, LotteryEntryRow.status == "entered")
                .values(
                    status=status,
                    detail=json.dumps(
                        {"rank": _rank(entry), "code": refusal.code if refusal else None}
                    ),
                )
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return
            record_event(
                session,
                f"lottery.{status}",
                entry.id,
                {
                    "entry_id": entry.id,
                    "account_id": entry.account_id,
                    "session_id": entry.session_id,
                    "code": refusal.code if refusal else None,
                },
                now,
            )

    async def _lose(
        self, entry: LotteryEntryRow, sess: SessionRow, rules: LotteryRules, now: datetime
    ) -> None:
        """Not drawn in time for a unit: ``lost``, and (by the rules) into the session's
        waitlist in drawn order, so a unit freed later goes to the next rank."""
        await self._mark(entry, "lost", None)
        if not rules.losers_join_waitlist or sess.status != "open":
            return
        waitlist = waitlist_rules_of(await self._rules.for_hospital(sess.hospital_id))
        entry_id = derived_id("lottery-loser", entry.id)
        drawn_at = entry.drawn_at or now
        try:
            async with self._p.sessions() as session, session.begin():
                if await session.get(WaitlistEntryRow, entry_id) is not None:
                    return
                waits = await session.scalar(
                    select(func.count())
                    .select_from(WaitlistEntryRow)
                    .where(
                        WaitlistEntryRow.person_id == entry.person_id,
                        WaitlistEntryRow.status == "waiting",
                    )
                )
                if (waits or 0) >= waitlist.max_waits_per_patient:
                    return
                session.add(
                    WaitlistEntryRow(
                        id=entry_id,
                        account_id=entry.account_id,
                        patient_id=entry.patient_id,
                        person_id=entry.person_id,
                        scope="session",
                        hospital_id=sess.hospital_id,
                        department_id=sess.department_id,
                        doctor_id=sess.doctor_id,
                        session_id=sess.id,
                        date_from=sess.date,
                        date_to=sess.date,
                        channel=entry.channel,
                        priority=0,
                        status="waiting",
                        # The drawn order continues as the order of the line.
                        joined_at=drawn_at + timedelta(microseconds=_rank(entry)),
                        updated_at=now,
                    )
                )
                record_event(
                    session,
                    "waitlist.joined",
                    entry_id,
                    {
                        "entry_id": entry_id,
                        "account_id": entry.account_id,
                        "patient_id": entry.patient_id,
                        "scope": "session",
                        "session_id": sess.id,
                        "reason": "lottery_lost",
                    },
                    now,
                )
        except IntegrityError:
            return

    async def _complete(self, booking_id: str) -> None:
        async with self._p.sessions() as session:
            hospital_id = await session.scalar(
                select(SessionRow.hospital_id)
                .join(BookingRow, BookingRow.session_id == SessionRow.id)
                .where(BookingRow.id == booking_id)
            )
        if hospital_id is None:
            return
        waitlist = waitlist_rules_of(await self._rules.for_hospital(hospital_id))
        try:
            await self._offers.complete(booking_id, payment_minutes=waitlist.offer_payment_minutes)
        except Exception:
            log.warning("lottery offer %s not completed yet", booking_id, exc_info=True)

    async def _set_slots(self, session_id: str, status: str, where_status: str) -> None:
        """Set the session's slots that are ``where_status`` in SQL to ``status`` in both
        SQL and Redis (SQL first; Redis is told every slot, which is idempotent)."""
        async with self._p.sessions() as session, session.begin():
            slot_ids = list(
                (
                    await session.scalars(
                        select(SlotRow.id).where(
                            SlotRow.session_id == session_id, SlotRow.status == where_status
                        )
                    )
                ).all()
            )
            if status != where_status and slot_ids:
                await session.execute(
                    update(SlotRow).where(SlotRow.id.in_(slot_ids)).values(status=status)
                )
        for slot_id in slot_ids:
            try:
                await self._p.inventory.set_status(slot_id, status=status)  # type: ignore[arg-type]
            except KeyError:
                await self._bookings._sync.load_slot(slot_id, only_if_missing=True)
                await self._p.inventory.set_status(slot_id, status=status)  # type: ignore[arg-type]


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

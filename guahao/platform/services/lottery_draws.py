"""The lottery's draw (摇号): at ``lottery_draw_at`` fix every entry's rank once, serve the
entries in rank order through ``UnitOffers``, let the rest lose (and join the waitlist when the
rules say so), then open whatever is left first-come.

Every step is resumable: ``draw_due`` (the sweep) finds a drawn session with entries still
``entered`` or slots still ``lottery`` and finishes it. The entries' side (marking a session,
entering, withdrawing) is ``lottery.LotteryService``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import cast

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import GuahaoError
from guahao.platform.lottery import LotteryRules, draw_order, lottery_rules_of, new_seed
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    LotteryEntryRow,
    SessionRow,
    SlotRow,
    WaitlistEntryRow,
)
from guahao.platform.ports import SlotStatus
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import (
    GrantOutcome,
    Recipient,
    UnitOffers,
    derived_id,
)
from guahao.platform.waitlist import waitlist_rules_of

__all__ = ["LotteryDraws", "rank_of"]

log = logging.getLogger(__name__)


def rank_of(entry: LotteryEntryRow) -> int:
    """The entry's drawn rank (undrawn entries sort last)."""
    try:
        return int(json.loads(entry.detail)["rank"])
    except (ValueError, KeyError, TypeError):
        return 1 << 30


class LotteryDraws:
    """Draws lotteries and serves their entries (see the module docstring)."""

    def __init__(
        self, ports: Ports, inventory_sync: InventorySync, offers: UnitOffers, rules: RuleBook
    ) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._offers = offers
        self._rules = rules

    async def _rules_for(self, hospital_id: str) -> LotteryRules:
        return lottery_rules_of(await self._rules.for_hospital(hospital_id))

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
            await self.set_slots(session_id, "lottery", "lottery")
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
                key=lambda e: (rank_of(e), e.id),
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
        rules = await self._rules_for(sess.hospital_id)
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
        await self.set_slots(session_id, "open", "lottery")

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

            async def reload() -> None:
                await self._sync.load_slot(slot_id, only_if_missing=True)
                await self.set_slots(sess.id, "lottery", "lottery")

            await self._sync.with_slot_loaded(slot_id, attempt, reload=reload)

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
            event=("lottery.won", {"rank": rank_of(entry)}),
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
                        {"rank": rank_of(entry), "code": refusal.code if refusal else None}
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
                        joined_at=drawn_at + timedelta(microseconds=rank_of(entry)),
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

    async def set_slots(self, session_id: str, status: str, where_status: str) -> None:
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
        slot_status = cast(SlotStatus, status)
        for slot_id in slot_ids:
            await self._sync.with_slot_loaded(
                slot_id, partial(self._p.inventory.set_status, slot_id, status=slot_status)
            )

"""Reminders before each visit (就诊提醒), each with a one-tap 退号 link.

A booking's confirmation (``booking.confirmed``) schedules its reminders at the times the pure
rules give (``guahao.platform.reminders``: the region's hours before the visit, never in the
hospital's quiet hours). The sweep sends what is due: one guarded update per reminder moves it
from ``scheduled`` to ``sent`` and writes ``visit.reminder_due`` to the outbox in the same
transaction, so several job workers running the sweep at once send each reminder once; a
booking that is no longer confirmed gets none (``skipped``). The outbox subscriber hands the
message to the notifier port (``Notifier``: the embedded one keeps it in the inbox, an SMS
adapter sends it), deduplicated by the reminder's id.

The one-tap link carries a token: the reminder's id and a keyed hash of it (HMAC with the
platform's index key), so it cannot be forged or pointed at another booking. It is single-use
(``link_used_at``, set by a guarded update) and cancels through the ordinary 退号, which
honours the hospital's cancellation deadline.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    NotificationRow,
    SlotRow,
    VisitReminderRow,
)
from guahao.platform.ports import Notifier
from guahao.platform.region_rules import RegionRules
from guahao.platform.reminders import ReminderRules, reminder_times
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.unit_offers import derived_id
from guahao.platform.waitlist import local_deadline, waitlist_rules_of

__all__ = ["REMINDER_TEMPLATE", "InboxMessages", "OneTapVisit", "VisitReminders"]

log = logging.getLogger(__name__)

REMINDER_TEMPLATE = (
    "就诊提醒：您预约的{hospital}{department}{doctor}，就诊时间 {visit_at}。"
    "如不能前往，请在 {cancel_by} 前一键退号：{link}",
    "Visit reminder: {hospital}, {department}, {doctor} at {visit_at}. If you cannot come, "
    "cancel with one tap before {cancel_by}: {link}",
)

Cancel = Callable[[str, str], Awaitable[Booking]]
"""退号 as the patient would (account id, booking id): the hospital's deadline applies."""

SlotFactsOf = Callable[[str], Awaitable[Any]]
"""``BookingService.slot_facts``: a slot's hospital policies, start and time zone."""


class OneTapVisit(msgspec.Struct, frozen=True):
    """What a reminder's one-tap link points at, for the page the link opens: read only, so
    that opening the link (or a previewer fetching it) changes nothing."""

    booking_id: str
    hospital: str
    department: str
    doctor: str
    visit_at: str
    """The visit in the hospital's wall time, with the date."""
    cancel_by: str
    """The 退号 deadline in the hospital's wall time, with the date."""
    link_used: bool
    confirmed: bool
    """Whether the booking is still confirmed (not cancelled, visited or ended otherwise)."""
    past_deadline: bool

    @property
    def cancellable(self) -> bool:
        """Whether the button would cancel now (the POST decides again)."""
        return self.confirmed and not self.link_used and not self.past_deadline


class InboxMessages:
    """The embedded ``Notifier``: the message goes to the account's inbox (the app shows it);
    a repeat with the same ``dedupe_key`` param shows it once."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(
                    NotificationRow(
                        id=new_id(),
                        account_id=account_id,
                        template=template,
                        params=dict(params),
                        dedupe_key=params.get("dedupe_key") or new_id(),
                        created_at=self._p.clock.now(),
                    )
                )
        except IntegrityError:
            return  # delivered once already


class VisitReminders:
    """Schedules, sends and honours the links of visit reminders (see the module docstring)."""

    def __init__(
        self,
        ports: Ports,
        rules: RuleBook,
        notifier: Notifier,
        *,
        cancel: Cancel,
        slot_facts: SlotFactsOf,
        base_url: str,
    ) -> None:
        self._p = ports
        self._rules = rules
        self._notifier = notifier
        self._cancel = cancel
        self._slot_facts = slot_facts
        self._base_url = base_url.rstrip("/")

    # ------------------------------------------------------------------ scheduling

    async def on_booking_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``booking.confirmed``): schedule the booking's reminders."""
        if event.topic == "booking.confirmed":
            await self.schedule(event.aggregate_id)

    async def on_booking_events(self, events: Sequence[OutboxEvent]) -> None:
        """Outbox batch entry point: the run's confirmed bookings scheduled together."""
        await self.schedule_many([e.aggregate_id for e in events if e.topic == "booking.confirmed"])

    async def schedule_many(self, booking_ids: Sequence[str]) -> int:
        """``schedule`` for many bookings at once: their bookings, slots and hospitals in three
        queries, each hospital's rules once, the reminders not yet there in one multi-row
        insert. The rows are the ones ``schedule`` makes booking by booking (same derived
        ids, so either one repeating the other adds nothing); a reminder another delivery
        inserts meanwhile fails the whole insert, and the outbox then delivers one by one."""
        if not booking_ids:
            return 0
        now = self._p.clock.now()
        ids = set(booking_ids)
        async with self._p.sessions() as session:
            bookings = [
                b
                for b in (
                    await session.scalars(select(BookingRow).where(BookingRow.id.in_(ids)))
                ).all()
                if b.status == BookingStatus.CONFIRMED.value and b.hospital_id
            ]
            slots = {
                s.id: s
                for s in (
                    await session.scalars(
                        select(SlotRow).where(SlotRow.id.in_({b.slot_id for b in bookings}))
                    )
                ).all()
            }
            hospitals = {
                h.id: h
                for h in (
                    await session.scalars(
                        select(HospitalRow).where(
                            HospitalRow.id.in_({b.hospital_id for b in bookings})
                        )
                    )
                ).all()
            }
        wanted: dict[str, dict[str, Any]] = {}
        rules_of: dict[str, RegionRules] = {}
        for booking in bookings:
            slot = slots.get(booking.slot_id)
            hospital = hospitals.get(booking.hospital_id or "")
            if slot is None or hospital is None:
                continue
            if hospital.id not in rules_of:
                rules_of[hospital.id] = await self._rules.for_hospital(hospital.id)
            for hours, due_at in self._times(slot, hospital, rules_of[hospital.id], now):
                reminder_id = derived_id("reminder", booking.id, str(hours))
                wanted[reminder_id] = {
                    "id": reminder_id,
                    "booking_id": booking.id,
                    "account_id": booking.account_id,
                    "hours_before": hours,
                    "due_at": due_at,
                    "status": "scheduled",
                    "created_at": now,
                }
        if not wanted:
            return 0
        async with self._p.sessions() as session, session.begin():
            there = set(
                (
                    await session.scalars(
                        select(VisitReminderRow.id).where(VisitReminderRow.id.in_(wanted))
                    )
                ).all()
            )
            rows = [row for reminder_id, row in wanted.items() if reminder_id not in there]
            if rows:
                await session.execute(insert(VisitReminderRow), rows)
        return len(rows)

    @staticmethod
    def _times(
        slot: SlotRow, hospital: HospitalRow, rules: RegionRules, now: datetime
    ) -> list[tuple[int, datetime]]:
        """The booking's reminder times still ahead (hours before the visit, due at); one
        booked after a reminder's time skips it: the visit is close."""
        reminders: ReminderRules = getattr(rules, "reminders", ReminderRules())
        waitlist = waitlist_rules_of(rules)
        times = reminder_times(
            slot.starts_at,
            hours_before=reminders.hours_before,
            zone=hospital.timezone,
            quiet_start=waitlist.quiet_hours_start,
            quiet_end=waitlist.quiet_hours_end,
        )
        return [(hours, due_at) for hours, due_at in times if due_at > now]

    async def schedule(self, booking_id: str) -> int:
        """One reminder per rule time still ahead; safe to repeat (one per booking and time)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            booking = await session.get(BookingRow, booking_id)
            if booking is None or booking.status != BookingStatus.CONFIRMED.value:
                return 0
            slot = await session.get(SlotRow, booking.slot_id)
            hospital = (
                await session.get(HospitalRow, booking.hospital_id) if booking.hospital_id else None
            )
            if slot is None or hospital is None:
                return 0
        rules = await self._rules.for_hospital(hospital.id)
        made = 0
        for hours, due_at in self._times(slot, hospital, rules, now):
            try:
                async with self._p.sessions() as session, session.begin():
                    session.add(
                        VisitReminderRow(
                            id=derived_id("reminder", booking_id, str(hours)),
                            booking_id=booking_id,
                            account_id=booking.account_id,
                            hours_before=hours,
                            due_at=due_at,
                            status="scheduled",
                            created_at=now,
                        )
                    )
                made += 1
            except IntegrityError:
                continue  # scheduled by an earlier delivery
        return made

    # ------------------------------------------------------------------ sending

    async def send_due(self, limit: int = 500) -> int:
        """Sweep: each due reminder is claimed once (guarded update) and handed to the outbox
        with its message; a booking no longer confirmed is skipped. Returns how many sent."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            due = (
                await session.scalars(
                    select(VisitReminderRow.id)
                    .where(VisitReminderRow.status == "scheduled", VisitReminderRow.due_at <= now)
                    .order_by(VisitReminderRow.due_at)
                    .limit(limit)
                )
            ).all()
        sent = 0
        for reminder_id in due:
            sent += await self._send(reminder_id, now)
        return sent

    async def _send(self, reminder_id: str, now: datetime) -> bool:
        async with self._p.sessions() as session:
            reminder = await session.get(VisitReminderRow, reminder_id)
            assert reminder is not None
            booking = await session.get(BookingRow, reminder.booking_id)
            assert booking is not None
            confirmed = booking.status == BookingStatus.CONFIRMED.value
            params = await self._params(session, booking, reminder) if confirmed else {}
        if confirmed:
            facts = await self._slot_facts(booking.slot_id)
            deadline = facts.policies.cancel.deadline(facts.starts_at, facts.timezone)
            params["cancel_by"] = local_deadline(deadline, facts.timezone)
        async with self._p.sessions() as session, session.begin():
            claimed = await session.execute(
                update(VisitReminderRow)
                .where(VisitReminderRow.id == reminder_id, VisitReminderRow.status == "scheduled")
                .values(status="sent" if confirmed else "skipped", sent_at=now)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False  # another worker claimed it
            if not confirmed:
                return False
            record_event(
                session,
                "visit.reminder_due",
                reminder_id,
                {"reminder_id": reminder_id, "account_id": booking.account_id, **params},
                now,
            )
        return True

    async def _params(
        self, session: AsyncSession, booking: BookingRow, reminder: VisitReminderRow
    ) -> dict[str, str]:
        slot = await session.get(SlotRow, booking.slot_id)
        hospital = await session.get(HospitalRow, booking.hospital_id)
        department = (
            await session.get(DepartmentRow, booking.department_id)
            if booking.department_id
            else None
        )
        doctor = await session.get(DoctorRow, booking.doctor_id) if booking.doctor_id else None
        assert slot is not None
        assert hospital is not None
        return {
            "booking_id": booking.id,
            "hours_before": str(reminder.hours_before),
            "hospital": hospital.name,
            "department": department.name if department is not None else "",
            "doctor": doctor.name if doctor is not None else "",
            "visit_at": local_deadline(slot.starts_at, hospital.timezone),
            "link": f"{self._base_url}/one-tap/{self.token(reminder.id)}",
        }

    async def on_reminder_event(self, event: OutboxEvent) -> None:
        """Outbox subscriber (``visit.reminder_due``): the message through the notifier port,
        once per reminder (``dedupe_key``) however often the event is delivered."""
        if event.topic != "visit.reminder_due":
            return
        params = {k: str(v) for k, v in event.payload.items() if k != "account_id"}
        zh, en = REMINDER_TEMPLATE
        await self._notifier.notify(
            account_id=str(event.payload["account_id"]),
            template="visit.reminder",
            params=params
            | {
                "zh": zh.format(**params),
                "en": en.format(**params),
                "dedupe_key": f"reminder:{event.aggregate_id}",
            },
        )

    # ------------------------------------------------------------------ the one-tap link

    def token(self, reminder_id: str) -> str:
        """The link's token: the reminder's id and its keyed hash."""
        return f"{reminder_id}.{self._p.vault.index('one-tap-cancel', reminder_id)}"

    def _reminder_of(self, token: str) -> str:
        """The reminder a token names, once its signature is checked."""
        reminder_id, _, signature = token.partition(".")
        expected = self._p.vault.index("one-tap-cancel", reminder_id)
        if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
            refuse("ONE_TAP_LINK_INVALID")
        return reminder_id

    async def link_visit(self, token: str) -> OneTapVisit:
        """The visit a one-tap link would cancel and whether it still can; changes nothing."""
        reminder_id = self._reminder_of(token)
        async with self._p.sessions() as session:
            reminder = await session.get(VisitReminderRow, reminder_id)
            if reminder is None:
                refuse("ONE_TAP_LINK_INVALID")
            booking = await session.get(BookingRow, reminder.booking_id)
            assert booking is not None
            params = await self._params(session, booking, reminder)
            link_used = reminder.link_used_at is not None
        facts = await self._slot_facts(booking.slot_id)
        deadline = facts.policies.cancel.deadline(facts.starts_at, facts.timezone)
        return OneTapVisit(
            booking_id=booking.id,
            hospital=params["hospital"],
            department=params["department"],
            doctor=params["doctor"],
            visit_at=params["visit_at"],
            cancel_by=local_deadline(deadline, facts.timezone),
            link_used=link_used,
            confirmed=booking.status == BookingStatus.CONFIRMED.value,
            past_deadline=self._p.clock.now() >= deadline,
        )

    async def cancel_by_link(self, token: str) -> Booking:
        """退号 from a reminder's link: the signature must match, the link not used before
        (single use), and the hospital's deadline not passed (the ordinary 退号 decides)."""
        reminder_id = self._reminder_of(token)
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            reminder = await session.get(VisitReminderRow, reminder_id)
            if reminder is None:
                refuse("ONE_TAP_LINK_INVALID")
            claimed = await session.execute(
                update(VisitReminderRow)
                .where(VisitReminderRow.id == reminder_id, VisitReminderRow.link_used_at.is_(None))
                .values(link_used_at=now)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                refuse("ONE_TAP_LINK_USED")
            account_id, booking_id = reminder.account_id, reminder.booking_id
        try:
            return await self._cancel(account_id, booking_id)
        except Exception:
            # Refused (deadline passed, already cancelled): the link is not spent by a refusal.
            async with self._p.sessions() as session, session.begin():
                await session.execute(
                    update(VisitReminderRow)
                    .where(VisitReminderRow.id == reminder_id)
                    .values(link_used_at=None)
                )
            raise

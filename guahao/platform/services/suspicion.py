"""Suspicion signals (可疑行为) of scalping (黄牛), recorded for the authority to look at.

Three patterns, computed from booking events by an outbox subscriber:

- ``cancel_rebook``: a unit cancelled by one account and booked by an unrelated account (a
  different person too) within seconds of coming back to the pool: the hand-over a scalper
  arranges with a buyer. Units handed out by the waitlist (候补) or the lottery are not holds
  anyone timed, so only ``regular`` bookings count.
- ``account_many_persons``: one account booking for more distinct persons than a family has.
- ``device_many_accounts`` / ``ip_many_accounts``: many accounts behind one device or address
  (keyed hashes filled at hold time; raw values never reach the platform's tables).

Each signal is recorded once per dedupe key; a growing pattern raises the score and refreshes
the detail of its open signal instead of adding rows. Windows are measured from the booking's
own time, so a late delivery of an event finds what an immediate one would have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import BookingRow, PatientRow, SuspicionSignalRow
from guahao.platform.services.audit import record_audit
from guahao.platform.services.ban_records import RegionRulesBook, person_of_booking
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role
from guahao.platform.suspicion_rules import SuspicionRules

__all__ = [
    "SignalView",
    "SuspicionDetector",
    "SuspicionService",
    "suspicion_rules_of",
]

SuspicionRulesSource = Callable[[], Awaitable[SuspicionRules]]

DETECTED_TOPICS = ("booking.held", "booking.patient_chosen", "booking.confirmed")
"""A hold shows its device and address; a chosen patient (again at confirmation, when a
late-chosen patient may have changed) shows the person."""


def suspicion_rules_of(book: RegionRulesBook) -> SuspicionRulesSource:
    """The thresholds in force (``RegionRules.suspicion``; the defaults while the region's
    rules have no such section)."""

    async def current() -> SuspicionRules:
        found = getattr(await book.region(), "suspicion", None)
        return found if isinstance(found, SuspicionRules) else SuspicionRules()

    return current


class SignalView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    kind: str
    subject_type: str
    subject_id: str
    score: int
    detail: dict[str, Any]
    detected_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_note: str | None


def _view(row: SuspicionSignalRow) -> SignalView:
    return SignalView(
        id=row.id,
        kind=row.kind,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        score=row.score,
        detail=row.detail,
        detected_at=row.detected_at,
        reviewed_at=row.reviewed_at,
        reviewed_by=row.reviewed_by,
        review_note=row.review_note,
    )


def _bucket(at: datetime, days: int) -> int:
    """The ``days``-long period ``at`` falls in (one open signal per subject and period).

    >>> from datetime import UTC
    >>> [_bucket(datetime(1970, 1, d, tzinfo=UTC), 30) for d in (30, 31)]
    [0, 1]
    """
    return int(at.timestamp() // (days * 86400))


def _booking_of(event: OutboxEvent) -> str:
    return str(event.payload.get("booking_id") or event.aggregate_id)


async def _default_rules() -> SuspicionRules:
    return SuspicionRules()


async def _upsert(
    session: AsyncSession,
    *,
    kind: str,
    subject_type: str,
    subject_id: str,
    dedupe_key: str,
    score: int,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    """Record a signal once per key; a higher score refreshes an open (unreviewed) one."""
    found = await session.scalar(
        select(SuspicionSignalRow).where(SuspicionSignalRow.dedupe_key == dedupe_key)
    )
    if found is None:
        session.add(
            SuspicionSignalRow(
                id=new_id(),
                kind=kind,
                subject_type=subject_type,
                subject_id=subject_id,
                dedupe_key=dedupe_key[:200],
                score=score,
                detail=msgspec.to_builtins(detail),
                detected_at=now,
            )
        )
    elif found.reviewed_at is None and score > found.score:
        found.score = score
        found.detail = msgspec.to_builtins(detail)


class SuspicionDetector:
    """Outbox subscriber (``booking.``) computing the three signals."""

    def __init__(self, ports: Ports, rules: SuspicionRulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or _default_rules

    async def __call__(self, event: OutboxEvent) -> None:
        if event.topic not in DETECTED_TOPICS:
            return
        rules = await self._rules()
        async with self._p.sessions() as session, session.begin():
            booking = await session.get(BookingRow, _booking_of(event))
            if booking is not None:
                await self._detect(session, booking, event.topic == "booking.held", rules)

    async def handle_batch(self, events: Sequence[OutboxEvent]) -> None:
        """A run of events in one transaction, with the rules read once and the run's bookings
        and patients in two queries instead of a session and two reads per event.

        The signals are the ones the events one by one would record: every check reads the
        booking as it is now, not as it was at its event, so a booking's ``patient_chosen``
        and ``confirmed`` ask the same question twice in a row and it is asked once. Its
        writes go through the same session, in event order, so a later event sees the
        signals an earlier one recorded (a growing score)."""
        wanted = [e for e in events if e.topic in DETECTED_TOPICS]
        if not wanted:
            return
        rules = await self._rules()
        async with self._p.sessions() as session, session.begin():
            ids = {_booking_of(e) for e in wanted}
            bookings = {
                b.id: b
                for b in (
                    await session.scalars(select(BookingRow).where(BookingRow.id.in_(ids)))
                ).all()
            }
            asked: list[tuple[BookingRow, bool]] = []
            for event in wanted:
                held = event.topic == "booking.held"
                booking = bookings.get(_booking_of(event))
                if booking is not None and (booking, held) not in asked:
                    asked.append((booking, held))
            facts = await _RunFacts.read(session, [b for b, held in asked], rules)
            for booking, held in asked:
                await self._detect(session, booking, held, rules, facts)

    async def _detect(
        self,
        session: AsyncSession,
        booking: BookingRow,
        held: bool,
        rules: SuspicionRules,
        facts: _RunFacts | None = None,
    ) -> None:
        """The checks of one event; ``facts`` (a batch's reads) answer the questions that one
        event alone asks the database."""
        if held:
            await self._shared_sources(session, booking, rules, facts)
            return
        person_id = await person_of_booking(session, booking)
        if person_id is None:
            return
        await self._cancel_rebook(session, booking, person_id, rules, facts)
        await self._many_persons(session, booking, rules, facts)

    async def _cancel_rebook(
        self,
        session: AsyncSession,
        booking: BookingRow,
        person_id: str,
        rules: SuspicionRules,
        facts: _RunFacts | None,
    ) -> None:
        if booking.kind != "regular":
            return
        held_at = booking.created_at
        within = timedelta(seconds=rules.rebook_within_seconds)
        cancelled: Sequence[BookingRow]
        if facts is not None:
            cancelled = facts.cancelled_before(booking)
        else:
            cancelled = (
                await session.scalars(
                    select(BookingRow).where(
                        BookingRow.slot_id == booking.slot_id,
                        BookingRow.status == "cancelled_by_patient",
                        BookingRow.account_id != booking.account_id,
                        BookingRow.ended_at <= held_at,
                        BookingRow.ended_at >= held_at - timedelta(days=1),
                    )
                )
            ).all()
        for old in cancelled:
            ended = old.ended_at or held_at
            available_at = max(old.unit_returns_at or ended, ended)
            seconds = (held_at - available_at).total_seconds()
            if not 0 <= seconds <= within.total_seconds():
                continue
            old_person = await person_of_booking(session, old)
            if old_person is None or old_person == person_id:
                continue
            key = f"cancel_rebook:{old.id}:{booking.id}"
            earlier = int(
                await session.scalar(
                    select(func.count()).where(
                        SuspicionSignalRow.kind == "cancel_rebook",
                        SuspicionSignalRow.subject_id == old.account_id,
                        SuspicionSignalRow.dedupe_key != key,
                    )
                )
                or 0
            )
            await _upsert(
                session,
                kind="cancel_rebook",
                subject_type="account",
                subject_id=old.account_id,
                dedupe_key=key,
                score=1 + earlier,
                detail={
                    "slot_id": booking.slot_id,
                    "cancelled_booking_id": old.id,
                    "cancelled_by_account": old.account_id,
                    "cancelled_at": old.ended_at.isoformat() if old.ended_at else None,
                    "unit_returned_at": available_at.isoformat(),
                    "rebooked_booking_id": booking.id,
                    "rebooked_by_account": booking.account_id,
                    "rebooked_at": held_at.isoformat(),
                    "seconds_after_return": round(seconds, 3),
                },
                now=self._p.clock.now(),
            )

    async def _many_persons(
        self,
        session: AsyncSession,
        booking: BookingRow,
        rules: SuspicionRules,
        facts: _RunFacts | None,
    ) -> None:
        since = booking.created_at - timedelta(days=rules.persons_window_days)
        if facts is not None:
            persons: Sequence[str] = facts.persons_of(booking.account_id, since)
        else:
            persons = (
                await session.scalars(
                    select(PatientRow.person_id)
                    .join(BookingRow, BookingRow.patient_id == PatientRow.id)
                    .where(
                        BookingRow.account_id == booking.account_id, BookingRow.created_at > since
                    )
                    .distinct()
                )
            ).all()
        if len(persons) <= rules.persons_per_account:
            return
        bucket = _bucket(booking.created_at, rules.persons_window_days)
        await _upsert(
            session,
            kind="account_many_persons",
            subject_type="account",
            subject_id=booking.account_id,
            dedupe_key=f"account_many_persons:{booking.account_id}:{bucket}",
            score=len(persons),
            detail={
                "account_id": booking.account_id,
                "distinct_persons": len(persons),
                "threshold": rules.persons_per_account,
                "window_days": rules.persons_window_days,
                "last_booking_id": booking.id,
            },
            now=self._p.clock.now(),
        )

    async def _shared_sources(
        self,
        session: AsyncSession,
        booking: BookingRow,
        rules: SuspicionRules,
        facts: _RunFacts | None,
    ) -> None:
        checks = (
            (
                "device",
                BookingRow.device_hash,
                booking.device_hash,
                rules.accounts_per_device,
                rules.device_window_days,
            ),
            (
                "ip",
                BookingRow.ip_hash,
                booking.ip_hash,
                rules.accounts_per_ip,
                rules.ip_window_days,
            ),
        )
        for name, column, value, threshold, days in checks:
            if not value:
                continue
            since = booking.created_at - timedelta(days=days)
            if facts is not None:
                accounts: Sequence[str] = facts.accounts_behind(name, value, since)
            else:
                accounts = (
                    await session.scalars(
                        select(BookingRow.account_id)
                        .where(column == value, BookingRow.created_at > since)
                        .distinct()
                    )
                ).all()
            if len(accounts) <= threshold:
                continue
            bucket = _bucket(booking.created_at, days)
            await _upsert(
                session,
                kind=f"{name}_many_accounts",
                subject_type=name,
                subject_id=value[:64],
                dedupe_key=f"{name}_many_accounts:{value}:{bucket}",
                score=len(accounts),
                detail={
                    f"{name}_hash": value,
                    "distinct_accounts": len(accounts),
                    "accounts": sorted(accounts)[:50],
                    "threshold": threshold,
                    "window_days": days,
                    "last_booking_id": booking.id,
                },
                now=self._p.clock.now(),
            )


@dataclass
class _RunFacts:
    """What a run of events asks the database, read in one query per question for the whole
    run; each method answers for one booking exactly what the one-event query would."""

    cancelled: dict[str, list[BookingRow]] = field(default_factory=dict)
    """Slot -> the bookings of it cancelled by their patients around the run's holds."""
    persons: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)
    """Account -> (person, booked at) of its bookings with a patient, for the run's accounts."""
    sources: dict[tuple[str, str], list[tuple[str, datetime]]] = field(default_factory=dict)
    """("device"/"ip", hash) -> (account, booked at) of the bookings behind the run's hashes."""

    @classmethod
    async def read(
        cls, session: AsyncSession, bookings: Sequence[BookingRow], rules: SuspicionRules
    ) -> _RunFacts:
        facts = cls()
        if not bookings:
            return facts
        earliest = min(b.created_at for b in bookings)
        latest = max(b.created_at for b in bookings)
        regular = [b for b in bookings if b.kind == "regular"]
        if regular:
            for old in (
                await session.scalars(
                    select(BookingRow).where(
                        BookingRow.slot_id.in_({b.slot_id for b in regular}),
                        BookingRow.status == "cancelled_by_patient",
                        BookingRow.ended_at <= latest,
                        BookingRow.ended_at >= earliest - timedelta(days=1),
                    )
                )
            ).all():
                facts.cancelled.setdefault(old.slot_id, []).append(old)
        persons_since = earliest - timedelta(days=rules.persons_window_days)
        for account, person, at in (
            await session.execute(
                select(BookingRow.account_id, PatientRow.person_id, BookingRow.created_at)
                .join(PatientRow, BookingRow.patient_id == PatientRow.id)
                .where(
                    BookingRow.account_id.in_({b.account_id for b in bookings}),
                    BookingRow.created_at > persons_since,
                )
            )
        ).all():
            facts.persons.setdefault(str(account), []).append((str(person), at))
        for name, column, days in (
            ("device", BookingRow.device_hash, rules.device_window_days),
            ("ip", BookingRow.ip_hash, rules.ip_window_days),
        ):
            values = {v for b in bookings if (v := getattr(b, f"{name}_hash"))}
            if not values:
                continue
            for value, account, at in (
                await session.execute(
                    select(column, BookingRow.account_id, BookingRow.created_at).where(
                        column.in_(values),
                        BookingRow.created_at > earliest - timedelta(days=days),
                    )
                )
            ).all():
                facts.sources.setdefault((name, str(value)), []).append((str(account), at))
        # the patients the checks look up (the run's and the cancelled bookings'): one read
        cancelled = [old for olds in facts.cancelled.values() for old in olds]
        patients = {b.patient_id for b in (*bookings, *cancelled) if b.patient_id}
        if patients:  # into the session, where person_of_booking's reads find them
            await session.scalars(select(PatientRow).where(PatientRow.id.in_(patients)))
        return facts

    def cancelled_before(self, booking: BookingRow) -> list[BookingRow]:
        held_at = booking.created_at
        return [
            old
            for old in self.cancelled.get(booking.slot_id, [])
            if old.account_id != booking.account_id
            and old.ended_at is not None
            and held_at - timedelta(days=1) <= old.ended_at <= held_at
        ]

    def persons_of(self, account_id: str, since: datetime) -> list[str]:
        return sorted({p for p, at in self.persons.get(account_id, []) if at > since})

    def accounts_behind(self, name: str, value: str, since: datetime) -> list[str]:
        return sorted({a for a, at in self.sources.get((name, value), []) if at > since})


class SuspicionService:
    """The authority's list of signals and its review of each."""

    def __init__(self, ports: Ports, rules: SuspicionRulesSource | None = None) -> None:
        self._p = ports
        self.detector = SuspicionDetector(ports, rules)

    async def list(
        self,
        staff: StaffActor,
        *,
        kind: str | None = None,
        reviewed: bool | None = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SignalView]:
        require_role(staff, StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)
        query = select(SuspicionSignalRow)
        if kind:
            query = query.where(SuspicionSignalRow.kind == kind)
        if reviewed is True:
            query = query.where(SuspicionSignalRow.reviewed_at.is_not(None))
        elif reviewed is False:
            query = query.where(SuspicionSignalRow.reviewed_at.is_(None))
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    query.order_by(
                        SuspicionSignalRow.score.desc(),
                        SuspicionSignalRow.detected_at.desc(),
                        SuspicionSignalRow.id,
                    )
                    .offset(max(offset, 0))
                    .limit(min(max(limit, 1), 500))
                )
            ).all()
        return [_view(r) for r in rows]

    async def review(self, signal_id: str, note: str, staff: StaffActor) -> SignalView:
        require_role(staff, StaffRole.AUTHORITY_ADMIN)
        note = note.strip()
        if not note:
            refuse("REASON_REQUIRED", field="note")
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(SuspicionSignalRow, signal_id)
            if row is None:
                refuse("SIGNAL_NOT_FOUND", signal_id=signal_id)
            row.reviewed_at = now
            row.reviewed_by = staff.username
            row.review_note = note
            record_audit(
                session,
                staff.username,
                staff.role,
                "signal.review",
                "signal",
                row.id,
                {"kind": row.kind, "note": note},
                now,
            )
            return _view(row)

"""The strike recorder: booking events become strikes, warnings and bans.

Booking events reach ``StrikeRecorder`` through the outbox (at least once). It records the
strike (unique per booking and kind, so a repeated delivery records nothing new), evaluates the
region's strike policies over the person's strikes and, in the same transaction, bans, warns,
notifies the booking's account and writes the outbox event and the audit row. A ban answers the
strikes that caused it: after a ban by a policy only strikes later than its start count for
that policy again.

Its outbox cursor is named in the composition root (``bootstrap``) with the name it had when it
lived in ``blacklist.py``, so moving it here replays nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BlacklistEntryRow,
    BookingRow,
    SessionRow,
    SlotRow,
    StrikeRow,
)
from guahao.platform.services.audit import SYSTEM_ACTOR, record_audit
from guahao.platform.services.ban_checks import active_ban
from guahao.platform.services.ban_records import (
    RulesSource,
    counted_since,
    default_rules,
    entry_payload,
    notify,
    person_of_booking,
    strikes_of,
)
from guahao.platform.services.ban_views import label_of, local_time
from guahao.platform.services.person_locks import try_lock_person
from guahao.platform.services.runtime import Ports
from guahao.platform.strikes import (
    BlacklistRules,
    BookingOrigin,
    Decision,
    Strike,
    StrikeKind,
    StrikePolicy,
    evaluate,
)

__all__ = ["KINDS", "STRIKE_TOPICS", "StrikeRecorder"]

log = logging.getLogger(__name__)

KINDS = frozenset(k.value for k in StrikeKind)

STRIKE_TOPICS = ("booking.no_show", "booking.cancelled_by_patient", "booking.expired")


class StrikeRecorder:
    """Outbox subscriber (``booking.``): strikes from no-shows, cancellations and unpaid
    expiries, and the bans and warnings they call for. Idempotent per booking and kind."""

    def __init__(self, ports: Ports, rules: RulesSource | None = None) -> None:
        self._p = ports
        self._rules = rules or default_rules

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
        origin = _origin_of(booking)
        # Only what some policy counts for a booking of this origin is a strike at all: a
        # booking the platform started (an offer, a priority rebooking) leaves no record
        # against the patient, not even one that no policy would count.
        kinds = [
            (k, at, note)
            for k, at, note in kinds
            if any(k in p.counts and origin in p.origins for p in rules.policies)
        ]
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
        rows = await strikes_of(session, person_id, now - timedelta(days=horizon))
        origins = await _origins_of(session, [r.booking_id for r in rows if r.booking_id])
        strikes = [
            Strike(
                StrikeKind(r.kind),
                r.occurred_at,
                origins.get(r.booking_id or "", BookingOrigin.PATIENT),
            )
            for r in rows
            if r.kind in KINDS
        ]
        decision = evaluate(
            policies, strikes, now, counted_since=await counted_since(session, person_id)
        )
        policy = next((p for p in policies if p.name == decision.policy), None)
        await _apply(session, decision, policy, person_id, booking, now)


def _origin_of(booking: BookingRow) -> BookingOrigin:
    return _origin(booking.origin)


def _origin(value: str | None) -> BookingOrigin:
    try:
        return BookingOrigin(value or BookingOrigin.PATIENT)
    except ValueError:  # an origin this version does not know: the patient's, as before
        return BookingOrigin.PATIENT


async def _origins_of(session: AsyncSession, booking_ids: list[str]) -> dict[str, BookingOrigin]:
    if not booking_ids:
        return {}
    found = await session.execute(
        select(BookingRow.id, BookingRow.origin).where(BookingRow.id.in_(booking_ids))
    )
    return {booking_id: _origin(origin) for booking_id, origin in found}


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
        notify(
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
    record_event(session, "blacklist.added", person_id, entry_payload(entry), now)
    notify(
        session,
        booking.account_id,
        "blacklist.added",
        f"blacklist:{entry.id}",
        {"entry_id": entry.id, "policy": decision.policy, "until": local_time(entry.ends_at)},
        now,
    )

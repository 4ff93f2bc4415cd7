"""Granted holds, a loop turn's requests at a time (``HoldGrants.grant_all``, behind
``BookingService.grant_hold`` and ``grant_holds``).

At a release a worker's granted holds cost the server about four times a plain answer, and
no single function of the grant path stood out any more (bench/profiles/grant7-35-*): the
cost was spread thin over each request's own walk through the limits, the facts, the pool's
hold and the group commit, with a suspension and a wake-up of the request at each of the
two batches below it (the pool's ``hold_many`` call, the group commit). Carried through as
one batch (the requests of one loop turn, gathered by ``guahao/web/front_grants.py``), the
limits and facts are loops over lists, the pool's holds and the records are each awaited
once for them all, and a request wakes once, with its answer (bench/README.md, branch grant8).

Each request still gets exactly the outcome it would get alone, its grant or its own error:
a refusal or a fault of one never fails another. The plain grant (fresh, in the platform's
own pool) goes the batch's way; a repeat, a hold the hospital's HIS must make too, a slot to
load from SQL or a stale claim to clear go on alone, as ``grant_hold`` always took them,
meanwhile. A record the database refused, or a hold the pool did not vouch for, is then
answered one by one inside the batch (``_answer_recorded``), and the batch's other answers
wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from guahao.platform import bookings as flow
from guahao.platform.bookings import Booking, BookingStatus
from guahao.platform.client_context import ClientContext
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import error, refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import BookingRow
from guahao.platform.ports import HisInventory, HoldAsked, HoldGrant
from guahao.platform.services.booking_records import BookingRecords, event_payload, to_domain
from guahao.platform.services.booking_steps import BookingSteps
from guahao.platform.services.hold_commits import Check, HoldCommits
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports, SlotFacts

__all__ = ["HoldAsk", "HoldGrants", "HoldOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldOutcome:
    """What ``BookingService.grant_hold`` made of a request."""

    booking: Booking
    """The booking as it stands now (a repeat's may have moved on since its hold)."""
    granted: Booking
    """The booking as its hold was first answered: what a repeat is answered again."""
    replayed: bool
    """Whether another request under the same key made the hold (this one repeats it)."""
    facts: SlotFacts
    """The slot's facts, read for the hold (every outcome is of the slot asked: a repeat's
    replay record lives in that slot's keys), so its answer needs no second look-up."""


def _as_granted(row: BookingRow, expires_at: datetime) -> Booking:
    """A recorded booking as the grant of its hold showed it (held until the hold's first
    expiry, nothing chosen yet), whatever happened to it since."""
    return Booking(
        id=row.id,
        account_id=row.account_id,
        slot_id=row.slot_id,
        session_id=row.session_id,
        status=BookingStatus.HELD,
        hold_expires_at=expires_at,
        fee_cents=row.fee_cents,
    )


@dataclass(frozen=True, slots=True)
class HoldAsk:
    """One request of ``HoldGrants.grant_all``: ``BookingService.grant_hold``'s arguments."""

    account_id: str
    slot_id: str
    idempotency_key: str
    client: ClientContext


_HELD = BookingStatus.HELD.value
"""The status a grant records (``.value`` is a property of the enum's, read once here)."""

_HELD_ALONE = frozenset(["SLOT_NOT_LOADED", "HOLD_ALREADY_ACTIVE"])
"""The pool's answers a request is held again for, alone: a slot to load from SQL, an
account's claim that may be stale."""


@dataclass(slots=True)
class _Granting:
    """One request on its way through ``HoldGrants.grant_all``: what it learnt so far, and its
    outcome once it has one (its ``HoldOutcome``, or its own error)."""

    ask: HoldAsk
    index: int
    """Its place in the batch (``grant_all``'s ``answered`` names it so)."""
    facts: SlotFacts = field(init=False)
    now: datetime = field(init=False)
    now_ms: int = field(init=False)
    booking_id: str = field(default_factory=new_id)
    grant: HoldGrant | None = None
    repeat: bool = False
    his: HisInventory | None = None
    outcome: HoldOutcome | Exception | None = None
    held: Booking | None = None
    """The booking the grant makes, once built (``booking``)."""

    def hold_asked(self) -> HoldAsked:
        """The pool's hold for this request (its replay record under the account's key)."""
        ask = self.ask
        return HoldAsked(
            ask.slot_id,
            self.booking_id,
            ask.account_id,
            self.now_ms,
            self.facts.policies.hold_minutes * 60_000,
            f"{ask.account_id}:{ask.idempotency_key}",
        )

    def expires_at(self) -> datetime:
        assert self.grant is not None
        return datetime.fromtimestamp(self.grant.expires_at_ms / 1000, self.now.tzinfo)

    def granted(self, grant: HoldGrant) -> None:
        """The pool's grant; ``repeat``: it is another request's hold under this key (not
        this call's own resend of the script)."""
        self.grant = grant
        self.repeat = grant.replayed and grant.hold_id != self.booking_id

    def booking(self) -> Booking:
        if self.held is not None:
            return self.held
        facts = self.facts
        self.held = Booking(
            id=self.booking_id,
            account_id=self.ask.account_id,
            slot_id=self.ask.slot_id,
            session_id=facts.session_id,
            status=BookingStatus.HELD,
            hold_expires_at=self.expires_at(),
            fee_cents=facts.fee_cents,
        )
        return self.held

    def record(self) -> tuple[dict[str, Any], dict[str, Any], datetime, Check]:
        """``HoldCommits.record_all``'s entry: the booking row, its event, the survival check."""
        booking, ask, now = self.booking(), self.ask, self.now
        row = {
            "id": booking.id,
            "account_id": ask.account_id,
            "slot_id": ask.slot_id,
            "session_id": booking.session_id,
            "status": _HELD,
            "idempotency_key": ask.idempotency_key,
            "fee_cents": booking.fee_cents,
            "hold_expires_at": booking.hold_expires_at,
            "created_at": now,
            "updated_at": now,
            "ip_hash": ask.client.ip_hash,
            "device_hash": ask.client.device_hash,
        }
        return row, event_payload(booking), now, (ask.slot_id, booking.id, self.now_ms)

    def answered(self) -> HoldOutcome | Exception:
        assert self.outcome is not None
        return self.outcome


class HoldGrants:
    """The grant path of ``BookingService`` (see the module docstring); one per service."""

    def __init__(
        self,
        ports: Ports,
        inventory_sync: InventorySync,
        rules: RuleBook,
        records: BookingRecords,
        steps: BookingSteps,
    ) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._rules = rules
        self.records = records
        self.steps = steps
        self._hold_commits = HoldCommits(ports)

    async def grant_all(
        self,
        asked: Sequence[HoldAsk],
        answered: Callable[[int, HoldOutcome | Exception], None] | None = None,
    ) -> list[HoldOutcome | Exception]:
        """``grant_hold`` for each of a loop turn's requests, carried through together: the
        limits and the facts in a loop, the pool's holds and the records each awaited once
        for them all. Each request gets its own outcome, its grant or its own error, in the
        order asked; one request's refusal or fault is never another's.

        The plain grant (fresh, in the platform's own pool) goes the batch's way; a repeat, a
        hold the hospital's HIS must make too, a slot to load or a stale claim to clear go on
        alone, as ``grant_hold`` always took them, meanwhile. ``answered`` is told each
        request's outcome (by its place in ``asked``) as soon as that request's part is done:
        the refusals once the pool has answered, the batch's grants once their group commit,
        and any of the batch's records answered one by one after it, are done, so one that
        goes on alone (an HIS's hold is a call to a hospital's system) never holds up the
        others' answers.
        """
        granting = [_Granting(ask, n) for n, ask in enumerate(asked)]
        await self._admit(granting)
        admitted = [g for g in granting if g.outcome is None]
        pooled = await self._p.inventory.hold_all([g.hold_asked() for g in admitted])
        together: list[_Granting] = []
        alone: list[_Granting] = []
        his_of: dict[str, HisInventory | None] = {}  # asked once per hospital of the batch
        for g, grant in zip(admitted, pooled, strict=True):
            if isinstance(grant, HoldGrant):
                g.granted(grant)
                hospital = g.facts.hospital_id
                if hospital not in his_of:
                    his_of[hospital] = await self._his_owning(g.facts)
                g.his = his_of[hospital]
                (alone if grant.replayed or g.his is not None else together).append(g)
            elif isinstance(grant, GuahaoError) and grant.code in _HELD_ALONE:
                alone.append(g)  # held again alone: the slot loaded, or the stale claim cleared
            else:
                self._refused(g, grant)

        def tell(group: Sequence[_Granting]) -> None:
            if answered is not None:
                for g in group:
                    answered(g.index, g.answered())

        async def finished(step: Awaitable[None], group: Sequence[_Granting]) -> None:
            await step
            for g in group:
                if isinstance(g.outcome, HoldOutcome):
                    try:  # once a second of expiry per process: ``schedule_expiry`` skips repeats
                        await self.records.schedule_expiry(g.outcome.granted.hold_expires_at)
                    except Exception as exc:  # recorded, but the client is told to retry
                        g.outcome = exc
            tell(group)

        tell([g for g in granting if g.outcome is not None])  # refused: nothing to wait for
        steps = [
            finished(self._record_together(together), together),
            *(finished(self._grant_alone(g), [g]) for g in alone),
        ]
        await (steps[0] if len(steps) == 1 else asyncio.gather(*steps))
        return [g.answered() for g in granting]

    async def _admit(self, granting: list[_Granting]) -> None:
        """Each request's key and rate limits, then the slots' facts: rate limits per
        account, device and address first, so a bot that hammers the release moment is
        turned away before it costs the slot pool anything. The limits this process cannot
        decide alone (a counter near its limit, or not heard from Redis lately) are asked of
        Redis together, not a round trip after another: a crowd behind one carrier address
        near its limit would otherwise hold the whole turn's grants for a round trip each."""
        limiter = self._p.limiter
        limits = (await self._rules.region()).rate_limits if limiter is not None else None
        undecided: list[tuple[_Granting, list[tuple[str, str, str]]]] = []
        for g in granting:
            ask = g.ask
            try:
                if not ask.idempotency_key or len(ask.idempotency_key) > 100:
                    refuse("VALIDATION_FAILED", field="idempotency_key")
                if limiter is not None and limits is not None:
                    checks = [
                        ("hold:account", limits.hold_per_account, ask.account_id),
                        ("hold:device", limits.hold_per_device, ask.client.device_hash),
                        ("hold:ip", limits.hold_per_ip, ask.client.ip_hash),
                    ]
                    if not limiter.hit_from_memory(checks):
                        undecided.append((g, checks))
            except Exception as exc:
                g.outcome = exc
        if undecided and limiter is not None:
            decided = await asyncio.gather(
                *(limiter.hit(checks) for _, checks in undecided), return_exceptions=True
            )
            for (g, _), outcome in zip(undecided, decided, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    g.outcome = outcome
        admitted = [g for g in granting if g.outcome is None]
        try:
            found = await self.records.slot_facts_all([g.ask.slot_id for g in admitted])
        except Exception as exc:  # the facts could not be read (the database away)
            found = [exc] * len(admitted)
        now = self._p.clock.now()
        now_ms = to_epoch_ms(now)
        for g, facts in zip(admitted, found, strict=True):
            if isinstance(facts, Exception):
                g.outcome = facts
            elif now >= facts.starts_at:
                g.outcome = error("SLOT_IN_PAST", slot_id=g.ask.slot_id)
            else:
                g.facts, g.now, g.now_ms = facts, now, now_ms

    async def _his_owning(self, facts: SlotFacts) -> HisInventory | None:
        """The HIS that must hold the unit too (the hospital owns its inventory), or None
        when the platform's pool is the hospital's inventory."""
        his = self._p.his_inventory
        if his is not None and not await his.owns(facts.hospital_id):
            return None
        return his

    def _refused(self, g: _Granting, exc: Exception) -> None:
        """The pool's refusal is the request's answer; a sold-out one is unmet demand."""
        demand = self._p.refused_demand
        if demand is not None and isinstance(exc, GuahaoError) and exc.code == "SLOT_SOLD_OUT":
            demand.note(g.facts.session_id, g.ask.account_id)
        g.outcome = exc

    async def _record_together(self, together: list[_Granting]) -> None:
        """The plain grants' records, written with the process's other grants (group commit)
        and awaited once; a record that failed, or a hold the pool did not vouch for, is
        answered one by one (``_answer_recorded``) before any of the batch is told."""
        if not together:
            return
        recorded = await self._hold_commits.record_all([g.record() for g in together])
        for g, survived in zip(together, recorded, strict=True):
            if survived is True:
                booking = g.booking()
                g.outcome = HoldOutcome(booking, booking, False, g.facts)
                continue
            try:
                g.outcome = await self._answer_recorded(g, survived)
            except Exception as exc:
                g.outcome = exc

    async def _grant_alone(self, g: _Granting) -> None:
        """One request the batch does not carry, as ``grant_hold`` always took it."""
        try:
            g.outcome = await self._hold_alone(g)
        except Exception as exc:
            g.outcome = exc

    async def _hold_alone(self, g: _Granting) -> HoldOutcome:
        """The pool asked again if it did not grant (the slot loaded from SQL first, or the
        account's stale claim cleared), a repeat's record read, the HIS hold, the record:
        every branch of a grant, for one request."""
        ask, facts, now = g.ask, g.facts, g.now
        account_id, slot_id = ask.account_id, ask.slot_id
        if g.grant is None:

            async def attempt() -> HoldGrant:
                asked = g.hold_asked()
                return await self._p.inventory.hold(
                    slot_id,
                    hold_id=asked.hold_id,
                    account_id=account_id,
                    now_ms=asked.now_ms,
                    ttl_ms=asked.ttl_ms,
                    idempotency_key=asked.idempotency_key,
                )

            try:
                try:
                    g.granted(await self._sync.with_slot_loaded(slot_id, attempt))
                except GuahaoError as exc:
                    if exc.code != "HOLD_ALREADY_ACTIVE" or not await self._stale_claim_cleared(
                        account_id, exc.detail, now, key=ask.idempotency_key, slot_id=slot_id
                    ):
                        raise
                    g.granted(await self._sync.with_slot_loaded(slot_id, attempt))
            except GuahaoError as exc:
                self._refused(g, exc)
                raise
            g.his = await self._his_owning(facts)
        grant = g.grant
        assert grant is not None
        if grant.replayed:
            async with self._p.sessions() as session:
                existing = await session.get(BookingRow, grant.hold_id)
                if existing is not None:
                    granted = _as_granted(existing, g.expires_at())
                    return HoldOutcome(to_domain(existing), granted, g.repeat, facts)
            g.booking_id = grant.hold_id  # the first attempt died before writing SQL
        his = g.his
        if his is not None:
            # The hospital owns its inventory: the HIS must hold the unit too, or nobody does.
            try:
                await his.hold(facts.hospital_id, slot_id, g.booking_id)
            except BaseException:
                await self._p.inventory.release(
                    slot_id, hold_id=g.booking_id, account_id=account_id, now_ms=g.now_ms
                )
                raise
        (recorded,) = await self._hold_commits.record_all([g.record()])
        return await self._answer_recorded(g, recorded)

    async def _answer_recorded(self, g: _Granting, recorded: bool | Exception) -> HoldOutcome:
        """The outcome of a grant whose record was tried: ``recorded`` is whether the pool
        vouched for the committed hold, or the record's error."""
        ask, facts, grant, booking = g.ask, g.facts, g.grant, g.booking()
        assert grant is not None
        account_id, slot_id, now_ms = ask.account_id, ask.slot_id, g.now_ms

        async def give_back_his() -> None:
            if g.his is not None:
                with contextlib.suppress(Exception):
                    await g.his.release(facts.hospital_id, slot_id, booking.id)

        if isinstance(recorded, IntegrityError):
            async with self._p.sessions() as session:
                same = await session.scalar(
                    select(BookingRow).where(
                        BookingRow.account_id == account_id,
                        BookingRow.idempotency_key == ask.idempotency_key,
                    )
                )
            if same is not None and same.id == booking.id:
                # A repeat of this request was answered our grant and recorded it first: the
                # hold is ours and recorded, so it must not be given back.
                granted = _as_granted(same, g.expires_at())
                return HoldOutcome(to_domain(same), granted, g.repeat, facts)
            if not grant.replayed:
                # Our own fresh hold cannot be recorded: give it back. A replayed grant is the
                # first request's hold, which that request is recording right now.
                await self._p.inventory.release(
                    slot_id, hold_id=booking.id, account_id=account_id, now_ms=now_ms
                )
                await give_back_his()
            if same is not None and same.slot_id == slot_id:
                answered = to_domain(same)
                return HoldOutcome(answered, answered, True, facts)
            refuse("IDEMPOTENCY_KEY_REUSED", idempotency_key=ask.idempotency_key)
        if isinstance(recorded, SQLAlchemyError | ConnectionError):
            # The record cannot be written (database away): give the unit back rather than
            # leave a hold nobody can see, and tell the caller to retry.
            if not grant.replayed:
                with contextlib.suppress(Exception):
                    await self._p.inventory.release(
                        slot_id, hold_id=booking.id, account_id=account_id, now_ms=now_ms
                    )
                await give_back_his()
            raise error("DATABASE_UNAVAILABLE", operation="hold") from recorded
        if isinstance(recorded, Exception):
            raise recorded
        if not recorded and not await self._hold_survived(slot_id, booking.id, now_ms):
            await self.steps.expire(booking.id, force=True)
            await give_back_his()
            refuse("SLOT_SOLD_OUT", slot_id=slot_id, reason="hold_lost_with_redis")
        return HoldOutcome(booking, booking, g.repeat, facts)

    async def _hold_survived(self, slot_id: str, hold_id: str, now_ms: int) -> bool:
        """Whether the pool still knows a hold now that its record is written.

        Redis is written first and SQL a moment later. If Redis is lost in between and the
        slot is reloaded (the sweep's rebuild, another citizen's lazy load) from a SQL read
        that could not see the record yet, the pool forgets a hold the citizen is about to be
        told about, and its confirm later finds nothing (``HOLD_EXPIRED``). The record is
        committed now, so reloading the slot under its fence puts the hold back, unless
        the unit went to someone else meanwhile: then the hold is lost and must be refused
        here rather than answered. A pool that cannot be asked (Redis away again) leaves the
        hold standing: it is recorded, and whatever load brings the slot back includes it.
        """

        async def check() -> bool:
            return await self._p.inventory.holds(slot_id, hold_id=hold_id, now_ms=now_ms)

        try:
            if await self._sync.with_slot_loaded(slot_id, check):
                return True
            log.warning("hold %s was lost with Redis before its record: reloading", hold_id)
            await self._sync.reload([slot_id])
            return await self._sync.with_slot_loaded(slot_id, check)
        except GuahaoError as exc:
            if exc.code not in ("INVENTORY_UNAVAILABLE", "SLOT_NOT_LOADED"):
                raise
            log.warning("hold %s recorded but not verified in the pool: %s", hold_id, exc.code)
            return True

    async def _stale_claim_cleared(
        self, account_id: str, detail: dict[str, Any], now: datetime, *, key: str, slot_id: str
    ) -> bool:
        """A refusal ``HOLD_ALREADY_ACTIVE`` naming a booking the record says no longer holds
        (it was left or expired while Redis was away, or Redis came back from an old
        snapshot): give that hold back in Redis so the account can hold again. A booking not
        in SQL at all may be a concurrent hold still being written, so it stands.

        The booking holding may be this very key's, made on another slot: the key was reused
        for another request (``IDEMPOTENCY_KEY_REUSED``, as the web layer's record said before
        the holds route answered repeats from the pool's own record)."""
        hold_id, active_slot = detail.get("active_hold_id"), detail.get("active_slot_id")
        if not isinstance(hold_id, str) or not isinstance(active_slot, str):
            return False
        async with self._p.sessions() as session:
            row = await session.get(BookingRow, hold_id)
        if row is None or row.account_id != account_id:
            return False
        if row.idempotency_key == key and row.slot_id != slot_id:
            refuse("IDEMPOTENCY_KEY_REUSED", idempotency_key=key)
        if BookingStatus(row.status) in flow.HOLDING_STATUSES:
            return False
        try:
            await self._p.inventory.release(
                active_slot, hold_id=hold_id, account_id=account_id, now_ms=to_epoch_ms(now)
            )
        except GuahaoError:
            return False
        log.info(
            "cleared a stale hold %s (%s in the record) of %s", hold_id, row.status, account_id
        )
        return True

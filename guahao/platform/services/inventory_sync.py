"""Rebuilding the hot pool in Redis from the record of truth in SQL, also while it serves.

Redis may be lost at any time (restart, failover) without losing a confirmed booking: the
state of every slot can be computed from SQL, which keeps booked counts, live holds (bookings
in a holding state with their deadlines) and units still on their way back after a
cancellation.

A request changes Redis first and SQL a moment later (a hold is granted, then recorded; a
confirm counts the unit inside the transaction that records it), so SQL read at any instant
lags Redis by the steps in flight. A rebuild that replaced a slot with SQL's state alone
would drop those steps: a hold being recorded vanishes, a unit being confirmed is counted in
SQL but not in Redis. So each slot is rebuilt under a fence (``Inventory.fence``): every step
on the slot waits while it stands, the fence answers what Redis holds, SQL is read after it,
and the load merges the two: SQL decides every booking it knows, Redis keeps the holds and
confirmations SQL has not recorded yet. The load takes the fence down in the same script.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_, select

from guahao.platform.bookings import HOLDING_STATUSES, BookingStatus, unit_held_until
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import error
from guahao.platform.errors import SlotNotLoadedError
from guahao.platform.ids import new_id
from guahao.platform.persistence.database import AsyncSession
from guahao.platform.persistence.tables import BookingRow, SessionRow, SlotRow
from guahao.platform.ports import (
    HeldUnit,
    ReturningUnit,
    SlotSnapshot,
    SlotState,
    SlotStatus,
)
from guahao.platform.services.runtime import Ports

__all__ = ["FENCE_TTL_MS", "InventorySync"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FENCE_TTL_MS = 10_000
"""How long a fence stands if its rebuild dies between fence and load. Steps on the slot
wait at most ``FENCE_WAIT_MS`` (then 503), so a dead rebuild costs one slot ten seconds."""

FENCED_BATCH = 200
"""Slots fenced, read and loaded together: their steps wait for one SQL read and one
pipelined load (tens of milliseconds), while a rebuild of many slots needs few round trips."""

_BUSY_RETRIES = 200
"""How many times a slot another rebuild is fencing is tried again (50 ms apart)."""


class InventorySync:
    """Loads slot states into the inventory from SQL."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def _states(
        self,
        slot_ids: Sequence[str] | None,
        session_id: str | None,
        now: datetime,
        seen: dict[str, SlotSnapshot] | None = None,
        session: AsyncSession | None = None,
    ) -> list[SlotState]:
        """Each slot's state from SQL, merged with ``seen`` (what Redis held under a fence).

        One SELECT per chunk: a single statement reads one snapshot on both databases, so a
        confirmation committing meanwhile is seen either in both the booking and the slot's
        count or in neither.
        """
        redis_hold_ids = sorted(
            {held.hold_id for snap in (seen or {}).values() for held in snap.holds}
        )
        booking_filter: ColumnElement[bool] = (
            BookingRow.status.in_([s.value for s in HOLDING_STATUSES])
        ) | (
            (BookingRow.status == BookingStatus.CANCELLED_BY_PATIENT.value)
            & (BookingRow.unit_returns_at > now)
        )
        if redis_hold_ids:
            # Holds Redis has: SQL says whether each is recorded and still holding.
            booking_filter = or_(booking_filter, BookingRow.id.in_(redis_hold_ids))
        query = (
            select(SlotRow, SessionRow.status, BookingRow)
            .join(SessionRow, SessionRow.id == SlotRow.session_id)
            .outerjoin(BookingRow, and_(BookingRow.slot_id == SlotRow.id, booking_filter))
        )
        if slot_ids is not None:
            query = query.where(SlotRow.id.in_(slot_ids))
        if session_id is not None:
            query = query.where(SlotRow.session_id == session_id)
        slots: dict[str, tuple[SlotRow, str]] = {}
        rows: dict[str, list[BookingRow]] = {}
        if session is None:
            async with self._p.sessions() as own:
                found = (await own.execute(query)).all()
        else:
            found = (await session.execute(query)).all()
        for slot, session_status, booking in found:
            slots[slot.id] = (slot, session_status)
            if booking is not None:
                rows.setdefault(slot.id, []).append(booking)
        return [
            _merged(slot, session_status, rows.get(slot_id, []), (seen or {}).get(slot_id), now)
            for slot_id, (slot, session_status) in slots.items()
        ]

    async def with_slot_loaded(
        self,
        slot_id: str,
        step: Callable[[], Awaitable[T]],
        *,
        reload: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Run one inventory step on ``slot_id``; if Redis does not know the slot, load it
        from SQL and run the step once more.

        The one place where "slot not loaded, load and retry" is written: Redis may lose a
        slot at any moment and SQL can always rebuild it, so no command should fail for it.
        ``reload`` replaces the plain load when the caller must put more back than SQL's
        state (it must load the slot too). A second ``SlotNotLoadedError`` propagates: the
        load itself failed, and the caller's client is told to retry.
        """
        try:
            return await step()
        except SlotNotLoadedError:
            if reload is None:
                await self.load_slot(slot_id, only_if_missing=True)
            else:
                await reload()
            return await step()

    async def load_slot(self, slot_id: str, *, only_if_missing: bool = False) -> None:
        await self.load_slots([slot_id], only_if_missing=only_if_missing)

    async def load_slots(self, slot_ids: Sequence[str], *, only_if_missing: bool = False) -> None:
        """Load these slots, reading SQL in chunks (new sessions publish thousands at once).

        ``only_if_missing`` loads only slots Redis does not know (the lazy load after a loss:
        nothing there to merge with); otherwise each slot is rebuilt under its fence.
        """
        if not only_if_missing:
            await self.reload(slot_ids)
            return
        now = self._p.clock.now()
        for start in range(0, len(slot_ids), 500):
            for state in await self._states(slot_ids[start : start + 500], None, now):
                await self._p.inventory.load(state, only_if_missing=True)

    async def load_session(self, session_id: str) -> None:
        async with self._p.sessions() as session:
            ids = list(
                (
                    await session.scalars(
                        select(SlotRow.id).where(SlotRow.session_id == session_id)
                    )
                ).all()
            )
        await self.reload(ids)

    async def rebuild_all(
        self, progress: Callable[[int, int], None] | None = None, batch: int = FENCED_BATCH
    ) -> int:
        """Rebuild every slot of sessions not yet over, safe while the platform serves;
        returns how many slots were loaded."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            ids = list(
                (
                    await session.scalars(
                        select(SlotRow.id)
                        .join(SessionRow, SessionRow.id == SlotRow.session_id)
                        .where(SessionRow.ends_at > now)
                        .order_by(SlotRow.id)
                    )
                ).all()
            )
        for start in range(0, len(ids), batch):
            await self.reload(ids[start : start + batch])
            if progress is not None:
                progress(min(len(ids), start + batch), len(ids))
        return len(ids)

    async def reload(self, slot_ids: Sequence[str]) -> None:
        """Rebuild these slots, each under its fence, in batches of ``FENCED_BATCH``."""
        for start in range(0, len(slot_ids), FENCED_BATCH):
            await self._reload_batch(list(slot_ids[start : start + FENCED_BATCH]))

    async def _reload_batch(self, slot_ids: list[str]) -> None:
        pending = slot_ids
        for _ in range(_BUSY_RETRIES):
            async with self._p.sessions() as session:
                # The connection is taken before the fence goes up: a step waiting on the
                # fence may hold a pooled connection (a confirm waits inside its
                # transaction), and a rebuild queueing for the pool behind it would wait
                # for the step that waits for it.
                await session.connection()
                pending = await self._fence_read_load(pending, session)
            if not pending:
                return
            log.info("%d slots fenced by another rebuild or expired; trying again", len(pending))
            await asyncio.sleep(0.05)
        raise error("INVENTORY_UNAVAILABLE", operation="rebuild", reason="fenced", slots=pending)

    async def _fence_read_load(self, pending: list[str], session: AsyncSession) -> list[str]:
        """One pass over ``pending``; returns the slots to try again."""
        inventory = self._p.inventory
        token = new_id()
        snapshots = await asyncio.gather(
            *(inventory.fence(slot_id, token=token, ttl_ms=FENCE_TTL_MS) for slot_id in pending)
        )
        fenced = {
            slot_id: snap
            for slot_id, snap in zip(pending, snapshots, strict=True)
            if snap is not None
        }
        busy = [slot_id for slot_id in pending if slot_id not in fenced]
        loaded: list[bool] = []
        states: list[SlotState] = []
        try:
            if fenced:
                states = await self._states(
                    list(fenced), None, self._p.clock.now(), fenced, session
                )
                loaded = list(
                    await asyncio.gather(
                        *(inventory.load(state, fence_token=token) for state in states)
                    )
                )
        finally:
            # Slots SQL does not know, or a batch whose read or load failed: no fence
            # may outlive its rebuild (compare-and-delete leaves any other fence).
            done = {state.slot_id for state, ok in zip(states, loaded, strict=False) if ok}
            left = [slot_id for slot_id in fenced if slot_id not in done]
            if left:
                await asyncio.gather(
                    *(inventory.unfence(slot_id, token=token) for slot_id in left),
                    return_exceptions=True,
                )
        lost = [state.slot_id for state, ok in zip(states, loaded, strict=True) if not ok]
        return busy + lost


def _merged(
    slot: SlotRow,
    session_status: str,
    rows: list[BookingRow],
    seen: SlotSnapshot | None,
    now: datetime,
) -> SlotState:
    """One slot's state: SQL decides each booking it records; Redis keeps what it granted
    that SQL has not recorded yet (``seen``, read under the fence before SQL was)."""
    now_ms = to_epoch_ms(now)
    in_redis = {held.hold_id: held for held in seen.holds} if seen is not None else {}
    confirmed_in_redis = {unit.hold_id for unit in seen.confirmed} if seen is not None else set()
    holds: list[HeldUnit] = []
    returning: list[ReturningUnit] = []
    confirming = 0
    recorded: set[str] = set()
    for row in rows:
        recorded.add(row.id)
        status = BookingStatus(row.status)
        if status is BookingStatus.CANCELLED_BY_PATIENT:
            if row.unit_returns_at is not None and row.unit_returns_at > now:
                returning.append(ReturningUnit(row.id, to_epoch_ms(row.unit_returns_at)))
            continue
        if status not in HOLDING_STATUSES:
            continue  # SQL has finished this booking: a hold Redis still has is stale
        if row.id in confirmed_in_redis and row.id not in in_redis:
            # Redis counted the unit inside the transaction now committing its booking: the
            # unit is booked, and SQL's count catches up when that transaction commits.
            confirming += 1
            continue
        deadline = to_epoch_ms(unit_held_until(status, row.hold_expires_at, row.payment_expires_at))
        granted = in_redis.get(row.id)
        if granted is not None:  # an extension Redis made before SQL recorded it
            deadline = max(deadline, granted.expires_at_ms)
        if deadline > now_ms:
            holds.append(
                HeldUnit(row.id, row.account_id, deadline, claims_marker=row.kind == "regular")
            )
    for hold_id, held in in_redis.items():
        if hold_id not in recorded and held.expires_at_ms > now_ms:
            holds.append(held)  # granted, and being recorded right now
    # When the quota cannot cover every live hold (a hold lost with Redis came back from
    # SQL after its unit was granted again), the holds Redis still has are kept first: a
    # hold its citizen may already have been told about is never dropped for one the pool
    # had forgotten (whose hold path refuses it, see ``HoldGrants._hold_survived``).
    holds.sort(key=lambda held: held.hold_id not in in_redis)
    status_name: SlotStatus = (
        "stopped"
        if "stopped" in (slot.status, session_status)
        else "closed"
        if slot.status == "closed"
        else "lottery"
        if slot.status == "lottery"
        else "open"
    )
    booked = slot.online_booked + confirming
    # A slot whose quota cannot cover what SQL says is live is loaded with the quota it has;
    # the extra holds then simply cannot confirm.
    room = max(0, slot.online_quota - booked)
    return SlotState(
        slot_id=slot.id,
        capacity=slot.online_quota,
        booked=booked,
        release_at_ms=to_epoch_ms(slot.release_at),
        status=status_name,
        holds=tuple(holds[:room]),
        returning=tuple(returning[: max(0, room - len(holds))]),
        confirmed=seen.confirmed if seen is not None else (),
    )

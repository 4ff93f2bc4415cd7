"""Rebuilding the hot pool in Redis from the record of truth in SQL.

Redis may be lost at any time (restart, failover) without losing a confirmed booking: the
state of every slot can be computed from SQL, which keeps booked counts, live holds (bookings
in a holding state with their deadlines) and units still on their way back after a
cancellation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select

from guahao.platform.bookings import HOLDING_STATUSES, BookingStatus, unit_held_until
from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import SlotNotLoadedError
from guahao.platform.persistence.tables import BookingRow, SessionRow, SlotRow
from guahao.platform.ports import HeldUnit, ReturningUnit, SlotState, SlotStatus
from guahao.platform.services.runtime import Ports

__all__ = ["InventorySync"]

T = TypeVar("T")


class InventorySync:
    """Loads slot states into the inventory from SQL."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def _states(
        self, slot_ids: Sequence[str] | None, session_id: str | None, now: datetime
    ) -> list[SlotState]:
        async with self._p.sessions() as session:
            query = select(SlotRow, SessionRow.status).join(
                SessionRow, SessionRow.id == SlotRow.session_id
            )
            if slot_ids is not None:
                query = query.where(SlotRow.id.in_(slot_ids))
            if session_id is not None:
                query = query.where(SlotRow.session_id == session_id)
            slots = (await session.execute(query)).all()
            ids = [slot.id for slot, _ in slots]
            live: dict[str, list[BookingRow]] = {}
            for chunk in range(0, len(ids), 500):
                rows = (
                    await session.scalars(
                        select(BookingRow).where(
                            BookingRow.slot_id.in_(ids[chunk : chunk + 500]),
                            (BookingRow.status.in_([s.value for s in HOLDING_STATUSES]))
                            | (
                                (BookingRow.status == BookingStatus.CANCELLED_BY_PATIENT.value)
                                & (BookingRow.unit_returns_at > now)
                            ),
                        )
                    )
                ).all()
                for row in rows:
                    live.setdefault(row.slot_id, []).append(row)
        states = []
        for slot, session_status in slots:
            holds: list[HeldUnit] = []
            returning: list[ReturningUnit] = []
            for row in live.get(slot.id, []):
                if row.status == BookingStatus.CANCELLED_BY_PATIENT.value:
                    assert row.unit_returns_at is not None
                    returning.append(ReturningUnit(row.id, to_epoch_ms(row.unit_returns_at)))
                    continue
                deadline = unit_held_until(
                    BookingStatus(row.status), row.hold_expires_at, row.payment_expires_at
                )
                if deadline > now:
                    holds.append(
                        HeldUnit(
                            row.id,
                            row.account_id,
                            to_epoch_ms(deadline),
                            claims_marker=row.kind == "regular",
                        )
                    )
            status: SlotStatus = (
                "stopped"
                if "stopped" in (slot.status, session_status)
                else "closed"
                if slot.status == "closed"
                else "lottery"
                if slot.status == "lottery"
                else "open"
            )
            # A slot whose quota cannot cover what SQL says is live is loaded with the
            # quota it has; the extra holds then simply cannot confirm.
            states.append(
                SlotState(
                    slot_id=slot.id,
                    capacity=slot.online_quota,
                    booked=slot.online_booked,
                    release_at_ms=to_epoch_ms(slot.release_at),
                    status=status,
                    holds=tuple(holds[: max(0, slot.online_quota - slot.online_booked)]),
                    returning=tuple(
                        returning[: max(0, slot.online_quota - slot.online_booked - len(holds))]
                    ),
                )
            )
        return states

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
        """Load these slots, reading SQL in chunks (new sessions publish thousands at once)."""
        now = self._p.clock.now()
        for start in range(0, len(slot_ids), 500):
            for state in await self._states(slot_ids[start : start + 500], None, now):
                await self._p.inventory.load(state, only_if_missing=only_if_missing)

    async def load_session(self, session_id: str) -> None:
        for state in await self._states(None, session_id, self._p.clock.now()):
            await self._p.inventory.load(state)

    async def rebuild_all(
        self, progress: Callable[[int, int], None] | None = None, batch: int = 2000
    ) -> int:
        """Load every slot of sessions not yet over; returns how many slots were loaded."""
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
        done = 0
        for start in range(0, len(ids), batch):
            for state in await self._states(ids[start : start + batch], None, now):
                await self._p.inventory.load(state)
            done = min(len(ids), start + batch)
            if progress is not None:
                progress(done, len(ids))
        return len(ids)

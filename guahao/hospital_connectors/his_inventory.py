"""Holds in the HIS where the hospital owns its inventory (IHE ITI Scheduling over FHIR).

A hospital's FHIR connector says so in its config: ``{"owns_inventory": true}``. For such a
hospital every platform hold is also a hold in the HIS, found and held there with
``Appointment/$find`` (ITI-115) and ``Appointment/$hold`` (ITI-116), the booking's id as the
appointment's identifier so that a repeat is the same hold. The HIS may say no (the unit was
sold at its own window): the citizen is refused ``HIS_SLOT_REFUSED`` and nothing stays held.

How the three calls are made (the design, in short):

- ``hold`` is synchronous, inside ``BookingService.hold`` after the Redis grant and before the
  SQL row, because only the HIS can say whether the unit is really free.
- ``book`` and ``release`` go through the outbox (``HisHoldEvents``, subscribed to
  ``booking.``): a confirmation books (``$book``, ITI-117) and any end of a live booking
  (expired, left, cancelled by either side) cancels the appointment by a conditional update.
  The platform's own record is already final at that point; the outbox delivers at least once,
  in order per booking, retries while the HIS is down, and both calls are idempotent by the
  booking identifier. A hold that the HIS keeps a little longer than the platform costs the
  hospital nothing it would not get back with the retry.

Which hospitals own their inventory is read once at start-up and kept in memory; it is
re-read when a connector is registered through this process's registry, and after
``refresh`` has passed (one shared read per minute per process), so the hold path of every
other hospital does no I/O of its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.hospital_connectors.failures import PermanentError, RetryableError
from guahao.hospital_connectors.fhir_client import FhirClient
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS
from guahao.hospital_connectors.registry import ConnectorInfo, ConnectorRegistry
from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import DoctorRow, SessionRow, SlotRow
from guahao.platform.services.runtime import Ports

__all__ = ["OWNS_INVENTORY", "HisHoldEvents", "HisHolds"]

log = logging.getLogger(__name__)

OWNS_INVENTORY = "owns_inventory"
"""The FHIR connector config flag of a hospital whose HIS owns its inventory."""

RELEASING_TOPICS = frozenset(
    {
        "booking.expired",
        "booking.abandoned",
        "booking.cancelled_by_patient",
        "booking.cancelled_by_hospital",
    }
)


class _SlotTime(msgspec.Struct, frozen=True):
    doctor_code: str
    starts_at: datetime
    ends_at: datetime


@dataclass
class HisHolds:
    """``HisInventory`` (``guahao.platform.ports``) over the hospitals' FHIR connectors.

    Built by the composition root before the platform's ``Ports`` (which carry it to the hold
    path), so it takes the session factory and the clock, not the ports."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    registry: ConnectorRegistry
    refresh: timedelta = timedelta(minutes=1)
    _owners: dict[str, ConnectorInfo] | None = None
    _loaded_at: datetime | None = None
    _loading: asyncio.Future[dict[str, ConnectorInfo]] | None = None
    _slots: dict[str, _SlotTime] = field(default_factory=dict)

    def forget(self) -> None:
        """Re-read the owners on the next call (a connector was registered or changed); a
        read already under way may predate the change, so it is not shared any more."""
        self._owners = None
        self._loading = None

    async def load(self) -> None:
        """Read which hospitals own their inventory (at start-up, so that no hold pays for
        it; concurrent callers share one read)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read_owners())
        loading = self._loading
        try:
            self._owners = await asyncio.shield(loading)
            self._loaded_at = self.clock.now()
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _read_owners(self) -> dict[str, ConnectorInfo]:
        return {
            c.hospital_id: c
            for c in await self.registry.all()
            if c.kind == "fhir" and c.base_url and c.config.get(OWNS_INVENTORY)
        }

    async def _owner(self, hospital_id: str) -> ConnectorInfo | None:
        if (
            self._owners is None
            or self._loaded_at is None
            or self.clock.now() - self._loaded_at >= self.refresh
        ):
            await self.load()
        assert self._owners is not None
        return self._owners.get(hospital_id)

    async def owns(self, hospital_id: str) -> bool:
        return await self._owner(hospital_id) is not None

    async def any_owner(self) -> bool:
        """Whether any hospital owns its inventory (most regions: none)."""
        await self._owner("")
        return bool(self._owners)

    @staticmethod
    def _client(info: ConnectorInfo) -> FhirClient:
        return FhirClient(
            info.base_url,
            client_id=str(info.config.get("client_id", "")),
            private_key_pem=str(info.config.get("private_key_pem", "")),
            token_url=str(info.config.get("token_url", "")),
            timeout=5.0,
            attempts=1,  # a citizen is waiting: one try, then the answer
        )

    async def _slot(self, slot_id: str) -> _SlotTime:
        known = self._slots.get(slot_id)
        if known is not None:
            return known
        async with self.sessions() as session:
            found = (
                await session.execute(
                    select(DoctorRow.code, SlotRow.starts_at, SlotRow.ends_at)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .join(DoctorRow, DoctorRow.id == SessionRow.doctor_id)
                    .where(SlotRow.id == slot_id)
                )
            ).first()
        if found is None:
            refuse("SLOT_NOT_FOUND", slot_id=slot_id)
        slot = _SlotTime(found[0], found[1], found[2])
        if len(self._slots) > 10_000:
            self._slots.clear()
        self._slots[slot_id] = slot
        return slot

    @staticmethod
    def _identifier(booking_id: str) -> dict[str, str]:
        return {"system": CANONICAL_SYSTEMS["booking"], "value": booking_id}

    async def hold(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        info = await self._owner(hospital_id)
        if info is None:
            return
        slot = await self._slot(slot_id)
        client = self._client(info)
        try:
            proposals = await client.operation(
                "find",
                [
                    {"name": "start", "valueDateTime": slot.starts_at.isoformat()},
                    {"name": "end", "valueDateTime": slot.ends_at.isoformat()},
                    {
                        "name": "practitioner",
                        "valueReference": {"reference": f"Practitioner/{slot.doctor_code}"},
                    },
                ],
            )
            proposal = next(
                (p for p in proposals if _same_instant(p.get("start"), slot.starts_at)), None
            )
            if proposal is None:
                refuse("HIS_SLOT_REFUSED", slot_id=slot_id, reason="no free unit in the HIS")
            await client.operation(
                "hold",
                [
                    {
                        "name": "appointment-resource",
                        "resource": {**proposal, "identifier": [self._identifier(booking_id)]},
                    }
                ],
            )
        except PermanentError as exc:
            refuse("HIS_SLOT_REFUSED", slot_id=slot_id, reason=str(exc)[:300])
        except RetryableError as exc:
            refuse("HIS_HOLD_UNAVAILABLE", slot_id=slot_id, reason=str(exc)[:300])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # an answer that is not the FHIR it should be: the HIS cannot be relied on now
            log.warning("HIS %s answered $find/$hold oddly: %r", info.hospital_code, exc)
            refuse("HIS_HOLD_UNAVAILABLE", slot_id=slot_id, reason="malformed answer")
        finally:
            await client.close()

    async def book(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        info = await self._owner(hospital_id)
        if info is None:
            return
        client = self._client(info)
        try:
            await client.operation(
                "book",
                [
                    {
                        "name": "appointment-resource",
                        "resource": {
                            "resourceType": "Appointment",
                            "status": "booked",
                            "identifier": [self._identifier(booking_id)],
                        },
                    }
                ],
            )
        finally:
            await client.close()

    async def release(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        info = await self._owner(hospital_id)
        if info is None:
            return
        slot = await self._slot(slot_id)
        client = self._client(info)
        appointment: dict[str, Any] = {
            "resourceType": "Appointment",
            "status": "cancelled",
            "identifier": [self._identifier(booking_id)],
            "participant": [
                {
                    "actor": {"reference": f"Practitioner/{slot.doctor_code}"},
                    "status": "accepted",
                }
            ],
            "start": slot.starts_at.isoformat(),
            "end": slot.ends_at.isoformat(),
        }
        try:
            await client.put_resource(
                "Appointment", appointment, f"{CANONICAL_SYSTEMS['booking']}|{booking_id}"
            )
        finally:
            await client.close()


def _same_instant(text: Any, when: datetime) -> bool:
    if not isinstance(text, str) or not text:
        return False
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) == when
    except ValueError:
        return False


@dataclass
class HisHoldEvents:
    """Outbox subscriber (``booking.``): books or releases the HIS's hold of a booking of a
    hospital that owns its inventory. Retryable failures raise (the outbox retries with
    backoff); a permanent refusal is logged and not retried forever."""

    holds: HisHolds
    ports: Ports

    async def __call__(self, event: OutboxEvent) -> None:
        if event.topic != "booking.confirmed" and event.topic not in RELEASING_TOPICS:
            return
        slot_id = event.payload.get("slot_id")
        if not isinstance(slot_id, str) or not await self.holds.any_owner():
            return
        facts = self.ports.slot_facts.get(slot_id)
        hospital_id = facts.hospital_id if facts is not None else await self._hospital(slot_id)
        if hospital_id is None or not await self.holds.owns(hospital_id):
            return
        try:
            if event.topic == "booking.confirmed":
                await self.holds.book(hospital_id, slot_id, event.aggregate_id)
            else:
                await self.holds.release(hospital_id, slot_id, event.aggregate_id)
        except PermanentError as exc:
            log.error("HIS refused %s of %s for good: %s", event.topic, event.aggregate_id, exc)

    async def _hospital(self, slot_id: str) -> str | None:
        async with self.ports.sessions() as session:
            found: str | None = await session.scalar(
                select(SessionRow.hospital_id)
                .join(SlotRow, SlotRow.session_id == SessionRow.id)
                .where(SlotRow.id == slot_id)
            )
        return found

"""The ports a service needs, bundled once by the composition root."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.platform.clock import Clock
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.ports import (
    HisInventory,
    Inventory,
    JobScheduler,
    PaymentGateway,
    RequestLimits,
)

__all__ = ["Ports", "SlotFacts", "SlotFactsCache"]


@dataclass(frozen=True)
class SlotFacts:
    """What the hold path needs about a slot that never changes once the slot exists.

    Cached in process so that a release surge of losers never touches SQL.
    """

    slot_id: str
    session_id: str
    hospital_id: str
    timezone: str
    policies: HospitalPolicies
    starts_at: datetime
    ends_at: datetime
    fee_cents: int


@dataclass
class SlotFactsCache:
    """A bounded LRU of ``SlotFacts`` (slots are immutable in these fields)."""

    capacity: int = 50_000
    _items: OrderedDict[str, SlotFacts] = field(default_factory=OrderedDict)

    def get(self, slot_id: str) -> SlotFacts | None:
        facts = self._items.get(slot_id)
        if facts is not None:
            self._items.move_to_end(slot_id)
        return facts

    def put(self, facts: SlotFacts) -> None:
        self._items[facts.slot_id] = facts
        self._items.move_to_end(facts.slot_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget_hospital(self, hospital_id: str) -> None:
        """Drop a hospital's slots after its policies changed."""
        for key in [k for k, v in self._items.items() if v.hospital_id == hospital_id]:
            del self._items[key]


@dataclass
class Ports:
    """Everything the services reach outside themselves."""

    sessions: async_sessionmaker[AsyncSession]
    inventory: Inventory
    gateway: PaymentGateway
    vault: PersonalDataVault
    clock: Clock
    jobs: JobScheduler
    slot_facts: SlotFactsCache = field(default_factory=SlotFactsCache)
    limiter: RequestLimits | None = None
    """Request rate limits on Redis; ``None`` only where a caller checks none (tools)."""
    his_inventory: HisInventory | None = None
    """Holds in the HIS of hospitals that own their inventory (hospital connectors);
    ``None``: every hospital's inventory is the platform's alone."""

"""The ports a service needs, bundled once by the composition root, and the per-process cache
of slot facts that the hold path reads instead of SQL."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guahao.platform.clock import Clock
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.ports import (
    FactVersions,
    HisInventory,
    Inventory,
    JobScheduler,
    PaymentGateway,
    RequestLimits,
)
from guahao.platform.refused_demand import RefusedDemandCounter

__all__ = [
    "FACTS_MAX_AGE_SECONDS",
    "FACTS_REFRESH_SECONDS",
    "Ports",
    "SlotFacts",
    "SlotFactsCache",
]

log = logging.getLogger(__name__)

FACTS_REFRESH_SECONDS = 1.0
"""How often a process asks Redis whether another process changed a hospital: a policy
change reaches every process's hold path at most this long after it committed (plus the
one Redis round trip of the asking request)."""

FACTS_MAX_AGE_SECONDS = 300.0
"""The longest any process keeps a slot's facts, whatever the versions say: the bound on
staleness in the one case the versions cannot cover (Redis lost between a change's commit
and its second bump, see ``SlotFactsCache.hospital_changed``)."""


@dataclass(frozen=True)
class SlotFacts:
    """What the hold path needs about a slot: its hospital's policies, time zone and the
    names of its hospital, department and doctor (which change when the hospital is
    registered again) and the slot's own times and fee (which never change once the slot
    exists).

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
    hospital_name: str = ""
    department_name: str = ""
    doctor_name: str = ""
    """The names a granted hold is answered with. They change only when the hospital is
    registered again, which bumps its version like a policy change, so the answer never
    needs a read of its own (``QueryService.hold_answer``)."""


@dataclass(frozen=True)
class _Entry:
    facts: SlotFacts
    generation: int
    stored_at: float


@dataclass
class SlotFactsCache:
    """A bounded LRU of ``SlotFacts``, kept fresh across processes through ``versions``.

    Every process holds its own copy; a hospital's policies are changed by one of them. The
    changing process bumps the hospital's version in Redis (``hospital_changed``); every
    process reads the versions at most every ``refresh_seconds`` (``refresh``, awaited on
    the hold path before the cache is consulted) and from then on ignores what it cached of
    a hospital whose version moved. Entries carry the local *generation* at which their SQL
    read began, so a read that raced a change (began before this process learnt of it) is
    never served afterwards. Without ``versions`` (tools, one process) changes are seen only
    by the process that made them.
    """

    capacity: int = 50_000
    versions: FactVersions | None = None
    refresh_seconds: float = FACTS_REFRESH_SECONDS
    max_age_seconds: float = FACTS_MAX_AGE_SECONDS
    _items: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _seen: dict[str, int] = field(default_factory=dict)
    """hospital id -> the version last read from ``versions``."""
    _changed_at: dict[str, int] = field(default_factory=dict)
    """hospital id -> the generation at which this process learnt of its last change."""
    _generation: int = 0
    _checked_at: float = -math.inf
    _refreshing: bool = False

    @property
    def generation(self) -> int:
        """Take this before reading a slot's facts from SQL and give it to ``put``."""
        return self._generation

    def __len__(self) -> int:
        return len(self._items)

    def get(self, slot_id: str) -> SlotFacts | None:
        entry = self._items.get(slot_id)
        if entry is None:
            return None
        if not self._valid(entry):
            del self._items[slot_id]
            return None
        self._items.move_to_end(slot_id)
        return entry.facts

    def put(self, facts: SlotFacts, generation: int) -> None:
        """Keep facts read from SQL by a read that began at ``generation``."""
        entry = _Entry(facts, generation, time.monotonic())
        if not self._valid(entry):
            return  # the hospital changed while this was read: the next caller reads again
        self._items[facts.slot_id] = entry
        self._items.move_to_end(facts.slot_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    async def refresh(self) -> None:
        """Learn the changes other processes made, at most once per ``refresh_seconds``.

        Concurrent callers do not queue behind the one that asks Redis. When Redis does not
        answer, the whole cache is dropped (freshness cannot be confirmed) and asked again
        after the same interval.
        """
        if self.versions is None or self._refreshing:
            return
        if time.monotonic() - self._checked_at < self.refresh_seconds:
            return
        self._refreshing = True
        try:
            current = await self.versions.current()
        except Exception as exc:
            log.warning("slot facts: hospital versions unreadable (%s); cache dropped", exc)
            self._items.clear()
        else:
            for hospital_id, version in current.items():
                if self._seen.get(hospital_id, 0) != version:
                    self._seen[hospital_id] = version
                    self._changed(hospital_id)
        finally:
            self._checked_at = time.monotonic()
            self._refreshing = False

    async def hospital_changing(self, hospital_id: str) -> None:
        """Tell every process that the hospital's policies or time zone are changing.

        Called inside the changing transaction, before its commit: when Redis cannot be
        reached this refuses with ``INVENTORY_UNAVAILABLE`` and the change is rolled back,
        rather than leaving other processes on the old policies for ``max_age_seconds``.
        """
        self._changed(hospital_id)
        if self.versions is not None:
            self._seen[hospital_id] = await self.versions.bump(hospital_id)

    async def hospital_changed(self, hospital_id: str) -> None:
        """The change committed: bump again, so that a process that read the old row
        between the first bump and the commit drops it too. A failure here is only logged:
        the change stands, and ``max_age_seconds`` bounds what another process still serves.
        """
        try:
            await self.hospital_changing(hospital_id)
        except Exception as exc:
            log.error(
                "slot facts: hospital %s changed but its version could not be bumped (%s); "
                "other processes may serve its old policies for up to %.0f s",
                hospital_id,
                exc,
                self.max_age_seconds,
            )

    def forget_hospital(self, hospital_id: str) -> None:
        """Drop a hospital's slots in this process only."""
        self._changed(hospital_id)

    def _changed(self, hospital_id: str) -> None:
        self._generation += 1
        self._changed_at[hospital_id] = self._generation
        for key in [k for k, e in self._items.items() if e.facts.hospital_id == hospital_id]:
            del self._items[key]

    def _valid(self, entry: _Entry) -> bool:
        return (
            entry.generation >= self._changed_at.get(entry.facts.hospital_id, 0)
            and time.monotonic() - entry.stored_at < self.max_age_seconds
        )


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
    refused_demand: RefusedDemandCounter | None = None
    """Counts holds refused ``SLOT_SOLD_OUT`` (unmet demand); ``None``: not counted."""

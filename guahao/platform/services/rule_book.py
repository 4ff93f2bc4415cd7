"""The rules in force: the region's newest version, merged with a hospital's overrides.

Changing a rule writes a new version (never an update in place) with who changed it, when and
why, plus an audit row and an outbox event, in one transaction; the version number is the
primary key, so two administrators saving at once cannot both win (the second is told to
reload). Reads are cached per process for a few seconds: a rule change reaches every worker
within ``CACHE_SECONDS`` without a database read on every booking.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    HospitalRow,
    HospitalRuleOverrideRow,
    RegionRulesRow,
)
from guahao.platform.region_rules import (
    RegionRules,
    apply_changes,
    flatten_changes,
    merged_for_hospital,
)
from guahao.platform.services.audit import record_audit
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role
from guahao.platform.shared_calls import SharedCalls

__all__ = ["CACHE_SECONDS", "RuleBook", "RuleVersion"]

CACHE_SECONDS = 5.0
"""How long a process serves the rules it read: a change saved by another process is in
force everywhere at most this long after it committed (the rules are small and read once per
interval, so they are re-read rather than versioned)."""

HOSPITAL_RULES_MEMORY = 10_000
"""How many hospitals' merged rules a process keeps; past it the oldest is dropped (a region
has hundreds of hospitals, so this bounds only what unknown hospital ids could grow)."""


class RuleVersion(msgspec.Struct, frozen=True, rename="camel"):
    """One saved version, as the authority's history shows it."""

    version: int
    scope: str
    """``region`` or the hospital's id."""
    rules: dict[str, Any]
    changed_by: str
    changed_at: str
    reason: str


class RuleBook:
    """Reads and changes the region's rules and each hospital's overrides."""

    def __init__(self, ports: Ports, *, hospital_memory: int = HOSPITAL_RULES_MEMORY) -> None:
        self._p = ports
        self._hospital_memory = hospital_memory
        self._region: tuple[float, int, RegionRules] | None = None
        self._hospitals: OrderedDict[str, tuple[float, RegionRules]] = OrderedDict()
        self._region_loading: SharedCalls[None, tuple[int, RegionRules]] = SharedCalls()
        self._hospitals_loading: SharedCalls[str, RegionRules] = SharedCalls()
        self._generation = 0
        """Bumped by ``forget``: a read that started before a change never caches its result."""

    @property
    def remembered_hospitals(self) -> int:
        """How many hospitals' rules this process keeps (bounded by ``hospital_memory``)."""
        return len(self._hospitals)

    def forget(self) -> None:
        """Drop the cache (after a change made by another process, in tests)."""
        self._generation += 1
        self._region = None
        self._region_loading.clear()
        self._hospitals.clear()
        self._hospitals_loading.clear()

    async def region(self) -> RegionRules:
        """The region's rules in force."""
        return (await self._current())[1]

    async def version(self) -> int:
        """The region's version in force (0: the defaults of this release, never changed)."""
        return (await self._current())[0]

    async def _current(self) -> tuple[int, RegionRules]:
        cached = self._region
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        # A release surge arrives on a cold (or just expired) cache all at once: one read
        # serves every waiting request instead of one read each.
        return await self._region_loading(None, self._load_region)

    async def _load_region(self) -> tuple[int, RegionRules]:
        generation = self._generation
        async with self._p.sessions() as session:
            version, rules = await self._read_region(session)
        if generation == self._generation:
            self._region = (time.monotonic(), version, rules)
        return version, rules

    @staticmethod
    async def _read_region(session: AsyncSession) -> tuple[int, RegionRules]:
        row = await session.scalar(
            select(RegionRulesRow).order_by(RegionRulesRow.version.desc()).limit(1)
        )
        if row is None:
            return 0, RegionRules()
        return row.version, msgspec.convert(row.rules, RegionRules)

    async def for_hospital(self, hospital_id: str) -> RegionRules:
        """The rules in force at one hospital: the region's plus the overrides it allows.

        An override the region no longer allows (the authority narrowed
        ``hospital_overridable`` after it was saved) is ignored, not an error.
        """
        cached = self._hospitals.get(hospital_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        # As for the region: the patient choices arriving while the hospital's rules are read
        # share that read instead of each making one (bench/profiles/flow2-*).
        return await self._hospitals_loading(hospital_id, lambda: self._load_hospital(hospital_id))

    async def _load_hospital(self, hospital_id: str) -> RegionRules:
        generation = self._generation
        region = await self.region()
        async with self._p.sessions() as session:
            overrides = await self._read_overrides(session, hospital_id)
        allowed = {
            key: value
            for key, value in flatten_changes(overrides).items()
            if key in region.hospital_overridable
        }
        rules = merged_for_hospital(region, allowed)
        if generation == self._generation:
            self._hospitals[hospital_id] = (time.monotonic(), rules)
            self._hospitals.move_to_end(hospital_id)
            while len(self._hospitals) > self._hospital_memory:
                self._hospitals.popitem(last=False)
        return rules

    async def for_known_hospital(self, hospital_id: str) -> RegionRules:
        """``for_hospital`` for an id that came from outside (a URL): an unknown hospital is
        refused ``HOSPITAL_NOT_FOUND`` instead of answered with the region's rules, and
        leaves no cache entry behind (one per made-up id would grow without bound)."""
        async with self._p.sessions() as session:
            if await session.get(HospitalRow, hospital_id) is None:
                refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
        return await self.for_hospital(hospital_id)

    @staticmethod
    async def _read_overrides(session: AsyncSession, hospital_id: str) -> dict[str, Any]:
        row = await session.scalar(
            select(HospitalRuleOverrideRow)
            .where(HospitalRuleOverrideRow.hospital_id == hospital_id)
            .order_by(HospitalRuleOverrideRow.version.desc())
            .limit(1)
        )
        return dict(row.overrides) if row is not None else {}

    async def change_region(
        self,
        changes: dict[str, Any],
        *,
        staff: StaffActor,
        reason: str,
        expected_version: int | None = None,
    ) -> int:
        """Save a new version of the region's rules; returns its number.

        ``expected_version`` (optional) is the version the administrator was looking at: if
        someone saved meanwhile, the change is refused instead of silently undoing theirs.
        """
        require_role(staff, StaffRole.AUTHORITY_ADMIN)
        if not reason.strip():
            refuse("VALIDATION_FAILED", field="reason", reason="say why the rules change")
        now = self._p.clock.now()
        try:
            async with self._p.sessions() as session, session.begin():
                version, current = await self._read_region(session)
                if expected_version is not None and expected_version != version:
                    refuse("RULES_CHANGED_MEANWHILE", version=version)
                new_rules = apply_changes(current, changes)
                new_version = version + 1
                body = msgspec.to_builtins(new_rules)
                session.add(
                    RegionRulesRow(
                        version=new_version,
                        rules=body,
                        changed_by=staff.username,
                        changed_at=now,
                        reason=reason,
                    )
                )
                record_audit(
                    session,
                    staff.username,
                    staff.role.value,
                    "rules.region_changed",
                    "region_rules",
                    str(new_version),
                    {"changes": changes, "reason": reason},
                    now,
                )
                record_event(
                    session,
                    "rules.changed",
                    f"rules:{new_version}",
                    {"scope": "region", "version": new_version, "changes": changes},
                    now,
                )
        except IntegrityError:
            refuse("RULES_CHANGED_MEANWHILE")
        self.forget()
        return new_version

    async def change_hospital(
        self,
        hospital_id: str,
        overrides: dict[str, Any],
        *,
        staff: StaffActor,
        reason: str,
    ) -> int:
        """Replace a hospital's overrides (a new version); only fields the region allows.

        The authority sets any hospital's; a hospital's own staff set their hospital's."""
        require_role(staff, StaffRole.AUTHORITY_ADMIN, StaffRole.HOSPITAL_STAFF)
        if staff.role is StaffRole.HOSPITAL_STAFF and staff.hospital_id != hospital_id:
            refuse("PERMISSION_DENIED", reason="another hospital's rules")
        if not reason.strip():
            refuse("VALIDATION_FAILED", field="reason", reason="say why the rules change")
        now = self._p.clock.now()
        region = await self.region()
        merged_for_hospital(region, overrides)  # refuses what the region does not allow
        try:
            async with self._p.sessions() as session, session.begin():
                if await session.get(HospitalRow, hospital_id) is None:
                    refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
                latest = await session.scalar(
                    select(func.max(HospitalRuleOverrideRow.version)).where(
                        HospitalRuleOverrideRow.hospital_id == hospital_id
                    )
                )
                version = (latest or 0) + 1
                session.add(
                    HospitalRuleOverrideRow(
                        id=new_id(),
                        hospital_id=hospital_id,
                        version=version,
                        overrides=overrides,
                        changed_by=staff.username,
                        changed_at=now,
                        reason=reason,
                    )
                )
                record_audit(
                    session,
                    staff.username,
                    staff.role.value,
                    "rules.hospital_changed",
                    "hospital",
                    hospital_id,
                    {"overrides": overrides, "version": version, "reason": reason},
                    now,
                )
                record_event(
                    session,
                    "rules.changed",
                    f"rules:{hospital_id}:{version}",
                    {"scope": hospital_id, "version": version, "changes": overrides},
                    now,
                )
        except IntegrityError:
            refuse("RULES_CHANGED_MEANWHILE")
        self.forget()
        return version

    async def history(self, hospital_id: str | None = None, limit: int = 50) -> list[RuleVersion]:
        """Saved versions, newest first: the region's, or one hospital's overrides."""
        async with self._p.sessions() as session:
            if hospital_id is None:
                rows = (
                    await session.scalars(
                        select(RegionRulesRow).order_by(RegionRulesRow.version.desc()).limit(limit)
                    )
                ).all()
                return [
                    RuleVersion(
                        version=r.version,
                        scope="region",
                        rules=dict(r.rules),
                        changed_by=r.changed_by,
                        changed_at=r.changed_at.isoformat(),
                        reason=r.reason,
                    )
                    for r in rows
                ]
            found = (
                await session.scalars(
                    select(HospitalRuleOverrideRow)
                    .where(HospitalRuleOverrideRow.hospital_id == hospital_id)
                    .order_by(HospitalRuleOverrideRow.version.desc())
                    .limit(limit)
                )
            ).all()
            return [
                RuleVersion(
                    version=r.version,
                    scope=hospital_id,
                    rules=dict(r.overrides),
                    changed_by=r.changed_by,
                    changed_at=r.changed_at.isoformat(),
                    reason=r.reason,
                )
                for r in found
            ]

"""Departments' own split and release policies: read, changed by hospital staff, applied.

Slot generation (``SupplyService.publish_sessions``) and a capacity change from the hospital
(``HospitalFeed.set_slot_capacity``) ask ``policies_by_department`` for the policies in force
at a department, so every source of supply obeys the department's choice.

A change takes effect for the department's sessions not yet released: each one's release
moment and each segment's online/on-site split are computed again, in the transaction that
saves the new version, and the hot pool is rebuilt from SQL right after. Released sessions
keep the split and the moment they were released with: patients are already booking against
them, and units must not move under them. Sessions marked for lottery keep theirs too (their
draw is announced), and a new release moment already past leaves that session's moment as it
was, so no session is released at an instant nobody was told of.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.department_policies import DepartmentPolicy
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import record_event
from guahao.platform.persistence.tables import (
    DepartmentPolicyRow,
    DepartmentRow,
    HospitalRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.audit import record_audit
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.staff import StaffActor, StaffRole, require_role

__all__ = [
    "DepartmentPolicies",
    "DepartmentPolicyChange",
    "DepartmentPolicyLine",
    "DepartmentPolicyVersion",
    "policies_by_department",
]


class DepartmentPolicyLine(msgspec.Struct, frozen=True):
    """A department as the console shows it: what it sets, and what is in force."""

    department_id: str
    code: str
    name: str
    version: int
    """0 when the department has never set anything (it follows the hospital)."""
    own: DepartmentPolicy
    online_share: float
    offline_first_segments: int
    days_ahead: int
    release_at: str


class DepartmentPolicyVersion(msgspec.Struct, frozen=True):
    """One saved version: who, when, why, before and after, and the sessions it moved."""

    department_id: str
    department: str
    version: int
    before: DepartmentPolicy
    after: DepartmentPolicy
    changed_by: str
    changed_at: datetime
    reason: str
    sessions_updated: int


class DepartmentPolicyChange(msgspec.Struct, frozen=True):
    version: int
    sessions_updated: int


async def policies_by_department(
    session: AsyncSession, department_ids: Iterable[str]
) -> dict[str, DepartmentPolicy]:
    """The newest version of each department's own policy (departments with none absent)."""
    wanted = sorted(set(department_ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(
            select(DepartmentPolicyRow.department_id, DepartmentPolicyRow.policy)
            .where(DepartmentPolicyRow.department_id.in_(wanted))
            .order_by(DepartmentPolicyRow.department_id, DepartmentPolicyRow.version)
        )
    ).all()
    return {dep: msgspec.convert(policy, DepartmentPolicy) for dep, policy in rows}


def _version_of(rows: list[DepartmentPolicyRow]) -> int:
    return max((r.version for r in rows), default=0)


class DepartmentPolicies:
    """Hospital staff's view and change of their departments' policies."""

    def __init__(self, ports: Ports, inventory_sync: InventorySync, rules: RuleBook) -> None:
        self._p = ports
        self._sync = inventory_sync
        self._rules = rules

    async def lines(self, staff: StaffActor) -> list[DepartmentPolicyLine]:
        """Every department of the staff member's hospital with its policy in force."""
        hospital_id = _hospital_of(staff)
        async with self._p.sessions() as session:
            hospital = await session.get(HospitalRow, hospital_id)
            if hospital is None:
                refuse("HOSPITAL_SCOPE_DENIED", reason="no such hospital")
            departments = (
                await session.scalars(
                    select(DepartmentRow)
                    .where(DepartmentRow.hospital_id == hospital_id)
                    .order_by(DepartmentRow.code)
                )
            ).all()
            versions = (
                await session.scalars(
                    select(DepartmentPolicyRow)
                    .where(DepartmentPolicyRow.hospital_id == hospital_id)
                    .order_by(DepartmentPolicyRow.version)
                )
            ).all()
        base = msgspec.convert(hospital.policies, HospitalPolicies)
        newest: dict[str, DepartmentPolicyRow] = {r.department_id: r for r in versions}
        result = []
        for dep in departments:
            row = newest.get(dep.id)
            own = msgspec.convert(row.policy, DepartmentPolicy) if row else DepartmentPolicy()
            in_force = own.over(base)
            result.append(
                DepartmentPolicyLine(
                    department_id=dep.id,
                    code=dep.code,
                    name=dep.name,
                    version=row.version if row else 0,
                    own=own,
                    online_share=in_force.quota.online_share,
                    offline_first_segments=in_force.quota.offline_first_segments,
                    days_ahead=in_force.release.days_ahead,
                    release_at=in_force.release.at,
                )
            )
        return result

    async def history(self, staff: StaffActor, *, limit: int = 50) -> list[DepartmentPolicyVersion]:
        """The hospital's saved versions, newest first."""
        hospital_id = _hospital_of(staff)
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(DepartmentPolicyRow, DepartmentRow.name)
                    .join(DepartmentRow, DepartmentRow.id == DepartmentPolicyRow.department_id)
                    .where(DepartmentPolicyRow.hospital_id == hospital_id)
                    .order_by(DepartmentPolicyRow.changed_at.desc(), DepartmentPolicyRow.id)
                    .limit(limit)
                )
            ).all()
        return [
            DepartmentPolicyVersion(
                department_id=row.department_id,
                department=name,
                version=row.version,
                before=msgspec.convert(row.previous, DepartmentPolicy),
                after=msgspec.convert(row.policy, DepartmentPolicy),
                changed_by=row.changed_by,
                changed_at=row.changed_at,
                reason=row.reason,
                sessions_updated=row.sessions_updated,
            )
            for row, name in rows
        ]

    async def change(
        self,
        staff: StaffActor,
        department_id: str,
        policy: DepartmentPolicy,
        *,
        expected_version: int,
        reason: str,
    ) -> DepartmentPolicyChange:
        """Save a new version of the department's policy and apply it to its sessions not
        yet released; audited as ``console.department_policy.change``.

        ``expected_version`` is the version the staff member saw: a change saved meanwhile
        by someone else is ``DEPARTMENT_POLICY_CHANGED_MEANWHILE`` rather than overwritten.
        """
        hospital_id = _hospital_of(staff)
        policy.check((await self._rules.region()).department_policy)
        now = self._p.clock.now()
        moved_slots: list[str] = []
        try:
            async with self._p.sessions() as session, session.begin():
                department = await session.get(DepartmentRow, department_id)
                if department is None or department.hospital_id != hospital_id:
                    refuse("HOSPITAL_SCOPE_DENIED", department_id=department_id)
                hospital = await session.get(HospitalRow, hospital_id)
                assert hospital is not None
                rows = list(
                    (
                        await session.scalars(
                            select(DepartmentPolicyRow)
                            .where(DepartmentPolicyRow.department_id == department_id)
                            .order_by(DepartmentPolicyRow.version)
                        )
                    ).all()
                )
                version = _version_of(rows)
                if version != expected_version:
                    refuse(
                        "DEPARTMENT_POLICY_CHANGED_MEANWHILE",
                        department_id=department_id,
                        version=version,
                        expected_version=expected_version,
                    )
                before = rows[-1].policy if rows else {}
                in_force = policy.over(msgspec.convert(hospital.policies, HospitalPolicies))
                sessions = await self._apply(session, department_id, in_force, hospital, now)
                moved_slots = [slot_id for _, slot_ids in sessions for slot_id in slot_ids]
                after = msgspec.to_builtins(policy)
                # The unique (department, version) refuses a second writer that read the same
                # version: its transaction fails instead of saving over this one.
                session.add(
                    DepartmentPolicyRow(
                        id=new_id(),
                        department_id=department_id,
                        hospital_id=hospital_id,
                        version=version + 1,
                        policy=after,
                        previous=before,
                        changed_by=staff.username,
                        changed_at=now,
                        reason=reason,
                        sessions_updated=len(sessions),
                    )
                )
                record_audit(
                    session,
                    staff.username,
                    staff.role.value,
                    "console.department_policy.change",
                    "department",
                    department_id,
                    {
                        "version": version + 1,
                        "before": before,
                        "after": after,
                        "sessions_updated": len(sessions),
                    },
                    now,
                )
                record_event(
                    session,
                    "department.policy_changed",
                    department_id,
                    {
                        "department_id": department_id,
                        "hospital_id": hospital_id,
                        "version": version + 1,
                        "sessions": [s.id for s, _ in sessions],
                    },
                    now,
                )
                for sess, _ in sessions:
                    record_event(
                        session,
                        "session.policy_applied",
                        sess.id,
                        {"session_id": sess.id, "doctor_id": sess.doctor_id},
                        now,
                    )
        except IntegrityError:  # another version was saved between our read and our insert
            refuse("DEPARTMENT_POLICY_CHANGED_MEANWHILE", department_id=department_id)
        if moved_slots:
            await self._sync.reload(moved_slots)
        return DepartmentPolicyChange(version=version + 1, sessions_updated=len(sessions))

    async def _apply(
        self,
        session: AsyncSession,
        department_id: str,
        policies: HospitalPolicies,
        hospital: HospitalRow,
        now: datetime,
    ) -> list[tuple[SessionRow, list[str]]]:
        """Split and release moment again for each open, first-come session not released."""
        pending = (
            await session.scalars(
                select(SessionRow)
                .where(
                    SessionRow.department_id == department_id,
                    SessionRow.release_at > now,
                    SessionRow.status == "open",
                    SessionRow.allocation == "first_come",
                )
                .order_by(SessionRow.starts_at)
                .with_for_update()
            )
        ).all()
        applied: list[tuple[SessionRow, list[str]]] = []
        for sess in pending:
            release_at = policies.release.release_at(sess.date, hospital.timezone)
            if release_at <= now:
                release_at = sess.release_at  # never released at an unannounced instant
            slots = (
                await session.scalars(
                    select(SlotRow)
                    .where(SlotRow.session_id == sess.id)
                    .order_by(SlotRow.seq)
                    .with_for_update()
                )
            ).all()
            changed: list[str] = []
            for slot in slots:
                if slot.status != "open":
                    continue
                online, _ = policies.quota.split(slot.capacity, segment_index=slot.seq)
                online = max(online, slot.online_booked)  # never below what is confirmed
                if (online, release_at) == (slot.online_quota, slot.release_at):
                    continue
                slot.online_quota, slot.offline_quota = online, slot.capacity - online
                slot.release_at = release_at
                changed.append(slot.id)
            if sess.release_at != release_at:
                sess.release_at = release_at
            if changed or sess in session.dirty:
                applied.append((sess, changed))
        return applied


def _hospital_of(staff: StaffActor) -> str:
    require_role(staff, StaffRole.HOSPITAL_STAFF)
    if staff.hospital_id is None:
        refuse("HOSPITAL_SCOPE_DENIED", reason="staff of no hospital")
    return staff.hospital_id

"""Supply: hospitals, departments and doctors join; rosters become sessions and slots.

This is the one place where slots are generated (from a weekly roster or from a
``SessionSpec`` a connector delivers): release time, the online/offline split per segment and
the cut-off all come from the hospital's policies here, with the department's own split and
release policy over them (``services/department_policies.py``), so every source of supply
obeys them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import HospitalPolicies
from guahao.platform.ids import new_id
from guahao.platform.persistence.bulk_rows import insert_rows
from guahao.platform.persistence.outbox import event_values, record_event
from guahao.platform.persistence.tables import (
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    OutboxRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.ports import SlotState
from guahao.platform.schedules import HospitalSpec, SessionSpec, cut_segments
from guahao.platform.services.department_policies import policies_by_department
from guahao.platform.services.inventory_sync import InventorySync
from guahao.platform.services.runtime import Ports

__all__ = ["SupplyService"]


class SupplyService:
    """Brings hospitals and their schedules into the platform."""

    def __init__(self, ports: Ports, inventory_sync: InventorySync) -> None:
        self._p = ports
        self._sync = inventory_sync

    async def register_hospital(self, spec: HospitalSpec) -> str:
        """Insert or update a hospital with its departments and doctors; returns its id."""
        async with self._p.sessions() as session, session.begin():
            hospital = await session.scalar(
                select(HospitalRow).where(HospitalRow.code == spec.code)
            )
            if hospital is None:
                hospital = HospitalRow(id=new_id(), code=spec.code)
                session.add(hospital)
            hospital.name = spec.name
            hospital.grade = spec.grade.value
            hospital.district = spec.district
            hospital.address = spec.address
            hospital.aliases = list(spec.aliases)
            hospital.timezone = spec.timezone
            hospital.policies = msgspec.to_builtins(spec.policies)
            departments = {
                d.code: d
                for d in (
                    await session.scalars(
                        select(DepartmentRow).where(DepartmentRow.hospital_id == hospital.id)
                    )
                ).all()
            }
            for dep in spec.departments:
                row = departments.get(dep.code)
                if row is None:
                    row = DepartmentRow(id=new_id(), hospital_id=hospital.id, code=dep.code)
                    session.add(row)
                    departments[dep.code] = row
                row.name, row.catalog_code = dep.name, dep.catalog_code
                row.aliases, row.location = list(dep.aliases), dep.location
            doctors = {
                d.code: d
                for d in (
                    await session.scalars(
                        select(DoctorRow).where(DoctorRow.hospital_id == hospital.id)
                    )
                ).all()
            }
            for doc in spec.doctors:
                if doc.department_code not in departments:
                    refuse("DEPARTMENT_NOT_FOUND", department_code=doc.department_code)
                doctor = doctors.get(doc.code)
                if doctor is None:
                    doctor = DoctorRow(id=new_id(), hospital_id=hospital.id, code=doc.code)
                    session.add(doctor)
                doctor.department_id = departments[doc.department_code].id
                doctor.name, doctor.title = doc.name, doc.title.value
                doctor.expertise, doctor.sex = doc.expertise, doc.sex
            record_event(
                session,
                "hospital.registered",
                hospital.id,
                {"hospital_id": hospital.id, "code": spec.code},
                self._p.clock.now(),
            )
            # Every process caches this hospital's policies with its slots (slot facts).
            await self._p.slot_facts.hospital_changing(hospital.id)
            hospital_id = hospital.id
        await self._p.slot_facts.hospital_changed(hospital_id)
        return hospital_id

    def sessions_from_roster(self, spec: HospitalSpec, days: Iterable[date]) -> list[SessionSpec]:
        """Expand the weekly roster over ``days`` into concrete sessions."""
        result = []
        for day in days:
            for entry in spec.roster:
                if entry.weekday != day.weekday():
                    continue
                result.append(
                    SessionSpec(
                        hospital_code=spec.code,
                        doctor_code=entry.doctor_code,
                        date=day,
                        period=entry.period,
                        category=entry.category,
                        fee_cents=entry.fee_cents,
                        segments=cut_segments(
                            day,
                            entry.period,
                            minutes=entry.segment_minutes,
                            capacity=entry.units_per_segment,
                            zone=spec.timezone,
                        ),
                    )
                )
        return result

    async def publish_sessions(
        self,
        sessions: list[SessionSpec],
        *,
        progress: Callable[[int, int], None] | None = None,
        batch: int = 200,
    ) -> int:
        """Create sessions and their slots (skipping ones that exist); load them into Redis.

        A hospital's first import brings thousands of sessions: each batch is one read of the
        sessions that already exist, one multi-row ``INSERT`` per table and one pipelined load
        of its new slots into Redis (writing and checking session by session took 110 s for
        6 250 sessions, bench/README.md).
        """
        created = 0
        loading: asyncio.Future[Any] | None = None
        try:
            for start in range(0, len(sessions), batch):
                chunk = sessions[start : start + batch]
                async with self._p.sessions() as session, session.begin():
                    sessions_added, slots_added, events = await self._new_rows(session, chunk)
                    await insert_rows(session, SessionRow, sessions_added)
                    await insert_rows(session, SlotRow, slots_added)
                    await insert_rows(session, OutboxRow, events)
                if loading is not None:
                    await loading
                # New slots: nothing in Redis to merge with, nobody can have held a unit yet,
                # and a lazy load racing this one loads the same state (``load_missing``).
                # Loaded while the next batch is written to SQL: the two servers work at once.
                loading = asyncio.ensure_future(
                    self._p.inventory.load_missing(
                        [
                            SlotState(
                                slot_id=slot["id"],
                                capacity=slot["online_quota"],
                                booked=0,
                                release_at_ms=to_epoch_ms(slot["release_at"]),
                            )
                            for slot in slots_added
                        ]
                    )
                )
                created += len(sessions_added)
                if progress is not None:
                    progress(min(len(sessions), start + batch), len(sessions))
            if loading is not None:
                await loading
        finally:
            if loading is not None and not loading.done():
                loading.cancel()
        return created

    async def _new_rows(
        self, session: AsyncSession, chunk: list[SessionSpec]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of the sessions of ``chunk`` not yet published: sessions, their slots and
        their ``session.published`` events, as columns for bulk inserts."""
        hospitals = {
            h.code: h
            for h in (
                await session.scalars(
                    select(HospitalRow).where(
                        HospitalRow.code.in_({s.hospital_code for s in chunk})
                    )
                )
            ).all()
        }
        doctors = {
            (d.hospital_id, d.code): d
            for d in (
                await session.scalars(
                    select(DoctorRow).where(
                        DoctorRow.hospital_id.in_([h.id for h in hospitals.values()])
                    )
                )
            ).all()
        }
        placed: list[tuple[SessionSpec, HospitalRow, DoctorRow]] = []
        for spec in chunk:
            hospital = hospitals.get(spec.hospital_code)
            if hospital is None:
                refuse("HOSPITAL_NOT_FOUND", hospital_code=spec.hospital_code)
            doctor = doctors.get((hospital.id, spec.doctor_code))
            if doctor is None:
                refuse("DOCTOR_NOT_FOUND", doctor_code=spec.doctor_code)
            placed.append((spec, hospital, doctor))
        taken: set[tuple[str, date, str]] = {
            (doctor_id, day, period)
            for doctor_id, day, period in await session.execute(
                select(SessionRow.doctor_id, SessionRow.date, SessionRow.period).where(
                    SessionRow.doctor_id.in_({doctor.id for _, _, doctor in placed}),
                    SessionRow.date.in_({spec.date for spec in chunk}),
                )
            )
        }
        own_policies = await policies_by_department(
            session, {doctor.department_id for _, _, doctor in placed}
        )
        policies_of: dict[tuple[str, str], HospitalPolicies] = {}
        now = self._p.clock.now()
        sessions_added: list[dict[str, Any]] = []
        slots_added: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for spec, hospital, doctor in placed:
            key = (doctor.id, spec.date, spec.period.value)
            if key in taken or not spec.segments:
                continue
            taken.add(key)  # the same session twice in one import is published once
            policies = policies_of.get((hospital.id, doctor.department_id))
            if policies is None:  # the hospital's, with the department's own over them
                policies = msgspec.convert(hospital.policies, HospitalPolicies)
                if doctor.department_id in own_policies:
                    policies = own_policies[doctor.department_id].over(policies)
                policies_of[(hospital.id, doctor.department_id)] = policies
            starts_at = spec.segments[0].start
            release_at = policies.release.release_at(spec.date, hospital.timezone)
            session_id = new_id()
            sessions_added.append(
                {
                    "id": session_id,
                    "hospital_id": hospital.id,
                    "department_id": doctor.department_id,
                    "doctor_id": doctor.id,
                    "date": spec.date,
                    "period": spec.period.value,
                    "category": spec.category.value,
                    "fee_cents": spec.fee_cents,
                    "starts_at": starts_at,
                    "ends_at": spec.segments[-1].end,
                    "release_at": release_at,
                    "cutoff_at": policies.cutoff.cutoff_at(starts_at),
                    "status": "open",
                    "external_id": spec.external_id,
                }
            )
            for seq, segment in enumerate(spec.segments):
                online, offline = policies.quota.split(segment.capacity, segment_index=seq)
                slots_added.append(
                    {
                        "id": new_id(),
                        "session_id": session_id,
                        "seq": seq,
                        "starts_at": segment.start,
                        "ends_at": segment.end,
                        "capacity": segment.capacity,
                        "online_quota": online,
                        "offline_quota": offline,
                        "online_booked": 0,
                        "release_at": release_at,
                        "status": "open",
                    }
                )
            events.append(
                event_values(
                    "session.published",
                    session_id,
                    {"session_id": session_id, "doctor_id": doctor.id},
                    now,
                )
            )
        return sessions_added, slots_added, events

    async def run_cutoffs(self) -> int:
        """Move unsold online units to the on-site quota for sessions past their cut-off.

        The slots close to new online holds at once; units still held online stay online until
        their holds end (booked, or given back), so each sweep moves what has become free. A
        session is done when no online hold is left. Returns the units moved in this sweep.
        """
        now = self._p.clock.now()
        now_ms = to_epoch_ms(now)
        total = 0
        async with self._p.sessions() as session:
            due = (
                await session.scalars(
                    select(SessionRow)
                    .where(
                        SessionRow.cutoff_at <= now,
                        SessionRow.starts_at > now,
                        SessionRow.cutoff_done.is_(False),
                        SessionRow.status == "open",
                    )
                    .limit(500)
                )
            ).all()
        for sess in due:
            moved = 0
            still_held = 0
            async with self._p.sessions() as session, session.begin():
                slots = (
                    await session.scalars(select(SlotRow).where(SlotRow.session_id == sess.id))
                ).all()
                for slot in slots:
                    if slot.status == "open":
                        await self._p.inventory.set_status(slot.id, status="closed")
                        slot.status = "closed"
                counts = await self._p.inventory.counts([s.id for s in slots], now_ms=now_ms)
                for slot in slots:
                    snap = counts.get(slot.id)
                    if snap is None:
                        continue
                    keep = snap.booked + snap.held + snap.returning
                    new = await self._p.inventory.set_capacity(
                        slot.id, capacity=keep, now_ms=now_ms
                    )
                    moved += slot.online_quota - new.capacity
                    still_held += snap.held + snap.returning
                    slot.online_quota = new.capacity
                    slot.offline_quota = slot.capacity - new.capacity
                row = await session.get(SessionRow, sess.id)
                assert row is not None
                row.cutoff_done = still_held == 0
                if moved:
                    record_event(
                        session,
                        "session.cutoff",
                        sess.id,
                        {"session_id": sess.id, "moved_to_offline": moved},
                        now,
                    )
            total += moved
        return total

    @staticmethod
    def days(start: date, count: int) -> list[date]:
        return [start + timedelta(days=i) for i in range(count)]

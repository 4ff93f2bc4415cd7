"""Keeps the index in step with the platform: full reindex, events, and the passing of time.

* ``reindex`` reads every hospital, department and doctor with their availability and hands
  the backend a complete new index to swap in.
* ``handle`` is the outbox subscriber: a booking, hold, cancellation, expiry, session stop,
  cut-off or publication recomputes its doctor's availability (and the department's and
  hospital's sums); ``hospital.*`` events rebuild that hospital's documents. Recomputing from
  the platform's state makes every delivery idempotent, repeated or out of order.
* ``refresh_due`` catches what changes without an event: units released at their release time,
  slots that start, and the window of "the next 7 days" moving at local midnight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select

from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import (
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    SessionRow,
    SlotRow,
)
from guahao.platform.services.runtime import Ports
from guahao.search.availability import AvailabilityReader, combine, local_today
from guahao.search.backend import Progress, SearchBackend
from guahao.search.documents import Availability, DocumentBuilder, SearchDocument
from guahao.search.hospital_names import short_names

__all__ = ["SearchIndexer"]

log = logging.getLogger(__name__)

SETTLED_AFTER = timedelta(seconds=10)
"""An availability computed this long after an event was recorded already reflects it (the
event's transaction had committed): redelivered and replayed events are then skipped."""

FIRST_LOOK_BACK = timedelta(hours=1)
"""How far back the first clock-driven refresh of a process looks."""

_TOPICS = ("booking.", "session.", "slot.", "hospital.", "doctor.", "department.", "roster.")


class SearchIndexer:
    """Builds documents from the platform and writes them to the backend."""

    def __init__(self, ports: Ports, backend: SearchBackend, builder: DocumentBuilder) -> None:
        self._p = ports
        self._backend = backend
        self._builder = builder
        self._availability = AvailabilityReader(ports)
        self._refreshed_at: datetime | None = None
        self._reindexing = False
        self._touched: set[str] = set()

    # -- full rebuild -----------------------------------------------------------------------

    async def documents(self, hospital_ids: Sequence[str] | None = None) -> list[SearchDocument]:
        """Every document of the given hospitals (all when ``None``), availability included."""
        async with self._p.sessions() as session:
            hq = select(HospitalRow).where(HospitalRow.active.is_(True))
            dq = select(DepartmentRow)
            oq = select(DoctorRow)
            if hospital_ids is not None:
                hq = hq.where(HospitalRow.id.in_(hospital_ids))
                dq = dq.where(DepartmentRow.hospital_id.in_(hospital_ids))
                oq = oq.where(DoctorRow.hospital_id.in_(hospital_ids))
            hospitals = (await session.scalars(hq.order_by(HospitalRow.code))).all()
            departments = (await session.scalars(dq.order_by(DepartmentRow.code))).all()
            doctors = (await session.scalars(oq.order_by(DoctorRow.code))).all()
        self._builder.analyzer.add_words(
            w
            for h in hospitals
            for w in (
                h.name,
                *h.aliases,
                *short_names(h.name, address=h.address, district=h.district),
                h.district,
            )
        )
        self._builder.analyzer.add_words(w for d in departments for w in (d.name, *d.aliases))
        summaries = await self._availability.doctors(
            None if hospital_ids is None else [d.id for d in doctors]
        )
        now = self._p.clock.now()
        today = local_today(now)
        empty = Availability(computed_at=now)
        hospital_docs = {}
        for h in hospitals:
            hospital_docs[h.id] = self._builder.hospital(
                hospital_id=h.id,
                name=h.name,
                grade=h.grade,
                district=h.district,
                address=h.address,
                aliases=tuple(h.aliases),
                availability=empty,
            )
        by_department: dict[str, list[Availability]] = {}
        for doctor in doctors:
            by_department.setdefault(doctor.department_id, []).append(
                summaries.get(doctor.id, empty)
            )
        department_docs = {}
        by_hospital: dict[str, list[Availability]] = {}
        for d in departments:
            hospital = hospital_docs.get(d.hospital_id)
            if hospital is None:
                continue
            summary = combine(by_department.get(d.id, []), now, today)
            by_hospital.setdefault(d.hospital_id, []).append(summary)
            department_docs[d.id] = self._builder.department(
                department_id=d.id,
                name=d.name,
                aliases=tuple(d.aliases),
                catalog_code=d.catalog_code,
                hospital=hospital,
                availability=summary,
            )
        out: list[SearchDocument] = []
        for h in hospitals:
            out.append(
                self._builder.with_availability(
                    hospital_docs[h.id], combine(by_hospital.get(h.id, []), now, today)
                )
            )
        out += department_docs.values()
        for doctor in doctors:
            department = department_docs.get(doctor.department_id)
            if department is None:
                continue
            out.append(
                self._builder.doctor(
                    doctor_id=doctor.id,
                    name=doctor.name,
                    title=doctor.title,
                    expertise=doctor.expertise,
                    department=department,
                    hospital=hospital_docs[doctor.hospital_id],
                    availability=summaries.get(doctor.id, empty),
                )
            )
        return out

    async def reindex(self, progress: Progress | None = None) -> int:
        """Build a new index from the platform and swap it in; returns the documents."""
        self._reindexing, self._touched = True, set()
        started = self._p.clock.now()
        try:
            docs = await self.documents()
            written = await self._backend.replace_all(docs, len(docs), progress)
        finally:
            self._reindexing = False
        self._refreshed_at = started
        touched, self._touched = self._touched, set()
        if touched:  # changed while the new index was being built from an older read
            await self.refresh_doctors(sorted(touched))
        return written

    # -- incremental ------------------------------------------------------------------------

    async def handle(self, event: OutboxEvent) -> None:
        """The outbox subscriber (idempotent: it recomputes from the platform's state)."""
        if not event.topic.startswith(_TOPICS):
            return
        payload = event.payload
        hospital_id = payload.get("hospital_id")
        if event.topic.startswith("hospital.") and isinstance(hospital_id, str):
            await self.refresh_hospital(hospital_id)
            return
        doctor_ids = await self._doctors_of(payload)
        if doctor_ids:
            stored = await self.doctor_documents(doctor_ids)
            settled = event.created_at + SETTLED_AFTER
            if len(stored) == len(doctor_ids) and all(
                d.availability.computed_at > settled for d in stored
            ):
                return  # computed after this event's change had surely committed
            await self.refresh_doctors(doctor_ids)

    async def handle_batch(self, events: Sequence[OutboxEvent]) -> None:
        """A run of events (the outbox's batch delivery): each doctor and hospital they touch
        is refreshed once. A release surge writes thousands of events on a few doctors."""
        hospitals: set[str] = set()
        session_ids: set[str] = set()
        slot_ids: set[str] = set()
        doctors: set[str] = set()
        for event in events:
            if not event.topic.startswith(_TOPICS):
                continue
            payload = event.payload
            hospital_id = payload.get("hospital_id")
            if event.topic.startswith("hospital.") and isinstance(hospital_id, str):
                hospitals.add(hospital_id)
            elif isinstance(doctor_id := payload.get("doctor_id"), str):
                doctors.add(doctor_id)
            elif isinstance(session_id := payload.get("session_id"), str):
                session_ids.add(session_id)
            elif isinstance(slot_id := payload.get("slot_id"), str):
                slot_ids.add(slot_id)
        for hospital_id in sorted(hospitals):
            await self.refresh_hospital(hospital_id)
        async with self._p.sessions() as session:
            if session_ids:
                doctors.update(
                    (
                        await session.scalars(
                            select(SessionRow.doctor_id).where(
                                SessionRow.id.in_(sorted(session_ids))
                            )
                        )
                    ).all()
                )
            if slot_ids:
                doctors.update(
                    (
                        await session.scalars(
                            select(SessionRow.doctor_id)
                            .join(SlotRow, SlotRow.session_id == SessionRow.id)
                            .where(SlotRow.id.in_(sorted(slot_ids)))
                        )
                    ).all()
                )
        if doctors:
            await self.refresh_doctors(sorted(doctors))

    async def _doctors_of(self, payload: dict[str, object]) -> list[str]:
        doctor_id = payload.get("doctor_id")
        if isinstance(doctor_id, str):
            return [doctor_id]
        session_id = payload.get("session_id")
        slot_id = payload.get("slot_id")
        async with self._p.sessions() as session:
            if isinstance(session_id, str):
                found = await session.scalar(
                    select(SessionRow.doctor_id).where(SessionRow.id == session_id)
                )
                return [found] if found else []
            if isinstance(slot_id, str):
                found = await session.scalar(
                    select(SessionRow.doctor_id)
                    .join(SlotRow, SlotRow.session_id == SessionRow.id)
                    .where(SlotRow.id == slot_id)
                )
                return [found] if found else []
        return []

    async def refresh_hospital(self, hospital_id: str) -> None:
        """Rebuild one hospital's documents (names, departments, doctors may all change)."""
        fresh = await self.documents([hospital_id])
        stale: list[str] = []
        for kind in ("department", "doctor"):
            for doc in await self._backend.documents(kind=kind, hospital_id=hospital_id):
                stale.append(doc.id)
        keep = {d.id for d in fresh}
        gone = [i for i in stale if i not in keep]
        await self._backend.upsert(fresh)
        if gone:
            await self._backend.delete(gone)

    async def refresh_doctors(self, doctor_ids: Sequence[str]) -> int:
        """Recompute these doctors' availability, and their departments' and hospitals'."""
        if self._reindexing:
            self._touched.update(doctor_ids)
        summaries = await self._availability.doctors(doctor_ids)
        now = self._p.clock.now()
        today = local_today(now)
        empty = Availability(computed_at=now)
        departments: set[str] = set()
        hospitals: set[str] = set()
        updated: list[SearchDocument] = []
        stored = {d.entity_id: d for d in await self.doctor_documents(doctor_ids)}
        missing = [i for i in doctor_ids if i not in stored]
        if missing:  # not indexed yet (a new doctor): index the hospital whole
            async with self._p.sessions() as session:
                found = await session.scalars(
                    select(DoctorRow.hospital_id).where(DoctorRow.id.in_(missing)).distinct()
                )
                for hospital_id in found.all():
                    await self.refresh_hospital(hospital_id)
        for doctor_id, doc in stored.items():
            updated.append(self._builder.with_availability(doc, summaries.get(doctor_id, empty)))
            departments.add(doc.department_id)
            hospitals.add(doc.hospital_id)
        await self._backend.upsert(updated)
        aggregates: list[SearchDocument] = []
        for department_id in sorted(departments):
            dep = await self._backend.documents(kind="department", department_id=department_id)
            members = await self._backend.documents(kind="doctor", department_id=department_id)
            if dep:
                aggregates.append(
                    self._builder.with_availability(
                        dep[0], combine((m.availability for m in members), now, today)
                    )
                )
        await self._backend.upsert(aggregates)
        hospital_docs: list[SearchDocument] = []
        for hospital_id in sorted(hospitals):
            found_h = await self._backend.documents(kind="hospital", hospital_id=hospital_id)
            members = await self._backend.documents(kind="department", hospital_id=hospital_id)
            if found_h:
                hospital_docs.append(
                    self._builder.with_availability(
                        found_h[0], combine((m.availability for m in members), now, today)
                    )
                )
        await self._backend.upsert(hospital_docs)
        return len(updated)

    async def doctor_documents(self, entity_ids: Iterable[str]) -> list[SearchDocument]:
        wanted = set(entity_ids)
        if not wanted:
            return []
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(DoctorRow.id, DoctorRow.department_id).where(DoctorRow.id.in_(wanted))
                )
            ).all()
        found: list[SearchDocument] = []
        for department_id in sorted({r[1] for r in rows}):
            for doc in await self._backend.documents(kind="doctor", department_id=department_id):
                if doc.entity_id in wanted:
                    found.append(doc)
        return found

    async def refresh_due(self) -> int:
        """Recompute doctors whose availability changed by the clock alone since the last
        call: units released, slots started, cancelled units returned; everything (a reindex)
        when the local date changed."""
        now = self._p.clock.now()
        if self._refreshed_at is not None and local_today(now) != local_today(self._refreshed_at):
            # Midnight moved every "next 7 days" window: rebuild in bulk (cheaper than
            # recomputing every doctor one department at a time).
            return await self.reindex()
        # A process that has not refreshed yet (just started) looks back a while: releases and
        # returns that happened while no process ran are caught without a full reindex.
        since = self._refreshed_at or now - FIRST_LOOK_BACK
        changed = await self._changed_by_time(since, now)
        self._refreshed_at = now
        return changed

    async def _changed_by_time(self, since: datetime, now: datetime) -> int:
        horizon = local_today(now) + timedelta(days=32)
        async with self._p.sessions() as session:
            ids = (
                await session.scalars(
                    select(SessionRow.doctor_id)
                    .where(
                        SessionRow.date <= horizon,
                        or_(
                            SessionRow.release_at.between(since, now),
                            and_(SessionRow.starts_at <= now, SessionRow.ends_at >= since),
                        ),
                    )
                    .distinct()
                )
            ).all()
            returning = (
                await session.scalars(
                    select(SessionRow.doctor_id)
                    .join(BookingRow, BookingRow.session_id == SessionRow.id)
                    .where(BookingRow.unit_returns_at.between(since, now))
                    .distinct()
                )
            ).all()
        changed = sorted({*ids, *returning})
        return await self.refresh_doctors(changed) if changed else 0

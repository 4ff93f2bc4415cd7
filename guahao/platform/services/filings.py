"""建档: whether a person has a record in a hospital's HIS, under the hospital's filing mode.

- ``auto_at_booking`` (A): a confirmed booking asks the HIS to file the patient (the event
  ``patient.filing_requested`` reaches it through the outbox and its connector); the result
  comes back through ``record_result``.
- ``on_site`` (B): the patient is filed at the hospital before the visit; nothing online.
- ``required_before_booking``: online booking is refused (``PATIENT_NOT_FILED``) until the
  HIS reports the person as filed — by answering a filing request the citizen makes here, or
  by reporting patients it already has (``record_filed_by_document``, e.g. HL7 v2 ADT A28/A31).

A filing belongs to the person (the document), not the account: a child filed by one parent
is filed for the other parent's account too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.hospitals import FilingMode, HospitalPolicies
from guahao.platform.identity_documents import validate_document
from guahao.platform.ids import new_id
from guahao.platform.patient_proof import refuse_unless_usable
from guahao.platform.persistence.outbox import OutboxEvent, record_event
from guahao.platform.persistence.tables import (
    BookingRow,
    HospitalRow,
    PatientFilingRow,
    PatientRow,
    PersonRow,
)
from guahao.platform.services.accounts import REGION_ZONE, person_key
from guahao.platform.services.runtime import Ports

__all__ = ["FilingView", "Filings"]


class FilingView(msgspec.Struct, frozen=True, rename="camel"):
    """A person's filing at one hospital, as the citizen and the hospital see it."""

    id: str
    hospital_id: str
    status: str
    his_patient_id: str
    detail: str


def _view(row: PatientFilingRow) -> FilingView:
    return FilingView(
        id=row.id,
        hospital_id=row.hospital_id,
        status=row.status,
        his_patient_id=row.his_patient_id,
        detail=row.detail,
    )


class Filings:
    """Filing requests, results and the automatic request of mode A."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def request(self, *, account_id: str, patient_id: str, hospital_id: str) -> FilingView:
        """Ask the hospital's HIS to file this patient (safe to repeat)."""
        now = self._p.clock.now()
        for _attempt in range(2):  # two accounts of one person asking at once: read it back
            try:
                async with self._p.sessions() as session, session.begin():
                    patient = await session.get(PatientRow, patient_id)
                    if patient is None or patient.removed_at is not None:
                        refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
                    if patient.account_id != account_id:
                        refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
                    refuse_unless_usable(patient)
                    hospital = await session.get(HospitalRow, hospital_id)
                    if hospital is None:
                        refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
                    row = await self._ensure_requested(session, patient, hospital_id, now)
                    return _view(row)
            except IntegrityError:
                continue
        refuse("DATABASE_UNAVAILABLE", operation="request_filing")

    async def _ensure_requested(
        self, session: AsyncSession, patient: PatientRow, hospital_id: str, now: datetime
    ) -> PatientFilingRow:
        row = await session.scalar(
            select(PatientFilingRow).where(
                PatientFilingRow.person_id == patient.person_id,
                PatientFilingRow.hospital_id == hospital_id,
            )
        )
        return await self._request(session, patient, hospital_id, now, row)

    async def _request(
        self,
        session: AsyncSession,
        patient: PatientRow,
        hospital_id: str,
        now: datetime,
        row: PatientFilingRow | None,
    ) -> PatientFilingRow:
        """Ask for a filing unless ``row`` (the person's filing at the hospital, read by the
        caller) is already pending or filed."""
        if row is not None and row.status in ("pending", "filed"):
            return row
        if row is None:
            row = PatientFilingRow(
                id=new_id(),
                person_id=patient.person_id,
                hospital_id=hospital_id,
                created_at=now,
            )
            session.add(row)
        row.status, row.detail, row.updated_at = "pending", "", now
        await session.flush()
        record_event(
            session,
            "patient.filing_requested",
            row.id,
            {
                "filing_id": row.id,
                "hospital_id": hospital_id,
                "person_id": patient.person_id,
                "patient_id": patient.id,
            },
            now,
        )
        return row

    async def record_result(
        self,
        *,
        hospital_id: str,
        filing_id: str,
        status: Literal["filed", "failed"],
        his_patient_id: str = "",
        detail: str = "",
    ) -> FilingView:
        """The HIS answered a filing request (through its connector)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(PatientFilingRow, filing_id)
            if row is None or row.hospital_id != hospital_id:
                refuse("FILING_NOT_FOUND", filing_id=filing_id)
            if status == "filed" and not his_patient_id:
                refuse("VALIDATION_FAILED", field="his_patient_id", reason="required when filed")
            row.status, row.his_patient_id, row.detail = status, his_patient_id, detail[:2000]
            row.updated_at = now
            record_event(
                session,
                f"patient.filing_{status}",
                row.id,
                {"filing_id": row.id, "hospital_id": hospital_id, "person_id": row.person_id},
                now,
            )
            return _view(row)

    async def record_filed_by_document(
        self, *, hospital_id: str, document_type: str, document_number: str, his_patient_id: str
    ) -> FilingView:
        """The HIS reports a patient it has on file (a person the platform may not know yet)."""
        now = self._p.clock.now()
        today = now.astimezone(ZoneInfo(REGION_ZONE)).date()
        document = validate_document(document_type, document_number, today=today)
        document_hash = self._p.vault.index("document", person_key(document))
        if not his_patient_id:
            refuse("VALIDATION_FAILED", field="his_patient_id", reason="required")
        for _attempt in range(2):  # a racing first report of the same person: read it back
            try:
                async with self._p.sessions() as session, session.begin():
                    if await session.get(HospitalRow, hospital_id) is None:
                        refuse("HOSPITAL_NOT_FOUND", hospital_id=hospital_id)
                    person = await session.scalar(
                        select(PersonRow).where(PersonRow.document_hash == document_hash)
                    )
                    if person is None:
                        person = PersonRow(
                            id=new_id(),
                            document_hash=document_hash,
                            document_type=document.type.value,
                            birth_date=document.birth_date,
                            sex=document.sex.value if document.sex else "",
                            created_at=now,
                        )
                        session.add(person)
                        await session.flush()
                    row = await session.scalar(
                        select(PatientFilingRow).where(
                            PatientFilingRow.person_id == person.id,
                            PatientFilingRow.hospital_id == hospital_id,
                        )
                    )
                    if row is None:
                        row = PatientFilingRow(
                            id=new_id(),
                            person_id=person.id,
                            hospital_id=hospital_id,
                            created_at=now,
                        )
                        session.add(row)
                    row.status, row.his_patient_id, row.detail = "filed", his_patient_id, ""
                    row.updated_at = now
                    await session.flush()
                    return _view(row)
            except IntegrityError:
                continue
        refuse("DATABASE_UNAVAILABLE", operation="record_filing")

    async def for_patient(self, *, account_id: str, patient_id: str) -> list[FilingView]:
        """The patient's filings at every hospital."""
        async with self._p.sessions() as session:
            patient = await session.get(PatientRow, patient_id)
            if patient is None or patient.removed_at is not None:
                refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
            if patient.account_id != account_id:
                refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
            refuse_unless_usable(patient)
            rows = (
                await session.scalars(
                    select(PatientFilingRow).where(PatientFilingRow.person_id == patient.person_id)
                )
            ).all()
        return [_view(r) for r in rows]

    async def on_booking_confirmed(self, event: OutboxEvent) -> None:
        """Outbox subscriber: mode A hospitals get a filing request for each new patient."""
        now = self._p.clock.now()
        try:
            await self._request_for_booking(str(event.payload.get("booking_id", "")), now)
        except IntegrityError:  # the person's request was made meanwhile (another booking)
            await self._request_for_booking(str(event.payload.get("booking_id", "")), now)

    async def on_bookings_confirmed(self, events: Sequence[OutboxEvent]) -> None:
        """Outbox batch entry point: the run's bookings, their hospitals and patients in three
        reads and one transaction, the requests made in event order as one by one.

        Two bookings of one person at one hospital in the run ask once (the second finds the
        first's pending request in the session, as it would find it committed). A request
        made meanwhile by the person elsewhere fails the transaction (nothing of the run is
        written) and the outbox then delivers the run one event at a time."""
        now = self._p.clock.now()
        ids = [str(e.payload.get("booking_id", "")) for e in events]
        async with self._p.sessions() as session, session.begin():
            bookings = {
                b.id: b
                for b in (
                    await session.scalars(select(BookingRow).where(BookingRow.id.in_(set(ids))))
                ).all()
                if b.patient_id is not None and b.hospital_id is not None
            }
            if not bookings:
                return
            hospitals = {
                h.id: h
                for h in (
                    await session.scalars(
                        select(HospitalRow).where(
                            HospitalRow.id.in_({b.hospital_id for b in bookings.values()})
                        )
                    )
                ).all()
            }
            auto = {
                h.id
                for h in hospitals.values()
                if msgspec.convert(h.policies, HospitalPolicies).filing_mode
                is FilingMode.AUTO_AT_BOOKING
            }
            wanted = [bookings[i] for i in ids if i in bookings and bookings[i].hospital_id in auto]
            if not wanted:
                return
            patients = {
                p.id: p
                for p in (
                    await session.scalars(
                        select(PatientRow).where(PatientRow.id.in_({b.patient_id for b in wanted}))
                    )
                ).all()
            }
            # every filing the run's people have at its hospitals, in one read (was one a booking)
            people = {p.person_id for p in patients.values()}
            filings = {
                (f.person_id, f.hospital_id): f
                for f in (
                    await session.scalars(
                        select(PatientFilingRow).where(
                            PatientFilingRow.person_id.in_(people),
                            PatientFilingRow.hospital_id.in_({b.hospital_id for b in wanted}),
                        )
                    )
                ).all()
            }
            for booking in wanted:
                assert booking.patient_id is not None
                assert booking.hospital_id is not None
                patient = patients[booking.patient_id]
                key = (patient.person_id, booking.hospital_id)
                filings[key] = await self._request(
                    session, patient, booking.hospital_id, now, filings.get(key)
                )

    async def _request_for_booking(self, booking_id: str, now: datetime) -> None:
        async with self._p.sessions() as session, session.begin():
            booking = await session.get(BookingRow, booking_id)
            if booking is None or booking.patient_id is None or booking.hospital_id is None:
                return
            hospital = await session.get(HospitalRow, booking.hospital_id)
            assert hospital is not None
            policies = msgspec.convert(hospital.policies, HospitalPolicies)
            if policies.filing_mode is not FilingMode.AUTO_AT_BOOKING:
                return
            patient = await session.get(PatientRow, booking.patient_id)
            assert patient is not None
            await self._ensure_requested(session, patient, hospital.id, now)

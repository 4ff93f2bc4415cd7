"""Filing requests (建档申请) carried to the hospital's HIS.

The platform's ``Filings`` service records a request (``patient.filing_requested``: a citizen
asked, under ``required_before_booking``, or a mode-A booking was confirmed); this outbox
subscriber files the person in the HIS over the hospital's FHIR connector (a conditional
``PUT Patient?identifier=<platform patient id>``, the same idempotent write the HIS notifier
makes before a booking's first Appointment) and records the answer with
``Filings.record_result``.

- A request that is no longer pending when it is delivered is left alone: the person is
  already on file there (typically the HIS notifier filed them with the booking that caused
  the request, and the filing reached ``record_filed_by_document``), so nobody is filed twice
  by this path. A delivery that races the notifier at worst repeats the conditional update,
  which the HIS answers with the same record.
- A hospital without a FHIR connector (push API, files, or HL7 v2 only) keeps the request
  pending; its system answers through the push API (``POST /filings`` with ``filingId``).
- Retryable failures (HIS down, 5xx, 429) raise, so the outbox retries with backoff; a
  permanent refusal (other 4xx, or an answer without a record id) records ``failed`` with
  the reason, which the citizen sees and may request again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from guahao.hospital_connectors.canonical import PatientFiling
from guahao.hospital_connectors.failures import PermanentError
from guahao.hospital_connectors.fhir_client import FhirClient
from guahao.hospital_connectors.fhir_mapping import filing_to_patient
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS
from guahao.hospital_connectors.registry import ConnectorInfo, ConnectorRegistry
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import PatientFilingRow, PatientRow, PersonRow
from guahao.platform.personal_data import patient_name
from guahao.platform.services.filings import Filings
from guahao.platform.services.runtime import Ports

__all__ = ["FilingSender"]

log = logging.getLogger(__name__)

TOPIC = "patient.filing_requested"


@dataclass
class FilingSender:
    """Outbox subscriber (``patient.filing_requested``)."""

    ports: Ports
    filings: Filings
    registry: ConnectorRegistry

    async def __call__(self, event: OutboxEvent) -> None:
        if event.topic != TOPIC:
            return
        filing_id = str(event.payload.get("filing_id") or event.aggregate_id)
        hospital_id = str(event.payload.get("hospital_id", ""))
        patient_id = str(event.payload.get("patient_id", ""))
        connector = await self._connector(hospital_id)
        if connector is None:
            return  # answered by the hospital's own system through the push API
        filing = await self._pending(filing_id, hospital_id, patient_id)
        if filing is None:
            return
        client = FhirClient(
            connector.base_url,
            client_id=str(connector.config.get("client_id", "")),
            private_key_pem=str(connector.config.get("private_key_pem", "")),
            token_url=str(connector.config.get("token_url", "")),
            attempts=1,  # the outbox retries, with backoff, what fails now
        )
        try:
            filed = await client.put_patient(
                filing_to_patient(filing), f"{CANONICAL_SYSTEMS['patient']}|{filing.patient_id}"
            )
        except PermanentError as exc:
            log.warning("HIS %s refused filing %s: %s", connector.hospital_code, filing_id, exc)
            await self.filings.record_result(
                hospital_id=hospital_id, filing_id=filing_id, status="failed", detail=str(exc)
            )
            return
        finally:
            await client.close()
        record_no = str(filed.get("id", ""))
        if not record_no:
            await self.filings.record_result(
                hospital_id=hospital_id,
                filing_id=filing_id,
                status="failed",
                detail="the HIS answered without a Patient id",
            )
            return
        await self.filings.record_result(
            hospital_id=hospital_id, filing_id=filing_id, status="filed", his_patient_id=record_no
        )

    async def _connector(self, hospital_id: str) -> ConnectorInfo | None:
        for info in await self.registry.all():
            if info.hospital_id == hospital_id and info.kind == "fhir" and info.base_url:
                return info
        return None

    async def _pending(
        self, filing_id: str, hospital_id: str, patient_id: str
    ) -> PatientFiling | None:
        """What to file, or None when the request is no longer pending (or its patient was
        removed: then there is nobody to file, and the request is answered ``failed``)."""
        async with self.ports.sessions() as session:
            row = await session.get(PatientFilingRow, filing_id)
            if row is None or row.hospital_id != hospital_id or row.status != "pending":
                return None
            patient = await session.get(PatientRow, patient_id) if patient_id else None
            person = await session.get(PersonRow, row.person_id)
        if patient is None or patient.removed_at is not None or person is None:
            await self.filings.record_result(
                hospital_id=hospital_id,
                filing_id=filing_id,
                status="failed",
                detail="the patient was removed before the request reached the hospital",
            )
            return None
        return PatientFiling(
            patient_id=patient.id,
            name=patient_name(self.ports.vault, patient),
            document_type=patient.document_type,
            document_number=self.ports.vault.open("document", patient.document_enc),
            sex={"male": "M", "female": "F"}.get(person.sex, person.sex),
            birth_date=person.birth_date,
        )

"""The backfill of migration 0012: patient names written in the clear, sealed in batches.

A migration does not hold the data key, so the platform seals the names itself when it starts
(``open_platform``), a batch per transaction so that a large table is never locked for long and
an interrupted run resumes where it stopped. It finds its rows through a partial index that
lists only unsealed ones, so once done it costs one empty index probe. Rows that a release
before 0012 writes during a rolling deploy are sealed by the next start; readers fall back to the
clear column meanwhile (``personal_data.patient_name``).
"""

from __future__ import annotations

from sqlalchemy import select, update

from guahao.platform.persistence.tables import PatientRow
from guahao.platform.personal_data import NAME_FIELD, PersonalDataVault
from guahao.platform.services.runtime import Ports

__all__ = ["NAME_BATCH", "seal_patient_names"]

NAME_BATCH = 500
"""Rows sealed per transaction."""


async def seal_patient_names(ports: Ports, *, batch: int = NAME_BATCH) -> int:
    """Seal every patient name still in the clear and empty the clear column; how many."""
    vault: PersonalDataVault = ports.vault
    sealed = 0
    while True:
        async with ports.sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(PatientRow.id, PatientRow.clear_name)
                    .where(PatientRow.name_enc.is_(None))
                    .order_by(PatientRow.id)
                    .limit(batch)
                )
            ).all()
            for patient_id, clear in rows:
                await session.execute(
                    update(PatientRow)
                    .where(PatientRow.id == patient_id, PatientRow.name_enc.is_(None))
                    .values(name_enc=vault.seal(NAME_FIELD, clear or ""), clear_name="")
                )
        sealed += len(rows)
        if len(rows) < batch:
            return sealed

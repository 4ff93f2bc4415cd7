"""What proves that an account may act for a patient (就诊人), and what an unproven one may do.

Knowing a person's ID number must not be enough to book in their name or read their record
(issue 14, docs/identity.md). A patient row carries how its relation to the person was
established; a relation waiting for the code sent to the person's phone on file is not yet a
relation: it cannot be booked for and sees nothing of the person's record.
"""

from __future__ import annotations

from enum import StrEnum

from guahao.platform.error_codes import refuse
from guahao.platform.persistence.tables import PatientRow

__all__ = ["PROVEN", "Proof", "refuse_unless_usable"]


class Proof(StrEnum):
    DECLARED = "declared"
    """Format and checksum only (no verification port reached a name match): may book, and
    is the first to go when the real person claims the identity."""
    NAME_MATCHED = "name_matched"
    """The verification port matched the name to the number."""
    CODE = "code"
    """The code sent to the person's phone on file was entered."""
    GUARDIAN = "guardian"
    """A declared guardian of a minor (under 18 by the birth date in the number) who has no
    proven 本人 elsewhere."""
    PENDING_CODE = "pending_code"
    """Waiting for the code sent to the person's phone on file: not a relation yet."""


PROVEN: frozenset[str] = frozenset({Proof.NAME_MATCHED, Proof.CODE})
"""Proofs that tie the relation to the person; a claim of 本人 with one of them takes the
identity back from relations without."""

UNPROVEN: frozenset[str] = frozenset({Proof.DECLARED, Proof.PENDING_CODE})
"""What a proven claim of 本人 removes from other accounts (a guardian's relation to a minor
stays: it is its own kind of proof)."""


def refuse_unless_usable(patient: PatientRow) -> None:
    """Refuse to act for a patient whose relation still waits for its code."""
    if patient.proof == Proof.PENDING_CODE:
        refuse("PATIENT_PROOF_PENDING", patient_id=patient.id)

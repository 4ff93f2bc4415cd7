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

__all__ = [
    "PROVEN",
    "Proof",
    "needs_phone_code",
    "refuse_unless_bookable",
    "refuse_unless_usable",
]


class Proof(StrEnum):
    DECLARED = "declared"
    """Format and checksum only (no verification port reached a name match): the first to go
    when the real person claims the identity. May be booked for only as the account's own 本人
    (whose phone the account proved at registration); a declared relation to anyone else
    waits for ``PHONE_CODE`` (docs/security.md)."""
    NAME_MATCHED = "name_matched"
    """The verification port matched the name to the number."""
    CODE = "code"
    """The code sent to the person's phone on file was entered."""
    GUARDIAN = "guardian"
    """A declared guardian of a minor (under 18 by the birth date in the number) who has no
    proven 本人 elsewhere."""
    PENDING_CODE = "pending_code"
    """Waiting for the code sent to the person's phone on file: not a relation yet."""
    PHONE_CODE = "phone_code"
    """A declared relation to another adult, confirmed by the code sent to the phone given
    when the patient was added: may book. It proves that whoever holds that phone agreed, not
    that the phone is the person's, so it is no proof of the person (not in ``PROVEN``) and
    goes when the real person claims the identity."""


PROVEN: frozenset[str] = frozenset({Proof.NAME_MATCHED, Proof.CODE})
"""Proofs that tie the relation to the person; a claim of 本人 with one of them takes the
identity back from relations without."""

UNPROVEN: frozenset[str] = frozenset({Proof.DECLARED, Proof.PENDING_CODE, Proof.PHONE_CODE})
"""What a proven claim of 本人 removes from other accounts (a guardian's relation to a minor
stays: it is its own kind of proof)."""


def refuse_unless_usable(patient: PatientRow) -> None:
    """Refuse to act for a patient whose relation still waits for its code."""
    if patient.proof == Proof.PENDING_CODE:
        refuse("PATIENT_PROOF_PENDING", patient_id=patient.id)


def needs_phone_code(proof: str, relation: str) -> bool:
    """A declared relation that is neither the account's 本人 nor a guardian's minor (those
    are ``GUARDIAN``): it may be booked for only once the code to the phone given for the
    person is entered, so that an ID number alone no longer lets a stranger book in a
    person's name and leave the no-show strikes on them."""
    return proof == Proof.DECLARED and relation != "self"


def refuse_unless_bookable(patient: PatientRow) -> None:
    """Refuse to make a unit this patient's (a hold, a wait, a lottery entry, an offer taken)
    while the relation waits for a code."""
    refuse_unless_usable(patient)
    if needs_phone_code(patient.proof, patient.relation):
        refuse("PATIENT_RELATION_UNCONFIRMED", patient_id=patient.id)

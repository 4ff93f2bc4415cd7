"""Request and response shapes of the authority (staff) API and of citizens' appeals
(camelCase, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "AppealCreate",
    "AppealDecision",
    "BanCreate",
    "BanLift",
    "PersonLookup",
    "PersonRef",
    "SignalReview",
    "StaffTokenRequest",
    "StaffTokenResponse",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class _In(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    pass


class StaffTokenRequest(_In):
    username: Annotated[str, msgspec.Meta(max_length=64)]
    password: Annotated[str, msgspec.Meta(max_length=200)]


class StaffTokenResponse(msgspec.Struct, rename="camel", frozen=True):
    access_token: str
    token_type: str
    expires_in: int
    staff_id: str
    role: str
    hospital_id: str | None


class BanCreate(_In):
    person_id: Id
    days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    reason: Reason


class BanLift(_In):
    reason: Reason


class AppealDecision(_In):
    grant: bool
    reason: Reason


class SignalReview(_In):
    note: Reason


class PersonLookup(_In):
    document_type: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    document_number: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class PersonRef(msgspec.Struct, rename="camel", frozen=True):
    person_id: str


class AppealCreate(_In):
    patient_id: Id
    statement: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    entry_id: Id | None = None
    """The ban appealed against; default: the patient's ban in force."""

"""Request and response shapes of the citizen API (camelCase, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "AccountCreate",
    "BookingSubmit",
    "HoldCreate",
    "PatientChoice",
    "PatientCreate",
    "TokenRequest",
    "TokenResponse",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _In(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    pass


class AccountCreate(_In):
    phone: Annotated[str, msgspec.Meta(min_length=5, max_length=20)]
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]
    display_name: Annotated[str, msgspec.Meta(max_length=50)] = ""


class TokenRequest(_In):
    phone: Annotated[str, msgspec.Meta(max_length=20)]
    password: Annotated[str, msgspec.Meta(max_length=200)]


class TokenResponse(msgspec.Struct, rename="camel", frozen=True):
    access_token: str
    token_type: str
    expires_in: int
    account_id: str


class PatientCreate(_In):
    """A patient to add. Type, number and name are checked by the real-name rules, which
    answer with their own codes (``DOCUMENT_TYPE_UNKNOWN``, ``ID_NUMBER_CHECKSUM_MISMATCH``,
    ``PATIENT_NAME_INVALID``…) rather than a generic validation error."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    document_type: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    """``resident_id``, ``household_register``, ``hmt_residence_permit``,
    ``foreign_permanent_resident``, ``hk_macao_permit``, ``taiwan_permit`` or ``passport``."""
    document_number: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    phone: Annotated[str, msgspec.Meta(max_length=20)] = ""
    relation: Literal["self", "spouse", "child", "parent", "sibling", "other"] = "self"


class AccountConfirm(_In):
    """The code the registration's first step sent to the phone."""

    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=12)]


class PatientProofCode(_In):
    """The code sent to the person's phone on file, which makes a pending relation."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=12)]


class FilingRequest(_In):
    hospital_id: Id


class PatientIdentityChange(_In):
    """New real-name data for a patient (limited a few times a year)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    document_type: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    document_number: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class HoldCreate(_In):
    slot_id: Id


class PatientChoice(_In):
    patient_id: Id


class BookingSubmit(_In):
    channel: Literal["self_pay", "insurance"] = "self_pay"

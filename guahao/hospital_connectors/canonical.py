"""What connectors deliver to the platform and receive from it, whatever the HIS speaks.

Mapping functions (FHIR, HL7 v2, batch files, push API) produce these; one applier hands them
to the platform's ``HospitalFeed`` service. Outbound, the HIS notifier turns outbox events into
``BookingNotice`` and each connector kind renders it in its own format.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from guahao.platform.schedules import DepartmentSpec, DoctorSpec, SessionSpec
from guahao.platform.services.hospital_feed import FilingResult, SessionKey

__all__ = [
    "BookingNotice",
    "CancelNotice",
    "CapacityNotice",
    "CheckInNotice",
    "FilingNotice",
    "HisSchedule",
    "Notice",
    "PatientFiling",
    "Refusal",
    "StopNotice",
]


class Refusal(msgspec.Struct, frozen=True):
    """One resource, message or row that was not taken, and exactly why."""

    path: str
    code: str
    reason: str


class StopNotice(msgspec.Struct, frozen=True):
    """停诊 of one session."""

    key: SessionKey
    reason: str = "停诊"


class CheckInNotice(msgspec.Struct, frozen=True):
    """签到 of a platform booking."""

    booking_id: str


class CancelNotice(msgspec.Struct, frozen=True):
    """The hospital cancels one platform booking (not the whole session)."""

    booking_id: str
    reason: str = "医院取消"


class FilingNotice(msgspec.Struct, frozen=True):
    """建档 result for a platform booking."""

    result: FilingResult


class CapacityNotice(msgspec.Struct, frozen=True):
    """A segment's whole capacity changed in the HIS (or ``add_units`` more, 加号)."""

    key: SessionKey
    segment: int = -1
    capacity: int | None = None
    add_units: int = 0


Notice = StopNotice | CheckInNotice | FilingNotice | CapacityNotice | CancelNotice


class HisSchedule(msgspec.Struct):
    """A schedule feed mapped: what to upsert, what to stop, what was refused."""

    departments: list[DepartmentSpec] = msgspec.field(default_factory=list)
    doctors: list[DoctorSpec] = msgspec.field(default_factory=list)
    sessions: list[SessionSpec] = msgspec.field(default_factory=list)
    stops: list[StopNotice] = msgspec.field(default_factory=list)
    refusals: list[Refusal] = msgspec.field(default_factory=list)


class BookingNotice(msgspec.Struct, frozen=True):
    """A booking event as the HIS hears of it."""

    topic: str
    event_id: int
    booking_id: str
    status: str
    hospital_code: str
    doctor_code: str
    session_external_id: str
    starts_at: datetime
    ends_at: datetime
    patient_id: str = ""
    patient_display: str = ""
    his_slot: str = ""
    his_patient: str = ""
    """The HIS's own id of the patient (its record number) once filed."""


class PatientFiling(msgspec.Struct, frozen=True):
    """建档: what the HIS needs to open a record for a patient."""

    patient_id: str
    name: str
    document_type: str = ""
    document_number: str = ""
    sex: str = ""
    birth_date: date | None = None

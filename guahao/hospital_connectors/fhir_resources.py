"""The FHIR R4 resources the platform reads and writes, as msgspec structs.

Only the elements the platform uses are declared; everything else in a resource is ignored on
decode, so a HIS may send full resources. Decoding a Bundle is one pass of msgspec over the
bytes (no intermediate dicts, no pydantic), which is what keeps the ingest of a large Slot
bundle fast. Status values are ``Literal`` types taken from the R4 value sets, so a status
outside the value set is refused at decode time with the path of the offending element.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "CANONICAL_SYSTEMS",
    "AnyResource",
    "Appointment",
    "AppointmentParticipant",
    "Bundle",
    "BundleEntry",
    "BundleLink",
    "CodeableConcept",
    "Coding",
    "Extension",
    "HealthcareService",
    "HumanName",
    "Identifier",
    "Location",
    "OperationOutcome",
    "Parameters",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Reference",
    "Resource",
    "Schedule",
    "Slot",
]

CANONICAL_SYSTEMS = {
    "department": "urn:guahao:department-catalog",
    "title": "urn:guahao:doctor-title",
    "category": "urn:guahao:slot-category",
    "booking": "urn:guahao:booking",
    "patient": "urn:guahao:patient",
    "capacity": "urn:guahao:fhir:slot-capacity",
    "fee": "urn:guahao:fhir:fee-cents",
}
"""Code systems and extension URLs through which a HIS gives the platform what FHIR has no
element for: the national department catalog code (诊疗科目), the doctor's title, the slot
category (普通/专家/特需), a segment's capacity and the fee in cents."""

SlotStatus = Literal["busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"]
AppointmentStatus = Literal[
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
]
ParticipationStatus = Literal["accepted", "declined", "tentative", "needs-action"]
Gender = Literal["male", "female", "other", "unknown"]


class Base(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    pass


class Coding(Base, frozen=True):
    system: str = ""
    code: str = ""
    display: str = ""


class CodeableConcept(Base, frozen=True):
    coding: list[Coding] = []
    text: str = ""

    def code_in(self, system: str) -> str:
        return next((c.code for c in self.coding if c.system == system and c.code), "")


class Identifier(Base, frozen=True):
    system: str = ""
    value: str = ""
    use: str = ""


class Reference(Base, frozen=True):
    reference: str = ""
    display: str = ""
    identifier: Identifier | None = None

    @property
    def target(self) -> tuple[str, str]:
        """``("Practitioner", "123")`` from ``Practitioner/123`` (or an absolute URL)."""
        parts = self.reference.rstrip("/").split("/")
        if len(parts) >= 2:
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            return parts[-2], parts[-1]
        return "", self.reference


class Extension(Base, frozen=True):
    url: str
    value_integer: int | None = None
    value_string: str | None = None
    value_code: str | None = None


class HumanName(Base, frozen=True):
    text: str = ""
    family: str = ""
    given: list[str] = []

    def full(self) -> str:
        """Chinese order (family name first, no space) when the family name is Chinese."""
        if self.text:
            return self.text
        if _is_cjk(self.family):
            return self.family + "".join(self.given)
        return " ".join(p for p in (*self.given, self.family) if p)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


class Meta(Base, frozen=True):
    last_updated: datetime | None = None


class Resource(Base, frozen=True, tag_field="resourceType"):
    id: str = ""
    meta: Meta | None = None


class Slot(Resource, frozen=True, tag="Slot"):
    schedule: Reference = Reference()
    status: SlotStatus = "free"
    start: datetime | None = None
    end: datetime | None = None
    identifier: list[Identifier] = []
    overbooked: bool = False
    comment: str = ""
    extension: list[Extension] = []
    service_type: list[CodeableConcept] = []


class Schedule(Resource, frozen=True, tag="Schedule"):
    active: bool = True
    actor: list[Reference] = []
    identifier: list[Identifier] = []
    service_type: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    extension: list[Extension] = []
    comment: str = ""


class Practitioner(Resource, frozen=True, tag="Practitioner"):
    active: bool = True
    name: list[HumanName] = []
    gender: Gender | None = None
    identifier: list[Identifier] = []


class PractitionerRole(Resource, frozen=True, tag="PractitionerRole"):
    active: bool = True
    practitioner: Reference | None = None
    code: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    healthcare_service: list[Reference] = []
    location: list[Reference] = []


class HealthcareService(Resource, frozen=True, tag="HealthcareService"):
    active: bool = True
    name: str = ""
    type: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    location: list[Reference] = []
    comment: str = ""


class Location(Resource, frozen=True, tag="Location"):
    name: str = ""
    description: str = ""


class Patient(Resource, frozen=True, tag="Patient"):
    identifier: list[Identifier] = []
    name: list[HumanName] = []
    gender: Gender | None = None
    birth_date: str = ""


class AppointmentParticipant(Base, frozen=True):
    actor: Reference | None = None
    status: ParticipationStatus = "accepted"


class Appointment(Resource, frozen=True, tag="Appointment"):
    status: AppointmentStatus = "proposed"
    identifier: list[Identifier] = []
    slot: list[Reference] = []
    participant: list[AppointmentParticipant] = []
    start: datetime | None = None
    end: datetime | None = None
    cancelation_reason: CodeableConcept | None = None
    description: str = ""


class OperationOutcomeIssue(Base, frozen=True):
    severity: str = "error"
    code: str = "processing"
    diagnostics: str = ""


class OperationOutcome(Resource, frozen=True, tag="OperationOutcome"):
    issue: list[OperationOutcomeIssue] = []


class ParametersParameter(Base, frozen=True):
    name: str
    value_string: str | None = None
    value_date_time: str | None = None
    value_reference: Reference | None = None
    resource: Appointment | Patient | Slot | Bundle | None = None


class Parameters(Resource, frozen=True, tag="Parameters"):
    parameter: list[ParametersParameter] = []


class BundleLink(Base, frozen=True):
    relation: str
    url: str


class BundleEntry(Base, frozen=True):
    full_url: str = ""
    resource: AnyResource | None = None


class Bundle(Resource, frozen=True, tag="Bundle"):
    type: str = "searchset"
    total: int | None = None
    link: list[BundleLink] = []
    entry: list[BundleEntry] = []

    def next_url(self) -> str:
        return next((link.url for link in self.link if link.relation == "next"), "")


AnyResource = (
    Slot
    | Schedule
    | Practitioner
    | PractitionerRole
    | HealthcareService
    | Location
    | Patient
    | Appointment
    | OperationOutcome
    | Parameters
    | Bundle
)
"""Every resource type the platform decodes; another type in a Bundle is refused by name."""

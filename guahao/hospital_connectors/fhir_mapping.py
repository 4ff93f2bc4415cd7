"""FHIR R4 ↔ the platform's canonical structs: pure functions, no I/O.

Reading: HealthcareService → department (its national catalog code from the
``urn:guahao:department-catalog`` coding), Practitioner + PractitionerRole → doctor (title from
``urn:guahao:doctor-title``), Schedule (one doctor's) + its Slots → sessions: slots are grouped
by the hospital's local date and half-day period; each distinct start/end is a segment whose
capacity is the number of Slot resources on it (or their ``urn:guahao:fhir:slot-capacity``
extensions). ``busy-unavailable`` slots are blocked time, ``entered-in-error`` ones do not
exist; a session whose every slot is ``busy-unavailable`` is a session stop (停诊).

What no library checks is checked here: ``start`` before ``end``, instants with a time zone,
references that resolve. Every refusal names its resource and element (``Slot/1.start``) and
carries a stable code; one bad resource does not stop the rest of a bundle.

Writing: a platform booking → an Appointment (identifier in ``urn:guahao:booking``) for the
HIS; a patient to be filed (建档) → a Patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from guahao.hospital_connectors.canonical import (
    BookingNotice,
    CheckInNotice,
    FilingNotice,
    HisSchedule,
    PatientFiling,
    Refusal,
    StopNotice,
)
from guahao.hospital_connectors.failures import MappingError
from guahao.hospital_connectors.fhir_resources import (
    CANONICAL_SYSTEMS,
    AnyResource,
    Appointment,
    AppointmentParticipant,
    Bundle,
    Extension,
    HealthcareService,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    PractitionerRole,
    Reference,
    Schedule,
    Slot,
)
from guahao.platform.hospitals import Period, SlotCategory, Title
from guahao.platform.schedules import DepartmentSpec, DoctorSpec, SegmentSpec, SessionSpec
from guahao.platform.services.hospital_feed import FilingResult, SessionKey

__all__ = [
    "MappingDefaults",
    "appointment_notice",
    "booking_to_appointment",
    "decode_resources",
    "filing_to_patient",
    "ingest_document",
    "period_of",
    "schedule_from_resources",
]

_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Bundle | AnyResource)
_RAW_BUNDLE = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class MappingDefaults:
    """What a hospital's connector settings supply when its resources are silent."""

    hospital_code: str
    timezone: str = "Asia/Shanghai"
    category: SlotCategory = SlotCategory.GENERAL
    fee_cents: dict[str, int] = field(
        default_factory=lambda: {"general": 500, "specialist": 2500, "premium": 10000}
    )


def period_of(local: datetime) -> Period:
    """The half-day period a local start time belongs to.

    >>> period_of(datetime(2026, 3, 4, 8, 0)), period_of(datetime(2026, 3, 4, 13, 30))
    (<Period.MORNING: 'morning'>, <Period.AFTERNOON: 'afternoon'>)
    """
    if local.hour < 12:
        return Period.MORNING
    if local.hour < 18:
        return Period.AFTERNOON
    return Period.EVENING


def _label(resource: Any) -> str:
    return f"{type(resource).__name__}/{resource.id or '?'}"


def _validation_refusal(where: str, exc: msgspec.ValidationError) -> Refusal:
    text = str(exc)
    code = (
        "FHIR_RESOURCE_UNSUPPORTED"
        if "resourceType" in text and "Invalid value" in text
        else "FHIR_RESOURCE_INVALID"
    )
    return Refusal(path=where, code=code, reason=text)


def decode_resources(data: bytes) -> tuple[list[Any], list[Refusal]]:
    """A Bundle's resources (or the one resource ``data`` is), with a refusal for each
    entry that cannot be decoded. Decodes the whole document in one pass when it is clean."""
    try:
        decoded = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        slow = _decode_entry_by_entry(data)
        if slow is not None:
            return slow
        return [], [_validation_refusal("$", exc)]
    except msgspec.DecodeError as exc:
        return [], [Refusal(path="$", code="FHIR_RESOURCE_INVALID", reason=f"not JSON: {exc}")]
    if isinstance(decoded, Bundle):
        return [e.resource for e in decoded.entry if e.resource is not None], []
    return [decoded], []


def _decode_entry_by_entry(data: bytes) -> tuple[list[Any], list[Refusal]] | None:
    try:
        raw = _RAW_BUNDLE.decode(data)
    except msgspec.DecodeError:
        return None
    if raw.get("resourceType") != "Bundle" or not isinstance(raw.get("entry"), list):
        return None
    resources: list[Any] = []
    refusals: list[Refusal] = []
    for index, entry in enumerate(raw["entry"]):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue
        where = f"Bundle.entry[{index}]"
        if isinstance(resource, dict):
            where = f"{where} ({resource.get('resourceType', '?')}/{resource.get('id', '?')})"
        try:
            resources.append(msgspec.convert(resource, AnyResource, strict=False))
        except msgspec.ValidationError as exc:
            refusals.append(_validation_refusal(where, exc))
    return resources, refusals


def _extension(extensions: Iterable[Extension], url: str) -> Extension | None:
    return next((e for e in extensions if e.url == url), None)


def _code(value: str, where: str) -> str:
    if not _CODE.match(value):
        raise MappingError("FHIR_RESOURCE_INVALID", where, f"id {value!r} is not a usable code")
    return value


class _Index:
    def __init__(self, resources: Iterable[Any]) -> None:
        self.services: dict[str, HealthcareService] = {}
        self.practitioners: dict[str, Practitioner] = {}
        self.roles: dict[str, PractitionerRole] = {}
        self.schedules: dict[str, Schedule] = {}
        self.slots: list[Slot] = []
        self.other: list[Any] = []
        for r in resources:
            if isinstance(r, Slot):
                self.slots.append(r)
            elif isinstance(r, Schedule):
                self.schedules[r.id] = r
            elif isinstance(r, HealthcareService):
                self.services[r.id] = r
            elif isinstance(r, Practitioner):
                self.practitioners[r.id] = r
            elif isinstance(r, PractitionerRole):
                self.roles[r.id] = r
            else:
                self.other.append(r)


def _department(service: HealthcareService) -> DepartmentSpec:
    where = _label(service)
    catalog = ""
    for concept in (*service.type, *service.specialty):
        catalog = catalog or concept.code_in(CANONICAL_SYSTEMS["department"])
    if not catalog:
        raise MappingError(
            "CONNECTOR_CODE_UNMAPPED",
            f"{where}.type",
            f"no coding in {CANONICAL_SYSTEMS['department']} (national department catalog)",
        )
    if not re.match(r"^\d{2}(\.\d{2})?$", catalog):
        raise MappingError(
            "CONNECTOR_CODE_UNMAPPED", f"{where}.type", f"{catalog!r} is not a catalog code"
        )
    if not service.name:
        raise MappingError("FHIR_RESOURCE_INVALID", f"{where}.name", "a department needs a name")
    return DepartmentSpec(
        code=_code(service.id, where), name=service.name[:100], catalog_code=catalog
    )


def _doctor(role: PractitionerRole, index: _Index, departments: set[str]) -> DoctorSpec:
    where = _label(role)
    if role.practitioner is None:
        raise MappingError("FHIR_RESOURCE_INVALID", f"{where}.practitioner", "missing")
    kind, practitioner_id = role.practitioner.target
    practitioner = index.practitioners.get(practitioner_id)
    if kind != "Practitioner" or practitioner is None:
        raise MappingError(
            "FHIR_REFERENCE_UNRESOLVED", f"{where}.practitioner", role.practitioner.reference
        )
    if not role.healthcare_service:
        raise MappingError("FHIR_RESOURCE_INVALID", f"{where}.healthcareService", "missing")
    _, department = role.healthcare_service[0].target
    if department not in departments:
        raise MappingError(
            "FHIR_REFERENCE_UNRESOLVED",
            f"{where}.healthcareService[0]",
            role.healthcare_service[0].reference,
        )
    title = ""
    for concept in role.code:
        title = title or concept.code_in(CANONICAL_SYSTEMS["title"])
    try:
        parsed_title = Title(title)
    except ValueError:
        raise MappingError(
            "CONNECTOR_CODE_UNMAPPED",
            f"{where}.code",
            f"no {CANONICAL_SYSTEMS['title']} coding among {[t.value for t in Title]}",
        ) from None
    name = practitioner.name[0].full() if practitioner.name else ""
    if not name:
        raise MappingError("FHIR_RESOURCE_INVALID", f"{_label(practitioner)}.name", "missing")
    sex = {"male": "M", "female": "F"}.get(practitioner.gender or "", "")
    return DoctorSpec(
        code=_code(practitioner.id, _label(practitioner)),
        name=name[:100],
        title=parsed_title,
        department_code=department,
        sex=sex,
    )


def _schedule_doctor(schedule: Schedule, index: _Index) -> str:
    for actor in schedule.actor:
        kind, ident = actor.target
        if kind == "Practitioner":
            return ident
        if kind == "PractitionerRole":
            role = index.roles.get(ident)
            if role is not None and role.practitioner is not None:
                return role.practitioner.target[1]
    raise MappingError(
        "FHIR_REFERENCE_UNRESOLVED",
        f"{_label(schedule)}.actor",
        "no Practitioner or resolvable PractitionerRole among the actors "
        f"({', '.join(a.reference or a.display for a in schedule.actor) or 'none'})",
    )


def _schedule_terms(schedule: Schedule, defaults: MappingDefaults) -> tuple[SlotCategory, int]:
    category = defaults.category
    for concept in schedule.service_type:
        code = concept.code_in(CANONICAL_SYSTEMS["category"])
        if code:
            try:
                category = SlotCategory(code)
            except ValueError:
                raise MappingError(
                    "CONNECTOR_CODE_UNMAPPED",
                    f"{_label(schedule)}.serviceType",
                    f"{code!r} is not one of {[c.value for c in SlotCategory]}",
                ) from None
    fee = _extension(schedule.extension, CANONICAL_SYSTEMS["fee"])
    fee_cents = defaults.fee_cents.get(category.value, 0)
    if fee is not None:
        if fee.value_integer is None or not 0 <= fee.value_integer <= 10_000_000:
            raise MappingError(
                "FHIR_RESOURCE_INVALID", f"{_label(schedule)}.extension(fee)", "valueInteger 0..1e7"
            )
        fee_cents = fee.value_integer
    return category, fee_cents


def _slot_capacity(slot: Slot) -> int:
    ext = _extension(slot.extension, CANONICAL_SYSTEMS["capacity"]) if slot.extension else None
    if ext is None:
        return 1
    if ext.value_integer is None or not 0 <= ext.value_integer <= 10_000:
        raise MappingError(
            "FHIR_RESOURCE_INVALID", f"{_label(slot)}.extension(capacity)", "valueInteger 0..10000"
        )
    return ext.value_integer


def _check_times(slot: Slot) -> tuple[datetime, datetime]:
    where = _label(slot)
    if slot.start is None or slot.end is None:
        raise MappingError(
            "FHIR_RESOURCE_INVALID",
            f"{where}.{'start' if slot.start is None else 'end'}",
            "required (1..1) in R4",
        )
    for name, value in (("start", slot.start), ("end", slot.end)):
        if value.tzinfo is None:
            raise MappingError(
                "FHIR_RESOURCE_INVALID", f"{where}.{name}", "an instant needs a time zone offset"
            )
    if slot.start >= slot.end:
        raise MappingError(
            "FHIR_RESOURCE_INVALID",
            f"{where}.start",
            f"start {slot.start.isoformat()} is not before end {slot.end.isoformat()}",
        )
    return slot.start.astimezone(UTC), slot.end.astimezone(UTC)


def schedule_from_resources(
    resources: Iterable[Any],
    defaults: MappingDefaults,
    *,
    known_schedules: dict[str, Schedule] | None = None,
) -> HisSchedule:
    """Departments, doctors, sessions and stops from FHIR resources (a pull or a file).

    ``known_schedules`` resolves Slots whose Schedule came in an earlier page or pull."""
    index = _Index(resources)
    result = HisSchedule()
    for resource in index.other:
        result.refusals.append(
            Refusal(
                path=_label(resource),
                code="FHIR_RESOURCE_UNSUPPORTED",
                reason="not part of a schedule feed (Schedule, Slot, Practitioner, "
                "PractitionerRole, HealthcareService)",
            )
        )
    departments: set[str] = set()
    for service in index.services.values():
        try:
            result.departments.append(_department(service))
            departments.add(service.id)
        except MappingError as exc:
            result.refusals.append(Refusal(exc.path, exc.code, exc.reason))
    doctors: set[str] = set()
    for role in index.roles.values():
        if not role.active:
            continue
        try:
            doctor = _doctor(role, index, departments)
        except MappingError as exc:
            result.refusals.append(Refusal(exc.path, exc.code, exc.reason))
            continue
        if doctor.code not in doctors:
            doctors.add(doctor.code)
            result.doctors.append(doctor)
    schedules = dict(known_schedules or {})
    schedules.update(index.schedules)
    schedule_terms: dict[str, tuple[str, SlotCategory, int] | None] = {}
    for schedule_id, schedule in index.schedules.items():
        try:
            schedule_terms[schedule_id] = (
                _schedule_doctor(schedule, index),
                *_schedule_terms(schedule, defaults),
            )
        except MappingError as exc:
            schedule_terms[schedule_id] = None
            result.refusals.append(Refusal(exc.path, exc.code, exc.reason))
    zone = ZoneInfo(defaults.timezone)
    local_of: dict[datetime, tuple[date, Period]] = {}
    # (schedule id, date, period) -> {(start, end): capacity}; and whether any slot is open
    groups: dict[tuple[str, date, Period], dict[tuple[datetime, datetime], int]] = {}
    blocked: dict[tuple[str, date, Period], str] = {}
    for slot in index.slots:
        if slot.status == "entered-in-error":
            continue
        try:
            schedule_id = slot.schedule.target[1]
            if schedule_id not in schedule_terms:
                unknown = schedules.get(schedule_id)
                if unknown is None:
                    raise MappingError(
                        "FHIR_REFERENCE_UNRESOLVED",
                        f"{_label(slot)}.schedule",
                        f"{slot.schedule.reference or '(empty)'} is not in this feed",
                    )
                try:
                    doctor_code = _schedule_doctor(unknown, index)
                    category, fee = _schedule_terms(unknown, defaults)
                    schedule_terms[schedule_id] = (doctor_code, category, fee)
                except MappingError as exc:
                    schedule_terms[schedule_id] = None
                    result.refusals.append(Refusal(exc.path, exc.code, exc.reason))
            if schedule_terms[schedule_id] is None:
                raise MappingError(
                    "FHIR_REFERENCE_UNRESOLVED",
                    f"{_label(slot)}.schedule",
                    f"{slot.schedule.reference} was refused (see its own refusal)",
                )
            start, end = _check_times(slot)
            capacity = _slot_capacity(slot)
        except MappingError as exc:
            result.refusals.append(Refusal(exc.path, exc.code, exc.reason))
            continue
        local = local_of.get(start)
        if local is None:
            at = start.astimezone(zone)
            local = local_of[start] = (at.date(), period_of(at))
        key = (schedule_id, local[0], local[1])
        segments = groups.setdefault(key, {})
        if slot.status == "busy-unavailable":
            blocked.setdefault(key, slot.comment)
            segments.setdefault((start, end), 0)
            continue
        segments[(start, end)] = segments.get((start, end), 0) + capacity
    for (schedule_id, day, period), segments in groups.items():
        terms = schedule_terms[schedule_id]
        assert terms is not None
        doctor_code, category, fee = terms
        if not any(segments.values()) and (schedule_id, day, period) in blocked:
            result.stops.append(
                StopNotice(
                    key=SessionKey(doctor_code=doctor_code, date=day, period=period.value),
                    reason=blocked[(schedule_id, day, period)] or "停诊",
                )
            )
            continue
        ordered = sorted(segments.items())
        overlap = next(
            (i for i in range(1, len(ordered)) if ordered[i][0][0] < ordered[i - 1][0][1]), None
        )
        if overlap is not None:
            result.refusals.append(
                Refusal(
                    path=f"Schedule/{schedule_id} {day} {period.value}",
                    code="FHIR_RESOURCE_INVALID",
                    reason=f"slots overlap at {ordered[overlap][0][0].isoformat()}",
                )
            )
            continue
        result.sessions.append(
            SessionSpec(
                hospital_code=defaults.hospital_code,
                doctor_code=doctor_code,
                date=day,
                period=period,
                category=category,
                fee_cents=fee,
                segments=tuple(
                    SegmentSpec(start=s, end=e, capacity=min(c, 10_000)) for (s, e), c in ordered
                ),
                external_id=f"Schedule/{schedule_id}/{day.isoformat()}/{period.value}",
            )
        )
    return result


def _identifier(identifiers: Iterable[Identifier], system: str) -> str:
    return next((i.value for i in identifiers if i.system == system and i.value), "")


def appointment_notice(appointment: Appointment) -> CheckInNotice | FilingNotice | None:
    """What an Appointment from the HIS tells about a platform booking: arrived or checked
    in → a check-in; booked with the HIS's own id → the filing result. Appointments that are
    not the platform's (no ``urn:guahao:booking`` identifier) tell nothing and are ``None``."""
    booking_id = _identifier(appointment.identifier, CANONICAL_SYSTEMS["booking"])
    if not booking_id:
        return None
    if appointment.status in ("arrived", "checked-in", "fulfilled"):
        return CheckInNotice(booking_id=booking_id)
    if appointment.status == "booked":
        mrn = ""
        for participant in appointment.participant:
            if participant.actor is not None and participant.actor.target[0] == "Patient":
                mrn = participant.actor.target[1]
        return FilingNotice(
            FilingResult(
                booking_id=booking_id,
                status="filed",
                medical_record_no=mrn,
                his_appointment_id=appointment.id,
            )
        )
    if appointment.status == "entered-in-error":
        return FilingNotice(
            FilingResult(booking_id=booking_id, status="failed", detail="entered-in-error")
        )
    return None


_STATUS_BY_TOPIC = {
    "booking.held": "pending",
    "booking.patient_chosen": "pending",
    "booking.awaiting_payment": "pending",
    "booking.confirmed": "booked",
    "booking.checked_in": "checked-in",
    "booking.no_show": "noshow",
}


def booking_to_appointment(notice: BookingNotice) -> Appointment:
    """The Appointment the platform sends the HIS for a booking event (create or update)."""
    status = _STATUS_BY_TOPIC.get(notice.topic, "cancelled")
    participants = [
        AppointmentParticipant(actor=Reference(reference=f"Practitioner/{notice.doctor_code}"))
    ]
    if notice.patient_id:
        participants.append(
            AppointmentParticipant(
                actor=Reference(
                    reference=f"Patient/{notice.his_patient}" if notice.his_patient else "",
                    identifier=Identifier(
                        system=CANONICAL_SYSTEMS["patient"], value=notice.patient_id
                    ),
                    display=notice.patient_display,
                )
            )
        )
    return Appointment(
        id="",
        status=status,  # type: ignore[arg-type]
        identifier=[Identifier(system=CANONICAL_SYSTEMS["booking"], value=notice.booking_id)],
        slot=[Reference(reference=notice.his_slot)] if notice.his_slot else [],
        participant=participants,
        start=notice.starts_at,
        end=notice.ends_at,
        description=notice.topic,
    )


def filing_to_patient(filing: PatientFiling) -> Patient:
    """The Patient resource for 建档 (the document number goes only to the hospital)."""
    identifiers = [Identifier(system=CANONICAL_SYSTEMS["patient"], value=filing.patient_id)]
    if filing.document_number:
        identifiers.append(
            Identifier(
                system=f"urn:guahao:document:{filing.document_type}", value=filing.document_number
            )
        )
    return Patient(
        identifier=identifiers,
        name=[HumanName(text=filing.name)],
        gender={"M": "male", "F": "female"}.get(filing.sex, "unknown"),  # type: ignore[arg-type]
        birth_date=filing.birth_date.isoformat() if filing.birth_date else "",
    )


def ingest_document(
    data: bytes, defaults: MappingDefaults
) -> tuple[HisSchedule, list[CheckInNotice | FilingNotice]]:
    """A FHIR document (a Bundle or one resource) as a hospital would file it: the schedule
    part, the notices its Appointments carry, and a refusal for everything else."""
    resources, refusals = decode_resources(data)
    appointments = [r for r in resources if isinstance(r, Appointment)]
    patients = [r for r in resources if isinstance(r, Patient)]
    rest = [r for r in resources if not isinstance(r, Appointment | Patient)]
    schedule = schedule_from_resources(rest, defaults)
    schedule.refusals[:0] = refusals
    notices: list[CheckInNotice | FilingNotice] = []
    for appointment in appointments:
        notice = appointment_notice(appointment)
        if notice is None:
            schedule.refusals.append(
                Refusal(
                    path=f"{_label(appointment)}.identifier",
                    code="FHIR_REFERENCE_UNRESOLVED",
                    reason=f"no {CANONICAL_SYSTEMS['booking']} identifier with a status the "
                    f"platform acts on (status {appointment.status}): not a platform booking",
                )
            )
        else:
            notices.append(notice)
    for patient in patients:
        schedule.refusals.append(
            Refusal(
                path=_label(patient),
                code="FHIR_RESOURCE_UNSUPPORTED",
                reason="patients are filed by the platform (建档), never imported from a HIS",
            )
        )
    return schedule, notices

"""FHIR R4 → canonical mapping: the fixture hospital, broken resources, the official R4 and IHE
examples (each ingests or is refused with a precise reason), and agreement with fhir.resources."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from guahao.hospital_connectors.canonical import BookingNotice, CheckInNotice, FilingNotice
from guahao.hospital_connectors.fhir_mapping import (
    MappingDefaults,
    appointment_notice,
    booking_to_appointment,
    decode_resources,
    ingest_document,
    schedule_from_resources,
)
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS, Appointment, Identifier
from guahao.platform.hospitals import Period, SlotCategory, Title

DATA = Path(__file__).parents[1] / "fixtures" / "data"
SHARED = Path(__file__).parents[1] / "fixtures" / "data" / "reference"
DEFAULTS = MappingDefaults(hospital_code="fx1")


def test_the_fixture_hospital_maps_to_departments_doctors_sessions_and_a_stop() -> None:
    resources, refusals = decode_resources((DATA / "fhir_hospital_bundle.json").read_bytes())
    assert refusals == []
    mapped = schedule_from_resources(resources, DEFAULTS)

    assert mapped.refusals == []
    assert {(d.code, d.catalog_code) for d in mapped.departments} >= {("xnk", "03.04")}
    assert [(d.code, d.name, d.title, d.department_code) for d in mapped.doctors] == [
        ("d001", "王伟", Title.CHIEF, "xnk"),
        ("d002", "李娜", Title.ASSOCIATE_CHIEF, "hxk"),
    ]
    sessions = {(s.doctor_code, s.period): s for s in mapped.sessions}
    assert set(sessions) == {
        ("d001", Period.MORNING),
        ("d001", Period.AFTERNOON),
        ("d002", Period.MORNING),
    }
    morning = sessions[("d001", Period.MORNING)]
    assert morning.date == date(2026, 3, 4)
    assert morning.category == SlotCategory.SPECIALIST
    assert morning.fee_cents == 3000
    assert len(morning.segments) == 8  # 08:00-12:00 in 30 minutes
    assert morning.segments[0].start == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)  # 08:00 +08:00
    assert {s.capacity for s in morning.segments} == {2}
    assert morning.external_id == "Schedule/sch-d001/2026-03-04/morning"
    # every slot of d002's afternoon is busy-unavailable: a session stop with the HIS's reason
    [stop] = mapped.stops
    assert (stop.key.doctor_code, stop.key.date, stop.key.period) == (
        "d002",
        date(2026, 3, 4),
        "afternoon",
    )
    assert stop.reason == "专家外出会诊"


def test_broken_resources_are_refused_one_by_one_with_their_element() -> None:
    mapped, notices = ingest_document((DATA / "fhir_broken_bundle.json").read_bytes(), DEFAULTS)
    refused = {r.path: (r.code, r.reason) for r in mapped.refusals}

    assert refused["Slot/backwards.start"][0] == "FHIR_RESOURCE_INVALID"
    assert "is not before end" in refused["Slot/backwards.start"][1]
    assert refused["Slot/no-zone.start"] == (
        "FHIR_RESOURCE_INVALID",
        "an instant needs a time zone offset",
    )
    assert refused["Slot/orphan.schedule"][0] == "FHIR_REFERENCE_UNRESOLVED"
    status = next(v for k, v in refused.items() if "bad-status" in k)
    assert status[0] == "FHIR_RESOURCE_INVALID"
    assert "status" in status[1]  # the decoder names the element: `$.status`
    observation = next(v for k, v in refused.items() if "Observation" in k)
    assert observation[0] == "FHIR_RESOURCE_UNSUPPORTED"
    # the good slot still maps, though its schedule's doctor is unknown here (no role)
    assert [len(s.segments) for s in mapped.sessions] == [1]
    assert notices == []


EXPECTED = {
    # R4 (hl7.fhir.r4.examples 4.0.1)
    "Appointment-2docs.json": "FHIR_REFERENCE_UNRESOLVED",
    "Appointment-example.json": "FHIR_REFERENCE_UNRESOLVED",
    "Appointment-examplereq.json": "FHIR_REFERENCE_UNRESOLVED",
    "AppointmentResponse-example.json": "FHIR_RESOURCE_UNSUPPORTED",
    "AppointmentResponse-exampleresp.json": "FHIR_RESOURCE_UNSUPPORTED",
    "Patient-example.json": "FHIR_RESOURCE_UNSUPPORTED",
    "Schedule-example.json": "FHIR_REFERENCE_UNRESOLVED",  # its only actor is a Location
    "Schedule-exampleloc1.json": "ok",
    "Schedule-exampleloc2.json": "ok",
    "Slot-1.json": "FHIR_REFERENCE_UNRESOLVED",  # Schedule/example is not in the file
    "Slot-2.json": "FHIR_REFERENCE_UNRESOLVED",
    "Slot-3.json": "FHIR_REFERENCE_UNRESOLVED",
    "Slot-example.json": "FHIR_REFERENCE_UNRESOLVED",
    # IHE ITI Scheduling
    "example-appointment.json": "FHIR_REFERENCE_UNRESOLVED",
    "example-iti-scheduling-bundle.json": "FHIR_RESOURCE_UNSUPPORTED",  # OperationOutcome first
    "example-patient.json": "FHIR_RESOURCE_UNSUPPORTED",
    "example-practitioner.json": "ok",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_examples_ingest_or_are_refused_with_a_precise_reason(name: str) -> None:
    folder = "ihe-iti-scheduling" if name.startswith("example-") else "fhir-r4-examples"
    path = SHARED / folder / name
    mapped, notices = ingest_document(path.read_bytes(), DEFAULTS)
    if EXPECTED[name] == "ok":
        assert mapped.refusals == []
        return
    assert mapped.refusals, name
    first = mapped.refusals[0]
    assert first.code == EXPECTED[name]
    assert first.path
    assert first.reason
    assert notices == []


def test_the_official_schedule_and_its_slots_together_are_refused_for_the_schedules_actor() -> None:
    folder = SHARED / "fhir-r4-examples"
    entries = [
        {"resource": json.loads((folder / n).read_text())}
        for n in ("Schedule-example.json", "Slot-1.json", "Slot-2.json", "Slot-3.json")
    ]
    data = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    mapped, _ = ingest_document(data.encode(), DEFAULTS)
    paths = [r.path for r in mapped.refusals]
    assert paths[0] == "Schedule/example.actor"
    assert {"Slot/1.schedule", "Slot/2.schedule", "Slot/3.schedule"} <= set(paths)
    assert mapped.sessions == []


def test_fhir_resources_agrees_that_the_fixture_and_the_official_examples_are_r4() -> None:
    """The structural validator (fhir.resources R4B models) accepts what we accept, and still
    lets through what only this mapping refuses (a slot ending before it starts)."""
    from fhir.resources.R4B import bundle as r4b

    bundle = r4b.Bundle.model_validate_json((DATA / "fhir_hospital_bundle.json").read_bytes())
    assert len(bundle.entry) > 30
    from fhir.resources.R4B.slot import Slot

    backwards = Slot.model_validate(
        {
            "resourceType": "Slot",
            "schedule": {"reference": "Schedule/x"},
            "status": "free",
            "start": "2026-03-04T02:00:00Z",
            "end": "2026-03-04T01:30:00Z",
        }
    )
    assert backwards.start > backwards.end  # the library has no opinion; the mapping does


def test_appointments_from_the_his_become_check_ins_and_filing_results() -> None:
    ours = [Identifier(system=CANONICAL_SYSTEMS["booking"], value="b1")]
    arrived = Appointment(id="a1", status="arrived", identifier=ours)
    assert appointment_notice(arrived) == CheckInNotice(booking_id="b1")
    booked = msgspec_appointment(
        {
            "resourceType": "Appointment",
            "id": "HIS-9",
            "status": "booked",
            "identifier": [{"system": CANONICAL_SYSTEMS["booking"], "value": "b1"}],
            "participant": [{"actor": {"reference": "Patient/MR77"}, "status": "accepted"}],
        }
    )
    notice = appointment_notice(booked)
    assert isinstance(notice, FilingNotice)
    assert (notice.result.medical_record_no, notice.result.his_appointment_id) == ("MR77", "HIS-9")
    assert appointment_notice(Appointment(id="x", status="arrived")) is None


def msgspec_appointment(data: dict[str, object]) -> Appointment:
    import msgspec

    return msgspec.json.decode(json.dumps(data), type=Appointment)


def test_a_booking_becomes_an_appointment_the_his_can_match() -> None:
    notice = BookingNotice(
        topic="booking.confirmed",
        event_id=7,
        booking_id="b1",
        status="confirmed",
        hospital_code="fx1",
        doctor_code="d001",
        session_external_id="",
        starts_at=datetime(2026, 3, 4, 1, 0, tzinfo=UTC),
        ends_at=datetime(2026, 3, 4, 1, 30, tzinfo=UTC),
        patient_id="p1",
        patient_display="张三",
    )
    appointment = booking_to_appointment(notice)
    assert appointment.status == "booked"
    assert appointment.identifier[0].value == "b1"
    assert appointment.participant[0].actor is not None
    assert appointment.participant[0].actor.reference == "Practitioner/d001"
    cancelled = booking_to_appointment(
        msgspec_replace(notice, topic="booking.cancelled_by_hospital")
    )
    assert cancelled.status == "cancelled"


def msgspec_replace(notice: BookingNotice, **changes: object) -> BookingNotice:
    import msgspec

    return msgspec.structs.replace(notice, **changes)


def test_a_patient_to_file_becomes_a_fhir_patient() -> None:
    from guahao.hospital_connectors.canonical import PatientFiling
    from guahao.hospital_connectors.fhir_mapping import filing_to_patient

    patient = filing_to_patient(
        PatientFiling(
            patient_id="p1",
            name="张三",
            document_type="resident_id",
            document_number="11010519491231002X",
            sex="F",
            birth_date=date(1949, 12, 31),
        )
    )
    assert [(i.system, i.value) for i in patient.identifier] == [
        (CANONICAL_SYSTEMS["patient"], "p1"),
        ("urn:guahao:document:resident_id", "11010519491231002X"),
    ]
    assert (patient.name[0].text, patient.gender, patient.birth_date) == (
        "张三",
        "female",
        "1949-12-31",
    )

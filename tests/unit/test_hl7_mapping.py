"""HL7 v2 → canonical notices with python-hl7: the published SIU samples, platform messages
(filing, session stop, arrival), broken and unsupported ones, ACKs and outbound SIU."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.canonical import (
    BookingNotice,
    CancelNotice,
    CheckInNotice,
    FilingNotice,
    StopNotice,
)
from guahao.hospital_connectors.failures import MappingError
from guahao.hospital_connectors.mllp import frame

DATA = Path(__file__).parents[1] / "fixtures" / "data" / "hl7"
SHARED = Path(__file__).parents[1] / "fixtures" / "data" / "reference" / "hl7v2"


def sample(name: str) -> bytes:
    return (SHARED / name).read_bytes()


def test_the_interfaceware_siu_s12_maps_field_by_field() -> None:
    reading = hl7_mapping.read(
        sample("siu_s12_interfaceware.hl7"), timezone="America/Indiana/Indianapolis"
    )
    header = reading.header
    assert (header.control_id, header.message_type, header.trigger) == ("24916560", "SIU", "S12")
    assert (header.sending_application, header.sending_facility, header.version) == (
        "MESA_OP",
        "XYZ_HOSPITAL",
        "2.3",
    )
    appt = reading.appointment
    assert (appt["placer_id"], appt["filler_id"]) == ("10345", "2196178")
    assert appt["patient_id"] == "42"
    assert appt["patient_name"] == "SMITH PAUL"
    assert (appt["doctor_code"], appt["doctor_name"]) == ("1", "White Charles")
    assert appt["location"] == "OFFICE"
    assert appt["status"] == "Scheduled"
    # SCH-11: 60 minutes from 2011-06-17 08:45 local (EDT, -04:00) to 09:30
    assert appt["starts_at"] == "2011-06-17T12:45:00+00:00"
    assert appt["ends_at"] == "2011-06-17T13:30:00+00:00"
    # not a platform booking (SCH-1 is not assigned by GUAHAO): acknowledged, nothing applied
    assert reading.notices == ()
    assert "not a platform booking" in reading.note


def test_the_ntierprise_siu_s12_with_newline_separators_maps() -> None:
    raw = sample("siu_s12_ntierprise.hl7")
    assert b"\n" in raw
    assert b"\r" not in raw
    reading = hl7_mapping.read(raw, timezone="America/New_York")
    appt = reading.appointment
    assert reading.header.control_id == "8907-45"
    assert (appt["placer_id"], appt["filler_id"], appt["patient_id"]) == ("1209", "13030", "150")
    assert appt["patient_name"] == "Bond James"
    assert (appt["doctor_code"], appt["doctor_name"]) == ("JPULLEN1", "Pullen Jeri")
    assert appt["starts_at"] == "2019-04-23T18:00:00+00:00"  # 14:00 EDT
    assert appt["ends_at"] == "2019-04-23T18:15:00+00:00"
    assert appt["reason"] == "OFFICE VISIT-15 -"


def test_a_platform_booking_s12_carries_the_filing_result() -> None:
    reading = hl7_mapping.read((DATA / "siu_s12_platform_booking.hl7").read_bytes())
    [notice] = reading.notices
    assert isinstance(notice, FilingNotice)
    assert notice.result.booking_id == "BOOKING_ID"
    assert notice.result.medical_record_no == "MR20260001"  # the MR identifier, not GUAHAO's
    assert notice.result.his_appointment_id == "HIS-77"


def test_an_s15_with_event_reason_stop_is_a_session_stop() -> None:
    reading = hl7_mapping.read((DATA / "siu_s15_session_stop.hl7").read_bytes())
    [notice] = reading.notices
    assert isinstance(notice, StopNotice)
    assert notice.key.doctor_code == "d001"
    assert notice.key.starts_at == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert notice.reason == "专家外出会诊"


def test_an_a04_with_the_platform_visit_number_is_a_check_in() -> None:
    reading = hl7_mapping.read((DATA / "adt_a04_arrival.hl7").read_bytes())
    assert reading.notices == (CheckInNotice(booking_id="BOOKING_ID"),)


@pytest.mark.parametrize(
    ("name", "code", "path"),
    [
        ("oru_r01_unsupported.hl7", "HL7_MESSAGE_UNSUPPORTED", "MSH-9"),
        ("no_msh.hl7", "HL7_MESSAGE_INVALID", "MSH"),
    ],
)
def test_unsupported_and_broken_messages_are_refused_with_a_code(
    name: str, code: str, path: str
) -> None:
    with pytest.raises(MappingError) as refused:
        hl7_mapping.read((DATA / name).read_bytes())
    assert (refused.value.code, refused.value.path) == (code, path)


def test_s15_without_stop_cancels_the_one_platform_booking_it_names() -> None:
    raw = (DATA / "siu_s12_platform_booking.hl7").read_bytes().replace(b"SIU^S12", b"SIU^S15")
    reading = hl7_mapping.read(raw)
    assert reading.notices == (CancelNotice(booking_id="BOOKING_ID"),)


def test_bad_timestamps_are_refused_with_their_field() -> None:
    raw = (DATA / "siu_s15_session_stop.hl7").read_bytes().replace(b"20260304080000", b"2026XX")
    with pytest.raises(MappingError) as refused:
        hl7_mapping.read(raw)
    assert refused.value.path == "SCH-11.4"


def test_acks_answer_the_control_id_and_carry_the_error_code() -> None:
    raw = (DATA / "siu_s15_session_stop.hl7").read_bytes()
    reply = hl7.parse(
        hl7_mapping.ack(
            raw, "AR", "no such session", control_id="R1", error_code="SESSION_NOT_FOUND"
        )
    )
    assert str(reply.segment("MSH")[9]) == "ACK^S15^ACK"
    assert str(reply.segment("MSA")[1]) == "AR"
    assert str(reply.segment("MSA")[2]) == "STOP-1"
    assert "SESSION_NOT_FOUND" in str(reply.segment("ERR"))
    # even a message without MSH gets a parseable NAK
    nak = hl7.parse(hl7_mapping.ack(b"garbage", "AR", "x", control_id="R2"))
    assert str(nak.segment("MSA")[1]) == "AR"


def test_outbound_siu_round_trips_through_the_reader() -> None:
    notice = BookingNotice(
        topic="booking.confirmed",
        event_id=42,
        booking_id="b" * 32,
        status="confirmed",
        hospital_code="fx1",
        doctor_code="d001",
        session_external_id="",
        starts_at=datetime(2026, 3, 4, 1, 0, tzinfo=UTC),
        ends_at=datetime(2026, 3, 4, 1, 30, tzinfo=UTC),
        patient_id="p1",
        patient_display="张三",
    )
    message = hl7_mapping.booking_siu(
        notice, control_id="GH42", receiving_facility="fx1", now=datetime(2026, 3, 2, tzinfo=UTC)
    )
    reading = hl7_mapping.read(message)
    assert (reading.header.trigger, reading.header.control_id) == ("S12", "GH42")
    assert reading.appointment["placer_id"] == "b" * 32
    assert reading.appointment["placer_authority"] == "GUAHAO"
    assert reading.appointment["starts_at"] == "2026-03-04T01:00:00+00:00"
    assert frame(message).startswith(b"\x0b")
    assert frame(message).endswith(b"\x1c\r")


def test_the_filing_request_carries_the_patient_and_the_booking() -> None:
    from datetime import date

    from guahao.hospital_connectors.canonical import PatientFiling

    message = hl7_mapping.patient_a28(
        PatientFiling(
            patient_id="p1",
            name="张三",
            document_type="resident_id",
            document_number="11010519491231002X",
            sex="F",
            birth_date=date(1949, 12, 31),
        ),
        booking_id="b1",
        control_id="GH7P",
        receiving_facility="fx1",
        now=datetime(2026, 3, 2, tzinfo=UTC),
    )
    parsed = hl7.parse(message)
    assert str(parsed.segment("MSH")[9]) == "ADT^A28^ADT_A05"
    pid = parsed.segment("PID")
    assert str(pid[3]) == "p1^^^GUAHAO^PI~11010519491231002X^^^CHN^resident_id"
    assert (str(pid[5]), str(pid[7]), str(pid[8])) == ("张三", "19491231", "F")
    # read back, it names the booking; neither the platform id nor the document is a record no.
    with pytest.raises(MappingError) as refused:
        hl7_mapping.read(message)
    assert refused.value.path == "PID-3"

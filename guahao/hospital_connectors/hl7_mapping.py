"""HL7 v2 ↔ the platform's canonical notices: pure functions over python-hl7, no I/O.

Parsing is tolerant, because real messages break the grammar: segments may end in ``\\r``,
``\\n`` or ``\\r\\n``; trailing empty fields and unknown segments are ignored; only the fields
the platform uses are read.

Inbound (HIS → platform):

- SIU^S12/S13/S14 whose SCH-1 placer id is assigned by ``GUAHAO``: the filing result (HIS
  appointment id SCH-2, record number PID-3).
- SIU^S15/S16/S17 with SCH-6 event reason ``STOP``: session stop (停诊) of doctor AIP-3 at
  SCH-11.4. Without ``STOP`` on a platform booking (SCH-1 ``<id>^GUAHAO``): the hospital
  cancels that one booking (reason SCH-7).
- SIU^S26: informational (the platform decides no-shows from check-ins).
- ADT^A04 whose PV1-19 visit number is assigned by ``GUAHAO``: check-in (签到) of that booking.
- ADT^A28/A31 with such a PV1-19: filing result, record number PID-3 (type MR).

Anything else is refused with ``HL7_MESSAGE_UNSUPPORTED``; an appointment that is not the
platform's is acknowledged and ignored. Outbound, a booking event becomes SIU^S12 (booked),
S14 (changed) or S15 (cancelled) with the booking id in SCH-1 (``<id>^GUAHAO``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import hl7
import msgspec

from guahao.hospital_connectors.canonical import (
    BookingNotice,
    CancelNotice,
    CheckInNotice,
    FilingNotice,
    Notice,
    PatientFiling,
    StopNotice,
)
from guahao.hospital_connectors.failures import MappingError
from guahao.platform.services.hospital_feed import FilingResult, SessionKey

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_SEGMENTS",
    "MAX_SEPARATORS",
    "PLATFORM_AUTHORITY",
    "Hl7Header",
    "Hl7Reading",
    "ack",
    "ack_message",
    "booking_siu",
    "field_of",
    "message_kind",
    "normalize",
    "parse",
    "patient_a28",
    "read",
    "read_message",
]

PLATFORM_AUTHORITY = "GUAHAO"
"""The assigning authority of identifiers the platform issues (booking ids, patient ids)."""

SUPPORTED = {
    "SIU": {"S12", "S13", "S14", "S15", "S16", "S17", "S26"},
    "ADT": {"A04", "A28", "A31"},
}


class Hl7Header(msgspec.Struct, frozen=True):
    """MSH: who sent what, when, under which control id."""

    control_id: str
    message_type: str
    trigger: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    version: str
    sent_at: datetime | None


class Hl7Reading(msgspec.Struct, frozen=True):
    """A message read: its header, what it tells the platform, and what it merely informs."""

    header: Hl7Header
    notices: tuple[Notice, ...] = ()
    note: str = ""
    appointment: dict[str, str] = msgspec.field(default_factory=dict)


MAX_MESSAGE_BYTES = 256 * 1024
"""Far above any SIU or ADT message (a few KB); the MLLP frame limit is larger still."""

MAX_SEGMENTS = 1_000
MAX_SEPARATORS = 5_000
"""Field, component, repetition and subcomponent separators in one message. python-hl7 spends
about 15 µs on each, so an unbounded count lets one frame of separators hold a CPU for
seconds; real messages carry a few hundred."""


def _check_size(text: str) -> None:
    """Refuse what would cost too much to parse, before parsing it (cheap counts only)."""
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise MappingError(
            "HL7_MESSAGE_TOO_LARGE", "MSH", f"a message is at most {MAX_MESSAGE_BYTES} bytes"
        )
    if text.count("\r") + 1 > MAX_SEGMENTS:
        raise MappingError(
            "HL7_MESSAGE_TOO_LARGE", "MSH", f"a message has at most {MAX_SEGMENTS} segments"
        )
    # MSH-1 is the field separator, MSH-2 the encoding characters: the sender chooses them.
    separators = {text[3]} | set(text[4:8].split(text[3], 1)[0])
    if sum(text.count(sep) for sep in separators) > MAX_SEPARATORS:
        raise MappingError(
            "HL7_MESSAGE_TOO_LARGE",
            "MSH",
            f"a message has at most {MAX_SEPARATORS} field and component separators",
        )


def normalize(raw: str | bytes) -> str:
    """Segments separated by ``\\r`` only, whatever the sender used; no blank segments."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    segments = [s for s in re.split(r"\r\n|\n|\r", text.strip("\x0b\x1c\r\n ")) if s.strip()]
    return "\r".join(segments)


def parse(raw: str | bytes) -> hl7.Message:
    """A python-hl7 message, or ``HL7_MESSAGE_INVALID`` / ``HL7_MESSAGE_TOO_LARGE``.

    Parsing costs CPU in proportion to the separators, so callers on an event loop run it in
    a worker thread, once per message, and hand the parsed message on.
    """
    if len(raw) > 4 * MAX_MESSAGE_BYTES:  # before decoding and splitting a huge input
        raise MappingError(
            "HL7_MESSAGE_TOO_LARGE", "MSH", f"a message is at most {MAX_MESSAGE_BYTES} bytes"
        )
    text = normalize(raw)
    if not text.startswith("MSH"):
        raise MappingError("HL7_MESSAGE_INVALID", "MSH", "a message starts with an MSH segment")
    if len(text) < 8:
        raise MappingError("HL7_MESSAGE_INVALID", "MSH", "the MSH segment is truncated")
    _check_size(text)
    try:
        return hl7.parse(text)
    except Exception as exc:  # python-hl7 raises plain errors on broken encoding characters
        raise MappingError("HL7_MESSAGE_INVALID", "MSH", f"cannot parse: {exc}") from None


def field_of(message: hl7.Message, segment: str, index: int, component: int = 1) -> str:
    """One component of the first ``segment``'s field ``index`` (1-based), '' if absent."""
    try:
        seg = message.segment(segment)
    except KeyError:
        return ""
    if len(seg) <= index:
        return ""
    value = seg[index]
    if isinstance(value, hl7.Field | hl7.Repetition):
        try:
            return str(message.extract_field(segment, 1, index, 1, component) or "")
        except (IndexError, KeyError):
            return ""
    return str(value) if component == 1 else ""


def _repetitions(message: hl7.Message, segment: str, index: int) -> list[list[str]]:
    """Every repetition of a field, each as its list of components."""
    try:
        seg = message.segment(segment)
    except KeyError:
        return []
    if len(seg) <= index:
        return []
    raw = str(seg[index])
    sep_rep, sep_comp = message.separators[2], message.separators[3]
    return [rep.split(sep_comp) for rep in raw.split(sep_rep) if rep]


def _timestamp(value: str, zone: ZoneInfo, where: str) -> datetime | None:
    """HL7 TS: YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]; local to the hospital if no offset."""
    if not value:
        return None
    match = re.fullmatch(
        r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", value
    )
    if match is None:
        raise MappingError("HL7_MESSAGE_INVALID", where, f"{value!r} is not an HL7 timestamp")
    y, mo, d, h, mi, s, offset = match.groups()
    try:
        local = datetime(
            int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC
        )
    except ValueError as exc:
        raise MappingError("HL7_MESSAGE_INVALID", where, f"{value!r}: {exc}") from None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        return local - sign * delta
    return local.replace(tzinfo=zone).astimezone(UTC)


def _header(message: hl7.Message, zone: ZoneInfo) -> Hl7Header:
    control_id = field_of(message, "MSH", 10)
    if not control_id:
        raise MappingError("HL7_MESSAGE_INVALID", "MSH-10", "the message control id is empty")
    kind = field_of(message, "MSH", 9, 1)
    trigger = field_of(message, "MSH", 9, 2)
    if not kind or not trigger:
        raise MappingError("HL7_MESSAGE_INVALID", "MSH-9", "message type and trigger are needed")
    return Hl7Header(
        control_id=control_id,
        message_type=kind,
        trigger=trigger,
        sending_application=field_of(message, "MSH", 3),
        sending_facility=field_of(message, "MSH", 4),
        receiving_application=field_of(message, "MSH", 5),
        receiving_facility=field_of(message, "MSH", 6),
        version=field_of(message, "MSH", 12),
        sent_at=_timestamp(field_of(message, "MSH", 7), zone, "MSH-7"),
    )


def _appointment(message: hl7.Message, zone: ZoneInfo) -> dict[str, str]:
    """The appointment fields of an SIU message, as text (for the log and the notices)."""
    start = (
        field_of(message, "SCH", 11, 4)
        or field_of(message, "AIP", 6)
        or field_of(message, "AIL", 6)
    )
    end = field_of(message, "SCH", 11, 5)
    starts = _timestamp(start, zone, "SCH-11.4")
    ends = _timestamp(end, zone, "SCH-11.5")
    duration = field_of(message, "SCH", 11, 3) or field_of(message, "SCH", 9)
    if starts is not None and ends is None and duration.isdigit():
        ends = starts + timedelta(minutes=int(duration))
    if starts is not None and ends is not None and starts >= ends:
        raise MappingError("HL7_MESSAGE_INVALID", "SCH-11", "the start is not before the end")
    family, given = field_of(message, "AIP", 3, 2), field_of(message, "AIP", 3, 3)
    return {
        "placer_id": field_of(message, "SCH", 1, 1),
        "placer_authority": field_of(message, "SCH", 1, 2),
        "filler_id": field_of(message, "SCH", 2, 1),
        "event_reason": field_of(message, "SCH", 6, 1),
        "reason": field_of(message, "SCH", 7, 2) or field_of(message, "SCH", 7, 1),
        "status": field_of(message, "SCH", 25, 1),
        "starts_at": starts.isoformat() if starts else "",
        "ends_at": ends.isoformat() if ends else "",
        "patient_id": field_of(message, "PID", 3, 1),
        "patient_name": " ".join(
            p for p in (field_of(message, "PID", 5, 1), field_of(message, "PID", 5, 2)) if p
        ),
        "doctor_code": field_of(message, "AIP", 3, 1),
        "doctor_name": " ".join(p for p in (family, given) if p),
        "location": field_of(message, "AIL", 3, 1),
    }


def _medical_record_no(message: hl7.Message) -> str:
    fallback = ""
    for components in _repetitions(message, "PID", 3):
        ident = components[0] if components else ""
        authority = components[3] if len(components) > 3 else ""
        kind = components[4] if len(components) > 4 else ""
        if not ident or authority.split("&")[0] == PLATFORM_AUTHORITY:
            continue
        if kind == "MR":
            return ident
        if not kind:  # an untyped identifier may be the record number; a document is typed
            fallback = fallback or ident
    return fallback


def _platform_visit(message: hl7.Message) -> str:
    """The booking id in PV1-19 (visit number) when the platform assigned it."""
    for components in _repetitions(message, "PV1", 19):
        if components and len(components) > 3 and components[3].split("&")[0] == PLATFORM_AUTHORITY:
            return components[0]
    return ""


def read(raw: str | bytes, *, timezone: str = "Asia/Shanghai") -> Hl7Reading:
    """Read one message: header, the notices it carries, or a refusal (``MappingError``)."""
    return read_message(parse(raw), timezone=timezone)


def message_kind(message: hl7.Message) -> str:
    """``SIU^S15``-style type and trigger (MSH-9), for logs; ``?`` when absent."""
    kind, trigger = field_of(message, "MSH", 9, 1), field_of(message, "MSH", 9, 2)
    return f"{kind}^{trigger}" if kind and trigger else "?"


def read_message(message: hl7.Message, *, timezone: str = "Asia/Shanghai") -> Hl7Reading:
    """``read`` for a message already parsed (``parse``), so that it is parsed only once."""
    zone = ZoneInfo(timezone)
    header = _header(message, zone)
    triggers = SUPPORTED.get(header.message_type)
    if triggers is None or header.trigger not in triggers:
        raise MappingError(
            "HL7_MESSAGE_UNSUPPORTED",
            "MSH-9",
            f"{header.message_type}^{header.trigger}: the platform takes SIU "
            f"{'/'.join(sorted(SUPPORTED['SIU']))} and ADT {'/'.join(sorted(SUPPORTED['ADT']))}",
        )
    if header.message_type == "SIU":
        return _read_siu(message, header, zone)
    return _read_adt(message, header)


def _read_siu(message: hl7.Message, header: Hl7Header, zone: ZoneInfo) -> Hl7Reading:
    appt = _appointment(message, zone)
    ours = appt["placer_authority"] == PLATFORM_AUTHORITY and bool(appt["placer_id"])
    trigger = header.trigger
    if trigger in ("S15", "S16", "S17") and appt["event_reason"].upper() == "STOP":
        if not appt["doctor_code"] or not appt["starts_at"]:
            raise MappingError(
                "HL7_MESSAGE_INVALID", "AIP-3/SCH-11", "a session stop names the doctor and time"
            )
        key = SessionKey(
            doctor_code=appt["doctor_code"], starts_at=datetime.fromisoformat(appt["starts_at"])
        )
        return Hl7Reading(
            header, (StopNotice(key=key, reason=appt["reason"] or "停诊"),), appointment=appt
        )
    if trigger == "S26":
        return Hl7Reading(header, note="no-show notifications are informational", appointment=appt)
    if not ours:
        return Hl7Reading(header, note="not a platform booking; acknowledged", appointment=appt)
    if trigger in ("S12", "S13", "S14"):
        filing = FilingResult(
            booking_id=appt["placer_id"],
            status="filed",
            medical_record_no=_medical_record_no(message) or appt["patient_id"],
            his_appointment_id=appt["filler_id"],
        )
        return Hl7Reading(header, (FilingNotice(filing),), appointment=appt)
    # S15/S16/S17 without STOP: the hospital cancels this one booking
    cancel = CancelNotice(booking_id=appt["placer_id"], reason=appt["reason"] or "医院取消")
    return Hl7Reading(header, (cancel,), appointment=appt)


def _read_adt(message: hl7.Message, header: Hl7Header) -> Hl7Reading:
    booking_id = _platform_visit(message)
    if not booking_id:
        return Hl7Reading(header, note="no platform visit number in PV1-19; acknowledged")
    if header.trigger == "A04":
        return Hl7Reading(header, (CheckInNotice(booking_id=booking_id),))
    mrn = _medical_record_no(message)
    if not mrn:
        raise MappingError("HL7_MESSAGE_INVALID", "PID-3", "no hospital record number")
    return Hl7Reading(
        header,
        (FilingNotice(FilingResult(booking_id=booking_id, status="filed", medical_record_no=mrn)),),
    )


def ack(
    raw: str | bytes,
    code: str,
    text: str = "",
    *,
    control_id: str,
    error_code: str = "",
) -> str:
    """ACK for ``raw``: AA accepted, AE error (send again), AR rejected (do not)."""
    try:
        message: hl7.Message | None = parse(raw)
    except MappingError:
        message = None
    return ack_message(message, code, text, control_id=control_id, error_code=error_code)


def ack_message(
    message: hl7.Message | None,
    code: str,
    text: str = "",
    *,
    control_id: str,
    error_code: str = "",
) -> str:
    """``ack`` for a message already parsed, or for one that could not be (``None``)."""
    if message is not None:
        reply = message.create_ack(
            ack_code=code, message_id=control_id, application="GUAHAO", facility="REGION"
        )
        msh_control = field_of(message, "MSH", 10)
    else:
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        reply = hl7.parse(f"MSH|^~\\&|GUAHAO|REGION|||{now}||ACK|{control_id}|P|2.5\rMSA|{code}|")
        msh_control = ""
    lines = str(reply).split("\r")
    lines = [line for line in lines if line]
    msa = f"MSA|{code}|{msh_control}|{_escape(text)[:80]}"
    lines = [line for line in lines if not line.startswith("MSA")] + [msa]
    if error_code:
        lines.append(f"ERR||||E|{error_code}^{_escape(text)[:80]}")
    return "\r".join(lines) + "\r"


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def _ts(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y%m%d%H%M%S%z")


def patient_a28(
    filing: PatientFiling,
    *,
    booking_id: str,
    control_id: str,
    receiving_facility: str,
    now: datetime,
    timezone: str = "Asia/Shanghai",
) -> str:
    """ADT^A28 asking the hospital to file (建档) a booking's patient: PID-3 carries the
    platform's patient id (``GUAHAO`` PI) and the identity document, PV1-19 the booking."""
    zone = ZoneInfo(timezone)
    born = f"{filing.birth_date:%Y%m%d}" if filing.birth_date else ""
    segments = [
        f"MSH|^~\\&|GUAHAO|REGION|HIS|{_escape(receiving_facility)}|{_ts(now, zone)}||"
        f"ADT^A28^ADT_A05|{control_id}|P|2.5",
        f"EVN|A28|{_ts(now, zone)}",
        f"PID|1||{filing.patient_id}^^^{PLATFORM_AUTHORITY}^PI~"
        f"{_escape(filing.document_number)}^^^CHN^{_escape(filing.document_type)}||"
        f"{_escape(filing.name)}||{born}|{filing.sex}",
        f"PV1|1|O|||||||||||||||||{booking_id}^^^{PLATFORM_AUTHORITY}^VN",
    ]
    return "\r".join(segments) + "\r"


def booking_siu(
    notice: BookingNotice,
    *,
    control_id: str,
    receiving_facility: str,
    now: datetime,
    timezone: str = "Asia/Shanghai",
) -> str:
    """The SIU message telling a hospital about a booking event."""
    zone = ZoneInfo(timezone)
    if notice.topic == "booking.confirmed":
        trigger, status = "S12", "Booked"
    elif notice.topic.startswith("booking.cancelled") or notice.topic in (
        "booking.expired",
        "booking.abandoned",
    ):
        trigger, status = "S15", "Cancelled"
    else:
        trigger, status = "S14", notice.status
    minutes = int((notice.ends_at - notice.starts_at).total_seconds() // 60)
    segments = [
        f"MSH|^~\\&|GUAHAO|REGION|HIS|{_escape(receiving_facility)}|{_ts(now, zone)}||"
        f"SIU^{trigger}^SIU_S12|{control_id}|P|2.5",
        f"SCH|{notice.booking_id}^{PLATFORM_AUTHORITY}||||||{_escape(notice.topic)}||"
        f"{minutes}|min|^^{minutes}^{_ts(notice.starts_at, zone)}^{_ts(notice.ends_at, zone)}"
        + "|" * 14
        + status,
        f"PID|1||{notice.patient_id}^^^{PLATFORM_AUTHORITY}^PI||{_escape(notice.patient_display)}",
        "RGS|1|A",
        f"AIP|1|A|{notice.doctor_code}||||{_ts(notice.starts_at, zone)}|||{minutes}|min",
    ]
    return "\r".join(segments) + "\r"

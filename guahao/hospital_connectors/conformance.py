"""The conformance checklist a hospital IT vendor runs against its live HIS before joining.

Each check says what was tried, whether it passed, and what to fix (with the refusal codes of
the connector guide). Only with ``write_test`` does it create an Appointment (a test booking)
and cancel it again, because that touches the hospital's real inventory.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from guahao.hospital_connectors.canonical import BookingNotice, Refusal
from guahao.hospital_connectors.failures import ConnectorError
from guahao.hospital_connectors.fhir_client import FhirClient
from guahao.hospital_connectors.fhir_mapping import (
    MappingDefaults,
    booking_to_appointment,
    schedule_from_resources,
)
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS, Appointment, Slot

__all__ = ["Check", "render", "verify_fhir", "verify_mllp"]


class Check(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    detail: str
    fix: str = ""


async def verify_fhir(
    client: FhirClient, defaults: MappingDefaults, *, write_test: bool = False, sample: int = 200
) -> list[Check]:
    checks: list[Check] = []
    try:
        meta = await client.metadata()
    except ConnectorError as exc:
        return [Check("metadata", False, str(exc), "GET [base]/metadata must answer 200")]
    version = str(meta.get("fhirVersion", ""))
    checks.append(
        Check(
            "metadata",
            version.startswith("4.0"),
            f"fhirVersion {version or '(none)'}",
            "" if version.startswith("4.0") else "serve FHIR R4 (4.0.1)",
        )
    )
    supported = {
        r.get("type")
        for rest in meta.get("rest", [])
        for r in rest.get("resource", [])
        if any(i.get("code") == "search-type" for i in r.get("interaction", []))
    }
    needed = {"Schedule", "Slot", "Practitioner", "PractitionerRole", "HealthcareService"}
    missing = sorted(needed - supported)
    checks.append(
        Check(
            "search support",
            not missing,
            f"search-type on {sorted(supported & needed)}",
            f"declare search-type for {missing}" if missing else "",
        )
    )
    resources: list[Any] = []
    refusals: list[Refusal] = []
    for kind in ("HealthcareService", "Practitioner", "PractitionerRole", "Schedule"):
        try:
            async for page, refused in client.search(kind, page_size=sample):
                resources += page
                refusals += refused
        except ConnectorError as exc:
            checks.append(Check(f"fetch {kind}", False, str(exc), "answer searches with a Bundle"))
    slots: list[Any] = []
    try:
        async for page, refused in client.search("Slot", page_size=sample):
            slots += page
            refusals += refused
            break  # one page is enough to check the mapping
        checks.append(Check("schedule fetch", bool(slots), f"{len(slots)} slots on the first page"))
    except ConnectorError as exc:
        checks.append(Check("schedule fetch", False, str(exc), "GET [base]/Slot must page"))
    mapped = schedule_from_resources([*resources, *slots], defaults)
    refusals += mapped.refusals
    checks.append(
        Check(
            "mapping",
            not refusals and bool(mapped.sessions),
            f"{len(mapped.departments)} departments, {len(mapped.doctors)} doctors, "
            f"{len(mapped.sessions)} sessions, {len(refusals)} refusals",
            "; ".join(f"{r.path}: {r.code} {r.reason}" for r in refusals[:10]),
        )
    )
    operations = {
        op.get("name")
        for rest in meta.get("rest", [])
        for r in rest.get("resource", [])
        if r.get("type") == "Appointment"
        for op in r.get("operation", [])
    }
    if write_test:
        checks.append(await _test_booking(client, defaults, mapped.sessions, slots))
        if {"find", "hold", "book"} <= operations:
            checks.append(await _test_ihe(client, mapped.sessions))
    return checks


async def _test_ihe(client: FhirClient, sessions: list[Any]) -> Check:
    """IHE ITI Scheduling: $find a free appointment, $hold it, $book it, cancel it."""
    if not sessions:
        return Check("IHE $find/$hold/$book", False, "no session to try", "")
    session = sessions[-1]
    practitioner = {"reference": f"Practitioner/{session.doctor_code}"}
    try:
        found = await client.operation(
            "find",
            [
                {"name": "start", "valueDateTime": session.segments[0].start.isoformat()},
                {"name": "end", "valueDateTime": session.segments[-1].end.isoformat()},
                {"name": "practitioner", "valueReference": practitioner},
            ],
        )
        if not found:
            return Check("IHE $find/$hold/$book", False, "$find proposed nothing", "")
        reference = {"reference": f"Appointment/{found[0]['id']}"}
        [held] = await client.operation(
            "hold", [{"name": "appointment-reference", "valueReference": reference}]
        )
        booking_id = f"conformance-ihe-{int(datetime.now(UTC).timestamp())}"
        identifier = {"system": CANONICAL_SYSTEMS["booking"], "value": booking_id}
        [booked] = await client.operation(
            "book",
            [{"name": "appointment-resource", "resource": {**held, "identifier": [identifier]}}],
        )
        cancelled = await client.put_appointment(
            msgspec.convert({**booked, "status": "cancelled"}, Appointment, strict=False),
            f"{CANONICAL_SYSTEMS['booking']}|{booking_id}",
        )
    except (ConnectorError, ValueError, KeyError, msgspec.ValidationError) as exc:
        return Check("IHE $find/$hold/$book", False, str(exc), "follow ITI-115/116/117")
    ok = (
        held.get("status") == "pending"
        and booked.get("status") == "booked"
        and cancelled.get("status") == "cancelled"
    )
    return Check(
        "IHE $find/$hold/$book",
        ok,
        f"{len(found)} proposed; {held.get('id')} {held.get('status')}, "
        f"then {booked.get('status')}, then {cancelled.get('status')}",
        "" if ok else "answer $hold with status pending and $book with booked",
    )


async def _test_booking(
    client: FhirClient, defaults: MappingDefaults, sessions: list[Any], slots: list[Any]
) -> Check:
    free = next((s for s in slots if isinstance(s, Slot) and s.status == "free"), None)
    if free is None or free.start is None or free.end is None or not sessions:
        return Check("test hold and cancellation", False, "no free slot to try", "")
    booking_id = f"conformance-{int(datetime.now(UTC).timestamp())}"
    notice = BookingNotice(
        topic="booking.confirmed",
        event_id=0,
        booking_id=booking_id,
        status="confirmed",
        hospital_code=defaults.hospital_code,
        doctor_code=sessions[0].doctor_code,
        session_external_id="",
        starts_at=free.start,
        ends_at=free.end,
        patient_display="接口测试",
    )
    identifier = f"{CANONICAL_SYSTEMS['booking']}|{booking_id}"
    try:
        made = await client.put_appointment(booking_to_appointment(notice), identifier)
        cancelled = await client.put_appointment(
            booking_to_appointment(
                msgspec.structs.replace(notice, topic="booking.cancelled_by_patient")
            ),
            identifier,
        )
    except ConnectorError as exc:
        return Check(
            "test hold and cancellation", False, str(exc), "accept conditional PUT of Appointment"
        )
    ok = made.get("status") == "booked" and cancelled.get("status") == "cancelled"
    return Check(
        "test hold and cancellation",
        ok,
        f"Appointment {made.get('id', '?')}: {made.get('status')} then {cancelled.get('status')}",
        "" if ok else "echo the Appointment's status in the answer",
    )


async def verify_mllp(host: str, port: int, wait: float = 5.0) -> Check:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    except (OSError, TimeoutError) as exc:
        return Check(
            "MLLP listener", False, f"{host}:{port}: {exc!r}", "open the MLLP port to the platform"
        )
    writer.close()
    await writer.wait_closed()
    return Check("MLLP listener", True, f"{host}:{port} accepts connections")


def render(hospital: str, checks: list[Check]) -> str:
    lines = [f"Conformance of {hospital} ({datetime.now(UTC) + timedelta(0):%Y-%m-%d %H:%M} UTC)"]
    for check in checks:
        lines.append(f"  [{'PASS' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
        if check.fix and not check.passed:
            lines.append(f"         fix: {check.fix}")
    passed = sum(c.passed for c in checks)
    lines.append(f"{passed}/{len(checks)} checks passed")
    return "\n".join(lines)

"""Importing a file for a hospital (``guahao connectors import``): FHIR, HL7 v2, CSV, XLSX.

A schedule sheet with any error imports nothing. A FHIR document imports what maps and
reports each refused resource; HL7 v2 files (one or more messages) apply each message's
notices and report each refused message.
"""

from __future__ import annotations

import re

import msgspec

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.batch_files import RowError, check_schedule_file
from guahao.hospital_connectors.canonical import Refusal
from guahao.hospital_connectors.failures import MappingError
from guahao.hospital_connectors.fhir_mapping import MappingDefaults, ingest_document
from guahao.hospital_connectors.notices import apply_notice
from guahao.platform.errors import GuahaoError
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.hospital_feed import FeedReport, HospitalFeed, describe

__all__ = ["ImportOutcome", "import_file"]


class ImportOutcome(msgspec.Struct):
    ok: bool
    report: FeedReport | None = None
    applied: list[str] = msgspec.field(default_factory=list)
    refusals: list[Refusal] = msgspec.field(default_factory=list)
    row_errors: list[RowError] = msgspec.field(default_factory=list)


async def import_file(
    feed: HospitalFeed,
    hospital_code: str,
    kind: str,
    data: bytes,
    actions: HospitalActions | None = None,
) -> ImportOutcome:
    zone = await feed.timezone_of(hospital_code)
    if kind in ("csv", "xlsx"):
        checked = await check_schedule_file(
            data,
            kind=kind,
            hospital_code=hospital_code,
            timezone=zone,
            known_doctors=await feed.doctor_codes(hospital_code),
        )
        if checked.errors:
            return ImportOutcome(ok=False, row_errors=checked.errors)
        return ImportOutcome(
            ok=True, report=await feed.apply_sessions(hospital_code, checked.sessions)
        )
    if kind == "fhir":
        mapped, notices = ingest_document(data, MappingDefaults(hospital_code, timezone=zone))
        outcome = ImportOutcome(ok=not mapped.refusals, refusals=list(mapped.refusals))
        if mapped.departments or mapped.doctors:
            await feed.upsert_staff(hospital_code, mapped.departments, mapped.doctors)
        outcome.report = await feed.apply_sessions(hospital_code, mapped.sessions)
        for stop in mapped.stops:
            try:
                outcome.applied.append(await apply_notice(feed, hospital_code, stop))
            except GuahaoError as exc:
                if exc.code != "SESSION_NOT_FOUND":
                    raise
                outcome.applied.append(
                    f"{describe(stop.key)}: not on the platform, nothing to stop"
                )
        for notice in notices:
            try:
                outcome.applied.append(await apply_notice(feed, hospital_code, notice))
            except GuahaoError as exc:
                outcome.ok = False
                outcome.refusals.append(Refusal(type(notice).__name__, exc.code, exc.message_en))
        return outcome
    outcome = ImportOutcome(ok=True)
    text = data.decode("utf-8", errors="replace")
    for index, message in enumerate(
        m for m in re.split(r"(?=^MSH\|)", text, flags=re.M) if m.strip()
    ):
        try:
            reading = hl7_mapping.read(message, timezone=zone)
            for message_notice in reading.notices:
                outcome.applied.append(
                    await apply_notice(feed, hospital_code, message_notice, actions)
                )
            if reading.note:
                outcome.applied.append(f"{reading.header.control_id}: {reading.note}")
        except MappingError as exc:
            outcome.ok = False
            outcome.refusals.append(
                Refusal(f"message {index + 1} {exc.path}", exc.code, exc.reason)
            )
        except GuahaoError as exc:
            outcome.ok = False
            outcome.refusals.append(Refusal(f"message {index + 1}", exc.code, exc.message_en))
    return outcome

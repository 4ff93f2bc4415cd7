"""Scheduled pulls from hospital systems, reconciliation, and telling them about bookings.

A pull is incremental: Slots changed since the connector's cursor (the newest
``meta.lastUpdated`` it has seen, the HIS's own clock) name the Schedules that changed, whose
slots are then read whole so every affected session is mapped complete. A pull that fails
half-way changes no cursor, so the next one reads the same changes again: nothing is lost,
and applying a session twice changes nothing. A reconciliation (``full=True``) reads
everything and reports what the pool has that the HIS no longer lists.

Calls to a HIS go through its circuit breaker: after ``threshold`` failures in a row the HIS
is left alone for ``cooldown`` (then one trial call), so a dead HIS costs nothing per tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from guahao.hospital_connectors import hl7_mapping
from guahao.hospital_connectors.canonical import BookingNotice, HisSchedule, PatientFiling, Refusal
from guahao.hospital_connectors.failures import ConnectorError, PermanentError, RetryableError
from guahao.hospital_connectors.fhir_client import FhirClient
from guahao.hospital_connectors.fhir_mapping import (
    MappingDefaults,
    booking_to_appointment,
    filing_to_patient,
    schedule_from_resources,
)
from guahao.hospital_connectors.fhir_resources import CANONICAL_SYSTEMS, Schedule, Slot
from guahao.hospital_connectors.mllp import MllpClient
from guahao.hospital_connectors.notices import apply_notice
from guahao.hospital_connectors.registry import ConnectorInfo, ConnectorRegistry
from guahao.platform.clock import Clock
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.outbox import BatchFailures, OutboxEvent
from guahao.platform.services.hospital_feed import (
    BookingFacts,
    FeedReport,
    FilingResult,
    HospitalFeed,
)

__all__ = ["CircuitBreaker", "FhirSync", "HisNotifier", "SyncOutcome"]

log = logging.getLogger(__name__)


@dataclass
class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown``."""

    clock: Clock
    threshold: int = 5
    cooldown: timedelta = timedelta(minutes=2)
    failures: int = 0
    opened_at: datetime | None = None

    def check(self) -> None:
        if self.opened_at is None:
            return
        if self.clock.now() - self.opened_at < self.cooldown:
            raise RetryableError(
                "HIS_CIRCUIT_OPEN", f"{self.failures} failures in a row; paused until cooldown"
            )
        # half-open: let this call through; one more failure re-opens at once

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock.now()


class SyncOutcome(msgspec.Struct):
    hospital_code: str
    status: str
    received: int = 0
    report: FeedReport | None = None
    stopped: int = 0
    refusals: list[Refusal] = msgspec.field(default_factory=list)
    error: str = ""


def defaults_of(info: ConnectorInfo) -> MappingDefaults:
    return MappingDefaults(hospital_code=info.hospital_code, timezone=info.timezone)


@dataclass
class FhirSync:
    """Pulls FHIR schedules into the pool through ``HospitalFeed``."""

    feed: HospitalFeed
    registry: ConnectorRegistry
    clock: Clock
    page_size: int = 500
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, connector_id: str) -> CircuitBreaker:
        return self.breakers.setdefault(connector_id, CircuitBreaker(self.clock))

    def client(self, info: ConnectorInfo) -> FhirClient:
        config = info.config
        return FhirClient(
            info.base_url,
            client_id=str(config.get("client_id", "")),
            private_key_pem=str(config.get("private_key_pem", "")),
            token_url=str(config.get("token_url", "")),
        )

    async def _collect(
        self, client: FhirClient, kind: str, params: dict[str, str] | None = None
    ) -> tuple[list[Any], list[Refusal]]:
        resources: list[Any] = []
        refusals: list[Refusal] = []
        async for page, refused in client.search(kind, params, page_size=self.page_size):
            resources += page
            refusals += refused
        return resources, refusals

    async def pull(self, hospital_code: str, *, full: bool = False) -> SyncOutcome:
        """One pull of a hospital's FHIR connector; recorded as a sync run."""
        info = await self.registry.get(hospital_code, "fhir")
        breaker = self.breaker(info.id)
        run_id = await self.registry.start_run(info.id)
        client = self.client(info)
        try:
            breaker.check()
            outcome, cursor = await self._pull(client, info, full=full)
        except GuahaoError as exc:  # the platform refused what the HIS sent
            await self.registry.finish_run(run_id, "failed", error=f"{exc.code}: {exc.detail}")
            return SyncOutcome(hospital_code, "failed", error=f"{exc.code}: {exc.detail}")
        except ConnectorError as exc:
            if exc.code != "HIS_CIRCUIT_OPEN":
                breaker.failed()
            await self.registry.finish_run(
                run_id, "skipped" if exc.code == "HIS_CIRCUIT_OPEN" else "failed", error=str(exc)
            )
            return SyncOutcome(hospital_code, "failed", error=str(exc))
        finally:
            await client.close()
        breaker.succeeded()
        report = outcome.report or FeedReport()
        drift: dict[str, Any] = {
            "items": [msgspec.to_builtins(d) for d in report.drift[:200]],
            "refusals": [msgspec.to_builtins(r) for r in outcome.refusals[:200]],
        }
        await self.registry.finish_run(
            run_id,
            "ok",
            received=outcome.received,
            created=report.created,
            changed=report.capacity_changed + outcome.stopped,
            drift=drift,
        )
        if cursor is not None:
            await self.registry.set_cursor(info.id, cursor)
        return outcome

    async def _pull(
        self, client: FhirClient, info: ConnectorInfo, *, full: bool
    ) -> tuple[SyncOutcome, datetime | None]:
        staff: list[Any] = []
        refusals: list[Refusal] = []
        for kind in ("HealthcareService", "Practitioner", "PractitionerRole", "Schedule"):
            found, refused = await self._collect(client, kind)
            staff += found
            refusals += refused
        {s.id: s for s in staff if isinstance(s, Schedule)}
        since = None if full else info.sync_cursor
        # ge, not gt: a change stamped in the same instant as the cursor is read again rather
        # than missed (reading it twice changes nothing)
        params = {"_lastUpdated": f"ge{since.isoformat()}"} if since is not None else {}
        changed, refused = await self._collect(client, "Slot", params)
        refusals += refused
        slots = [s for s in changed if isinstance(s, Slot)]
        cursor = max(
            (r.meta.last_updated for r in (*staff, *slots) if r.meta and r.meta.last_updated),
            default=None,
        )
        if since is not None and slots:
            # whole schedules, so every affected session is mapped with all its segments
            touched = {s.schedule.target[1] for s in slots}
            slots = []
            for schedule_id in sorted(touched):
                found, refused = await self._collect(
                    client, "Slot", {"schedule": f"Schedule/{schedule_id}"}
                )
                slots += [s for s in found if isinstance(s, Slot)]
                refusals += refused
        mapped: HisSchedule = schedule_from_resources([*staff, *slots], defaults_of(info))
        refusals += mapped.refusals
        outcome = SyncOutcome(info.hospital_code, "ok", received=len(slots), refusals=refusals)
        await self.feed.upsert_staff(info.hospital_code, mapped.departments, mapped.doctors)
        known = await self.feed.doctor_codes(info.hospital_code)
        for spec in [s for s in mapped.sessions if s.doctor_code not in known]:
            refusals.append(
                Refusal(
                    path=spec.external_id,
                    code="FHIR_REFERENCE_UNRESOLVED",
                    reason=f"Practitioner/{spec.doctor_code} has no usable PractitionerRole",
                )
            )
        mapped.sessions = [s for s in mapped.sessions if s.doctor_code in known]
        window = None
        if full and mapped.sessions:
            days = [s.date for s in mapped.sessions]
            window = (min(days), max(days))
        outcome.report = await self.feed.apply_sessions(
            info.hospital_code, mapped.sessions, window=window
        )
        for stop in mapped.stops:
            try:
                await apply_notice(self.feed, info.hospital_code, stop)
            except GuahaoError as exc:
                if exc.code != "SESSION_NOT_FOUND":
                    raise
                continue  # a stop of a session the pool never had: nothing to do
            outcome.stopped += 1
        return outcome, cursor

    async def pull_all(self) -> list[SyncOutcome]:
        """The scheduled job: every FHIR connector once."""
        results = []
        for info in await self.registry.all():
            if info.kind == "fhir" and info.base_url:
                results.append(await self.pull(info.hospital_code))
        return results


HIS_CALLS_PER_HOSPITAL = 4
"""Bookings one batch tells one hospital's system about side by side (each booking's own
events in order): enough to hide a round trip, few enough not to flood a small HIS."""

FACT_READS_AT_ONCE = 4
"""Bookings whose facts one batch reads side by side (a pooled connection each)."""

NOTIFIED_TOPICS = frozenset(
    {
        "booking.confirmed",
        "booking.cancelled_by_patient",
        "booking.cancelled_by_hospital",
        "booking.checked_in",
        "booking.no_show",
    }
)
"""What a hospital hears: a booking made, ended, arrived or missed."""


@dataclass
class HisNotifier:
    """Outbox subscriber: tells each hospital that asked (``notify``) about its bookings.

    Delivery is the outbox's: at least once, in order per booking, parked and retried with
    backoff while the HIS is down. FHIR hospitals get a conditional update of the booking's
    Appointment (idempotent by the booking identifier); HL7 v2 hospitals get SIU over MLLP.
    A permanent refusal by the HIS is logged and not retried forever.
    """

    feed: HospitalFeed
    registry: ConnectorRegistry
    clock: Clock
    mllp_clients: dict[tuple[str, int], MllpClient] = field(default_factory=dict)

    async def handle_batch(self, events: Sequence[OutboxEvent]) -> bool | BatchFailures:
        """Outbox batch entry point: the same calls, in the same order per booking, as the
        handler on each event, but bookings side by side: every hospital at once, at most
        ``HIS_CALLS_PER_HOSPITAL`` of one hospital's bookings at a time, so a slow or dead HIS
        holds up only its own bookings. A run with no hospital system to tell costs one read
        of the registry. Each booking stops at its first failure, which is reported
        (``BatchFailures``): the dispatcher parks it and retries it alone; the rest is done."""
        notified = [e for e in events if e.topic in NOTIFIED_TOPICS]
        if not notified:
            return True
        connectors = [c for c in await self.registry.all() if c.notify]
        if not connectors:
            return True
        bookings: dict[str, list[OutboxEvent]] = {}
        for event in notified:
            bookings.setdefault(event.aggregate_id, []).append(event)
        reads = asyncio.Semaphore(FACT_READS_AT_ONCE)
        hospitals: dict[str, asyncio.Semaphore] = {}
        failed: dict[int, Exception] = {}

        async def deliver(booking_events: list[OutboxEvent]) -> None:
            try:
                async with reads:
                    facts = await self.feed.booking_facts(booking_events[0].aggregate_id)
            except Exception as exc:  # the booking's first event parks, the rest behind it
                failed[booking_events[0].id] = exc
                return
            if facts is None:
                return
            if not any(c.hospital_code == facts.hospital_code for c in connectors):
                return
            gate = hospitals.setdefault(
                facts.hospital_code, asyncio.Semaphore(HIS_CALLS_PER_HOSPITAL)
            )
            async with gate:
                for event in booking_events:
                    try:
                        await self._notify(event, facts, connectors)
                    except Exception as exc:
                        failed[event.id] = exc
                        return

        await asyncio.gather(*(deliver(b) for b in bookings.values()))
        return BatchFailures(failed) if failed else True

    async def __call__(self, event: OutboxEvent) -> None:
        if event.topic not in NOTIFIED_TOPICS:
            return  # holds and payments in progress are the platform's own business
        facts = await self.feed.booking_facts(event.aggregate_id)
        if facts is None:
            return
        await self._notify(event, facts, await self.registry.all())

    async def _notify(
        self, event: OutboxEvent, facts: BookingFacts, connectors: Sequence[ConnectorInfo]
    ) -> None:
        """Tell the booking's hospital systems about one event (the handler's and the batch's
        one code path, so both send the same messages)."""
        targets = [c for c in connectors if c.hospital_code == facts.hospital_code and c.notify]
        if not targets:
            return
        notice = BookingNotice(
            topic=event.topic,
            event_id=event.id,
            booking_id=facts.booking_id,
            status=facts.status,
            hospital_code=facts.hospital_code,
            doctor_code=facts.doctor_code,
            session_external_id=facts.session_external_id,
            starts_at=facts.starts_at,
            ends_at=facts.ends_at,
            patient_id=facts.patient_id,
            patient_display=facts.patient_name,
        )
        for info in targets:
            try:
                await self._send(info, notice)
            except PermanentError as exc:
                log.error("HIS %s refused %s for good: %s", info.hospital_code, event.id, exc)
                await self.registry.remember(
                    info.hospital_id, "notify", f"event-{event.id}", event.topic, "AR", str(exc)
                )

    async def _filing(self, notice: BookingNotice) -> PatientFiling | None:
        if notice.topic != "booking.confirmed":
            return None
        facts = await self.feed.patient_facts(notice.booking_id)
        if facts is None:
            return None
        return PatientFiling(
            patient_id=facts.patient_id,
            name=facts.name,
            document_type=facts.document_type,
            document_number=facts.document_number,
            sex=facts.sex,
            birth_date=facts.birth_date,
        )

    async def _send(self, info: ConnectorInfo, notice: BookingNotice) -> None:
        filing = await self._filing(notice)
        if info.kind == "fhir":
            client = FhirClient(
                info.base_url,
                client_id=str(info.config.get("client_id", "")),
                private_key_pem=str(info.config.get("private_key_pem", "")),
                token_url=str(info.config.get("token_url", "")),
                attempts=1,
            )
            try:
                mrn = ""
                if filing is not None:  # 建档 first: the appointment then names the record
                    filed = await client.put_patient(
                        filing_to_patient(filing),
                        f"{CANONICAL_SYSTEMS['patient']}|{filing.patient_id}",
                    )
                    mrn = str(filed.get("id", ""))
                    notice = msgspec.structs.replace(notice, his_patient=mrn)
                appointment = booking_to_appointment(notice)
                if info.config.get("ihe_scheduling") and notice.topic == "booking.confirmed":
                    # IHE ITI-117 $book, idempotent by the booking identifier
                    [made] = await client.operation(
                        "book",
                        [
                            {
                                "name": "appointment-resource",
                                "resource": msgspec.to_builtins(appointment),
                            }
                        ],
                    )
                else:
                    made = await client.put_appointment(
                        appointment, f"{CANONICAL_SYSTEMS['booking']}|{notice.booking_id}"
                    )
            finally:
                await client.close()
            if filing is not None and mrn:
                await self.feed.record_filing(
                    info.hospital_code,
                    FilingResult(
                        booking_id=notice.booking_id,
                        status="filed",
                        medical_record_no=mrn,
                        his_appointment_id=str(made.get("id", "")),
                    ),
                )
        elif info.kind == "hl7v2":
            host = str(info.config.get("notify_host", "127.0.0.1"))
            port = int(info.config.get("notify_port", 0))
            client_key = (host, port)
            mllp = self.mllp_clients.get(client_key)
            if mllp is None:
                mllp = self.mllp_clients[client_key] = MllpClient(host, port)
            message = hl7_mapping.booking_siu(
                notice,
                control_id=f"GH{notice.event_id}",
                receiving_facility=str(info.config.get("facility", info.hospital_code)),
                now=self.clock.now(),
                timezone=info.timezone,
            )
            if filing is not None:  # 建档 first (ADT^A28); the HIS answers with its record number
                await self._mllp_send(
                    mllp,
                    hl7_mapping.patient_a28(
                        filing,
                        booking_id=notice.booking_id,
                        control_id=f"GH{notice.event_id}P",
                        receiving_facility=str(info.config.get("facility", info.hospital_code)),
                        now=self.clock.now(),
                        timezone=info.timezone,
                    ),
                )
            await self._mllp_send(mllp, message)

    @staticmethod
    async def _mllp_send(mllp: MllpClient, message: str) -> None:
        reply = hl7_mapping.parse(await mllp.send(message))
        code = hl7_mapping.field_of(reply, "MSA", 1)
        if code in ("AE", "CE"):
            raise RetryableError("HIS_UNAVAILABLE", f"MLLP answered {code}")
        if code in ("AR", "CR"):
            raise PermanentError("HIS_REFUSED", hl7_mapping.field_of(reply, "MSA", 3))

"""Filing requests (建档申请) reach the hospital's HIS over its FHIR connector, against the
reference HIS over real sockets: filed with the HIS's record number, retried through an
outage, failed for good on a permanent refusal, left pending without a connector, and never
filed twice when the booking's own filing came first."""

from __future__ import annotations

from pathlib import Path

import msgspec
from sqlalchemy import select

from guahao.hospital_connectors.simulator.store import HisStore
from guahao.platform.hospitals import FilingMode
from guahao.platform.persistence.tables import PatientFilingRow
from tests.fixtures.his_simulator import SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import confirmed_booking, new_account, new_patient


def filing_hospital(mode: FilingMode = FilingMode.REQUIRED_BEFORE_BOOKING):
    spec = sim_hospital()
    return msgspec.structs.replace(
        spec, policies=msgspec.structs.replace(spec.policies, filing_mode=mode)
    )


async def onboarded(platform, his_simulator, *, base_url: str | None = None, notify=False):
    his = await his_simulator(doctors=1, capacity=2)
    await platform.supply.register_hospital(filing_hospital())
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=base_url or his.fhir, notify=notify
    )
    return his, await platform.feed.hospital_id(SIM_HOSPITAL)


def his_patients(store: Path) -> list[dict]:
    """The Patients in the reference HIS's own store (saved on every write)."""
    return list(HisStore.load(store).resources.get("Patient", {}).values())


async def filing_row(platform, filing_id: str) -> PatientFilingRow:
    async with platform.ports.sessions() as session:
        row = await session.get(PatientFilingRow, filing_id)
    assert row is not None
    return row


async def test_a_filing_request_is_filed_in_the_his_with_its_record_number(
    platform, his_simulator, tmp_path
):
    _, hospital_id = await onboarded(platform, his_simulator)
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id, name="李四")

    requested = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    assert requested.status == "pending"
    await platform.dispatcher.dispatch_pending()

    row = await filing_row(platform, requested.id)
    [patient] = his_patients(tmp_path / "his-0.json")
    assert (row.status, row.his_patient_id) == ("filed", patient["id"])
    assert patient["id"].startswith("MR")
    assert patient["name"] == [{"text": "李四"}]
    assert patient_id in {i["value"] for i in patient["identifier"]}
    [seen] = await platform.filings.for_patient(account_id=account_id, patient_id=patient_id)
    assert (seen.status, seen.his_patient_id) == ("filed", patient["id"])

    # asking again changes nothing: no second request, no second patient in the HIS
    again = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    await platform.dispatcher.dispatch_pending()
    assert (again.id, again.status) == (requested.id, "filed")
    assert len(his_patients(tmp_path / "his-0.json")) == 1


async def test_a_request_waits_out_an_outage_and_is_filed_after_it(
    platform, his_simulator, tmp_path
):
    his, hospital_id = await onboarded(platform, his_simulator)
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)
    await his.admin("outage", {"down": True})

    requested = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    await platform.dispatcher.dispatch_pending()

    assert (await filing_row(platform, requested.id)).status == "pending"
    parked = await platform.dispatcher.parked("hospital_connectors.filing_sender")
    assert [p.aggregate_id for p in parked] == [requested.id]

    await his.admin("outage", {"down": False})
    await platform.dispatcher.dispatch_pending()
    row = await filing_row(platform, requested.id)
    assert row.status == "filed"
    assert [p["id"] for p in his_patients(tmp_path / "his-0.json")] == [row.his_patient_id]
    assert await platform.dispatcher.parked("hospital_connectors.filing_sender") == []


async def test_a_permanent_refusal_records_the_request_as_failed(platform, his_simulator):
    his, hospital_id = await onboarded(platform, his_simulator)
    # the hospital registered a wrong endpoint: every write is answered 404, for good
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=f"{his.admin_url}/no-such-fhir"
    )
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)

    requested = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    await platform.dispatcher.dispatch_pending()

    row = await filing_row(platform, requested.id)
    assert row.status == "failed"
    assert "HTTP 404" in row.detail
    assert await platform.dispatcher.parked("hospital_connectors.filing_sender") == []
    # the citizen may ask again; once the endpoint is right, it is filed
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)
    retried = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    assert retried.status == "pending"
    await platform.dispatcher.dispatch_pending()
    assert (await filing_row(platform, requested.id)).status == "filed"


async def test_a_hospital_without_a_his_connector_keeps_the_request_pending(platform):
    await platform.supply.register_hospital(filing_hospital())
    hospital_id = await platform.feed.hospital_id(SIM_HOSPITAL)
    account_id = await new_account(platform)
    patient_id = await new_patient(platform, account_id)

    requested = await platform.filings.request(
        account_id=account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    await platform.dispatcher.dispatch_pending()

    assert (await filing_row(platform, requested.id)).status == "pending"
    assert await platform.dispatcher.parked("hospital_connectors.filing_sender") == []


async def test_mode_a_files_the_person_once_with_the_booking(platform, his_simulator, tmp_path):
    """Mode A: the HIS notifier files the patient with the confirmed booking; the filing
    request that follows finds the person filed and sends nothing more."""
    his = await his_simulator(doctors=1, capacity=2)
    await platform.supply.register_hospital(filing_hospital(FilingMode.AUTO_AT_BOOKING))
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=his.fhir, notify=True
    )
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    from tests.integration.test_hl7_mllp import first_slot

    _, booking_id, _ = await confirmed_booking(platform, await first_slot(platform))
    # the HIS takes the booking's two writes (Patient, Appointment) and then goes down: a
    # third call (a second filing of the same person) would meet the outage and be parked
    await his.admin("outage", {"after": 2})
    for _ in range(3):
        await platform.dispatcher.dispatch_pending()

    booking_filing = await platform.feed.filing_of(booking_id)
    assert booking_filing is not None
    async with platform.ports.sessions() as session:
        [row] = (await session.scalars(select(PatientFilingRow))).all()
    assert (row.status, row.his_patient_id) == ("filed", booking_filing.medical_record_no)
    assert [p["id"] for p in his_patients(tmp_path / "his-0.json")] == [row.his_patient_id]
    assert await platform.dispatcher.parked("hospital_connectors.filing_sender") == []

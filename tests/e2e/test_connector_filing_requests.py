"""A hospital without a HIS connector answers a person's filing request through the push API
(``POST /filings`` with ``filingId``): scoped to the token's hospital, idempotent by key."""

from __future__ import annotations

import msgspec

from guahao.platform.hospitals import FilingMode
from tests.e2e.test_connector_push_api import hospital_client
from tests.fixtures.platforms import clinic, new_account, new_patient, publish_clinic


async def test_the_push_api_answers_a_filing_request(platform, live_server):
    spec = clinic(code="h1")
    spec = msgspec.structs.replace(
        spec,
        policies=msgspec.structs.replace(
            spec.policies, filing_mode=FilingMode.REQUIRED_BEFORE_BOOKING
        ),
    )
    async with await hospital_client(platform, live_server, spec) as api:
        await publish_clinic(platform, clinic(code="h2"))
        own = await platform.feed.hospital_id("h1")
        other = await platform.feed.hospital_id("h2")
        account_id = await new_account(platform)
        patient_id = await new_patient(platform, account_id)
        mine = await platform.filings.request(
            account_id=account_id, patient_id=patient_id, hospital_id=own
        )
        theirs = await platform.filings.request(
            account_id=account_id, patient_id=patient_id, hospital_id=other
        )
        await platform.dispatcher.dispatch_pending()
        assert mine.status == "pending"  # no HIS connector: it waits for the hospital

        body = {"filingId": mine.id, "medicalRecordNo": "MR-77"}
        filed = await api.post("/filings", json=body, headers={"Idempotency-Key": "f-1"})
        assert filed.status_code == 200, filed.text
        assert filed.json() == {"result": f"filing {mine.id} filed"}
        again = await api.post("/filings", json=body, headers={"Idempotency-Key": "f-1"})
        assert again.headers["idempotent-replayed"] == "true"

        foreign = await api.post(
            "/filings",
            json={"filingId": theirs.id, "medicalRecordNo": "MR-1"},
            headers={"Idempotency-Key": "f-2"},
        )
        assert (foreign.status_code, foreign.json()["code"]) == (404, "FILING_NOT_FOUND")
        both = await api.post(
            "/filings",
            json={"filingId": mine.id, "bookingId": "b", "medicalRecordNo": "MR-1"},
            headers={"Idempotency-Key": "f-3"},
        )
        assert (both.status_code, both.json()["code"]) == (422, "VALIDATION_FAILED")
        no_number = await api.post(
            "/filings", json={"filingId": mine.id}, headers={"Idempotency-Key": "f-4"}
        )
        assert (no_number.status_code, no_number.json()["code"]) == (422, "VALIDATION_FAILED")

    views = await platform.filings.for_patient(account_id=account_id, patient_id=patient_id)
    assert {(v.hospital_id, v.status, v.his_patient_id) for v in views} == {
        (own, "filed", "MR-77"),
        (other, "pending", ""),
    }

"""What a banned patient's client actually receives over HTTP, and that following it works.

The refusal is built in one place (``services/ban_checks.py``) and documented in docs/api.md;
this reads the real response of the real app on a socket, so the guide, the builder and the
wire cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from tests.e2e.support import VALID_ID, Citizen, assert_refused
from tests.fixtures.platforms import SESSION_DAY, at_local, publish_clinic

PASSWORD = "staff-password-1"


async def _admin_headers(http: httpx.AsyncClient, platform: Platform) -> dict[str, str]:
    await platform.staff.create(username="chief", password=PASSWORD, role="authority_admin")
    token = await http.post("/api/v1/staff/token", json={"username": "chief", "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['accessToken']}"}


async def _ban_by_hand(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, object]:
    found = await http.post(
        "/api/v1/authority/persons/lookup",
        headers=admin,
        json={"documentType": "resident_id", "documentNumber": VALID_ID},
    )
    assert found.status_code == 200, found.text
    added = await http.post(
        "/api/v1/authority/bans",
        headers=admin,
        json={"personId": found.json()["personId"], "days": 30, "reason": "倒卖号源"},
    )
    assert added.status_code == 201, added.text
    ban: dict[str, object] = added.json()
    return ban


async def test_a_banned_patient_is_refused_with_the_documented_detail_and_can_follow_it_to_appeal(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    slot_ids = await publish_clinic(platform)
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(SESSION_DAY - timedelta(days=1), 9))
    patient = await citizen.add_patient(number=VALID_ID)
    ban = await _ban_by_hand(http, await _admin_headers(http, platform))

    held = await citizen.hold(slot_ids[0])
    assert held.status_code == 201, held.text
    booking_id = held.json()["id"]
    refused = await citizen.put(
        f"/api/v1/bookings/{booking_id}/patient", json={"patientId": patient["id"]}
    )

    body = assert_refused(refused, 403, "PATIENT_BLACKLISTED")
    detail = body["detail"]
    assert set(detail) == {
        "entry_id",
        "until",
        "reason",
        "policy",
        "source",
        "appeal",
        "appeal_until",
    }, detail
    assert detail["entry_id"] == ban["id"]
    assert datetime.fromisoformat(detail["until"]) == datetime.fromisoformat(str(ban["endsAt"]))
    assert (detail["reason"], detail["policy"], detail["source"]) == (
        "倒卖号源",
        "manual",
        "manual",
    )
    assert detail["appeal"] == {"method": "POST", "path": "/api/v1/appeals", "entry_id": ban["id"]}
    window = datetime.fromisoformat(detail["appeal_until"]) - datetime.fromisoformat(
        str(ban["startsAt"])
    )
    assert window == timedelta(days=30)  # the region's appeal window, within the ban
    # the refusal changed nothing: the hold is still the citizen's, without a patient
    booking = await citizen.booking(booking_id)
    assert (booking["status"], booking.get("patientId")) == ("held", None)

    # the client follows ``appeal`` as given, without knowing the API
    appeal = detail["appeal"]
    filed = await http.request(
        appeal["method"],
        appeal["path"],
        headers=citizen.auth,
        json={
            "patientId": patient["id"],
            "statement": "我从未转让号源",
            "entryId": appeal["entry_id"],
        },
    )
    assert filed.status_code == 201, filed.text
    assert (filed.json()["entryId"], filed.json()["status"]) == (ban["id"], "pending")

"""The authority's API and citizens' appeals over real HTTP: staff tokens, role guards, bans,
appeals, person records, the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.platform.schedules import HospitalSpec
from tests.e2e.support import VALID_ID, Citizen
from tests.fixtures.platforms import clinic

PASSWORD = "staff-password-1"


class Staff:
    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, headers=self.auth, **kwargs)


async def sign_in(
    http: httpx.AsyncClient,
    platform: Platform,
    username: str,
    role: str,
    hospital: HospitalSpec | None = None,
) -> Staff:
    if hospital is not None:
        await platform.supply.register_hospital(hospital)
    await platform.staff.create(
        username=username,
        password=PASSWORD,
        role=role,
        hospital_code=hospital.code if hospital else None,
    )
    response = await http.post(
        "/api/v1/staff/token", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tokenType"] == "Bearer"
    assert body["role"] == role
    return Staff(http, body["accessToken"])


def code_of(response: httpx.Response) -> str:
    return str(response.json()["code"])


async def test_staff_sign_in_refuses_wrong_passwords(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    await sign_in(http, platform, "chief", "authority_admin")
    wrong = await http.post("/api/v1/staff/token", json={"username": "chief", "password": "no"})
    assert wrong.status_code == 401
    assert code_of(wrong) == "STAFF_CREDENTIALS_INVALID"
    unknown = await http.post("/api/v1/staff/token", json={"username": "x", "password": "no"})
    assert code_of(unknown) == "STAFF_CREDENTIALS_INVALID"


async def test_a_citizen_token_never_passes_a_staff_guard_and_vice_versa(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    admin = await sign_in(http, platform, "chief", "authority_admin")
    as_citizen = await citizen.get("/api/v1/authority/bans")
    assert as_citizen.status_code == 401
    assert code_of(as_citizen) == "UNAUTHENTICATED"
    anonymous = await http.get("/api/v1/authority/bans")
    assert anonymous.status_code == 401
    as_staff = await admin.get("/api/v1/me/patients")
    assert as_staff.status_code == 401
    assert code_of(as_staff) == "UNAUTHENTICATED"
    assert (await admin.get("/api/v1/appeals")).status_code == 401
    assert (await admin.get("/api/v1/authority/bans")).status_code == 200


async def test_hospital_staff_have_no_blacklist_powers(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    nurse = await sign_in(http, platform, "nurse", "hospital_staff", clinic(code="h9"))
    for path in ("/api/v1/authority/bans", "/api/v1/authority/audit", "/api/v1/authority/signals"):
        response = await nurse.get(path)
        assert response.status_code == 403, path
        assert code_of(response) == "STAFF_ROLE_REQUIRED"


async def test_a_deactivated_staff_token_stops_working_at_once(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    admin = await sign_in(http, platform, "chief", "authority_admin")
    other = await sign_in(http, platform, "leaver", "authority_auditor")
    assert (await other.get("/api/v1/authority/bans")).status_code == 200
    actor = await platform.staff.authenticate(username="chief", password=PASSWORD)
    leaver = await platform.staff.authenticate(username="leaver", password=PASSWORD)
    await platform.staff.deactivate(leaver.id, by=actor)
    assert (await other.get("/api/v1/authority/bans")).status_code == 401
    assert (await admin.get("/api/v1/authority/bans")).status_code == 200


async def test_ban_appeal_and_decision_over_http(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    admin = await sign_in(http, platform, "chief", "authority_admin")
    auditor = await sign_in(http, platform, "reader", "authority_auditor")
    patient = await citizen.add_patient(number=VALID_ID)
    # the authority finds the person by document (in the body) and bans by hand
    found = await auditor.post(
        "/api/v1/authority/persons/lookup",
        json={"documentType": "resident_id", "documentNumber": VALID_ID},
    )
    assert found.status_code == 200, found.text
    person_id = found.json()["personId"]
    refused = await auditor.post(
        "/api/v1/authority/bans", json={"personId": person_id, "days": 30, "reason": "x"}
    )
    assert refused.status_code == 403
    assert code_of(refused) == "STAFF_ROLE_REQUIRED"
    invalid = await admin.post(
        "/api/v1/authority/bans", json={"personId": person_id, "days": 0, "reason": "x"}
    )
    assert invalid.status_code == 422
    added = await admin.post(
        "/api/v1/authority/bans",
        json={"personId": person_id, "days": 30, "reason": "倒卖号源"},
    )
    assert added.status_code == 201, added.text
    ban = added.json()
    assert ban["active"] is True
    assert ban["source"] == "manual"
    # the citizen sees the ban on the patient's standing, and appeals
    standing = await citizen.get(f"/api/v1/patients/{patient['id']}/standing")
    assert standing.status_code == 200, standing.text
    assert standing.json()["ban"]["id"] == ban["id"]
    assert standing.json()["appealUntil"]
    appeal = await citizen.post(
        "/api/v1/appeals", json={"patientId": patient["id"], "statement": "我从未转让号源"}
    )
    assert appeal.status_code == 201, appeal.text
    again = await citizen.post(
        "/api/v1/appeals", json={"patientId": patient["id"], "statement": "再次申诉"}
    )
    assert again.status_code == 409
    assert code_of(again) == "APPEAL_ALREADY_PENDING"
    # an auditor reads, cannot decide; the administrator grants
    pending = await auditor.get("/api/v1/authority/appeals")
    assert [a["id"] for a in pending.json()] == [appeal.json()["id"]]
    path = f"/api/v1/authority/appeals/{appeal.json()['id']}/decision"
    no = await auditor.post(path, json={"grant": True, "reason": "ok"})
    assert no.status_code == 403
    decided = await admin.post(path, json={"grant": True, "reason": "证据不足，予以撤销"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "granted"
    mine = await citizen.get("/api/v1/appeals")
    assert [a["status"] for a in mine.json()] == ["granted"]
    after = await citizen.get(f"/api/v1/patients/{patient['id']}/standing")
    assert after.json()["ban"] is None
    # the person record is masked, and every step is in the audit log
    record = await auditor.get(f"/api/v1/authority/persons/{person_id}")
    assert record.status_code == 200
    assert VALID_ID not in record.text
    assert record.json()["patients"][0]["documentMasked"] == "110105********002X"
    audit = await auditor.get("/api/v1/authority/audit", params={"subjectId": person_id})
    assert audit.status_code == 200
    actions = [e["action"] for e in audit.json()["items"]]
    assert {"person.find", "ban.add", "appeal.grant", "person.read"} <= set(actions)
    lift = await admin.post(f"/api/v1/authority/bans/{ban['id']}/lift", json={"reason": "x"})
    assert lift.status_code == 409
    assert code_of(lift) == "BAN_NOT_ACTIVE"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/authority/bans/nope/lift"),
        ("post", "/api/v1/authority/appeals/nope/decision"),
        ("post", "/api/v1/authority/signals/nope/review"),
    ],
)
async def test_auditors_are_refused_every_change(
    http: httpx.AsyncClient, platform: Platform, method: str, path: str
) -> None:
    auditor = await sign_in(http, platform, "reader", "authority_auditor")
    body = {"reason": "x", "grant": True} if "decision" in path else {"reason": "x"}
    if "review" in path:
        body = {"note": "x"}
    response = await auditor.post(path, json=body)
    assert response.status_code == 403
    assert code_of(response) == "STAFF_ROLE_REQUIRED"


async def test_a_page_offset_past_any_list_is_refused_as_bad_input_not_a_server_error(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    """schemathesis, signed in as an administrator, found ``offset=10**19`` answering 500."""
    admin = await sign_in(http, platform, "chief", "authority_admin")
    for path in ("/api/v1/authority/signals", "/api/v1/authority/bans"):
        huge = await admin.get(path, params={"offset": str(10**19)})
        assert huge.status_code == 422, (path, huge.text)
        assert code_of(huge) == "VALIDATION_FAILED"
        assert (await admin.get(path, params={"offset": "1000000"})).status_code == 200
    audit = await admin.get("/api/v1/authority/audit", params={"page": str(10**19)})
    assert audit.status_code == 422, audit.text

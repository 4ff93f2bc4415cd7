"""The rules API and the hospital desk over real HTTP, with real staff and citizen tokens:
read and change the region's rules, a hospital's own overrides, 诊间加号, 复诊有效期 and 建档."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import msgspec
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.hospitals import FilingMode
from guahao.platform.persistence.tables import HospitalRow, SessionRow, SlotRow
from tests.e2e.support import _SERIALS, Citizen, ConsoleTexts, assert_refused
from tests.fixtures.platforms import SESSION_DAY, clinic, publish_clinic, resident_id

PASSWORD = "staff-password-1"


class Staff:
    """A signed-in staff member driving the API."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, headers=self.auth, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.put(path, headers=self.auth, **kwargs)


async def sign_in(
    http: httpx.AsyncClient, platform: Platform, username: str, role: str, code: str | None = None
) -> Staff:
    await platform.staff.create(username=username, password=PASSWORD, role=role, hospital_code=code)
    response = await http.post(
        "/api/v1/staff/token", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return Staff(http, response.json()["accessToken"])


async def hospital_id_of(platform: Platform, code: str) -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(select(HospitalRow.id).where(HospitalRow.code == code))
    assert found is not None
    return found


async def session_and_slots(platform: Platform, code: str) -> tuple[str, list[str]]:
    """The session of hospital ``code`` on SESSION_DAY (as the hospital's own HIS knows it)
    and its slots in time order."""
    hospital_id = await hospital_id_of(platform, code)
    async with platform.ports.sessions() as session:
        session_id = await session.scalar(
            select(SessionRow.id).where(
                SessionRow.hospital_id == hospital_id, SessionRow.date == SESSION_DAY
            )
        )
        assert session_id is not None
        slots = (
            await session.scalars(
                select(SlotRow.id).where(SlotRow.session_id == session_id).order_by(SlotRow.seq)
            )
        ).all()
    return session_id, list(slots)


async def test_staff_read_the_rules_and_only_an_administrator_changes_them(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    admin = await sign_in(http, platform, "chief", "authority_admin")
    auditor = await sign_in(http, platform, "reader", "authority_auditor")

    current = await auditor.get("/api/v1/rules/region")
    assert current.status_code == 200, current.text
    assert current.json()["version"] == 0
    # camelCase on the wire, as everywhere in the API (docs/api.md), rule names included
    limits = current.json()["rules"]["limits"]
    assert (limits["perPatientDay"], "per_patient_day" in limits) == (3, False)
    assert "limits.perPatientDepartmentDay" in current.json()["rules"]["hospitalOverridable"]

    change = {"changes": {"limits.perPatientDay": 2}, "reason": "号源紧张", "expectedVersion": 0}
    assert_refused(
        await auditor.put("/api/v1/rules/region", json=change), 403, "STAFF_ROLE_REQUIRED"
    )
    saved = await admin.put("/api/v1/rules/region", json=change)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"version": 1}
    # a second save from the same stale screen is told to reload
    assert_refused(
        await admin.put("/api/v1/rules/region", json=change), 409, "RULES_CHANGED_MEANWHILE"
    )
    assert_refused(
        await admin.put(
            "/api/v1/rules/region",
            json={"changes": {"limits": {"per_patient_day": 0}}, "reason": "x"},
        ),
        422,
        "RULES_INVALID",
    )
    no_reason = await admin.put(
        "/api/v1/rules/region", json={"changes": {"add_on_per_session": 1}, "reason": ""}
    )
    assert no_reason.status_code in (400, 422), no_reason.text

    after = (await auditor.get("/api/v1/rules/region")).json()
    assert (after["version"], after["rules"]["limits"]["perPatientDay"]) == (1, 2)
    history = await auditor.get("/api/v1/rules/history")
    assert history.status_code == 200, history.text
    assert [(v["version"], v["changedBy"], v["reason"]) for v in history.json()] == [
        (1, "chief", "号源紧张")
    ]
    assert history.json()[0]["rules"]["limits"]["perPatientDay"] == 2
    # the change is in the authority's audit log
    audit = await auditor.get("/api/v1/authority/audit", params={"subjectId": "1"})
    assert audit.status_code == 200, audit.text
    assert "rules.region_changed" in [e["action"] for e in audit.json()["items"]]


async def test_a_hospitals_staff_override_their_own_hospitals_rules_only(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    for code in ("h1", "h2"):
        await platform.supply.register_hospital(clinic(code=code))
    h1, h2 = (
        await hospital_id_of(platform, "h1"),
        await hospital_id_of(platform, "h2"),
    )
    nurse = await sign_in(http, platform, "nurse", "hospital_staff", "h1")
    admin = await sign_in(http, platform, "chief", "authority_admin")
    body = {"overrides": {"followUpValidDays": 3}, "reason": "检验结果次日出"}

    saved = await nurse.put(f"/api/v1/rules/hospitals/{h1}", json=body)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"version": 1}
    assert_refused(
        await nurse.put(f"/api/v1/rules/hospitals/{h2}", json=body), 403, "PERMISSION_DENIED"
    )
    assert_refused(
        await nurse.put(
            f"/api/v1/rules/hospitals/{h1}",
            json={"overrides": {"limits.perPatientDay": 9}, "reason": "x"},
        ),
        403,
        "RULE_NOT_OVERRIDABLE",
    )
    assert_refused(
        await nurse.put("/api/v1/rules/region", json={"changes": {}, "reason": "x"}),
        403,
        "STAFF_ROLE_REQUIRED",
    )
    at_h1 = await nurse.get(f"/api/v1/rules/hospitals/{h1}")
    assert at_h1.status_code == 200, at_h1.text
    assert at_h1.json()["followUpValidDays"] == 3
    at_h2 = await admin.get(f"/api/v1/rules/hospitals/{h2}")
    assert at_h2.json()["followUpValidDays"] == 0
    assert_refused(await admin.get("/api/v1/rules/hospitals/nope"), 404, "HOSPITAL_NOT_FOUND")
    history = await admin.get("/api/v1/rules/history", params={"hospitalId": h1})
    assert [(v["version"], v["scope"], v["changedBy"]) for v in history.json()] == [
        (1, h1, "nurse")
    ]


async def test_an_add_on_unit_and_a_follow_up_through_the_hospital_desk(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    await publish_clinic(platform)
    session_id, slots = await session_and_slots(platform, "h1")
    nurse = await sign_in(http, platform, "nurse", "hospital_staff", "h1")
    auditor = await sign_in(http, platform, "reader", "authority_auditor")
    patient = await citizen.add_patient()

    # 诊间加号 for the citizen's patient: a confirmed booking the citizen sees
    added = await nurse.post(
        f"/api/v1/hospital-desk/sessions/{session_id}/add-on-units",
        json={"patientId": patient["id"], "reason": "复查结果需当日处理"},
    )
    assert added.status_code == 201, added.text
    booking = await citizen.booking(added.json()["bookingId"])
    assert booking["status"] == "confirmed"
    assert_refused(
        await nurse.post(
            f"/api/v1/hospital-desk/sessions/{session_id}/add-on-units",
            json={"patientId": patient["id"], "reason": "again"},
        ),
        409,
        "PATIENT_ALREADY_BOOKED_SESSION",
    )
    summary = await auditor.get(
        "/api/v1/rules/add-on-units",
        params={"since": SESSION_DAY.isoformat(), "until": SESSION_DAY.isoformat()},
    )
    assert summary.status_code == 200, summary.text
    assert summary.json() == [
        {
            "hospitalId": await hospital_id_of(platform, "h1"),
            "date": SESSION_DAY.isoformat(),
            "units": 1,
        }
    ]
    assert_refused(
        await nurse.get(
            "/api/v1/rules/add-on-units",
            params={"since": SESSION_DAY.isoformat(), "until": SESSION_DAY.isoformat()},
        ),
        403,
        "STAFF_ROLE_REQUIRED",
    )

    # 复诊有效期: offered once the hospital opts in, for the visit it checked in
    # a relative is booked for once the code sent to their phone confirms the relation
    relative_phone = f"136{next(_SERIALS) % 10**8:08d}"
    with ConsoleTexts.attached() as texts:
        added_other = await citizen.post(
            "/api/v1/me/patients",
            json={
                "name": "李四",
                "documentType": "resident_id",
                "documentNumber": resident_id(next(_SERIALS)),
                "phone": relative_phone,
                "relation": "other",
            },
        )
    assert added_other.status_code == 201, added_other.text
    other = added_other.json()
    confirmed = await citizen.post(
        f"/api/v1/me/patients/{other['id']}/proof", json={"code": texts.code_to(relative_phone)}
    )
    assert confirmed.json()["proof"] == "phone_code", confirmed.text
    visit = await citizen.confirmed_booking(slots[0], other["id"])
    await platform.bookings.check_in(visit["id"])  # the HIS reports the arrival
    follow_up = f"/api/v1/hospital-desk/bookings/{visit['id']}/follow-up"
    assert_refused(await nurse.post(follow_up), 409, "FOLLOW_UP_NOT_OFFERED")
    opted = await nurse.put(
        f"/api/v1/rules/hospitals/{await hospital_id_of(platform, 'h1')}",
        json={"overrides": {"follow_up_valid_days": 3}, "reason": "开通复诊有效期"},
    )
    assert opted.status_code == 200, opted.text
    granted = await nurse.post(follow_up)
    assert granted.status_code == 200, granted.text
    assert granted.json() == {"validUntil": (SESSION_DAY + timedelta(days=3)).isoformat()}
    again = await nurse.post(f"{follow_up}/visits")
    assert again.status_code == 200, again.text
    assert again.json() == {"visits": 1}


async def test_staff_routes_refuse_citizen_tokens_and_the_wrong_staff(
    http: httpx.AsyncClient, platform: Platform, citizen: Citizen
) -> None:
    admin = await sign_in(http, platform, "chief", "authority_admin")
    desk = "/api/v1/hospital-desk/sessions/any/add-on-units"
    body = {"patientId": "p", "reason": "r"}
    for response in (
        await citizen.get("/api/v1/rules/region"),
        await citizen.put("/api/v1/rules/region", json={"changes": {}, "reason": "x"}),
        await citizen.get("/api/v1/rules/history"),
        await citizen.post(desk, json=body),
        await citizen.post("/api/v1/hospital-desk/bookings/b/follow-up"),
        await http.get("/api/v1/rules/region"),
    ):
        assert_refused(response, 401, "UNAUTHENTICATED")
    # the authority does not work a hospital's desk
    assert_refused(await admin.post(desk, json=body), 403, "STAFF_ROLE_REQUIRED")
    # and a staff token is no citizen's
    assert_refused(await admin.get("/api/v1/me/patients"), 401, "UNAUTHENTICATED")


async def test_a_citizen_asks_for_a_filing_and_books_once_the_hospital_has_filed_them(
    http: httpx.AsyncClient,
    platform: Platform,
    citizen: Citizen,
) -> None:
    spec = clinic()
    spec = msgspec.structs.replace(
        spec,
        policies=msgspec.structs.replace(
            spec.policies, filing_mode=FilingMode.REQUIRED_BEFORE_BOOKING
        ),
    )
    await publish_clinic(platform, spec)
    hospital_id = await hospital_id_of(platform, "h1")
    _, slots = await session_and_slots(platform, "h1")
    nurse = await sign_in(http, platform, "nurse", "hospital_staff", "h1")
    patient = await citizen.add_patient()
    filings = f"/api/v1/me/patients/{patient['id']}/filings"

    held = await citizen.hold(slots[0])
    assert held.status_code == 201, held.text
    booking_id = held.json()["id"]
    choose = f"/api/v1/bookings/{booking_id}/patient"
    assert_refused(
        await citizen.put(choose, json={"patientId": patient["id"]}), 403, "PATIENT_NOT_FILED"
    )

    asked = await citizen.post(filings, json={"hospitalId": hospital_id})
    assert asked.status_code == 201, asked.text
    assert asked.json()["status"] == "pending"
    assert_refused(
        await citizen.post(filings, json={"hospitalId": "nope"}), 404, "HOSPITAL_NOT_FOUND"
    )
    stranger = await Citizen.sign_up(http)
    assert_refused(
        await stranger.post(filings, json={"hospitalId": hospital_id}), 403, "PATIENT_NOT_OWNED"
    )
    assert_refused(await stranger.get(filings), 403, "PATIENT_NOT_OWNED")

    filed = await nurse.post(
        f"/api/v1/hospital-desk/filings/{asked.json()['id']}",
        json={"status": "filed", "hisPatientId": "MRN-100"},
    )
    assert filed.status_code == 200, filed.text
    listed = await citizen.get(filings)
    assert listed.status_code == 200, listed.text
    assert [(f["status"], f["hisPatientId"]) for f in listed.json()] == [("filed", "MRN-100")]
    chosen = await citizen.put(choose, json={"patientId": patient["id"]})
    assert chosen.status_code == 200, chosen.text

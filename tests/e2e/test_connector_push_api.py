"""The push API over real HTTP: OAuth2 client credentials through Authlib's client, tokens
scoped to one hospital, idempotency keys, schedules, capacity and add-on units, stops,
check-ins, filings, and schedule files (CSV and XLSX) checked row by row."""

from __future__ import annotations

import io

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client

from guahao.hospital_connectors.batch_files import template_csv, template_xlsx
from guahao.hospital_connectors.registry import SCOPES
from guahao.platform.schedules import HospitalSpec
from tests.fixtures.his_simulator import sim_hospital
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic

SCHEDULE = {
    "departments": [{"code": "xnk", "name": "心血管内科", "catalogCode": "03.04"}],
    "doctors": [{"code": "d001", "name": "王伟", "title": "chief", "departmentCode": "xnk"}],
    "sessions": [
        {
            "doctorCode": "d001",
            "date": "2026-03-04",
            "period": "morning",
            "category": "specialist",
            "feeCents": 3000,
            "externalId": "PB-1",
            "segments": [
                {
                    "start": "2026-03-04T08:00:00+08:00",
                    "end": "2026-03-04T08:30:00+08:00",
                    "capacity": 2,
                },
                {
                    "start": "2026-03-04T08:30:00+08:00",
                    "end": "2026-03-04T09:00:00+08:00",
                    "capacity": 2,
                },
            ],
        }
    ],
}


async def hospital_client(platform, base: str, spec: HospitalSpec) -> httpx.AsyncClient:
    """Onboard ``spec`` and return an HTTP client holding its access token (fetched by
    Authlib's OAuth2 client, as a vendor would)."""
    await platform.supply.register_hospital(spec)
    issued = await platform.connectors.registry.issue_client(spec.code, list(SCOPES))
    oauth = AsyncOAuth2Client(
        client_id=issued.client_id,
        client_secret=issued.client_secret,
        token_endpoint_auth_method="client_secret_basic",
    )
    token = await oauth.fetch_token(f"{base}/api/v1/oauth/token", grant_type="client_credentials")
    await oauth.aclose()
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == set(SCOPES)
    return httpx.AsyncClient(
        base_url=f"{base}/api/v1/hospital",
        headers={"authorization": f"Bearer {token['access_token']}"},
        timeout=15,
    )


async def test_the_token_endpoint_speaks_rfc_6749(platform, live_server):
    await platform.supply.register_hospital(sim_hospital())
    issued = await platform.connectors.registry.issue_client("sim1", list(SCOPES))
    async with httpx.AsyncClient(base_url=live_server) as http:
        wrong = await http.post(
            "/api/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(issued.client_id, "not-the-secret"),
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        assert "www-authenticate" in wrong.headers
        grant = await http.post(
            "/api/v1/oauth/token",
            data={"grant_type": "password"},
            auth=(issued.client_id, issued.client_secret),
        )
        assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
        scope = await http.post(
            "/api/v1/oauth/token",
            data={"grant_type": "client_credentials", "scope": "authority:admin"},
            auth=(issued.client_id, issued.client_secret),
        )
        assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")
        # a citizen-style request without a hospital token is refused
        anonymous = await http.post("/api/v1/hospital/check-ins", json={"bookingId": "x"})
        assert anonymous.status_code == 401


async def test_a_pushed_schedule_is_published_once_per_idempotency_key(platform, live_server):
    async with await hospital_client(platform, live_server, sim_hospital()) as api:
        first = await api.post("/schedules", json=SCHEDULE, headers={"Idempotency-Key": "s-1"})
        assert first.status_code == 200, first.text
        assert (first.json()["created"], first.json()["received"]) == (1, 1)

        again = await api.post("/schedules", json=SCHEDULE, headers={"Idempotency-Key": "s-1"})
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"

        changed = {**SCHEDULE, "sessions": [{**SCHEDULE["sessions"][0], "feeCents": 1}]}
        reused = await api.post("/schedules", json=changed, headers={"Idempotency-Key": "s-1"})
        assert (reused.status_code, reused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")

        missing = await api.post("/schedules", json=SCHEDULE)
        assert (missing.status_code, missing.json()["code"]) == (422, "VALIDATION_FAILED")

        naive = {
            **SCHEDULE,
            "sessions": [
                {
                    **SCHEDULE["sessions"][0],
                    "segments": [
                        {
                            "start": "2026-03-04T08:00:00",
                            "end": "2026-03-04T08:30:00",
                            "capacity": 1,
                        }
                    ],
                }
            ],
        }
        refused = await api.post("/schedules", json=naive, headers={"Idempotency-Key": "s-2"})
        assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")

        # capacity: a segment's whole capacity, then add-on units (加号)
        ref = {"externalId": "PB-1"}
        grow = await api.post(
            "/capacity",
            json={"session": ref, "segment": 0, "capacity": 5},
            headers={"Idempotency-Key": "c-1"},
        )
        assert grow.status_code == 200, grow.text
        add = await api.post(
            "/capacity", json={"session": ref, "addUnits": 2}, headers={"Idempotency-Key": "c-2"}
        )
        assert add.status_code == 200, add.text
        assert "2 units added (4)" in add.json()["result"]


async def test_one_hospital_can_never_read_or_change_another(platform, live_server):
    other_slots = await publish_clinic(platform, clinic(code="h2"))
    _, foreign_booking, _ = await confirmed_booking(platform, other_slots[0])
    async with await hospital_client(platform, live_server, sim_hospital()) as api:
        check_in = await api.post(
            "/check-ins", json={"bookingId": foreign_booking}, headers={"Idempotency-Key": "x-1"}
        )
        assert (check_in.status_code, check_in.json()["code"]) == (404, "BOOKING_NOT_FOUND")
        filing = await api.post(
            "/filings",
            json={"bookingId": foreign_booking, "medicalRecordNo": "M1"},
            headers={"Idempotency-Key": "x-2"},
        )
        assert filing.status_code == 404
        stop = await api.post(
            "/session-stops",
            json={"session": {"doctorCode": "d1", "date": "2026-03-04", "period": "morning"}},
            headers={"Idempotency-Key": "x-3"},
        )
        assert (stop.status_code, stop.json()["code"]) == (404, "DOCTOR_NOT_FOUND")
        listed = await api.get("/bookings", params={"date": "2026-03-04"})
        assert listed.status_code == 200
        assert listed.json() == []
    assert (await platform.bookings.get(foreign_booking)).status.value == "confirmed"


async def test_stop_check_in_and_filing_of_its_own_bookings(platform, live_server):
    async with await hospital_client(platform, live_server, clinic(code="h1")) as api:
        slots = await publish_clinic(platform, clinic(code="h1"))
        _, arriving, _ = await confirmed_booking(platform, slots[0])
        filed = await api.post(
            "/filings",
            json={"bookingId": arriving, "medicalRecordNo": "MR1", "hisAppointmentId": "A9"},
            headers={"Idempotency-Key": "f-1"},
        )
        assert filed.status_code == 200, filed.text
        arrived = await api.post(
            "/check-ins", json={"bookingId": arriving}, headers={"Idempotency-Key": "a-1"}
        )
        assert arrived.status_code == 200, arrived.text
        listed = (await api.get("/bookings", params={"date": "2026-03-04"})).json()
        assert [(b["bookingId"], b["status"], b["medicalRecordNo"]) for b in listed] == [
            (arriving, "checked_in", "MR1")
        ]
        below = await api.post(
            "/capacity",
            json={
                "session": {"doctorCode": "d1", "date": "2026-03-04", "period": "morning"},
                "segment": 0,
                "capacity": 0,
            },
            headers={"Idempotency-Key": "c-0"},
        )
        assert (below.status_code, below.json()["code"]) == (409, "CAPACITY_BELOW_TAKEN")


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
async def test_schedule_files_import_everything_or_nothing(platform, live_server, kind):
    async with await hospital_client(platform, live_server, sim_hospital()) as api:
        await api.post(
            "/schedules", json={**SCHEDULE, "sessions": []}, headers={"Idempotency-Key": "staff"}
        )
        template = await api.get("/schedule-template", params={"format": kind})
        assert template.status_code == 200
        good_rows = [
            ["d001", "2026-03-05", "下午", "专家", "30.00", "13:30", "14:00", "3", "F-1"],
            ["d001", "2026-03-05", "下午", "专家", "30.00", "14:00", "14:30", "3", "F-1"],
        ]
        bad_rows = [
            *good_rows,
            ["d999", "2026-03-05", "上午", "普通", "5", "08:00", "08:30", "1", ""],
            ["d001", "2026-03-06", "上午", "普通", "5.555", "09:00", "08:30", "x", ""],
        ]
        bad = await api.post(
            "/schedule-files",
            params={"format": kind},
            content=_file(kind, bad_rows),
            headers={"Idempotency-Key": f"{kind}-bad"},
        )
        assert (bad.status_code, bad.json()["code"]) == (422, "BATCH_FILE_INVALID")
        errors = [(e["row"], e["column"], e["code"]) for e in bad.json()["detail"]["errors"]]
        assert errors == [
            (5, "doctor_code", "DOCTOR_NOT_FOUND"),
            (6, "capacity", "VALIDATION_FAILED"),
            (6, "fee_yuan", "VALIDATION_FAILED"),
        ]
        assert all(e["zh"] and e["en"] for e in bad.json()["detail"]["errors"])
        nothing = await api.get("/bookings", params={"date": "2026-03-05"})
        assert nothing.json() == []

        good = await api.post(
            "/schedule-files",
            params={"format": kind},
            content=_file(kind, good_rows),
            headers={"Idempotency-Key": f"{kind}-good"},
        )
        assert good.status_code == 200, good.text
        assert good.json()["created"] == 1


def _file(kind: str, rows: list[list[str]]) -> bytes:
    if kind == "csv":
        head = "\n".join(template_csv().splitlines()[:2])  # keys and Chinese headings
        return (head + "\n" + "\n".join(",".join(r) for r in rows)).encode()
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(template_xlsx()))
    sheet = book.active
    assert sheet is not None
    sheet.delete_rows(3)  # drop the example row, keep keys and headings
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_a_revoked_clients_tokens_stop_working_at_once(platform, live_server):
    """Revocation does not wait for the hour a token lives: the next request is refused."""
    async with await hospital_client(platform, live_server, clinic(code="h1")) as hospital:
        before = await hospital.get("/schedule-template")
        assert before.status_code == 200, before.text
        (client,) = await platform.connectors.registry.clients("h1")
        await platform.connectors.registry.revoke_client(client.client_id)
        after = await hospital.get("/schedule-template")
        assert after.status_code == 401, after.text
        assert after.json()["code"] == "UNAUTHENTICATED"


async def test_guessing_client_secrets_is_cut_off_per_client(platform, live_server):
    """Each guess costs the platform a scrypt: after 20 a minute the client id answers 429
    before any hashing, while another hospital's client still signs in."""
    await platform.supply.register_hospital(clinic(code="h1"))
    target = await platform.connectors.registry.issue_client("h1", list(SCOPES))
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        codes = [
            (
                await http.post(
                    "/api/v1/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(target.client_id, f"guess-{n}"),
                )
            ).status_code
            for n in range(22)
        ]
    assert codes[:20] == [401] * 20
    assert codes[20:] == [429, 429]
    other = await hospital_client(platform, live_server, clinic(code="h2"))
    await other.aclose()

"""The one idempotency mechanism for every signed-in writer: hospital systems on the push API
(where a key is required) and staff, beside the citizens of ``test_idempotency_keys.py``.
Through the ASGI app in this event loop, with real Redis and the real token issuers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from guahao.bootstrap import Platform
from guahao.platform.schedules import HospitalSpec
from guahao.web.app import create_app
from tests.fixtures.platforms import clinic, settings_for

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
                }
            ],
        }
    ],
}


@pytest.fixture
async def app(
    sqlite_platform: Platform, tmp_path: Path, sqlite_url: str, redis_url: str
) -> Litestar:
    app = create_app(settings_for(tmp_path, sqlite_url, redis_url), platform=sqlite_platform)
    app.state.platform = sqlite_platform  # what the lifespan does; ASGITransport runs none
    return app


@pytest.fixture
async def http(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def hospital_auth(app: Litestar, platform: Platform, spec: HospitalSpec) -> dict[str, str]:
    """A registered hospital's bearer token, signed by the app's own hospital token issuer for
    a client the registry issued (the guard refuses tokens of unknown or revoked clients)."""
    await platform.supply.register_hospital(spec)
    issued = await platform.connectors.registry.issue_client(spec.code, ["hospital:push"])
    token = app.state.hospital_tokens.issue(spec.code, issued.client_id, ["hospital:push"])
    return {"authorization": f"Bearer {token}"}


def push(
    http: httpx.AsyncClient, auth: dict[str, str], key: str | None, body: Any = SCHEDULE
) -> Any:
    headers = dict(auth) | ({"Idempotency-Key": key} if key is not None else {})
    return http.post("/api/v1/hospital/schedules", json=body, headers=headers)


async def test_a_hospital_write_without_a_key_is_refused_before_it_runs(
    app: Litestar, http: httpx.AsyncClient, sqlite_platform: Platform
) -> None:
    auth = await hospital_auth(app, sqlite_platform, clinic(code="h1"))
    missing = await push(http, auth, None)
    assert (missing.status_code, missing.json()["code"]) == (422, "VALIDATION_FAILED")
    assert missing.json()["detail"]["field"] == "Idempotency-Key"
    too_long = await push(http, auth, "k" * 101)
    assert (too_long.status_code, too_long.json()["code"]) == (422, "VALIDATION_FAILED")
    first = await push(http, auth, "s-1")
    assert first.json()["created"] == 1  # nothing was published by the refused writes


async def test_a_write_without_a_valid_token_is_refused_by_the_guard_not_the_key_check(
    http: httpx.AsyncClient,
) -> None:
    anonymous = await push(http, {}, None)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "UNAUTHENTICATED")


async def test_two_hospitals_may_use_the_same_key(
    app: Litestar, http: httpx.AsyncClient, sqlite_platform: Platform
) -> None:
    first = await push(http, await hospital_auth(app, sqlite_platform, clinic(code="h1")), "k")
    other = await push(http, await hospital_auth(app, sqlite_platform, clinic(code="h2")), "k")
    assert first.status_code == other.status_code == 200, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["created"] == 1  # its own session, not the first hospital's answer


async def test_concurrent_repeats_of_a_push_act_once(
    app: Litestar, http: httpx.AsyncClient, sqlite_platform: Platform
) -> None:
    auth = await hospital_auth(app, sqlite_platform, clinic(code="h1"))
    answers = await asyncio.gather(*(push(http, auth, "same") for _ in range(4)))
    created = [a.json()["created"] for a in answers if a.status_code == 200]
    in_progress = [a for a in answers if a.status_code == 409]
    assert all(a.json()["code"] == "REQUEST_IN_PROGRESS" for a in in_progress)
    assert created
    assert set(created) == {1}
    fresh = [a for a in answers if a.status_code == 200 and "idempotent-replayed" not in a.headers]
    assert len(fresh) == 1


async def test_a_staff_write_is_replayed_not_repeated(
    http: httpx.AsyncClient, sqlite_platform: Platform
) -> None:
    await sqlite_platform.staff.create(
        username="officer1", password="staff-password-1", role="authority_admin"
    )
    signed_in = await http.post(
        "/api/v1/staff/token", json={"username": "officer1", "password": "staff-password-1"}
    )
    auth = {"authorization": f"Bearer {signed_in.json()['accessToken']}"}
    change = {"changes": {"limits.per_patient_day": 2}, "reason": "号源紧张"}
    headers = auth | {"Idempotency-Key": "rules-1"}
    first = await http.put("/api/v1/rules/region", json=change, headers=headers)
    again = await http.put("/api/v1/rules/region", json=change, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() == {"version": 1}  # one new version, not two
    other = {**change, "reason": "另一个原因"}
    reused = await http.put("/api/v1/rules/region", json=other, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")

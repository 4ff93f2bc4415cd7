"""Idempotency keys on every write, through the ASGI app in this event loop (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.web.app import create_app
from tests.e2e.support import register
from tests.fixtures.platforms import settings_for


@pytest.fixture
async def client(
    sqlite_platform: Platform, tmp_path: Path, sqlite_url: str, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(tmp_path, sqlite_url, redis_url), platform=sqlite_platform)
    app.state.platform = sqlite_platform  # what the lifespan does; ASGITransport runs none
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        await register(c, "13800000009", "password9")
        token = (
            await c.post(
                "/api/v1/auth/token", json={"phone": "13800000009", "password": "password9"}
            )
        ).json()["accessToken"]
        c.headers["authorization"] = f"Bearer {token}"
        yield c


PATIENT = {"name": "李四", "documentType": "resident_id", "documentNumber": "440524188001010014"}


async def test_a_repeated_write_replays_the_first_answer_and_acts_once(client) -> None:  # type: ignore[no-untyped-def]
    first = await client.post(
        "/api/v1/me/patients", json=PATIENT, headers={"Idempotency-Key": "p1"}
    )
    again = await client.post(
        "/api/v1/me/patients", json=PATIENT, headers={"Idempotency-Key": "p1"}
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await client.get("/api/v1/me/patients")).json()) == 1


async def test_a_key_reused_for_another_request_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    await client.post("/api/v1/me/patients", json=PATIENT, headers={"Idempotency-Key": "p2"})
    other = {**PATIENT, "name": "王五"}
    reused = await client.post("/api/v1/me/patients", json=other, headers={"Idempotency-Key": "p2"})
    assert reused.status_code == 409
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reused.json()["message"]["zh"]
    assert len((await client.get("/api/v1/me/patients")).json()) == 1


async def test_a_refusal_is_not_remembered_so_the_retry_runs_again(client) -> None:  # type: ignore[no-untyped-def]
    bad = {**PATIENT, "documentNumber": "110105194912310021"}
    first = await client.post("/api/v1/me/patients", json=bad, headers={"Idempotency-Key": "p3"})
    again = await client.post("/api/v1/me/patients", json=bad, headers={"Idempotency-Key": "p3"})
    assert first.status_code == again.status_code == 422
    assert again.json()["code"] == "ID_NUMBER_CHECKSUM_MISMATCH"
    assert "idempotent-replayed" not in again.headers
    fixed = await client.post("/api/v1/me/patients", json=bad, headers={"Idempotency-Key": "p3"})
    assert fixed.status_code == 422  # still refused on its merits, not replayed


async def test_writes_without_a_key_are_not_remembered(client) -> None:  # type: ignore[no-untyped-def]
    await client.post("/api/v1/me/patients", json=PATIENT)
    second = await client.post("/api/v1/me/patients", json=PATIENT)
    # the same document twice: the domain refuses, not a replay
    assert second.status_code == 409
    assert second.json()["code"] == "PATIENT_ALREADY_ADDED"
    assert "idempotent-replayed" not in second.headers

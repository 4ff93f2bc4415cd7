"""Operations: ``GET /metrics`` and the structured request logs over a real booking journey,
with no personal data (identity numbers, phones, names) in either."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import httpx
import pytest

from guahao.bootstrap import Platform
from tests.e2e.support import VALID_ID, Citizen, find_doctor
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    manual_clock,
    publish_clinic,
)

RELEASE_DAY = SESSION_DAY - timedelta(days=7)
SUBMIT = "/api/v1/bookings/{booking_id}/submit"


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 if absent)."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scraper(platform: Platform) -> dict[str, str]:
    """The headers Prometheus sends: the configured (here generated) metrics token."""
    return {"Authorization": f"Bearer {platform.settings.secret('metrics_token')}"}


async def test_metrics_are_refused_without_the_scrapers_token(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    await http.get("/health")
    token = platform.settings.secret("metrics_token")
    for headers in (
        {},
        {"Authorization": "Bearer " + "x" * len(token)},
        {"Authorization": "Bearer " + token[:-1]},
        {"Authorization": "Basic " + token},
        {"Authorization": token},
    ):
        refused = await http.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["code"] == "METRICS_TOKEN_INVALID"
        assert "guahao_http_requests_total" not in refused.text
    allowed = await http.get("/metrics", headers=scraper(platform))
    assert allowed.status_code == 200
    assert sample(allowed.text, "guahao_http_requests_total", route="/metrics", status="401") == 5


async def test_a_booking_journey_is_measured_and_logged_without_personal_data(
    platform: Platform,
    http: httpx.AsyncClient,
    citizen: Citizen,
    sign_up: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # the most an operator runs; DEBUG of drivers prints SQL
    await publish_clinic(platform)
    manual_clock(platform).set(at_local(RELEASE_DAY, 8, 5))
    name = "欧阳明月"
    patient = await citizen.add_patient(name, VALID_ID)
    doctor_id = await find_doctor(http, "h1", "心内科")
    sessions = (
        await http.get(
            f"/api/v1/doctors/{doctor_id}/availability",
            params={"from": SESSION_DAY.isoformat(), "to": SESSION_DAY.isoformat()},
        )
    ).json()
    slot = next(s for s in sessions[0]["slots"] if s["available"] > 0)
    booking = await citizen.confirmed_booking(slot["id"], patient["id"])
    refused = await citizen.hold("no-such-slot")
    assert refused.status_code == 404
    await platform.dispatcher.dispatch_pending()

    traced = await http.get("/health", headers={"X-Request-ID": "trace-42"})
    assert traced.headers["x-request-id"] == "trace-42"
    made = (await http.get("/health")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)

    exposition = await http.get("/metrics", headers=scraper(platform))
    assert exposition.status_code == 200
    assert exposition.headers["content-type"].startswith("text/plain")
    metrics = exposition.text
    assert (
        sample(
            metrics,
            "guahao_http_requests_total",
            route="/api/v1/holds",
            method="POST",
            status="201",
        )
        == 1
    )
    assert sample(metrics, "guahao_hold_outcomes_total", outcome="granted") == 1
    assert sample(metrics, "guahao_hold_outcomes_total", outcome="SLOT_NOT_FOUND") == 1
    assert (
        sample(
            metrics,
            "guahao_http_request_duration_seconds_count",
            route=SUBMIT,
        )
        == 1
    )
    assert "guahao_outbox_pending_events" in metrics
    assert (
        sample(metrics, "guahao_outbox_subscriber_backlog", subscriber="supply-demand-rollups") >= 0
    )
    assert "guahao_outbox_subscriber_parked" in metrics
    assert "guahao_outbox_subscriber_lag_seconds" in metrics
    assert 'guahao_job_queue_depth{state="queued"}' in metrics
    assert booking["id"] not in metrics  # routes by template, never the raw path

    lines = [r.getMessage() for r in caplog.records]
    requests = [json.loads(m) for m in lines if m.startswith("{") and '"event": "request"' in m]
    assert {r["route"] for r in requests} >= {"/api/v1/holds", "/health", "/metrics"}
    assert any(r["request_id"] == "trace-42" for r in requests)
    logged = "\n".join(lines) + caplog.text
    for secret in (VALID_ID, citizen.phone, name, VALID_ID[-4:] + "\n"):
        assert secret not in metrics
        assert secret not in logged

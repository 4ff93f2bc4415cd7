"""Granted holds answered before the framework (``FrontGrants``), exactly as the holds route
answers them.

Two servers on one platform: the app as ``create_app`` builds it and the same app with the
lean grant path switched off (its holds go through Litestar's route). Two citizens make the
same journey, one on each server: a grant, its repeat, the key reused for another slot, a
second hold while the first stands, a slot that does not exist, a client over the limit. Each
pair of answers must agree in status, headers (but ``Date``) and body (but the booking's own
id), and so must the request log lines and ``/metrics``; the lean path must have answered
the first server's holds itself.
"""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar

from guahao.bootstrap import Platform
from guahao.web.app import create_app
from guahao.web.front_grants import FrontGrants
from tests.e2e.support import Citizen
from tests.e2e.test_front_answers import (
    RELEASE_DAY,
    front_of,
    limited,
    log_lines,
    same_second,
    sent,
    served,
)
from tests.e2e.test_metrics_and_logs import sample, scraper
from tests.fixtures.platforms import at_local, clinic, manual_clock, publish_clinic


def grants_of(app: Litestar) -> FrontGrants:
    grants = front_of(app).grants
    assert grants is not None
    return grants


@pytest.fixture
async def servers(platform: Platform) -> AsyncIterator[tuple[Litestar, Any, Any]]:
    """(the app, a client of it, a client of the same app with the lean grants off)."""
    app = create_app(platform.settings, platform=platform)
    framework = create_app(platform.settings, platform=platform)
    front_of(framework).grants = None
    async with served(app) as fast, served(framework) as plain:
        yield app, fast, plain


def comparable(raw: bytes, headers: list[tuple[bytes, bytes]], ids: dict[str, str]) -> Any:
    """The decoded body with each citizen's booking ids named by their role."""
    if (b"content-encoding", b"gzip") in headers:
        raw = gzip.decompress(raw)
    text = raw.decode()
    for booking_id, role in ids.items():
        text = text.replace(booking_id, role)
    return json.loads(text)


async def test_the_lean_path_answers_holds_exactly_as_the_route_does(
    platform: Platform,
    servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, fast, plain = servers
    # a long name: the answer passes the compression's minimum, so a client asking gets gzip
    hospital = msgspec.structs.replace(clinic(units=4), name="北京协和医学院附属第一人民医院" * 3)
    slots = await publish_clinic(platform, hospital)
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    one, other = await Citizen.sign_up(fast), await Citizen.sign_up(plain)
    key = f"same-{uuid.uuid4().hex}"  # the same key for both: keys are per account
    ids: dict[str, str] = {}
    caplog.set_level(logging.INFO, logger="guahao.requests")
    caplog.clear()
    journey: list[tuple[str, str, dict[str, str]]] = [
        ("granted", slots[0], {"idempotency-key": key}),
        ("replayed", slots[0], {"idempotency-key": key}),
        ("replayed, gzipped", slots[0], {"idempotency-key": key, "accept-encoding": "gzip"}),
        ("key reused for another slot", slots[1], {"idempotency-key": key}),
        ("held elsewhere", slots[1], {}),
        ("no such slot", "NO-SUCH-SLOT", {}),
    ]
    grants = grants_of(app)
    answered = grants.answered
    gzipped = 0
    for step, slot_id, extra in journey:
        body = json.dumps({"slotId": slot_id}).encode()
        request_id = f"grant-{uuid.uuid4().hex[:8]}"
        answers = []
        for citizen, http in ((one, fast), (other, plain)):
            headers = _hold_headers(citizen) | extra | {"x-request-id": request_id}
            status, kept, raw = await sent(http, "POST", "/api/v1/holds", headers, body)
            if step == "granted":
                assert status == 201, raw
                ids[json.loads(raw)["id"]] = "(the citizen's booking)"
            assert dict(kept)[b"content-length"] == str(len(raw)).encode()
            if (b"content-encoding", b"gzip") in kept:  # two bookings' ids gzip apart by a byte
                kept = [(k, b"(gzipped)" if k == b"content-length" else v) for k, v in kept]
            answers.append((status, kept, comparable(raw, kept, ids), log_lines(caplog)))
        (f_status, f_headers, f_body, f_lines), (p_status, p_headers, p_body, p_lines) = answers
        assert (f_status, f_headers) == (p_status, p_headers), step
        assert f_body == p_body, step
        assert f_lines == p_lines, step
        assert len(f_lines) == 1, step
        gzipped += (b"content-encoding", b"gzip") in f_headers
    assert gzipped == 1  # the repeat that asked for it
    assert grants.answered == answered + len(journey)  # the lean path answered them all
    statuses = [
        sample(
            (await http.get("/metrics", headers=scraper(platform))).text,
            "guahao_http_requests_total",
            route="/api/v1/holds",
            status=status,
        )
        for http in (fast, plain)
        for status in ("201", "409", "404")
    ]
    assert statuses[:3] == statuses[3:] == [3, 2, 1]
    for outcome in ("granted", "IDEMPOTENCY_KEY_REUSED", "HOLD_ALREADY_ACTIVE", "SLOT_NOT_FOUND"):
        f_text = (await fast.get("/metrics", headers=scraper(platform))).text
        p_text = (await plain.get("/metrics", headers=scraper(platform))).text
        found = sample(f_text, "guahao_hold_outcomes_total", outcome=outcome)
        assert found == sample(p_text, "guahao_hold_outcomes_total", outcome=outcome) > 0, outcome

    # each citizen over the hold limit: 429 with Retry-After from both
    body = json.dumps({"slotId": slots[2]}).encode()
    before = [await limited(http, platform) for http in (fast, plain)]
    refused = []
    for citizen, http in ((one, fast), (other, plain)):
        for _ in range(60):
            headers = _hold_headers(citizen) | {"x-request-id": "compare-limited"}
            status, headers_sent, raw = await sent(http, "POST", "/api/v1/holds", headers, body)
            if status == 429:
                refused.append((status, same_second(headers_sent), json.loads(raw)))
                break
    assert len(refused) == 2
    assert refused[0][:2] == refused[1][:2]
    assert refused[0][2]["code"] == refused[1][2]["code"] == "RATE_LIMITED"
    after = [await limited(http, platform) for http in (fast, plain)]
    assert [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)] == [
        (1, 1),
        (1, 1),
    ]
    # the booking the lean path granted is the route's: recorded, held, the citizen's own
    booking = await one.booking(next(iter(ids)))
    assert booking["status"] == "held"


async def test_what_the_lean_path_cannot_vouch_for_goes_to_the_route(
    platform: Platform, servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    app, fast, _plain = servers
    slots = await publish_clinic(platform, clinic(units=2))
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    citizen = await Citizen.sign_up(fast)
    grants = grants_of(app)
    answered = grants.answered
    for bad in (b'{"slotId": 7}', b'{"slot": "x"}', b"not json", b'{"slotId": "a", "x": 1}'):
        status, _h, raw = await sent(fast, "POST", "/api/v1/holds", _hold_headers(citizen), bad)
        assert status == 422, raw
        assert json.loads(raw)["code"] == "VALIDATION_FAILED"
    forged = {k: v for k, v in _hold_headers(citizen).items() if k.lower() != "authorization"}
    forged["authorization"] = "Bearer not.a.token"
    status, _h, _raw = await sent(fast, "POST", "/api/v1/holds", forged, b'{"slotId": "a"}')
    assert status == 401
    long_key = _hold_headers(citizen) | {"idempotency-key": "k" * 101}
    status, _h, _raw = await sent(fast, "POST", "/api/v1/holds", long_key, b'{"slotId": "a"}')
    assert status == 422
    assert grants.answered == answered  # all of them the framework's
    granted = await citizen.hold(slots[0])
    assert granted.status_code == 201, granted.text
    assert grants.answered == answered + 1


def _hold_headers(citizen: Citizen) -> dict[str, str]:
    return citizen.auth | {
        "idempotency-key": uuid.uuid4().hex,
        "content-type": "application/json",
        "x-device-id": f"phone-{citizen.account_id}",
        "accept-encoding": "identity",  # httpx asks for gzip unless told
    }

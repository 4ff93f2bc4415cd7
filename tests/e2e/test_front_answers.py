"""The crowd's sold-out holds and remembered reads, answered before the framework, exactly as
the framework answers them.

Two servers on one platform: the app as ``create_app`` builds it (with ``FrontAnswers``) and
the same app with the front taken off (``framework_only``). The same requests go to both;
status, headers (but ``Date``), decoded bodies, ``/metrics`` and the request log lines must
be the same, and the front must have answered them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar

from guahao.bootstrap import Platform
from guahao.platform.inventory.redis_inventory import RedisInventory
from guahao.web.app import create_app
from guahao.web.front_answers import FrontAnswers
from tests.e2e.support import Citizen, assert_refused, find_doctor
from tests.e2e.test_metrics_and_logs import sample, scraper
from tests.fixtures.platforms import SESSION_DAY, at_local, clinic, manual_clock, publish_clinic

RELEASE_DAY = SESSION_DAY - timedelta(days=7)
SEARCH = "/api/v1/search?q=%E5%BF%83%E5%86%85%E7%A7%91&kind=department&kind=doctor&pageSize=10"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="front-answers-server")
    try:
        async with asyncio.timeout(15):
            while not server.started:  # noqa: ASYNC110 (uvicorn's flag)
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


def front_of(app: Litestar) -> FrontAnswers:
    front = app.asgi_handler
    assert isinstance(front, FrontAnswers)
    return front


def framework_only(platform: Platform) -> Litestar:
    """The same app with the front taken off: every request through Litestar."""
    app = create_app(platform.settings, platform=platform)
    app.asgi_handler = front_of(app).app
    return app


@pytest.fixture
async def servers(platform: Platform) -> AsyncIterator[tuple[Litestar, Any, Any]]:
    """(the app with its front, a client of it, a client of the framework-only app)."""
    app = create_app(platform.settings, platform=platform)
    async with served(app) as fast, served(framework_only(platform)) as plain:
        yield app, fast, plain


async def sold_out_slot(platform: Platform, http: httpx.AsyncClient) -> tuple[str, str]:
    """A slot of one unit at the release, held by a first citizen (sold out), and the next
    slot of the session (open)."""
    slot_ids = await publish_clinic(platform, clinic(units=1))
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    first = await Citizen.sign_up(http)
    assert (await first.hold(slot_ids[0])).status_code == 201
    inventory = platform.ports.inventory
    assert isinstance(inventory, RedisInventory)
    async with asyncio.timeout(5):
        await inventory.sold_out.subscribed()
    return slot_ids[0], slot_ids[1]


async def sent(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers as sent (but ``Date``) and the body as sent (not un-gzipped)."""
    content = body if method == "POST" else None
    async with http.stream(method, path, headers=headers, content=content) as answer:
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
        kept = [(k.lower(), v) for k, v in answer.headers.raw if k.lower() != b"date"]
        return answer.status_code, kept, raw


def decoded(headers: list[tuple[bytes, bytes]], raw: bytes) -> Any:
    if (b"content-encoding", b"gzip") in headers:
        raw = gzip.decompress(raw)
    body = json.loads(raw)
    if isinstance(body, dict) and "hold_id" in body.get("detail", {}):
        body["detail"]["hold_id"] = "(new per refusal)"
    return body


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = []
    for record in caplog.records:
        if record.name == "guahao.requests":
            line = json.loads(record.getMessage())
            for varying in ("ms", "timestamp"):
                line.pop(varying)
            lines.append(line)
    caplog.clear()
    return lines


async def test_the_front_answers_exactly_as_the_framework_does(
    platform: Platform,
    servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, fast, plain = servers
    slot_id, _open = await sold_out_slot(platform, fast)
    await platform.search.reindex()
    doctor_id = await find_doctor(fast, "h1", "心内科")
    citizen = await Citizen.sign_up(fast)
    hold = json.dumps({"slotId": slot_id}).encode()
    for http in (fast, plain):  # each server verifies the token once (the guard's answer)
        await sent(http, "POST", "/api/v1/holds", _hold_headers(citizen), hold)
        for path in (f"/api/v1/doctors/{doctor_id}/availability", SEARCH):  # remembered
            assert (await http.get(path)).status_code == 200
    caplog.set_level(logging.INFO, logger="guahao.requests")
    caplog.clear()
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("POST", "/api/v1/holds", _hold_headers(citizen)),
        ("GET", f"/api/v1/doctors/{doctor_id}/availability", {"accept-encoding": "gzip"}),
        ("GET", f"/api/v1/doctors/{doctor_id}/availability", {"accept-encoding": "identity"}),
        ("GET", SEARCH, {"accept-encoding": "gzip, deflate, br"}),
        ("GET", SEARCH, {"accept-encoding": "identity"}),
    ]
    answered = front_of(app).answered
    gzipped = 0
    for method, path, headers in requests:
        headers = headers | {"x-request-id": f"compare-{uuid.uuid4().hex[:8]}"}
        f_status, f_headers, f_raw = await sent(fast, method, path, headers, hold)
        f_lines = log_lines(caplog)
        p_status, p_headers, p_raw = await sent(plain, method, path, headers, hold)
        p_lines = log_lines(caplog)
        assert (f_status, f_headers) == (p_status, p_headers), (method, path, headers)
        assert decoded(f_headers, f_raw) == decoded(p_headers, p_raw), (method, path)
        assert f_lines == p_lines, (f_lines, p_lines)
        assert len(f_lines) == 1
        gzipped += (b"content-encoding", b"gzip") in f_headers
    assert front_of(app).answered == answered + len(requests)  # all five answered up front
    assert gzipped == 2  # the availability and the search that asked for it

    f_metrics = (await fast.get("/metrics", headers=scraper(platform))).text
    p_metrics = (await plain.get("/metrics", headers=scraper(platform))).text
    for name, labels in (
        ("guahao_http_requests_total", {"route": "/api/v1/holds", "status": "409"}),
        ("guahao_hold_outcomes_total", {"outcome": "SLOT_SOLD_OUT"}),
        (
            "guahao_http_requests_total",
            {"route": "/api/v1/doctors/{doctor_id}/availability", "status": "200"},
        ),
        ("guahao_http_requests_total", {"route": "/api/v1/search", "status": "200"}),
        ("guahao_http_request_duration_seconds_count", {"route": "/api/v1/search"}),
    ):
        assert sample(f_metrics, name, **labels) == sample(p_metrics, name, **labels) > 0, name
    # a citizen over the hold limit: 429 with Retry-After, from the front as from the route
    for _ in range(60):
        status, _h, _b = await sent(fast, "POST", "/api/v1/holds", _hold_headers(citizen), hold)
        if status == 429:
            break
    assert status == 429
    answered = front_of(app).answered
    before = [await limited(http, platform) for http in (fast, plain)]
    headers = _hold_headers(citizen) | {"x-request-id": "compare-limited"}
    f_status, f_headers, f_raw = await sent(fast, "POST", "/api/v1/holds", headers, hold)
    p_status, p_headers, p_raw = await sent(plain, "POST", "/api/v1/holds", headers, hold)
    assert (f_status, same_second(f_headers)) == (p_status, same_second(p_headers))
    assert b"retry-after" in dict(f_headers)
    assert decoded(f_headers, f_raw)["code"] == decoded(p_headers, p_raw)["code"] == "RATE_LIMITED"
    assert front_of(app).answered == answered + 1
    after = [await limited(http, platform) for http in (fast, plain)]
    assert [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)] == [
        (1, 1),
        (1, 1),
    ]


async def limited(http: httpx.AsyncClient, platform: Platform) -> tuple[float, float]:
    """(429 answers to holds, RATE_LIMITED hold outcomes) in a server's ``/metrics``."""
    text = (await http.get("/metrics", headers=scraper(platform))).text
    return (
        sample(text, "guahao_http_requests_total", route="/api/v1/holds", status="429"),
        sample(text, "guahao_hold_outcomes_total", outcome="RATE_LIMITED"),
    )


def same_second(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` may tick over a second between the two answers."""
    return [(k, b"(seconds)" if k == b"retry-after" else v) for k, v in headers]


def _hold_headers(citizen: Citizen) -> dict[str, str]:
    return citizen.auth | {
        "idempotency-key": uuid.uuid4().hex,
        "content-type": "application/json",
        "x-device-id": "phone-1",
    }


async def test_a_unit_given_back_is_granted_at_once_through_the_fall_through(
    platform: Platform, servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    app, fast, _plain = servers
    slot_ids = await publish_clinic(platform, clinic(units=1))
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    first, second = await Citizen.sign_up(fast), await Citizen.sign_up(fast)
    held = await first.hold(slot_ids[0])
    assert held.status_code == 201
    assert_refused(await second.hold(slot_ids[0]), 409, "SLOT_SOLD_OUT")  # Redis's answer
    answered = front_of(app).answered
    local = assert_refused(await second.hold(slot_ids[0]), 409, "SLOT_SOLD_OUT")
    assert local["detail"]["answered"] == "locally"
    assert front_of(app).answered == answered + 1

    inventory = platform.ports.inventory
    assert isinstance(inventory, RedisInventory)
    heard = inventory.sold_out.announcements
    assert (await first.post(f"/api/v1/bookings/{held.json()['id']}/leave")).status_code == 200
    async with asyncio.timeout(2):
        while inventory.sold_out.announcements <= heard:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.001)
    started = time.perf_counter()
    granted = await second.hold(slot_ids[0])
    assert granted.status_code == 201, granted.text
    assert time.perf_counter() - started < 2
    assert front_of(app).answered == answered + 2  # the grant was the lean path's (front_grants)


async def test_what_the_front_cannot_vouch_for_falls_through(
    platform: Platform, servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    app, fast, _plain = servers
    slot_id, open_slot = await sold_out_slot(platform, fast)
    front = front_of(app)
    front.grants = None  # grants through the route: this test counts what the front refuses
    citizen = await Citizen.sign_up(fast)
    # Redis's first refusal (through the route) tells the view the slot is sold out
    assert_refused(await citizen.hold(slot_id), 409, "SLOT_SOLD_OUT")
    answered = front.answered

    forged = await fast.post(
        "/api/v1/holds",
        json={"slot_id": slot_id},
        headers={"authorization": "Bearer not.a.token", "idempotency-key": "forged"},
    )
    assert_refused(forged, 401, "UNAUTHENTICATED")  # the guard's answer
    assert front.answered == answered
    bad_key = await citizen.hold(slot_id, key="k" * 101)
    assert bad_key.status_code == 422
    assert front.answered == answered
    too_large = await citizen.post(
        "/api/v1/holds",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"idempotency-key": "big", "content-type": "application/json"},
    )
    assert_refused(too_large, 413, "REQUEST_BODY_TOO_LARGE")
    assert front.answered == answered
    opened = await citizen.hold(open_slot)
    assert opened.status_code == 201, opened.text
    assert front.answered == answered
    # and the same citizen on the sold-out slot: answered up front
    assert_refused(await citizen.hold(slot_id), 409, "SLOT_SOLD_OUT")
    assert front.answered == answered + 1
    newcomer = await Citizen.sign_up(fast)  # a token first seen on a sold-out hold
    assert_refused(await newcomer.hold(slot_id), 409, "SLOT_SOLD_OUT")
    assert front.answered == answered + 2
    answered += 1

    doctor_id = await find_doctor(fast, "h1", "心内科")
    availability = f"/api/v1/doctors/{doctor_id}/availability"
    assert (await fast.get(availability)).status_code == 200  # not remembered yet: the route
    assert front.answered == answered + 1
    assert (await fast.get(availability)).status_code == 200
    assert front.answered == answered + 2
    for unread in ("?from=2026-3-1", "?when=today", "?from=2026-03-01&from=2026-03-02"):
        assert (await fast.get(availability + unread)).status_code in (200, 422)
    assert (await fast.get(availability + "?from=2026-03-01&to=2026-05-01")).status_code == 422
    assert (await fast.get("/api/v1/search?q=x&unknown=1")).status_code == 200
    assert front.answered == answered + 2


async def test_each_sold_out_refusal_is_the_frameworks_bytes_with_a_new_hold_id(
    platform: Platform, servers: tuple[Litestar, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    app, fast, plain = servers
    slot_id, _open = await sold_out_slot(platform, fast)
    citizen = await Citizen.sign_up(fast)
    hold = json.dumps({"slotId": slot_id}).encode()
    for http in (fast, plain):  # the first refusal of each server: Redis's, through the route
        await sent(http, "POST", "/api/v1/holds", _hold_headers(citizen), hold)
    answered = front_of(app).answered
    # the proxy's request id sent twice: the first is the one, on both paths
    twice = [*_hold_headers(citizen).items(), ("x-request-id", "edge-1"), ("x-request-id", "x")]
    answers = []
    for http in (fast, fast, fast, plain):
        async with http.stream("POST", "/api/v1/holds", headers=twice, content=hold) as answer:
            raw = b"".join([chunk async for chunk in answer.aiter_raw()])
            assert answer.headers.get_list("x-request-id") == ["edge-1"]
            answers.append((answer.status_code, raw))
    assert front_of(app).answered == answered + 3  # the three of ``fast``, the same template
    hold_ids = [json.loads(raw)["detail"]["hold_id"] for _status, raw in answers]
    assert len(set(hold_ids)) == 4
    for hold_id in hold_ids:
        assert (uuid.UUID(hold_id).hex, uuid.UUID(hold_id).version) == (hold_id, 4)
    same = {
        (status, raw.replace(h.encode(), b"<id>"))
        for (status, raw), h in zip(answers, hold_ids, strict=True)
    }
    assert len(same) == 1  # byte for byte the exception handler's answer but the id
    ((status, raw),) = same
    assert status == 409
    assert json.loads(raw)["detail"] == {
        "slot_id": slot_id,
        "hold_id": "<id>",
        "answered": "locally",
    }

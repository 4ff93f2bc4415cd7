"""A request body is refused at its limit while it arrives, over a real socket.

A chunked upload far larger than any route accepts is sent to uvicorn on loopback, as an
attacker would send it, while the server's resident memory is sampled: the answer is
``413 REQUEST_BODY_TOO_LARGE`` long before the body ends, and the memory stays near where it
was. The same holds for a ``Content-Length`` above the limit (refused before the body), on
the paths that read a body themselves (the idempotency middleware) and through Litestar
(page forms, routes without an idempotency key), while the hospital connectors' uploads keep
their own larger limits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.web.request_bodies import API_BODY_LIMIT, SCHEDULE_FILE_BODY_LIMIT
from tests.e2e.raw_requests import raw_post
from tests.e2e.support import Citizen
from tests.fixtures.his_simulator import sim_hospital

HUGE = 192 * 1024 * 1024
"""What the attacker means to send: without a bound while reading, the server holds all of
it (and again when the chunks are joined)."""

MEMORY_BOUND = 48 * 1024 * 1024
"""Growth of the server's resident memory allowed while the huge body is refused."""

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


@contextmanager
def _peak_memory_growth() -> Iterator[list[int]]:
    """Samples this process's resident memory (the server runs in it) every millisecond in a
    thread of its own; yields a one-element list that holds the peak growth at the end."""
    start = _resident_bytes()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth[0] = peak[0] - start


@pytest.fixture
async def hospital_token(platform: Platform, http: httpx.AsyncClient) -> str:
    """An access token of an onboarded hospital's client, fetched from /oauth/token."""
    await platform.supply.register_hospital(sim_hospital())
    issued = await platform.connectors.registry.issue_client("sim1", ["hospital:push"])
    token = await http.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, issued.client_secret),
    )
    assert token.status_code == 200, token.text
    access: str = token.json()["access_token"]
    return access


def _assert_too_large(status: int, body: dict[str, object]) -> None:
    assert status == 413, body
    assert body["code"] == "REQUEST_BODY_TOO_LARGE"
    assert body["message"] == {
        "zh": "请求内容过大，已拒绝",
        "en": "The request body is larger than this address accepts",
    }


async def test_a_huge_chunked_body_with_an_idempotency_key_is_refused_while_it_arrives(
    live_server: str, citizen: Citizen
) -> None:
    headers = citizen.auth | {"Idempotency-Key": "huge-1", "Content-Type": "application/json"}
    with _peak_memory_growth() as growth:
        status, body, sent = await raw_post(live_server, "/api/v1/holds", headers, total=HUGE)
    _assert_too_large(status, body)
    assert sent < HUGE // 4, "the answer came long before the body ended"
    assert growth[0] < MEMORY_BOUND, f"the server's memory grew by {growth[0] >> 20} MiB"


async def test_an_announced_length_over_the_limit_is_refused_before_the_body_is_read(
    live_server: str, citizen: Citizen
) -> None:
    headers = citizen.auth | {"Idempotency-Key": "huge-2", "Content-Type": "application/json"}
    status, body, sent = await raw_post(
        live_server, "/api/v1/holds", headers, total=HUGE, chunked=False, announce=HUGE
    )
    _assert_too_large(status, body)
    assert sent < HUGE // 4


@pytest.mark.parametrize(
    "path", ["/api/v1/holds", "/api/v1/auth/token", "/sign-in"], ids=["api", "sign-in", "page"]
)
async def test_a_huge_chunked_body_without_an_idempotency_key_is_refused_with_the_same_code(
    live_server: str, citizen: Citizen, path: str
) -> None:
    form = path == "/sign-in"
    headers = citizen.auth | {
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"
    }
    with _peak_memory_growth() as growth:
        status, body, sent = await raw_post(live_server, path, headers, total=HUGE)
    _assert_too_large(status, body)
    assert sent < HUGE // 4
    assert growth[0] < MEMORY_BOUND, f"the server's memory grew by {growth[0] >> 20} MiB"


async def test_a_schedule_file_keeps_its_own_larger_limit(
    http: httpx.AsyncClient, live_server: str, hospital_token: str
) -> None:
    headers = {"Authorization": f"Bearer {hospital_token}", "Content-Type": "text/csv"}
    over_api_limit = b"\xef\xbb\xbf" + b"x" * (2 * API_BODY_LIMIT)
    taken = await http.post(
        "/api/v1/hospital/schedule-files",
        content=over_api_limit,
        headers=headers | {"Idempotency-Key": "file-1"},
    )
    assert taken.status_code != 413, "a file above the API's limit is still read"
    assert taken.json()["code"] == "BATCH_FILE_INVALID"
    status, body, _sent = await raw_post(
        live_server,
        "/api/v1/hospital/schedule-files",
        headers | {"Idempotency-Key": "file-2"},
        total=2 * SCHEDULE_FILE_BODY_LIMIT,
    )
    _assert_too_large(status, body)

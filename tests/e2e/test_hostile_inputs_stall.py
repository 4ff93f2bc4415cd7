"""No request stalls the rest: while each hostile input of the security review is sent, another
client's ``GET /health`` keeps its normal latency.

The review found a near-1 MiB HL7 frame stalling ``/health`` for about 18 s, 40 parallel
``/oauth/token`` with unknown clients for 2-4 s, and a chunked 1.5 GB body raising the memory
to 4.6 GB. Here the same client first measures ``/health`` at rest (its baseline p95), then
again while each attack runs against the live server over real sockets; the p95 under attack
must stay within a generous multiple of the baseline (a stall is seconds, the bound is well
under one), so a shared, busy machine does not make the test flaky.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.hospital_connectors.batch_files import template_csv
from guahao.hospital_connectors.mllp import MllpClient
from tests.e2e.raw_requests import raw_post
from tests.e2e.support import Citizen
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL, sim_hospital

ALLOWED_GROWTH = 10
"""How many times the baseline p95 the p95 under attack may reach (plus ``SLACK``)."""

SLACK = 1.5
"""Seconds added to the bound: a few scheduler hiccups on a shared machine are no stall (the
whole suite on 2 cores measured /health's p95 at 484 and 577 ms during the sign-in burst, its
scrypt thread and the other test worker sharing the cores, and 1 111 ms once during the API
explorer's bundles, which measure 32–110 ms alone). The stalls the review found were seconds
(above), and the sign-in burst is sixty sign-ins, so that scrypt back on the event loop gives a
p95 of 3.2–3.4 s (measured), well past the bound."""


def _p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1]


async def _health_latencies(http: httpx.AsyncClient, until: asyncio.Future[object]) -> list[float]:
    """``GET /health`` one after another (20 ms apart) until ``until`` is done."""
    latencies: list[float] = []
    while not until.done() or len(latencies) < 10:
        started = time.perf_counter()
        answer = await http.get("/health")
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 200
        await asyncio.sleep(0.02)
    return latencies


async def _baseline(http: httpx.AsyncClient) -> float:
    rest: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    rest.set_result(None)
    latencies = [await _health_latencies(http, rest) for _ in range(3)]
    return _p95([seconds for run in latencies for seconds in run])


async def _p95_during(http: httpx.AsyncClient, attack: Awaitable[object]) -> float:
    running = asyncio.ensure_future(attack)
    latencies = await _health_latencies(http, running)
    await running  # the attack's own assertions
    return _p95(latencies)


async def _near_limit_hl7_frames(platform: Platform) -> None:
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "hl7v2", config={"facility": SIM_HOSPITAL, "senders": LOOPBACK_SENDERS}
    )
    port = await platform.connectors.start_mllp()
    msh = f"MSH|^~\\&|HIS|{SIM_HOSPITAL}|GUAHAO|REGION|20260304080000||ADT^A04|H-{{}}|P|2.5\r"

    async def send(serial: int) -> str:
        client = MllpClient("127.0.0.1", port, timeout=60)
        try:
            return await client.send(msh.format(serial) + "NTE|1||" + "^" * 1_000_000)
        finally:
            await client.close()

    replies = await asyncio.gather(*(send(n) for n in range(4)))
    assert all("HL7_MESSAGE_TOO_LARGE" in reply for reply in replies)


async def _unknown_oauth_clients(http: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(
        *(
            http.post(
                "/api/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(f"unknown-{n}", "a-guessed-secret"),
            )
            for n in range(60)
        )
    )
    assert {a.status_code for a in answers} <= {401, 429}


async def _huge_chunked_body(base_url: str, citizen: Citizen) -> None:
    headers = citizen.auth | {"Idempotency-Key": "stall-1", "Content-Type": "application/json"}
    status, _body, _sent = await raw_post(
        base_url, "/api/v1/holds", headers, total=256 * 1024 * 1024
    )
    assert status == 413


async def _huge_schedule_file(platform: Platform, http: httpx.AsyncClient) -> None:
    await platform.supply.register_hospital(sim_hospital())
    issued = await platform.connectors.registry.issue_client(SIM_HOSPITAL, ["hospital:push"])
    token = await http.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, issued.client_secret),
    )
    # the template's header, then far more rows than a file may hold (~14 MB)
    rows = template_csv() + "d001,2026-03-04,上午,专家,30.00,08:00,08:30,4,\n" * 250_000
    answer = await http.post(
        "/api/v1/hospital/schedule-files",
        content=rows.encode("utf-8"),
        headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Idempotency-Key": "stall-file",
            "Content-Type": "text/csv",
        },
        timeout=120,
    )
    assert answer.json()["code"] == "BATCH_FILE_INVALID"


async def _password_burst(http: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(
        *(
            http.post("/api/v1/auth/token", json={"phone": f"135{n:08d}", "password": "guess-1234"})
            for n in range(60)
        )
    )
    assert {a.status_code for a in answers} <= {401, 429}


async def _api_explorer_bundles(http: httpx.AsyncClient) -> None:
    """The API explorer's 1.7 MB script, gzipped at level 9 per request on the event loop
    before static files were compressed once per process in a thread. Read raw: the watcher
    shares this event loop, and httpx undoing forty gzips would be the test's own stall."""

    async def fetch() -> int:
        headers = {"accept-encoding": "gzip", "cache-control": "no-cache"}
        async with http.stream("GET", "/static/vendor/swagger-ui-bundle.js", headers=headers) as a:
            async for _chunk in a.aiter_raw():
                pass
            return a.status_code

    assert set(await asyncio.gather(*(fetch() for _ in range(40)))) == {200}


@pytest.fixture
def platform(sqlite_platform: Platform) -> Platform:
    """The embedded platform only: the event loop's latency does not depend on the database,
    and each attack costs seconds (forty scrypt checks wait their turn)."""
    return sqlite_platform


@pytest.mark.parametrize(
    "attack",
    [
        "hl7-frames",
        "oauth-unknown-clients",
        "chunked-body",
        "schedule-file",
        "sign-in",
        "api-explorer-bundles",
    ],
)
async def test_health_keeps_its_latency_while_a_hostile_input_is_sent(
    platform: Platform, live_server: str, citizen: Citizen, attack: str
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=60) as watcher,
        httpx.AsyncClient(base_url=live_server, timeout=120) as attacker,
    ):
        attacks: dict[str, Callable[[], Awaitable[None]]] = {
            "hl7-frames": lambda: _near_limit_hl7_frames(platform),
            "oauth-unknown-clients": lambda: _unknown_oauth_clients(attacker),
            "chunked-body": lambda: _huge_chunked_body(live_server, citizen),
            "schedule-file": lambda: _huge_schedule_file(platform, attacker),
            "sign-in": lambda: _password_burst(attacker),
            "api-explorer-bundles": lambda: _api_explorer_bundles(attacker),
        }
        baseline = await _baseline(watcher)
        under_attack = await _p95_during(watcher, attacks[attack]())
    bound = ALLOWED_GROWTH * baseline + SLACK
    assert under_attack < bound, (
        f"/health p95 {under_attack * 1000:.0f} ms under {attack}, "
        f"baseline {baseline * 1000:.0f} ms (bound {bound * 1000:.0f} ms)"
    )

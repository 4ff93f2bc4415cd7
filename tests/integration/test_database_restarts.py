"""PostgreSQL really stopped and started while the platform serves: every request meanwhile
gets a 503 with Retry-After (including the "shutting down" edge the driver reports in its own
words), money the gateway took meanwhile is settled once the database is back, and pooled
connections work again at once.

The server here is a cluster of this module's own (the session's shared one serves other
tests), started once and stopped and started by the tests as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from sqlalchemy.engine import make_url

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.web.app import create_app
from infra import local_postgres
from tests.fixtures.conservation import assert_money_conserved, assert_units_conserved
from tests.fixtures.platforms import (
    START,
    booking_row,
    held_with_patient,
    publish_clinic,
    settings_for,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Path]:
    try:
        local_postgres.find_binary("pg_ctl")
    except local_postgres.PostgresNotInstalledError as exc:
        pytest.skip(str(exc))
    directory = Path(tempfile.mkdtemp(prefix="guahao-pg-restarts-"))
    try:
        local_postgres.start(directory)
        yield directory
    finally:
        local_postgres.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def restartable(
    own_postgres: Path, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    url = local_postgres.createdb(own_postgres, f"t_{uuid.uuid4().hex[:12]}")
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    async with open_platform(
        settings_for(tmp_path, url, redis_url), clock=ManualClock(START)
    ) as platform:
        yield platform


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl+C must still reach pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _served(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on a real socket in this loop (the platform's pools belong to it)."""
    config = uvicorn.Config(
        create_app(platform.settings, platform=platform),
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


def _dsn(platform: Platform) -> str:
    url = make_url(platform.settings.resolved_database_url())
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _wait(condition: object, seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 20)):
        if await asyncio.to_thread(condition):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the PostgreSQL server did not get there in time")


async def test_a_payment_made_while_postgresql_restarts_is_refused_with_503_and_settled_after(
    restartable: Platform, own_postgres: Path
) -> None:
    platform = restartable
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    assert order is not None
    port = local_postgres.running_port(own_postgres)
    async with _served(platform) as http:
        # A smart shutdown waits for open sessions; while one stays, the server answers every
        # new connection "the database system is shutting down" (asyncpg CannotConnectNow).
        lingering = await asyncpg.connect(_dsn(platform))
        await platform.engine.dispose()
        await asyncio.to_thread(_pg_ctl, own_postgres, "stop", "--mode", "smart", "--no-wait")
        try:
            paying = await http.post(f"/sandbox/pay/{order.order_no}?channel=self_pay")
            assert paying.status_code == 503, paying.text
            assert paying.headers["retry-after"]
            assert paying.json()["code"] == "SERVICE_UNAVAILABLE"
        finally:
            await lingering.close()
        await _wait(lambda: not local_postgres.is_running(own_postgres))
        away = await http.get("/api/v1/hospitals")
        assert away.status_code == 503
        assert away.headers["retry-after"]

        local_postgres.start(own_postgres, port=port)
        # The gateway kept the money; the booking waits. Reconciliation settles it.
        assert (await booking_row(platform, booking_id)).status == "awaiting_payment"
        platform.ports.clock.advance(minutes=2)  # type: ignore[attr-defined]
        assert await platform.payment_reconciliation.reconcile_due() == 1
        assert (await booking_row(platform, booking_id)).status == "confirmed"

        # A fast restart kills every pooled connection: the next request still succeeds.
        local_postgres.stop(own_postgres)
        local_postgres.start(own_postgres, port=port)
        after = await http.get("/api/v1/hospitals")
        assert after.status_code == 200, after.text

    assert await assert_money_conserved(platform) == {"confirmed_paid": 1}
    await assert_units_conserved(platform, slots[:1])


def _pg_ctl(directory: Path, *args: str) -> None:
    import subprocess

    data = Path(directory) / "data"
    command = [
        str(local_postgres.find_binary("pg_ctl")),
        *args[:1],
        "--pgdata",
        str(data),
        *args[1:],
    ]
    subprocess.run(
        local_postgres._as_server_user(command),
        cwd=directory,
        check=True,
        capture_output=True,
    )

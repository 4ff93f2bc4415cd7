"""End-to-end fixtures: the real app served by uvicorn on a real socket, reached with httpx.

``live_server`` serves ``create_app(settings, platform=platform)`` in this test's event
loop (uvicorn's ``Server.serve`` in an asyncio task) on 127.0.0.1 and a port the OS picks, and
yields its base URL. ``platform`` is the shared fixture, parametrized over SQLite and
PostgreSQL, so every end-to-end scenario runs on both databases. Tests move time with
``platform.ports.clock`` (a ``ManualClock``) and run the outbox themselves; nothing is replaced
by an imitation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvicorn

from guahao.bootstrap import Platform
from guahao.web.app import create_app
from tests.e2e.in_process_server import InProcessServer
from tests.e2e.support import Citizen


@pytest.fixture
async def live_server(platform: Platform) -> AsyncIterator[str]:
    """Base URL (``http://127.0.0.1:<port>``) of the app serving ``platform``."""
    app = create_app(platform.settings, platform=platform)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,  # bound by the OS to a free port: no window for another process to take it
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = InProcessServer(config)
    task = asyncio.create_task(server.serve(), name="e2e-uvicorn")
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()  # raises the startup error, if any
                    pytest.fail("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        async with asyncio.timeout(15):
            await task


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the live server over TCP (no ASGI transport shortcut)."""
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def sign_up(http: httpx.AsyncClient) -> Callable[[], Awaitable[Citizen]]:
    """Registers and signs in one more account each time it is awaited."""
    return lambda: Citizen.sign_up(http)


@pytest.fixture
async def citizen(sign_up: Callable[[], Awaitable[Citizen]]) -> Citizen:
    """A registered, signed-in account."""
    return await sign_up()

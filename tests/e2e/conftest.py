"""End-to-end fixtures: the real app served by uvicorn on a real socket, reached with httpx.

``live_server`` serves ``create_app(settings, platform=sqlite_platform)`` in this test's event
loop (uvicorn's ``Server.serve`` in an asyncio task) on 127.0.0.1 and a port the OS picks, and
yields its base URL. Tests move time with ``sqlite_platform.ports.clock`` (a ``ManualClock``)
and run the outbox themselves; nothing is replaced by an imitation.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from guahao.bootstrap import Platform
from guahao.web.app import create_app

__all__ = ["VALID_ID", "Citizen", "free_port", "pay_path"]

VALID_ID = "11010519491231002X"
"""A resident identity number with a correct check character (GB 11643-1999)."""


class _TestServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl+C must still reach pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def live_server(sqlite_platform: Platform) -> AsyncIterator[str]:
    """Base URL (``http://127.0.0.1:<port>``) of the app serving ``sqlite_platform``."""
    app = create_app(sqlite_platform.settings, platform=sqlite_platform)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,  # the OS picks a free port when binding: no race with other processes
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve(), name="e2e-uvicorn")
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the startup error
                    pytest.fail("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the live server (real TCP; no ASGI transport shortcut)."""
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
        yield client


def pay_path(pay_url: str) -> str:
    """The cashier path of a ``payUrl``.

    The test platform's public URL is ``http://testserver``; the cashier lives on the same
    server under ``/sandbox/pay/…``, so only the path is followed.

    >>> pay_path("http://testserver/sandbox/pay/GH123?x=1")
    '/sandbox/pay/GH123'
    """
    return urlsplit(pay_url).path


_phones = iter(range(10_000_000))


@dataclass
class Citizen:
    """A registered, signed-in account driving the API like an app would."""

    http: httpx.AsyncClient
    phone: str
    account_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @classmethod
    async def sign_up(cls, http: httpx.AsyncClient) -> Citizen:
        phone = f"138{next(_phones):08d}"
        password = "correct-horse-9"
        created = await http.post(
            "/api/v1/accounts", json={"phone": phone, "password": password, "displayName": "测试"}
        )
        assert created.status_code == 201, created.text
        token = await http.post("/api/v1/auth/token", json={"phone": phone, "password": password})
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["tokenType"] == "Bearer"
        assert body["accountId"] == created.json()["accountId"]
        return cls(http, phone, body["accountId"], body["accessToken"])

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.auth | kwargs.pop("headers", {})
        return await self.http.post(path, headers=headers, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.put(path, headers=self.auth, **kwargs)

    async def add_patient(self, name: str = "张三", number: str = VALID_ID) -> dict[str, Any]:
        response = await self.post(
            "/api/v1/me/patients",
            json={"name": name, "documentType": "resident_id", "documentNumber": number},
        )
        assert response.status_code == 201, response.text
        patient: dict[str, Any] = response.json()
        return patient

    async def hold(self, slot_id: str, key: str | None = None) -> httpx.Response:
        return await self.post(
            "/api/v1/holds",
            json={"slotId": slot_id},
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )

    async def booking(self, booking_id: str) -> dict[str, Any]:
        response = await self.get(f"/api/v1/bookings/{booking_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture
def sign_up(http: httpx.AsyncClient) -> Callable[[], Awaitable[Citizen]]:
    """Registers and signs in one more account each time it is awaited."""
    return lambda: Citizen.sign_up(http)


@pytest.fixture
async def citizen(sign_up: Callable[[], Awaitable[Citizen]]) -> Citizen:
    return await sign_up()

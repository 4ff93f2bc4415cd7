"""An outage met on the lean grant path is answered as the app's exception handlers answer it
through Litestar: the same status, headers and body, never a 500 (outages are hard to make on
purpose in the e2e comparison, so the two writers of the answer are compared here)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, post
from litestar.testing import AsyncTestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from guahao.web.errors import exception_handlers
from guahao.web.front_answers import GZIP_MINIMUM_SIZE, compress
from guahao.web.front_grants import FrontGrants

OUTAGES: list[Exception] = [
    RedisConnectionError("Connection refused"),
    OperationalError("SELECT 1", {}, Exception("the database system is shutting down")),
    ConnectionResetError("reset by peer"),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_outage_is_answered_as_the_frameworks_exception_handler_answers_it(
    outage: Exception,
) -> None:
    @post("/raise", status_code=201)
    async def raising() -> None:
        raise outage

    app = Litestar([raising], exception_handlers=exception_handlers)
    async with AsyncTestClient(app) as client:
        answer = await client.post("/raise")
    status, body, headers, code = FrontGrants(
        minimum_size=GZIP_MINIMUM_SIZE, compress=compress
    )._handled(outage, "r-1")

    assert status == answer.status_code == 503
    assert code is None  # the hold outcome is the status, as through the route
    assert msgspec.json.decode(body) == answer.json()
    assert answer.json()["code"] == "SERVICE_UNAVAILABLE"
    sent: list[tuple[str, Any]] = [
        (name.decode(), value.decode()) for name, value in headers if name != b"content-length"
    ]
    framework = [(k.lower(), v) for k, v in answer.headers.multi_items() if k != "content-length"]
    assert sent == framework

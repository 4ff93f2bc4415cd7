"""redis-py can fail a command on a connection another task was closing with an
``AttributeError`` or ``TypeError`` rather than its ``ConnectionError`` (redis-py issues #4287,
#3835). Such an error raised inside redis-py is Redis away for that request (a 503 with
``Retry-After``, on the framework's path and on the lean grant path alike); the same error
raised in our own code stays a logged 500, so a bug of ours is never passed off as an outage."""

from __future__ import annotations

import pytest
from litestar import Litestar, post
from litestar.testing import AsyncTestClient
from redis.asyncio.connection import Connection

from guahao.web.errors import exception_handlers
from guahao.web.front_answers import GZIP_MINIMUM_SIZE, compress
from guahao.web.front_grants import FrontGrants


async def _redis_on_a_closed_connection() -> None:
    # The library's own send on a connection whose writer is gone: the very line and error
    # of the reports (``'NoneType' object has no attribute 'writelines'``).
    await Connection()._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])


async def _our_own_none() -> None:
    writer = None
    writer.writelines([b"PING"])  # type: ignore[attr-defined]


async def _raised(call: object) -> Exception:
    try:
        await call()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (_redis_on_a_closed_connection, 503, "SERVICE_UNAVAILABLE"),
        (_our_own_none, 500, "INTERNAL_ERROR"),
    ],
    ids=["inside-redis-py", "in-our-code"],
)
async def test_an_attribute_error_is_an_outage_only_when_redis_py_raised_it(
    call: object, status: int, code: str
) -> None:
    raised = await _raised(call)
    assert isinstance(raised, AttributeError)
    assert "writelines" in str(raised)

    @post("/raise", status_code=201)
    async def raising() -> None:
        raise raised

    app = Litestar([raising], exception_handlers=exception_handlers, debug=False)
    async with AsyncTestClient(app) as client:
        answer = await client.post("/raise")
    lean_status, _, lean_headers, _ = FrontGrants(
        minimum_size=GZIP_MINIMUM_SIZE, compress=compress
    )._handled(raised, "r-1")

    assert answer.status_code == lean_status == status
    assert answer.json()["code"] == code
    assert set(answer.json()["message"]) == {"zh", "en"}
    assert (answer.headers.get("retry-after") == "2") is (status == 503)
    assert ((b"retry-after", b"2") in lean_headers) is (status == 503)

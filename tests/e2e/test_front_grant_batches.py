"""The grants of one loop turn are carried through as one batch (``FrontGrants``,
``BookingService.grant_holds``), and each request keeps its own answer: a refusal or a fault
of one request of the batch is never another's.

Six holds reach the lean path in the same loop turn, beside a seventh with a forged token:
a plain grant, a client over its hold limit, two citizens on the last unit of a slot, a slot
that does not exist, and a key the database refuses (the citizen's key of an earlier hold,
reused on another slot after that hold was left: the pool grants it, the booking row breaks
the unique key in the batch's group commit). Every answer must be the one that request gets
alone, the granted holds recorded, and the refused one's unit back in the pool.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from typing import Any

from guahao.bootstrap import Platform
from guahao.platform.clock import to_epoch_ms
from guahao.platform.persistence.database import create_engine, session_factory
from guahao.web.app import create_app
from guahao.web.request_logs import StandardLines
from tests.e2e.support import Citizen
from tests.e2e.test_front_answers import RELEASE_DAY, served
from tests.e2e.test_front_grants import grants_of
from tests.fixtures.platforms import at_local, clinic, manual_clock, publish_clinic


async def _asgi_hold(
    app: Any, token: str, slot_id: str, key: str, n: int
) -> tuple[int, dict[str, Any]]:
    """``POST /api/v1/holds`` straight to the app, from an address and device of its own, so
    that concurrent calls reach the grant path in the same loop turn."""
    body = json.dumps({"slotId": slot_id}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/holds",
        "raw_path": b"/api/v1/holds",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
            (b"idempotency-key", key.encode()),
            (b"x-device-id", f"batch-phone-{n}".encode()),
        ],
        "client": (f"10.9.{n}.7", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    received = False
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(3600)  # a client that stays connected
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = json.loads(message["body"])

    await app(scope, receive, send)
    return answer["status"], answer["body"]


async def test_a_refusal_or_fault_of_one_request_in_a_batch_is_never_anothers(
    platform: Platform,
) -> None:
    app = create_app(platform.settings, platform=platform)
    slots = await publish_clinic(platform, clinic(units=1))
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    async with served(app) as http:
        plain, limited, first, second, lost, reusing = [
            await Citizen.sign_up(http) for _ in range(6)
        ]
        # over its hold limit: a hold, then holds refused as held elsewhere until the 429
        assert (await limited.hold(slots[5])).status_code == 201
        for _ in range(60):
            if (await limited.hold(slots[5])).status_code == 429:
                break
        else:
            raise AssertionError("the hold limit was never reached")
        # a key whose booking row stands (its hold left), reused on another slot
        key = f"reused-{uuid.uuid4().hex}"
        earlier = await reusing.hold(slots[6], key)
        assert earlier.status_code == 201, earlier.text
        left = await reusing.post(f"/api/v1/bookings/{earlier.json()['id']}/leave")
        assert left.status_code == 200, left.text

        grants = grants_of(app)
        batches, answered = grants.batches, grants.answered
        asked = [
            (plain.token, slots[0], "granted"),
            (limited.token, slots[1], "limited"),
            (first.token, slots[2], "first on the last unit"),
            (second.token, slots[2], "second on the last unit"),
            (lost.token, "NO-SUCH-SLOT", "no such slot"),
            (reusing.token, slots[3], key),
            ("not.a.token", slots[4], "forged"),
        ]
        answers = await asyncio.gather(
            *(_asgi_hold(app, token, slot, k, n) for n, (token, slot, k) in enumerate(asked))
        )

        assert grants.batches == batches + 1  # the six with a valid token, in one batch
        assert grants.answered == answered + 6
        statuses = [status for status, _body in answers]
        codes = [body.get("code") for _status, body in answers]
        assert statuses == [201, 429, 201, 409, 404, 409, 401], answers
        assert codes[1:] == [
            "RATE_LIMITED",
            None,
            "SLOT_SOLD_OUT",
            "SLOT_NOT_FOUND",
            "IDEMPOTENCY_KEY_REUSED",
            "UNAUTHENTICATED",
        ], answers
        for citizen, (_status, body) in ((plain, answers[0]), (first, answers[2])):
            booking = await citizen.booking(body["id"])  # recorded, held, the citizen's own
            assert booking["status"] == "held"
        counts = await platform.ports.inventory.counts(
            [slots[0], slots[2], slots[3]], now_ms=to_epoch_ms(platform.ports.clock.now())
        )
        # the two granted holds stand; the refused row's unit went back to the pool
        assert [counts[s].held for s in (slots[0], slots[2], slots[3])] == [1, 1, 0]


async def test_a_fault_answered_on_the_lean_path_is_logged_with_its_requests_id(
    platform: Platform,
) -> None:
    """The batch runs in a task of its own, outside every request's context: the exception
    handler's log line of a fault (here the database away) must still name the request it
    answered, as on the framework's path."""
    app = create_app(platform.settings, platform=platform)
    slots = await publish_clinic(platform, clinic(units=2))
    manual_clock(platform).set(at_local(RELEASE_DAY, 9))
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(StandardLines())  # as `guahao serve` formats them
    logging.getLogger("guahao.web.errors").addHandler(handler)
    try:
        async with served(app) as http:
            citizens = [await Citizen.sign_up(http) for _ in range(2)]
            answered = grants_of(app).answered
            working = platform.ports.sessions
            dead = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
            platform.ports.sessions = session_factory(dead)  # the database is away
            try:
                answers = await asyncio.gather(
                    *(
                        http.post(
                            "/api/v1/holds",
                            json={"slotId": slots[n]},
                            headers={
                                "authorization": f"Bearer {citizen.token}",
                                "idempotency-key": f"k{n}",
                                "x-request-id": f"edge-{n}",
                            },
                        )
                        for n, citizen in enumerate(citizens)
                    )
                )
            finally:
                platform.ports.sessions = working
                await dead.dispose()
    finally:
        logging.getLogger("guahao.web.errors").removeHandler(handler)
    assert grants_of(app).answered == answered + 2  # the lean path answered both
    assert [a.status_code for a in answers] == [503, 503]
    assert [a.headers["x-request-id"] for a in answers] == ["edge-0", "edge-1"]
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    faults = [line for line in logged if line["event"].startswith("dependency unavailable")]
    assert sorted(str(line.get("request_id")) for line in faults) == ["edge-0", "edge-1"], logged

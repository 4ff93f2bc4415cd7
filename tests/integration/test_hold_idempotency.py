"""``POST /api/v1/holds`` answers a repeated ``Idempotency-Key`` from the hold pool's own
replay record (written by the same script as the grant), not from a record of the web
layer's: a repeat gets its first hold as it was first answered, concurrent repeats never make
two holds, a key reused for another slot is refused, and a grant whose worker died before
its record is recorded and answered by the retry. Through the ASGI app in this event loop,
real Redis, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.clock import to_epoch_ms
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import BookingRow
from guahao.web.app import create_app
from tests.fixtures.platforms import counts, new_account, publish_clinic, settings_for


@pytest.fixture
async def app(
    platform: Platform, migrated_database_url: str, redis_url: str, tmp_path: Path
) -> Litestar:
    app = create_app(settings_for(tmp_path, migrated_database_url, redis_url), platform=platform)
    app.state.platform = platform  # what the lifespan does; ASGITransport runs none
    return app


@pytest.fixture
async def http(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def citizen(app: Litestar, platform: Platform) -> tuple[str, dict[str, str]]:
    account = await new_account(platform)
    return account, {"authorization": f"Bearer {app.state.tokens.issue(account)}"}


def hold(http: httpx.AsyncClient, auth: dict[str, str], slot_id: str, key: str) -> Any:
    return http.post(
        "/api/v1/holds", json={"slotId": slot_id}, headers=auth | {"Idempotency-Key": key}
    )


async def bookings_of(platform: Platform, account: str) -> int:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(func.count()).select_from(BookingRow).where(BookingRow.account_id == account)
        )
    return int(found or 0)


async def test_a_repeated_hold_gets_its_first_answer_even_after_the_booking_moved_on(
    app: Litestar, http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    account, auth = await citizen(app, platform)
    first = await hold(http, auth, slots[0], "tap-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    await platform.bookings.leave(account_id=account, booking_id=first.json()["id"])

    again = await hold(http, auth, slots[0], "tap-1")

    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content  # held, as first answered: not a new hold
    assert (await counts(platform, slots[0])).held == 0  # the left unit stays free
    assert await bookings_of(platform, account) == 1
    # the web layer kept no record of its own for the hold
    assert [key async for key in platform.redis.scan_iter(match="idem:*")] == []


async def test_concurrent_repeats_of_a_hold_make_one_hold(
    app: Litestar, http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    account, auth = await citizen(app, platform)

    answers = await asyncio.gather(*(hold(http, auth, slots[0], "double") for _ in range(6)))

    granted = [a for a in answers if a.status_code == 201]
    refused = [a.json()["code"] for a in answers if a.status_code != 201]
    assert granted, [a.text for a in answers]
    assert {a.json()["id"] for a in granted} == {granted[0].json()["id"]}
    assert {a.content for a in granted} == {granted[0].content}
    assert set(refused) <= {"REQUEST_IN_PROGRESS", "HOLD_ALREADY_ACTIVE"}
    assert (await counts(platform, slots[0])).held == 1
    assert await bookings_of(platform, account) == 1


async def test_a_hold_key_reused_for_another_slot_is_refused_and_holds_nothing(
    app: Litestar, http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    account, auth = await citizen(app, platform)
    first = await hold(http, auth, slots[0], "k")
    assert first.status_code == 201

    reused = await hold(http, auth, slots[1], "k")

    assert (reused.status_code, reused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert (await counts(platform, slots[1])).held == 0
    # once the key's hold has ended, SQL's unique key refuses it the same way
    await platform.bookings.leave(account_id=account, booking_id=first.json()["id"])
    again = await hold(http, auth, slots[1], "k")
    assert (again.status_code, again.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert (await counts(platform, slots[1])).held == 0
    assert await bookings_of(platform, account) == 1


async def test_a_hold_key_over_100_characters_is_refused_before_anything_is_held(
    app: Litestar, http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    account, auth = await citizen(app, platform)

    refused = await hold(http, auth, slots[0], "k" * 101)

    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    assert refused.json()["detail"]["field"] == "Idempotency-Key"
    assert (await counts(platform, slots[0])).held == 0
    assert await bookings_of(platform, account) == 0


async def test_a_grant_whose_worker_died_before_its_record_is_recorded_by_the_retry(
    app: Litestar, http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    account, auth = await citizen(app, platform)
    # the first request's grant, in Redis only: its worker was killed before the SQL record
    first_hold = new_id()
    now = platform.ports.clock.now()
    await platform.ports.inventory.hold(
        slots[0],
        hold_id=first_hold,
        account_id=account,
        now_ms=to_epoch_ms(now),
        ttl_ms=15 * 60_000,
        idempotency_key=f"{account}:retry",
    )

    retry = await hold(http, auth, slots[0], "retry")

    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == first_hold
    assert retry.json()["status"] == "held"
    assert (await counts(platform, slots[0])).held == 1
    found = await http.get(f"/api/v1/bookings/{first_hold}", headers=auth)
    assert found.status_code == 200, found.text
    assert found.content == retry.content  # recorded, and the answer is its view

"""Sold-out holds answered from the process's view, and a unit given back holdable at once.

Two platforms (two workers) on the same databases and the same Redis, each served by its own
uvicorn: the sold-out view of one worker must follow what the other does. The first refusal
on a slot is Redis's; later ones on that worker come from its view (``answered: locally``),
write no idempotency record, and still count against the rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.platform.inventory.redis_inventory import RedisInventory
from guahao.web.app import create_app
from tests.e2e.support import Citizen, assert_refused
from tests.fixtures.platforms import SESSION_DAY, at_local, clinic, publish_clinic

RELEASE_DAY = SESSION_DAY - timedelta(days=7)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (as the e2e ``live_server``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(platform.settings, platform=platform)
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="second-worker")
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


@pytest.fixture
async def other_platform(platform: Platform) -> AsyncIterator[Platform]:
    """A second worker: its own platform object on the same databases and Redis."""
    async with open_platform(platform.settings, clock=platform.ports.clock, migrate=False) as p:
        yield p


def view_of(platform: Platform) -> RedisInventory:
    inventory = platform.ports.inventory
    assert isinstance(inventory, RedisInventory)
    return inventory


async def following(*platforms: Platform) -> None:
    async with asyncio.timeout(5):
        for p in platforms:
            await view_of(p).sold_out.subscribed()


async def announced_at(platform: Platform, count: int) -> float:
    """Wait until ``platform`` has received ``count`` announcements; the seconds waited."""
    started = time.perf_counter()
    async with asyncio.timeout(2):
        while view_of(platform).sold_out.announcements < count:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.0005)
    return time.perf_counter() - started


async def one_unit_on_sale(platform: Platform) -> str:
    slot_ids = await publish_clinic(platform, clinic(units=1))
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(RELEASE_DAY, 9))
    return slot_ids[0]


async def test_a_unit_given_back_on_one_worker_is_holdable_at_once_on_another(
    platform: Platform, other_platform: Platform, http: httpx.AsyncClient
) -> None:
    await following(platform, other_platform)
    slot_id = await one_unit_on_sale(platform)
    async with served(other_platform) as other_http:
        first = await Citizen.sign_up(http)
        second = Citizen(other_http, *(await _signed_up(http)))
        held = await first.hold(slot_id)
        assert held.status_code == 201, held.text

        refused = assert_refused(await second.hold(slot_id), 409, "SLOT_SOLD_OUT")
        assert "answered" not in refused["detail"]  # the first refusal is Redis's
        again = assert_refused(await second.hold(slot_id, key="same-key"), 409, "SLOT_SOLD_OUT")
        assert again["detail"]["answered"] == "locally"  # the view's, before the framework
        assert again["detail"]["slot_id"] == slot_id
        # a refusal writes no idempotency record: nothing to replay, nothing to clean up
        assert not await other_platform.redis.keys(f"idem:{{acct:{second.account_id}}}:*")

        seen = view_of(other_platform).sold_out.announcements
        left = await first.post(f"/api/v1/bookings/{held.json()['id']}/leave")
        assert left.status_code == 200, left.text
        waited = await announced_at(other_platform, seen + 1)
        assert waited < 0.5
        # the same key again: a refusal was not remembered, so it is decided afresh
        granted = await second.hold(slot_id, key="same-key")
        assert granted.status_code == 201, granted.text
        assert granted.json()["slotId"] == slot_id


async def test_a_worker_that_lost_its_subscription_asks_redis_again(
    platform: Platform, other_platform: Platform, http: httpx.AsyncClient
) -> None:
    await following(platform, other_platform)
    slot_id = await one_unit_on_sale(platform)
    async with served(other_platform) as other_http:
        first = await Citizen.sign_up(http)
        second = Citizen(other_http, *(await _signed_up(http)))
        assert (await first.hold(slot_id)).status_code == 201
        assert_refused(await second.hold(slot_id), 409, "SLOT_SOLD_OUT")
        local = assert_refused(await second.hold(slot_id), 409, "SLOT_SOLD_OUT")
        assert local["detail"]["answered"] == "locally"

        await other_platform.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        async with asyncio.timeout(2):
            while view_of(other_platform).sold_out.live:  # noqa: ASYNC110 (a flag)
                await asyncio.sleep(0.001)
        blind = assert_refused(await second.hold(slot_id), 409, "SLOT_SOLD_OUT")
        assert "answered" not in blind["detail"]  # Redis's answer, not a stale memory


async def test_sold_out_answers_from_the_view_still_count_against_the_rate_limit(
    platform: Platform, other_platform: Platform, http: httpx.AsyncClient
) -> None:
    await following(platform, other_platform)
    slot_id = await one_unit_on_sale(platform)
    per_account = (await platform.rules.region()).rate_limits.hold_per_account  # "30/minute;…"
    allowed = int(per_account.split("/")[0])
    async with served(other_platform) as other_http:
        first = await Citizen.sign_up(http)
        second = Citizen(other_http, *(await _signed_up(http)))
        assert (await first.hold(slot_id)).status_code == 201
        codes = [(await second.hold(slot_id)).json()["code"] for _ in range(allowed + 1)]
        assert codes[:allowed] == ["SLOT_SOLD_OUT"] * allowed
        assert codes[-1] == "RATE_LIMITED"


async def _signed_up(http: httpx.AsyncClient) -> tuple[str, str, str]:
    citizen = await Citizen.sign_up(http)
    return citizen.phone, citizen.account_id, citizen.token

"""The platform's Redis really stopped, or lost with everything in it, while citizens hold and
pay: a request refused meanwhile changes nothing (or, once recorded, is answered as done), no
account stays blocked by a hold that no longer exists, and payment orders survive the loss
because the record of them is in SQL. The sandbox gateway keeps its side in a Redis of its
own, so reconciliation meets a gateway that remembers what was paid while ours was away.

Each test runs a Redis of its own on a fixed port, stopped and started again at the same
address (the shared session Redis must never be stopped).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guahao.bootstrap import Platform
from guahao.platform.embedded_redis import EmbeddedRedis
from guahao.platform.errors import GuahaoError
from tests.fixtures.conservation import assert_money_conserved, assert_units_conserved
from tests.fixtures.platforms import (
    _open,
    booking_row,
    held_with_patient,
    hold,
    manual_clock,
    pay,
    publish_clinic,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=[True, False], ids=["keeps-its-data", "restarts-empty"])
async def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis", port=_free_port(), persist=request.param)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def redis_platform(
    sqlite_url: str, own_redis: EmbeddedRedis, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    # The sandbox gateway keeps its orders elsewhere (the session Redis, never stopped), as a
    # real provider does: losing the platform's Redis must not make the gateway forget.
    async for p in _open(tmp_path, sqlite_url, own_redis.url, gateway_redis_url=redis_url):
        yield p


async def _restart(server: EmbeddedRedis) -> None:
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)


async def test_leaving_while_redis_is_away_is_done_and_the_account_can_hold_again_after(
    redis_platform: Platform, own_redis: EmbeddedRedis
) -> None:
    platform = redis_platform
    slots = await publish_clinic(platform)
    account, _, first = await held_with_patient(platform, slots[0])
    await asyncio.to_thread(own_redis.stop)

    left = await platform.bookings.leave(account_id=account, booking_id=first)

    assert left.status.value == "abandoned"  # recorded, and answered as done
    await asyncio.to_thread(own_redis.start)
    if not own_redis.persist:
        await platform.inventory_sync.rebuild_all()
    # Whatever Redis came back with, the hold of a left booking does not block the account.
    again = await hold(platform, account, slots[1])
    assert again.status.value == "held"
    assert (await booking_row(platform, first)).status == "abandoned"
    await assert_units_conserved(platform, slots[:2])


async def test_an_order_awaiting_payment_survives_the_loss_of_redis_and_can_be_paid(
    redis_platform: Platform, own_redis: EmbeddedRedis
) -> None:
    platform = redis_platform
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    assert order is not None
    await _restart(own_redis)
    if not own_redis.persist:
        await platform.inventory_sync.rebuild_all()  # what Redis-loss recovery runs
    manual_clock(platform).advance(minutes=2)

    await platform.payment_reconciliation.reconcile_due()
    outcome = await pay(platform, order.order_no)

    assert outcome.result == "confirmed"
    assert (await booking_row(platform, booking_id)).status == "confirmed"
    assert await assert_money_conserved(platform) == {"confirmed_paid": 1}
    await assert_units_conserved(platform, slots[:1])


async def test_money_paid_while_redis_was_away_is_confirmed_by_reconciliation_after(
    redis_platform: Platform, own_redis: EmbeddedRedis
) -> None:
    platform = redis_platform
    slots = await publish_clinic(platform)
    account, _, booking_id = await held_with_patient(platform, slots[0])
    _, order = await platform.bookings.submit(
        account_id=account, booking_id=booking_id, channel="self_pay"
    )
    assert order is not None
    await asyncio.to_thread(own_redis.stop)
    # The citizen pays: the gateway, another company's system, takes the money; the platform
    # cannot confirm while its Redis is away, and the notice is answered "retry".
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    with pytest.raises(GuahaoError) as refused:
        await platform.bookings.handle_payment_notice(headers, body)
    assert refused.value.code in {"INVENTORY_UNAVAILABLE", "SLOT_NOT_LOADED"}
    assert (await booking_row(platform, booking_id)).status == "awaiting_payment"
    await asyncio.to_thread(own_redis.start)
    if not own_redis.persist:
        await platform.pool_recovery.rebuild()
    manual_clock(platform).advance(minutes=2)

    await platform.payment_reconciliation.reconcile_due()

    assert (await booking_row(platform, booking_id)).status == "confirmed"
    assert await assert_money_conserved(platform) == {"confirmed_paid": 1}
    await assert_units_conserved(platform, slots[:1])

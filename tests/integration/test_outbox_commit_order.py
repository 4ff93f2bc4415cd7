"""Events committed out of id order are never skipped (guahao/platform/persistence/
outbox_horizon.py): on PostgreSQL a transaction can take outbox id N and commit after another
took N + 1 and committed; a cursor that moved past N + 1 would never deliver N. On SQLite the
one writer makes ids visible in order, so the same scenario cannot be built there (the second
writer waits for the first): these tests run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio

import pytest

from guahao.bootstrap import Platform
from guahao.platform.persistence.outbox import OutboxDispatcher, OutboxEvent, record_event
from guahao.platform.persistence.outbox_horizon import GRACE_SECONDS

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True),
]


async def _listener(platform: Platform) -> tuple[OutboxDispatcher, list[str]]:
    received: list[str] = []

    async def receive(event: OutboxEvent) -> None:
        received.append(event.aggregate_id)

    dispatcher = OutboxDispatcher(platform.ports.sessions, platform.ports.clock)
    dispatcher.subscribe("order.", receive, name="order-test", starts_at="now")
    await dispatcher.start()
    return dispatcher, received


async def _committed(platform: Platform, aggregate: str) -> None:
    async with platform.ports.sessions() as session, session.begin():
        record_event(session, "order.made", aggregate, {}, platform.ports.clock.now())


async def _settle(dispatcher: OutboxDispatcher) -> None:
    """Job runs until a gap's grace has passed, as the 2 s cron would."""
    for _ in range(3):
        await dispatcher.dispatch_pending(budget_seconds=GRACE_SECONDS + 0.5)
        await asyncio.sleep(GRACE_SECONDS / 2)


async def test_an_event_committed_after_a_later_id_is_still_delivered(platform):
    dispatcher, received = await _listener(platform)
    slow = platform.ports.sessions()
    async with slow, slow.begin():
        record_event(slow, "order.made", "first-id", {}, platform.ports.clock.now())
        await slow.flush()  # the id is drawn; the transaction stays open
        await _committed(platform, "second-id")
        await dispatcher.dispatch_pending(budget_seconds=0.3)
        assert received == []  # not past an id that may still commit
    await _settle(dispatcher)
    assert received == ["first-id", "second-id"]


async def test_an_id_rolled_back_holds_nothing_back_for_long(platform):
    dispatcher, received = await _listener(platform)
    failed = platform.ports.sessions()
    async with failed:
        record_event(failed, "order.made", "never", {}, platform.ports.clock.now())
        await failed.flush()
        await _committed(platform, "after-the-rollback")
        await failed.rollback()
    await _committed(platform, "later")
    await _settle(dispatcher)
    assert received == ["after-the-rollback", "later"]

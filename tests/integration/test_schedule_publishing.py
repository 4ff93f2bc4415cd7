"""Publishing a hospital's schedule in bulk, on both databases with a real Redis: a batch of
sessions costs a few statements whatever its size, every slot is in the pool with its online
quota, and a session already published (or listed twice) is published once."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from sqlalchemy import event, func, select

from guahao.platform.persistence.tables import SessionRow, SlotRow
from tests.fixtures.platforms import SESSION_DAY, clinic, outbox_topics

WEEKS = 6


def roster_weeks(platform, spec, weeks: int = WEEKS):  # type: ignore[no-untyped-def]
    days = [SESSION_DAY + timedelta(days=i) for i in range(7 * weeks)]
    return platform.supply.sessions_from_roster(spec, days)


async def test_a_batch_of_sessions_is_a_few_statements_and_every_slot_is_in_the_pool(platform):
    spec = clinic(units=6)
    await platform.supply.register_hospital(spec)
    sessions = roster_weeks(platform, spec)
    statements: list[str] = []
    count = lambda *args, **kw: statements.append(args[2])  # noqa: E731
    event.listen(platform.engine.sync_engine, "before_cursor_execute", count)
    try:
        created = await platform.supply.publish_sessions(sessions)
    finally:
        event.remove(platform.engine.sync_engine, "before_cursor_execute", count)

    assert created == len(sessions) == WEEKS
    # hospitals, doctors, departments' own policies, the sessions that exist, then one insert
    # per table: not one statement or more per session
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "SELECT"))]
    assert len(writes) <= 7, writes
    async with platform.ports.sessions() as session:
        slots = (await session.execute(select(SlotRow.id, SlotRow.online_quota))).all()
    segments = sum(len(s.segments) for s in sessions)
    assert len(slots) == segments
    now_ms = int(platform.ports.clock.now().timestamp() * 1000)
    pool = await platform.ports.inventory.counts([s.id for s in slots], now_ms=now_ms)
    assert {slot_id: c.capacity for slot_id, c in pool.items()} == dict(slots)
    assert all(c.available == c.capacity for c in pool.values())
    assert (await outbox_topics(platform))["session.published"] == WEEKS


async def test_sessions_already_published_or_listed_twice_are_published_once(platform):
    spec = clinic(units=3)
    await platform.supply.register_hospital(spec)
    sessions = roster_weeks(platform, spec)
    assert await platform.supply.publish_sessions(sessions[:2]) == 2

    again = [*sessions, sessions[-1]]  # the first two exist; the last is listed twice
    created = await platform.supply.publish_sessions(again, batch=4)

    assert created == WEEKS - 2
    async with platform.ports.sessions() as session:
        published = await session.scalar(select(func.count()).select_from(SessionRow))
        per_key = (
            await session.execute(
                select(SessionRow.doctor_id, SessionRow.date, SessionRow.period, func.count())
                .group_by(SessionRow.doctor_id, SessionRow.date, SessionRow.period)
                .having(func.count() > 1)
            )
        ).all()
    assert published == WEEKS
    assert per_key == []
    assert (await outbox_topics(platform))["session.published"] == WEEKS


async def test_an_empty_session_is_not_published(platform):
    spec = clinic(units=3)
    await platform.supply.register_hospital(spec)
    first, *rest = roster_weeks(platform, spec, weeks=2)

    created = await platform.supply.publish_sessions(
        [msgspec.structs.replace(first, segments=()), *rest]
    )

    assert created == 1


async def test_a_batchs_new_slots_reach_redis_in_a_few_script_calls(platform):
    """Not a script (and a coroutine and a task) for each new slot: a hospital's first
    schedule brings tens of thousands (bench/profiles/engine2-1-*)."""
    spec = clinic(units=6)
    await platform.supply.register_hospital(spec)
    sessions = roster_weeks(platform, spec)
    segments = sum(len(s.segments) for s in sessions)
    assert segments > 3 * 3  # a call a slot would be far more than the bound below
    await platform.redis.config_resetstat()

    await platform.supply.publish_sessions(sessions)

    stats = await platform.redis.info("commandstats")
    calls = sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    assert calls <= 3, calls  # one load of the batch's slots (and its script's first load)

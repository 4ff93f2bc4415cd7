"""Slot facts read together, on both databases: the cache misses of many sessions made at once
(a release's crowd on a cold cache) share one statement, each caller gets its own slot's
facts, and a slot that does not exist is refused alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import SlotRow
from tests.fixtures.platforms import SESSION_DAY, clinic, publish_clinic


async def test_misses_of_many_sessions_at_once_share_one_read(platform):  # type: ignore[no-untyped-def]
    spec = clinic(units=4)
    await platform.supply.register_hospital(spec)
    days = [SESSION_DAY + timedelta(days=i) for i in range(21)]
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))
    async with platform.ports.sessions() as session:
        rows = (await session.execute(select(SlotRow.id, SlotRow.session_id))).all()
    one_per_session = list({session_id: slot_id for slot_id, session_id in rows}.values())
    assert len(one_per_session) >= 3
    reads: list[str] = []

    def count_reads(*args: object, **kw: object) -> None:
        if "FROM slots" in str(args[2]) and str(args[2]).lstrip().upper().startswith("SELECT"):
            reads.append(str(args[2]))

    await platform.ports.slot_facts.refresh()  # versions checked: the callers go straight on
    event.listen(platform.engine.sync_engine, "before_cursor_execute", count_reads)
    try:
        found = await asyncio.gather(
            *(platform.bookings.slot_facts(slot_id) for slot_id in one_per_session),
            platform.bookings.slot_facts("no-such-slot"),
            return_exceptions=True,
        )
    finally:
        event.remove(platform.engine.sync_engine, "before_cursor_execute", count_reads)

    assert len(reads) == 1, reads  # one per session would be one statement per caller
    *facts, missing = found
    assert [f.slot_id for f in facts] == one_per_session
    sessions = dict(rows)
    assert [f.session_id for f in facts] == [sessions[s] for s in one_per_session]
    assert isinstance(missing, GuahaoError)
    assert missing.code == "SLOT_NOT_FOUND"
    # every slot of the sessions read is now cached: a sibling costs no statement
    event.listen(platform.engine.sync_engine, "before_cursor_execute", count_reads)
    try:
        sibling = next(s for s, session_id in rows if s not in one_per_session)
        assert (await platform.bookings.slot_facts(sibling)).session_id == sessions[sibling]
    finally:
        event.remove(platform.engine.sync_engine, "before_cursor_execute", count_reads)
    assert len(reads) == 1


async def test_a_miss_arriving_during_a_read_is_taken_by_the_next(platform):  # type: ignore[no-untyped-def]
    slots = await publish_clinic(platform, clinic(units=4))
    first = asyncio.ensure_future(platform.bookings.slot_facts(slots[0]))
    await asyncio.sleep(0)  # the first read is under way
    late = await platform.bookings.slot_facts(slots[-1])
    assert late.slot_id == slots[-1]
    assert (await first).slot_id == slots[0]
    with pytest.raises(GuahaoError) as refused:
        await platform.bookings.slot_facts("still-no-such-slot")
    assert refused.value.code == "SLOT_NOT_FOUND"

"""Search answers, remembered per process, last exactly as long as the index they came from.

Any write to the index (here or in another process, announced on the change channel) ends
every remembered answer; a process that lost the channel uses none; the same words written
differently and the same filters share one answer, a new local day does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from guahao.bootstrap import Platform, open_platform
from guahao.platform.clock import ManualClock
from guahao.platform.persistence.tables import DoctorRow
from guahao.search.answers import SearchAnswers
from guahao.search.index_changes import IndexChanges
from guahao.search.query import SearchFilters, SearchQuery, SearchResult
from tests.fixtures.platforms import (
    START,
    hold,
    manual_clock,
    new_account,
    publish_clinic,
    settings_for,
)

DOCTORS_FREE = SearchQuery(q="王伟", filters=SearchFilters(kind=("doctor",), within_days=7))


async def following(platform: Platform) -> Platform:
    async with asyncio.timeout(5):
        await platform.search.changes.subscribed()
    return platform


async def indexed_clinic(platform: Platform) -> tuple[list[str], str]:
    slots = await publish_clinic(platform)
    await platform.search.reindex()
    async with platform.ports.sessions() as session:
        doctor = str((await session.scalars(select(DoctorRow.id))).one())
    return slots, doctor


def free_units(result: SearchResult) -> int:
    return sum(hit.free_units_7d for hit in result.hits)


async def moved_past(platform: Platform, generation: int) -> None:
    async with asyncio.timeout(2):
        while platform.search.changes.generation <= generation:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.001)


@pytest.fixture
async def other_instance(
    platform: Platform, migrated_database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    """A second app instance on the same database and Redis (another worker of the region)."""
    settings = settings_for(tmp_path / "other", migrated_database_url, redis_url)
    async with open_platform(settings, clock=ManualClock(START), migrate=False) as other:
        yield await following(other)


async def test_a_repeated_search_is_answered_from_memory(platform):
    await following(platform)
    await indexed_clinic(platform)
    first = await platform.search.search(DOCTORS_FREE)
    assert free_units(first) > 0
    assert await platform.search.search(DOCTORS_FREE) is first
    # written differently (spacing, Traditional characters), the words make the same answer
    assert (
        await platform.search.search(SearchQuery(q=" 王偉 ", filters=DOCTORS_FREE.filters)) is first
    )
    assert len(platform.search.answers) == 1


async def test_the_same_search_asked_at_once_is_searched_once(platform):
    """A release's first moment: every connection asks the few popular words before any
    answer is remembered; the index searches each once, not once per caller."""
    await following(platform)
    await indexed_clinic(platform)
    found = await asyncio.gather(*(platform.search.search(DOCTORS_FREE) for _ in range(20)))
    assert free_units(found[0]) > 0
    assert all(result is found[0] for result in found)  # one search's answer, given to all


async def test_a_search_asked_after_an_index_write_does_not_join_one_begun_before(platform):
    await following(platform)
    await indexed_clinic(platform)
    before = asyncio.ensure_future(platform.search.search(DOCTORS_FREE))
    await asyncio.sleep(0)  # that search is under way, on the index as it was
    platform.search.changes.moved()  # what a finished write does here
    after = await platform.search.search(DOCTORS_FREE)
    assert after is not await before


async def test_a_search_after_an_index_change_sees_the_change(platform):
    await following(platform)
    slots, doctor = await indexed_clinic(platform)
    before = free_units(await platform.search.search(DOCTORS_FREE))
    await hold(platform, await new_account(platform), slots[0])
    await platform.search.indexer.refresh_doctors([doctor])
    assert free_units(await platform.search.search(DOCTORS_FREE)) == before - 1


async def test_a_write_in_another_instance_ends_this_instances_answers(platform, other_instance):
    await following(platform)
    _slots, doctor = await indexed_clinic(platform)
    await platform.search.search(DOCTORS_FREE)
    assert len(platform.search.answers) == 1
    generation = platform.search.changes.generation
    await other_instance.search.indexer.refresh_doctors([doctor])
    await moved_past(platform, generation)
    key = platform.search.answers.key(DOCTORS_FREE, START.date())
    assert platform.search.answers.found(key) is None


async def test_a_lost_channel_leaves_no_answer_in_use(platform, redis_url):
    await following(platform)
    await indexed_clinic(platform)
    first = await platform.search.search(DOCTORS_FREE)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.client_kill_filter(_type="pubsub")
    finally:
        await client.aclose()
    async with asyncio.timeout(2):
        while platform.search.changes.live:  # noqa: ASYNC110 (a flag set by the follower)
            await asyncio.sleep(0.001)
    assert await platform.search.search(DOCTORS_FREE) is not first
    await following(platform)  # subscribed again: what was missed meanwhile is unknown
    again = await platform.search.search(DOCTORS_FREE)
    assert again is not first
    assert await platform.search.search(DOCTORS_FREE) is again


async def test_a_new_local_day_is_a_new_answer(platform):
    await following(platform)
    await indexed_clinic(platform)
    first = await platform.search.search(DOCTORS_FREE)
    manual_clock(platform).advance(days=1)
    assert await platform.search.search(DOCTORS_FREE) is not first


def test_remembered_answers_are_bounded_least_recently_used_first():
    answers = SearchAnswers(IndexChanges(), size=2)
    today = START.date()
    keys = [answers.key(SearchQuery(q=q), today) for q in ("a", "b", "c")]
    empty = SearchResult(total=0, page=1, page_size=20, hits=[])
    answers.keep(keys[0], empty, answers.ticket())
    answers.keep(keys[1], empty, answers.ticket())
    assert answers.found(keys[0]) is empty  # now the most recently used
    answers.keep(keys[2], empty, answers.ticket())
    assert len(answers) == 2
    assert answers.found(keys[1]) is None
    assert answers.found(keys[0]) is empty

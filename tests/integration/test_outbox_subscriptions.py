"""Outbox subscriptions are stored under declared names: the deployed set is pinned, a name the
database does not know stops the platform at start unless it is declared new, and cursors no
subscription reads any more are reported."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from guahao.bootstrap import Platform, open_platform
from guahao.platform.persistence.connector_tables import OutboxCursorRow
from guahao.platform.persistence.outbox import (
    OutboxDispatcher,
    OutboxEvent,
    UnknownSubscriptionError,
)
from guahao.platform.persistence.tables import OutboxRow
from tests.fixtures.platforms import held_with_patient, manual_clock, publish_clinic
from tests.integration.test_cli import GUAHAO, _env

DEPLOYED_SUBSCRIPTIONS = [
    "guahao.platform.services.notifications.InboxNotifier:",
    "guahao.search.indexer.SearchIndexer.handle:",
    "guahao.platform.services.blacklist.StrikeRecorder:booking.",
    "guahao.platform.services.suspicion.SuspicionDetector:booking.",
    "waitlist:booking",
    "waitlist:stop",
    "waitlist:prepayments",
    "offer-notices",
    "visit-reminders:schedule",
    "visit-reminders:send",
    "filings",
    "supply-demand-rollups",
    "hospital_connectors.his_notifier",
    "hospital_connectors.filing_sender",
    "hospital_connectors.his_holds",
    "availability-feed",
]
"""The cursor names deployed databases hold (the first four are the names the dispatcher
used to derive from the handlers' modules). Changing one replays every event to that
subscriber or leaves its cursor behind: move the cursor with ``guahao outbox rename``."""


async def ignore(event: OutboxEvent) -> None:
    del event


async def cursor_positions(platform: Platform) -> dict[str, int]:
    async with platform.ports.sessions() as session:
        rows = await session.execute(select(OutboxCursorRow.subscriber, OutboxCursorRow.position))
        return {str(name): int(position) for name, position in rows.all()}


async def last_event_id(platform: Platform) -> int:
    async with platform.ports.sessions() as session:
        return int(await session.scalar(select(func.max(OutboxRow.id))) or 0)


async def with_history(platform: Platform) -> None:
    """Events in the outbox, delivered to every subscriber: a database in service."""
    slots = await publish_clinic(platform)
    await held_with_patient(platform, slots[0])
    await platform.dispatcher.dispatch_pending()


def another_process(platform: Platform) -> OutboxDispatcher:
    """A dispatcher on the same database, as a newly deployed process would build it."""
    return OutboxDispatcher(platform.ports.sessions, platform.ports.clock)


async def test_the_composition_root_subscribes_under_the_names_deployed_cursors_know(
    sqlite_platform: Platform,
) -> None:
    assert sqlite_platform.dispatcher.subscribers == DEPLOYED_SUBSCRIPTIONS


async def test_a_fresh_database_opens_every_cursor_at_the_first_event(platform: Platform) -> None:
    assert await cursor_positions(platform) == dict.fromkeys(DEPLOYED_SUBSCRIPTIONS, 0)
    assert {r.state for r in await platform.dispatcher.cursors()} == {"subscribed"}


async def test_the_platform_refuses_to_start_on_a_subscription_the_database_does_not_know(
    platform: Platform,
) -> None:
    await with_history(platform)
    position = (await cursor_positions(platform))["filings"]
    async with platform.ports.sessions() as session, session.begin():  # as if code had renamed it
        await session.execute(
            update(OutboxCursorRow)
            .where(OutboxCursorRow.subscriber == "filings")
            .values(subscriber="filing-requests")
        )

    with pytest.raises(UnknownSubscriptionError) as refused:
        async with open_platform(platform.settings, clock=manual_clock(platform), migrate=False):
            pytest.fail("the platform started with an unknown subscription")

    assert refused.value.names == ["filings"]
    assert "'filings'" in str(refused.value)
    assert "guahao outbox rename" in str(refused.value)
    # the operator moves the old cursor to the name the code uses: it keeps its place
    await platform.dispatcher.rename("filing-requests", "filings")
    async with open_platform(
        platform.settings, clock=manual_clock(platform), migrate=False
    ) as restarted:
        assert (await cursor_positions(restarted))["filings"] == position


async def test_a_subscription_declared_new_starts_at_the_end_or_replays_the_history(
    platform: Platform,
) -> None:
    await with_history(platform)
    end = await last_event_id(platform)
    process = another_process(platform)
    process.subscribe("booking.", ignore, name="analytics", starts_at="beginning")
    process.subscribe("booking.", ignore, name="sms", starts_at="now")

    await process.start()

    positions = await cursor_positions(platform)
    assert (positions["analytics"], positions["sms"]) == (0, end)


async def test_an_undeclared_new_subscription_is_named_and_nothing_is_opened(
    platform: Platform,
) -> None:
    await with_history(platform)
    process = another_process(platform)
    process.subscribe("booking.", ignore, name="sms", starts_at="now")
    process.subscribe("booking.", ignore, name="stranger")

    with pytest.raises(UnknownSubscriptionError) as refused:
        await process.start()

    assert refused.value.names == ["stranger"]
    assert set(await cursor_positions(platform)) == set(DEPLOYED_SUBSCRIPTIONS)
    with pytest.raises(UnknownSubscriptionError):  # nor does it deliver anything
        await process.dispatch_pending()


async def test_cursors_no_subscription_reads_are_reported_at_start_and_kept(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    await with_history(platform)
    process = another_process(platform)
    process.subscribe("", ignore, name="offer-notices")

    with caplog.at_level(logging.WARNING, logger="guahao.platform.persistence.outbox"):
        unused = await process.start()

    assert unused == sorted(set(DEPLOYED_SUBSCRIPTIONS) - {"offer-notices"})
    assert "waitlist:stop" in caplog.text
    assert set(await cursor_positions(platform)) == set(DEPLOYED_SUBSCRIPTIONS)
    states = {r.name: r.state for r in await process.cursors()}
    assert states["offer-notices"] == "subscribed"
    assert states["filings"] == "unused"


async def test_processes_starting_together_open_a_new_cursor_once(platform: Platform) -> None:
    await with_history(platform)
    first, second = another_process(platform), another_process(platform)
    for process in (first, second):
        process.subscribe("booking.", ignore, name="sms", starts_at="now")

    await asyncio.gather(first.start(), second.start())

    assert (await cursor_positions(platform))["sms"] == await last_event_id(platform)


async def test_a_subscription_needs_its_own_name(sqlite_platform: Platform) -> None:
    dispatcher = sqlite_platform.dispatcher
    with pytest.raises(ValueError, match="already taken"):
        dispatcher.subscribe("", ignore, name="filings")
    with pytest.raises(ValueError, match="name of 1 to 200"):
        dispatcher.subscribe("", ignore, name="")


async def run_guahao(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_operator_lists_the_cursors_and_settles_an_unknown_one(
    sqlite_platform: Platform, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    platform = sqlite_platform
    await with_history(platform)
    await platform.dispatcher.rename("filings", "filing-requests")  # a rename, by hand
    env = _env(tmp_path, redis_url, GUAHAO_DATABASE_URL=sqlite_url)

    listed = await run_guahao("outbox", "cursors", env=env)

    assert listed.returncode == 0, listed.stderr
    states = {line.split()[-1]: line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert states["filings"] == "missing"
    assert states["filing-requests"] == "unused"
    assert states["waitlist:booking"] == "subscribed"
    assert "without a cursor" in listed.stderr

    taken = await run_guahao("outbox", "rename", "filing-requests", "waitlist:stop", env=env)
    assert taken.returncode != 0
    assert "already exists" in taken.stderr
    moved = await run_guahao("outbox", "rename", "filing-requests", "filings", env=env)
    assert moved.returncode == 0, moved.stderr
    started = await run_guahao("outbox", "start", "sms", "--at", "now", env=env)
    assert started.returncode == 0, started.stderr

    positions = await cursor_positions(platform)
    assert "filing-requests" not in positions
    assert positions["sms"] == await last_event_id(platform)

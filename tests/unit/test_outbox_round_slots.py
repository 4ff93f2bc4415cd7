"""The slots for the outbox's rounds: a prompt subscriber (one a citizen waits on, such as the
inbox notifier) takes the next free slot before subscribers that queued earlier, so a surge
that the heavy subscribers take long to work through does not make notifications late."""

from __future__ import annotations

import asyncio

from guahao.platform.persistence.outbox import _Gate


async def test_a_prompt_round_takes_the_next_slot_before_rounds_that_queued_earlier() -> None:
    gate = _Gate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def round_of(name: str, prompt: bool) -> None:
        async with gate.slot(prompt):
            order.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(round_of("holder", False))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(round_of("rollups", False)),
        asyncio.create_task(round_of("search", False)),
        asyncio.create_task(round_of("inbox", True)),
    ]
    await asyncio.sleep(0)  # all three queue behind the holder
    release.set()
    await asyncio.gather(holder, *waiting)

    assert order == ["holder", "inbox", "rollups", "search"]


async def test_a_round_cancelled_while_queued_gives_up_its_turn_not_a_slot() -> None:
    gate = _Gate(1)
    release = asyncio.Event()
    entered: list[str] = []

    async def round_of(name: str) -> None:
        async with gate.slot(False):
            entered.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(round_of("holder"))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(round_of("cancelled"))
    later = asyncio.create_task(round_of("later"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, later)

    assert entered == ["holder", "later"]
    async with asyncio.timeout(1):  # the one slot is free again
        async with gate.slot(False):
            pass

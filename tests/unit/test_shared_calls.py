"""``SharedCalls``: the crowd's misses of one key share one call."""

from __future__ import annotations

import asyncio

import pytest

from guahao.platform.shared_calls import SharedCalls


async def test_callers_of_one_key_meanwhile_share_one_call_and_a_later_one_calls_again() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def read(key: str) -> str:
        calls.append(key)
        await gate.wait()
        return f"{key} read {calls.count(key)}"

    shared: SharedCalls[str, str] = SharedCalls()
    waiting = [asyncio.ensure_future(shared("a", lambda: read("a"))) for _ in range(5)]
    other = asyncio.ensure_future(shared("b", lambda: read("b")))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == ["a read 1"] * 5
    assert await other == "b read 1"
    assert sorted(calls) == ["a", "b"]
    assert len(shared) == 0
    assert await shared("a", lambda: read("a")) == "a read 2"


async def test_one_caller_going_away_does_not_cancel_the_call_the_others_wait_for() -> None:
    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        return "answer"

    shared: SharedCalls[str, str] = SharedCalls()
    leaving = asyncio.ensure_future(shared("a", read))
    staying = asyncio.ensure_future(shared("a", read))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    assert await staying == "answer"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_after_clear_a_new_call_starts_and_the_old_ones_end_leaves_it_shared() -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    calls: list[int] = []

    async def read() -> int:
        n = len(calls)
        calls.append(n)
        await gates[n].wait()
        return n

    shared: SharedCalls[str, int] = SharedCalls()
    old = asyncio.ensure_future(shared("a", read))
    await asyncio.sleep(0)
    shared.clear()
    new = asyncio.ensure_future(shared("a", read))
    await asyncio.sleep(0)
    gates[0].set()
    assert await old == 0
    joining = asyncio.ensure_future(shared("a", read))  # still the new call's: not dropped
    await asyncio.sleep(0)
    gates[1].set()
    assert (await new, await joining) == (1, 1)
    assert calls == [0, 1]

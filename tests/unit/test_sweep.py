"""The sweep's steps are independent: a step that raises or runs out of time is logged,
counted and run again next round, and never holds up the steps after it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from guahao.platform.services.sweep import Sweep, SweepStep


class Steps:
    """Steps that record the order they ran in; ``broken`` raises while ``outage`` is set."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.outage = True

    async def first(self) -> int:
        self.ran.append("first")
        return 2

    async def broken(self) -> int:
        self.ran.append("broken")
        if self.outage:
            raise ConnectionError("the dependency is down")
        return 5

    async def last(self) -> int:
        self.ran.append("last")
        return 1

    def sweep(self) -> Sweep:
        return Sweep(
            [
                SweepStep("first", self.first),
                SweepStep("broken", self.broken),
                SweepStep("last", self.last),
            ]
        )


async def test_a_failing_step_is_counted_and_the_steps_after_it_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps = Steps()
    sweep = steps.sweep()

    with caplog.at_level(logging.ERROR):
        report = await sweep.run()

    assert steps.ran == ["first", "broken", "last"]
    assert report.counts == {"first": 2, "last": 1}
    assert report.failed == {"broken": "ConnectionError: the dependency is down"}
    assert report.failures == {"first": 0, "broken": 1, "last": 0}
    assert set(report.seconds) == {"first", "broken", "last"}
    [record] = [r for r in caplog.records if r.name == "guahao.platform.services.sweep"]
    assert "sweep step broken failed (1 round(s) in a row, 1 since start)" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


async def test_a_failed_step_runs_again_next_round_and_its_count_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps = Steps()
    sweep = steps.sweep()
    await sweep.run()
    second = await sweep.run()
    assert second.failures["broken"] == 2

    steps.outage = False
    with caplog.at_level(logging.WARNING):
        recovered = await sweep.run()

    assert recovered.counts == {"first": 2, "broken": 5, "last": 1}
    assert recovered.failed == {}
    assert sweep.failures == {"first": 0, "broken": 2, "last": 0}
    assert "sweep step broken works again after 2 failed round(s)" in caplog.text


async def test_a_step_that_hangs_runs_out_of_its_budget_without_holding_up_the_rest() -> None:
    never = asyncio.Event()
    ran: list[str] = []

    async def hangs() -> int:
        await never.wait()
        return 0

    async def after() -> int:
        ran.append("after")
        return 3

    sweep = Sweep([SweepStep("hangs", hangs), SweepStep("after", after)], step_timeout=0.05)

    report = await sweep.run()

    assert report.failed == {"hangs": "TimeoutError: the step ran out of its time budget"}
    assert report.counts == {"after": 3}
    assert ran == ["after"]


def test_step_names_are_unique() -> None:
    async def step() -> int:
        return 0

    with pytest.raises(ValueError, match="unique"):
        Sweep([SweepStep("a", step), SweepStep("a", step)])

"""The periodic sweep (every 15 s on the job queue): expiries, cut-offs, no-shows, refunds,
search freshness, lottery draws and waitlist grants, each a safe-to-repeat step of a service.

The steps are independent: one that fails (a dependency down, a bug in one service) must not
hold up the others, or an outage of one subsystem would stop expiring holds everywhere. So
each step runs on its own, in a fixed order, under its own time budget; a failure is logged
with its exception, counted, and the step simply runs again next round (every step picks up
whatever is still due). The counts live in this object for the life of the process and go
out in every round's report, which the job queue keeps as the job's result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

__all__ = ["STEP_TIMEOUT_SECONDS", "Sweep", "SweepReport", "SweepStep"]

log = logging.getLogger(__name__)

STEP_TIMEOUT_SECONDS = 12.0
"""A step's budget per round. Nine steps at most 12 s each stay inside the 120 s the job
queue allows the sweep; a step that runs out is cancelled, counted as failed and resumes next
round from what is still due (steps commit as they go)."""


@dataclass(frozen=True)
class SweepStep:
    """One step: ``run`` does what is due and returns how many things it handled."""

    name: str
    run: Callable[[], Awaitable[int]]


class SweepReport(msgspec.Struct, frozen=True):
    """One round, as the job queue stores it and an operator reads it."""

    counts: dict[str, int]
    """What each step that succeeded handled in this round."""
    failed: dict[str, str]
    """Steps that failed in this round, with their exception."""
    failures: dict[str, int]
    """Failed rounds per step since this process started (steps that never failed: 0)."""
    seconds: dict[str, float]
    """How long each step took in this round."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: the step ran out of its time budget"
    return f"{type(exc).__name__}: {exc}"[:500]


class Sweep:
    """Runs its steps one after the other, each isolated from the others' failures."""

    def __init__(
        self, steps: Sequence[SweepStep], *, step_timeout: float = STEP_TIMEOUT_SECONDS
    ) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"sweep step names must be unique: {names}")
        self._steps = list(steps)
        self._step_timeout = step_timeout
        self._failures = dict.fromkeys(names, 0)
        self._in_a_row = dict.fromkeys(names, 0)

    @property
    def steps(self) -> list[str]:
        return [s.name for s in self._steps]

    @property
    def failures(self) -> dict[str, int]:
        """Failed rounds per step since this process started."""
        return dict(self._failures)

    async def run(self) -> SweepReport:
        """One round of every step; never raises for a step's failure."""
        counts: dict[str, int] = {}
        failed: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for step in self._steps:
            began = time.monotonic()
            try:
                async with asyncio.timeout(self._step_timeout):
                    counts[step.name] = await step.run()
            except Exception as exc:  # isolated: the next step runs whatever this one did
                self._failures[step.name] += 1
                self._in_a_row[step.name] += 1
                failed[step.name] = _describe(exc)
                log.error(
                    "sweep step %s failed (%d round(s) in a row, %d since start); "
                    "it runs again next round",
                    step.name,
                    self._in_a_row[step.name],
                    self._failures[step.name],
                    exc_info=exc,
                )
            else:
                if self._in_a_row[step.name]:
                    log.warning(
                        "sweep step %s works again after %d failed round(s)",
                        step.name,
                        self._in_a_row[step.name],
                    )
                self._in_a_row[step.name] = 0
            seconds[step.name] = round(time.monotonic() - began, 3)
        return SweepReport(counts=counts, failed=failed, failures=self.failures, seconds=seconds)

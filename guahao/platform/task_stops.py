"""Stopping a background task for sure, on a Python whose ``asyncio.wait_for`` can lose a
cancellation.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result, and drops the cancellation,
when its task is cancelled in the same loop turn as the awaited work finishes (CPython
gh-86296, fixed in 3.12 by rebuilding ``wait_for`` on ``asyncio.timeout``). redis-py wraps
every command's socket write in ``wait_for`` (its default ``socket_timeout`` is 5 s), so a
background loop cancelled while it sends a command to Redis can carry on as if nothing
happened: ``task.cancel(); await task`` then waits forever. That is how a publish of the
bench hung after its work was done (``bench/fhir_ingest.py``): the shared clock's
calibration loop lost the cancel of the platform's shutdown and went back to sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

__all__ = ["RECANCEL_SECONDS", "cancel_and_wait", "raise_if_cancelling"]

RECANCEL_SECONDS: Final = 0.1
"""How long a cancelled task may keep running before it is cancelled again."""


async def cancel_and_wait(
    task: asyncio.Task[Any], *, recancel_seconds: float = RECANCEL_SECONDS
) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on (a
    lost cancellation); its ``CancelledError`` is not raised here, its other errors are."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=recancel_seconds)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def raise_if_cancelling() -> None:
    """For a background loop, once per round: end the running task if a cancellation was
    asked of it and lost on the way (a cancel still counted by ``Task.cancelling``; one
    handled by ``asyncio.timeout`` or a ``TaskGroup`` is taken back by them)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

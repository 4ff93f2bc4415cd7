"""Live availability on a doctor's page: server-sent events fed through Redis pub/sub.

Every worker process keeps ONE subscription to the availability channel (``AvailabilityHub``)
and fans each message out to the pages it serves; a message names a session, and the pages
showing it re-read its counts. Viewers of one doctor share one read per moment
(``SnapshotCache``), so a release surge of thousands of viewers costs a few reads a second,
not one per viewer per change. Between messages a keep-alive comment (and a fresh read) every
few seconds keeps proxies from closing the stream and catches a release time passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import redis.asyncio as aioredis
from litestar import Controller, Request, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from guahao.platform.clock import Clock, to_epoch_ms
from guahao.platform.services.availability_feed import CHANNEL
from guahao.platform.services.queries import QueryService, SessionAvailability
from guahao.platform.task_stops import cancel_and_wait, raise_if_cancelling
from guahao.web.pages.browsing import SCHEDULE_DAYS
from guahao.web.pages.page_context import REGION_ZONE

__all__ = ["AvailabilityHub", "LivePages", "Snapshot", "hub_of", "next_change", "stop_hub"]

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.15
"""Changes arriving this close together are shown in one update."""

KEEPALIVE_SECONDS = 5.0
"""A comment (and a fresh read) at least this often on a quiet stream."""


async def next_change(changes: asyncio.Queue[Any]) -> bool:
    """Wait for the next change of a stream's sessions, then let those close behind it
    arrive (one update for a burst); False when ``KEEPALIVE_SECONDS`` passed quietly, the
    moment for a keep-alive comment and a fresh read. Shared by every live stream (the
    citizens' availability, the console's session counts)."""
    try:
        async with asyncio.timeout(KEEPALIVE_SECONDS):  # never drops a cancel (``wait_for`` may)
            await changes.get()
    except TimeoutError:
        return False
    await asyncio.sleep(DEBOUNCE_SECONDS)
    while not changes.empty():
        changes.get_nowait()
    return True


SNAPSHOT_TTL_SECONDS = 0.3
"""Viewers of one doctor share a read made less than this long ago."""


class SessionUnits(msgspec.Struct, frozen=True):
    available: int
    released: bool
    status: str
    release_ms: int
    slots: dict[str, int]


class Snapshot(msgspec.Struct, frozen=True):
    """What a doctor's page shows live: units left per session and per segment."""

    now_ms: int
    sessions: dict[str, SessionUnits]


def snapshot_of(sessions: list[SessionAvailability], clock: Clock) -> Snapshot:
    now = clock.now()
    return Snapshot(
        now_ms=to_epoch_ms(now),
        sessions={
            s.id: SessionUnits(
                available=s.available,
                released=s.released,
                status=s.status,
                release_ms=max(0, to_epoch_ms(s.release_at) - to_epoch_ms(now)),
                slots={slot.id: slot.available for slot in s.slots},
            )
            for s in sessions
        },
    )


class AvailabilityHub:
    """One pub/sub subscription per process, fanned out to local listeners."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._listeners: dict[int, tuple[frozenset[str], asyncio.Queue[str]]] = {}
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        while True:
            raise_if_cancelling()  # a cancel lost in a subscribe's socket write still ends it
            try:
                pubsub = self._redis.pubsub()
                try:
                    await pubsub.subscribe(CHANNEL)
                    self._ready.set()
                    async for message in pubsub.listen():
                        raise_if_cancelling()
                        if message.get("type") != "message":
                            continue
                        data = message["data"]
                        session_id = data.decode() if isinstance(data, bytes) else str(data)
                        for sessions, queue in list(self._listeners.values()):
                            if session_id in sessions:
                                queue.put_nowait(session_id)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarted: listeners keep their keep-alive reads
                log.warning("availability subscription lost, resubscribing: %s", exc)
                await asyncio.sleep(1)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="guahao-availability-hub")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._ready.wait()

    async def stop(self) -> None:
        """End the subscription for sure (``guahao.platform.task_stops``)."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)

    @contextlib.asynccontextmanager
    async def listen(self, session_ids: frozenset[str]) -> AsyncIterator[asyncio.Queue[str]]:
        await self.start()
        key = next(self._ids)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._listeners[key] = (session_ids, queue)
        try:
            yield queue
        finally:
            self._listeners.pop(key, None)


class SnapshotCache:
    """Shares one read of a doctor's availability among the viewers of one moment."""

    def __init__(self) -> None:
        self._reads: dict[str, tuple[float, asyncio.Future[Snapshot]]] = {}

    async def get(self, doctor_id: str, read: Callable[[], Awaitable[Snapshot]]) -> Snapshot:
        now = time.monotonic()
        found = self._reads.get(doctor_id)
        if found is not None and now - found[0] < SNAPSHOT_TTL_SECONDS:
            return await asyncio.shield(found[1])
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._reads[doctor_id] = (now, future)
        try:
            future.set_result(await read())
        except BaseException as exc:
            future.set_exception(exc)
            self._reads.pop(doctor_id, None)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        return future.result()


def hub_of(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[AvailabilityHub, SnapshotCache]:
    state = connection.app.state
    hub: AvailabilityHub | None = state.get("availability_hub")
    if hub is None:
        hub = AvailabilityHub(state.platform.redis)
        state.availability_hub = hub
        state.availability_snapshots = SnapshotCache()
    cache: SnapshotCache = state.availability_snapshots
    return hub, cache


async def stop_hub(state: Any) -> None:
    """Called when the app shuts down."""
    hub: AvailabilityHub | None = state.get("availability_hub")
    if hub is not None:
        await hub.stop()


class LivePages(Controller):
    path = "/live"
    include_in_schema = False

    async def _read(self, queries: QueryService, clock: Clock, doctor_id: str) -> Snapshot:
        today = clock.now().astimezone(REGION_ZONE).date()
        sessions = await queries.doctor_availability(
            doctor_id, start=today, end=today + timedelta(days=SCHEDULE_DAYS - 1)
        )
        return snapshot_of(sessions, clock)

    @get("/doctors/{doctor_id:str}/units", name="live_units")
    async def units(
        self,
        queries: NamedDependency[QueryService],
        clock: NamedDependency[Clock],
        doctor_id: FromPath[str],
        request: Request[Any, Any, Any],
    ) -> Snapshot:
        """The doctor's units now (the page asks when a release countdown reaches zero)."""
        _, cache = hub_of(request)
        return await cache.get(doctor_id, lambda: self._read(queries, clock, doctor_id))

    @get("/doctors/{doctor_id:str}", name="live_stream")
    async def stream(
        self,
        queries: NamedDependency[QueryService],
        clock: NamedDependency[Clock],
        doctor_id: FromPath[str],
        request: Request[Any, Any, Any],
    ) -> ServerSentEvent:
        """``text/event-stream`` of ``Snapshot``s: one now, then one per change."""
        hub, cache = hub_of(request)
        first = await self._read(queries, clock, doctor_id)  # DOCTOR_NOT_FOUND before streaming

        async def read() -> Snapshot:
            return await cache.get(doctor_id, lambda: self._read(queries, clock, doctor_id))

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            async with hub.listen(frozenset(first.sessions)) as changes:
                last = _units_of(first)
                yield ServerSentEventMessage(data=_encode(first), event="units")
                while True:
                    if not await next_change(changes):
                        yield ServerSentEventMessage(comment="keep-alive")
                    snapshot = await read()
                    if _units_of(snapshot) != last:
                        last = _units_of(snapshot)
                        yield ServerSentEventMessage(data=_encode(snapshot), event="units")

        return ServerSentEvent(events(), headers={"Cache-Control": "no-store"})


def _encode(snapshot: Snapshot) -> str:
    return msgspec.json.encode(snapshot).decode()


def _units_of(snapshot: Snapshot) -> dict[str, tuple[int, bool, str, dict[str, int]]]:
    """What a viewer sees change (countdowns move by themselves in the page)."""
    return {
        sid: (s.available, s.released, s.status, s.slots) for sid, s in snapshot.sessions.items()
    }

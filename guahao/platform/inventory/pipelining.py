"""Automatic pipelining: script calls made in the same event-loop turn share one round trip.

At release time one worker process serves hundreds of people at once, each an independent
coroutine that needs one or two tiny scripts run. Sent one by one, every script costs a socket
write and read in Python (on the order of 100 µs here) while Redis itself runs it in a few
microseconds, so the worker, not Redis, would cap the surge. Calls queued during one turn of
the event loop are instead sent as one non-transactional pipeline. Each script stays atomic
on its own; batching changes only how many calls share a packet, never their meaning. A
coroutine that awaits each call before the next sees them run in its order; calls queued
together with ``submit`` keep their order on one server, but on a cluster calls to different
nodes run in no fixed order (hold_batches.py).

On Redis Cluster a batch is split by the node that serves each call's hash slot (every script
keeps its keys under one hash tag, so each call has one slot); each node has a lane with one
packet in flight, its callers answered when that node replies, and the calls that arrive
meanwhile go together in its next packet. A call the cluster redirects (MOVED or ASK while
slots move), or a node that has not seen the script yet, is sent again on its own through the
cluster client, which follows the redirect and refreshes its map of slots for the batches
after it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MaxConnectionsError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.redis_pools import RETRIES_ON_BROKEN_CONNECTION

__all__ = ["AutoPipeline"]

_SEND_ALONE = (NoScriptError, AskError, TryAgainError, ClusterDownError)
"""Replies after which a cluster call is resent alone through the cluster client (``MovedError``
is an ``AskError``; a call whose slot no known node serves is marked ``TryAgainError``)."""

_NODE_BUSY_PAUSE_S = 0.002
"""A cluster node's connections are all in use: wait this long and try for one again."""


@dataclass
class _Call:
    script: LuaScript
    keys: Sequence[str]
    args: Sequence[str | int | bytes]
    future: asyncio.Future[Any] = field(repr=False)
    packed: bytes | None = field(default=None, repr=False)
    """The call already in RESP, as ``hiredis.pack_command`` makes it (None: packed here)."""


class AutoPipeline:
    """Runs ``EVALSHA`` calls, coalescing those issued in the same loop turn.

    ``max_batch`` bounds one pipeline so a huge crowd is split over several connections of the
    client's pool instead of one enormous packet.
    """

    def __init__(self, redis: Redis, *, max_batch: int = 256, reply_timeout: float = 10.0) -> None:
        self._redis = redis
        self._reply_timeout = reply_timeout
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        # Redis Cluster: calls waiting for their node's packet in flight, by node name, and
        # the nodes with a packet in flight
        self._lanes: dict[str, list[_Call]] = {}
        self._draining: set[str] = set()

    async def run(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        *,
        packed: bytes | None = None,
    ) -> Any:
        """The script's reply; its own errors (and connection errors) are raised here."""
        return await self.submit(script, keys, args, packed=packed)

    def submit(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        *,
        packed: bytes | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a call and hand back the future of its reply, without a coroutine: a caller
        with thousands of calls at once (publishing a schedule's slots) awaits the futures
        together instead of paying a coroutine, a task and a wake-up for each.

        ``packed``: the call's ``EVALSHA`` in RESP, from a caller that keeps its keys' bytes
        (the rate limiter's sync); sent as it is (``keys`` and ``args`` still route it on a
        cluster and resend it alone there)."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future(), packed)
        self._queue.append(call)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return call.future

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), self._max_batch):
            task = asyncio.get_running_loop().create_task(
                self._send(queue[start : start + self._max_batch])
            )
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: list[_Call]) -> None:
        if isinstance(self._redis, RedisCluster):
            await self._send_to_cluster(self._redis, batch)
            return
        try:
            replies = await self._server_replies(batch)
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        _resolve(batch, replies)

    async def _server_replies(self, batch: list[_Call]) -> list[Any]:
        pool = self._redis.connection_pool

        async def release(connection: AbstractConnection) -> None:
            await pool.release(connection)

        async def acquire() -> AbstractConnection:
            return await pool.get_connection()  # type: ignore[no-untyped-call, no-any-return]

        replies = await self._execute_retrying(batch, acquire, release)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # first use, restart or failover: load the scripts and resend those
            for script in {batch[i].script.sha: batch[i].script for i in missing}.values():
                await self._redis.script_load(script.source)
            again = await self._execute([batch[i] for i in missing], acquire, release)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _send_to_cluster(self, cluster: RedisCluster, batch: list[_Call]) -> None:
        """Each node's share of the batch joins that node's lane; a lane has one packet in
        flight at a time, and its callers are answered as soon as their own node replies.

        Two ways this went wrong before (profiles ``bench/profiles/engine-*-cluster.txt``):
        answering nobody until every node had replied made each call as slow as the slowest
        of the three servers; answering per node but sending at once split the crowd into
        many small packets (a third more CPU per decision in the worker, each packet waking a
        server). A lane keeps the packets as large as one server's round trip allows.
        """
        try:
            await cluster.initialize()  # a no-op once the map of slots is known
            by_node: dict[ClusterNode | None, list[_Call]] = {}
            for call in batch:
                # None: no known node serves the slot; the cluster client finds it
                by_node.setdefault(cluster.get_node_from_key(call.keys[0]), []).append(call)
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        drains = []
        for node, calls in by_node.items():
            if node is None:
                drains.append(self._send_to_node(cluster, None, calls))
                continue
            self._lanes.setdefault(node.name, []).extend(calls)
            if node.name not in self._draining:  # else the packet in flight's drain sends them
                self._draining.add(node.name)
                drains.append(self._drain_lane(cluster, node))
        await asyncio.gather(*drains)

    async def _drain_lane(self, cluster: RedisCluster, node: ClusterNode) -> None:
        lane = self._lanes[node.name]
        try:
            while lane:
                calls = lane[: self._max_batch]
                del lane[: self._max_batch]
                await self._send_to_node(cluster, node, calls)
        except BaseException as exc:  # cancelled: the calls still queued are not sent
            _fail(lane, exc)
            lane.clear()
            raise
        finally:
            self._draining.discard(node.name)

    async def _send_to_node(
        self, cluster: RedisCluster, node: ClusterNode | None, calls: list[_Call]
    ) -> None:
        try:
            replies = await self._node_replies(cluster, node, calls)
            # Redirected while slots move, or on a slot no known node served: one at a time,
            # so the first redirect refreshes the map for the rest.
            for i, reply in enumerate(replies):
                if isinstance(reply, _SEND_ALONE):
                    replies[i] = await _eval_alone(cluster, calls[i])
        except BaseException as exc:
            _fail(calls, exc)
            if not isinstance(exc, Exception):
                raise
            return
        _resolve(calls, replies)

    async def _node_replies(
        self, cluster: RedisCluster, node: ClusterNode | None, calls: list[_Call]
    ) -> list[Any]:
        if node is None:
            return [TryAgainError("not sent")] * len(calls)
        connections = _node_connections(node, self._reply_timeout)
        try:
            replies = await self._execute_retrying(calls, *connections)
        except RedisConnectionError:
            # That node is away (a failover, say): its calls go alone through the cluster
            # client, which refreshes the map; the other nodes' replies stand.
            return [TryAgainError("node away")] * len(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # first use, restart or failover: load on every primary, resend those
            for script in {calls[i].script.sha: calls[i].script for i in missing}.values():
                await cluster.script_load(script.source)
            try:
                again = await self._execute_retrying([calls[i] for i in missing], *connections)
            except RedisConnectionError:
                again = [TryAgainError("node away")] * len(missing)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _execute_retrying(
        self,
        batch: list[_Call],
        acquire: Callable[[], Awaitable[AbstractConnection]],
        release: Callable[[AbstractConnection], Awaitable[None]],
    ) -> list[Any]:
        """``_execute``, again on a fresh connection when the pooled one was broken.

        A pooled connection outlives a Redis restart as a dead socket; without this, the
        first calls after Redis came back failed once per pooled connection (503s for a
        while). Re-sending is safe: every slot script is idempotent per hold or unit id (see
        ``guahao.platform.redis_pools``).
        """
        for _ in range(RETRIES_ON_BROKEN_CONNECTION):
            try:
                return await self._execute(batch, acquire, release)
            except RedisConnectionError:
                continue
        return await self._execute(batch, acquire, release)

    async def _execute(
        self,
        batch: list[_Call],
        acquire: Callable[[], Awaitable[AbstractConnection]],
        release: Callable[[AbstractConnection], Awaitable[None]],
    ) -> list[Any]:
        """Write the whole batch in one packet and read one reply per call.

        The commands are packed by hiredis (C) rather than redis-py's Python packer, which
        profiling showed to be the largest cost of a surge; replies are parsed by the
        connection's own (hiredis) parser, so errors arrive as redis-py's exception types.
        """
        packet = b"".join(
            hiredis.pack_command(
                ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)  # type: ignore[arg-type]
            )
            if call.packed is None
            else call.packed
            for call in batch
        )
        connection = await acquire()
        try:
            replies: list[Any] = []
            # One deadline for the whole batch, its write and its replies, instead of a timer
            # per reply (the replies arrive together; per-reply timers were a third of the
            # surge's CPU).
            async with asyncio.timeout(self._reply_timeout):
                await _write(connection, packet)
                for _ in batch:
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
        except TimeoutError as exc:  # asyncio's, the deadline's: Redis's own, so a 503
            await connection.disconnect()
            raise RedisTimeoutError(f"no reply within {self._reply_timeout} s") from exc
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await release(connection)
        return replies


async def _write(connection: AbstractConnection, packet: bytes) -> None:
    """``send_packed_command`` without its deadline: redis-py wraps the write of a
    connection with a socket timeout in ``asyncio.wait_for``, a task, a timer and a loop
    turn of their own for every packet (0.12 of a task a grant, bench/grant_count.py), while
    ``_execute``'s one deadline already bounds the write with the replies. An ``OSError``
    is raised as redis-py's ``ConnectionError`` (``_execute_retrying`` tries a fresh
    connection on it); the caller disconnects on any error, as redis-py does."""
    if not connection.is_connected:  # a cluster node's connection, taken before its first use
        await connection.connect_check_health(check_health=False)
    writer = connection._writer
    if writer is None:
        raise RedisConnectionError("the connection closed before its packet was written")
    try:
        writer.write(packet)
        await writer.drain()
    except OSError as exc:
        raise RedisConnectionError(f"Error while writing to socket: {exc!r}") from exc


def _resolve(calls: list[_Call], replies: list[Any]) -> None:
    for call, reply in zip(calls, replies, strict=True):
        if call.future.done():  # the caller gave up (cancelled); nothing to tell
            continue
        if isinstance(reply, BaseException):
            call.future.set_exception(reply)
        else:
            call.future.set_result(reply)


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)


def _node_connections(
    node: ClusterNode, wait: float
) -> tuple[
    Callable[[], Awaitable[AbstractConnection]], Callable[[AbstractConnection], Awaitable[None]]
]:
    """Take and give back connections of one cluster node, waiting up to ``wait`` seconds
    while all are in use (the node's pool refuses past its size instead of waiting, as the
    server pool does); then ``MaxConnectionsError``, a ``ConnectionError``."""

    async def acquire() -> AbstractConnection:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                return node.acquire_connection()
            except MaxConnectionsError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(_NODE_BUSY_PAUSE_S)

    async def release(connection: AbstractConnection) -> None:
        node.release(connection)  # type: ignore[arg-type]

    return acquire, release


async def _eval_alone(cluster: RedisCluster, call: _Call) -> Any:
    """One call through the cluster client: it follows MOVED and ASK and refreshes its map of
    slots. ``EVAL`` (the script's text) also loads the script on a node that lacked it, so the
    next batches' ``EVALSHA`` find it there."""
    try:
        return await cluster.execute_command(
            "EVAL", call.script.source, len(call.keys), *call.keys, *call.args
        )
    except Exception as exc:  # this call's own outcome: the caller's future raises it
        return exc

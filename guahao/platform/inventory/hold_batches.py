"""Holds made in the same event-loop turn decided together: one ``hold_many.lua`` call a batch.

At a release a worker's hundreds of concurrent holds reach Redis in the same loop turn. The
automatic pipeline already sends them in one packet, but each was still its own script call,
and Redis, not the worker, was then the bound: a grant's script cost Redis 25-58 µs against 3 µs
for the ceiling's decrement (``bench/profiles/engine3-*``). Decided together, a call's fixed
cost is paid once and a hot slot's reads, writes and announcement once per call: on a few hot
slots Redis's CPU per grant fell by about a third; holds spread over many slots still pay
their own slot's work each (bench/README.md, branch engine3). ``HoldBatcher`` queues the holds
of one loop turn and sends
them as a few ``hold_many`` calls, each deciding its holds in the order they were asked, each
as it would be decided alone (a call of one); every caller gets its own reply, or the batch's
error.

On one server a call may take any slots (up to ``HOLD_BATCH`` holds); on Redis Cluster a call
only takes slots of one hash slot, so each call runs on one shard and the pipeline routes it.
Calls to different shards are in no fixed order, so on a cluster one account's holds on two
slots asked in the same turn are not decided in the order asked: one of them is granted,
whichever claims the account's marker first (tests/integration/test_inventory_hold_batches.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import hiredis
from redis.asyncio.cluster import RedisCluster

from guahao.platform.inventory.lua_scripts import HOLD_MANY
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.platform.inventory.slot_keys import FAMILY_MEMORY

__all__ = ["HOLD_BATCH", "HoldBatcher", "HoldRequest", "hold_many_call", "packed_hold_many"]

HOLD_BATCH = 64
"""How many holds one ``hold_many`` call decides. Redis runs nothing else meanwhile: 64
grants keep a call near a millisecond on a loaded machine, while a batch of 200 callers still
pays the call's fixed cost only four times."""


@dataclass(slots=True)
class HoldRequest:
    """One caller's hold as ``hold_many.lua`` takes it: the slot's family, the idempotency
    record, and (on one server) the account's marker with the value and PX to write. Not
    frozen: a frozen dataclass's ``__init__`` cost a tenth of a hold's Python."""

    family: tuple[str, ...]
    replay_key: str
    marker: str | None
    hold_id: str
    account_id: str
    now_ms: int
    expires_at_ms: int
    marker_value: str = ""
    marker_px: int = 0


def hold_many_call(
    requests: Sequence[HoldRequest], replay_ttl_ms: int
) -> tuple[list[str], list[str | int]]:
    """The KEYS and ARGV of one ``hold_many`` call deciding ``requests`` in order (all with a
    marker or all without). The batcher sends a loop turn's holds this way on a cluster, and
    a hold that must wait alone (a fenced slot, the platform's own offer) is a call of one:
    there is one hold script."""
    families, hold_keys, head, hold_args = _call_parts(requests, replay_ttl_ms)
    keys = [key for family in families for key in _script_family(family)]
    return [*keys, *hold_keys], [*head, *hold_args]


def packed_hold_many(requests: Sequence[HoldRequest], replay_ttl_ms: int) -> bytes:
    """``hold_many_call``'s call as the ``EVALSHA`` hiredis would pack (the same bytes), each
    slot's six key names packed once and kept (``_packed_family``), not again in every call.

    On slots spread over a release the families were a third of a call's arguments, and
    packing was the largest piece of a grant's Python after the awaits
    (bench/profiles/engine8-1-*). Only for one server: a cluster routes a call by its keys.
    """
    families, hold_keys, head, hold_args = _call_parts(requests, replay_ttl_ms)
    keys = 6 * len(families) + len(hold_keys)
    rest = _bulk_strings(hiredis.pack_command((*hold_keys, *head, *hold_args)))  # type: ignore[arg-type]
    # the call's count of bulk strings: EVALSHA, the SHA, the keys' count, keys, arguments
    start = b"*%d\r\n" % (3 + keys + len(head) + len(hold_args))
    start += _bulk_strings(hiredis.pack_command(("EVALSHA", HOLD_MANY.sha, keys)))  # type: ignore[arg-type]
    return b"".join([start, *map(_packed_family, families), rest])


def _call_parts(
    requests: Sequence[HoldRequest], replay_ttl_ms: int
) -> tuple[list[tuple[str, ...]], list[str], list[str | int], list[str | int]]:
    """A call's slot families (in the order its holds first name them), its holds' keys, the
    four arguments ahead of the holds' and the holds' seven each."""
    slot_numbers: dict[str, int] = {}
    families: list[tuple[str, ...]] = []
    hold_keys: list[str] = []
    hold_args: list[str | int] = []
    for request in requests:
        number = slot_numbers.get(request.family[0])
        if number is None:
            number = slot_numbers[request.family[0]] = len(slot_numbers) + 1
            families.append(request.family)
        hold_keys.append(request.replay_key)
        if request.marker is not None:
            hold_keys.append(request.marker)
        hold_args += (
            number,
            request.hold_id,
            request.account_id,
            request.now_ms,
            request.expires_at_ms,
            request.marker_value,
            request.marker_px,
        )
    claims = int(requests[0].marker is not None)
    return families, hold_keys, [len(families), len(requests), replay_ttl_ms, claims], hold_args


def _script_family(family: tuple[str, ...]) -> tuple[str, ...]:
    """The six of a slot's family keys ``hold_many.lua`` takes (no CANCELLED: a hold never
    reads it)."""
    meta, hold_expiry, hold_owner, returning, confirmed, _cancelled, fence = family
    return meta, hold_expiry, hold_owner, returning, confirmed, fence


def _bulk_strings(packed: bytes) -> bytes:
    """A packed command without its ``*<count>`` line: its bulk strings alone."""
    return packed[packed.index(b"\r\n") + 2 :]


@lru_cache(maxsize=FAMILY_MEMORY)
def _packed_family(family: tuple[str, ...]) -> bytes:
    """A slot's ``_script_family`` as bulk strings."""
    return _bulk_strings(hiredis.pack_command(_script_family(family)))  # type: ignore[arg-type]


class HoldBatcher:
    """Queues holds and sends those of one loop turn as ``hold_many`` calls through the
    automatic pipeline (which still shares one packet among everything else queued)."""

    def __init__(
        self,
        pipeline: AutoPipeline,
        *,
        cluster: RedisCluster | None,
        replay_ttl_ms: int,
        max_holds: int = HOLD_BATCH,
    ) -> None:
        if max_holds < 1:
            raise ValueError("max_holds must be at least 1")
        self._pipeline = pipeline
        self._cluster = cluster
        self._replay_ttl_ms = replay_ttl_ms
        self._max_holds = max_holds
        self._queue: list[tuple[HoldRequest, asyncio.Future[Any]]] = []
        self._scheduled = False

    def submit(self, request: HoldRequest) -> asyncio.Future[Any]:
        """Queue one hold; the future's result is its reply from ``hold_many.lua``. Holds
        with a marker and holds without may not share a batcher (see ``RedisInventory``)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        if self._cluster is None:
            groups = [queue]
        else:
            by_hash_slot: dict[int, list[tuple[HoldRequest, asyncio.Future[Any]]]] = {}
            keyslot = self._cluster.keyslot
            for queued in queue:
                by_hash_slot.setdefault(keyslot(queued[0].family[0]), []).append(queued)
            groups = list(by_hash_slot.values())
        for group in groups:
            for start in range(0, len(group), self._max_holds):
                self._send(group[start : start + self._max_holds])

    def _send(self, batch: list[tuple[HoldRequest, asyncio.Future[Any]]]) -> None:
        requests = [request for request, _ in batch]
        if self._cluster is None:  # one server routes nothing: only the packed call is sent
            packed = packed_hold_many(requests, self._replay_ttl_ms)
            reply = self._pipeline.submit(HOLD_MANY, (), (), packed=packed)
        else:
            keys, args = hold_many_call(requests, self._replay_ttl_ms)
            reply = self._pipeline.submit(HOLD_MANY, keys, args)
        futures = [future for _, future in batch]
        reply.add_done_callback(lambda done: _answer(futures, done))


def _answer(futures: list[asyncio.Future[Any]], done: asyncio.Future[Any]) -> None:
    """Each caller its own reply; on an error (a lost connection, say) every caller the same
    error: the call either ran whole or not at all, so nobody is told a half."""
    if done.cancelled():
        for future in futures:
            if not future.done():
                future.cancel()
        return
    error = done.exception()
    if error is not None:
        for future in futures:
            if not future.done():
                future.set_exception(error)
        return
    replies = done.result()
    for future, reply in zip(futures, replies, strict=True):
        if future.done():
            continue
        if isinstance(reply, BaseException):  # that hold's own error reply
            future.set_exception(reply)
        elif len(reply) == 4 and isinstance(reply[3], int):
            # a sold-out answer given in full to an earlier hold of the call (hold_many.lua)
            future.set_result(replies[reply[3] - 1])
        else:
            future.set_result(reply)

"""Request rate limits on the shared Redis, with the ``limits`` library.

Sliding-window counters: two small keys per counter (one item of a limit for one identifier),
and no burst at a window's edge (a fixed window lets a bot spend two windows' worth in the
second around the edge, which is exactly when slots are released). The limits are region rules
(``RegionRules.rate_limits``); the keys are the account, the device, the address and the
phone, each as given by the caller (addresses and devices as keyed hashes, never raw).

The counting is the library's sliding window (``acquire_sliding_window.lua`` from the
``limits`` package: its keys named as the library names them, its shift of windows and its
test, so its ``get_window_stats`` reads what was counted), in scripts of ours sent through
the inventory's automatic pipeline: the limits of every request in one event-loop turn share
one round trip, where the library sent one script per limit per request, each on a
connection of its own. At a release surge that was three round trips per hold before the
slot pool was even asked.

On Redis Cluster (a ``redis+cluster://`` URL) the automatic pipeline routes each count to the
node of its keys' hash slot (the library tags both keys of a counter alike, ``prefix:{key}``
and ``prefix:{key}/-1``). Nothing here reads the windows through the library; the tests do
(tests/fixtures/limit_windows.py).

**Counted here first, in Redis within 50 ms.** Even pipelined, that round trip was 12–15 % of a
sold-out refusal (``bench/profiles/11-*``, ``14-surge-soldout-*``), paid by every request of a
crowd that is nowhere near its limits. So each process keeps its own view of every counter it
touched: the weighted count Redis last reported (``known``) and the hits it admitted since
(``pending``), in lists (``counter_views``: a counter is a number, not an object for every full
collection of the garbage collector to walk). A request whose every counter is below its limit
in that view is admitted without Redis, and the pending hits of all counters go to Redis
together every ``SYNC_SECONDS`` (``add_to_windows.lua`` on the library's windows,
``_SYNC_BATCH`` counters a call, the calls pipelined together), which reports each counter's
region-wide count back. A request the view would refuse, or whose counter the process has not
heard about from Redis for ``FRESH_SECONDS`` and has admitted another hit for already, takes the
exact path: once any sync carrying its counters' hits is answered, one call a counter
(``decide_in_window.lua``) adds the counter's pending hits, decides the hit as the library's
script does and reads the window back, so a refusal's ``Retry-After`` is Redis's, and the count
it reports is the view's again: a counter whose window has room once more is admitted from
memory at the next request (a crowd behind a carrier address near its limit is decided by Redis
only while it is at the limit). A refusal also tells when the window frees a hit (the library's
``reset_time``): until then the process refuses that counter from memory, as Redis would (time
only frees hits, other processes only add them), so a client hammering past its limit costs
Redis one call a window's free hit, not one a request.

What that means for a limit (docs/operations.md, "Rate limits with several workers"): within
one process nothing changes (the view is exact). With N processes, a process learns of the
others' hits at its next sync, so one client spreading its requests over N processes can pass
a limit by what the other N − 1 processes admitted for it in one sync interval (at most one
hit each for a counter they had not synced for a second). A client hammering one process is
cut off at the limit as before: once its counter is full in the view, its requests are
decided, and refused, by Redis, or from memory while Redis's last refusal holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files

import redis.asyncio as aioredis
from limits import parse_many

from guahao.platform.error_codes import refuse
from guahao.platform.inventory.lua_scripts import LuaScript
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.platform.rate_limiting.counter_views import CounterViews
from guahao.platform.rate_limiting.limit_items import LimitItem
from guahao.platform.rate_limiting.packed_commands import bulk, evalsha_head
from guahao.platform.redis_pools import (
    blocking_pool,
    is_cluster_url,
    shared_client,
)

__all__ = ["POOL_SIZE", "SYNC_SECONDS", "RequestLimiter"]

POOL_SIZE = 50
"""Connections the limiter keeps to Redis."""

SYNC_SECONDS = 0.05
"""How often a process sends the hits it admitted to Redis and reads the counts back: the
longest a hit stays unknown to the other processes."""

FORGET_SECONDS = 60.0
"""Counters idle this long are forgotten, within as long again (a later hit starts from one
admitted hit)."""

LIMITS_KEPT = 50_000
"""Limits of one identifier (one counter per item of the limit, a few hundred bytes each)
one process remembers at most; past it, those not used since they were last looked at go
first."""

_SYNC_BATCH = 256
"""Counters per script call when syncing on one server (a cluster gets one call per counter,
routed by its hash slot)."""

_LOOKED_AT_PER_SYNC = 512
"""Limits ``_forget_idle`` looks at per sync, and as many more as memory is past
``LIMITS_KEPT``, up to ``_LOOKED_AT_MOST``."""

_LOOKED_AT_MOST = 2048
"""Limits ``_forget_idle`` looks at per sync in any case (about a millisecond): past
``LIMITS_KEPT`` with every limit in use, a walk bounded only by coming back under it looked
at them all at every sync, 60 000 moved to the end each 50 ms (p99 of a paced 1 000-connection
crowd 145-169 ms instead of 10-16; bench/README.md, "Session 10's final code")."""

_log = logging.getLogger(__name__)

DECIDE_IN_WINDOW = LuaScript(
    "guahao_decide_in_window",
    files("guahao.platform.rate_limiting")
    .joinpath("decide_in_window.lua")
    .read_text(encoding="utf-8"),
)
"""Adds a counter's pending hits, decides one more as the library's script does, and reads
the window back (the exact path in one round trip)."""

ADD_TO_WINDOWS = LuaScript(
    "guahao_add_to_windows",
    files("guahao.platform.rate_limiting")
    .joinpath("add_to_windows.lua")
    .read_text(encoding="utf-8"),
)
"""Adds a process's admitted hits to the library's windows and reads the counts back."""


class RequestLimiter:
    """Checks and counts requests against named limits; refuses with ``RATE_LIMITED``.

    The adapter of the ``RequestLimits`` port (``guahao.platform.ports``)."""

    def __init__(self, redis_url: str, *, key_prefix: str = "guahao-limits") -> None:
        self._key_prefix = key_prefix
        self._url = redis_url
        # (limit name, spec) -> the limit: its items and its identifiers' counters
        self._limits: dict[tuple[str, str], _Limit] = {}
        # this process's view of every counter it keeps (``counter_views``: a counter is a
        # number there, not an object the garbage collector walks)
        self._views = CounterViews()
        # every counter with hits not yet sent (a sync must not walk every counter kept);
        # one listed twice, or with none left, is sent once or not at all
        self._unsent: list[int] = []
        self._sync_timer: asyncio.TimerHandle | None = None
        self._syncs: set[asyncio.Task[None]] = set()
        # The windows are the ``limits`` library's (its keys and arithmetic, in this module's
        # scripts), but nothing here asks the library: the exact path reads them back itself.
        if is_cluster_url(redis_url):
            self._client = shared_client(redis_url, max_connections=POOL_SIZE, timeout=10.0)
        else:
            # A blocking pool: at a release surge requests wait their turn for a connection
            # instead of failing.
            pool = blocking_pool(redis_url, max_connections=POOL_SIZE, timeout=10.0)
            self._client = aioredis.Redis(connection_pool=pool)
        self._pipeline = AutoPipeline(self._client)

    async def close(self) -> None:
        """Send the hits not yet counted in Redis, then close the connections this limiter
        opened (its pool, or its cluster client)."""
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._syncs:
            await asyncio.gather(*self._syncs, return_exceptions=True)
        try:
            await self.sync()
        except Exception:  # Redis gone at shutdown: those hits are lost, nothing else is
            _log.warning("rate-limit hits not sent to Redis at shutdown", exc_info=True)
        await self._client.aclose()
        if not is_cluster_url(self._url):  # a pool handed in is not closed by its client
            await self._client.connection_pool.disconnect()

    async def hit(self, checks: Sequence[tuple[str, str, str]]) -> None:
        """Count one request against every ``(limit name, spec, identifier)``; refuse if any
        is over. Checks with an empty identifier (unknown device, say) are skipped.

        Admitted from this process's view when every counter is clearly below its limit
        (module docstring); refused from memory while Redis's last refusal of a counter
        holds; otherwise Redis decides as the library's script does, counting an admitted
        request and leaving a refused one uncounted, so a client hammering past its limit
        stays limited.
        """
        counters = self._counters_of(checks)
        if not self._answered_from_memory(counters):
            await self._decided_by_redis(counters)

    def hit_from_memory(self, checks: Sequence[tuple[str, str, str]]) -> bool:
        """``hit``, when this process can answer it alone: True if admitted (counted),
        ``RATE_LIMITED`` raised while Redis's last refusal of a counter holds, False when
        only Redis can decide (nothing counted: ``hit`` then asks it). A caller deciding many
        requests at once (a loop turn's grants) asks Redis only for the False ones, and for
        those together, rather than a round trip after another."""
        return self._answered_from_memory(self._counters_of(checks))

    def _counters_of(self, checks: Sequence[tuple[str, str, str]]) -> list[int]:
        counters: list[int] = []
        limits, following = self._limits, self._views.following
        for name, spec, ident in checks:
            if ident:
                limit = limits.get((name, spec))
                counter = None if limit is None else limit.counters.get(ident)
                if counter is None:
                    counter = self._remember(name, spec, ident)
                while counter >= 0:  # the limit's counters, one per item of its spec
                    counters.append(counter)
                    counter = following[counter]
        return counters

    def _answered_from_memory(self, counters: list[int]) -> bool:
        views = self._views
        now = time.monotonic()
        if views.admit_from_memory(counters, now):  # counted here, sent with the next sync
            pending, unsent = views.pending, self._unsent
            for counter in counters:
                if not pending[counter]:
                    unsent.append(counter)
                pending[counter] += 1
            if counters and self._sync_timer is None:
                self._sync_timer = asyncio.get_running_loop().call_later(
                    SYNC_SECONDS, self._start_sync
                )
            return True
        refused_until = views.refused_until
        for counter in counters:  # refused by Redis, its window without room yet
            if refused_until[counter] > now:
                retry = _retry_after(refused_until[counter] - now)
                refuse(
                    "RATE_LIMITED",
                    limit=views.limit_item(counter).limit_name,
                    retry_after_seconds=retry,
                )
        return False

    async def _decided_by_redis(self, counters: list[int]) -> None:
        views = self._views
        now = time.monotonic()
        deciding = views.deciding
        for counter in counters:
            deciding[counter] += 1
            views.used[counter] = now
        try:
            # the decision must see every hit already admitted, those of a sync on its way
            # too (calls on two connections reach Redis in either order)
            sending = views.sending
            on_their_way = {sync for c in counters if (sync := sending[c]) is not None}
            if on_their_way:
                await asyncio.wait(on_their_way)
            retries = await asyncio.gather(*(self._decide(c) for c in counters))
        finally:
            for counter in counters:
                deciding[counter] -= 1
        for counter, retry in zip(counters, retries, strict=True):
            if retry:
                refuse(
                    "RATE_LIMITED",
                    limit=views.limit_item(counter).limit_name,
                    retry_after_seconds=retry,
                )

    async def _decide(self, counter: int) -> int:
        """Redis's decision of one hit of ``counter``, its pending hits added first: 0 if
        admitted, else the seconds to wait. Redis's count becomes the view's (fresh, if no
        other call of the counter's was on its way meanwhile)."""
        views = self._views
        pending = views.pending[counter]
        views.pending[counter] = 0
        views.sent[counter] += pending
        views.exchanges[counter] += 1
        sent_as, alone = views.exchanges[counter], views.flying[counter] == 0
        views.flying[counter] += 1
        asked = time.monotonic()
        expiry = views.limit_item(counter).expiry
        try:
            reply = await self._pipeline.run(
                DECIDE_IN_WINDOW,
                [views.previous(counter), views.current[counter]],
                [views.amount[counter], expiry, pending],
            )
        except BaseException:
            if pending:
                views.pending[counter] += pending
                self._unsent.append(counter)
            raise
        finally:
            views.flying[counter] -= 1
            views.sent[counter] -= pending
        admitted, total = int(reply[0]), int(reply[1])
        heard = time.monotonic()
        if alone and views.exchanges[counter] == sent_as:
            views.known[counter] = total
            views.heard[counter] = heard
        else:  # others' hits may be missing from ``total``; this call's are in the view
            views.known[counter] = max(views.known[counter] + pending + admitted, total)
        views.used[counter] = heard
        if admitted:
            return 0
        reset_in = _reset_in(expiry, *(int(value) for value in reply[2:6]))
        views.refused_until[counter] = max(views.refused_until[counter], asked + reset_in)
        return _retry_after(reset_in)

    async def sync(self) -> None:
        """Send every hit admitted from memory to Redis now, and forget idle counters."""
        unsent, self._unsent = self._unsent, []
        await self._send(unsent)
        self._forget_idle(time.monotonic())

    def _remember(self, name: str, spec: str, ident: str) -> int:
        """New counters for a limit of an identifier, one per item of the limit's spec,
        linked in the views (``CounterViews.following``): the first one's number."""
        limit = self._limits.get((name, spec))
        if limit is None:
            items = tuple(LimitItem.of(self._key_prefix, name, item) for item in parse_many(spec))
            limit = self._limits[name, spec] = _Limit(items)
        now, views = time.monotonic(), self._views
        first = -1
        for item in reversed(limit.items):
            counter = views.add(item, ident, now)
            views.following[counter] = first
            first = counter
        limit.counters[ident] = first
        return first

    def kept_counters(self) -> dict[tuple[str, str, str], tuple[int, ...]]:
        """Every identifier's limit this process keeps, with its counters' numbers (for
        tests and diagnosis: made on each call)."""
        chain = self._views.chain
        return {
            (name, spec, ident): tuple(chain(first))
            for (name, spec), limit in self._limits.items()
            for ident, first in limit.counters.items()
        }

    def _start_sync(self) -> None:
        self._sync_timer = None
        task = asyncio.get_running_loop().create_task(self._background_sync())
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    async def _background_sync(self) -> None:
        try:
            await self.sync()
        except Exception:  # Redis unreachable: the hits stay pending and go with the next
            _log.warning("rate-limit hits not sent to Redis; retrying", exc_info=True)
            if self._sync_timer is None:
                self._sync_timer = asyncio.get_running_loop().call_later(
                    SYNC_SECONDS, self._start_sync
                )

    async def _send(self, counters: Iterable[int]) -> None:
        """Add the pending hits of ``counters`` to Redis and take its counts as known (as
        fresh if no other call of the counter's was on its way meanwhile). The hits are taken
        off the counters before the await (another sync may run meanwhile; a counter listed
        twice is sent once), put back on failure."""
        sent = asyncio.get_running_loop().create_future()
        views = self._views
        pending, exchanges, flying = views.pending, views.exchanges, views.flying
        # each counter sent, with its hits, its calls counted with this one and whether
        # another was on its way (parallel lists); the hits as the script takes them,
        # negative for a counter's first call (``add_to_windows.lua``)
        due: list[int] = []
        amounts: list[int] = []
        hits: list[int] = []
        sent_as: list[int] = []
        alone: list[bool] = []
        for counter in counters:
            amount = pending[counter]
            if amount:
                due.append(counter)
                amounts.append(amount)
                exchanges[counter] += 1
                hits.append(-amount if exchanges[counter] == 1 else amount)
                sent_as.append(exchanges[counter])
                alone.append(flying[counter] == 0)
                flying[counter] += 1
                views.sent[counter] += amount
                pending[counter] = 0
                views.sending[counter] = sent
        if not due:
            return
        try:
            totals = await self._add_to_windows(due, hits)
        except BaseException:
            for counter, amount in zip(due, amounts, strict=True):
                pending[counter] += amount
                self._unsent.append(counter)
            raise
        finally:
            sent.set_result(None)
            for counter, amount in zip(due, amounts, strict=True):
                flying[counter] -= 1
                views.sent[counter] -= amount
                if views.sending[counter] is sent:
                    views.sending[counter] = None
        heard = time.monotonic()
        known = views.known
        reports = zip(due, amounts, totals, sent_as, alone, strict=True)
        for counter, amount, total, number, was_alone in reports:
            # another call of the counter's on its way when the hits were sent, or sent
            # since, may or may not be in ``total``: the report may then raise the view
            # (which has this call's hits either way), never lower it
            if not was_alone or exchanges[counter] != number:
                known[counter] = max(known[counter] + amount, total)
                continue
            known[counter] = total
            views.heard[counter] = heard
            views.used[counter] = heard

    async def _add_to_windows(self, due: list[int], hits: list[int]) -> list[int]:
        """Redis's counts after adding ``hits`` to the counters ``due`` (negative: the
        counter's first call), the calls written from the counters' own RESP
        (``packed_commands``)."""
        views = self._views
        items = views.item
        if is_cluster_url(self._url):  # one call per counter, routed by its hash slot
            head = evalsha_head(ADD_TO_WINDOWS, 2, 2)
            calls = [
                self._pipeline.run(
                    ADD_TO_WINDOWS,
                    [views.previous(c), views.current[c]],
                    [views.limit_item(c).expiry, amount],
                    packed=head + views.packed_keys[c] + _packed_args(items[c], amount),
                )
                for c, amount in zip(due, hits, strict=True)
            ]
        else:  # the keys on a single server serve no routing: only the packed call is sent
            calls = []
            for start in range(0, len(due), _SYNC_BATCH):
                batch = due[start : start + _SYNC_BATCH]
                head = evalsha_head(ADD_TO_WINDOWS, 2 * len(batch), 2 * len(batch))
                keys = [views.packed_keys[c] for c in batch]
                args = [
                    _packed_args(items[c], amount)
                    for c, amount in zip(batch, hits[start : start + _SYNC_BATCH], strict=True)
                ]
                packed = b"".join([head, *keys, *args])
                calls.append(self._pipeline.run(ADD_TO_WINDOWS, (), (), packed=packed))
        replies = await asyncio.gather(*calls)
        return [total for reply in replies for total in reply]

    def _forget_idle(self, now: float) -> None:
        """Forget the limits whose counters were idle ``FORGET_SECONDS`` and, past
        ``LIMITS_KEPT``, those not used since they were last looked at.

        Kept in the order they were put at the end, not in the order of use: moving a
        limit to the end at each report of Redis's was a dictionary pop and insert per
        counter per sync, paid by every refusal of a release crowd (bench/profiles/
        refuse2-*). So only a limit put there ``FORGET_SECONDS`` ago or more is looked at
        (or any, past ``LIMITS_KEPT``): used since (or with hits to send, or a call to Redis
        on its way), it goes to the end again, else it is forgotten and its counters'
        numbers are free for others. A crowd's limits come of age together, a minute after
        the release: ``_LOOKED_AT_PER_SYNC`` are looked at a sync (past ``LIMITS_KEPT``, as
        many more as it is past, up to ``_LOOKED_AT_MOST``), in one walk, never from the
        dictionary's front again after each removal (40 000 at once stalled the loop for
        220 ms: the front's removed entries were scanned again at every step)."""
        views = self._views
        pending, used, placed = views.pending, views.used, views.placed
        # as it will be once the limits looked at so far are forgotten
        size = sum(len(limit.counters) for limit in self._limits.values())
        share = min(_LOOKED_AT_MOST, _LOOKED_AT_PER_SYNC + max(0, size - LIMITS_KEPT))
        looked: list[tuple[dict[str, int], str, list[int], bool]] = []
        for limit in self._limits.values():  # each limit's identifiers, the oldest first
            for ident, first in limit.counters.items():
                over = size > LIMITS_KEPT
                if len(looked) >= share or (not over and now - placed[first] < FORGET_SECONDS):
                    break  # the next sync's, or the rest were put there later still
                kept = views.chain(first)
                in_use = any(pending[c] or views.on_its_way(c) for c in kept) or any(
                    now - used[c] < FORGET_SECONDS and (not over or used[c] > placed[c])
                    for c in kept
                )
                size -= not in_use
                looked.append((limit.counters, ident, kept, in_use))
        for counters, ident, kept, in_use in looked:
            del counters[ident]
            if in_use:
                counters[ident] = kept[0]
                for counter in kept:
                    placed[counter] = now
            else:
                for counter in kept:
                    views.release(counter)


@dataclass(slots=True)
class _Limit:
    """A limit (a name and a spec) as this process keeps it."""

    items: tuple[LimitItem, ...]
    """Its items (its windows), shared by every identifier's counters."""
    counters: dict[str, int] = field(default_factory=dict)
    """identifier -> the number of its first counter, the others linked from it
    (``CounterViews.following``), in the order they were put at the end (``_forget_idle``
    looks at the oldest). Strings and numbers, nothing the garbage collector walks: as a
    tuple key and a tuple of numbers an identifier, a release crowd's new citizens left two
    tuples each, and every young collection walked the ones made since the last (tens of
    thousands, 15-30 ms; bench/README.md, session 17, "the paced tail")."""


def _reset_in(window: int, previous: int, previous_ms: int, current: int, current_ms: int) -> float:
    """Seconds until a refused counter frees a hit, as the library's ``get_window_stats``
    tells it (its ``reset_time``), from the windows' counts and milliseconds to live: the
    previous window frees one each ``window / previous`` seconds, the current one all at its
    shift.

    >>> _reset_in(60, 600, 30_050, 0, 90_000)  # one freed each 0.1 s: the next in 0.05 s
    0.05
    >>> _reset_in(60, 0, 0, 10, 100_500)  # the current window shifts in 40.5 s
    40.5
    """
    reset_in = math.inf
    if previous:
        reset_in = round((previous_ms / 1000) % (window / previous), 6)
    if current:
        reset_in = min(reset_in, (current_ms / 1000) % window)
    return 0.0 if math.isinf(reset_in) else reset_in


def _retry_after(reset_in: float) -> int:
    """The ``Retry-After`` of a refusal, as the library's statistics give it: whole seconds,
    one added, at least one.

    >>> _retry_after(0.05), _retry_after(40.5)
    (1, 41)
    """
    return max(1, int(reset_in) + 1)


def _packed_args(item: LimitItem | None, hits: int) -> bytes:
    """A counter's arguments to ``add_to_windows.lua``: its window and the hits to add
    (negative: the counter's first call)."""
    assert item is not None  # counters with hits on their way are never released
    if hits == 1:
        return item.packed_hit
    if hits == -1:
        return item.packed_first_hit
    return item.packed_expiry + bulk(hits)

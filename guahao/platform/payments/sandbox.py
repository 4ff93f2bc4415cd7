"""The sandbox payment gateway: the embedded default when no real provider is configured.

It behaves like a real gateway (WeChat Pay, Alipay, a medical-insurance channel) at every
point the platform can observe, so ``guahao demo`` and the test suites exercise the real
payment flow rather than a shortcut: orders expire, are closed, are paid once, notifications
arrive signed and time-stamped, refunds are idempotent per refund number and never exceed
what was paid.

State lives in Redis under ``sandbox-pay:…`` so that several app processes (and the web
layer's cashier page, which calls ``pay``) share one view of every order. Each order's keys
share a hash tag (``sandbox-pay:{<order_no>}:…``) and every state change is one Lua script
on those keys, so each step is atomic and stays on one shard of a cluster. Expiry is judged
lazily from the injected clock inside the scripts, as holds are in the inventory: no timer is
needed for correctness, and tests move time with ``ManualClock``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import quote

import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from guahao.platform.clock import Clock
from guahao.platform.error_codes import error, refuse
from guahao.platform.payments.signatures import FRESHNESS_WINDOW, signed_headers, verify
from guahao.platform.ports import PaymentIntent, PaymentNotification, RefundReceipt

__all__ = ["Channel", "SandboxGateway", "SandboxOrder", "SandboxOrderStatus"]

Channel = Literal["self_pay", "insurance"]
"""How the payer paid at the cashier: 自费 or 医保."""

SandboxOrderStatus = Literal["created", "paid", "closed", "refunded", "partially_refunded"]
"""What ``query_order`` reports.

Only ``created``, ``paid`` and ``closed`` are stored; an unpaid order past its expiry reads as
``closed`` (it can never be paid again), and the two refund states are derived from the
refunded amount, so the report cannot drift from the numbers it summarises.
"""


class SandboxOrder(msgspec.Struct, frozen=True):
    """One order as the gateway sees it, for reconciliation and for the cashier page."""

    order_no: str
    gateway_trade_no: str
    status: SandboxOrderStatus
    amount_cents: int
    refunded_cents: int
    description: str
    expires_at: datetime
    paid_at: datetime | None = None
    channel: Channel | None = None


class _RefundRecord(msgspec.Struct, frozen=True):
    """What is kept per refund number: the receipt plus the reason, for later inspection."""

    refund_no: str
    order_no: str
    amount_cents: int
    refunded_at: datetime
    reason: str


_CHANNELS: Final[dict[str, Channel]] = {"self_pay": "self_pay", "insurance": "insurance"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NUMBER_LENGTH: Final = 64
_PREFIX: Final = "sandbox-pay"

_encoder = msgspec.json.Encoder()
_notification_decoder = msgspec.json.Decoder(PaymentNotification)
_refund_decoder = msgspec.json.Decoder(_RefundRecord)

# KEYS[1] order hash. ARGV: trade_no, amount, description, expires_ms, created_ms, retention_ms.
# Creates the order unless it exists; either way answers the stored trade number and amount,
# which the caller compares with its own to tell a retry from a conflicting reuse.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1],
    'trade_no', ARGV[1], 'amount', ARGV[2], 'description', ARGV[3],
    'expires_ms', ARGV[4], 'created_ms', ARGV[5], 'status', 'created', 'refunded', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return redis.call('HMGET', KEYS[1], 'trade_no', 'amount')
"""

# KEYS[1] order hash. ARGV: now_ms (also the payment time), channel, notification body.
# Marks a payable order paid and keeps its notification; a paid order answers the kept one,
# so a second payment attempt re-sends the same notice instead of charging twice.
_PAY = """
local order = redis.call('HMGET', KEYS[1], 'status', 'expires_ms', 'notification')
local status = order[1]
if not status then return {'NOT_FOUND'} end
if status == 'paid' then return {'PAID', order[3]} end
if status == 'closed' then return {'CLOSED'} end
if tonumber(ARGV[1]) >= tonumber(order[2]) then return {'EXPIRED', order[2]} end
redis.call('HSET', KEYS[1],
  'status', 'paid', 'channel', ARGV[2], 'paid_ms', ARGV[1], 'notification', ARGV[3])
return {'PAID', ARGV[3]}
"""

# KEYS[1] order hash. Closes an unpaid order (again, harmlessly, if already closed).
_CLOSE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'NOT_FOUND' end
if status == 'paid' then return 'PAID' end
redis.call('HSET', KEYS[1], 'status', 'closed')
return 'CLOSED'
"""

# KEYS[1] order hash, KEYS[2] refunds hash (refund_no -> record).
# ARGV: refund_no, amount, record JSON.
# A known refund number answers its record before any other check, so a retry after the
# order is fully refunded still gets its receipt. The sum check and the increment happen in
# one script: two refunds racing for the last cents cannot both pass.
_REFUND = """
local prior = redis.call('HGET', KEYS[2], ARGV[1])
if prior then return {'REPEATED', prior} end
local order = redis.call('HMGET', KEYS[1], 'status', 'amount', 'refunded')
if not order[1] then return {'NOT_FOUND'} end
if order[1] ~= 'paid' then return {'NOT_PAID', order[1]} end
local left = tonumber(order[2]) - tonumber(order[3])
if tonumber(ARGV[2]) > left then return {'EXCEEDS', tostring(left)} end
redis.call('HINCRBY', KEYS[1], 'refunded', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {'REFUNDED', ARGV[3]}
"""


class SandboxGateway:
    """A signed, Redis-backed stand-in for a real payment provider (implements ``PaymentGateway``).

    Besides the port's methods it offers ``pay`` (what the payer does on the cashier page) and
    ``query_order`` (what a reconciliation job asks a real gateway).

    Replays: ``verify_notification`` checks signature and freshness only. A notification
    re-sent by ``pay`` carries the same ``notification_id``; detecting it is the platform's
    job (it records every id it has processed and answers ``PAYMENT_CALLBACK_REPLAYED``),
    exactly as with a real gateway, which also re-sends until acknowledged.

    Redis being unreachable surfaces as ``PAYMENT_GATEWAY_UNAVAILABLE`` (``REFUND_FAILED`` for
    refunds), the retryable errors a real gateway's network failure would give. Every step is
    idempotent, so a retry after a timeout whose command did reach Redis is safe.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        secret: bytes,
        clock: Clock,
        base_url: str,
        *,
        retention: timedelta = timedelta(days=400),
    ) -> None:
        """Bind the gateway to its store, signing secret, clock and public address.

        Args:
            redis: Where orders live; shared by every process that serves this sandbox.
            secret: HMAC key shared with the verifier. At least 16 bytes: a short key makes
                the signature guessable, and a misconfigured empty key must fail loudly.
            clock: The source of "now" for expiry, payment and refund times.
            base_url: The platform's public address; cashier pages live under it.
            retention: How long Redis keeps an order. Long enough for any refund window
                (real gateways accept refunds for about a year), short enough that the
                sandbox does not grow without bound.
        """
        if len(secret) < 16:
            raise ValueError("the sandbox signing secret must be at least 16 bytes")
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self._redis = redis
        self._secret = secret
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._retention_ms = retention // timedelta(milliseconds=1)
        self._create = redis.register_script(_CREATE)
        self._pay = redis.register_script(_PAY)
        self._close = redis.register_script(_CLOSE)
        self._refund = redis.register_script(_REFUND)

    async def create_order(
        self,
        *,
        order_no: str,
        amount_cents: int,
        description: str,
        expires_at: datetime,
    ) -> PaymentIntent:
        """Open an order payable until ``expires_at``.

        Idempotent per ``order_no``: a retry gets the original intent (the first call's
        description and expiry stand). Reusing an order number for another amount is refused
        with ``PAYMENT_AMOUNT_MISMATCH``, because paying it would settle the wrong sum.
        """
        _check_number("order_no", order_no)
        _check_amount(amount_cents)
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            refuse("VALIDATION_FAILED", field="expires_at", problem="must be timezone-aware")
        expires_ms = _to_ms(expires_at)
        trade_no = _new_trade_no()
        with _unavailable_as("PAYMENT_GATEWAY_UNAVAILABLE", order_no=order_no):
            stored = await self._create(
                keys=[_order_key(order_no)],
                args=[
                    trade_no,
                    amount_cents,
                    description,
                    expires_ms,
                    _to_ms(self._clock.now()),
                    self._retention_ms,
                ],
            )
        stored_trade_no, stored_amount = _text(stored[0]), int(stored[1])
        if stored_amount != amount_cents:
            refuse(
                "PAYMENT_AMOUNT_MISMATCH",
                order_no=order_no,
                order_amount_cents=stored_amount,
                requested_amount_cents=amount_cents,
            )
        return PaymentIntent(
            order_no=order_no,
            gateway_trade_no=stored_trade_no,
            pay_url=f"{self._base_url}/sandbox/pay/{quote(order_no, safe='')}",
        )

    async def pay(self, order_no: str, *, channel: Channel) -> tuple[dict[str, str], bytes]:
        """Pay the order as the payer would at the cashier; answer the signed notification.

        The first successful call marks the order paid. Later calls answer the same body (same
        ``notification_id``, same ``paid_at``, the first channel) under fresh headers, as a
        gateway re-sends a notice until the merchant acknowledges it.

        Raises:
            NotFoundError: ``PAYMENT_ORDER_NOT_FOUND``.
            ConflictError: ``PAYMENT_ORDER_CLOSED`` once closed, ``PAYMENT_ORDER_EXPIRED``
                from ``expires_at`` on.
        """
        if channel not in _CHANNELS:
            refuse("VALIDATION_FAILED", field="channel", problem="self_pay or insurance")
        with _unavailable_as("PAYMENT_GATEWAY_UNAVAILABLE", order_no=order_no):
            trade_no, amount = await self._redis.hmget(_order_key(order_no), ["trade_no", "amount"])
            if trade_no is None or amount is None:
                refuse("PAYMENT_ORDER_NOT_FOUND", order_no=order_no)
            # The trade number and amount never change after creation, so the candidate
            # notice built from this read is right whenever the script accepts it.
            now = self._clock.now()
            paid_ms = _to_ms(now)
            candidate = PaymentNotification(
                notification_id=f"SBXN{uuid.uuid4().hex}",
                order_no=order_no,
                gateway_trade_no=_text(trade_no),
                amount_cents=int(amount),
                channel=channel,
                paid_at=_from_ms(paid_ms),
            )
            answer = await self._pay(
                keys=[_order_key(order_no)],
                args=[paid_ms, channel, _encoder.encode(candidate)],
            )
        outcome = _text(answer[0])
        if outcome == "NOT_FOUND":
            refuse("PAYMENT_ORDER_NOT_FOUND", order_no=order_no)
        if outcome == "CLOSED":
            refuse("PAYMENT_ORDER_CLOSED", order_no=order_no)
        if outcome == "EXPIRED":
            refuse(
                "PAYMENT_ORDER_EXPIRED",
                order_no=order_no,
                expired_at=_from_ms(int(answer[1])).isoformat(),
            )
        body = _bytes(answer[1])
        headers = signed_headers(
            self._secret, body, now=self._clock.now(), nonce=secrets.token_urlsafe(16)
        )
        return headers, body

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime
    ) -> PaymentNotification:
        """Check signature and freshness, then decode.

        Replays of a fresh, valid notice pass here by design; the caller records every
        ``notification_id`` it processed and refuses repeats.

        Raises:
            ForbiddenError: ``PAYMENT_SIGNATURE_INVALID`` or ``PAYMENT_CALLBACK_STALE``
                (outside ``FRESHNESS_WINDOW`` either way).
            InvalidInputError: ``PAYMENT_NOTIFICATION_MALFORMED`` for a correctly signed body
                that is not a notification; only a holder of the secret can produce one, so
                it points at a gateway fault, not at a forger.
        """
        verify(self._secret, headers, body, now=now, window=FRESHNESS_WINDOW)
        try:
            notification = _notification_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise error("PAYMENT_NOTIFICATION_MALFORMED", problem=str(exc)) from exc
        if notification.paid_at.tzinfo is None:
            refuse("PAYMENT_NOTIFICATION_MALFORMED", problem="paid_at has no time zone")
        if notification.amount_cents <= 0:
            refuse("PAYMENT_NOTIFICATION_MALFORMED", problem="amount_cents must be positive")
        return notification

    async def close_order(self, *, order_no: str) -> None:
        """Make an unpaid order unpayable; idempotent.

        Raises:
            NotFoundError: ``PAYMENT_ORDER_NOT_FOUND``.
            ConflictError: ``PAYMENT_ORDER_ALREADY_PAID``: the money arrived, so the platform
                must confirm or refund, not close.
        """
        with _unavailable_as("PAYMENT_GATEWAY_UNAVAILABLE", order_no=order_no):
            outcome = _text(await self._close(keys=[_order_key(order_no)]))
        if outcome == "NOT_FOUND":
            refuse("PAYMENT_ORDER_NOT_FOUND", order_no=order_no)
        if outcome == "PAID":
            refuse("PAYMENT_ORDER_ALREADY_PAID", order_no=order_no)

    async def refund(
        self, *, order_no: str, refund_no: str, amount_cents: int, reason: str
    ) -> RefundReceipt:
        """Give back part or all of a paid order; idempotent per ``refund_no``.

        A refund number belongs to one order and one amount for good: repeating it with the
        same order and amount answers the first receipt (nothing is refunded twice);
        repeating it with another order or amount is refused with ``IDEMPOTENCY_KEY_REUSED``.

        Raises:
            InvalidInputError: ``VALIDATION_FAILED`` for a non-positive amount or bad number.
            NotFoundError: ``PAYMENT_ORDER_NOT_FOUND``.
            ConflictError: ``REFUND_ORDER_NOT_PAID``, ``REFUND_EXCEEDS_PAID`` (the total
                refunded would pass the paid amount), ``IDEMPOTENCY_KEY_REUSED``.
            UnavailableError: ``REFUND_FAILED`` when Redis cannot be reached; retry with the
                same refund number.
        """
        _check_number("order_no", order_no)
        _check_number("refund_no", refund_no)
        _check_amount(amount_cents)
        candidate = _RefundRecord(
            refund_no=refund_no,
            order_no=order_no,
            amount_cents=amount_cents,
            refunded_at=_from_ms(_to_ms(self._clock.now())),
            reason=reason,
        )
        with _unavailable_as("REFUND_FAILED", order_no=order_no, refund_no=refund_no):
            await self._bind_refund_no(refund_no, order_no)
            answer = await self._refund(
                keys=[_order_key(order_no), _refunds_key(order_no)],
                args=[refund_no, amount_cents, _encoder.encode(candidate)],
            )
        outcome = _text(answer[0])
        if outcome == "NOT_FOUND":
            refuse("PAYMENT_ORDER_NOT_FOUND", order_no=order_no)
        if outcome == "NOT_PAID":
            refuse("REFUND_ORDER_NOT_PAID", order_no=order_no, status=_text(answer[1]))
        if outcome == "EXCEEDS":
            refuse(
                "REFUND_EXCEEDS_PAID",
                order_no=order_no,
                requested_cents=amount_cents,
                refundable_cents=int(answer[1]),
            )
        record = _refund_decoder.decode(_bytes(answer[1]))
        if outcome == "REPEATED" and record.amount_cents != amount_cents:
            refuse(
                "IDEMPOTENCY_KEY_REUSED",
                refund_no=refund_no,
                first_amount_cents=record.amount_cents,
                requested_amount_cents=amount_cents,
            )
        return RefundReceipt(
            refund_no=record.refund_no,
            order_no=record.order_no,
            amount_cents=record.amount_cents,
            refunded_at=record.refunded_at,
        )

    async def query_order(self, order_no: str) -> SandboxOrder:
        """The order's current state, with lazy expiry applied against the clock.

        Raises:
            NotFoundError: ``PAYMENT_ORDER_NOT_FOUND``.
        """
        with _unavailable_as("PAYMENT_GATEWAY_UNAVAILABLE", order_no=order_no):
            raw: dict[Any, Any] = await self._redis.hgetall(_order_key(order_no))
        if not raw:
            refuse("PAYMENT_ORDER_NOT_FOUND", order_no=order_no)
        fields = {_text(name): _text(value) for name, value in raw.items()}
        amount = int(fields["amount"])
        refunded = int(fields["refunded"])
        expires_ms = int(fields["expires_ms"])
        stored = fields["status"]
        status: SandboxOrderStatus
        if stored == "paid":
            if refunded == 0:
                status = "paid"
            elif refunded < amount:
                status = "partially_refunded"
            else:
                status = "refunded"
        elif stored == "closed" or _to_ms(self._clock.now()) >= expires_ms:
            status = "closed"
        else:
            status = "created"
        channel = fields.get("channel")
        paid_ms = fields.get("paid_ms")
        return SandboxOrder(
            order_no=order_no,
            gateway_trade_no=fields["trade_no"],
            status=status,
            amount_cents=amount,
            refunded_cents=refunded,
            description=fields["description"],
            expires_at=_from_ms(expires_ms),
            paid_at=None if paid_ms is None else _from_ms(int(paid_ms)),
            channel=None if channel is None else _CHANNELS[channel],
        )

    async def _bind_refund_no(self, refund_no: str, order_no: str) -> None:
        """Tie ``refund_no`` to ``order_no`` for good, refusing a reuse on another order.

        This key lives outside the order's hash tag, so it cannot join the refund script on a
        cluster; it is set first, on its own. A binding left by a refund that was then refused
        (order unpaid, amount too high) only keeps that number on that order, which is where
        the caller's retry will use it.
        """
        key = f"{_PREFIX}:refund-no:{refund_no}"
        if await self._redis.set(key, order_no, nx=True, px=self._retention_ms):
            return
        bound = await self._redis.get(key)
        if bound is not None and _text(bound) != order_no:
            refuse(
                "IDEMPOTENCY_KEY_REUSED",
                refund_no=refund_no,
                first_order_no=_text(bound),
                requested_order_no=order_no,
            )


def _order_key(order_no: str) -> str:
    return f"{_PREFIX}:{{{order_no}}}:order"


def _refunds_key(order_no: str) -> str:
    return f"{_PREFIX}:{{{order_no}}}:refunds"


def _new_trade_no() -> str:
    """A gateway-side number unlike the platform's, so the two are never confused in logs."""
    return f"SBX{secrets.token_hex(12).upper()}"


def _check_number(field: str, value: str) -> None:
    """Order and refund numbers: non-empty, at most 64 printable characters without spaces.

    Real gateways cap merchant numbers at 32-64 characters; spaces and control characters
    would break the cashier URL and log lines.
    """
    if not value or len(value) > _MAX_NUMBER_LENGTH or not value.isprintable() or " " in value:
        refuse("VALIDATION_FAILED", field=field, problem="1-64 printable characters, no spaces")


def _check_amount(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or amount_cents <= 0:
        refuse("VALIDATION_FAILED", field="amount_cents", problem="must be a positive integer")


def _to_ms(instant: datetime) -> int:
    """Exact epoch milliseconds (integer arithmetic, unlike ``timestamp() * 1000``)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("the sandbox needs timezone-aware datetimes")
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _text(value: bytes | str) -> str:
    """Redis answers bytes or str depending on the client's ``decode_responses``."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@contextmanager
def _unavailable_as(code: str, **detail: Any) -> Iterator[None]:
    """Turn "Redis did not answer" into the gateway's retryable refusal."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise error(code, **detail) from exc

"""The sandbox payment gateway against a real Redis: the rules a real gateway would enforce."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from guahao.platform.clock import ManualClock
from guahao.platform.errors import GuahaoError
from guahao.platform.payments import SandboxGateway
from guahao.platform.payments.signatures import TIMESTAMP_HEADER, signed_headers
from guahao.platform.ports import PaymentGateway, PaymentIntent

SECRET = b"sandbox-secret-0123456789abcdef"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BASE_URL = "https://guahao.example.org/"
PAY_WINDOW = timedelta(minutes=15)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def gateway(redis_client: aioredis.Redis, clock: ManualClock) -> SandboxGateway:
    return SandboxGateway(redis_client, SECRET, clock, BASE_URL)


@pytest.fixture
async def second_process(redis_url: str, clock: ManualClock) -> AsyncIterator[SandboxGateway]:
    """Another app process: its own connection pool on the same Redis."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    try:
        yield SandboxGateway(client, SECRET, clock, BASE_URL)
    finally:
        await client.aclose()


async def open_order(
    gateway: SandboxGateway, order_no: str = "GH20260301-0001", amount_cents: int = 2500
) -> PaymentIntent:
    return await gateway.create_order(
        order_no=order_no,
        amount_cents=amount_cents,
        description="内科 普通号 2026-03-02 上午",
        expires_at=START + PAY_WINDOW,
    )


async def paid_order(
    gateway: SandboxGateway, order_no: str = "GH20260301-0001", amount_cents: int = 2500
) -> str:
    await open_order(gateway, order_no, amount_cents)
    await gateway.pay(order_no, channel="self_pay")
    return order_no


def code_of(refusal: pytest.ExceptionInfo[GuahaoError]) -> str:
    return refusal.value.code


# --- creating orders -----------------------------------------------------------------------


async def test_the_sandbox_is_a_payment_gateway(gateway: SandboxGateway) -> None:
    port: PaymentGateway = gateway
    intent = await port.create_order(
        order_no="GH1", amount_cents=100, description="x", expires_at=START + PAY_WINDOW
    )
    assert intent.order_no == "GH1"


async def test_an_order_is_paid_at_a_cashier_page_under_the_base_url(
    gateway: SandboxGateway,
) -> None:
    intent = await open_order(gateway)
    assert intent.pay_url == "https://guahao.example.org/sandbox/pay/GH20260301-0001"
    assert intent.gateway_trade_no.startswith("SBX")
    assert intent.gateway_trade_no != intent.order_no


async def test_order_numbers_are_escaped_in_the_cashier_url(gateway: SandboxGateway) -> None:
    intent = await open_order(gateway, order_no="GH/2026#1")
    assert intent.pay_url.endswith("/sandbox/pay/GH%2F2026%231")


async def test_creating_an_order_again_returns_the_same_intent(gateway: SandboxGateway) -> None:
    first = await open_order(gateway)
    again = await open_order(gateway)
    assert again == first


async def test_creating_one_order_concurrently_yields_one_trade_number(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    intents = await asyncio.gather(
        *(open_order(g) for g in [gateway, second_process] * 5),
    )
    assert len({intent.gateway_trade_no for intent in intents}) == 1


async def test_reusing_an_order_number_for_another_amount_is_refused(
    gateway: SandboxGateway,
) -> None:
    await open_order(gateway, amount_cents=2500)
    with pytest.raises(GuahaoError) as refused:
        await open_order(gateway, amount_cents=5000)
    assert code_of(refused) == "PAYMENT_AMOUNT_MISMATCH"
    assert refused.value.detail["order_amount_cents"] == 2500


@pytest.mark.parametrize("amount_cents", [0, -100])
async def test_an_order_amount_must_be_positive(gateway: SandboxGateway, amount_cents: int) -> None:
    with pytest.raises(GuahaoError) as refused:
        await open_order(gateway, amount_cents=amount_cents)
    assert code_of(refused) == "VALIDATION_FAILED"
    assert refused.value.detail["field"] == "amount_cents"


@pytest.mark.parametrize("order_no", ["", "GH 1", "GH\n1", "G" * 65])
async def test_order_numbers_are_one_to_64_printable_characters_without_spaces(
    gateway: SandboxGateway, order_no: str
) -> None:
    with pytest.raises(GuahaoError) as refused:
        await open_order(gateway, order_no=order_no)
    assert code_of(refused) == "VALIDATION_FAILED"
    assert refused.value.detail["field"] == "order_no"


async def test_an_expiry_without_a_time_zone_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GuahaoError) as refused:
        await gateway.create_order(
            order_no="GH1",
            amount_cents=100,
            description="x",
            expires_at=datetime(2026, 3, 1, 8, 15),  # noqa: DTZ001 - the point of the test
        )
    assert code_of(refused) == "VALIDATION_FAILED"
    assert refused.value.detail["field"] == "expires_at"


# --- paying --------------------------------------------------------------------------------


async def test_paying_produces_a_signed_notification_the_platform_can_verify(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    intent = await open_order(gateway)
    clock.advance(minutes=3)
    headers, body = await gateway.pay(intent.order_no, channel="insurance")
    notification = gateway.verify_notification(headers, body, now=clock.now())
    assert notification.order_no == intent.order_no
    assert notification.gateway_trade_no == intent.gateway_trade_no
    assert notification.amount_cents == 2500
    assert notification.channel == "insurance"
    assert notification.paid_at == START + timedelta(minutes=3)
    assert notification.notification_id.startswith("SBXN")


async def test_paying_twice_resends_the_same_notification_under_fresh_headers(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    first_headers, first_body = await gateway.pay(order_no, channel="self_pay")
    clock.advance(minutes=10)
    again_headers, again_body = await gateway.pay(order_no, channel="insurance")
    assert again_body == first_body
    assert again_headers[TIMESTAMP_HEADER] != first_headers[TIMESTAMP_HEADER]
    resent = gateway.verify_notification(again_headers, again_body, now=clock.now())
    assert resent.channel == "self_pay"
    assert resent.paid_at == START


async def test_paying_one_order_concurrently_marks_it_paid_once(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    intent = await open_order(gateway)
    answers = await asyncio.gather(
        *(g.pay(intent.order_no, channel="self_pay") for g in [gateway, second_process] * 5)
    )
    assert len({body for _, body in answers}) == 1


async def test_paying_an_unknown_order_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GuahaoError) as refused:
        await gateway.pay("GH-NEVER-OPENED", channel="self_pay")
    assert code_of(refused) == "PAYMENT_ORDER_NOT_FOUND"


async def test_an_order_can_be_paid_until_the_instant_it_expires(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    await open_order(gateway, order_no="GH-LAST-MS")
    await open_order(gateway, order_no="GH-ON-TIME")
    clock.set(START + PAY_WINDOW - timedelta(milliseconds=1))
    await gateway.pay("GH-LAST-MS", channel="self_pay")
    clock.set(START + PAY_WINDOW)
    with pytest.raises(GuahaoError) as refused:
        await gateway.pay("GH-ON-TIME", channel="self_pay")
    assert code_of(refused) == "PAYMENT_ORDER_EXPIRED"
    assert refused.value.detail["expired_at"] == (START + PAY_WINDOW).isoformat()


async def test_a_closed_order_cannot_be_paid(gateway: SandboxGateway) -> None:
    intent = await open_order(gateway)
    await gateway.close_order(order_no=intent.order_no)
    with pytest.raises(GuahaoError) as refused:
        await gateway.pay(intent.order_no, channel="self_pay")
    assert code_of(refused) == "PAYMENT_ORDER_CLOSED"


async def test_recreating_a_closed_order_does_not_reopen_it(gateway: SandboxGateway) -> None:
    first = await open_order(gateway)
    await gateway.close_order(order_no=first.order_no)
    assert await open_order(gateway) == first
    with pytest.raises(GuahaoError) as refused:
        await gateway.pay(first.order_no, channel="self_pay")
    assert code_of(refused) == "PAYMENT_ORDER_CLOSED"


async def test_a_payment_channel_other_than_self_pay_or_insurance_is_refused(
    gateway: SandboxGateway,
) -> None:
    intent = await open_order(gateway)
    with pytest.raises(GuahaoError) as refused:
        await gateway.pay(intent.order_no, channel="cash")  # type: ignore[arg-type]
    assert code_of(refused) == "VALIDATION_FAILED"
    assert refused.value.detail["field"] == "channel"


# --- verifying notifications ---------------------------------------------------------------


async def test_a_notification_signed_with_another_secret_is_refused(
    gateway: SandboxGateway, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    impostor = SandboxGateway(redis_client, b"not-the-shared-secret-0123456789", clock, BASE_URL)
    order_no = await paid_order(impostor)
    headers, body = await impostor.pay(order_no, channel="self_pay")
    with pytest.raises(GuahaoError) as refused:
        gateway.verify_notification(headers, body, now=clock.now())
    assert code_of(refused) == "PAYMENT_SIGNATURE_INVALID"


async def test_a_notification_whose_amount_was_edited_is_refused(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    headers, body = await gateway.pay(order_no, channel="self_pay")
    edited = body.replace(b'"amount_cents":2500', b'"amount_cents":1')
    assert edited != body
    with pytest.raises(GuahaoError) as refused:
        gateway.verify_notification(headers, edited, now=clock.now())
    assert code_of(refused) == "PAYMENT_SIGNATURE_INVALID"


async def test_a_notification_delivered_more_than_five_minutes_late_is_stale(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    headers, body = await gateway.pay(order_no, channel="self_pay")
    with pytest.raises(GuahaoError) as refused:
        gateway.verify_notification(headers, body, now=clock.now() + timedelta(minutes=6))
    assert code_of(refused) == "PAYMENT_CALLBACK_STALE"


async def test_a_notification_stamped_more_than_five_minutes_ahead_is_stale(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    headers, body = await gateway.pay(order_no, channel="self_pay")
    with pytest.raises(GuahaoError) as refused:
        gateway.verify_notification(headers, body, now=clock.now() - timedelta(minutes=6))
    assert code_of(refused) == "PAYMENT_CALLBACK_STALE"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"order_no":"GH1"}',
        b'{"notification_id":"n","order_no":"GH1","gateway_trade_no":"SBX1",'
        b'"amount_cents":100,"channel":"cash","paid_at":"2026-03-01T08:00:00Z"}',
        b'{"notification_id":"n","order_no":"GH1","gateway_trade_no":"SBX1",'
        b'"amount_cents":100,"channel":"self_pay","paid_at":"2026-03-01T08:00:00"}',
        b'{"notification_id":"n","order_no":"GH1","gateway_trade_no":"SBX1",'
        b'"amount_cents":0,"channel":"self_pay","paid_at":"2026-03-01T08:00:00Z"}',
    ],
    ids=["not-json", "not-an-object", "fields-missing", "bad-channel", "naive-time", "zero"],
)
def test_a_correctly_signed_body_that_is_not_a_notification_is_malformed(
    gateway: SandboxGateway, body: bytes
) -> None:
    headers = signed_headers(SECRET, body, now=START, nonce="test-nonce-1")
    with pytest.raises(GuahaoError) as refused:
        gateway.verify_notification(headers, body, now=START)
    assert code_of(refused) == "PAYMENT_NOTIFICATION_MALFORMED"


async def test_verifying_leaves_replay_detection_to_the_platform(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    """A fresh replay verifies again with the same id: the platform must record ids."""
    order_no = await paid_order(gateway)
    headers, body = await gateway.pay(order_no, channel="self_pay")
    first = gateway.verify_notification(headers, body, now=clock.now())
    replayed = gateway.verify_notification(headers, body, now=clock.now())
    assert replayed.notification_id == first.notification_id


async def test_each_paid_order_has_its_own_notification_id(gateway: SandboxGateway) -> None:
    ids = set()
    for order_no in ("GH-A", "GH-B"):
        await open_order(gateway, order_no=order_no)
        headers, body = await gateway.pay(order_no, channel="self_pay")
        ids.add(gateway.verify_notification(headers, body, now=START).notification_id)
    assert len(ids) == 2


# --- closing -------------------------------------------------------------------------------


async def test_closing_an_order_twice_is_harmless(gateway: SandboxGateway) -> None:
    intent = await open_order(gateway)
    await gateway.close_order(order_no=intent.order_no)
    await gateway.close_order(order_no=intent.order_no)
    assert (await gateway.query_order(intent.order_no)).status == "closed"


async def test_an_expired_order_can_still_be_closed(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    intent = await open_order(gateway)
    clock.advance(hours=1)
    await gateway.close_order(order_no=intent.order_no)
    assert (await gateway.query_order(intent.order_no)).status == "closed"


async def test_closing_an_unknown_order_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GuahaoError) as refused:
        await gateway.close_order(order_no="GH-NEVER-OPENED")
    assert code_of(refused) == "PAYMENT_ORDER_NOT_FOUND"


async def test_a_paid_order_cannot_be_closed(gateway: SandboxGateway) -> None:
    order_no = await paid_order(gateway)
    with pytest.raises(GuahaoError) as refused:
        await gateway.close_order(order_no=order_no)
    assert code_of(refused) == "PAYMENT_ORDER_ALREADY_PAID"


async def test_paying_and_closing_at_once_leave_exactly_one_outcome(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    for n in range(20):
        order_no = f"GH-RACE-{n}"
        await open_order(gateway, order_no=order_no)
        paid, closed = await asyncio.gather(
            gateway.pay(order_no, channel="self_pay"),
            second_process.close_order(order_no=order_no),
            return_exceptions=True,
        )
        status = (await gateway.query_order(order_no)).status
        if status == "paid":
            assert isinstance(closed, GuahaoError)
            assert closed.code == "PAYMENT_ORDER_ALREADY_PAID"
        else:
            assert status == "closed"
            assert isinstance(paid, GuahaoError)
            assert paid.code == "PAYMENT_ORDER_CLOSED"


# --- refunding -----------------------------------------------------------------------------


async def test_a_paid_order_can_be_refunded_in_full(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    clock.advance(days=2)
    receipt = await gateway.refund(
        order_no=order_no, refund_no="RF-1", amount_cents=2500, reason="退号"
    )
    assert receipt.refund_no == "RF-1"
    assert receipt.order_no == order_no
    assert receipt.amount_cents == 2500
    assert receipt.refunded_at == START + timedelta(days=2)
    order = await gateway.query_order(order_no)
    assert (order.status, order.refunded_cents) == ("refunded", 2500)


@pytest.mark.parametrize("close_first", [True, False], ids=["closed", "unpaid"])
async def test_only_paid_orders_can_be_refunded(gateway: SandboxGateway, close_first: bool) -> None:
    intent = await open_order(gateway)
    if close_first:
        await gateway.close_order(order_no=intent.order_no)
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(
            order_no=intent.order_no, refund_no="RF-1", amount_cents=100, reason="x"
        )
    assert code_of(refused) == "REFUND_ORDER_NOT_PAID"


async def test_refunding_an_unknown_order_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(order_no="GH-NEVER", refund_no="RF-1", amount_cents=100, reason="x")
    assert code_of(refused) == "PAYMENT_ORDER_NOT_FOUND"


@pytest.mark.parametrize("amount_cents", [0, -1])
async def test_a_refund_amount_must_be_positive(gateway: SandboxGateway, amount_cents: int) -> None:
    order_no = await paid_order(gateway)
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(
            order_no=order_no, refund_no="RF-1", amount_cents=amount_cents, reason="x"
        )
    assert code_of(refused) == "VALIDATION_FAILED"


async def test_a_refund_number_must_be_a_short_printable_token(gateway: SandboxGateway) -> None:
    order_no = await paid_order(gateway)
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(order_no=order_no, refund_no="RF 1", amount_cents=100, reason="x")
    assert refused.value.detail["field"] == "refund_no"


async def test_refund_numbers_make_refunds_idempotent(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    first = await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=1000, reason="x")
    clock.advance(hours=1)
    again = await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=1000, reason="x")
    assert again == first
    assert (await gateway.query_order(order_no)).refunded_cents == 1000


async def test_a_repeated_refund_number_still_answers_after_the_order_is_fully_refunded(
    gateway: SandboxGateway,
) -> None:
    order_no = await paid_order(gateway)
    first = await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=2500, reason="x")
    again = await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=2500, reason="x")
    assert again == first


async def test_a_refund_number_reused_for_another_amount_is_refused(
    gateway: SandboxGateway,
) -> None:
    order_no = await paid_order(gateway)
    await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=1000, reason="x")
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=500, reason="x")
    assert code_of(refused) == "IDEMPOTENCY_KEY_REUSED"
    assert (await gateway.query_order(order_no)).refunded_cents == 1000


async def test_a_refund_number_reused_on_another_order_is_refused(
    gateway: SandboxGateway,
) -> None:
    first = await paid_order(gateway, order_no="GH-A")
    other = await paid_order(gateway, order_no="GH-B")
    await gateway.refund(order_no=first, refund_no="RF-1", amount_cents=1000, reason="x")
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(order_no=other, refund_no="RF-1", amount_cents=1000, reason="x")
    assert code_of(refused) == "IDEMPOTENCY_KEY_REUSED"
    assert (await gateway.query_order(other)).refunded_cents == 0


async def test_refunds_never_add_up_to_more_than_was_paid(gateway: SandboxGateway) -> None:
    order_no = await paid_order(gateway)
    await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=1500, reason="x")
    with pytest.raises(GuahaoError) as refused:
        await gateway.refund(order_no=order_no, refund_no="RF-2", amount_cents=1001, reason="x")
    assert code_of(refused) == "REFUND_EXCEEDS_PAID"
    assert refused.value.detail["refundable_cents"] == 1000
    await gateway.refund(order_no=order_no, refund_no="RF-3", amount_cents=1000, reason="x")
    order = await gateway.query_order(order_no)
    assert (order.status, order.refunded_cents) == ("refunded", 2500)


async def test_two_concurrent_full_refunds_with_different_numbers_let_exactly_one_through(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    order_no = await paid_order(gateway)
    outcomes = await asyncio.gather(
        gateway.refund(order_no=order_no, refund_no="RF-A", amount_cents=2500, reason="x"),
        second_process.refund(order_no=order_no, refund_no="RF-B", amount_cents=2500, reason="x"),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, GuahaoError)]
    assert len(refused) == 1
    assert refused[0].code == "REFUND_EXCEEDS_PAID"
    assert (await gateway.query_order(order_no)).refunded_cents == 2500


async def test_many_concurrent_partial_refunds_stop_exactly_at_the_paid_amount(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    order_no = await paid_order(gateway, amount_cents=1000)
    outcomes = await asyncio.gather(
        *(
            (gateway if n % 2 else second_process).refund(
                order_no=order_no, refund_no=f"RF-{n}", amount_cents=300, reason="x"
            )
            for n in range(12)
        ),
        return_exceptions=True,
    )
    granted = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(granted) == 3
    assert all(
        isinstance(o, GuahaoError) and o.code == "REFUND_EXCEEDS_PAID"
        for o in outcomes
        if isinstance(o, BaseException)
    )
    assert (await gateway.query_order(order_no)).refunded_cents == 900


async def test_one_refund_number_sent_concurrently_refunds_once(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    order_no = await paid_order(gateway)
    receipts = await asyncio.gather(
        *(
            g.refund(order_no=order_no, refund_no="RF-1", amount_cents=700, reason="x")
            for g in [gateway, second_process] * 4
        )
    )
    assert len(set(receipts)) == 1
    assert (await gateway.query_order(order_no)).refunded_cents == 700


# --- querying and sharing ------------------------------------------------------------------


async def test_querying_follows_an_order_through_its_life(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    intent = await open_order(gateway)
    created = await gateway.query_order(intent.order_no)
    assert (created.status, created.amount_cents, created.refunded_cents) == ("created", 2500, 0)
    assert created.expires_at == START + PAY_WINDOW
    assert created.description == "内科 普通号 2026-03-02 上午"
    assert (created.paid_at, created.channel) == (None, None)

    clock.advance(minutes=1)
    await gateway.pay(intent.order_no, channel="insurance")
    paid = await gateway.query_order(intent.order_no)
    assert (paid.status, paid.paid_at, paid.channel) == (
        "paid",
        START + timedelta(minutes=1),
        "insurance",
    )
    assert paid.gateway_trade_no == intent.gateway_trade_no

    await gateway.refund(order_no=intent.order_no, refund_no="RF-1", amount_cents=500, reason="x")
    partly = await gateway.query_order(intent.order_no)
    assert (partly.status, partly.refunded_cents) == ("partially_refunded", 500)

    await gateway.refund(order_no=intent.order_no, refund_no="RF-2", amount_cents=2000, reason="x")
    assert (await gateway.query_order(intent.order_no)).status == "refunded"


async def test_an_unpaid_order_past_its_expiry_reads_as_closed(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    intent = await open_order(gateway)
    clock.set(START + PAY_WINDOW)
    assert (await gateway.query_order(intent.order_no)).status == "closed"


async def test_a_paid_order_stays_paid_after_its_payment_deadline(
    gateway: SandboxGateway, clock: ManualClock
) -> None:
    order_no = await paid_order(gateway)
    clock.advance(days=1)
    assert (await gateway.query_order(order_no)).status == "paid"


async def test_querying_an_unknown_order_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GuahaoError) as refused:
        await gateway.query_order("GH-NEVER-OPENED")
    assert code_of(refused) == "PAYMENT_ORDER_NOT_FOUND"


async def test_app_processes_share_orders_through_redis(
    gateway: SandboxGateway, second_process: SandboxGateway
) -> None:
    intent = await open_order(gateway)
    headers, body = await second_process.pay(intent.order_no, channel="self_pay")
    assert gateway.verify_notification(headers, body, now=START).order_no == intent.order_no
    assert (await gateway.query_order(intent.order_no)).status == "paid"


async def test_the_sandbox_keeps_its_state_under_sandbox_pay_keys_that_expire(
    gateway: SandboxGateway, redis_client: aioredis.Redis
) -> None:
    order_no = await paid_order(gateway)
    await gateway.refund(order_no=order_no, refund_no="RF-1", amount_cents=100, reason="x")
    keys = [key async for key in redis_client.scan_iter()]
    assert len(keys) == 3
    for key in keys:
        assert key.startswith(b"sandbox-pay:")
        assert await redis_client.pttl(key) > 0


async def test_a_client_that_decodes_responses_works_the_same(
    redis_url: str, clock: ManualClock
) -> None:
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        gateway = SandboxGateway(client, SECRET, clock, BASE_URL)
        order_no = await paid_order(gateway)
        headers, body = await gateway.pay(order_no, channel="self_pay")
        assert gateway.verify_notification(headers, body, now=START).amount_cents == 2500
        receipt = await gateway.refund(
            order_no=order_no, refund_no="RF-1", amount_cents=2500, reason="x"
        )
        assert receipt.amount_cents == 2500
        assert (await gateway.query_order(order_no)).status == "refunded"
    finally:
        await client.aclose()


# --- configuration and outages -------------------------------------------------------------


def test_a_short_signing_secret_is_refused_at_start_up(
    redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SandboxGateway(redis_client, b"short", clock, BASE_URL)


@pytest.fixture
async def unreachable(clock: ManualClock) -> AsyncIterator[SandboxGateway]:
    """A gateway whose Redis socket does not exist: a real connection failure, no retries."""
    client = aioredis.Redis(
        unix_socket_path="/nonexistent/guahao-sandbox.sock", retry=Retry(NoBackoff(), 0)
    )
    try:
        yield SandboxGateway(client, SECRET, clock, BASE_URL)
    finally:
        await client.aclose()


async def test_an_unreachable_store_makes_the_gateway_unavailable(
    unreachable: SandboxGateway,
) -> None:
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: open_order(unreachable),
        lambda: unreachable.pay("GH1", channel="self_pay"),
        lambda: unreachable.close_order(order_no="GH1"),
        lambda: unreachable.query_order("GH1"),
    ]
    for step in steps:
        with pytest.raises(GuahaoError) as refused:
            await step()
        assert code_of(refused) == "PAYMENT_GATEWAY_UNAVAILABLE"
        assert refused.value.kind == "unavailable"


async def test_an_unreachable_store_makes_a_refund_fail_retryably(
    unreachable: SandboxGateway,
) -> None:
    with pytest.raises(GuahaoError) as refused:
        await unreachable.refund(order_no="GH1", refund_no="RF-1", amount_cents=100, reason="x")
    assert code_of(refused) == "REFUND_FAILED"
    assert refused.value.detail == {"order_no": "GH1", "refund_no": "RF-1"}

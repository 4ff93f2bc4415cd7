"""The payment gateway's callback, and the sandbox gateway's cashier page."""

from __future__ import annotations

import html
from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from guahao.platform.payments.sandbox import SandboxGateway
from guahao.platform.services.booking_service import BookingService, PaymentOutcome

__all__ = ["PaymentController", "SandboxCashierController", "cashier_routes"]


class PaymentController(Controller):
    path = "/api/v1/payments"
    tags = ["payments"]  # noqa: RUF012

    @post("/notify", operation_id="paymentNotify", status_code=200)
    async def notify(
        self, bookings: NamedDependency[BookingService], request: Request[Any, Any, Any]
    ) -> PaymentOutcome:
        """Signed notice from the gateway; replays and forgeries are refused, nothing changes."""
        body = await request.body()
        return await bookings.handle_payment_notice(dict(request.headers), body)


class SandboxCashierController(Controller):
    """What a payer sees at the sandbox gateway: pay the order, then the notice is delivered."""

    path = "/sandbox/pay"
    tags = ["sandbox"]  # noqa: RUF012
    include_in_schema = False

    @get("/{order_no:str}", media_type=MediaType.HTML)
    async def page(self, gateway: NamedDependency[SandboxGateway], order_no: FromPath[str]) -> str:
        order = await gateway.query_order(order_no)
        amount = f"{order.amount_cents / 100:.2f}"
        no = html.escape(order_no)
        return (
            "<!doctype html><html lang='zh-CN'><meta charset='utf-8'>"
            "<title>沙箱收银台 Sandbox cashier</title>"
            f"<h1>沙箱收银台</h1><p>订单 {no}：¥{amount}（{html.escape(order.status)}）</p>"
            f"<form method='post' action='/sandbox/pay/{no}?channel=self_pay'>"
            "<button>自费支付 Pay self-pay</button></form>"
            f"<form method='post' action='/sandbox/pay/{no}?channel=insurance'>"
            "<button>医保支付 Pay with insurance</button></form></html>"
        )

    @post("/{order_no:str}", status_code=200)
    async def pay(
        self,
        gateway: NamedDependency[SandboxGateway],
        bookings: NamedDependency[BookingService],
        order_no: FromPath[str],
        channel: Annotated[
            Literal["self_pay", "insurance"], QueryParameter(name="channel")
        ] = "self_pay",
    ) -> Response[PaymentOutcome]:
        headers, body = await gateway.pay(order_no, channel=channel)
        outcome = await bookings.handle_payment_notice(headers, body)
        return Response(outcome)


def cashier_routes(payment_gateway: str) -> list[type[Controller]]:
    """The cashier pages to mount for the configured gateway: the sandbox's only when the
    sandbox is the gateway, since its "pay" button confirms a booking without any money."""
    return [SandboxCashierController] if payment_gateway == "sandbox" else []

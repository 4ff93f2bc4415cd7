"""Messages about waits and draws: joined (after a stop), a unit found, pay by a deadline,
removed, ended, drawn.

Written to the account's inbox like ``notifications.InboxNotifier`` (whose table it shares),
keyed by the event id with its own prefix, so at-least-once delivery shows each message once
and never collides with the booking messages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import NotificationRow
from guahao.platform.services.runtime import Ports

__all__ = ["OFFER_TEMPLATES", "OfferNotifier"]

OFFER_TEMPLATES: dict[str, tuple[str, str]] = {
    "waitlist.joined:session_stopped": (
        "医生停诊，您已被优先加入候补，有号源时将自动为您预约。",
        "The doctor's session was stopped; you are first in the waitlist and will be booked "
        "automatically when a unit frees up.",
    ),
    "waitlist.joined:lottery_lost": (
        "很遗憾本次摇号未中签，您已按摇号顺序加入该出诊单元的候补。",
        "You were not drawn this time; you wait for this session in the order of the draw.",
    ),
    "waitlist.granted": (
        "候补成功，已为您保留号源。",
        "Your wait is over: a unit is reserved for you.",
    ),
    "booking.awaiting_payment:offer": (
        "已为您分配号源，请在 {pay_by} 前完成支付，逾期号源将释放。",
        "A unit is reserved for you; pay by {pay_by} or it is released.",
    ),
    "waitlist.removed": (
        "您的候补已被移除（当前不符合预约条件）。",
        "Your wait was removed: you may not book online at present.",
    ),
    "waitlist.ended": (
        "医生停诊，您的候补已结束。",
        "The doctor's session was stopped; your wait has ended.",
    ),
    "waitlist.expired": (
        "您的候补已结束（未按时支付或日期已过）。",
        "Your wait has ended (the offer was not paid in time, or its dates passed).",
    ),
    "waitlist.prepayment_opened": (
        "候补已登记，请在 {pay_by} 前预付挂号费 {amount} 元；支付后开始排队，候补成功即直接预约，"
        "未成功将全额退款。",
        "Your wait is registered: prepay the fee of {amount} yuan by {pay_by}. You join the line "
        "once paid; a unit found is booked at once, and an unserved wait is refunded in full.",
    ),
    "waitlist.prepaid": (
        "候补预付款已收到，您已开始排队。",
        "Your prepayment was received: you are now in the line.",
    ),
    "waitlist.prepayment_refunded": (
        "候补未成功，预付款 {amount} 元已全额退回。",
        "Your wait ended unserved: the prepayment of {amount} yuan is refunded in full.",
    ),
    "rebooking.offered": (
        "医院取消了您的预约，已为您找到可改约的号源（同一医生优先）。"
        "请在 {answer_by} 前选择一个或拒绝；原支付将直接用于新号源，"
        "拒绝或逾期将全额退款，均不计违约。",
        "The hospital cancelled your booking. Units you may move to are waiting for you (the same "
        "doctor first): choose one or decline by {answer_by}. Your payment carries over; "
        "declined or unanswered, it is refunded in full, and nothing counts against you.",
    ),
    "rebooking.declined": (
        "您已拒绝改约，原预约费用将全额退回。",
        "You declined the rebooking; your payment is refunded in full.",
    ),
    "rebooking.expired": (
        "改约提议已到期，原预约费用将全额退回，不计违约。",
        "The rebooking offer ended unanswered; your payment is refunded in full, with no strike.",
    ),
    "lottery.won": (
        "恭喜，摇号中签！号源已为您保留。",
        "You were drawn: a unit is reserved for you.",
    ),
    "lottery.lost": ("很遗憾，本次摇号未中签。", "You were not drawn this time."),
    "lottery.ineligible": (
        "摇号时您不符合预约条件，本次报名无效。",
        "At the draw you could not book (a rule refused), so the entry did not take part.",
    ),
}


def _template(event: OutboxEvent) -> tuple[str, str] | None:
    payload = event.payload
    if event.topic == "waitlist.joined":
        return OFFER_TEMPLATES.get(f"waitlist.joined:{payload.get('reason')}")
    if event.topic == "booking.awaiting_payment":
        if payload.get("kind") in ("waitlist", "lottery"):
            zh, en = OFFER_TEMPLATES["booking.awaiting_payment:offer"]
            pay_by = str(payload.get("pay_by") or payload.get("expires_at", ""))
            return zh.format(pay_by=pay_by), en.format(pay_by=pay_by)
        return None
    if event.topic == "rebooking.offered":
        zh, en = OFFER_TEMPLATES[event.topic]
        answer_by = str(payload.get("answer_by", ""))
        return zh.format(answer_by=answer_by), en.format(answer_by=answer_by)
    if event.topic in ("waitlist.prepayment_opened", "waitlist.prepayment_refunded"):
        zh, en = OFFER_TEMPLATES[event.topic]
        values = {
            "amount": str(payload.get("amount", "")),
            "pay_by": str(payload.get("pay_by", "")),
        }
        return zh.format(**values), en.format(**values)
    return OFFER_TEMPLATES.get(event.topic)


class OfferNotifier:
    """Outbox subscriber writing one inbox message per waitlist or lottery event."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def __call__(self, event: OutboxEvent) -> None:
        template = _template(event)
        account_id = event.payload.get("account_id")
        if template is None or not account_id:
            return
        keep = (
            "booking_id",
            "entry_id",
            "session_id",
            "expires_at",
            "pay_by",
            "pay_url",
            "order_no",
            "amount",
            "answer_by",
            "offer_id",
        )
        params: dict[str, Any] = {
            k: str(v) for k, v in event.payload.items() if k in keep and v is not None
        }
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(
                    NotificationRow(
                        id=new_id(),
                        account_id=account_id,
                        template=event.topic,
                        params=params | {"zh": template[0], "en": template[1]},
                        dedupe_key=f"offer:{event.id}",
                        created_at=self._p.clock.now(),
                    )
                )
        except IntegrityError:
            return  # already delivered once

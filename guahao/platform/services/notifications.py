"""Telling people what happened to their bookings, from outbox events.

The embedded notifier writes each message to the account's inbox table (visible in the app);
an SMS or push adapter would subscribe the same way. Each message is keyed by the event id, so
at-least-once delivery never shows a message twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from guahao.platform.ids import new_id
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import NotificationRow
from guahao.platform.services.runtime import Ports

__all__ = ["TEMPLATES", "InboxNotifier"]

TEMPLATES: dict[str, tuple[str, str]] = {
    "booking.confirmed": ("预约成功，请按时就诊。", "Your appointment is confirmed."),
    "booking.expired": ("锁号已超时，号源已释放。", "Your hold expired and the slot was released."),
    "booking.cancelled_by_patient": (
        "退号成功，如已支付将原路退款。",
        "Cancelled; any payment will be refunded.",
    ),
    "booking.cancelled_by_hospital": (
        "很抱歉，医生停诊，您的预约已取消并全额退款，您将优先获得改约机会。",
        "The doctor's session was stopped: your booking is cancelled, fully refunded, and you "
        "get priority to rebook.",
    ),
    "payment.refunded": ("退款已原路退回。", "Your refund has been paid back."),
    "payment.paid_too_late": (
        "您的付款未能完成预约（号源已不再为您保留），款项将原路退回。",
        "Your payment could not complete the booking (the slot was no longer held for you); "
        "it will be refunded.",
    ),
    "booking.no_show": (
        "您未按时就诊，已记录爽约一次。",
        "You missed your appointment; a no-show was recorded.",
    ),
}


BY_END_REASON: dict[tuple[str, str], tuple[str, str]] = {
    ("booking.cancelled_by_hospital", "hospital_cancelled"): (
        "很抱歉，医院取消了您的这次预约并全额退款，您将优先获得改约机会。",
        "The hospital cancelled this booking: it is fully refunded, and you get priority to "
        "rebook.",
    ),
}
"""Where one event means different things to the patient, the booking's end reason decides."""


class InboxNotifier:
    """Writes a message per relevant event into the account's inbox."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def __call__(self, event: OutboxEvent) -> None:
        row = self._row_of(event)
        if row is None:
            return
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            return  # already delivered once

    async def handle_batch(self, events: Sequence[OutboxEvent]) -> None:
        """A run of events in one transaction (a release writes thousands in seconds). A row
        delivered before makes the whole run fail on its dedupe key; the dispatcher then
        delivers the run one by one, which skips it."""
        rows = [row for row in map(self._row_of, events) if row is not None]
        if rows:
            async with self._p.sessions() as session, session.begin():
                session.add_all(rows)

    def _row_of(self, event: OutboxEvent) -> NotificationRow | None:
        reason = event.payload.get("end_reason")
        template = BY_END_REASON.get((event.topic, str(reason))) or TEMPLATES.get(event.topic)
        account_id = event.payload.get("account_id")
        if template is None or not account_id:
            return None
        return NotificationRow(
            id=new_id(),
            account_id=account_id,
            template=event.topic,
            params={
                k: str(v)
                for k, v in event.payload.items()
                if k in ("booking_id", "refund_no", "session_id")
            }
            | {"zh": template[0], "en": template[1]},
            dedupe_key=f"outbox:{event.id}",
            created_at=self._p.clock.now(),
        )

"""The catalogue of refusal codes: one row per code, its kind and its two messages.

Codes are stable API: clients and hospital systems branch on them. Add rows, never rename.
``refuse`` builds the right ``GuahaoError`` subclass so that no caller spells a message twice.
"""

from __future__ import annotations

from typing import Any, NoReturn

from guahao.platform.errors import (
    ConflictError,
    ForbiddenError,
    GuahaoError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)

__all__ = ["CODES", "error", "refuse"]

_N, _C, _I, _F, _R, _U = (
    NotFoundError,
    ConflictError,
    InvalidInputError,
    ForbiddenError,
    RateLimitedError,
    UnavailableError,
)

CODES: dict[str, tuple[type[GuahaoError], str, str]] = {
    # lookups
    "HOSPITAL_NOT_FOUND": (_N, "医院不存在", "No such hospital"),
    "DEPARTMENT_NOT_FOUND": (_N, "科室不存在", "No such department"),
    "DOCTOR_NOT_FOUND": (_N, "医生不存在", "No such doctor"),
    "SESSION_NOT_FOUND": (_N, "出诊单元不存在", "No such session"),
    "SLOT_NOT_FOUND": (_N, "号源不存在", "No such slot"),
    "BOOKING_NOT_FOUND": (_N, "预约记录不存在", "No such booking"),
    "PATIENT_NOT_FOUND": (_N, "就诊人不存在", "No such patient"),
    "ACCOUNT_NOT_FOUND": (_N, "账号不存在", "No such account"),
    "PAYMENT_ORDER_NOT_FOUND": (_N, "支付订单不存在", "No such payment order"),
    # inventory
    "SLOT_NOT_RELEASED": (_C, "号源尚未放出，请在放号时间后再试", "This slot is not released yet"),
    "SLOT_SOLD_OUT": (_C, "号源已约满", "This slot is fully booked"),
    "SLOT_CLOSED": (_C, "该出诊单元已停诊或已结束预约", "This session is stopped or closed"),
    "SLOT_IN_PAST": (_C, "就诊时间已过，不能预约", "This slot has already started"),
    "HOLD_EXPIRED": (
        _C,
        "锁号已超时，号源已释放，请重新挂号",
        "The hold expired and the slot was released",
    ),
    "HOLD_ALREADY_ACTIVE": (
        _C,
        "您有一笔未完成的挂号，请先完成或取消",
        "This account already has an unfinished hold; finish or abandon it first",
    ),
    "HOLD_NOT_OWNED": (_F, "该锁号不属于当前账号", "This hold belongs to another account"),
    # booking state machine
    "BOOKING_STATE_INVALID": (
        _C,
        "当前预约状态不允许此操作",
        "The booking's current state does not allow this step",
    ),
    "BOOKING_ALREADY_CONFIRMED": (
        _C,
        "该预约已确认，无需重复提交",
        "This booking is already confirmed",
    ),
    "PATIENT_NOT_CHOSEN": (_C, "请先选择就诊人", "Choose a patient first"),
    "PATIENT_ALREADY_BOOKED_SESSION": (
        _C,
        "该就诊人在此出诊单元已有预约",
        "This patient already has a booking in this session",
    ),
    "PATIENT_NOT_OWNED": (
        _F,
        "该就诊人不属于当前账号",
        "This patient is not managed by this account",
    ),
    "CANCEL_DEADLINE_PASSED": (
        _C,
        "已超过退号截止时间，不能退号",
        "The cancellation deadline has passed",
    ),
    "PAYMENT_MODE_UNSUPPORTED": (
        _I,
        "该医院不支持此支付方式",
        "This hospital does not accept this way of paying",
    ),
    # payments
    "PAYMENT_ORDER_EXPIRED": (
        _C,
        "支付订单已过期，号源已释放",
        "The payment order expired; the slot was released",
    ),
    "PAYMENT_AMOUNT_MISMATCH": (_C, "支付金额与订单不符", "The paid amount differs from the order"),
    "PAYMENT_SIGNATURE_INVALID": (
        _F,
        "支付回调签名无效",
        "The payment callback signature is invalid",
    ),
    "PAYMENT_CALLBACK_STALE": (_F, "支付回调已过期", "The payment callback is too old"),
    "PAYMENT_CALLBACK_REPLAYED": (
        _C,
        "重复的支付回调",
        "This payment callback was already received",
    ),
    "REFUND_FAILED": (_U, "退款失败，将自动重试", "The refund failed and will be retried"),
    "PAYMENT_ORDER_CLOSED": (
        _C,
        "支付订单已关闭，不能支付",
        "The payment order is closed and cannot be paid",
    ),
    "PAYMENT_ORDER_ALREADY_PAID": (
        _C,
        "支付订单已支付，不能关闭",
        "The payment order is already paid and cannot be closed",
    ),
    "PAYMENT_NOTIFICATION_MALFORMED": (
        _I,
        "支付回调内容无法解析",
        "The payment callback is signed but its content cannot be read",
    ),
    "PAYMENT_GATEWAY_UNAVAILABLE": (
        _U,
        "支付服务暂时不可用，请稍后再试",
        "The payment service is unavailable; retry shortly",
    ),
    "REFUND_ORDER_NOT_PAID": (
        _C,
        "订单未支付，不能退款",
        "This order was not paid; there is nothing to refund",
    ),
    "REFUND_EXCEEDS_PAID": (
        _C,
        "退款金额超过可退金额",
        "The refund is more than what is left to refund",
    ),
    # input, auth, limits
    "VALIDATION_FAILED": (_I, "请求参数有误", "The request is invalid"),
    "ID_NUMBER_INVALID": (_I, "证件号码无效", "The identity number is invalid"),
    "REQUEST_IN_PROGRESS": (
        _C,
        "相同的请求正在处理中，请稍候",
        "The same request is still being processed; wait a moment",
    ),
    "IDEMPOTENCY_KEY_REUSED": (
        _C,
        "幂等键已用于另一个请求",
        "This idempotency key was used for a different request",
    ),
    "UNAUTHENTICATED": (_F, "请先登录", "Sign in first"),
    "CREDENTIALS_INVALID": (_F, "手机号或密码错误", "Wrong phone number or password"),
    "ACCOUNT_EXISTS": (_C, "该手机号已注册", "This phone number is already registered"),
    "PERMISSION_DENIED": (_F, "无权执行此操作", "You may not do this"),
    "RATE_LIMITED": (_R, "操作过于频繁，请稍后再试", "Too many attempts; try again later"),
    "DATABASE_UNAVAILABLE": (
        _U,
        "系统繁忙，预约记录暂时无法写入，请稍后再试",
        "The booking record is unavailable; retry shortly",
    ),
    "SERVICE_UNAVAILABLE": (
        _U,
        "系统繁忙，请稍后再试",
        "The service is unavailable; retry shortly",
    ),
    "INVENTORY_UNAVAILABLE": (
        _U,
        "号源服务暂时不可用，请稍后再试",
        "The slot pool is unavailable; retry shortly",
    ),
    # region rules (issue [rules])
    # hospital connectors (issue [connectors])
    # search (issue [search])
}


def error(code: str, **detail: Any) -> GuahaoError:
    """The error for ``code``, with its kind and messages from the catalogue.

    >>> e = error("SLOT_SOLD_OUT", slot_id="s1")
    >>> type(e).__name__, e.message_zh, e.detail
    ('ConflictError', '号源已约满', {'slot_id': 's1'})
    """
    kind, zh, en = CODES[code]
    return kind(code, zh, en, **detail)


def refuse(code: str, **detail: Any) -> NoReturn:
    """Raise the catalogued error for ``code``."""
    raise error(code, **detail)

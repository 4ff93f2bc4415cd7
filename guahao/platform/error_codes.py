"""The catalogue of refusal codes: one row per code, its kind and its two messages.

Codes are stable API: clients and hospital systems branch on them. Add rows, never rename.
``refuse`` builds the right ``GuahaoError`` subclass so that no caller spells a message twice;
``Refusal`` carries a code and its detail as a value, for a hot path that answers without
raising.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgspec

from guahao.platform.errors import (
    ConflictError,
    ForbiddenError,
    GuahaoError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    SlotNotLoadedError,
    UnavailableError,
)

__all__ = ["CODES", "Refusal", "error", "refuse"]

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
    "SLOT_NOT_LOADED": (
        SlotNotLoadedError,
        "号源数据正在加载，请稍后再试",
        "The slot is being loaded into the slot pool; retry shortly",
    ),
    # region rules (issue [rules])
    # waitlist (候补) and lottery (摇号) (guahao.platform.services.waitlist, lottery)
    "UNIT_NOT_RETURNING": (
        _C,
        "该号源已不在回收途中（已回到号源池或已分配给其他候补者）",
        "This unit is no longer on its way back (it went public or another waiter got it)",
    ),
    "SESSION_IS_LOTTERY": (
        _C,
        "该出诊单元采用摇号分配，请在报名时间内参加摇号",
        "This session is allocated by lottery; enter the draw during its window",
    ),
    "SESSION_NOT_LOTTERY": (
        _C,
        "该出诊单元不采用摇号分配",
        "This session is not allocated by lottery",
    ),
    "WAITLIST_SCOPE_INVALID": (
        _I,
        "候补对象不完整或与候补范围不符",
        "The wait must name the session, doctor or department its scope calls for",
    ),
    "WAITLIST_DATE_RANGE_INVALID": (
        _I,
        "候补日期范围无效（开始晚于结束或早于今天）",
        "The date range is empty or starts before today",
    ),
    "WAITLIST_TOO_FAR_AHEAD": (
        _I,
        "候补日期超出允许的范围",
        "The dates reach further ahead than waits may",
    ),
    "WAITLIST_LIMIT_REACHED": (
        _C,
        "该就诊人的候补数量已达上限",
        "This person already holds as many waits as allowed",
    ),
    "WAITLIST_ALREADY_WAITING": (
        _C,
        "该就诊人已在此候补",
        "This patient is already waiting for this",
    ),
    "WAITLIST_SESSION_CLOSED": (
        _C,
        "该出诊单元已停诊、已开始或已结束，不能候补",
        "This session is stopped, started or over; it cannot be waited for",
    ),
    "WAITLIST_SESSION_NOT_RELEASED": (
        _C,
        "号源尚未放出，放号后约满才可候补",
        "This session's units are not released yet; wait only once it is fully booked",
    ),
    "WAITLIST_UNITS_AVAILABLE": (
        _C,
        "该出诊单元尚有号源，请直接预约",
        "This session still has units; book one directly",
    ),
    "WAITLIST_ENTRY_NOT_FOUND": (_N, "候补记录不存在", "No such wait"),
    "WAITLIST_ENTRY_NOT_WAITING": (_C, "该候补已结束", "This wait has already ended"),
    "LOTTERY_WINDOW_INVALID": (
        _I,
        "摇号时间无效：报名须早于开奖，开奖须早于就诊",
        "The entry window must open before the draw, and the draw come before the session",
    ),
    "LOTTERY_MARK_TOO_LATE": (
        _C,
        "号源已放出或已有预约，不能改为摇号",
        "This session's units are already released or booked; it cannot become a lottery",
    ),
    "LOTTERY_NOT_OPEN": (_C, "当前不在摇号报名时间内", "The draw is not taking entries now"),
    "LOTTERY_ALREADY_ENTERED": (
        _C,
        "该就诊人已参加本次摇号",
        "This person has already entered this draw",
    ),
    "LOTTERY_ENTRY_LIMIT_REACHED": (
        _C,
        "该就诊人同一就诊日的摇号报名已达上限",
        "This person has entered as many draws for that visit day as allowed",
    ),
    "LOTTERY_ENTRY_NOT_FOUND": (_N, "摇号报名记录不存在", "No such lottery entry"),
    "LOTTERY_ALREADY_DRAWN": (
        _C,
        "摇号已开奖，报名不能再更改",
        "The draw has taken place; the entry can no longer change",
    ),
    # strikes, blacklist, appeals, staff, audit, suspicion (guahao.platform.services.blacklist…)
    "PERSON_NOT_FOUND": (_N, "该人员不存在", "No such person"),
    "BAN_NOT_FOUND": (_N, "黑名单记录不存在", "No such blacklist entry"),
    "BAN_NOT_ACTIVE": (
        _C,
        "该黑名单记录已解除或已到期",
        "This blacklist entry was already lifted or has ended",
    ),
    "BAN_ALREADY_ACTIVE": (
        _C,
        "该人员已在黑名单中，请先解除现有记录",
        "This person is already blacklisted; lift the current entry first",
    ),
    "BAN_LENGTH_INVALID": (_I, "限制天数须在1至3650天之间", "A ban lasts 1 to 3650 days"),
    "REASON_REQUIRED": (_I, "请填写原因", "A reason is required"),
    "APPEAL_NOT_FOUND": (_N, "申诉不存在", "No such appeal"),
    "APPEAL_ALREADY_PENDING": (
        _C,
        "该记录已有待处理的申诉，请等待处理结果",
        "An appeal against this entry is already waiting for a decision",
    ),
    "APPEAL_ALREADY_DECIDED": (_C, "该申诉已处理", "This appeal was already decided"),
    "APPEAL_WINDOW_CLOSED": (
        _C,
        "已超过申诉期限",
        "The time to appeal against this entry has passed",
    ),
    "APPEAL_NOT_ALLOWED": (
        _F,
        "只能为本账号下被列入黑名单的就诊人申诉",
        "Only a patient of this account who is on the blacklist can appeal",
    ),
    "STAFF_CREDENTIALS_INVALID": (_F, "用户名或密码错误", "Wrong username or password"),
    "STAFF_ROLE_REQUIRED": (
        _F,
        "当前工作人员角色无权执行此操作",
        "This staff role may not do this",
    ),
    "STAFF_USERNAME_TAKEN": (_C, "该用户名已被使用", "This username is taken"),
    "STAFF_ROLE_INVALID": (
        _I,
        "工作人员角色无效，或医院工作人员未指定医院",
        "Unknown staff role, or a hospital staff account without its hospital",
    ),
    "SIGNAL_NOT_FOUND": (_N, "可疑信号不存在", "No such suspicion signal"),
    "STAFF_NOT_FOUND": (_N, "工作人员账号不存在", "No such staff account"),
    "STRIKE_NOT_FOUND": (_N, "违约记录不存在", "No such strike"),
    # region rules as data, limits, real-name patients (region_rules, booking_limits)
    "RULES_INVALID": (_I, "规则设置无效", "The rules are invalid"),
    "RULE_NOT_OVERRIDABLE": (
        _F,
        "区域规则不允许医院修改此项",
        "The region does not let hospitals change this rule",
    ),
    "RULES_CHANGED_MEANWHILE": (
        _C,
        "规则已被他人修改，请刷新后重试",
        "The rules were changed meanwhile; reload and retry",
    ),
    "PATIENT_BLACKLISTED": (
        _F,
        "该就诊人因违约已被暂停网上预约，到期自动恢复，可提出申诉；现场挂号不受影响",
        "This patient is barred from online booking for violations until the date given; "
        "appeals are possible and on-site registration is not affected",
    ),
    "PATIENT_NOT_FILED": (
        _F,
        "该医院要求先建档后预约，请先到医院或通过医院渠道建档",
        "This hospital requires a patient record (建档) before online booking",
    ),
    "LIMIT_PATIENT_DEPARTMENT_DAY": (
        _C,
        "同一就诊人同一天同一科室的预约已达上限",
        "This patient already has the most bookings allowed in this department that day",
    ),
    "LIMIT_PATIENT_DAY": (
        _C,
        "同一就诊人当天的预约已达上限",
        "This patient already has the most bookings allowed that day",
    ),
    "LIMIT_PATIENT_MONTH": (
        _C,
        "该就诊人本月的预约已达上限",
        "This patient already has the most bookings allowed in that month",
    ),
    "LIMIT_ACCOUNT_MONTH": (
        _C,
        "该账号本月的预约已达上限",
        "This account already has the most bookings allowed in that month",
    ),
    "REBOOK_TOO_SOON": (
        _C,
        "退号后需等待一段时间才能再次预约",
        "After a cancellation, booking again here must wait a little",
    ),
    "PATIENT_LIMIT_REACHED": (
        _C,
        "该账号的就诊人数量已达上限",
        "This account already has the most patients allowed",
    ),
    "PATIENT_ADDITIONS_TOO_FREQUENT": (
        _R,
        "近期添加就诊人过于频繁，请稍后再试",
        "Too many patients were added recently; try later",
    ),
    "PATIENT_ALREADY_ADDED": (
        _C,
        "该证件已是本账号的就诊人",
        "A patient with this document is already on this account",
    ),
    "PERSON_IS_SELF_ELSEWHERE": (
        _C,
        "该证件已被其他账号登记为本人",
        "This document is already the account holder (本人) of another account",
    ),
    "PATIENT_TOO_YOUNG_FOR_SELF": (
        _I,
        "未满规定年龄的就诊人须由监护人添加",
        "A patient this young must be added by a guardian, not as the account holder",
    ),
    "IDENTITY_CHANGE_LIMIT": (
        _C,
        "就诊人实名信息修改次数已达上限",
        "This patient's identity has been changed as often as allowed",
    ),
    "PATIENT_HAS_ACTIVE_BOOKINGS": (
        _C,
        "该就诊人有未完成的预约，不能修改或删除",
        "This patient has live bookings and cannot be changed or removed",
    ),
    "ADD_ON_LIMIT_REACHED": (
        _C,
        "本出诊单元的加号已达上限",
        "This session already has the most add-on units allowed",
    ),
    "FOLLOW_UP_NOT_OFFERED": (
        _C,
        "该医院未开通复诊有效期",
        "This hospital does not offer follow-up validity",
    ),
    "FILING_NOT_FOUND": (_N, "建档记录不存在", "No such filing request"),
    "FOLLOW_UP_EXPIRED": (
        _C,
        "复诊有效期已过，请重新挂号",
        "The follow-up validity has ended; book again",
    ),
    # identity documents and patient names (guahao.platform.identity_documents, person_names)
    "DOCUMENT_TYPE_UNKNOWN": (_I, "不支持该证件类型", "This document type is not accepted"),
    "DOCUMENT_NUMBER_INVALID": (
        _I,
        "证件号码格式与所选证件类型不符，请核对",
        "The number does not have the format of the chosen document; check it",
    ),
    "DOCUMENT_NUMBER_TYPE_MISMATCH": (
        _I,
        "该号码属于另一种证件，请选择正确的证件类型",
        "This number belongs to another kind of document; choose the right document type",
    ),
    "ID_NUMBER_CHECKSUM_MISMATCH": (
        _I,
        "证件号码校验位不正确，请检查是否输错",
        "The check character does not match the number; check it for a typo",
    ),
    "ID_NUMBER_AREA_UNKNOWN": (
        _I,
        "证件号码的地区代码不存在",
        "The area code at the start of the number does not exist",
    ),
    "ID_BIRTH_DATE_INVALID": (
        _I,
        "证件号码中的出生日期不是有效日期",
        "The birth date in the number is not a possible date",
    ),
    "ID_BIRTH_DATE_IN_FUTURE": (
        _I,
        "证件号码中的出生日期晚于今天",
        "The birth date in the number is later than today",
    ),
    "PATIENT_NAME_INVALID": (
        _I,
        "姓名只能由汉字（少数民族姓名可含间隔号“·”）或拉丁字母组成，不能含数字、符号或表情",
        "A name is written in Chinese characters (with the middle dot · of minority names)"
        " or Latin letters, without digits, symbols or emoji",
    ),
    "PATIENT_NAME_LENGTH_INVALID": (
        _I,
        "姓名长度不符合要求：中文姓名2至30个字，外文姓名2至70个字符",
        "The name's length is out of range: 2 to 30 Chinese characters, or 2 to 70 Latin"
        " characters",
    ),
    "PATIENT_NAME_MIXED_SCRIPTS": (
        _I,
        "姓名不能混用汉字和拉丁字母",
        "A name cannot mix Chinese characters and Latin letters",
    ),
    "PATIENT_NAME_SEPARATOR_MISPLACED": (
        _I,
        "姓名中的间隔号或分隔符不能在开头、结尾或连续出现",
        "A middle dot or separator cannot begin or end a name or follow another",
    ),
    "PATIENT_NAME_SCRIPT_MISMATCH": (
        _I,
        "居民身份证和户口簿上的姓名须为中文",
        "The name on a resident identity card or household register is in Chinese characters",
    ),
    # hospital connectors (issue [connectors])
    "CONNECTOR_NOT_FOUND": (_N, "该医院未登记此类接口", "No connector of this kind is registered"),
    "FHIR_RESOURCE_INVALID": (
        _I,
        "FHIR 资源不符合 R4 规范",
        "The FHIR resource does not conform to R4",
    ),
    "FHIR_RESOURCE_UNSUPPORTED": (
        _I,
        "平台不接收此类 FHIR 资源",
        "The platform does not take this kind of FHIR resource",
    ),
    "FHIR_REFERENCE_UNRESOLVED": (
        _I,
        "FHIR 资源引用的对象不存在",
        "A FHIR reference points to nothing the platform knows",
    ),
    "CONNECTOR_CODE_UNMAPPED": (
        _I,
        "医院数据缺少平台需要的编码（如诊疗科目代码）",
        "The hospital's data lacks a code the platform needs (such as the department catalog code)",
    ),
    "HL7_MESSAGE_INVALID": (_I, "HL7 v2 消息无法解析", "The HL7 v2 message cannot be parsed"),
    "HL7_MESSAGE_UNSUPPORTED": (
        _I,
        "平台不接收此类 HL7 v2 消息",
        "The platform does not take this HL7 v2 message type",
    ),
    "HL7_MESSAGE_TOO_LARGE": (
        _I,
        "HL7 v2 消息过大或分隔符过多",
        "The HL7 v2 message is too large or has too many separators",
    ),
    "HL7_SENDER_NOT_AUTHORISED": (
        _F,
        "该连接无权代表此医院发送 HL7 v2 消息",
        "This connection may not send HL7 v2 messages for that hospital",
    ),
    "HL7_SENDER_BINDING_INVALID": (
        _I,
        "HL7 v2 接口须绑定发送方的来源地址或客户端证书，且格式正确",
        "An HL7 v2 connector needs a valid sender binding: source addresses or a client "
        "certificate fingerprint",
    ),
    "BATCH_FILE_INVALID": (
        _I,
        "排班文件有错误，未导入任何数据",
        "The schedule file has errors; nothing was imported",
    ),
    "CAPACITY_BELOW_TAKEN": (
        _C,
        "调整后的号源数少于已预约或锁定的号源",
        "The new capacity is below the units already booked or held",
    ),
    "SESSION_SEGMENTS_CHANGED": (
        _C,
        "已发布出诊单元的分时段不能改变，请停诊后重新排班",
        "The time segments of a published session cannot change; stop it and publish anew",
    ),
    "HIS_UNAVAILABLE": (
        _U,
        "医院信息系统暂时无法访问，将自动重试",
        "The hospital's system is unavailable; it will be retried",
    ),
    "HIS_REFUSED": (_C, "医院信息系统拒绝了请求", "The hospital's system refused the request"),
    "HIS_CIRCUIT_OPEN": (
        _U,
        "医院信息系统连续失败，暂停访问",
        "The hospital's system failed repeatedly; calls to it are paused",
    ),
    "HOSPITAL_CLIENT_INVALID": (
        _F,
        "医院客户端凭据无效",
        "The hospital client's credentials are invalid",
    ),
    "HOSPITAL_SCOPE_DENIED": (
        _F,
        "无权访问其他医院的数据",
        "This client may not read or change another hospital",
    ),
    "HIS_SLOT_REFUSED": (
        _C,
        "医院系统未能锁定该号源，请选择其他时段",
        "The hospital's system would not hold this unit; choose another time",
    ),
    "HIS_HOLD_UNAVAILABLE": (
        _U,
        "医院系统暂时无法锁号，请稍后再试",
        "The hospital's system cannot hold units right now; retry shortly",
    ),
    # the authority's figures (issue [console])
    "FIGURES_RANGE_INVALID": (
        _I,
        "统计期间有误：结束日期不能早于开始日期，且不超过400天",
        "The period is invalid: it must not end before it starts or exceed 400 days",
    ),
    "EXPORT_FORMAT_UNSUPPORTED": (
        _I,
        "不支持该导出格式，请选择 CSV 或 XLSX",
        "This export format is not supported; choose CSV or XLSX",
    ),
    # search (issue [search])
    "SEARCH_QUERY_INVALID": (_I, "搜索内容有误", "The search text is invalid"),
    "SEARCH_FILTER_INVALID": (_I, "筛选条件有误", "A search filter is invalid"),
    "SEARCH_UNAVAILABLE": (
        _U,
        "搜索服务暂时不可用，请稍后再试",
        "Search is unavailable; retry shortly",
    ),
    # citizen pages: sign-in by SMS code and the page session (issue [web])
    "SIGN_IN_CODE_INVALID": (
        _I,
        "验证码错误或已失效，请重新获取",
        "The code is wrong or no longer valid; ask for a new one",
    ),
    "SIGN_IN_CODE_WAIT": (
        _R,
        "尝试过于频繁，请稍候再输入验证码",
        "Too many tries; wait a moment before entering a code again",
    ),
    "CSRF_TOKEN_INVALID": (
        _F,
        "页面已过期，请刷新后重试",
        "This page has expired; reload it and try again",
    ),
    # sign-in through the region's OpenID Connect identity provider (guahao.web.oidc)
    "OIDC_NOT_CONFIGURED": (
        _N,
        "本平台未开通统一身份认证登录",
        "Sign-in through the regional identity provider is not set up here",
    ),
    "OIDC_STATE_INVALID": (
        _F,
        "登录请求已失效或不是从本浏览器发起，请重新登录",
        "The sign-in request expired or did not start in this browser; sign in again",
    ),
    "OIDC_SIGN_IN_DENIED": (
        _F,
        "统一身份认证平台未完成登录",
        "The identity provider did not complete the sign-in",
    ),
    "OIDC_PROVIDER_UNAVAILABLE": (
        _U,
        "统一身份认证平台暂时无法访问，请稍后再试",
        "The identity provider is unavailable; retry shortly",
    ),
    "ID_TOKEN_EXPIRED": (
        _F,
        "身份令牌已过期，请重新登录",
        "The ID token has expired; sign in again",
    ),
    "ID_TOKEN_INVALID": (
        _F,
        "身份令牌无效（签名、签发方、受众或随机数不符），请重新登录",
        "The ID token is invalid (signature, issuer, audience or nonce); sign in again",
    ),
    "OIDC_PHONE_REQUIRED": (
        _F,
        "统一身份认证平台未提供已验证的手机号，无法关联账号",
        "The identity provider shared no verified mobile number to link an account with",
    ),
    # [rules] priority rebooking offers (issue 16)
    "REBOOKING_OFFER_NOT_FOUND": (_N, "改约提议不存在", "No such rebooking offer"),
    "REBOOKING_OFFER_CLOSED": (
        _C,
        "该改约提议已结束（已接受、已拒绝或已过期）",
        "This rebooking offer is over (accepted, declined or expired)",
    ),
    "REBOOKING_UNIT_NOT_OFFERED": (
        _I,
        "该号源不在改约提议中",
        "That unit is not one of the offer's proposals",
    ),
    "REBOOKING_UNIT_GONE": (
        _C,
        "该号源已被预约，请选择其他提议的号源",
        "That unit has just been taken; choose another proposed unit",
    ),
    "ONE_TAP_LINK_INVALID": (_F, "退号链接无效", "This cancellation link is not valid"),
    "ONE_TAP_LINK_USED": (_C, "该退号链接已使用过", "This cancellation link has been used already"),
    # the citizen's inbox on the pages (issue [web], notifications)
    "NOTIFICATION_NOT_FOUND": (_N, "消息不存在", "No such message"),
    # operations
    "METRICS_TOKEN_INVALID": (
        _F,
        "缺少或错误的监控令牌",
        "Missing or wrong metrics bearer token",
    ),
    # password sign-in: progressive delays, never a lockout
    "SIGN_IN_WAIT": (
        _R,
        "尝试过于频繁，请稍候再登录",
        "Too many tries; wait a moment before signing in again",
    ),
    # request size
    "REQUEST_BODY_TOO_LARGE": (
        _I,
        "请求内容过大，已拒绝",
        "The request body is larger than this address accepts",
    ),
    # patient relations proven (docs/identity.md)
    "PATIENT_PROOF_PENDING": (
        _F,
        "请先输入发送到该就诊人预留手机的验证码",
        "Enter the code sent to this person's phone on file first",
    ),
    "PATIENT_PROOF_UNREACHABLE": (
        _C,
        "该证件已由他人验证，且无法联系其本人，暂不能添加",
        "This person has been verified elsewhere and cannot be reached for a code",
    ),
    "PATIENT_PROOF_CODE_INVALID": (
        _I,
        "验证码错误或已失效，请重新获取",
        "The code is wrong or no longer valid; ask for a new one",
    ),
    # console-policy: department policies, and a 停诊 confirmed on what was previewed
    "DEPARTMENT_POLICY_OUT_OF_BOUNDS": (
        _I,
        "超出区域规则允许科室设置的范围",
        "This is outside what the region's rules let a department set",
    ),
    "DEPARTMENT_POLICY_CHANGED_MEANWHILE": (
        _C,
        "该科室的放号策略已被他人修改，请刷新后重试",
        "Someone else changed this department's policy; reload and try again",
    ),
    "STOP_IMPACT_CHANGED": (
        _C,
        "预览后又有新的预约，请查看新的影响后再次确认停诊",
        "Bookings changed since the preview; check the new impact and confirm again",
    ),
    # what a declared relation may do (docs/security.md)
    "PATIENT_RELATION_UNCONFIRMED": (
        _F,
        "请先输入发送到该就诊人手机的验证码，确认后才能为其预约",
        "Enter the code sent to this person's phone to confirm the relation before booking",
    ),
    "PATIENT_PHONE_NOT_OWN": (
        _I,
        "请填写该就诊人本人的手机号，不能使用本账号的手机号（确认验证码将发送到该号码）",
        "Give this person's own mobile number, not this account's (the code that confirms the "
        "relation goes to it)",
    ),
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


class Refusal(msgspec.Struct, frozen=True):
    """A catalogued refusal returned, not raised: its error is built only if someone raises it.

    At a release most hold attempts are refused from the worker's own memory. Building the
    error (its messages, its detail) and raising it through the awaits to be caught at once
    was a tenth of the worker's time (bench/profiles/engine5-3-*, engine6-1-*); a value costs
    a small object.

    >>> r = Refusal("SLOT_SOLD_OUT", {"slot_id": "s1"})
    >>> type(r.error()).__name__, r.error().detail
    ('ConflictError', {'slot_id': 's1'})
    """

    code: str
    detail: dict[str, Any]

    def error(self) -> GuahaoError:
        """The catalogued error, to raise where a caller expects one."""
        return error(self.code, **self.detail)

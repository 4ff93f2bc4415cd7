"""The citizen pages' message catalogue: every visible string once, in Chinese and English.

Templates ask for a key (``{{ t("search.title") }}``); error codes come from the platform's
own catalogue (``guahao.platform.error_codes``), so a refusal reads the same on a page as in
the API. Simplified Chinese is the default; English is the switch.
"""

from __future__ import annotations

from typing import Any, Literal

from guahao.platform.error_codes import CODES
from guahao.platform.reference.catalog import load_catalog

__all__ = ["LANGUAGES", "MESSAGES", "Language", "Translator"]

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # frame
    "site.name": ("区域预约挂号", "Regional Hospital Booking"),
    "site.tagline": ("全区医院 一站预约", "Every hospital of the region, one place to book"),
    "nav.home": ("首页", "Home"),
    "nav.search": ("找医生", "Find a doctor"),
    "nav.me": ("我的", "Me"),
    "nav.skip": ("跳到正文", "Skip to content"),
    "nav.main": ("主导航", "Main navigation"),
    "switch.lang": ("English", "中文"),
    "switch.lang.label": ("Switch to English", "切换到中文"),
    "switch.elder.on": ("长辈模式", "Large text mode"),
    "switch.elder.off": ("标准模式", "Standard mode"),
    "sign_in.title": ("手机号登录", "Sign in with your phone"),
    "sign_in.phone": ("手机号", "Mobile number"),
    "sign_in.phone.hint": ("中国大陆手机号，11位", "Mainland China mobile, 11 digits"),
    "sign_in.send": ("获取验证码", "Send code"),
    "sign_in.sent": (
        "验证码已发送至 {phone}，5 分钟内有效。",
        "A code was sent to {phone}; it is valid for 5 minutes.",
    ),
    "sign_in.code": ("短信验证码", "Code from the SMS"),
    "sign_in.submit": ("登录", "Sign in"),
    "sign_in.resend": ("重新获取验证码", "Send a new code"),
    "sign_in.other_phone": ("换个手机号", "Use another number"),
    "sign_in.note": (
        "首次登录将自动注册。我们只用手机号确认是您本人。",
        "Your first sign-in creates your account. The phone only proves it is you.",
    ),
    "sign_out": ("退出登录", "Sign out"),
    "sign_in.needed": ("请先登录", "Please sign in first"),
    # home and search
    "home.search.label": (
        "搜索医院、科室、医生或症状",
        "Search hospitals, departments, doctors or symptoms",
    ),
    "home.search.placeholder": ("如：心内科、王伟、头痛", "e.g. cardiology, a doctor, headache"),
    "home.search.button": ("搜索", "Search"),
    "home.hospitals": ("全区医院", "Hospitals of the region"),
    "home.quick": ("常用", "Shortcuts"),
    "home.my_bookings": ("我的预约", "My bookings"),
    "home.my_patients": ("就诊人", "Patients"),
    "home.family": (
        "为家人挂号：先添加就诊人，预约时选择即可。",
        "Booking for family: add them as patients, then pick them when booking.",
    ),
    "search.title": ("搜索结果", "Search results"),
    "search.total": ("共 {total} 条", "({total})"),
    "search.none": ("没有找到，换个词试试", "Nothing found; try other words"),
    "search.filters": ("筛选", "Filters"),
    "search.apply": ("筛选", "Apply"),
    "search.clear": ("清除筛选", "Clear filters"),
    "search.triage": ("根据症状，建议挂", "For this symptom, consider"),
    "facet.kind": ("类型", "Type"),
    "facet.district": ("区域", "District"),
    "facet.grade": ("医院等级", "Hospital grade"),
    "facet.title": ("医生职称", "Doctor's title"),
    "facet.catalog_code": ("科室类别", "Specialty"),
    "kind.hospital": ("医院", "Hospital"),
    "kind.department": ("科室", "Department"),
    "kind.doctor": ("医生", "Doctor"),
    "search.next_available": ("最近有号：{date}", "Next free: {date}"),
    "search.next_release": ("下次放号：{at}", "Next release: {at}"),
    "search.page.next": ("下一页", "Next page"),
    "search.page.prev": ("上一页", "Previous page"),
    # catalog pages
    "hospital.departments": ("科室", "Departments"),
    "hospital.address": ("地址", "Address"),
    "department.doctors": ("医生", "Doctors"),
    "doctor.schedule_days": ("未来 {n} 天出诊", "Sessions in the next {n} days"),
    "doctor.more_days": ("查看未来 14 天", "Show all 14 days"),
    "doctor.no_sessions": ("近 14 天无出诊", "No sessions in the next 14 days"),
    "doctor.expertise": ("擅长", "Expertise"),
    "doctor.fee": ("挂号费 ¥{fee}", "Fee ¥{fee}"),
    "doctor.left": ("余 {n}", "{n} left"),
    "doctor.full": ("约满", "Full"),
    "doctor.closed": ("停诊", "Stopped"),
    "doctor.release_in": ("距放号还有", "Released in"),
    "doctor.release_at": ("{at} 放号", "Released at {at}"),
    "doctor.releasing": ("正在放号…", "Releasing…"),
    "doctor.book": ("预约 {time}", "Book {time}"),
    "doctor.live": ("号源实时更新", "Free units update live"),
    "doctor.hold_minutes": (
        "锁号后请在 {n} 分钟内完成",
        "After holding, finish within {n} minutes",
    ),
    "period.morning": ("上午", "Morning"),
    "period.afternoon": ("下午", "Afternoon"),
    "period.evening": ("夜间", "Evening"),
    "category.general": ("普通号", "General"),
    "category.specialist": ("专家号", "Specialist"),
    "category.premium": ("特需号", "Premium"),
    "title.chief": ("主任医师", "Chief physician"),
    "title.associate_chief": ("副主任医师", "Associate chief physician"),
    "title.attending": ("主治医师", "Attending physician"),
    "title.resident": ("住院医师", "Resident physician"),
    # the booking flow
    "flow.steps": ("挂号步骤", "Booking steps"),
    "flow.step.target": ("选号", "Choose"),
    "flow.step.hold": ("锁号", "Hold"),
    "flow.step.patient": ("就诊人", "Patient"),
    "flow.step.pay": ("支付", "Pay"),
    "flow.step.done": ("完成", "Done"),
    "flow.held": ("已为您锁定号源", "The unit is held for you"),
    "flow.hold_left": ("剩余锁号时间", "Hold time left"),
    "flow.hold_expired": (
        "锁号已超时，号源已释放，请重新挂号。",
        "The hold expired and the unit was released. Please start again.",
    ),
    "flow.choose_patient": ("选择就诊人", "Choose the patient"),
    "flow.no_patients": ("还没有就诊人，请先添加", "No patients yet: add one below"),
    "flow.confirm": ("确认并去支付", "Confirm and pay"),
    "flow.confirm_free": ("确认预约", "Confirm booking"),
    "flow.leave": ("不约了，释放号源", "Give the unit back"),
    "flow.back_to_doctor": ("返回医生主页", "Back to the doctor"),
    "flow.pay.title": ("支付挂号费", "Pay the fee"),
    "flow.pay.amount": ("应付金额", "Amount due"),
    "flow.pay.expires": ("请在此时间前支付", "Pay before"),
    "flow.pay.left": ("剩余支付时间", "Time left to pay"),
    "flow.pay.self_pay": ("自费支付（沙箱）", "Pay self-pay (sandbox)"),
    "flow.pay.insurance": ("医保支付（沙箱）", "Pay with insurance (sandbox)"),
    "flow.pay.sandbox": (
        "这是演示用的沙箱收银台，不会真实扣款。",
        "This is the sandbox cashier: no real money moves.",
    ),
    "flow.pay.expired": ("支付已超时，号源已释放。", "Payment time is up; the unit was released."),
    "flow.done": ("预约成功", "Booking confirmed"),
    "flow.done.note": (
        "请按时就诊，携带就诊人证件。",
        "Please arrive on time with the patient's ID.",
    ),
    "flow.ended": ("本次挂号已结束", "This booking has ended"),
    # patients
    "patient.add": ("添加就诊人", "Add a patient"),
    "patient.name": ("姓名", "Full name"),
    "patient.document_type": ("证件类型", "Document type"),
    "patient.document_number": ("证件号码", "Document number"),
    "patient.phone": ("手机号（选填）", "Mobile (optional)"),
    "patient.relation": ("与您的关系", "Relation to you"),
    "patient.save": ("保存就诊人", "Save patient"),
    "patient.remove": ("删除", "Remove"),
    "patient.standing": ("信用与申诉", "Standing and appeals"),
    "patient.real_name": (
        "实名就诊：姓名与证件须与本人一致，证件信息加密保存。",
        "Real-name rules: name and document must match the person; they are stored encrypted.",
    ),
    "relation.self": ("本人", "Myself"),
    "relation.spouse": ("配偶", "Spouse"),
    "relation.child": ("子女", "Child"),
    "relation.parent": ("父母", "Parent"),
    "relation.sibling": ("兄弟姐妹", "Sibling"),
    "relation.other": ("其他", "Other"),
    "document.resident_id": ("居民身份证", "Resident ID card"),
    "document.household_register": ("户口簿（儿童）", "Household register (children)"),
    "document.passport": ("护照", "Passport"),
    "document.hk_macao_permit": ("港澳居民来往内地通行证", "Home Return Permit (HK/Macao)"),
    "document.taiwan_permit": ("台湾居民来往大陆通行证", "Mainland Travel Permit (Taiwan)"),
    "document.hmt_residence_permit": ("港澳台居民居住证", "Residence Permit (HK/Macao/Taiwan)"),
    "document.foreign_permanent_resident": (
        "外国人永久居留身份证",
        "Foreign Permanent Resident ID",
    ),
    # me
    "me.title": ("我的", "Me"),
    "me.bookings": ("我的预约", "My bookings"),
    "me.patients": ("就诊人管理", "My patients"),
    "me.waits": ("候补与摇号", "Waitlist and lottery"),
    "me.notifications": ("消息通知", "Notifications"),
    "me.no_bookings": ("暂无预约", "No bookings yet"),
    "me.no_waits": ("暂无候补或摇号", "No waits or lottery entries"),
    "me.no_notifications": ("暂无消息", "No messages"),
    "booking.cancel": ("退号", "Cancel booking"),
    "booking.cancel_by": ("退号截止：{at}", "Cancel by {at}"),
    "booking.cancel_closed": ("已过退号时间", "Too late to cancel"),
    "booking.refund": ("退款：{status}", "Refund: {status}"),
    "booking.continue": ("继续挂号", "Continue"),
    "booking.visit": ("就诊时间", "Visit"),
    "booking.patient": ("就诊人", "Patient"),
    "booking.pay_by": ("未支付，{at} 前有效", "Unpaid; expires at {at}"),
    "refund.pending": ("退款处理中", "in progress"),
    "refund.succeeded": ("已退回", "paid back"),
    "refund.failed": ("重试中", "retrying"),
    "status.held": ("锁号中", "Held"),
    "status.patient_chosen": ("待提交", "Patient chosen"),
    "status.awaiting_payment": ("待支付", "Awaiting payment"),
    "status.confirmed": ("预约成功", "Confirmed"),
    "status.checked_in": ("已就诊", "Checked in"),
    "status.no_show": ("爽约", "No-show"),
    "status.abandoned": ("已放弃", "Abandoned"),
    "status.expired": ("已超时", "Expired"),
    "status.cancelled_by_patient": ("已退号", "Cancelled"),
    "status.cancelled_by_hospital": ("医院停诊", "Cancelled by hospital"),
    "wait.title": ("候补", "Waitlist"),
    "wait.status.waiting": ("候补中", "waiting"),
    "wait.status.fulfilled": ("候补成功", "got a unit"),
    "wait.status.cancelled": ("已取消", "cancelled"),
    "wait.status.expired": ("已过期", "expired"),
    "wait.status.removed": ("已移除", "removed"),
    "lottery.status.entered": ("已报名", "entered"),
    "lottery.status.won": ("已中签", "won"),
    "lottery.status.lost": ("未中签", "not drawn"),
    "lottery.status.ineligible": ("不符合条件", "not eligible"),
    "lottery.status.withdrawn": ("已退出", "withdrawn"),
    "strike.no_show": ("爽约", "No-show"),
    "strike.late_cancellation": ("临近退号", "Late cancellation"),
    "strike.cancellation": ("退号", "Cancellation"),
    "strike.unpaid_expiry": ("锁号未支付", "Held but not paid"),
    "lottery.title": ("摇号", "Lottery"),
    "standing.title": ("信用记录", "Standing"),
    "standing.strikes": ("违约记录", "Strikes"),
    "standing.none": ("无违约记录", "No strikes"),
    "standing.ban": ("该就诊人已被限制预约", "This patient may not book for now"),
    "standing.ban.reason": ("原因：{reason}", "Reason: {reason}"),
    "standing.ban.until": ("限制至：{at}", "Until: {at}"),
    "standing.appeal": ("提交申诉", "File an appeal"),
    "standing.appeal.statement": ("申诉说明", "Your statement"),
    "standing.appeal.until": ("可在 {at} 前申诉", "You may appeal until {at}"),
    "standing.appeals": ("申诉记录", "Appeals"),
    "standing.clear": ("信用良好，可正常预约。", "In good standing; booking is open."),
    "appeal.pending": ("审核中", "pending"),
    "appeal.rejected": ("已驳回", "rejected"),
    "appeal.granted": ("已通过", "granted"),
    "error.title": ("操作未成功", "That did not work"),
    "error.code": ("错误代码", "Error code"),
    "error.appeal_hint": (
        "如有异议，可在“信用与申诉”中提交申诉。",
        "If you disagree, file an appeal under Standing and appeals.",
    ),
    "countdown.minutes": ("{m} 分 {s} 秒", "{m} min {s} s"),
    "live.updated": ("号源已更新", "Availability updated"),
    "grade.3A": ("三级甲等", "Grade 3A"),
    "grade.3B": ("三级乙等", "Grade 3B"),
    "grade.2A": ("二级甲等", "Grade 2A"),
    "grade.2B": ("二级乙等", "Grade 2B"),
    "grade.1": ("一级/社区", "Grade 1 / community"),
    # waiting for a unit (候补, 摇号) and the inbox's read marks
    "nav.inbox": ("消息", "Messages"),
    "inbox.link.label": ("消息，{n} 条未读", "Messages, {n} unread"),
    "inbox.unread": ("{n} 条未读", "{n} unread"),
    "inbox.read_all": ("全部标为已读", "Mark all read"),
    "inbox.new": ("未读", "New"),
    "inbox.mark_read": ("标为已读", "Mark read"),
    "wait.join": ("我要候补", "Join the waitlist"),
    "wait.join.title": ("候补挂号", "Join the waitlist"),
    "wait.join_doctor": ("候补该医生的号", "Wait for this doctor"),
    "wait.doctor_offer": ("都约满了？", "Fully booked?"),
    "wait.any_unit": ("任意号源", "any unit"),
    "wait.session_note": (
        "本时段已约满。有人退号或放出号源时，将按排队顺序分给候补的就诊人。",
        "This session is fully booked. Units that come back go to those waiting, in order.",
    ),
    "wait.doctor_note": (
        "在所选日期内，该医生的任一号源空出时，将按排队顺序分给候补的就诊人。",
        "Any unit of this doctor that comes free on the chosen days goes to those waiting,"
        " in order.",
    ),
    "wait.how": (
        "轮到您时系统会自动为就诊人锁号，并发消息通知您，请留意“消息”。",
        "When your turn comes the unit is held for the patient and you get a message.",
    ),
    "wait.date_from": ("从", "From"),
    "wait.date_to": ("到", "To"),
    "wait.dates": ("{start} 至 {end}", "{start} to {end}"),
    "wait.who": ("为谁候补", "Who is waiting"),
    "wait.no_patients": ("还没有就诊人，请先添加", "No patients yet: add one below"),
    "wait.leave": ("取消候补", "Leave the waitlist"),
    "wait.position": ("排第 {n} 位", "number {n} in line"),
    "lottery.tag": ("摇号", "Lottery"),
    "lottery.window": (
        "报名时间 {opens} 至 {draw}，{draw} 开奖",
        "Entries from {opens} until the draw at {draw}",
    ),
    "lottery.enter": ("报名摇号", "Enter the draw"),
    "lottery.enter.title": ("摇号报名", "Enter the lottery"),
    "lottery.draw_in": ("距开奖", "Draw in"),
    "lottery.drawing": ("开奖中", "Drawing"),
    "lottery.draw_at": ("{at} 开奖", "draw at {at}"),
    "lottery.not_yet": ("报名尚未开始，{at} 开始", "Entries open at {at}"),
    "lottery.closed": ("报名已截止", "Entries are closed"),
    "lottery.how": (
        "本时段的号源以摇号分配：开奖时在符合条件的报名者中随机抽取，中签后系统为就诊人锁号并发消息通知您。",
        "This session's units are drawn: at the draw, eligible entries are picked at random;"
        " a winner's unit is held for the patient and you get a message.",
    ),
    "lottery.who": ("为谁报名", "Who is entering"),
    "lottery.withdraw": ("退出摇号", "Withdraw"),
    # prepaid waits (候补预付), rebooking offers (改约提议), the one-tap 退号 page
    "prepay.title": ("候补预付", "Prepay your wait"),
    "prepay.amount": ("预付金额", "Prepayment"),
    "prepay.pay_by": ("请在此时间前支付（医院当地时间）", "Pay by (the hospital's local time)"),
    "prepay.how.line": ("支付后开始排队。", "You join the line once it is paid."),
    "prepay.how.served": (
        "候补成功即直接预约成功，无需再支付。",
        "When a unit is found, it is booked and confirmed at once: nothing more to pay.",
    ),
    "prepay.how.unserved": (
        "未候补成功（到期、取消候补或停诊）将全额退款。",
        "If the wait ends unserved (time up, left, or the session stopped), it is refunded"
        " in full.",
    ),
    "prepay.later": ("稍后支付，返回候补列表", "Pay later: back to my waits"),
    "prepay.pay_now": ("去支付预付款", "Pay the prepayment"),
    "prepay.due": ("请在 {at} 前支付，逾期候补自动结束。", "Pay by {at}, or the wait ends."),
    "prepay.status.created": ("待预付", "To prepay"),
    "prepay.status.paid": ("已预付 平台代管", "Prepaid, held by the platform"),
    "prepay.status.applied": ("已用于预约", "Used for the booking"),
    "prepay.status.refunded": ("已全额退款", "Refunded"),
    "prepay.status.closed": ("未支付 已关闭", "Not paid, closed"),
    "prepay.applied.note": (
        "预付款 ¥{amount} 已用于本次预约，无需再支付。",
        "¥{amount} of the prepayment paid for the booking: nothing more to pay.",
    ),
    "prepay.difference": ("差额 ¥{amount} 已退回。", "The difference, ¥{amount}, goes back."),
    "prepay.refunded.note": (
        "候补未成功，预付款 ¥{amount} 已原路全额退回。",
        "The wait ended unserved: ¥{amount} is refunded in full.",
    ),
    "prepay.closed.note": (
        "预付款未支付，候补已结束，未扣任何费用。",
        "The prepayment was not paid; the wait ended and nothing was charged.",
    ),
    "prepay.see_booking": ("查看预约", "See the booking"),
    "prepay.leave.note": (
        "取消候补后，预付款将全额退回。",
        "If you leave the waitlist, the prepayment is refunded in full.",
    ),
    "prepay.leave.confirm": (
        "确定取消候补？预付款将全额退回。",
        "Leave the waitlist? The prepayment will be refunded in full.",
    ),
    "offer.title": ("改约提议", "Rebooking offers"),
    "offer.none": ("暂无改约提议", "No rebooking offers"),
    "offer.open_count": ("{n} 条待处理", "{n} open"),
    "offer.open_link": ("查看改约提议", "See the rebooking offer"),
    "offer.status.open": ("待选择", "Waiting for your answer"),
    "offer.status.accepted": ("已改约", "Accepted"),
    "offer.status.declined": ("已拒绝", "Declined"),
    "offer.status.expired": ("已过期", "Ended unanswered"),
    "offer.answer_by": ("请在 {at} 前选择（医院当地时间）", "Answer by {at} (hospital time)"),
    "offer.cancelled": ("医院取消的预约", "Cancelled by the hospital"),
    "offer.paid": ("已付 ¥{amount}", "paid ¥{amount}"),
    "offer.how": (
        "选择一个号源即直接预约成功，原支付直接沿用，无需再付款；也可以拒绝，原支付全额退款。",
        "Take one unit and it is booked and confirmed with your payment, nothing to pay again;"
        " or decline and your payment is refunded in full.",
    ),
    "offer.proposals": ("可改约的号源", "Units you may move to"),
    "offer.same_doctor": ("原医生", "Same doctor"),
    "offer.accept": ("改约到此号", "Take this unit"),
    "offer.decline": ("不用了，全额退款", "No thanks, refund me"),
    "offer.decline.confirm": (
        "确定拒绝改约？原支付将全额退款。",
        "Decline the offer? Your payment will be refunded in full.",
    ),
    "offer.no_strike": (
        "拒绝或逾期未选均不计违约。",
        "Declining, or not answering, never counts against you.",
    ),
    "offer.accepted.note": (
        "改约成功，已沿用原支付，无需再付款。",
        "Rebooked and confirmed with the same payment: nothing to pay.",
    ),
    "offer.see_booking": ("查看新预约", "See the new booking"),
    "offer.declined.note": (
        "您已拒绝改约，原支付全额退款，不计违约。",
        "You declined: your payment is refunded in full, with no strike.",
    ),
    "offer.expired.note": (
        "改约提议已到期，原支付全额退款，不计违约。",
        "The offer ended unanswered: your payment is refunded in full, with no strike.",
    ),
    "refund.on_hold": ("暂存，用于改约", "held for your rebooking"),
    "refund.cancelled": ("已用于新预约", "used for the new booking"),
    "one_tap.open": ("一键退号", "Cancel this visit"),
    "one_tap.open.note": (
        "如不能按时就诊，请退号，把号源留给其他患者，也不会记为爽约。",
        "If you cannot come, cancel so the unit goes to someone else; it is not a no-show.",
    ),
    "one_tap.cancel_by": ("退号截止：{at}（医院当地时间）", "Cancel by {at} (hospital time)"),
    "one_tap.button": ("确认退号", "Cancel the visit"),
    "one_tap.cancelled": ("已退号", "Cancelled"),
    "one_tap.cancelled.note": (
        "您的预约已取消；如已支付，费用将按医院规则原路退回。",
        "Your visit is cancelled; any payment is refunded as the hospital's rules say.",
    ),
    "one_tap.used": ("退号链接已使用", "This link has been used"),
    "one_tap.used.note": (
        "此链接只能使用一次。请在“我的预约”查看预约状态。",
        "The link works once. See where the booking stands in My bookings.",
    ),
    "one_tap.past_deadline": ("已过退号截止时间", "Too late to cancel online"),
    "one_tap.past_deadline.note": (
        "退号截止时间为 {at}，现已无法在线退号。如不能就诊，请联系医院。",
        "The deadline was {at}; the visit can no longer be cancelled online. If you cannot"
        " come, contact the hospital.",
    ),
    "one_tap.not_active": ("无法退号", "Cannot cancel"),
    "one_tap.not_active.note": (
        "该预约已不在有效状态（已取消、已就诊或已结束）。",
        "This booking is no longer active (cancelled, visited or ended).",
    ),
    "one_tap.invalid": ("链接无效", "This link is not valid"),
    "one_tap.invalid.note": (
        "请检查链接是否完整，或登录后在“我的预约”中退号。",
        "Check the link is complete, or sign in and cancel from My bookings.",
    ),
    # patient relations proven (docs/identity.md)
    "proof.pending": ("待验证", "Awaiting code"),
    "proof.explain": (
        "此人已在平台完成实名验证。验证码已发送至其预留手机 {phone}，"
        "请本人告诉您后填写；验证前不能为其预约。",
        "This person is verified on the platform. A code was sent to their phone on file"
        " {phone}; enter it once they give it to you. Until then you cannot book for them.",
    ),
    "proof.code": ("验证码", "Code"),
    "proof.submit": ("验证", "Verify"),
    "proof.resend": ("重新发送验证码", "Send a new code"),
    # what a declared relation may do (docs/security.md)
    "proof.unconfirmed": ("待确认", "To confirm"),
    "proof.unconfirmed_explain": (
        "为家人或他人预约前，需确认关系：验证码已发送至其手机 {phone}，请对方告诉您后填写。",
        "Before booking for someone else, confirm the relation: a code was sent to their phone"
        " {phone}; enter it once they give it to you.",
    ),
    "proof.no_phone": (
        "添加时未填写其手机号，无法确认关系。请删除后填写其本人手机号重新添加。",
        "No phone was given for this person, so the relation cannot be confirmed. Remove them"
        " and add them again with their own mobile number.",
    ),
    "proof.confirm_there": ("去确认", "Confirm"),
}

_FACET_PREFIX = {"kind": "kind.", "grade": "grade.", "title": "title."}


class Translator:
    """Looks up messages for one language; unknown keys show themselves (and a test fails)."""

    def __init__(self, language: Language) -> None:
        self.language: Language = language
        self._index = 0 if language == "zh" else 1

    def __call__(self, key: str, **values: Any) -> str:
        pair = MESSAGES.get(key)
        text = pair[self._index] if pair else key
        return text.format(**values) if values else text

    def error(self, code: str) -> str:
        """A refusal's message in this language, from the platform's catalogue."""
        found = CODES.get(code)
        if found is None:
            return code
        return found[1] if self.language == "zh" else found[2]

    def facet(self, name: str, value: str) -> str:
        """A facet value as people read it (a catalog code shows its department name)."""
        prefix = _FACET_PREFIX.get(name)
        if prefix is not None:
            return self(prefix + value)
        if name == "catalogCode":
            entry = load_catalog().get(value)
            return entry.name if entry is not None else value
        return value

    @property
    def colon(self) -> str:
        """Chinese text takes the full-width colon."""
        return "：" if self.language == "zh" else ": "

    def pick(self, zh: str, en: str) -> str:
        return zh if self.language == "zh" else en

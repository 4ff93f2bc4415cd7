"""The staff console's message catalogue, in Chinese and English, kept apart from the citizen
pages' (``messages.py``) so that the two products' strings grow independently.

A key the console does not define falls back to the citizen catalogue (the shared error box,
the language switch), and error codes come from the platform's own catalogue, so a refusal
reads the same in the console as in the API.
"""

from __future__ import annotations

from typing import Any

from guahao.web.pages.messages import MESSAGES, Translator

__all__ = ["CONSOLE_MESSAGES", "ConsoleTranslator"]

CONSOLE_MESSAGES: dict[str, tuple[str, str]] = {
    # frame
    "console.name": ("预约挂号工作台", "Booking console"),
    "console.home": ("返回工作台", "Back to the console"),
    "console.signed_in_as": ("已登录：{name}（{role}）", "Signed in: {name} ({role})"),
    "console.read_only": (
        "审计员只读，不能作任何更改。",
        "Auditors read only; nothing can be changed.",
    ),
    "role.authority_admin": ("卫健委管理员", "Authority administrator"),
    "role.authority_auditor": ("卫健委审计员", "Authority auditor"),
    "role.hospital_staff": ("医院工作人员", "Hospital staff"),
    "nav.sessions": ("出诊与号源", "Sessions"),
    "nav.filings": ("建档队列", "Filing queue"),
    "nav.reports": ("本院报表", "Reports"),
    "nav.supply": ("供需", "Supply & demand"),
    "nav.hospitals": ("排名与合规", "Rankings & compliance"),
    "nav.unmet": ("未满足需求", "Unmet demand"),
    "nav.signals": ("黄牛线索", "Scalper signals"),
    "nav.bans": ("黑名单", "Blacklist"),
    "nav.appeals": ("申诉", "Appeals"),
    "nav.rules": ("规则", "Rules"),
    "nav.connectors": ("接口健康", "Connectors"),
    "sign_in.title": ("工作人员登录", "Staff sign-in"),
    "sign_in.username": ("用户名", "Username"),
    "sign_in.password": ("密码", "Password"),
    "sign_in.submit": ("登录", "Sign in"),
    "sign_in.note": (
        "仅限医院与卫健委工作人员。查看个人信息的每一次操作都会记入审计日志。",
        "For hospital and health authority staff only. Every view of personal data is "
        "recorded in the audit log.",
    ),
    # filters and exports
    "filter.from": ("起始日", "From"),
    "filter.to": ("截止日", "To"),
    "filter.month": ("月份", "Month"),
    "filter.district": ("区", "District"),
    "filter.catalog": ("专科代码", "Specialty code"),
    "filter.apply": ("查询", "Show"),
    "export.label": ("导出", "Export"),
    "export.supply-demand": ("供需", "Supply & demand"),
    "export.access": ("第三个可预约号", "Access"),
    "export.rankings": ("排名", "Rankings"),
    "export.compliance": ("合规", "Compliance"),
    "export.unmet-demand": ("未满足需求", "Unmet demand"),
    # hospital console
    "hospital.title": ("医院工作台", "Hospital console"),
    "connectors.title": ("接口状态", "Connector health"),
    "connectors.hospital": ("医院", "Hospital"),
    "connectors.kind": ("类型", "Kind"),
    "connectors.status": ("最近一次", "Last run"),
    "connectors.last_sync": ("最近成功同步", "Last good sync"),
    "connectors.lag": ("延迟", "Lag"),
    "connectors.error_rate": ("失败率", "Error rate"),
    "connectors.last_error": ("最近错误", "Last error"),
    "connectors.none": ("尚未配置接口", "No connector configured"),
    "sync.ok": ("成功", "ok"),
    "sync.failed": ("失败", "failed"),
    "sync.never": ("从未运行", "never run"),
    "sessions.title": ("{first} 起 {days} 天的出诊", "Sessions, {days} days from {first}"),
    "sessions.caption": ("出诊与实时号源数", "Sessions with live unit counts"),
    "sessions.earlier": ("更早", "Earlier"),
    "sessions.later": ("更晚", "Later"),
    "sessions.when": ("日期", "When"),
    "sessions.department": ("科室 · 医生", "Department · doctor"),
    "sessions.status": ("状态", "Status"),
    "sessions.none": ("这段时间没有出诊", "No sessions in these days"),
    "count.online": ("线上号", "Online"),
    "count.offline": ("现场号", "On site"),
    "count.held": ("锁定中", "Held"),
    "count.booked": ("已预约", "Booked"),
    "count.returning": ("待回收", "Returning"),
    "count.available": ("可预约", "Free"),
    "count.add_ons": ("加号", "Add-ons"),
    "session.open": ("正常", "open"),
    "session.stopped": ("已停诊", "stopped"),
    "session.finished": ("已结束", "finished"),
    "session.lottery": ("摇号", "lottery"),
    "session.release_at": ("放号时间 {at}", "Released {at}"),
    "session.draw_at": ("摇号时间 {at}", "Draw {at}"),
    "session.actions": ("其他操作", "More actions"),
    "patients.title": ("就诊人", "Patients"),
    "patients.audited": (
        "查看本名单已记入审计日志。",
        "Opening this list was recorded in the audit log.",
    ),
    "patients.time": ("时段", "Time"),
    "patients.name": ("姓名", "Name"),
    "patients.document": ("证件", "Document"),
    "patients.status": ("状态", "Status"),
    "patients.action": ("操作", "Action"),
    "patients.none": ("暂无预约", "No bookings yet"),
    "booking.held": ("锁号中", "held"),
    "booking.abandoned": ("已放弃", "abandoned"),
    "booking.expired": ("已过期", "expired"),
    "booking.patient_chosen": ("待提交", "patient chosen"),
    "booking.awaiting_payment": ("待支付", "awaiting payment"),
    "booking.confirmed": ("已预约", "confirmed"),
    "booking.checked_in": ("已签到", "checked in"),
    "booking.no_show": ("爽约", "no-show"),
    "booking.cancelled_by_patient": ("患者退号", "cancelled by patient"),
    "booking.cancelled_by_hospital": ("医院取消", "cancelled by hospital"),
    "action.check_in": ("签到", "Check in"),
    "action.lottery": ("设为摇号放号", "Release by lottery"),
    "action.no_shows": ("登记爽约（出诊结束后）", "Mark no-shows (after the session)"),
    "action.stop": ("停诊…", "Stop session…"),
    "add_on.title": ("诊间加号", "Add-on unit"),
    "add_on.note": (
        "为指定的实名就诊人加号，不占号源，按规则限量，记入审计。",
        "For one named, real-name patient; outside the quota, limited by the rules, audited.",
    ),
    "add_on.patient": ("就诊人编号", "Patient id"),
    "add_on.reason": ("加号原因", "Reason"),
    "add_on.submit": ("加号", "Add unit"),
    "stop.title": ("停诊：确认前请核对影响", "Stop the session: check the impact first"),
    "stop.bookings": ("将取消 {n} 个预约", "{n} bookings will be cancelled"),
    "stop.told": ("将通知 {n} 位就诊人", "{n} patients will be told"),
    "stop.refunds": ("将全额退款 {n} 笔，共 ¥{amount}", "{n} full refunds, ¥{amount} in all"),
    "stop.who": ("将被通知的就诊人", "Who will be told"),
    "stop.refunded": ("退款", "refund"),
    "stop.reason": ("停诊原因（会告知患者）", "Reason (patients will read it)"),
    "stop.confirm": ("确认停诊", "Stop the session"),
    "stop.back": ("返回，不停诊", "Back, do not stop"),
    "filings.title": ("建档队列", "Filing queue"),
    "filings.note": (
        "等待本院建档的就诊人；填写院内病案号即完成建档。查看本队列已记入审计日志。",
        "Patients waiting to be filed; enter the hospital's patient number to file them. "
        "Opening this queue was recorded in the audit log.",
    ),
    "filings.requested": ("申请于 {at}", "Requested {at}"),
    "filings.his_id": ("院内病案号", "Hospital patient number"),
    "filings.filed": ("完成建档", "Mark filed"),
    "filings.none": ("没有待建档的就诊人", "Nobody is waiting to be filed"),
    "arrivals.title": ("近三天到院建档", "To file on arrival, next three days"),
    "arrivals.note": (
        "已预约但本院尚无档案的就诊人（现场建档）：核对身份证件后录入证件号与院内病案号。",
        "Booked patients the hospital has not filed yet (filing on site): check their "
        "document, then enter its number and the hospital's patient number.",
    ),
    "arrivals.document": ("证件号码（核对证件后录入）", "Document number (from the card)"),
    "arrivals.none": ("没有需要到院建档的就诊人", "Nobody to file on arrival"),
    "filing.pending": ("待建档", "pending"),
    "filing.failed": ("建档失败", "failed"),
    "filing.filed": ("已建档", "filed"),
    "reports.title": ("本院报表", "Our reports"),
    "nav.hospital_rules": ("放号规则", "Release rules"),
    "hrules.title": ("本院放号与规则", "Our release policy and rules"),
    "hrules.policies": (
        "本院放号政策（线上/现场比例、放号时间等）",
        "Our booking policy (split, release…)",
    ),
    "hrules.policies_note": (
        "本院的线上/现场比例与放号时间随医院接入登记，由接口或卫健委变更；各科室可在下方设置自己的。",
        "The hospital's split and release time are registered with it and change through its "
        "connector or the authority; each department may set its own below.",
    ),
    "hrules.overridable": ("全区规则允许本院调整的项", "Region rules we may set for ourselves"),
    "hrules.reason": ("调整原因", "Reason for the change"),
    "hrules.save": ("保存为新版本", "Save as a new version"),
    "hrules.no_overrides": ("本院未作调整，沿用全区规则", "No overrides: the region's rules apply"),
    "policy.quota.online_share": ("线上号比例", "Online share"),
    "policy.quota.offline_first_segments": (
        "开头留作现场号的时段数",
        "First segments kept on site",
    ),
    "policy.release.days_ahead": ("提前放号天数", "Days released ahead"),
    "policy.release.at": ("放号时刻", "Release time"),
    "policy.cancel.at": ("退号截止时刻", "Cancellation deadline time"),
    "policy.cancel.hours": ("退号提前小时数", "Cancellation hours before"),
    "policy.cancel.kind": ("退号截止方式", "Cancellation deadline kind"),
    "policy.cancel_return_delay_seconds": ("退号回池延迟（秒）", "Cancelled unit return delay (s)"),
    "policy.cutoff.hours_before": (
        "停止线上预约（就诊前小时）",
        "Online booking closes (hours before)",
    ),
    "policy.hold_minutes": ("锁号分钟数", "Hold minutes"),
    "policy.payment_minutes": ("支付分钟数", "Payment minutes"),
    "policy.payment_mode": ("支付方式", "Payment mode"),
    "policy.filing_mode": ("建档方式", "Filing mode"),
    "policy.limits.per_patient_department_day": (
        "每人每科每日预约上限",
        "Bookings per patient, department and day",
    ),
    "policy.limits.rebook_department_wait_minutes": (
        "退号后同科再约等待（分钟）",
        "Wait before rebooking a department (minutes)",
    ),
    "policy.add_on_per_session": ("每个出诊加号上限", "Add-on units per session"),
    "policy.follow_up_valid_days": ("复诊有效天数", "Follow-up validity (days)"),
    # figures
    "supply.title": ("全区号源供需", "Supply and demand across the region"),
    "supply.by_area": ("按区 × 专科合计", "By district × specialty, period totals"),
    "supply.by_day": ("按日 × 专科", "By day × specialty"),
    "chart.supply_demand": (
        "每日放号、线上号、预约与未满足需求",
        "Units and demand per day",
    ),
    "chart.access": (
        "第三个可预约号（天，各院中位数）",
        "Third next available (days, median of hospitals)",
    ),
    "figure.released": ("放号量", "Released"),
    "figure.online_released": ("线上放号", "Online"),
    "figure.booked": ("预约量", "Booked"),
    "figure.unmet_demand": ("未满足需求", "Unmet demand"),
    "figure.booking_rate": ("预约率", "Booking rate"),
    "figure.online_share": ("线上占比", "Online share"),
    "figure.no_show_rate": ("爽约率", "No-show rate"),
    "figure.waitlist": ("候补人数", "Waitlist"),
    "figure.release_rate": ("放号率", "Release rate"),
    "figure.booking_ratio": ("预约诊疗率", "Booking ratio"),
    "figure.district": ("区", "District"),
    "figure.specialty": ("专科", "Specialty"),
    "figure.hospital": ("医院", "Hospital"),
    "figure.day": ("日期", "Day"),
    "figure.none": ("这段时间没有数据", "No figures for this period"),
    "access.title": ("第三个可预约号", "Third next available appointment"),
    "access.note": (
        "从测量日到第三个仍可预约号源的天数：国际通用的就医可及性指标。",
        "Days from the measuring day to the third appointment still free: the standard "
        "access measure.",
    ),
    "access.latest": ("最近一次测量", "Latest measurement"),
    "access.third_next": ("第三个可预约号（天）", "Third next (days)"),
    "access.free_units": ("剩余号源", "Free units"),
    "rankings.title": ("医院排名与合规", "Hospital rankings and compliance"),
    "rankings.caption": ("{month} 医院排名", "Hospital ranking, {month}"),
    "compliance.title": ("合规检查", "Compliance checks"),
    "compliance.result": ("结果", "Result"),
    "compliance.checks": ("各项", "Checks"),
    "compliance.pass": ("合规", "pass"),
    "compliance.fail": ("不合规", "fail"),
    "compliance.rules": (
        "规则：号源时段不超过 {minutes} 分钟；线上号不低于 {online}；现场号不低于 {onsite}；"
        "不在午夜放号；加号可追溯。",
        "Rules: segments of at most {minutes} minutes; at least {online} online; at least "
        "{onsite} kept on site; no releases at midnight; traceable add-on units.",
    ),
    "rule.segment_minutes": ("号源时段（分钟）", "Segment minutes"),
    "rule.online_share": ("线上占比", "Online share"),
    "rule.midnight_releases": ("午夜放号次数", "Midnight releases"),
    "rule.onsite_quota": ("现场号占比", "On-site share"),
    "rule.add_on_traceable": ("无记录加号", "Untraced add-ons"),
    "unmet.title": ("未满足的需求", "Unmet demand"),
    "unmet.line": (
        "{days} 天内未满足 {unmet} 次（无号被拒 {refused}，候补未得号 {unserved}）",
        "{unmet} unmet over {days} days ({refused} refused for lack of units, {unserved} "
        "waits never served)",
    ),
    "unmet.suggest": ("建议每天多放 {n} 个线上号", "Suggestion: {n} more online units a day"),
    "unmet.from_onsite": (
        "（其中 {n} 个可由现场号转线上）",
        "({n} of them from the on-site quota)",
    ),
    "unmet.nearby": (
        "附近同专科仍有号的医院：",
        "Nearby hospitals with free units of the specialty:",
    ),
    "unmet.next": ("最早 {day}", "first {day}"),
    "unmet.none": ("这段时间需求都已满足", "All demand was met in this period"),
    # blacklist, appeals, signals, rules
    "appeals.title": ("申诉", "Appeals"),
    "appeals.pending": ("待处理", "pending"),
    "appeals.granted": ("已通过", "granted"),
    "appeals.rejected": ("已驳回", "rejected"),
    "appeals.all": ("全部", "all"),
    "appeals.filed": ("提交于 {at}", "Filed {at}"),
    "appeals.decided": ("{by} 于 {at} 处理", "Decided by {by} at {at}"),
    "appeals.reason": ("处理意见（申诉人可见）", "Reason (the citizen reads it)"),
    "appeals.grant": ("通过并解除", "Grant and lift"),
    "appeals.reject": ("驳回", "Reject"),
    "appeals.none": ("没有申诉", "No appeals"),
    "bans.title": ("黑名单（生效中）", "Blacklist (in force)"),
    "bans.person": ("人员", "Person"),
    "bans.reason": ("原因", "Reason"),
    "bans.source": ("来源", "Source"),
    "bans.period": ("期限", "Period"),
    "bans.by": ("登记人", "By"),
    "bans.none": ("没有生效中的限制", "Nobody is banned"),
    "signals.title": ("黄牛嫌疑线索", "Scalper-suspicion report"),
    "signals.note": ("未复核的线索，按分值排序。", "Signals not yet reviewed, strongest first."),
    "signals.score": ("分值", "Score"),
    "signals.kind": ("类型", "Kind"),
    "signals.subject": ("对象", "Subject"),
    "signals.detail": ("依据", "Evidence"),
    "signals.at": ("发现于", "Detected"),
    "signals.review": ("复核", "Review"),
    "signals.note_label": ("复核意见", "Review note"),
    "signals.reviewed": ("已复核", "Mark reviewed"),
    "signals.none": ("没有待复核的线索", "No signals to review"),
    "rules.title": ("全区规则", "Region rules"),
    "rules.version": ("第 {v} 版", "version {v}"),
    "rules.in_force": ("现行规则", "In force"),
    "rules.key": ("项", "Rule"),
    "rules.value": ("值", "Value"),
    "rules.history": ("历史版本", "Versions"),
    "rules.defaults": ("尚未修改，使用本版默认规则", "Never changed: this release's defaults"),
    # console-policy: departments' split and release, live counts, 停诊 asked again
    "dpolicy.title": ("各科室线上/现场比例与放号", "Each department's split and release"),
    "dpolicy.note": (
        "科室可设置自己的线上号比例、开头现场时段、提前放号天数和放号时刻；留空则随本院。"
        "修改只作用于尚未放号的出诊：已放号的出诊保持放号时的比例与时间（患者已在预约），"
        "摇号出诊不变；新放号时刻若已过，该出诊保持原放号时刻。",
        "A department may set its own online share, first on-site segments, days released "
        "ahead and release time; blank fields follow the hospital. A change applies to "
        "sessions not yet released: released sessions keep the split and time they were "
        "released with (patients are booking them), lottery sessions are left as they are, "
        "and a session whose new release time has already passed keeps its old one.",
    ),
    "dpolicy.bounds": (
        "全区规则允许：线上 {low}%–{high}%，开头现场时段至多 {first} 个，提前 {dmin}–{dmax} 天，"
        "放号时刻 {early}–{late}。",
        "The region allows: {low}%–{high}% online, at most {first} first segments on site, "
        "{dmin}–{dmax} days ahead, release between {early} and {late}.",
    ),
    "dpolicy.own": ("本科室", "own"),
    "dpolicy.follows": ("随本院设置", "Follows the hospital"),
    "dpolicy.version": ("第 {v} 版", "version {v}"),
    "dpolicy.edit": ("修改本科室设置", "Change this department's policy"),
    "dpolicy.online_percent": ("线上号比例（%）", "Online share (%)"),
    "dpolicy.as_hospital": ("随本院", "as the hospital"),
    "dpolicy.blank": ("留空的项随本院设置。", "Blank fields follow the hospital."),
    "dpolicy.save": ("保存并应用到未放号出诊", "Save and apply to sessions not released"),
    "dpolicy.history": ("科室设置的修改记录", "Department policy changes"),
    "dpolicy.before": ("修改前", "before"),
    "dpolicy.after": ("修改后", "after"),
    "dpolicy.sessions_updated": ("调整了 {n} 个未放号出诊", "Unreleased sessions updated: {n}"),
    "dpolicy.refused": (
        "{field}：{value} 不在 {low}–{high} 之内",
        "{field}: {value} is not within {low}–{high}",
    ),
    "dpolicy.field.online_share": ("线上号比例", "Online share"),
    "dpolicy.field.offline_first_segments": ("开头现场时段数", "First on-site segments"),
    "dpolicy.field.days_ahead": ("提前放号天数", "Days released ahead"),
    "dpolicy.field.release_at": ("放号时刻", "Release time"),
    "live.label": ("实时", "live"),
    "live.updated": ("数字实时更新", "Counts update live"),
    "stop.changed": (
        "预览后预约有变化，以下是最新影响，请核对后再次确认。",
        "The bookings changed after the preview; this is the impact now. Check it and "
        "confirm again.",
    ),
}


class ConsoleTranslator(Translator):
    """The console's strings first, then the citizen catalogue's shared ones."""

    def __call__(self, key: str, **values: Any) -> str:
        pair = CONSOLE_MESSAGES.get(key) or MESSAGES.get(key)
        text = pair[self._index] if pair else key
        return text.format(**values) if values else text

    def policy(self, key: str) -> str:
        """A policy's or rule's name as people read it (its dotted key if none is known)."""
        found = self("policy." + key)
        return "" if found == "policy." + key else found

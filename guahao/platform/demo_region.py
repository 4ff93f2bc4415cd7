"""A fictional but realistic region (澜江市) to demonstrate, test and load-test the platform.

The demo has to exercise what real supply looks like, or the rules it feeds are never tried:
hospitals of every grade with the five payment modes, three filing modes and different
release, quota and cancellation policies; departments named the way hospitals name them
(心内科, not 心血管内科专业) and mapped to the national catalog; doctors whose names include
a two-character name, the heteronym surnames 单 and 曾, compound surnames and a Uyghur name with
the middle dot (the cases search must get right); and a weekly roster with specialist and
premium clinics, evening clinics and emergency and fever clinics every day.

Everything random comes from one ``random.Random(seed)`` consumed in a fixed order, and no set
or clock is ever consulted, so a seed always yields the byte-identical region: tests, load
tests and screenshots can name a doctor and find them again.

The hospitals and their policies are written out below because each one is a deliberate case;
department templates and name pools are data (``reference/demo-*.json``).

>>> region = build_demo_region()
>>> region.code, region.name, len(region.hospitals)
('demo', '澜江市', 8)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Literal

import msgspec

from guahao.platform.hospitals import (
    CancelPolicy,
    CutoffPolicy,
    FilingMode,
    HospitalGrade,
    HospitalPolicies,
    PaymentMode,
    Period,
    QuotaPolicy,
    ReleasePolicy,
    SlotCategory,
    Title,
)
from guahao.platform.schedules import (
    DepartmentSpec,
    DoctorSpec,
    HospitalSpec,
    RegionSpec,
    WeeklySession,
)

__all__ = [
    "DEMO_SEED",
    "MAX_SESSIONS_PER_WEEK",
    "build_demo_region",
]

DEMO_SEED = 2026
MAX_SESSIONS_PER_WEEK = 5
"""No demo doctor sits more than five half-days a week in clinic; the rest is wards and theatre."""

_PACKAGE = "guahao.platform.reference"
_SEGMENT_MINUTES = 30
_WEEKDAYS = (0, 1, 2, 3, 4)
_ALL_DAYS = (0, 1, 2, 3, 4, 5, 6)
_DAY_PERIODS = (Period.MORNING, Period.AFTERNOON)
_PERIOD_ORDER = {Period.MORNING: 0, Period.AFTERNOON: 1, Period.EVENING: 2}
_SENIORITY = (Title.CHIEF, Title.ASSOCIATE_CHIEF, Title.ATTENDING, Title.RESIDENT)
_EVENING_SHARE = 0.35
"""Share of evening-eligible doctors who take one evening clinic (夜间门诊) a week."""
_SINGLE_GIVEN_SHARE = 0.3
"""Share of randomly drawn names with a one-character given name (王伟, 李娜)."""
_PREMIUM_SHARE = 0.5
"""Share of chiefs, where the hospital runs premium clinics (特需门诊), who hold one."""

_UNITS: dict[SlotCategory, tuple[int, int]] = {
    SlotCategory.GENERAL: (4, 6),
    SlotCategory.SPECIALIST: (2, 4),
    SlotCategory.PREMIUM: (1, 2),
}
"""Units per 30-minute segment: a general clinic sees more patients than an expert one."""

_SESSIONS: dict[Title, tuple[int, int]] = {
    Title.CHIEF: (1, 2),
    Title.ASSOCIATE_CHIEF: (2, 3),
    Title.ATTENDING: (3, 5),
    Title.RESIDENT: (3, 5),
}
"""Half-days per week by title: the most senior doctors sit in clinic least."""

_TITLE_WEIGHTS: dict[HospitalGrade, tuple[float, float, float, float]] = {
    HospitalGrade.GRADE_3A: (0.05, 0.22, 0.45, 0.28),
    HospitalGrade.GRADE_3B: (0.03, 0.20, 0.47, 0.30),
    HospitalGrade.GRADE_2A: (0.02, 0.15, 0.50, 0.33),
    HospitalGrade.GRADE_2B: (0.02, 0.15, 0.50, 0.33),
    HospitalGrade.GRADE_1: (0.0, 0.10, 0.50, 0.40),
}
"""Title mix of the doctors below each department head, in ``_SENIORITY`` order."""

_CHIEF_HEAD_SHARE = 0.45
"""Share of tertiary (3A, 3B) clinic departments headed by a chief rather than an associate."""

_ROUND_THE_CLOCK_WEIGHTS = (0.0, 0.15, 0.50, 0.35)
"""Emergency and fever clinics are staffed mostly by attendings and residents."""


class _DepartmentTemplate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A department as hospitals commonly name it, with what its doctors are expert in."""

    code: str
    name: str
    catalog_code: str
    aliases: tuple[str, ...]
    topics: tuple[str, ...]
    suffixes: tuple[str, ...]
    kind: Literal["clinic", "emergency", "fever"] = "clinic"
    evening: bool = False
    female_share: float = 0.5
    location: str = ""


class _ReservedName(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    sex: Literal["male", "female"]


class _NamePools(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Surnames with relative frequencies, given-name characters, and names placed once.

    Given-name characters come in two pools by position, because Chinese given names are not
    free pairs: 志 and 晓 usually lead, 伟 and 芳 usually close. One-character given names use
    the closing pool. Reserved names are never drawn at random, so each appears exactly once.
    """

    surnames: tuple[tuple[str, int], ...]
    male_first: tuple[str, ...]
    male_second: tuple[str, ...]
    female_first: tuple[str, ...]
    female_second: tuple[str, ...]
    reserved: tuple[_ReservedName, ...]


class _Fees(msgspec.Struct, frozen=True):
    """Registration fees in cents; ``specialist`` is ``None`` where every clinic is general."""

    general: int
    specialist: tuple[int, int] | None = None  # (associate chief, chief)
    premium: tuple[int, ...] = ()


class _HospitalPlan(msgspec.Struct, frozen=True):
    """The fixed part of a demo hospital; doctors and roster are drawn from it."""

    code: str
    name: str
    grade: HospitalGrade
    district: str
    address: str
    aliases: tuple[str, ...]
    policies: HospitalPolicies
    fees: _Fees
    departments: tuple[tuple[str, int], ...]  # (template code, number of doctors)
    building: str = "门诊楼"
    weekend_days: tuple[int, ...] = ()
    evening_clinics: bool = False


_PLANS: tuple[_HospitalPlan, ...] = (
    _HospitalPlan(
        code="city-first",
        name="澜江市第一人民医院",
        grade=HospitalGrade.GRADE_3A,
        district="朝阳区",
        address="澜江市朝阳区解放路88号",
        aliases=("市一院", "市一医院", "第一人民医院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE,
            filing_mode=FilingMode.AUTO_AT_BOOKING,
            release=ReleasePolicy(days_ahead=7, at="08:00"),
            quota=QuotaPolicy(online_share=0.7),
            cancel=CancelPolicy(kind="day_before_at", at="15:00"),
            cutoff=CutoffPolicy(hours_before=2.0),
            hold_minutes=10,
            payment_minutes=15,
        ),
        fees=_Fees(general=1000, specialist=(3000, 5000), premium=(10000, 15000, 20000)),
        departments=(
            ("cardiology", 4),
            ("gastroenterology", 4),
            ("respiratory", 3),
            ("neurology", 3),
            ("endocrinology", 3),
            ("general-surgery", 3),
            ("orthopedics", 4),
            ("gynecology", 3),
            ("obstetrics", 2),
            ("ophthalmology", 2),
            ("otolaryngology", 2),
            ("stomatology", 2),
            ("dermatology", 2),
            ("emergency", 5),
            ("fever-clinic", 3),
        ),
        weekend_days=(5,),
        evening_clinics=True,
    ),
    _HospitalPlan(
        code="med-univ",
        name="澜江医科大学附属医院",
        grade=HospitalGrade.GRADE_3A,
        district="长乐区",
        address="澜江市长乐区学府大道1号",
        aliases=("医大附院", "澜医附院", "附属医院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_SELF_PAY,
            filing_mode=FilingMode.REQUIRED_BEFORE_BOOKING,
            release=ReleasePolicy(days_ahead=14, at="07:30"),
            quota=QuotaPolicy(online_share=0.6, offline_first_segments=1),
            cancel=CancelPolicy(kind="day_before_at", at="15:00"),
            cutoff=CutoffPolicy(hours_before=4.0),
            hold_minutes=5,
            payment_minutes=10,
        ),
        fees=_Fees(general=1000, specialist=(3500, 6000), premium=(15000, 20000, 30000)),
        departments=(
            ("cardiology", 4),
            ("gastroenterology", 3),
            ("respiratory", 3),
            ("neurology", 3),
            ("hematology", 2),
            ("rheumatology", 2),
            ("nephrology", 2),
            ("oncology", 3),
            ("neurosurgery", 2),
            ("thoracic-surgery", 2),
            ("breast-surgery", 2),
            ("urology", 2),
            ("reproductive-medicine", 2),
            ("psychology", 2),
            ("emergency", 5),
            ("fever-clinic", 3),
        ),
    ),
    _HospitalPlan(
        code="children",
        name="澜江市儿童医院",
        grade=HospitalGrade.GRADE_3A,
        district="东湖区",
        address="澜江市东湖区湖滨南路136号",
        aliases=("市儿童医院", "儿童医院", "市儿院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE,
            filing_mode=FilingMode.AUTO_AT_BOOKING,
            release=ReleasePolicy(days_ahead=7, at="20:00"),
            quota=QuotaPolicy(online_share=0.8),
            cancel=CancelPolicy(kind="hours_before", hours=2),
            cutoff=CutoffPolicy(hours_before=1.0),
            hold_minutes=10,
            payment_minutes=15,
        ),
        fees=_Fees(general=800, specialist=(2500, 4000), premium=(10000, 15000)),
        departments=(
            ("pediatrics", 4),
            ("pediatric-respiratory", 4),
            ("pediatric-gastroenterology", 3),
            ("neonatology", 2),
            ("pediatric-neurology", 2),
            ("pediatric-cardiology", 2),
            ("pediatric-endocrinology", 2),
            ("pediatric-surgery", 3),
            ("pediatric-orthopedics", 2),
            ("child-health", 2),
            ("otolaryngology", 2),
            ("emergency", 5),
            ("fever-clinic", 3),
        ),
        weekend_days=(5, 6),
        evening_clinics=True,
    ),
    _HospitalPlan(
        code="tcm",
        name="澜江市中医院",
        grade=HospitalGrade.GRADE_3A,
        district="六合区",
        address="澜江市六合区长安街27号",
        aliases=("市中医院", "中医院", "澜江中医"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.PAY_AT_HOSPITAL,
            filing_mode=FilingMode.ON_SITE,
            release=ReleasePolicy(days_ahead=7, at="08:00"),
            quota=QuotaPolicy(online_share=0.5),
            cancel=CancelPolicy(kind="hours_before", hours=2),
            cutoff=CutoffPolicy(hours_before=2.0),
            hold_minutes=15,
            payment_minutes=30,
        ),
        fees=_Fees(general=800, specialist=(2500, 4500), premium=(10000, 20000)),
        departments=(
            ("tcm-internal", 3),
            ("tcm-spleen-stomach", 3),
            ("tcm-heart", 2),
            ("acupuncture", 3),
            ("tuina", 2),
            ("tcm-orthopedics", 3),
            ("tcm-gynecology", 2),
            ("tcm-pediatrics", 2),
            ("tcm-dermatology", 2),
            ("anorectal", 2),
            ("integrated-medicine", 2),
            ("rehabilitation", 2),
        ),
        building="国医馆",
        weekend_days=(5,),
    ),
    _HospitalPlan(
        code="city-second",
        name="澜江市第二人民医院",
        grade=HospitalGrade.GRADE_3B,
        district="兴华区",
        address="澜江市兴华区建设北路210号",
        aliases=("市二院", "市二医院", "第二人民医院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_SELF_PAY,
            filing_mode=FilingMode.AUTO_AT_BOOKING,
            release=ReleasePolicy(days_ahead=7, at="07:00"),
            quota=QuotaPolicy(online_share=0.75),
            cancel=CancelPolicy(kind="day_before_at", at="15:00"),
            cutoff=CutoffPolicy(hours_before=2.0),
            hold_minutes=10,
            payment_minutes=20,
        ),
        fees=_Fees(general=700, specialist=(2000, 3500)),
        departments=(
            ("cardiology", 3),
            ("gastroenterology", 2),
            ("respiratory", 2),
            ("neurology", 2),
            ("geriatrics", 2),
            ("general-surgery", 2),
            ("orthopedics", 3),
            ("gynecology", 2),
            ("pediatrics", 2),
            ("ophthalmology", 2),
            ("otolaryngology", 2),
            ("stomatology", 2),
            ("emergency", 5),
        ),
    ),
    _HospitalPlan(
        code="hemei-maternity",
        name="澜江和美妇产医院",
        grade=HospitalGrade.GRADE_2B,
        district="东湖区",
        address="澜江市东湖区滨江路66号",
        aliases=("和美妇产", "和美医院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_NO_INSURANCE,
            filing_mode=FilingMode.AUTO_AT_BOOKING,
            release=ReleasePolicy(days_ahead=14, at="09:00"),
            quota=QuotaPolicy(online_share=0.9),
            cancel=CancelPolicy(kind="hours_before", hours=4),
            cutoff=CutoffPolicy(hours_before=1.0),
            hold_minutes=15,
            payment_minutes=30,
        ),
        fees=_Fees(general=1000, specialist=(3000, 5000), premium=(15000, 30000)),
        departments=(
            ("gynecology", 3),
            ("obstetrics", 3),
            ("reproductive-medicine", 2),
            ("breast-surgery", 2),
            ("neonatology", 2),
        ),
        weekend_days=(5, 6),
    ),
    _HospitalPlan(
        code="chaoyang-district",
        name="澜江市朝阳区人民医院",
        grade=HospitalGrade.GRADE_2A,
        district="朝阳区",
        address="澜江市朝阳区朝阳北路15号",
        aliases=("朝阳区医院", "朝阳医院", "区人民医院"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE,
            filing_mode=FilingMode.ON_SITE,
            release=ReleasePolicy(days_ahead=7, at="00:00"),
            quota=QuotaPolicy(online_share=0.6),
            cancel=CancelPolicy(kind="hours_before", hours=2),
            cutoff=CutoffPolicy(hours_before=2.0),
            hold_minutes=10,
            payment_minutes=15,
        ),
        fees=_Fees(general=600, specialist=(2000, 3000)),
        departments=(
            ("internal-medicine", 3),
            ("general-surgery", 3),
            ("obstetrics-gynecology", 2),
            ("pediatrics", 2),
            ("stomatology", 2),
            ("tcm", 2),
            ("rehabilitation", 2),
            ("emergency", 5),
            ("fever-clinic", 3),
        ),
        evening_clinics=True,
    ),
    _HospitalPlan(
        code="nanhu-community",
        name="长乐区南湖街道社区卫生服务中心",
        grade=HospitalGrade.GRADE_1,
        district="长乐区",
        address="澜江市长乐区南湖街道乐和路9号",
        aliases=("南湖社区医院", "南湖社区卫生服务中心", "南湖社卫"),
        policies=HospitalPolicies(
            payment_mode=PaymentMode.PAY_AFTER_VISIT,
            filing_mode=FilingMode.AUTO_AT_BOOKING,
            release=ReleasePolicy(days_ahead=3, at="00:00"),
            quota=QuotaPolicy(online_share=0.5),
            cancel=CancelPolicy(kind="hours_before", hours=2),
            cutoff=CutoffPolicy(hours_before=0.5),
            hold_minutes=5,
            payment_minutes=10,
        ),
        fees=_Fees(general=500),
        departments=(
            ("general-practice", 5),
            ("tcm", 2),
            ("stomatology", 1),
            ("rehabilitation", 1),
            ("preventive-care", 1),
        ),
        building="综合楼",
        weekend_days=(5,),
        evening_clinics=True,
    ),
)


@cache
def _templates() -> dict[str, _DepartmentTemplate]:
    raw = files(_PACKAGE).joinpath("demo-departments.json").read_bytes()
    decoded = msgspec.json.decode(raw, type=tuple[_DepartmentTemplate, ...])
    return {template.code: template for template in decoded}


@cache
def _name_pools() -> _NamePools:
    raw = files(_PACKAGE).joinpath("demo-names.json").read_bytes()
    return msgspec.json.decode(raw, type=_NamePools)


class _DemoBuilder:
    """Draws doctors and rosters for the plans, consuming one random stream in plan order."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._templates = _templates()
        self._pools = _name_pools()
        self._reserved_names = frozenset(entry.name for entry in self._pools.reserved)
        self._surnames = [surname for surname, _ in self._pools.surnames]
        self._surname_weights = [weight for _, weight in self._pools.surnames]
        total = sum(count for plan in _PLANS for _, count in plan.departments)
        # Reserved names go to seed-chosen doctors, each exactly once across the region.
        positions = self._rng.sample(range(total), len(self._pools.reserved))
        self._reserved_at = dict(zip(positions, self._pools.reserved, strict=True))
        self._doctor_index = 0

    def region(self) -> RegionSpec:
        return RegionSpec(
            code="demo", name="澜江市", hospitals=tuple(self._hospital(plan) for plan in _PLANS)
        )

    def _hospital(self, plan: _HospitalPlan) -> HospitalSpec:
        departments: list[DepartmentSpec] = []
        doctors: list[DoctorSpec] = []
        roster: list[WeeklySession] = []
        taken_names: set[str] = set()
        for position, (template_code, count) in enumerate(plan.departments):
            template = self._templates[template_code]
            departments.append(self._department(plan, template, position))
            staff = self._doctors(plan, template, count, taken_names, first_code=len(doctors) + 1)
            doctors.extend(staff)
            if template.kind == "clinic":
                for doctor in staff:
                    roster.extend(self._clinic_sessions(plan, template, doctor))
            else:
                roster.extend(self._rotation(plan, template, staff))
        return HospitalSpec(
            code=plan.code,
            name=plan.name,
            grade=plan.grade,
            district=plan.district,
            address=plan.address,
            aliases=plan.aliases,
            policies=plan.policies,
            departments=tuple(departments),
            doctors=tuple(doctors),
            roster=tuple(roster),
        )

    @staticmethod
    def _department(
        plan: _HospitalPlan, template: _DepartmentTemplate, position: int
    ) -> DepartmentSpec:
        floor, wing = divmod(position, 4)
        location = template.location or f"{plan.building}{floor + 1}层{'ABCD'[wing]}区"
        return DepartmentSpec(
            code=template.code,
            name=template.name,
            catalog_code=template.catalog_code,
            aliases=template.aliases,
            location=location,
        )

    def _doctors(
        self,
        plan: _HospitalPlan,
        template: _DepartmentTemplate,
        count: int,
        taken_names: set[str],
        first_code: int,
    ) -> list[DoctorSpec]:
        titles = self._titles(plan.grade, template, count)
        doctors: list[DoctorSpec] = []
        for offset, title in enumerate(titles):
            reserved = self._reserved_at.get(self._doctor_index)
            self._doctor_index += 1
            if reserved is not None:
                name, sex = reserved.name, reserved.sex
            else:
                sex = "female" if self._rng.random() < template.female_share else "male"
                name = self._fresh_name(sex, taken_names)
            taken_names.add(name)
            doctors.append(
                DoctorSpec(
                    code=f"D{first_code + offset:04d}",
                    name=name,
                    title=title,
                    department_code=template.code,
                    expertise=self._expertise(template, title),
                    sex=sex,
                )
            )
        return doctors

    def _titles(
        self, grade: HospitalGrade, template: _DepartmentTemplate, count: int
    ) -> list[Title]:
        """Titles of a department's doctors, most senior first.

        A clinic department is led by a senior doctor who holds its expert clinic; the others
        are drawn by the hospital grade's title mix. Emergency and fever rotations have no
        expert clinic, so every doctor is drawn.
        """
        if template.kind != "clinic":
            drawn = self._rng.choices(_SENIORITY, weights=_ROUND_THE_CLOCK_WEIGHTS, k=count)
            return sorted(drawn, key=_SENIORITY.index)
        if grade in (HospitalGrade.GRADE_3A, HospitalGrade.GRADE_3B):
            head = Title.CHIEF if self._rng.random() < _CHIEF_HEAD_SHARE else Title.ASSOCIATE_CHIEF
        elif grade is HospitalGrade.GRADE_1:
            head = Title.ATTENDING
        else:
            head = Title.ASSOCIATE_CHIEF
        rest = self._rng.choices(_SENIORITY, weights=_TITLE_WEIGHTS[grade], k=count - 1)
        return [head, *sorted(rest, key=_SENIORITY.index)]

    def _fresh_name(self, sex: str, taken: set[str]) -> str:
        """A common-looking name not used in this hospital and not one of the reserved ones."""
        pools = self._pools
        if sex == "female":
            leading, closing = pools.female_first, pools.female_second
        else:
            leading, closing = pools.male_first, pools.male_second
        while True:
            surname = self._rng.choices(self._surnames, weights=self._surname_weights)[0]
            given = self._rng.choice(closing)
            if self._rng.random() >= _SINGLE_GIVEN_SHARE:
                given = self._rng.choice(leading) + given
            name = surname + given
            repeated = len(given) == 2 and given[0] == given[1]
            if not repeated and name not in taken and name not in self._reserved_names:
                return name

    def _expertise(self, template: _DepartmentTemplate, title: Title) -> str:
        """What the doctor treats, in the department's own terms; seniors list more."""
        count = 3 if title in (Title.CHIEF, Title.ASSOCIATE_CHIEF) else 2
        topics = self._rng.sample(template.topics, min(count, len(template.topics)))
        return "、".join(topics) + self._rng.choice(template.suffixes)

    def _clinic_sessions(
        self, plan: _HospitalPlan, template: _DepartmentTemplate, doctor: DoctorSpec
    ) -> list[WeeklySession]:
        low, high = _SESSIONS[doctor.title]
        count = self._rng.randint(low, high)
        days = (*_WEEKDAYS, *plan.weekend_days)
        pairs = [(day, period) for day in days for period in _DAY_PERIODS]
        chosen = self._rng.sample(pairs, count)
        categories = self._categories(plan, doctor.title, count)
        if (
            plan.evening_clinics
            and template.evening
            and categories[0] is SlotCategory.GENERAL
            and self._rng.random() < _EVENING_SHARE
        ):
            # One of the half-days moves to an evening clinic (夜间门诊) on a weekday.
            chosen[-1] = (self._rng.choice(_WEEKDAYS), Period.EVENING)
        premium_fee = self._rng.choice(plan.fees.premium) if plan.fees.premium else 0
        sessions = [
            self._session(plan, doctor, day, period, category, premium_fee)
            for (day, period), category in zip(chosen, categories, strict=True)
        ]
        return sorted(sessions, key=lambda s: (s.weekday, _PERIOD_ORDER[s.period]))

    def _categories(self, plan: _HospitalPlan, title: Title, count: int) -> list[SlotCategory]:
        """Slot categories of a doctor's clinics: senior titles hold expert clinics."""
        if plan.fees.specialist is None or title in (Title.ATTENDING, Title.RESIDENT):
            return [SlotCategory.GENERAL] * count
        categories = [SlotCategory.SPECIALIST] * count
        if title is Title.CHIEF and plan.fees.premium and self._rng.random() < _PREMIUM_SHARE:
            categories[0] = SlotCategory.PREMIUM
        return categories

    def _session(
        self,
        plan: _HospitalPlan,
        doctor: DoctorSpec,
        weekday: int,
        period: Period,
        category: SlotCategory,
        premium_fee: int,
    ) -> WeeklySession:
        match category:
            case SlotCategory.GENERAL:
                fee = plan.fees.general
            case SlotCategory.SPECIALIST:
                associate_fee, chief_fee = plan.fees.specialist or (0, 0)
                fee = chief_fee if doctor.title is Title.CHIEF else associate_fee
            case SlotCategory.PREMIUM:
                fee = premium_fee
        low, high = _UNITS[category]
        return WeeklySession(
            doctor_code=doctor.code,
            weekday=weekday,
            period=period,
            category=category,
            fee_cents=fee,
            units_per_segment=self._rng.randint(low, high),
            segment_minutes=_SEGMENT_MINUTES,
        )

    def _rotation(
        self, plan: _HospitalPlan, template: _DepartmentTemplate, staff: Sequence[DoctorSpec]
    ) -> list[WeeklySession]:
        """Emergency and fever clinics open every day; the department's doctors take turns.

        Emergency runs morning, afternoon and evening, fever clinics morning and afternoon.
        Each (day, period) goes to one doctor in round-robin order, so no doctor sits twice in
        one half-day.
        """
        periods = (*_DAY_PERIODS, Period.EVENING) if template.kind == "emergency" else _DAY_PERIODS
        turns = [(day, period) for day in _ALL_DAYS for period in periods]
        if len(turns) > len(staff) * MAX_SESSIONS_PER_WEEK:
            raise ValueError(
                f"{plan.code}/{template.code}: {len(staff)} doctors cannot cover"
                f" {len(turns)} half-days at {MAX_SESSIONS_PER_WEEK} each"
            )
        order = list(staff)
        self._rng.shuffle(order)
        sessions = [
            self._session(plan, order[i % len(order)], day, period, SlotCategory.GENERAL, 0)
            for i, (day, period) in enumerate(turns)
        ]
        position = {doctor.code: index for index, doctor in enumerate(staff)}
        return sorted(
            sessions,
            key=lambda s: (position[s.doctor_code], s.weekday, _PERIOD_ORDER[s.period]),
        )


def build_demo_region(seed: int = DEMO_SEED) -> RegionSpec:
    """The demo region: eight hospitals, about 230 doctors and their weekly roster.

    The same seed always gives the same region, byte for byte once encoded; a different seed
    changes names, titles, expertise and roster but never the hospitals, their departments or
    their policies, which are the deliberate cases the demo exists to show.

    >>> import msgspec
    >>> msgspec.json.encode(build_demo_region(7)) == msgspec.json.encode(build_demo_region(7))
    True
    """
    return _DemoBuilder(seed).region()

"""The demo region: deterministic, realistic, and internally consistent."""

from __future__ import annotations

import re
from collections import Counter

import msgspec
import pytest

from guahao.platform.demo_region import MAX_SESSIONS_PER_WEEK, build_demo_region
from guahao.platform.hospitals import (
    FilingMode,
    HospitalGrade,
    PaymentMode,
    Period,
    SlotCategory,
    Title,
)
from guahao.platform.reference.catalog import load_catalog
from guahao.platform.schedules import DoctorSpec, HospitalSpec, RegionSpec, WeeklySession

SEEDS = [2026, 1, 42]
HAN_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}$|^[\u4e00-\u9fff]{2,6}·[\u4e00-\u9fff]{2,6}$")


@pytest.fixture(scope="module")
def region() -> RegionSpec:
    return build_demo_region()


def doctors(region: RegionSpec) -> list[DoctorSpec]:
    return [doctor for hospital in region.hospitals for doctor in hospital.doctors]


def sessions(region: RegionSpec) -> list[WeeklySession]:
    return [session for hospital in region.hospitals for session in hospital.roster]


def hospital(region: RegionSpec, code: str) -> HospitalSpec:
    return next(h for h in region.hospitals if h.code == code)


# Determinism


def test_the_same_seed_gives_a_byte_identical_region() -> None:
    assert msgspec.json.encode(build_demo_region(2026)) == msgspec.json.encode(
        build_demo_region(2026)
    )


def test_the_default_seed_is_2026(region: RegionSpec) -> None:
    assert msgspec.json.encode(region) == msgspec.json.encode(build_demo_region(2026))


def test_a_different_seed_gives_different_doctors_but_the_same_hospitals() -> None:
    first, second = build_demo_region(2026), build_demo_region(2027)

    assert msgspec.json.encode(first) != msgspec.json.encode(second)
    assert [h.code for h in first.hospitals] == [h.code for h in second.hospitals]
    assert [h.policies for h in first.hospitals] == [h.policies for h in second.hospitals]
    assert [d.name for d in doctors(first)] != [d.name for d in doctors(second)]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_region_passes_wire_validation(seed: int) -> None:
    region = build_demo_region(seed)
    encoded = msgspec.json.encode(region)

    assert msgspec.json.decode(encoded, type=RegionSpec) == region


# Size and variety


def test_has_eight_hospitals_and_about_two_hundred_doctors(region: RegionSpec) -> None:
    assert region.code == "demo"
    assert len(region.hospitals) >= 6
    assert len(doctors(region)) >= 150


def test_every_grade_is_present(region: RegionSpec) -> None:
    assert {h.grade for h in region.hospitals} == set(HospitalGrade)


def test_includes_a_childrens_hospital_a_tcm_hospital_and_a_community_centre(
    region: RegionSpec,
) -> None:
    by_code = {h.code: h for h in region.hospitals}

    assert by_code["children"].grade is HospitalGrade.GRADE_3A
    assert "儿童医院" in by_code["children"].name
    assert by_code["tcm"].grade is HospitalGrade.GRADE_3A
    assert "中医院" in by_code["tcm"].name
    assert by_code["nanhu-community"].grade is HospitalGrade.GRADE_1
    assert "社区卫生服务中心" in by_code["nanhu-community"].name


def test_hospitals_are_spread_over_districts_including_heteronyms(region: RegionSpec) -> None:
    districts = {h.district for h in region.hospitals}

    assert len(districts) >= 4
    assert {"朝阳区", "长乐区", "六合区"} <= districts


def test_every_hospital_has_aliases_and_an_address(region: RegionSpec) -> None:
    for h in region.hospitals:
        assert h.aliases, h.code
        assert h.address.startswith(region.name), h.code
        assert h.district in h.address, h.code


def test_all_five_payment_modes_and_three_filing_modes_are_present(region: RegionSpec) -> None:
    assert {h.policies.payment_mode for h in region.hospitals} == set(PaymentMode)
    assert {h.policies.filing_mode for h in region.hospitals} == set(FilingMode)


def test_policies_vary_across_hospitals_within_realistic_bounds(region: RegionSpec) -> None:
    policies = [h.policies for h in region.hospitals]

    assert len({(p.release.days_ahead, p.release.at) for p in policies}) >= 3
    assert {p.cancel.kind for p in policies} == {"day_before_at", "hours_before"}
    assert any(p.quota.offline_first_segments == 1 for p in policies)
    for p in policies:
        assert 0.5 <= p.quota.online_share <= 0.9
        assert 5 <= p.hold_minutes <= 15
        assert 10 <= p.payment_minutes <= 30


def test_the_community_centre_releases_three_days_ahead_at_midnight(region: RegionSpec) -> None:
    release = hospital(region, "nanhu-community").policies.release

    assert (release.days_ahead, release.at) == (3, "00:00")


# Departments


def test_every_department_maps_to_a_catalog_code(region: RegionSpec) -> None:
    catalog = load_catalog()

    for h in region.hospitals:
        for department in h.departments:
            assert department.catalog_code in catalog, (h.code, department.name)


@pytest.mark.parametrize(
    ("name", "catalog_code"),
    [
        ("心内科", "03.04"),
        ("消化内科", "03.02"),
        ("呼吸与危重症医学科", "03.01"),
        ("普外科", "04.01"),
        ("骨科", "04.03"),
        ("妇科", "05.01"),
        ("产科", "05.02"),
        ("儿科", "07"),
        ("小儿呼吸科", "07.04"),
        ("眼科", "10"),
        ("耳鼻咽喉科", "11"),
        ("口腔科", "12"),
        ("皮肤科", "13.01"),
        ("急诊科", "20"),
        ("发热门诊", "16.02"),
        ("全科医疗科", "02"),
        ("中医内科", "50.01"),
        ("针灸科", "50.13"),
    ],
)
def test_hospital_department_names_map_to_the_right_catalog_entry(
    region: RegionSpec, name: str, catalog_code: str
) -> None:
    found = {d.catalog_code for h in region.hospitals for d in h.departments if d.name == name}

    assert found == {catalog_code}


def test_departments_carry_the_names_patients_also_use(region: RegionSpec) -> None:
    cardiology = next(d for h in region.hospitals for d in h.departments if d.name == "心内科")

    assert "心血管内科" in cardiology.aliases
    assert all(d.aliases for h in region.hospitals for d in h.departments)


def test_department_codes_are_unique_per_hospital(region: RegionSpec) -> None:
    for h in region.hospitals:
        codes = [d.code for d in h.departments]
        assert len(codes) == len(set(codes)), h.code


def test_department_sets_fit_the_kind_of_hospital(region: RegionSpec) -> None:
    catalog = load_catalog()

    def subjects(code: str) -> set[str]:
        return {
            (catalog[d.catalog_code].parent or d.catalog_code)
            for d in hospital(region, code).departments
        }

    assert subjects("children") <= {"07", "08", "09", "11", "16", "20"}
    assert subjects("tcm") <= {"50", "52", "21"}
    assert "02" in subjects("nanhu-community")
    assert len(hospital(region, "nanhu-community").departments) <= 6


# Doctors


def test_doctor_codes_are_unique_per_hospital(region: RegionSpec) -> None:
    for h in region.hospitals:
        codes = [d.code for d in h.doctors]
        assert len(codes) == len(set(codes)), h.code


def test_every_doctor_belongs_to_a_department_of_their_hospital(region: RegionSpec) -> None:
    for h in region.hospitals:
        department_codes = {d.code for d in h.departments}
        for doctor in h.doctors:
            assert doctor.department_code in department_codes, (h.code, doctor.code)


def test_every_department_has_doctors(region: RegionSpec) -> None:
    for h in region.hospitals:
        staffed = {d.department_code for d in h.doctors}
        assert staffed == {d.code for d in h.departments}, h.code


@pytest.mark.parametrize("seed", SEEDS)
def test_doctor_names_are_plausible_chinese_names(seed: int) -> None:
    for doctor in doctors(build_demo_region(seed)):
        assert HAN_NAME.match(doctor.name), doctor.name
        assert not any(ch.isdigit() for ch in doctor.name)


@pytest.mark.parametrize("seed", SEEDS)
def test_names_include_the_cases_search_must_handle(seed: int) -> None:
    names = [d.name for d in doctors(build_demo_region(seed))]

    assert names.count("买买提·艾力") == 1
    assert sum(1 for name in names if "·" in name) == 1
    assert 1 <= sum(1 for name in names if name.startswith("单")) <= 2
    assert "王伟" in names
    assert any(name.startswith(("欧阳", "上官")) for name in names)
    assert sum(1 for name in names if len(name) == 2) >= 10


def test_doctor_names_are_unique_within_a_hospital(region: RegionSpec) -> None:
    for h in region.hospitals:
        names = [d.name for d in h.doctors]
        assert len(names) == len(set(names)), h.code


def test_every_doctor_has_a_sex_and_expertise_in_chinese(region: RegionSpec) -> None:
    for doctor in doctors(region):
        assert doctor.sex in {"female", "male"}
        assert re.fullmatch(r"[\u4e00-\u9fff、A-Za-z]+", doctor.expertise), doctor
        assert len(re.findall(r"[\u4e00-\u9fff]", doctor.expertise)) >= 4, doctor


def test_expertise_fits_the_department(region: RegionSpec) -> None:
    cardiologists = [d for d in doctors(region) if d.department_code == "cardiology"]

    assert cardiologists
    for doctor in cardiologists:
        assert any(
            topic in doctor.expertise
            for topic in ("冠心病", "高血压", "心律失常", "心力衰竭", "心肌病", "血脂", "瓣膜")
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_chiefs_are_fewer_than_associate_chiefs_and_attendings(seed: int) -> None:
    titles = Counter(d.title for d in doctors(build_demo_region(seed)))

    assert set(titles) == set(Title)
    assert titles[Title.CHIEF] < titles[Title.ASSOCIATE_CHIEF]
    assert titles[Title.CHIEF] < titles[Title.ATTENDING]


def test_the_community_centre_has_no_chiefs(region: RegionSpec) -> None:
    community = hospital(region, "nanhu-community")

    assert all(d.title is not Title.CHIEF for d in community.doctors)


# Roster


def test_every_roster_entry_names_a_doctor_of_its_hospital(region: RegionSpec) -> None:
    for h in region.hospitals:
        doctor_codes = {d.code for d in h.doctors}
        for session in h.roster:
            assert session.doctor_code in doctor_codes, (h.code, session)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_doctor_sits_at_most_once_per_weekday_and_period(seed: int) -> None:
    for h in build_demo_region(seed).hospitals:
        keys = [(s.doctor_code, s.weekday, s.period) for s in h.roster]
        assert len(keys) == len(set(keys)), h.code


@pytest.mark.parametrize("seed", SEEDS)
def test_every_doctor_holds_one_to_five_half_days_a_week(seed: int) -> None:
    for h in build_demo_region(seed).hospitals:
        per_doctor = Counter(s.doctor_code for s in h.roster)
        for doctor in h.doctors:
            assert 1 <= per_doctor[doctor.code] <= MAX_SESSIONS_PER_WEEK, (h.code, doctor.code)


def test_chiefs_sit_in_clinic_less_than_attendings(region: RegionSpec) -> None:
    titles = {(h.code, d.code): d.title for h in region.hospitals for d in h.doctors}
    per_doctor = Counter((h.code, s.doctor_code) for h in region.hospitals for s in h.roster)

    def mean(title: Title) -> float:
        counts = [n for key, n in per_doctor.items() if titles[key] is title]
        return sum(counts) / len(counts)

    assert mean(Title.CHIEF) < mean(Title.ATTENDING)


def test_senior_titles_hold_the_expert_clinics(region: RegionSpec) -> None:
    titles = {(h.code, d.code): d.title for h in region.hospitals for d in h.doctors}
    for h in region.hospitals:
        for session in h.roster:
            title = titles[h.code, session.doctor_code]
            if session.category is SlotCategory.PREMIUM:
                assert title is Title.CHIEF
            if session.category is SlotCategory.SPECIALIST:
                assert title in {Title.CHIEF, Title.ASSOCIATE_CHIEF}


def test_all_three_categories_are_offered(region: RegionSpec) -> None:
    assert {s.category for s in sessions(region)} == set(SlotCategory)


@pytest.mark.parametrize(
    ("category", "fees", "units"),
    [
        (SlotCategory.GENERAL, (500, 1000), (4, 6)),
        (SlotCategory.SPECIALIST, (2000, 6000), (2, 4)),
        (SlotCategory.PREMIUM, (10000, 30000), (1, 2)),
    ],
)
def test_fees_and_units_are_realistic_for_each_category(
    region: RegionSpec,
    category: SlotCategory,
    fees: tuple[int, int],
    units: tuple[int, int],
) -> None:
    for session in sessions(region):
        if session.category is category:
            assert fees[0] <= session.fee_cents <= fees[1], session
            assert units[0] <= session.units_per_segment <= units[1], session


def test_clinics_are_cut_into_thirty_minute_segments(region: RegionSpec) -> None:
    assert {s.segment_minutes for s in sessions(region)} == {30}


def test_the_community_centre_offers_general_clinics_only(region: RegionSpec) -> None:
    community = hospital(region, "nanhu-community")

    assert {s.category for s in community.roster} == {SlotCategory.GENERAL}


def test_some_hospitals_run_evening_clinics(region: RegionSpec) -> None:
    evening = [
        h.code for h in region.hospitals if any(s.period is Period.EVENING for s in h.roster)
    ]

    assert len(evening) >= 2


@pytest.mark.parametrize("department_code", ["emergency", "fever-clinic"])
def test_emergency_and_fever_clinics_open_every_day(
    region: RegionSpec, department_code: str
) -> None:
    with_department = [
        h for h in region.hospitals if any(d.code == department_code for d in h.departments)
    ]
    assert with_department
    for h in with_department:
        staff = {d.code for d in h.doctors if d.department_code == department_code}
        days = {s.weekday for s in h.roster if s.doctor_code in staff}
        assert days == set(range(7)), h.code


def test_emergency_is_staffed_morning_afternoon_and_evening(region: RegionSpec) -> None:
    for h in region.hospitals:
        staff = {d.code for d in h.doctors if d.department_code == "emergency"}
        if not staff:
            continue
        turns = {(s.weekday, s.period) for s in h.roster if s.doctor_code in staff}
        assert turns == {(day, period) for day in range(7) for period in Period}, h.code

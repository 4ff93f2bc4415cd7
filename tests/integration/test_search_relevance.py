"""Relevance on the demo region (澜江市): what a citizen types → what must come first.

The demo region places the hard cases on purpose: a two-character name (王伟), the heteronym
surnames 单 and 曾, a compound surname (欧阳), a Uyghur name with a middle dot, districts
whose names are heteronyms (朝阳, 长乐, 六合), and departments named the way hospitals name
them, with aliases.
"""

from __future__ import annotations

from typing import Any

import pytest

from guahao.bootstrap import Platform
from guahao.search.query import Hit, SearchFilters, SearchQuery, SearchResult


async def ask(platform: Platform, q: str, size: int = 5, **filters: Any) -> SearchResult:
    return await platform.search.search(
        SearchQuery(q=q, page_size=size, filters=SearchFilters(**filters))
    )


def first(result: SearchResult) -> Hit:
    assert result.hits, "nothing found"
    return result.hits[0]


@pytest.mark.parametrize(
    ("typed", "doctor"),
    [
        ("王伟", "王伟"),
        ("shanzhigang", "单志刚"),
        ("szg", "单志刚"),
        ("zengfanrong", "曾繁荣"),
        ("ouyangxue", "欧阳雪"),
        ("oyx", "欧阳雪"),
        ("买买提", "买买提·艾力"),
        ("maimaiti", "买买提·艾力"),
        ("眼科 王伟", "王伟"),
        ("ww 眼科", "王伟"),
    ],
)
async def test_names_as_typed_find_the_doctor_first(
    demo_search_platform: Platform, typed: str, doctor: str
) -> None:
    hit = first(await ask(demo_search_platform, typed))
    assert (hit.kind, hit.name) == ("doctor", doctor)


async def test_a_two_character_name_is_not_drowned_by_longer_names(
    demo_search_platform: Platform,
) -> None:
    result = await ask(demo_search_platform, "王伟")
    assert [h.name for h in result.hits] == ["王伟"]


async def test_homophones_both_come_back_for_pinyin(demo_search_platform: Platform) -> None:
    result = await ask(demo_search_platform, "wangwei")
    assert {h.name for h in result.hits[:2]} >= {"王伟"}


@pytest.mark.parametrize(
    ("typed", "catalog_code"),
    [
        ("xnk", "03.04"),
        ("xinneike", "03.04"),
        ("xinnei", "03.04"),
        ("心血管内科", "03.04"),
        ("心血管科", "03.04"),
        ("sjnk", "03.03"),
        ("神内", "03.03"),
        ("儿科", "07"),
        ("erke", "07"),
        ("耳鼻喉科", "11"),
        ("牙科", "12"),
    ],
)
async def test_departments_by_name_alias_pinyin_and_initials(
    demo_search_platform: Platform, typed: str, catalog_code: str
) -> None:
    result = await ask(demo_search_platform, typed, size=3)
    assert [(h.kind, h.catalog_code) for h in result.hits] == [("department", catalog_code)] * 3


@pytest.mark.parametrize(
    ("typed", "catalog_code", "symptom"),
    [
        ("头痛", "03.03", "头痛"),
        ("我最近总是头痛", "03.03", "头痛"),
        ("发烧", "16.02", "发热"),
        ("胸闷", "03.04", "胸闷"),
        ("宝宝咳嗽", "07.04", "小儿咳嗽"),
        ("小孩发烧怎么办", "07", "发热"),
        ("牙疼", "12", "牙痛"),
    ],
)
async def test_symptoms_lead_to_the_department_to_see_first(
    demo_search_platform: Platform, typed: str, catalog_code: str, symptom: str
) -> None:
    result = await ask(demo_search_platform, typed)
    hit = first(result)
    assert (hit.kind, hit.catalog_code) == ("department", catalog_code)
    assert result.triage[0].symptom == symptom
    assert result.triage[0].sources


@pytest.mark.parametrize(
    ("typed", "catalog_code"),
    [("xinneikr", "03.04"), ("shenjngneike", "03.03"), ("erbiyanhoke", "11")],
)
async def test_typos_in_pinyin_are_forgiven(
    demo_search_platform: Platform, typed: str, catalog_code: str
) -> None:
    result = await ask(demo_search_platform, typed)
    assert first(result).catalog_code == catalog_code
    assert typed in result.corrections


@pytest.mark.parametrize(
    ("typed", "hospital"),
    [
        ("市一院", "澜江市第一人民医院"),
        ("chaoyang", "澜江市朝阳区人民医院"),
        ("luhe", "澜江市中医院"),
        ("医大附院", "澜江医科大学附属医院"),
        ("ertongyiyuan", "澜江市儿童医院"),
    ],
)
async def test_hospitals_by_alias_and_place(
    demo_search_platform: Platform, typed: str, hospital: str
) -> None:
    hit = first(await ask(demo_search_platform, typed))
    assert (hit.kind, hit.name) == ("hospital", hospital)


async def test_hospital_alias_and_department_together(demo_search_platform: Platform) -> None:
    result = await ask(demo_search_platform, "市一院 心内科")
    assert (first(result).kind, first(result).name) == ("department", "心内科")
    assert {h.hospital_name for h in result.hits} == {"澜江市第一人民医院"}


async def test_filters_on_the_demo_region(demo_search_platform: Platform) -> None:
    result = await ask(
        demo_search_platform,
        "",
        size=50,
        kind=("doctor",),
        district=("朝阳区",),
        title=("chief",),
        catalog_code=("03",),
    )
    assert result.total > 0
    for hit in result.hits:
        assert hit.district == "朝阳区"
        assert hit.title == "chief"
        assert (hit.catalog_code or "").startswith("03")


async def test_every_doctor_of_the_region_is_indexed(demo_search_platform: Platform) -> None:
    result = await ask(demo_search_platform, "", size=1)
    kinds = {f.value: f.count for f in result.facets["kind"]}
    assert kinds == {"hospital": 8, "department": 88, "doctor": 228}

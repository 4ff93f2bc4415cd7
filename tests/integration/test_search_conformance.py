"""One conformance suite for every search backend: the embedded FTS5 index always, and
Meilisearch when ``GUAHAO_TEST_MEILI_URL`` names a server (none can be installed on these
machines, so that run is skipped with the reason).

The corpus is small and hand-made so that each test can say exactly what must come back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from guahao.search.availability import combine
from guahao.search.backend import SearchBackend
from guahao.search.documents import (
    Availability,
    AvailabilityCell,
    DocumentBuilder,
    SearchDocument,
)
from guahao.search.embedded import EmbeddedBackend
from guahao.search.query import SearchFilters, SearchQuery, SearchResult, plan
from guahao.search.tokens import TextAnalyzer

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)


def _avail(*cells: tuple[int, str, int], categories: tuple[str, ...] = ()) -> Availability:
    made = tuple(AvailabilityCell(TODAY + timedelta(days=d), c, n) for d, c, n in cells)
    return combine(
        [
            Availability(
                computed_at=NOW,
                categories=categories or tuple(sorted({c for _, c, _ in cells})),
                cells=made,
            )
        ],
        NOW,
        TODAY,
    )


def corpus() -> list[SearchDocument]:
    """Three hospitals, six departments, seven doctors, with known availability."""
    b = DocumentBuilder(_ANALYZER)
    empty = Availability(computed_at=NOW)
    h1 = b.hospital(
        hospital_id="h1",
        name="澜江市第一人民医院",
        grade="3A",
        district="朝阳区",
        address="澜江市朝阳区解放路88号",
        aliases=("市一院",),
        availability=empty,
    )
    h2 = b.hospital(
        hospital_id="h2",
        name="澜江市第二人民医院",
        grade="3B",
        district="兴华区",
        address="",
        aliases=("市二院",),
        availability=empty,
    )
    h3 = b.hospital(
        hospital_id="h3",
        name="长乐区南湖社区卫生服务中心",
        grade="1",
        district="长乐区",
        address="",
        aliases=(),
        availability=empty,
    )
    hospitals = {"h1": h1, "h2": h2, "h3": h3}
    departments_spec = [
        ("d-card-1", "h1", "心内科", ("心血管内科",), "03.04"),
        ("d-neuro-1", "h1", "神经内科", ("神内",), "03.03"),
        ("d-ped-1", "h1", "儿科", ("小儿科",), "07"),
        ("d-card-2", "h2", "心血管内科", (), "03.04"),
        ("d-ent-2", "h2", "耳鼻咽喉科", (), "11"),
        ("d-gp-3", "h3", "全科医疗科", ("全科",), "02"),
    ]
    doctors_spec = [
        (
            "wangwei",
            "d-card-1",
            "王伟",
            "chief",
            "冠心病的介入治疗",
            _avail(categories=("specialist",)),
        ),
        (
            "wangweiming",
            "d-neuro-1",
            "王伟明",
            "attending",
            "头痛、眩晕的诊治",
            _avail((0, "general", 5)),
        ),
        (
            "shanxiaoyan",
            "d-card-2",
            "单晓燕",
            "associate_chief",
            "高血压",
            _avail((1, "specialist", 3)),
        ),
        (
            "zhangsanfeng",
            "d-ent-2",
            "张三丰",
            "resident",
            "慢性鼻炎",
            _avail(categories=("general",)),
        ),
        ("lina", "d-ped-1", "李娜", "attending", "小儿哮喘", _avail((5, "general", 2))),
        ("zengfanrong", "d-gp-3", "曾繁荣", "chief", "慢病管理", _avail((2, "general", 4))),
        (
            "ouyangxue",
            "d-card-1",
            "欧阳雪",
            "attending",
            "心律失常",
            _avail((1, "premium", 1), (3, "general", 2)),
        ),
    ]
    docs_by_department: dict[str, list[Availability]] = {}
    for _, dep, *_rest, availability in doctors_spec:
        docs_by_department.setdefault(dep, []).append(availability)
    departments = {}
    for dep_id, hospital_id, name, aliases, code in departments_spec:
        departments[dep_id] = b.department(
            department_id=dep_id,
            name=name,
            aliases=aliases,
            catalog_code=code,
            hospital=hospitals[hospital_id],
            availability=combine(docs_by_department.get(dep_id, []), NOW, TODAY),
        )
    docs: list[SearchDocument] = []
    for hospital_id, hospital in hospitals.items():
        members = [d.availability for d in departments.values() if d.hospital_id == hospital_id]
        docs.append(b.with_availability(hospital, combine(members, NOW, TODAY)))
    docs += departments.values()
    for doc_id, dep_id, name, title, expertise, availability in doctors_spec:
        department = departments[dep_id]
        docs.append(
            b.doctor(
                doctor_id=doc_id,
                name=name,
                title=title,
                expertise=expertise,
                department=department,
                hospital=hospitals[department.hospital_id],
                availability=availability,
            )
        )
    return docs


_ANALYZER = TextAnalyzer()
_MEILI_URL = os.environ.get("GUAHAO_TEST_MEILI_URL", "")


def _backends() -> Iterator[Any]:
    yield pytest.param("embedded", id="embedded")
    yield pytest.param(
        "meilisearch",
        id="meilisearch",
        marks=pytest.mark.skipif(
            not _MEILI_URL,
            reason="GUAHAO_TEST_MEILI_URL is not set: no Meilisearch server can be installed "
            "on these machines (the settings and filter builders are unit-tested instead)",
        ),
    )


@pytest.fixture(params=list(_backends()))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[SearchBackend]:
    made: SearchBackend
    if request.param == "embedded":
        made = EmbeddedBackend(None)
    else:
        from guahao.search.meili import MeiliBackend

        made = MeiliBackend(
            _MEILI_URL,
            os.environ.get("GUAHAO_TEST_MEILI_KEY", ""),
            index=f"test_{uuid.uuid4().hex[:12]}",
        )
    docs = corpus()
    await made.replace_all(docs, len(docs))
    yield made
    await made.close()


async def ask(backend: SearchBackend, q: str = "", **options: Any) -> SearchResult:
    filters = SearchFilters(**options.pop("filters", {}))
    request, _ = plan(SearchQuery(q=q, filters=filters, **options), _ANALYZER, TODAY)
    return await backend.search(request)


def names(result: SearchResult) -> list[str]:
    return [h.name for h in result.hits]


def ids(result: SearchResult) -> list[str]:
    return [h.id for h in result.hits]


# ------------------------------------------------------------------------------- matching


async def test_a_two_character_name_finds_that_doctor_first(backend: SearchBackend) -> None:
    result = await ask(backend, "王伟")
    assert ids(result)[0] == "wangwei"
    assert "wangweiming" in ids(result)


async def test_pinyin_initials_find_the_department(backend: SearchBackend) -> None:
    result = await ask(backend, "xnk")
    assert result.hits[0].kind == "department"
    assert result.hits[0].id == "d-card-1"


async def test_full_pinyin_and_its_prefix_find_the_department(backend: SearchBackend) -> None:
    for typed in ("xinneike", "xinnei"):
        assert ids(await ask(backend, typed))[0] == "d-card-1", typed


async def test_surnames_read_as_surnames(backend: SearchBackend) -> None:
    assert ids(await ask(backend, "shanxiaoyan"))[0] == "shanxiaoyan"
    assert ids(await ask(backend, "zengfanrong"))[0] == "zengfanrong"
    assert ids(await ask(backend, "ouyangxue"))[0] == "ouyangxue"


async def test_place_names_read_as_places(backend: SearchBackend) -> None:
    result = await ask(backend, "chaoyang", filters={"kind": ("hospital",)})
    assert ids(result) == ["h1"]


async def test_a_department_alias_finds_departments_named_either_way(
    backend: SearchBackend,
) -> None:
    result = await ask(backend, "心血管内科", filters={"kind": ("department",)})
    assert set(ids(result)[:2]) == {"d-card-1", "d-card-2"}


async def test_a_regional_synonym_finds_departments_that_never_use_it(
    backend: SearchBackend,
) -> None:
    result = await ask(backend, "心血管科", filters={"kind": ("department",)})
    assert set(ids(result)) == {"d-card-1", "d-card-2"}


async def test_a_symptom_leads_to_its_department(backend: SearchBackend) -> None:
    result = await ask(backend, "头痛")
    assert result.hits[0].catalog_code == "03.03"
    assert "d-neuro-1" in ids(result)


async def test_a_typo_in_pinyin_still_finds_the_department(backend: SearchBackend) -> None:
    result = await ask(backend, "xinneikr")
    assert "d-card-1" in ids(result)[:3]


async def test_a_query_that_matches_nothing_finds_nothing(backend: SearchBackend) -> None:
    result = await ask(backend, "量子物理")
    assert result.total == 0
    assert result.hits == []


# -------------------------------------------------------------------------------- filters


async def test_filter_by_district_and_grade(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"district": ("兴华区",)})
    assert {h.hospital_id for h in result.hits} == {"h2"}
    result = await ask(backend, filters={"grade": ("3A",), "kind": ("doctor",)})
    assert set(ids(result)) == {"wangwei", "wangweiming", "lina", "ouyangxue"}


async def test_a_catalog_subject_finds_its_specialities(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"catalog_code": ("03",), "kind": ("department",)})
    assert set(ids(result)) == {"d-card-1", "d-neuro-1", "d-card-2"}


async def test_filter_by_title(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"title": ("chief",)})
    assert set(ids(result)) == {"wangwei", "zengfanrong"}


async def test_available_within_days_counts_today_as_the_first_day(
    backend: SearchBackend,
) -> None:
    today_only = await ask(backend, filters={"within_days": 1, "kind": ("doctor",)})
    assert ids(today_only) == ["wangweiming"]
    three = await ask(backend, filters={"within_days": 3, "kind": ("doctor",)})
    assert set(ids(three)) == {"wangweiming", "shanxiaoyan", "zengfanrong", "ouyangxue"}


async def test_available_on_a_date_in_a_category(backend: SearchBackend) -> None:
    day = TODAY + timedelta(days=1)
    result = await ask(backend, filters={"on_date": day, "kind": ("doctor",)})
    assert set(ids(result)) == {"shanxiaoyan", "ouyangxue"}
    premium = await ask(
        backend, filters={"on_date": day, "category": "premium", "kind": ("doctor",)}
    )
    assert ids(premium) == ["ouyangxue"]


async def test_a_category_alone_means_offered_even_if_full(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"category": "specialist", "kind": ("doctor",)})
    assert set(ids(result)) == {"wangwei", "shanxiaoyan"}


async def test_departments_and_hospitals_sum_their_doctors(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"within_days": 1})
    assert {(h.kind, h.id) for h in result.hits} == {
        ("doctor", "wangweiming"),
        ("department", "d-neuro-1"),
        ("hospital", "h1"),
    }
    assert next(h for h in result.hits if h.id == "h1").free_units_7d == 5 + 2 + 1 + 2


# ------------------------------------------------------------------ facets, sorting, paging


async def test_facets_count_the_whole_match(backend: SearchBackend) -> None:
    result = await ask(backend, "王伟", page_size=1)
    kinds = {f.value: f.count for f in result.facets["kind"]}
    assert kinds == {"doctor": result.total}
    districts = {f.value: f.count for f in result.facets["district"]}
    assert districts == {"朝阳区": result.total}


async def test_sort_by_next_available_puts_the_unavailable_last(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"kind": ("doctor",)}, sort="next_available")
    dates = [h.next_available_date for h in result.hits]
    known = [d for d in dates if d is not None]
    assert known == sorted(known)
    assert dates[-2:] == [None, None]
    assert ids(result)[0] == "wangweiming"


async def test_sort_by_grade_puts_the_highest_grade_first(backend: SearchBackend) -> None:
    result = await ask(backend, filters={"kind": ("hospital",)}, sort="grade")
    assert ids(result) == ["h1", "h2", "h3"]


async def test_pages_do_not_overlap_and_keep_the_total(backend: SearchBackend) -> None:
    first = await ask(backend, filters={"kind": ("doctor",)}, page=1, page_size=3)
    second = await ask(backend, filters={"kind": ("doctor",)}, page=2, page_size=3)
    third = await ask(backend, filters={"kind": ("doctor",)}, page=3, page_size=3)
    assert first.total == second.total == 7
    seen = ids(first) + ids(second) + ids(third)
    assert len(seen) == len(set(seen)) == 7


async def test_a_doctor_is_found_by_its_department_and_its_hospitals_short_name(
    backend: SearchBackend,
) -> None:
    assert ids(await ask(backend, "一院 王伟明")) == ["wangweiming"]
    assert ids(await ask(backend, "第一医院 神经内科"))[0] == "d-neuro-1"
    assert "wangweiming" in ids(await ask(backend, "神经内科 眩晕"))


async def test_a_hospitals_address_is_not_passed_on_to_its_doctors(
    backend: SearchBackend,
) -> None:
    assert ids(await ask(backend, "解放路")) == ["h1"]


async def test_traditional_and_full_width_queries_find_what_simplified_ones_do(
    backend: SearchBackend,
) -> None:
    assert ids(await ask(backend, "神經內科")) == ids(await ask(backend, "神经内科"))
    assert ids(await ask(backend, "ＷＡＮＧＷＥＩＭＩＮＧ")) == ["wangweiming"]


async def test_english_department_names_find_the_department(backend: SearchBackend) -> None:
    assert ids(await ask(backend, "Neurology"))[0] == "d-neuro-1"
    assert ids(await ask(backend, "ENT"))[0] == "d-ent-2"


# ------------------------------------------------------------------------------- writing


async def test_an_upsert_changes_what_the_availability_filter_finds(
    backend: SearchBackend,
) -> None:
    [doc] = [d for d in await backend.documents(kind="doctor", department_id="d-neuro-1")]
    assert ids(await ask(backend, filters={"within_days": 1, "kind": ("doctor",)})) == [
        "wangweiming"
    ]
    full = DocumentBuilder.with_availability(doc, Availability(computed_at=NOW))
    await backend.upsert([full])
    assert ids(await ask(backend, filters={"within_days": 1, "kind": ("doctor",)})) == []
    await backend.upsert([full])  # idempotent
    assert (await ask(backend, "王伟明")).total == 1


async def test_delete_removes_documents(backend: SearchBackend) -> None:
    await backend.delete(["doctor:zhangsanfeng", "doctor:no-such-doctor"])
    assert (await ask(backend, "张三丰")).total == 0


async def test_stored_documents_are_selected_by_kind_hospital_department_and_catalog(
    backend: SearchBackend,
) -> None:
    assert {d.entity_id for d in await backend.documents(kind="department", hospital_id="h1")} == {
        "d-card-1",
        "d-neuro-1",
        "d-ped-1",
    }
    cardiology = await backend.documents(kind="department", catalog_codes=("03.04",))
    assert {d.entity_id for d in cardiology} == {"d-card-1", "d-card-2"}


async def test_a_failed_rebuild_leaves_the_live_index_whole(backend: SearchBackend) -> None:
    docs = corpus()

    def broken() -> Iterator[SearchDocument]:
        yield docs[0]
        raise RuntimeError("the platform went away mid-read")

    with pytest.raises(RuntimeError):
        await backend.replace_all(broken(), len(docs))
    assert await backend.count() == len(docs)
    assert ids(await ask(backend, "王伟"))[0] == "wangwei"


async def test_a_rebuild_replaces_everything(backend: SearchBackend) -> None:
    docs = [d for d in corpus() if d.hospital_id == "h3"]
    assert await backend.replace_all(docs, len(docs)) == len(docs)
    assert await backend.count() == len(docs)
    assert (await ask(backend, "王伟")).total == 0


async def test_dates_beyond_the_in_memory_grid_are_answered_from_the_store() -> None:
    backend = EmbeddedBackend(None)
    docs = corpus()
    far = TODAY + timedelta(days=120)
    [doc] = [d for d in docs if d.entity_id == "lina"]
    later = DocumentBuilder.with_availability(
        doc,
        Availability(
            computed_at=NOW,
            next_date=far,
            categories=("general",),
            cells=(AvailabilityCell(far, "general", 2),),
        ),
    )
    await backend.replace_all([*docs, later], len(docs))
    request, _ = plan(SearchQuery(filters=SearchFilters(on_date=far)), _ANALYZER, TODAY)
    assert ids(await backend.search(request)) == ["lina"]

"""The Meilisearch settings and filter expressions, checked without a server."""

from __future__ import annotations

from datetime import UTC, date, datetime

from guahao.search.documents import Availability, AvailabilityCell, DocumentBuilder
from guahao.search.meili import (
    filter_expressions,
    index_settings,
    meili_document,
    meili_id,
    query_text,
    sort_expressions,
)
from guahao.search.query import QueryTerm, SearchFilters, SearchRequest
from guahao.search.vocabulary import load_vocabulary

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def _request(**kw: object) -> SearchRequest:
    base: dict[str, object] = {
        "terms": (),
        "raw": "",
        "filters": SearchFilters(),
        "available_days": None,
        "sort": "relevance",
        "offset": 0,
        "limit": 20,
        "facets": True,
        "today": date(2026, 11, 26),
    }
    base.update(kw)
    return SearchRequest(**base)  # type: ignore[arg-type]


def test_settings_search_names_before_context_and_filter_everything_the_api_filters() -> None:
    settings = index_settings(load_vocabulary())
    searchable = settings["searchableAttributes"]
    assert searchable.index("name") < searchable.index("tokensName") < searchable.index("expertise")
    assert set(settings["filterableAttributes"]) >= {
        "kind",
        "district",
        "grade",
        "catalogCodes",
        "title",
        "categories",
        "availableDays",
        "availableCells",
    }
    assert settings["sortableAttributes"] == ["nextDay", "gradeRank", "kindRank"]
    assert settings["rankingRules"][0] == "sort"


def test_settings_carry_synonym_groups_both_ways_and_symptoms_one_way() -> None:
    synonyms = index_settings(load_vocabulary())["synonyms"]
    assert "心血管内科" in synonyms["心内科"]
    assert "心内科" in synonyms["心血管内科"]
    assert synonyms["头痛"] == ["kc0303", "kc20"]
    assert "kc0303" not in synonyms


def test_settings_teach_meilisearch_the_catalog_words() -> None:
    assert "耳鼻咽喉科" in index_settings(load_vocabulary())["dictionary"]


def test_filters_match_the_embedded_meaning() -> None:
    filters = SearchFilters(
        kind=("doctor",),
        district=("朝阳区", "东湖区"),
        grade=("3A",),
        title=("chief",),
        catalog_code=("03",),
        category="specialist",
    )
    days = [date(2026, 11, 26), date(2026, 11, 27)]
    assert filter_expressions(filters, days) == [
        'kind IN ["doctor"]',
        'district IN ["朝阳区", "东湖区"]',
        'grade IN ["3A"]',
        'title IN ["chief"]',
        'catalogCodes IN ["03"]',
        f'availableCells IN ["{days[0].toordinal()}:specialist",'
        f' "{days[1].toordinal()}:specialist"]',
    ]
    assert filter_expressions(SearchFilters(), days) == [
        f"availableDays IN [{days[0].toordinal()}, {days[1].toordinal()}]"
    ]
    assert filter_expressions(SearchFilters(), []) == ['kind = "none"']


def test_filter_values_are_quoted_safely() -> None:
    assert filter_expressions(SearchFilters(district=('x" OR kind = "y',)), None) == [
        'district IN ["x\\" OR kind = \\"y"]'
    ]


def test_sorts() -> None:
    assert sort_expressions(_request(sort="next_available")) == ["nextDay:asc", "kindRank:asc"]
    assert sort_expressions(_request(sort="grade")) == ["gradeRank:asc"]
    assert sort_expressions(_request(terms=(QueryTerm("x", ("x",)),))) == []


def test_query_text_is_each_term_as_typed() -> None:
    terms = (QueryTerm("我头痛", ("头痛",), ("03.03",)), QueryTerm("xnk", ("xnk",), latin=True))
    assert query_text(_request(terms=terms)) == "头痛 xnk"


def test_documents_carry_filter_fields_and_the_whole_document() -> None:
    builder = DocumentBuilder()
    availability = Availability(
        computed_at=NOW,
        next_date=date(2026, 11, 27),
        free_7d=3,
        categories=("general",),
        cells=(AvailabilityCell(date(2026, 11, 27), "general", 3),),
    )
    hospital = builder.hospital(
        hospital_id="h1",
        name="澜江市第一人民医院",
        grade="3A",
        district="朝阳区",
        address="",
        aliases=("市一院",),
        availability=availability,
    )
    department = builder.department(
        department_id="d1",
        name="心内科",
        aliases=("心血管内科",),
        catalog_code="03.04",
        hospital=hospital,
        availability=availability,
    )
    body = meili_document(department)
    assert body["id"] == meili_id("department:d1") == "department-d1"
    assert body["catalogCodes"] == ["03.04", "03"]
    assert body["availableCells"] == [f"{date(2026, 11, 27).toordinal()}:general"]
    assert "xnk" in body["tokensName"]
    assert body["body"].startswith("{")


def test_settings_read_english_and_lay_words_one_way_into_catalog_codes() -> None:
    synonyms = index_settings(load_vocabulary())["synonyms"]
    assert synonyms["cardiology"] == ["kc0304"]
    assert "kc05" in synonyms["obstetrics and gynecology"]
    assert synonyms["dentist"][0] == "kc12"
    assert synonyms["拔牙"][0] == "kc12"
    assert "kc01" in synonyms["打疫苗"]


def test_a_mistyped_english_word_is_sent_as_it_was_read() -> None:
    request = _request(
        terms=(
            QueryTerm("cardiolgy", ("cardiolgy",), ("03.04",), latin=True, english="cardiology"),
            QueryTerm("王伟", ("王伟",)),
        )
    )
    assert query_text(request) == "cardiology 王伟"


def test_hospital_documents_carry_their_generated_short_names_and_english() -> None:
    builder = DocumentBuilder()
    hospital = builder.hospital(
        hospital_id="h1",
        name="澜江市第一人民医院",
        grade="3A",
        district="朝阳区",
        address="澜江市朝阳区解放路88号",
        aliases=("市一院",),
        availability=Availability(computed_at=NOW),
    )
    doc = meili_document(hospital)
    assert "一院" in doc["aliasKeys"]
    assert "第一医院" in doc["aliasKeys"]
    assert "市一院" not in hospital.short_names  # registered already
    assert "people" in doc["tokensContext"].split()
    department = builder.department(
        department_id="d1",
        name="心内科",
        aliases=(),
        catalog_code="03.04",
        hospital=hospital,
        availability=Availability(computed_at=NOW),
    )
    assert "一院" in meili_document(department)["tokensParents"].split()

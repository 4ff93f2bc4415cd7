"""The national department catalog (诊疗科目) as shipped with the package."""

from __future__ import annotations

import pytest

from guahao.platform.reference.catalog import CatalogEntry, load_catalog, parse_catalog

HEADER = "code,name,parent,verified,note\n"


def test_loads_every_row_of_the_shipped_catalog() -> None:
    assert len(load_catalog()) == 165


def test_is_parsed_once_per_process() -> None:
    assert load_catalog() is load_catalog()


def test_cardiology_is_a_speciality_of_internal_medicine() -> None:
    entry = load_catalog()["03.04"]

    assert entry == CatalogEntry(code="03.04", name="心血管内科专业", parent="03", verified=True)
    assert load_catalog()["03"].name == "内科"


def test_subjects_have_no_parent() -> None:
    catalog = load_catalog()

    assert catalog["03"].parent is None
    assert all(entry.parent is None for entry in catalog.roots())
    assert [entry.code for entry in catalog.roots()][:3] == ["01", "02", "03"]


def test_children_of_internal_medicine_are_its_specialities_in_order() -> None:
    children = load_catalog().children("03")

    assert [entry.code for entry in children] == [f"03.{n:02d}" for n in range(1, 12)]
    assert children[0].name == "呼吸内科专业"
    assert all(entry.parent == "03" for entry in children)


@pytest.mark.parametrize("code", ["10", "03.04", "99"])
def test_a_subject_without_specialities_a_speciality_and_an_unknown_code_have_no_children(
    code: str,
) -> None:
    assert load_catalog().children(code) == ()


def test_unknown_code_is_none_from_get_and_key_error_from_indexing() -> None:
    catalog = load_catalog()

    assert catalog.get("99.99") is None
    assert "99.99" not in catalog
    with pytest.raises(KeyError):
        catalog["99.99"]


def test_every_speciality_sits_under_a_listed_subject_with_its_prefix() -> None:
    catalog = load_catalog()

    for entry in catalog:
        if entry.parent is not None:
            assert entry.parent in catalog
            assert entry.code.startswith(entry.parent + ".")


def test_codes_are_unique() -> None:
    codes = [entry.code for entry in load_catalog()]

    assert len(codes) == len(set(codes))


def test_only_rows_checked_against_the_official_text_are_verified() -> None:
    catalog = load_catalog()

    assert catalog["09.04"].verified
    assert not catalog["09.05"].verified
    assert not catalog["50.01"].verified


def test_ambiguous_speciality_names_are_qualified_by_their_subject() -> None:
    catalog = load_catalog()

    assert catalog.qualified_name("50.01") == "中医科 / 内科专业"
    assert catalog.qualified_name("03.11") == "内科 / 其他"
    assert catalog.qualified_name("11") == "耳鼻咽喉科"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("code,name\n10,眼科\n", "header"),
        (HEADER + "10,眼科,,yes\n", "fields"),
        (HEADER + "1,眼科,,yes,\n", "bad code"),
        (HEADER + "10,眼科,,yes,\n10,眼科,,yes,\n", "duplicate"),
        (HEADER + "03.04,心血管内科专业,03,yes,\n", "not listed before"),
        (HEADER + "03,内科,,yes,\n03.04,心血管内科专业,,yes,\n", "parent"),
    ],
)
def test_a_malformed_catalog_file_is_refused_naming_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_catalog(text)

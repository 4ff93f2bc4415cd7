"""English in a query: department names, plain words, their typos, and the words around them."""

from __future__ import annotations

import pytest

from guahao.search.english import reader_for
from guahao.search.query import plan_terms
from guahao.search.tokens import TextAnalyzer
from guahao.search.vocabulary import catalog_covers


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("cardiology", "03.04"),
        ("ENT", "11"),
        ("internal medicine", "03"),
        ("ob/gyn", "05"),
        ("obstetrics and gynecology", "05"),
        ("paediatrics", "07"),
        ("acupuncture", "50.13"),
        ("dentist", "12"),
        ("teeth cleaning", "12"),
        ("vaccination", "01"),
        ("check-up", "01"),
        ("red eye", "10"),
    ],
)
def test_english_names_and_words_lead_to_catalog_departments(typed: str, code: str) -> None:
    [reading] = reader_for().read(typed.lower())
    assert code in reading.catalog_codes


def test_the_start_of_a_distinctive_word_finds_every_department_holding_it() -> None:
    [reading] = reader_for().read("pediatric")
    assert reading.catalog_codes[0] == "07"
    assert all(catalog_covers("07", c) or c[:2] in ("08", "50") for c in reading.catalog_codes)


def test_a_mistyped_word_is_read_and_says_so() -> None:
    [reading] = reader_for().read("dermatolgy")
    assert (reading.corrected, reading.catalog_codes[0]) == ("dermatology", "13")


@pytest.mark.parametrize("typed", ["xinneike", "xnk", "wangwei", "shanzhigang", "erke", "luhe"])
def test_pinyin_is_never_read_as_english(typed: str) -> None:
    assert reader_for().read(typed) == []


def test_fillers_go_and_a_child_steers_the_complaint_to_pediatrics(
    analyzer: TextAnalyzer,
) -> None:
    terms, rules = plan_terms("I need a doctor for my kid's fever", analyzer)
    assert [t.text for t in terms] == ["fever"]
    assert terms[0].catalog_codes[0] == "07"
    assert rules
    assert rules[0].catalog_codes[0] == "07"


def test_a_child_word_beside_a_place_is_what_is_looked_for(analyzer: TextAnalyzer) -> None:
    terms, _ = plan_terms("children's hospital", analyzer)
    assert [t.text for t in terms] == ["children", "hospital"]


def test_an_english_term_is_marked_so_pinyin_typo_tolerance_leaves_it_alone(
    analyzer: TextAnalyzer,
) -> None:
    [term], _ = plan_terms("Cardiolgy", analyzer)
    assert (term.latin, term.english, term.catalog_codes) == (True, "cardiology", ("03.04",))

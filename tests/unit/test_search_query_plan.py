"""How query text becomes terms: words, synonyms, pinyin, triage."""

from __future__ import annotations

import pytest

from guahao.search.embedded import fts_match
from guahao.search.query import QueryTerm, plan_terms
from guahao.search.tokens import TextAnalyzer


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def test_a_short_chinese_query_is_one_phrase(analyzer: TextAnalyzer) -> None:
    terms, rules = plan_terms("王伟", analyzer)
    assert [(t.text, t.phrases, t.latin) for t in terms] == [("王伟", ("王伟",), False)]
    assert rules == []


def test_latin_is_a_pinyin_prefix_term(analyzer: TextAnalyzer) -> None:
    terms, _ = plan_terms("XNK", analyzer)
    assert terms == [QueryTerm(text="xnk", phrases=("xnk",), latin=True)]


def test_a_department_name_brings_its_synonyms(analyzer: TextAnalyzer) -> None:
    terms, _ = plan_terms("耳鼻喉科", analyzer)
    assert set(terms[0].phrases) == {"耳鼻喉科", "耳鼻咽喉科", "五官科"}


def test_a_sentence_keeps_its_symptom_and_drops_fillers(analyzer: TextAnalyzer) -> None:
    terms, rules = plan_terms("我最近总是头痛", analyzer)
    assert [t.text for t in terms] == ["头痛"]
    assert terms[0].catalog_codes == ("03.03", "20")
    assert rules[0].terms[0] == "头痛"


def test_a_child_symptom_goes_to_pediatrics_first(analyzer: TextAnalyzer) -> None:
    terms, rules = plan_terms("小孩发烧怎么办", analyzer)
    assert [t.text for t in terms] == ["发烧"]
    assert terms[0].catalog_codes[0] == "07"
    assert rules[0].catalog_codes[0] == "07"


def test_a_long_query_is_cut_to_the_limit(analyzer: TextAnalyzer) -> None:
    terms, _ = plan_terms("王" * 500, analyzer)
    assert sum(len(t.text) for t in terms) <= 100


def test_fts_expression_ands_terms_and_ors_alternatives() -> None:
    expression = fts_match(
        [
            QueryTerm("心内科", ("心内科", "心血管内科")),
            QueryTerm("wang", ("wang",), latin=True),
        ],
        {"wang": ["wan"]},
    )
    assert expression == (
        '({name alias context} : "心内 内科" OR {name alias context} : "心血 血管 管内 内科")'
        ' AND ({name alias context} : "wang"* OR {name alias context} : "wang"'
        ' OR {name alias context} : "wan"*)'
    )


def test_quotes_in_a_query_cannot_break_the_expression() -> None:
    assert '"王伟"' in fts_match([QueryTerm('王"伟', ('王"伟',))], {})

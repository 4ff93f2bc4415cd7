"""Text analysis: how Chinese names, places and departments become searchable tokens."""

from __future__ import annotations

import pytest

from guahao.search.tokens import TextAnalyzer, split_scripts


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def test_place_names_use_their_own_readings(analyzer: TextAnalyzer) -> None:
    assert "chaoyangqu" in analyzer.text_tokens(["朝阳区"])
    assert "luhequ" in analyzer.text_tokens(["六合区"])
    assert "changlequ" in analyzer.text_tokens(["长乐区"])


def test_surname_readings_apply_to_the_first_character_of_a_name(analyzer: TextAnalyzer) -> None:
    assert "shanzhigang" in analyzer.person_name_tokens("单志刚")
    assert "zengfanrong" in analyzer.person_name_tokens("曾繁荣")
    assert "ouyangxue" in analyzer.person_name_tokens("欧阳雪")
    # 单 inside an ordinary word keeps its ordinary reading
    assert "dan" in analyzer.text_tokens(["单人病房"])


def test_a_name_yields_characters_syllables_full_pinyin_initials_and_given_name(
    analyzer: TextAnalyzer,
) -> None:
    tokens = analyzer.person_name_tokens("王伟")
    assert tokens == ["王伟", "伟", "wang", "wei", "wangwei", "ww", "wei"]


def test_a_name_with_a_middle_dot_is_one_name(analyzer: TextAnalyzer) -> None:
    tokens = analyzer.person_name_tokens("买买提·艾力")
    assert "maimaitiaili" in tokens
    assert "买买" in tokens
    assert "艾力" in tokens


def test_departments_give_full_pinyin_and_initials_at_word_boundaries(
    analyzer: TextAnalyzer,
) -> None:
    tokens = analyzer.text_tokens(["心内科"])
    assert {"xinneike", "xnk", "xin", "nei", "ke", "心内", "内科", "科"} <= set(tokens)
    hospital = analyzer.text_tokens(["澜江市第一人民医院"])
    assert "renminyiyuan" in hospital
    assert "rmyy" in hospital


def test_a_name_taught_as_one_word_is_still_found_from_its_inner_words(
    analyzer: TextAnalyzer,
) -> None:
    analyzer.add_words(["澜江市第二人民医院"])
    assert analyzer.words("澜江市第二人民医院") == ["澜江市第二人民医院"]
    tokens = analyzer.text_tokens(["澜江市第二人民医院"])
    assert "renminyiyuan" in tokens
    assert "dierrenminyiyuan" in tokens


def test_the_catalog_teaches_the_segmenter_whole_department_names(
    analyzer: TextAnalyzer,
) -> None:
    assert analyzer.words("耳鼻咽喉科") == ["耳鼻咽喉科"]


def test_platform_names_can_be_taught_to_the_segmenter(analyzer: TextAnalyzer) -> None:
    analyzer.add_words(["澜医附院"])
    assert "澜医附院" in analyzer.words("澜医附院心内科")


def test_latin_text_is_lower_cased_and_split_from_chinese() -> None:
    assert split_scripts("IgA肾病 Shan-Wei") == ["iga", "肾病", "shan", "wei"]


def test_keys_are_the_value_its_pinyin_and_its_initials(analyzer: TextAnalyzer) -> None:
    assert analyzer.keys("单晓燕", person=True) == ["单晓燕", "shanxiaoyan", "sxy"]

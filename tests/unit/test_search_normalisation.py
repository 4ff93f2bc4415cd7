"""Normalisation: the one written form that queries and the index are compared in."""

from __future__ import annotations

import pytest

from guahao.search.normalisation import normalise
from guahao.search.query import plan_terms
from guahao.search.tokens import TextAnalyzer


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("ＸＩＮＮＥＩＫＥ", "xinneike"),
        ("ｘｎｋ", "xnk"),
        ("１２３", "123"),
        ("醫院", "医院"),
        ("皮膚科", "皮肤科"),
        ("心臟內科", "心脏内科"),
        ("兒童醫院", "儿童医院"),
        ("長樂區", "长乐区"),
        ("Cardiology", "cardiology"),
        ("  王伟 \t 眼科  ", "王伟 眼科"),
        ("王伟\u3000眼科", "王伟 眼科"),
        ("Children’s Hospital", "children's hospital"),
        ("心内科", "心内科"),
    ],
)
def test_full_width_traditional_case_and_spacing_become_one_form(typed: str, normal: str) -> None:
    assert normalise(typed) == normal


def test_simplified_text_is_left_as_it_is() -> None:
    for text in ("澜江市第一人民医院", "买买提·艾力", "单志刚", "发热门诊", "著名专家"):
        assert normalise(text) == text


def test_index_tokens_and_query_terms_agree_whatever_the_script() -> None:
    analyzer = TextAnalyzer()
    assert analyzer.text_tokens(["皮膚科"]) == analyzer.text_tokens(["皮肤科"])
    assert analyzer.keys("ＸＮＫ") == analyzer.keys("xnk")
    traditional, _ = plan_terms("神經內科", analyzer)
    simplified, _ = plan_terms("神经内科", analyzer)
    assert traditional == simplified

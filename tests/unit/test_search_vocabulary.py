"""The curated data: synonyms, triage guidance and readings, each with its sources."""

from __future__ import annotations

from guahao.platform.reference.catalog import load_catalog
from guahao.search.vocabulary import load_districts, load_vocabulary


def test_every_data_file_names_its_sources() -> None:
    vocab = load_vocabulary()
    for name in ("department-synonyms.json", "symptoms.json", "pinyin-readings.json"):
        assert vocab.sources[name], name


def test_triage_guidance_points_at_real_catalog_departments() -> None:
    catalog = load_catalog()
    for rule in load_vocabulary().symptoms:
        assert rule.catalog_codes, rule
        assert all(code in catalog for code in rule.catalog_codes), rule


def test_symptoms_are_found_inside_a_sentence_in_the_order_they_occur() -> None:
    vocab = load_vocabulary()
    assert [r.catalog_codes[0] for r in vocab.symptoms_in("最近胸闷还头痛")] == ["03.04", "03.03"]
    assert [r.terms[0] for r in vocab.symptoms_in("宝宝咳嗽")] == ["小儿咳嗽"]
    assert vocab.symptoms_in("心内科") == []


def test_synonym_groups_are_symmetric() -> None:
    vocab = load_vocabulary()
    assert "心内科" in vocab.synonyms_of("心血管内科")
    assert "心血管内科" in vocab.synonyms_of("心内科")
    assert vocab.synonyms_of("没有这个科") == ()


def test_a_term_never_stands_in_two_symptom_rules() -> None:
    seen: set[str] = set()
    for rule in load_vocabulary().symptoms:
        for term in rule.terms:
            assert term not in seen, term
            seen.add(term)


def test_districts_of_the_demo_region_are_placed() -> None:
    districts = load_districts()
    assert districts.distance("朝阳区", "兴华区") < districts.distance("朝阳区", "六合区")


def test_every_catalog_department_has_an_english_name() -> None:
    vocab = load_vocabulary()
    assert {entry.code for entry in load_catalog()} == set(vocab.english)
    assert all(names and all(n.isascii() for n in names) for names in vocab.english.values())


def test_lay_words_for_errands_and_complaints_lead_to_departments() -> None:
    vocab = load_vocabulary()
    assert vocab.sources["lay-terms.json"]
    assert vocab.symptoms_in("我想拔牙")[0].catalog_codes[0] == "12"
    assert vocab.symptoms_in("打疫苗")[0].catalog_codes[0] == "01"
    assert vocab.symptoms_in("皮肤痒")[0].catalog_codes[0] == "13.01"
    assert dict(vocab.english_rules)["teeth"].catalog_codes[0] == "12"


def test_a_department_word_is_never_read_as_a_complaint() -> None:
    vocab = load_vocabulary()
    assert vocab.is_department_word("乳腺外科")
    assert vocab.is_department_word("男科")
    assert not vocab.is_department_word("乳腺增生")

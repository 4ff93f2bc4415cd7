"""The embedded index's in-memory ranking: the page taken from one packed key per row must be
the page the full sort by every key gives, and name matching (Latin prefixes over the sorted
name columns, Chinese needles' kept answers) must see names added after it first ran."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from guahao.search.availability import Availability
from guahao.search.columns import KEPT_NEEDLES, Columns, IntArray
from guahao.search.documents import DocumentBuilder, SearchDocument

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def full_sort(rows: IntArray, keys: list[IntArray]) -> IntArray:
    ordered: IntArray = rows[np.lexsort([rows, *reversed(keys)])]
    return ordered


def test_the_page_of_the_packed_key_is_the_page_of_the_full_sort() -> None:
    rng = np.random.default_rng(11)
    columns = Columns(date(2026, 11, 19))
    for _ in range(400):
        count = int(rng.integers(1, 300))
        rows = np.sort(rng.choice(500_000, count, replace=False)).astype(np.int32)
        keys = [rng.integers(-6, 7, count).astype(np.int32) for _ in range(int(rng.integers(1, 6)))]
        first = int(rng.integers(1, 80))
        assert np.array_equal(columns.order(rows, keys, first), full_sort(rows, keys)[:first])


def test_keys_too_wide_to_pack_fall_back_to_the_full_sort() -> None:
    rows = np.asarray([3, 9, 12, 40], dtype=np.int32)
    # "no next date" is 2**31 - 1: with the rowids and a second key it cannot be packed
    far = np.asarray([2**31 - 1, 5, 2**31 - 1, 5], dtype=np.int32)
    near = np.asarray([-(2**31) + 1, 1, 0, 2], dtype=np.int32)
    columns = Columns(date(2026, 11, 19))
    assert columns.order(rows, [far, near], 3).tolist() == [9, 40, 3]
    assert columns.order(rows, [far, near]).tolist() == [9, 40, 3, 12]


@pytest.fixture(scope="module")
def builder() -> DocumentBuilder:
    return DocumentBuilder()


def _doctors(builder: DocumentBuilder, names: list[str]) -> list[SearchDocument]:
    empty = Availability(computed_at=NOW)
    hospital = builder.hospital(
        hospital_id="h1",
        name="澜江市第一人民医院",
        grade="3A",
        district="朝阳区",
        address="",
        aliases=("市一院",),
        availability=empty,
    )
    department = builder.department(
        department_id="d1",
        name="心内科",
        aliases=("心血管内科",),
        catalog_code="03.04",
        hospital=hospital,
        availability=empty,
    )
    return [
        builder.doctor(
            doctor_id=f"doc{i}",
            name=name,
            title="chief",
            expertise="冠心病",
            department=department,
            hospital=hospital,
            availability=empty,
        )
        for i, name in enumerate(names)
    ]


def test_name_matches_see_names_added_after_they_were_first_computed(
    builder: DocumentBuilder,
) -> None:
    columns = Columns(date(2026, 11, 19))
    first = _doctors(builder, ["王伟", "李娜", "张敏"])
    for rowid, doc in enumerate(first, start=1):
        columns.put(rowid, doc)
    rows = np.asarray([1, 2, 3], dtype=np.int32)
    # full pinyin, initials and a Chinese substring, each weighed 4 on the name
    assert columns.weight(rows, ["wangw"]).tolist() == [4, 1, 1]
    assert columns.weight(rows, ["ln"]).tolist() == [1, 4, 1]
    assert columns.weight(rows, ["敏"]).tolist() == [1, 1, 4]
    assert columns.weight(rows, ["王"]).tolist() == [4, 1, 1]  # the answer for 王 is kept
    later = _doctors(builder, ["王芳"])[0]
    columns.put(4, later)
    rows = np.asarray([1, 2, 3, 4], dtype=np.int32)
    assert columns.weight(rows, ["wang"]).tolist() == [4, 1, 1, 4]
    assert columns.weight(rows, ["wangf"]).tolist() == [1, 1, 1, 4]
    assert columns.weight(rows, ["王"]).tolist() == [4, 1, 1, 4]


def _departments(builder: DocumentBuilder) -> list[SearchDocument]:
    """A hospital, three departments of two catalog subjects (one a sub-specialty), and a
    doctor of each."""
    empty = Availability(computed_at=NOW)
    hospital = builder.hospital(
        hospital_id="h2",
        name="澜江市中医院",
        grade="3A",
        district="朝阳区",
        address="",
        aliases=("市中医院",),
        availability=empty,
    )
    departments = [
        builder.department(
            department_id=f"d{code}",
            name=name,
            aliases=aliases,
            catalog_code=code,
            hospital=hospital,
            availability=empty,
        )
        for name, aliases, code in (
            ("心内科", ("心血管内科",), "03.04"),
            ("消化内科", ("消化科",), "03.01"),
            ("儿科", ("小儿科",), "07"),
        )
    ]
    doctors = [
        builder.doctor(
            doctor_id=f"doc-{department.entity_id}",
            name="王伟",
            title="chief",
            expertise="",
            department=department,
            hospital=hospital,
            availability=empty,
        )
        for department in departments
    ]
    return [hospital, *departments, *doctors]


def test_catalog_codes_are_found_in_the_columns_as_the_index_tokens_find_them(
    builder: DocumentBuilder,
) -> None:
    columns = Columns(date(2026, 11, 19))
    docs = _departments(builder)
    for rowid, doc in enumerate(docs, start=1):
        columns.put(rowid, doc)
    nothing = np.zeros(0, dtype=np.int32)
    # what the documents' ``kc`` tokens say, code by code
    for code in ("03", "03.04", "03.01", "07", "10"):
        token = "kc" + code.replace(".", "")
        expected = [r for r, d in enumerate(docs, start=1) if token in d.tokens_codes.split()]
        assert columns.with_catalog(nothing, [code]).tolist() == expected, code
    assert columns.with_catalog(nothing, ["03"]).tolist() == [2, 3, 5, 6]
    # rows already matched are kept; a dropped document is not found, an added one is
    columns.drop(5)
    assert columns.with_catalog(np.asarray([1], dtype=np.int32), ["03.04"]).tolist() == [1, 2]
    columns.put(9, docs[5])
    assert columns.with_catalog(nothing, ["03"]).tolist() == [2, 3, 6, 9]
    # a document that moves to another department's code leaves the old code's answer
    columns.put(9, docs[6])
    assert columns.with_catalog(nothing, ["03"]).tolist() == [2, 3, 6]
    assert columns.with_catalog(nothing, ["07"]).tolist() == [4, 7, 9]


def test_alias_matches_of_a_broad_query_see_alias_sets_added_later(
    builder: DocumentBuilder,
) -> None:
    columns = Columns(date(2026, 11, 19))
    docs = _departments(builder)
    for rowid, doc in enumerate(docs[:3], start=1):  # the hospital and two departments
        columns.put(rowid, doc)
    rows = np.asarray([1, 2, 3], dtype=np.int32)
    # every alias set is among the rows: decided once for the needle and kept
    assert columns.weight(rows, ["科"]).tolist() == [1, 4, 4]
    assert columns.weight(rows, ["血管"]).tolist() == [1, 2, 1]
    columns.put(4, docs[3])  # 儿科, 小儿科: an alias set the kept answer has not seen
    rows = np.asarray([1, 2, 3, 4], dtype=np.int32)
    assert columns.weight(rows, ["小儿"]).tolist() == [1, 1, 1, 2]
    assert columns.weight(rows, ["血管"]).tolist() == [1, 2, 1, 1]


def test_a_full_memory_of_needles_forgets_its_oldest_eighth_at_once() -> None:
    """Not one key a miss: the slots of the keys taken from a dictionary's front stay until it
    is resized, and finding the oldest walked past all of them each time (on the previous
    code the 257th needle dropped only the first: 256 stayed)."""
    columns = Columns(date(2026, 11, 19))
    needles = [f"心内科{n}" for n in range(KEPT_NEEDLES + 1)]
    for needle in needles:
        columns._names_containing(needle)
    assert list(columns._containing) == needles[KEPT_NEEDLES // 8 :]
    codes = [f"A{n:03d}" for n in range(KEPT_NEEDLES + 1)]
    for code in codes:
        columns.with_catalog(np.zeros(0, dtype=np.int32), [code])
    assert list(columns._in_catalog) == [(code,) for code in codes[KEPT_NEEDLES // 8 :]]

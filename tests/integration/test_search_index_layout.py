"""How the embedded index stores documents: what an update rewrites, and old files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from guahao.search.documents import Availability, DocumentBuilder, SearchDocument
from guahao.search.embedded import EmbeddedBackend
from guahao.search.query import SearchQuery, plan
from guahao.search.tokens import TextAnalyzer

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
_ANALYZER = TextAnalyzer()


def _region() -> list[SearchDocument]:
    b = DocumentBuilder(_ANALYZER)
    empty = Availability(computed_at=NOW)
    hospital = b.hospital(
        hospital_id="h1",
        name="澜江市第一人民医院",
        grade="3A",
        district="朝阳区",
        address="澜江市朝阳区解放路88号",
        aliases=(),
        availability=empty,
    )
    eye = b.department(
        department_id="d1",
        name="眼科",
        aliases=(),
        catalog_code="10",
        hospital=hospital,
        availability=empty,
    )
    doctor = b.doctor(
        doctor_id="o1",
        name="周嘉琳",
        title="chief",
        expertise="白内障",
        department=eye,
        hospital=hospital,
        availability=empty,
    )
    return [hospital, eye, doctor]


async def _ids(backend: EmbeddedBackend, q: str) -> list[str]:
    request, _ = plan(SearchQuery(q=q), _ANALYZER, NOW.date())
    return [h.id for h in (await backend.search(request)).hits]


def _rowid(directory: Path, doc_id: str) -> int:
    name = (directory / "CURRENT").read_text().strip()
    with sqlite3.connect(directory / name) as db:
        return int(db.execute("SELECT rowid FROM docs WHERE id = ?", (doc_id,)).fetchone()[0])


async def test_an_availability_update_keeps_the_rowid_and_the_tokens(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path))
    docs = _region()
    await backend.replace_all(docs, len(docs))
    before = _rowid(tmp_path, "doctor:o1")
    [stored] = await backend.documents(kind="doctor", department_id="d1")
    assert stored.tokens_name == ""  # bodies keep no tokens: they are in the FTS table
    await backend.upsert([DocumentBuilder.with_availability(stored, Availability(computed_at=NOW))])
    assert _rowid(tmp_path, "doctor:o1") == before
    assert await _ids(backend, "周嘉琳") == ["o1"]
    assert await _ids(backend, "一院 眼科 白内障") == ["o1"]
    await backend.close()


async def test_a_renamed_doctor_is_found_by_the_new_name_only(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path))
    docs = _region()
    await backend.replace_all(docs, len(docs))
    before = _rowid(tmp_path, "doctor:o1")
    hospital, eye, _ = docs
    renamed = DocumentBuilder(_ANALYZER).doctor(
        doctor_id="o1",
        name="周佳林",
        title="chief",
        expertise="白内障",
        department=eye,
        hospital=hospital,
        availability=Availability(computed_at=NOW),
    )
    await backend.upsert([renamed])
    assert _rowid(tmp_path, "doctor:o1") > before  # never reused: old postings stay dead
    assert await _ids(backend, "周嘉琳") == []
    assert await _ids(backend, "周佳林") == ["o1"]
    await backend.close()


async def test_an_index_file_of_an_older_layout_is_set_aside(tmp_path: Path) -> None:
    old = tmp_path / "index-old.sqlite3"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT, name_keys TEXT)")
        db.execute("INSERT INTO docs VALUES (1, 'doctor:x', '')")
    (tmp_path / "CURRENT").write_text("index-old.sqlite3")
    backend = EmbeddedBackend(str(tmp_path))
    assert await backend.count() == 0
    assert (tmp_path / "CURRENT").read_text() != "index-old.sqlite3"
    docs = _region()
    await backend.replace_all(docs, len(docs))
    assert await backend.count() == 3
    await backend.close()

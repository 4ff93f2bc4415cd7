"""Schedule sheets: every row checked, errors by row and column, nothing mapped from a file
with any error; the template reads back as an empty schedule."""

from __future__ import annotations

from datetime import UTC, datetime

from guahao.hospital_connectors.batch_files import read_schedule_file, template_csv, template_xlsx
from guahao.platform.hospitals import Period, SlotCategory

HEAD = "doctor_code,date,period,category,fee_yuan,start,end,capacity,external_id\n"


def read(text: str, **kw: object) -> object:
    return read_schedule_file(
        (HEAD + text).encode(), kind="csv", hospital_code="h1", timezone="Asia/Shanghai", **kw
    )


def test_rows_of_one_doctor_day_and_period_make_one_session() -> None:
    result = read(
        "d1,2026-03-04,上午,专家,30.5,08:30,09:00,3,X1\n"
        "d1,2026-03-04,morning,specialist,30.50,08:00,08:30,2,X1\n"
        "d2,2026-03-04,下午,普通,5,13:30,14:00,1,\n"
    )
    assert result.errors == []
    first, second = result.sessions
    assert (first.doctor_code, first.period, first.category, first.fee_cents) == (
        "d1",
        Period.MORNING,
        SlotCategory.SPECIALIST,
        3050,
    )
    assert [(s.start, s.capacity) for s in first.segments] == [
        (datetime(2026, 3, 4, 0, 0, tzinfo=UTC), 2),
        (datetime(2026, 3, 4, 0, 30, tzinfo=UTC), 3),
    ]
    assert second.period == Period.AFTERNOON


def test_every_problem_is_reported_and_nothing_is_mapped() -> None:
    result = read(
        "d1,2026-03-04,上午,专家,30,08:00,08:30,2,\n"
        "d1,2026-03-04,上午,普通,30,08:15,08:45,2,\n"  # overlap and another category
        "d1,2026-03-04,下午,专家,30,08:00,08:30,2,\n"  # 08:00 is not in the afternoon
        "d1,2026-02-30,上午,专家,30,08:00,08:30,2,\n"  # no such date
        "bad code!,2026-03-04,夜间,VIP,-1,8am,08:30,-3,\n",
        known_doctors={"d1"},
    )
    assert result.sessions == []
    assert [(e.row, e.column) for e in result.errors] == [
        (3, "category"),
        (3, "start"),
        (4, "start"),
        (5, "date"),
        (6, "capacity"),
        (6, "category"),
        (6, "doctor_code"),
        (6, "fee_yuan"),
        (6, "period"),
        (6, "start"),
    ]
    assert all(e.zh and e.en and e.code for e in result.errors)


def test_a_file_without_the_template_header_is_refused_at_row_one() -> None:
    result = read_schedule_file(
        b"name,when\nx,y\n", kind="csv", hospital_code="h1", timezone="Asia/Shanghai"
    )
    assert [(e.row, e.code) for e in result.errors] == [(1, "BATCH_FILE_INVALID")]
    broken = read_schedule_file(
        b"not a workbook", kind="xlsx", hospital_code="h1", timezone="Asia/Shanghai"
    )
    assert [e.code for e in broken.errors] == ["BATCH_FILE_INVALID"]


def test_the_templates_read_back_with_their_example_row() -> None:
    for kind, data in (("csv", template_csv().encode()), ("xlsx", template_xlsx())):
        result = read_schedule_file(data, kind=kind, hospital_code="h1", timezone="Asia/Shanghai")
        assert result.errors == [], kind
        assert [len(s.segments) for s in result.sessions] == [1]


def test_a_file_over_the_row_limit_is_refused_without_reading_the_rest() -> None:
    """Rows past the limit are never read: a file of a million rows costs what 20,001 do."""

    class Endless:
        """A CSV body that would never end if it were read whole."""

        read = 0

        def rows(self):  # type: ignore[no-untyped-def]
            yield HEAD.strip().split(",")
            while True:
                self.read += 1
                yield ["d1", "2026-03-04", "上午", "专家", "30", "08:00", "08:30", "1", ""]

    import guahao.hospital_connectors.batch_files as batch_files

    endless = Endless()
    original = batch_files._rows_of_csv
    batch_files._rows_of_csv = lambda _data: endless.rows()  # type: ignore[assignment]
    try:
        result = read_schedule_file(b"", kind="csv", hospital_code="h1", timezone="Asia/Shanghai")
    finally:
        batch_files._rows_of_csv = original
    assert result.errors[-1].code == "BATCH_FILE_INVALID"
    assert "at most 20000 rows" in result.errors[-1].en
    assert endless.read <= batch_files.MAX_ROWS + 2


def test_an_xlsx_that_unpacks_to_too_much_is_refused_before_it_is_opened() -> None:
    import io
    import zipfile

    from guahao.hospital_connectors.batch_files import MAX_UNPACKED_BYTES

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (MAX_UNPACKED_BYTES + 1))
    assert len(bomb.getvalue()) < 200_000  # small upload, huge unpacked
    result = read_schedule_file(
        bomb.getvalue(), kind="xlsx", hospital_code="h1", timezone="Asia/Shanghai"
    )
    assert [e.code for e in result.errors] == ["BATCH_FILE_INVALID"]
    assert "unpacks to" in result.errors[0].en

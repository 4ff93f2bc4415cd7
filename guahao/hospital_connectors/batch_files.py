"""Schedule files (CSV or XLSX) from the downloadable template: read, check row by row, and
either map every row or import nothing.

One row is one time segment of a session, in the hospital's local time; the rows of a
doctor's date and period make one session. Each problem is reported with its row number (as a
spreadsheet shows it), its column, a stable code and a message in Chinese and English, and a
file with any problem imports nothing.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import itertools
import multiprocessing
import re
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import msgspec

from guahao.hospital_connectors.fhir_mapping import period_of
from guahao.platform.hospitals import Period, SlotCategory
from guahao.platform.schedules import SegmentSpec, SessionSpec

__all__ = [
    "COLUMNS",
    "RowError",
    "ScheduleFile",
    "check_schedule_file",
    "read_schedule_file",
    "template_csv",
    "template_xlsx",
]

COLUMNS = (
    "doctor_code",
    "date",
    "period",
    "category",
    "fee_yuan",
    "start",
    "end",
    "capacity",
    "external_id",
)
HEADINGS = (
    "医生工号",
    "出诊日期",
    "时段",
    "号别",
    "挂号费(元)",
    "开始",
    "结束",
    "号源数",
    "院内排班号",
)
PERIODS = {
    "morning": Period.MORNING,
    "上午": Period.MORNING,
    "afternoon": Period.AFTERNOON,
    "下午": Period.AFTERNOON,
    "evening": Period.EVENING,
    "晚上": Period.EVENING,
}
CATEGORIES = {
    "general": SlotCategory.GENERAL,
    "普通": SlotCategory.GENERAL,
    "specialist": SlotCategory.SPECIALIST,
    "专家": SlotCategory.SPECIALIST,
    "premium": SlotCategory.PREMIUM,
    "特需": SlotCategory.PREMIUM,
}
EXAMPLE = ("d001", "2026-03-04", "上午", "专家", "30.00", "08:00", "08:30", "4", "")
MAX_ROWS = 20_000
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
"""An XLSX is a zip: what it unpacks to is checked before openpyxl reads it, so that a small
upload cannot expand into gigabytes (a zip bomb). 20,000 template rows unpack to about 5 MB."""


class RowError(msgspec.Struct, frozen=True):
    row: int
    column: str
    code: str
    zh: str
    en: str


class ScheduleFile(msgspec.Struct):
    sessions: list[SessionSpec] = msgspec.field(default_factory=list)
    errors: list[RowError] = msgspec.field(default_factory=list)
    rows: int = 0


def template_csv() -> str:
    """The template: a header of column keys, a Chinese heading row, one example row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerow(HEADINGS)
    writer.writerow(EXAMPLE)
    return out.getvalue()


def template_xlsx() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "schedule"
    sheet.append(list(COLUMNS))
    sheet.append(list(HEADINGS))
    sheet.append(list(EXAMPLE))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _rows_of_csv(data: bytes) -> Iterable[list[str]]:
    text = data.decode("utf-8-sig")
    return csv.reader(io.StringIO(text))


def _check_unpacked_size(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        raise ValueError(f"it unpacks to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}")


async def check_schedule_file(
    data: bytes,
    *,
    kind: str,
    hospital_code: str,
    timezone: str,
    known_doctors: set[str] | None = None,
) -> ScheduleFile:
    """``read_schedule_file`` in a process of its own: checking 20,000 rows (or unpacking an
    XLSX) is seconds of Python holding the GIL, which in a worker thread still held
    ``/health`` at 0.3-2.8 s (p95) while a large file was checked; a separate process leaves
    the event loop's interpreter alone."""
    return await asyncio.get_running_loop().run_in_executor(
        _checker_pool(),
        functools.partial(
            read_schedule_file,
            data,
            kind=kind,
            hospital_code=hospital_code,
            timezone=timezone,
            known_doctors=known_doctors,
        ),
    )


@functools.cache
def _checker_pool() -> ProcessPoolExecutor:
    """One process per app process, started on the first file (``forkserver``: never a fork of
    a process running threads), checking one file at a time."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))


def _rows_of_xlsx(data: bytes) -> Iterable[list[str]]:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sheet = book.worksheets[0]
    for values in sheet.iter_rows(values_only=True):
        row = []
        for value in values:
            if value is None:
                row.append("")
            elif isinstance(value, datetime):
                row.append(
                    value.date().isoformat() if value.time() == time(0) else value.strftime("%H:%M")
                )
            elif isinstance(value, date):
                row.append(value.isoformat())
            elif isinstance(value, time):
                row.append(value.strftime("%H:%M"))
            elif isinstance(value, float) and value.is_integer():
                row.append(str(int(value)))
            else:
                row.append(str(value).strip())
        yield row


def read_schedule_file(
    data: bytes,
    *,
    kind: str,
    hospital_code: str,
    timezone: str,
    known_doctors: set[str] | None = None,
) -> ScheduleFile:
    """Check every row of a CSV or XLSX schedule; ``sessions`` only when ``errors`` is empty."""
    result = ScheduleFile()

    def fail(row: int, column: str, code: str, zh: str, en: str) -> None:
        result.errors.append(RowError(row, column, code, zh, en))

    try:
        if kind == "xlsx":
            _check_unpacked_size(data)
        # one row past the limit (plus the two heading rows) is enough to refuse the file:
        # the rest is never read
        reader = _rows_of_xlsx(data) if kind == "xlsx" else _rows_of_csv(data)
        rows = list(itertools.islice(reader, MAX_ROWS + 3))
    except Exception as exc:  # not a spreadsheet at all
        fail(0, "", "BATCH_FILE_INVALID", "文件无法读取", f"the file cannot be read: {exc}")
        return result
    if not rows or [c.strip() for c in rows[0][: len(COLUMNS)]] != list(COLUMNS):
        fail(
            1,
            "",
            "BATCH_FILE_INVALID",
            "第一行须为模板的列名",
            "row 1 must be the template's column keys",
        )
        return result
    zone = ZoneInfo(timezone)
    groups: dict[
        tuple[str, date, Period], list[tuple[int, SlotCategory, int, datetime, datetime, int, str]]
    ] = {}
    for number, row in enumerate(rows[1:], start=2):
        if (
            not any(c.strip() for c in row)
            or tuple(c.strip() for c in row[: len(HEADINGS)]) == HEADINGS
        ):
            continue
        result.rows += 1
        if result.rows > MAX_ROWS:
            fail(
                number, "", "BATCH_FILE_INVALID", f"最多 {MAX_ROWS} 行", f"at most {MAX_ROWS} rows"
            )
            break
        cells = dict(zip(COLUMNS, [c.strip() for c in row] + [""] * len(COLUMNS), strict=False))
        errors_before = len(result.errors)
        doctor = cells["doctor_code"]
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", doctor):
            fail(
                number,
                "doctor_code",
                "VALIDATION_FAILED",
                "医生工号为空或含非法字符",
                "doctor code is empty or has characters other than letters, digits, _ . -",
            )
        elif known_doctors is not None and doctor not in known_doctors:
            fail(
                number,
                "doctor_code",
                "DOCTOR_NOT_FOUND",
                f"医生 {doctor} 不存在",
                f"no doctor {doctor} in this hospital",
            )
        try:
            day = date.fromisoformat(cells["date"])
        except ValueError:
            fail(
                number,
                "date",
                "VALIDATION_FAILED",
                "日期须为 YYYY-MM-DD",
                "date must be YYYY-MM-DD",
            )
            day = None
        period = PERIODS.get(
            cells["period"].lower() if cells["period"].isascii() else cells["period"]
        )
        if period is None:
            fail(
                number,
                "period",
                "VALIDATION_FAILED",
                "时段须为 上午/下午/晚上",
                "period must be morning, afternoon or evening",
            )
        category = CATEGORIES.get(
            cells["category"].lower() if cells["category"].isascii() else cells["category"]
        )
        if category is None:
            fail(
                number,
                "category",
                "VALIDATION_FAILED",
                "号别须为 普通/专家/特需",
                "category must be general, specialist or premium",
            )
        try:
            fee = Decimal(cells["fee_yuan"])
            fee_cents = int(fee * 100)
            if fee < 0 or fee_cents != fee * 100 or fee_cents > 10_000_000:
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            fail(
                number,
                "fee_yuan",
                "VALIDATION_FAILED",
                "挂号费须为不超过两位小数的非负金额",
                "fee must be a non-negative amount with at most 2 decimals",
            )
            fee_cents = 0
        times: list[time] = []
        for column in ("start", "end"):
            try:
                times.append(time.fromisoformat(cells[column]))
            except ValueError:
                fail(number, column, "VALIDATION_FAILED", "时间须为 HH:MM", "time must be HH:MM")
        try:
            capacity = int(cells["capacity"])
            if not 0 <= capacity <= 10_000:
                raise ValueError
        except ValueError:
            fail(
                number,
                "capacity",
                "VALIDATION_FAILED",
                "号源数须为 0 到 10000 的整数",
                "capacity must be a whole number 0..10000",
            )
            capacity = 0
        if len(result.errors) > errors_before or day is None or period is None or category is None:
            continue
        start = datetime.combine(day, times[0], zone)
        end = datetime.combine(day, times[1], zone)
        if start >= end:
            fail(
                number,
                "end",
                "VALIDATION_FAILED",
                "结束时间须晚于开始时间",
                "end must be after start",
            )
            continue
        if period_of(start) != period:
            fail(
                number,
                "start",
                "VALIDATION_FAILED",
                f"开始时间不在{cells['period']}",
                f"start is not in the {period.value}",
            )
            continue
        groups.setdefault((doctor, day, period), []).append(
            (
                number,
                category,
                fee_cents,
                start.astimezone(ZoneInfo("UTC")),
                end.astimezone(ZoneInfo("UTC")),
                capacity,
                cells["external_id"],
            )
        )
    for (doctor, day, period), entries in groups.items():
        entries.sort(key=lambda e: e[3])
        first = entries[0]
        for entry in entries[1:]:
            if (entry[1], entry[2]) != (first[1], first[2]):
                fail(
                    entry[0],
                    "category",
                    "VALIDATION_FAILED",
                    "同一出诊单元的号别和挂号费须一致",
                    "category and fee must be the same in every row of a session",
                )
        for before, after in itertools.pairwise(entries):
            if after[3] < before[4]:
                fail(
                    after[0],
                    "start",
                    "VALIDATION_FAILED",
                    f"与第 {before[0]} 行时段重叠",
                    f"overlaps row {before[0]}",
                )
        result.sessions.append(
            SessionSpec(
                hospital_code=hospital_code,
                doctor_code=doctor,
                date=day,
                period=period,
                category=first[1],
                fee_cents=first[2],
                segments=tuple(SegmentSpec(start=e[3], end=e[4], capacity=e[5]) for e in entries),
                external_id=first[6],
            )
        )
    if result.errors:
        result.sessions = []
    result.errors.sort(key=lambda e: (e.row, e.column))
    return result

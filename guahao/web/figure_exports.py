"""The authority's figures as files: CSV (UTF-8 with a byte-order mark, so spreadsheet programs
read the Chinese right) and XLSX (openpyxl, write-only). One row per figure line; nested parts
are spread into columns (a compliance check becomes ``<rule>Passed`` / ``<rule>Value``) or,
for the list of nearby hospitals, one readable cell.

Building an XLSX of a year's lines takes tens of milliseconds of CPU, so it runs in a worker
thread: an export never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from typing import Any

import msgspec

from guahao.platform.error_codes import refuse

__all__ = ["EXPORT_FORMATS", "export_figures", "table_of"]

EXPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Cell = str | int | float | bool | None


def _cell(value: Any) -> Cell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _flatten(line: dict[str, Any]) -> dict[str, Cell]:
    flat: dict[str, Cell] = {}
    for key, value in line.items():
        if key == "checks" and isinstance(value, list):
            for check in value:
                flat[f"{check['rule']}Passed"] = check["passed"]
                flat[f"{check['rule']}Value"] = check["value"]
        elif key == "nearby" and isinstance(value, list):
            flat[key] = "; ".join(
                f"{n['hospitalName']} {n['departmentName']} ({n['freeUnits7d']})" for n in value
            )
        else:
            flat[key] = _cell(value)
    return flat


def table_of(lines: Sequence[msgspec.Struct]) -> tuple[list[str], list[list[Cell]]]:
    """Headers (the API's camelCase names) and rows of ``lines``.

    >>> from guahao.platform.services.authority_figures import ComplianceCheck
    >>> table_of([ComplianceCheck(rule="midnight_releases", passed=True, value=0.0, limit=0.0)])
    (['rule', 'passed', 'value', 'limit'], [['midnight_releases', True, 0.0, 0.0]])
    """
    flat = [_flatten(msgspec.to_builtins(line)) for line in lines]
    headers: list[str] = []
    for line in flat:
        headers.extend(k for k in line if k not in headers)
    return headers, [[line.get(h) for h in headers] for line in flat]


def _csv(headers: list[str], rows: list[list[Cell]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(["" if c is None else c for c in row] for row in rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _xlsx(title: str, headers: list[str], rows: list[list[Cell]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def export_figures(title: str, lines: Sequence[msgspec.Struct], fmt: str) -> bytes:
    """``lines`` as a ``fmt`` file (``csv`` or ``xlsx``)."""
    if fmt not in EXPORT_FORMATS:
        refuse("EXPORT_FORMAT_UNSUPPORTED", format=fmt, supported=sorted(EXPORT_FORMATS))
    headers, rows = table_of(lines)
    if fmt == "csv":
        return _csv(headers, rows)
    return await asyncio.to_thread(_xlsx, title, headers, rows)

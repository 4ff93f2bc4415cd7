"""The audit log's pages (审计日志): staff reads of personal data and every staff change,
filtered by actor, action, subject and day, paged; the hash chain's verification (the logic
of ``guahao audit verify``, read-only); and the filtered log as CSV or XLSX.

Administrators and auditors read it alike; nothing here changes a row. Days are the region's
calendar days. Walking the chain reads every row, so it runs when asked for (its own page),
not on every page of the log. An export is itself recorded in the log (``audit.export``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from guahao.platform.error_codes import refuse
from guahao.platform.services.audit import AuditEntry, AuditLog
from guahao.web.figure_exports import EXPORT_FORMATS, export_figures
from guahao.web.pages.console_context import AUTHORITY, ConsoleContext, render_console
from guahao.web.pages.page_context import REGION_ZONE

__all__ = ["AUDIT_PAGE_SIZE", "EXPORT_ROWS", "AuditLogPages", "AuditQuery"]

AUDIT_PAGE_SIZE = 50
EXPORT_ROWS = 10_000
"""Rows one export carries at most (narrow the filters for more)."""
_EXPORT_BATCH = 200  # the most ``AuditLog.query`` answers at once

Text = Annotated[str | None, QueryParameter(max_length=100)]
SubjectType = Annotated[str | None, QueryParameter(name="subjectType", max_length=100)]
SubjectId = Annotated[str | None, QueryParameter(name="subjectId", max_length=100)]
DayFrom = Annotated[str | None, QueryParameter(name="from", max_length=10)]
DayTo = Annotated[str | None, QueryParameter(name="to", max_length=10)]
"""Days as the filter form sends them (an empty date field comes as an empty string)."""


class AuditQuery:
    """The filters of one view of the log, as the page, its pager and its export share them."""

    def __init__(
        self,
        actor: str | None,
        action: str | None,
        subject_type: str | None,
        subject_id: str | None,
        date_from: date | None,
        date_to: date | None,
    ) -> None:
        self.actor = (actor or "").strip()
        self.action = (action or "").strip()
        self.subject_type = (subject_type or "").strip()
        self.subject_id = (subject_id or "").strip()
        self.date_from = date_from
        self.date_to = date_to
        if date_from and date_to and date_to < date_from:
            refuse("VALIDATION_FAILED", field="to", reason="before the start")

    @property
    def since(self) -> datetime | None:
        if self.date_from is None:
            return None
        return datetime.combine(self.date_from, time(0), REGION_ZONE)

    @property
    def until(self) -> datetime | None:
        if self.date_to is None:
            return None
        return datetime.combine(self.date_to + timedelta(days=1), time(0), REGION_ZONE)

    def filters(self) -> dict[str, Any]:
        return {
            "subject_type": self.subject_type or None,
            "subject_id": self.subject_id or None,
            "actor": self.actor or None,
            "action": self.action or None,
            "since": self.since,
            "until": self.until,
        }

    def query_string(self) -> str:
        """The filters as a URL query (for the pager and the export links)."""
        pairs = {
            "actor": self.actor,
            "action": self.action,
            "subjectType": self.subject_type,
            "subjectId": self.subject_id,
            "from": str(self.date_from or ""),
            "to": str(self.date_to or ""),
        }
        return urlencode({k: v for k, v in pairs.items() if v})


def _day(raw: str | None, field: str) -> date | None:
    """``raw`` as a day (None if the field was left empty).

    >>> _day("2026-03-04", "from"), _day("", "from")
    (datetime.date(2026, 3, 4), None)
    """
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        refuse("VALIDATION_FAILED", field=field, reason="a day as YYYY-MM-DD")


def _query(
    actor: str | None,
    action: str | None,
    subject_type: str | None,
    subject_id: str | None,
    date_from: str | None,
    date_to: str | None,
) -> AuditQuery:
    return AuditQuery(
        actor, action, subject_type, subject_id, _day(date_from, "from"), _day(date_to, "to")
    )


class AuditLogPages(Controller):
    path = "/console/authority/audit"
    include_in_schema = False

    @get("/", name="console_audit")
    async def log(
        self,
        console: NamedDependency[ConsoleContext],
        audit: NamedDependency[AuditLog],
        actor: Text = None,
        action: Text = None,
        subject_type: SubjectType = None,
        subject_id: SubjectId = None,
        date_from: DayFrom = None,
        date_to: DayTo = None,
        page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100_000)] = 1,
    ) -> Template:
        """The log, newest first, filtered and paged."""
        console.require(*AUTHORITY)
        query = _query(actor, action, subject_type, subject_id, date_from, date_to)
        found = await audit.query(**query.filters(), page=page_no, per_page=AUDIT_PAGE_SIZE)
        pages = max((found.total + AUDIT_PAGE_SIZE - 1) // AUDIT_PAGE_SIZE, 1)
        return render_console(
            console,
            "console/audit.html",
            query=query,
            qs=query.query_string(),
            found=found,
            page_no=page_no,
            pages=pages,
            export_formats=sorted(EXPORT_FORMATS),
            export_rows=EXPORT_ROWS,
        )

    @get("/chain", name="console_audit_chain")
    async def chain(
        self, console: NamedDependency[ConsoleContext], audit: NamedDependency[AuditLog]
    ) -> Template:
        """The hash chain walked from its first entry (``guahao audit verify``'s logic): intact,
        or the first broken link and why."""
        console.require(*AUTHORITY)
        started = console.now()
        report = await audit.verify()
        return render_console(
            console, "console/audit_chain.html", report=report, checked_at=started
        )

    @get("/export", name="console_audit_export")
    async def export(
        self,
        console: NamedDependency[ConsoleContext],
        audit: NamedDependency[AuditLog],
        fmt: Annotated[str, QueryParameter(name="format", max_length=8)] = "csv",
        actor: Text = None,
        action: Text = None,
        subject_type: SubjectType = None,
        subject_id: SubjectId = None,
        date_from: DayFrom = None,
        date_to: DayTo = None,
    ) -> Response[bytes]:
        """The filtered log as a file, newest first, at most ``EXPORT_ROWS`` rows."""
        staff = console.require(*AUTHORITY)
        if fmt not in EXPORT_FORMATS:
            refuse("EXPORT_FORMAT_UNSUPPORTED", format=fmt, supported=sorted(EXPORT_FORMATS))
        query = _query(actor, action, subject_type, subject_id, date_from, date_to)
        filters = query.filters()
        # rows written while the export pages through the log would shift its pages: it
        # reads up to the moment it started (a row of that very moment included)
        now = console.now() + timedelta(microseconds=1)
        filters["until"] = min(filters["until"] or now, now)
        rows: list[AuditEntry] = []
        page_no = 1
        while len(rows) < EXPORT_ROWS:
            found = await audit.query(**filters, page=page_no, per_page=_EXPORT_BATCH)
            rows.extend(found.items)
            if len(found.items) < _EXPORT_BATCH:
                break
            page_no += 1
        rows = rows[:EXPORT_ROWS]
        await audit.record_export(
            staff.username,
            staff.role.value,
            {k: str(v) for k, v in query.filters().items() if v is not None},
            len(rows),
        )
        body = await export_figures("audit-log", rows, fmt)
        stamp = console.today().isoformat()
        return Response(
            content=body,
            media_type=EXPORT_FORMATS[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="audit-log-{stamp}.{fmt}"',
                "Cache-Control": "no-store",
            },
        )

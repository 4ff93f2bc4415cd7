"""``guahao search``: rebuild the index, ask it a question, find alternatives.

In the CLI layer beside ``guahao.cli``, not inside ``guahao.search``: these commands open the
whole platform, and the search package must not import the composition root that wires it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import click
import msgspec

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from guahao.platform.errors import GuahaoError
from guahao.search.query import SearchQuery, SearchResult

__all__ = ["search"]

_TITLES = {
    "chief": "主任医师",
    "associate_chief": "副主任医师",
    "attending": "主治医师",
    "resident": "住院医师",
}
_KINDS = {"hospital": "医院", "department": "科室", "doctor": "医生"}


def _progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        click.echo(
            f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
            nl=done >= total,
            err=True,
        )

    return show


def _run(work: Callable[[Any], Any]) -> Any:
    """Open the platform (no job worker), run ``work(platform)``, close it."""
    settings = load_settings()
    logging.getLogger().setLevel(settings.log_level)

    async def main() -> Any:
        async with open_platform(settings, run_jobs=False) as platform:
            return await work(platform)

    try:
        return asyncio.run(main())
    except GuahaoError as exc:
        raise click.ClickException(
            f"{exc.code}: {exc.message_zh} / {exc.message_en} {exc.detail}"
        ) from exc


@click.group()
def search() -> None:
    """Search over every hospital, department and doctor of the region."""


@search.command("reindex")
def reindex() -> None:
    """Build a new index from the platform and swap it in (readers keep the old one until
    the new one is complete)."""

    async def work(platform: Any) -> tuple[int, str]:
        count = await platform.search.reindex(progress=_progress("documents"))
        return count, platform.search.backend.name

    count, backend = _run(work)
    click.echo(f"indexed {count} documents ({backend})")


def _print(result: SearchResult) -> None:
    click.echo(f"{result.total} found ({result.backend}), page {result.page}")
    for advice in result.triage:
        names = "、".join(d.name for d in advice.departments)
        click.echo(f"导诊 {advice.symptom}: {names}  (guidance only, not a diagnosis)")
    for term, read_as in result.corrections.items():
        click.echo(f"read {term!r} as {', '.join(read_as)}")
    for hit in result.hits:
        where = " · ".join(x for x in (hit.hospital_name, hit.department_name or "") if x)
        title = _TITLES.get(hit.title or "", "")
        when = hit.next_available_date.isoformat() if hit.next_available_date else "无号"
        click.echo(
            f"  [{_KINDS[hit.kind]}] {hit.name} {title}  {where}  {hit.district} {hit.grade}"
            f"  next: {when}  free 7d: {hit.free_units_7d}  id={hit.id}"
        )


@search.command("query")
@click.argument("text", default="")
@click.option("--kind", multiple=True, type=click.Choice(["hospital", "department", "doctor"]))
@click.option("--district", multiple=True)
@click.option("--grade", multiple=True, help="3A, 3B, 2A, 2B or 1")
@click.option("--catalog", "catalog_code", multiple=True, help="catalog code, e.g. 03.04")
@click.option("--title", multiple=True, help="chief, associate_chief, attending, resident")
@click.option("--category", default=None, help="general, specialist or premium")
@click.option("--within", "within_days", type=int, default=None, help="free within N days")
@click.option("--date", "on_date", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option(
    "--sort", type=click.Choice(["relevance", "next_available", "grade"]), default="relevance"
)
@click.option("--page", type=int, default=1)
@click.option("--size", "page_size", type=int, default=10)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def query(
    text: str,
    kind: tuple[str, ...],
    district: tuple[str, ...],
    grade: tuple[str, ...],
    catalog_code: tuple[str, ...],
    title: tuple[str, ...],
    category: str | None,
    within_days: int | None,
    on_date: Any,
    sort: str,
    page: int,
    page_size: int,
    as_json: bool,
) -> None:
    """Search as a citizen would type: 王伟, xnk, 心血管内科, 头痛, xinneike …"""
    try:
        request = msgspec.convert(
            {
                "q": text,
                "filters": {
                    "kind": kind,
                    "district": district,
                    "grade": grade,
                    "catalogCode": catalog_code,
                    "title": title,
                    "category": category,
                    "withinDays": within_days,
                    "onDate": on_date.date().isoformat() if on_date else None,
                },
                "sort": sort,
                "page": page,
                "pageSize": page_size,
            },
            SearchQuery,
        )
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc

    async def work(platform: Any) -> SearchResult:
        found: SearchResult = await platform.search.search(request)
        return found

    result = _run(work)
    if as_json:
        click.echo(msgspec.json.encode(result).decode())
    else:
        _print(result)


@search.command("alternatives")
@click.argument("doctor_id")
@click.option("--within", "within_days", type=int, default=7, show_default=True)
def alternatives(doctor_id: str, within_days: int) -> None:
    """Where else the doctor's catalog department has free units, nearest district first."""

    async def work(platform: Any) -> Any:
        return await platform.search.alternatives(doctor_id, within_days=within_days)

    found = _run(work)
    state = "full" if found.full else "has free units"
    click.echo(
        f"{found.doctor.name} ({found.doctor.hospital_name}) {state} within {within_days} days"
    )
    for alt in found.alternatives:
        d = alt.department
        km = f"{alt.distance_km} km" if alt.distance_km is not None else "?"
        when = d.next_available_date.isoformat() if d.next_available_date else "-"
        click.echo(f"  {d.hospital_name} · {d.name}  {d.district} ({km})  next: {when}")
        for doc in alt.doctors:
            title = _TITLES.get(doc.title or "", "")
            click.echo(f"      {doc.name} {title} next: {doc.next_available_date}")

"""``guahao console …``: the authority's read models by hand (backfill, folds, measures).

The outbox subscriber keeps the rollups current and the sweep folds refused demand and
measures access once a day; these commands are for a fresh installation, a restore from
backup, or a figure wanted now.
"""

from __future__ import annotations

import asyncio
from datetime import date

import click

from guahao.bootstrap import open_platform
from guahao.config import load_settings

__all__ = ["console"]


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from exc


@click.group()
def console() -> None:
    """The authority's figures: rollups of supply and demand, access measures."""


@console.command("rebuild")
@click.option("--since", default=None, help="First visit day (default: the first session).")
@click.option("--until", default=None, help="Last visit day (default: the last session).")
def rebuild(since: str | None, until: str | None) -> None:
    """Recompute the supply-and-demand rollups from the bookings (backfill)."""
    first, last = _day(since, "--since"), _day(until, "--until")

    def show(day: date, written: int) -> None:
        click.echo(f"\r  {day.isoformat()}: {written} rows", nl=False, err=True)

    async def run() -> int:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            await platform.rollups.fold_refusals()
            return await platform.rollups.rebuild(since=first, until=last, progress=show)

    written = asyncio.run(run())
    click.echo(f"\nrebuilt {written} rollup rows")


@console.command("measure-access")
def measure_access() -> None:
    """Measure today's third-next-available per hospital and specialty now."""

    async def run() -> int:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            return await platform.rollups.measure_access()

    click.echo(f"measured {asyncio.run(run())} hospital × specialty pairs")

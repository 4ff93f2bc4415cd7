"""``guahao payments …``: payment reconciliation (对账) by hand.

The job worker reconciles every day at 02:30 Beijing time and the sweep settles differences
as they appear; these commands are for an operator checking a day again (after a gateway
incident, say) or handing the authority its report. Output is the report as JSON.
"""

from __future__ import annotations

import asyncio
from datetime import date

import click
import msgspec

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from guahao.platform.errors import GuahaoError

__all__ = ["payments"]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not a date like 2026-03-10", param_hint="--day"
        ) from exc


@click.group()
def payments() -> None:
    """Payment reconciliation (对账) with the gateway."""


@payments.command("reconcile")
@click.option("--day", default=None, help="Beijing-time day, e.g. 2026-03-10 (default: today).")
def reconcile(day: str | None) -> None:
    """Compare every order of the day with the gateway, settle differences, print the report."""
    wanted = _day(day)

    async def run() -> bytes:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            reconciliation = platform.payment_reconciliation
            report = await reconciliation.reconcile_day(wanted or reconciliation.business_day())
            return msgspec.json.format(msgspec.json.encode(report), indent=2)

    try:
        click.echo(asyncio.run(run()).decode())
    except GuahaoError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message_zh} / {exc.message_en}") from exc


@payments.command("report")
@click.option("--day", default=None, help="Beijing-time day, e.g. 2026-03-10 (default: today).")
def report(day: str | None) -> None:
    """Print the day's report as recorded, without asking the gateway anything."""
    wanted = _day(day)

    async def run() -> bytes:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            reconciliation = platform.payment_reconciliation
            found = await reconciliation.report(wanted or reconciliation.business_day())
            return msgspec.json.format(msgspec.json.encode(found), indent=2)

    click.echo(asyncio.run(run()).decode())

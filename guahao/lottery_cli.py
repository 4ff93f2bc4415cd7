"""``guahao lottery …``: mark a session as a lottery (摇号) and run due draws by hand.

Hospital staff will do the marking from the hospital console; until then (and for the demo)
operators use this command. Times carry their zone (``2026-03-10T08:00+08:00``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import click

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from guahao.platform.errors import GuahaoError

__all__ = ["lottery"]


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from exc
    if parsed.tzinfo is None:
        raise click.BadParameter("give the zone, e.g. 2026-03-10T08:00+08:00", param_hint=name)
    return parsed


@click.group()
def lottery() -> None:
    """Lottery release (摇号) of the scarcest sessions."""


@lottery.command("mark")
@click.argument("session_id")
@click.option("--opens", default=None, help="When entries open (default: the rules' window).")
@click.option("--draw", default=None, help="When the draw is (default: the release time).")
def mark(session_id: str, opens: str | None, draw: str | None) -> None:
    """Make SESSION_ID a lottery before its release: ordinary holds are refused until drawn."""
    opens_at, draw_at = _instant(opens, "--opens"), _instant(draw, "--draw")

    async def run() -> str:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            view = await platform.lottery.mark_lottery(
                session_id, opens_at=opens_at, draw_at=draw_at, actor="cli"
            )
            assert view.opens_at is not None
            assert view.draw_at is not None
            window = f"entries from {view.opens_at.isoformat()}, draw at {view.draw_at.isoformat()}"
            return f"{session_id}: {window}"

    try:
        click.echo(asyncio.run(run()))
    except GuahaoError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message_zh} / {exc.message_en}") from exc


@lottery.command("draw")
def draw() -> None:
    """Draw every lottery whose time has come (the job worker does this every 15 s)."""

    async def run() -> int:
        async with open_platform(load_settings(), run_jobs=False) as platform:
            return await platform.lottery.draw_due()

    click.echo(f"drew {asyncio.run(run())} sessions")

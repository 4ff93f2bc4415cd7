"""``guahao outbox …``: the outbox cursors as the database holds them, and the operator's
remedies when the platform refuses to start on a subscription the database does not know.

These commands open the platform without its start-up check of the cursors: they are how
an operator settles what that check refuses (docs/operations.md, "Outbox subscriptions").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from guahao.bootstrap import Platform, open_platform
from guahao.config import load_settings
from guahao.platform.persistence.outbox import CursorReport, StartsAt

__all__ = ["outbox"]

T = TypeVar("T")


def _with_platform(work: Callable[[Platform], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_platform(load_settings(), run_jobs=False, check_outbox=False) as platform:
            return await work(platform)

    try:
        return asyncio.run(run())
    except ValueError as exc:  # the dispatcher's refusals name what is wrong
        raise click.ClickException(str(exc)) from exc


def _line(report: CursorReport) -> str:
    position = "-" if report.position is None else str(report.position)
    behind = "-" if report.behind is None else str(report.behind)
    return f"{report.state:<10} {position:>10} {behind:>8} {report.parked:>7}  {report.name}"


@click.group()
def outbox() -> None:
    """The event outbox: subscriber cursors."""


@outbox.command("cursors")
def cursors() -> None:
    """List every cursor and subscription: subscribed, unused (no subscription reads it any
    more) or missing (the platform refuses to start until it is settled)."""
    reports = _with_platform(lambda platform: platform.dispatcher.cursors())
    click.echo(f"{'state':<10} {'position':>10} {'behind':>8} {'parked':>7}  name")
    for report in reports:
        click.echo(_line(report))
    unsettled = [r.name for r in reports if r.state == "missing"]
    if unsettled:
        click.echo(
            f"{len(unsettled)} subscription(s) without a cursor: rename an old cursor to it or "
            "start it (see `guahao outbox rename --help`, `guahao outbox start --help`)",
            err=True,
        )


@outbox.command("rename")
@click.argument("old")
@click.argument("new")
def rename(old: str, new: str) -> None:
    """Move cursor OLD (and its retry list) to NEW: a subscriber renamed in the code keeps its
    place instead of replaying the outbox."""
    _with_platform(lambda platform: platform.dispatcher.rename(old, new))
    click.echo(f"outbox cursor {old!r} is now {new!r}")


@outbox.command("start")
@click.argument("name")
@click.option(
    "--at",
    "starts_at",
    type=click.Choice(["now", "beginning"]),
    required=True,
    help="now: only events written from here on; beginning: replay every event.",
)
def start(name: str, starts_at: StartsAt) -> None:
    """Open a cursor for subscription NAME, which the operator declares new."""
    position = _with_platform(lambda platform: platform.dispatcher.open_cursor(name, starts_at))
    click.echo(f"outbox cursor {name!r} opened at {position}")


@outbox.command("forget")
@click.argument("name")
def forget(name: str) -> None:
    """Drop cursor NAME and its retry list (a retired subscriber; its events are then done)."""
    _with_platform(lambda platform: platform.dispatcher.forget(name))
    click.echo(f"outbox cursor {name!r} dropped")

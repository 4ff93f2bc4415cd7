"""The ``guahao`` command: run the demo region, serve, migrate, rebuild the hot pool."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import click

from guahao.bootstrap import Platform, describe_database, open_platform
from guahao.config import Settings, load_settings

__all__ = ["main"]


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


def _run_server(main: Coroutine[Any, Any, None]) -> None:
    """Serve on uvloop, the event loop uvicorn itself prefers (about a third more requests
    per core than the standard loop on the hold path; see bench/README.md)."""
    import uvloop

    uvloop.run(main)


def _settings(**overrides: Any) -> Settings:
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("saq").setLevel(settings.log_level)
    return settings


@click.group()
@click.version_option(package_name="guahao")
def main() -> None:
    """Guahao 区域统一预约挂号平台 — regional unified booking platform."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


async def _serve(platform: Platform, settings: Settings) -> None:
    import uvicorn

    from guahao.web.app import create_app

    app = create_app(settings, platform=platform)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        host = settings.host
        click.echo(
            f"Guahao is running at http://{host}:{port}/  (API docs: http://{host}:{port}/schema/swagger)"
        )
        click.echo("Press Ctrl+C to stop.")

    task = asyncio.create_task(announce())
    await server.serve()
    task.cancel()


async def _publish_demo_days(
    platform: Platform, days: int, progress: Callable[[int, int], None] | None = None
) -> int:
    """Publish the demo roster from today on; sessions that exist are skipped, so this is
    repeated every hour and the demo always offers ``days`` days ahead."""
    from guahao.platform.demo_region import build_demo_region

    region = build_demo_region()
    today = platform.ports.clock.now().date()
    sessions = []
    for hospital in region.hospitals:
        sessions += platform.supply.sessions_from_roster(
            hospital, [today + timedelta(days=i) for i in range(days)]
        )
    return await platform.supply.publish_sessions(sessions, progress=progress)


async def _keep_demo_rolling(platform: Platform, days: int) -> None:
    while True:
        await asyncio.sleep(3600)
        try:
            await _publish_demo_days(platform, days)
        except Exception:  # the demo keeps serving; the next hour tries again
            logging.getLogger(__name__).exception("could not extend the demo roster")


async def _seed_demo(platform: Platform, days: int) -> None:
    from guahao.platform.demo_region import build_demo_region

    region = build_demo_region()
    click.echo(f"Building demo region {region.name} ({len(region.hospitals)} hospitals)…", err=True)
    for hospital in region.hospitals:
        await platform.supply.register_hospital(hospital)
    created = await _publish_demo_days(platform, days, _progress("sessions"))
    click.echo(f"  {created} new sessions published", err=True)
    if not created:  # a restart: make sure the hot pool matches the record
        await platform.inventory_sync.rebuild_all(progress=_progress("slot pool"))


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="HTTP port (default 8000).")
@click.option("--days", type=int, default=14, show_default=True, help="Days of sessions.")
def demo(host: str | None, port: int | None, days: int) -> None:
    """Build the demo region (once) and serve it on the embedded default."""
    settings = _settings(host=host, port=port)

    async def run() -> None:
        async with open_platform(settings) as platform:
            await _seed_demo(platform, days)
            rolling = asyncio.create_task(_keep_demo_rolling(platform, days))
            try:
                await _serve(platform, settings)
            finally:
                rolling.cancel()

    _run_server(run())


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def serve(host: str | None, port: int | None) -> None:
    """Serve the platform with the configured database and Redis."""
    settings = _settings(host=host, port=port)

    async def run() -> None:
        async with open_platform(settings) as platform:
            await _serve(platform, settings)

    _run_server(run())


@main.group()
def db() -> None:
    """The record of truth (SQL)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from guahao.platform.persistence.database import upgrade

    settings = _settings()
    url = settings.resolved_database_url()
    click.echo(f"Upgrading {describe_database(url)} to {revision}…")
    upgrade(url, revision)
    click.echo("done")


@main.group()
def inventory() -> None:
    """The hot slot pool (Redis)."""


@inventory.command("rebuild")
def inventory_rebuild() -> None:
    """Rebuild every future slot's Redis state from SQL (after losing Redis)."""
    settings = _settings()

    async def run() -> int:
        async with open_platform(settings, run_jobs=False) as platform:
            return await platform.inventory_sync.rebuild_all(progress=_progress("slots"))

    count = asyncio.run(run())
    click.echo(f"rebuilt {count} slots")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

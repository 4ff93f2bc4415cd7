"""The ``guahao`` command: run the demo region, serve, migrate, rebuild the hot pool."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import click
import msgspec

from guahao.bootstrap import Platform, describe_database, open_platform
from guahao.collector_settings import settle_collector
from guahao.config import Settings, load_settings
from guahao.lottery_cli import lottery
from guahao.outbox_cli import outbox
from guahao.payments_cli import payments
from guahao.platform.task_stops import cancel_and_wait, raise_if_cancelling
from guahao.search_cli import search as search_commands
from guahao.web.request_logs import standard_log_handler

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
    logging.basicConfig(level=logging.WARNING, handlers=[standard_log_handler()])


async def _exit_when_orphaned(server: Any, supervisor: int) -> None:
    """Stop a worker whose supervisor is gone, even if it missed the parent-death signal.

    The job worker (saq) takes SIGTERM for itself while it starts and stops (it stops only
    the jobs, and then removes its handler), so a worker started by ``--workers`` was seen
    serving on alone after its supervisor was killed; the parent's id changing is certain.
    """
    while os.getppid() == supervisor:  # noqa: ASYNC110 - no event says a parent died
        await asyncio.sleep(1.0)
    server.should_exit = True


async def _serve(platform: Platform, settings: Settings, *, listen_fd: int | None = None) -> None:
    """Serve ``platform``; with ``listen_fd``, as one of several workers on the socket their
    supervisor bound (guahao/worker_processes.py), which announces the address itself."""
    import uvicorn

    from guahao.http_server import accepting_sockets, server_config
    from guahao.web.app import create_app
    from guahao.worker_processes import bind_listener

    app = create_app(settings, platform=platform)
    server = uvicorn.Server(server_config(app, settings))
    # bound here rather than by uvicorn: the loop watches the socket through several
    # descriptors, so a crowd's connections are accepted several per turn (http_server.py)
    listener = (
        socket.socket(fileno=listen_fd)
        if listen_fd is not None
        else bind_listener(settings.host, settings.port, settings.http_backlog)
    )
    sockets = accepting_sockets(listener)
    settle_collector(settings.gc_young_threshold)

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        host = settings.host
        click.echo(
            f"Guahao is running at http://{host}:{port}/  (API docs: http://{host}:{port}/schema/swagger)"
        )
        click.echo("Press Ctrl+C to stop.")

    if listen_fd is not None:
        watch = asyncio.create_task(_exit_when_orphaned(server, os.getppid()))
        try:
            await server.serve(sockets=sockets)
        finally:
            watch.cancel()
        return
    task = asyncio.create_task(announce())
    await server.serve(sockets=sockets)
    task.cancel()


async def _publish_demo_days(
    platform: Platform, days: int, progress: Callable[[int, int], None] | None = None
) -> int:
    """Publish the demo roster from today on; sessions that exist are skipped, so this is
    repeated every hour and the demo always offers ``days`` days ahead."""
    from guahao.hospital_connectors.demo import DEMO_PULLED
    from guahao.platform.demo_region import build_demo_region

    region = build_demo_region()
    today = platform.ports.clock.now().date()
    sessions = []
    for hospital in region.hospitals:
        if hospital.code in DEMO_PULLED:  # its sessions come from its HIS (FHIR pull)
            continue
        sessions += platform.supply.sessions_from_roster(
            hospital, [today + timedelta(days=i) for i in range(days)]
        )
    return await platform.supply.publish_sessions(sessions, progress=progress)


async def _keep_demo_rolling(platform: Platform, days: int) -> None:
    while True:
        raise_if_cancelling()  # a cancel lost inside the last publish still ends it
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
        await platform.pool_recovery.rebuild(progress=_progress("slot pool"))
    await _demo_staff(platform, settings_dir=platform.settings.data_dir)
    await _demo_lotteries(platform)
    # The search index is rebuilt from the record at every start, so the demo's search
    # (embedded: its own SQLite file) always matches what was just seeded.
    await platform.search.reindex(progress=_progress("search index"))


async def _demo_staff(platform: Platform, *, settings_dir: str) -> None:
    """Staff accounts to try the authority's and a hospital's side of the demo with: one
    password, made once and kept (0600) in the data directory, printed at every start."""
    import secrets
    from pathlib import Path

    from guahao.platform.errors import GuahaoError

    path = Path(settings_dir) / "demo-staff-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    password = path.read_text().strip()
    for username, role, hospital in (
        ("admin", "authority_admin", None),
        ("auditor", "authority_auditor", None),
        ("desk_city_first", "hospital_staff", "city-first"),
    ):
        try:
            await platform.staff.create(
                username=username, password=password, role=role, hospital_code=hospital
            )
        except GuahaoError as exc:
            if exc.code != "STAFF_USERNAME_TAKEN":
                raise
    click.echo(
        f"Staff sign-in (POST /api/v1/staff/token): admin, auditor, desk_city_first; "
        f"password {password}",
        err=True,
    )


async def _demo_lotteries(platform: Platform) -> None:
    """Make the premium (特需) sessions of the last day not yet released lottery sessions
    (摇号), so the demo shows a draw; sessions already marked or released are left alone."""
    from sqlalchemy import select

    from guahao.platform.errors import GuahaoError
    from guahao.platform.persistence.tables import SessionRow

    now = platform.ports.clock.now()
    async with platform.ports.sessions() as session:
        ids = (
            await session.scalars(
                select(SessionRow.id)
                .where(
                    SessionRow.category == "premium",
                    SessionRow.allocation == "first_come",
                    SessionRow.release_at > now,
                )
                .order_by(SessionRow.starts_at.desc())
                .limit(3)
            )
        ).all()
    for session_id in ids:
        try:
            await platform.lottery.mark_lottery(session_id, actor="demo")
        except GuahaoError:
            continue


async def _connect_demo(platform: Platform, settings: Settings, days: int) -> Any:
    """Put demo hospitals behind reference HIS simulators on FHIR, HL7 v2 and the push API;
    the demo still serves (on rosters) if they cannot start."""
    from pathlib import Path

    from guahao.hospital_connectors.demo import connect_demo
    from guahao.platform.demo_region import build_demo_region

    try:
        connected = await connect_demo(
            platform.connectors,
            platform.supply,
            platform.ports.clock,
            host=settings.host,
            region=build_demo_region(),
            days=days,
            data_dir=Path(settings.data_dir),
        )
    except Exception as exc:
        logging.getLogger(__name__).warning("demo connectors not started: %s", exc)
        return None
    click.echo("Hospital connectors (reference HIS simulators):", err=True)
    for line in connected.lines:
        click.echo(line, err=True)
    return connected


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
            connected = await _connect_demo(platform, settings, days)
            rolling = asyncio.create_task(_keep_demo_rolling(platform, days))
            try:
                await _serve(platform, settings)
            finally:
                await cancel_and_wait(rolling)  # it may be publishing: ended before the platform
                if connected is not None:
                    await connected.stop()

    _run_server(run())


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes serving the port (above 1: PostgreSQL, Redis and Meilisearch only).",
)
@click.option("--listen-fd", type=int, default=None, hidden=True)
@click.option("--worker-index", type=int, default=0, hidden=True)
def serve(
    host: str | None, port: int | None, workers: int, listen_fd: int | None, worker_index: int
) -> None:
    """Serve the platform with the configured database and Redis."""
    settings = _settings(host=host, port=port)
    if workers > 1:
        from guahao.worker_processes import (
            bind_listeners,
            migrate_once,
            refusal,
            replaced_side_by_side,
            supervise,
        )

        problem = refusal(settings)
        if problem is not None:
            raise click.UsageError(problem)
        migrate_once(settings)
        listeners = bind_listeners(
            settings.host,
            settings.port,
            workers,
            settings.http_backlog,
            balance=settings.http_accept_balance,
        )
        bound = listeners[0].getsockname()[1]
        click.echo(f"Guahao is running at http://{settings.host}:{bound}/ with {workers} workers")
        click.echo("Press Ctrl+C to stop.")
        overlaps = replaced_side_by_side(settings)
        raise SystemExit(supervise(listeners, workers, overlaps=overlaps))
    if worker_index > 0:
        # One worker of several: the region-wide start-up work is worker 0's, and the MLLP
        # port is bound once.
        settings = msgspec.structs.replace(settings, hl7_mllp_port=-1)

    async def run() -> None:
        async with open_platform(settings) as platform:
            if worker_index == 0 and not await platform.search.count():
                # A first start (or a new embedded index file): build the index from the
                # record before answering, or search would answer nothing until the
                # events of new bookings trickled in.
                await platform.search.reindex(progress=_progress("search index"))
            await _serve(platform, settings, listen_fd=listen_fd)

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
            return await platform.pool_recovery.rebuild(progress=_progress("slots"))

    count = asyncio.run(run())
    click.echo(f"rebuilt {count} slots")


from guahao.staff_cli import staff  # noqa: E402 - the group registers itself below

main.add_command(staff)


main.add_command(search_commands)
main.add_command(lottery)
main.add_command(outbox)
main.add_command(payments)

from guahao.console_cli import console  # noqa: E402 - the group registers itself below

main.add_command(console)


from guahao.connector_cli import connectors as connector_commands  # noqa: E402 - see above
from guahao.connector_cli import his_simulator  # noqa: E402
from guahao.connector_cli import hospital as hospital_commands  # noqa: E402

main.add_command(hospital_commands)
main.add_command(connector_commands)
main.add_command(his_simulator)

from guahao.audit_cli import audit  # noqa: E402 - the group registers itself below

main.add_command(audit)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

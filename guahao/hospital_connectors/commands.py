"""``guahao hospital onboard``, ``guahao connectors verify|import|sync|health`` and
``guahao his-simulator``: the command-line side of the connectors."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, cast

import click
import msgspec

__all__ = ["connectors", "his_simulator", "hospital"]


def _settings() -> Any:
    from guahao.config import load_settings

    return load_settings()


@click.group()
def hospital() -> None:
    """Hospitals joining the region."""


@hospital.command("onboard")
@click.option("--code", required=True, help="the hospital's code in the region")
@click.option("--name", required=True)
@click.option("--grade", default="3A", show_default=True)
@click.option("--district", required=True)
@click.option("--timezone", default="Asia/Shanghai", show_default=True)
@click.option(
    "--connector",
    "kind",
    type=click.Choice(["fhir", "hl7v2", "push", "batch"]),
    default="push",
    show_default=True,
)
@click.option("--base-url", default="", help="FHIR base URL of the HIS (fhir)")
@click.option("--facility", default="", help="MSH-4 sending facility (hl7v2)")
@click.option("--notify-host", default="", help="MLLP host for SIU notifications (hl7v2)")
@click.option("--notify-port", type=int, default=0)
@click.option("--notify/--no-notify", default=False, help="tell the HIS about bookings")
def onboard(
    code: str,
    name: str,
    grade: str,
    district: str,
    timezone: str,
    kind: str,
    base_url: str,
    facility: str,
    notify_host: str,
    notify_port: int,
    notify: bool,
) -> None:
    """Register a hospital, record its connector and issue its OAuth2 client."""
    from guahao.bootstrap import open_platform
    from guahao.hospital_connectors.registry import Kind
    from guahao.platform.errors import GuahaoError
    from guahao.platform.hospitals import HospitalGrade
    from guahao.platform.schedules import HospitalSpec
    from guahao.web.hospital_auth import SCOPES

    async def run() -> tuple[Any, Any]:
        async with open_platform(_settings(), run_jobs=False) as platform:
            try:
                await platform.feed.hospital_id(code)  # already in the region: keep it as it is
            except GuahaoError:
                await platform.supply.register_hospital(
                    HospitalSpec(
                        code=code,
                        name=name,
                        grade=HospitalGrade(grade),
                        district=district,
                        timezone=timezone,
                    )
                )
            config: dict[str, Any] = {}
            if kind == "hl7v2":
                config = {"facility": facility or code}
                if notify_host:
                    config.update(notify_host=notify_host, notify_port=notify_port)
            info = await platform.connectors.registry.register(
                code,
                cast(Kind, kind),
                base_url=base_url,
                config=config,
                notify=notify,
            )
            issued = await platform.connectors.registry.issue_client(code, list(SCOPES))
            return info, issued

    info, issued = asyncio.run(run())
    click.echo(f"hospital {code} registered; connector {info.kind} ({info.base_url or '-'})")
    click.echo(f"OAuth2 client_id:     {issued.client_id}")
    click.echo(f"OAuth2 client_secret: {issued.client_secret}   (shown once; store it now)")


@click.group()
def connectors() -> None:
    """Hospital connectors: conformance, imports, syncs, health."""


@connectors.command("verify")
@click.argument("hospital_code")
@click.option(
    "--write-test/--no-write-test", default=False, help="also book and cancel a test appointment"
)
def verify(hospital_code: str, write_test: bool) -> None:
    """Run the conformance checklist against the hospital's live HIS."""
    from guahao.bootstrap import open_platform
    from guahao.hospital_connectors.conformance import render, verify_fhir, verify_mllp
    from guahao.hospital_connectors.sync import defaults_of

    async def run() -> tuple[str, bool]:
        async with open_platform(_settings(), run_jobs=False) as platform:
            checks = []
            for info in await platform.connectors.registry.all():
                if info.hospital_code != hospital_code:
                    continue
                if info.kind == "fhir":
                    client = platform.connectors.sync.client(info)
                    try:
                        checks += await verify_fhir(
                            client, defaults_of(info), write_test=write_test
                        )
                    finally:
                        await client.close()
                elif info.kind == "hl7v2" and info.config.get("notify_port"):
                    checks.append(
                        await verify_mllp(
                            str(info.config.get("notify_host", "127.0.0.1")),
                            int(info.config["notify_port"]),
                        )
                    )
            if not checks:
                return f"{hospital_code}: no FHIR or HL7 v2 connector to verify", False
            return render(hospital_code, checks), all(c.passed for c in checks)

    report, ok = asyncio.run(run())
    click.echo(report)
    sys.exit(0 if ok else 1)


@connectors.command("import")
@click.option(
    "--format", "kind", type=click.Choice(["fhir", "hl7v2", "csv", "xlsx"]), required=True
)
@click.option("--hospital", "hospital_code", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_file(kind: str, hospital_code: str, file: Path) -> None:
    """Ingest a file for a hospital: a FHIR Bundle, HL7 v2 messages, or a schedule sheet."""
    from guahao.bootstrap import open_platform
    from guahao.hospital_connectors.file_imports import import_file as run_import

    data = file.read_bytes()

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await run_import(
                platform.feed, hospital_code, kind, data, platform.bookings.hospital_actions
            )

    outcome = asyncio.run(run())
    click.echo(msgspec.json.format(msgspec.json.encode(outcome)).decode())
    sys.exit(0 if outcome.ok else 1)


@connectors.command("sync")
@click.argument("hospital_code")
@click.option("--full", is_flag=True, help="reconcile everything, reporting drift")
def sync(hospital_code: str, full: bool) -> None:
    """Pull a FHIR hospital's schedules now."""
    from guahao.bootstrap import open_platform

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await platform.connectors.sync.pull(hospital_code, full=full)

    outcome = asyncio.run(run())
    click.echo(msgspec.json.format(msgspec.json.encode(outcome)).decode())
    sys.exit(0 if outcome.status == "ok" else 1)


@connectors.command("health")
def health() -> None:
    """Last sync, lag and error rate of every connector."""
    from guahao.bootstrap import open_platform

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await platform.connectors.registry.health()

    for row in asyncio.run(run()):
        click.echo(
            f"{row.hospital_code:12} {row.kind:6} last={row.last_status:8} "
            f"lag={row.lag_seconds if row.lag_seconds is not None else '-'}s "
            f"errors={row.failures}/{row.runs} ({row.error_rate:.0%})"
        )


@click.command("his-simulator", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def his_simulator(args: tuple[str, ...]) -> None:
    """Run the reference HIS simulator (see ``--help`` of the simulator itself)."""
    from guahao.hospital_connectors.simulator.__main__ import main

    main(list(args))

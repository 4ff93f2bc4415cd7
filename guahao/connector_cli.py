"""``guahao hospital onboard``, ``guahao connectors verify|import|sync|health`` and
``guahao his-simulator``: the command-line side of the connectors.

These commands open the whole platform (the composition root), so they live in the CLI layer
beside ``guahao.cli``, not inside ``guahao.hospital_connectors``: the connectors package must
not import what wires it (import contracts in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, cast

import click
import msgspec

from guahao.bootstrap import open_platform
from guahao.config import Settings, load_settings
from guahao.hospital_connectors.conformance import render, verify_fhir, verify_mllp
from guahao.hospital_connectors.file_imports import import_file as run_import
from guahao.hospital_connectors.mllp_senders import senders_config
from guahao.hospital_connectors.registry import SCOPES, Kind
from guahao.hospital_connectors.sync import defaults_of
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import HospitalGrade
from guahao.platform.schedules import HospitalSpec

__all__ = ["connectors", "his_simulator", "hospital"]


def _settings() -> Settings:
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
@click.option(
    "--mllp-source",
    "mllp_sources",
    multiple=True,
    help="network (CIDR) the HIS sends HL7 v2 from (hl7v2; repeatable)",
)
@click.option(
    "--mllp-certificate",
    "mllp_certificates",
    multiple=True,
    help="SHA-256 fingerprint of the HIS's MLLP/TLS client certificate (hl7v2; repeatable)",
)
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
    mllp_sources: tuple[str, ...],
    mllp_certificates: tuple[str, ...],
) -> None:
    """Register a hospital, record its connector and issue its OAuth2 client.

    An hl7v2 connector needs --mllp-source or --mllp-certificate: the platform takes HL7 v2
    for a hospital only from the connections bound to it.
    """

    senders: dict[str, list[str]] = {}
    if kind == "hl7v2":
        try:
            senders = senders_config(mllp_sources, mllp_certificates)
        except GuahaoError as exc:
            raise click.UsageError(
                f"{exc.message_en} (--mllp-source CIDR and/or --mllp-certificate SHA256)"
            ) from None

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
                config = {
                    "facility": facility or code,
                    "senders": senders,
                }
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

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await platform.connectors.sync.pull(hospital_code, full=full)

    outcome = asyncio.run(run())
    click.echo(msgspec.json.format(msgspec.json.encode(outcome)).decode())
    sys.exit(0 if outcome.status == "ok" else 1)


@connectors.command("bind-senders")
@click.argument("hospital_code")
@click.option("--source", "sources", multiple=True, help="network (CIDR) the HIS sends from")
@click.option(
    "--certificate", "certificates", multiple=True, help="SHA-256 of its MLLP/TLS client cert"
)
def bind_senders(
    hospital_code: str, sources: tuple[str, ...], certificates: tuple[str, ...]
) -> None:
    """Bind a hospital's HL7 v2 connector to the connections allowed to speak for it.

    Replaces the previous binding; the listener applies it to the next message.
    """

    try:
        senders = senders_config(sources, certificates)
    except GuahaoError as exc:
        raise click.UsageError(f"{exc.message_en} (--source CIDR, --certificate SHA256)") from None

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            registry = platform.connectors.registry
            info = await registry.get(hospital_code, "hl7v2")
            return await registry.register(
                hospital_code,
                "hl7v2",
                base_url=info.base_url,
                config={**info.config, "senders": senders},
                notify=info.notify,
            )

    info = asyncio.run(run())
    click.echo(f"{hospital_code}: HL7 v2 accepted from {info.config['senders']}")


@connectors.command("clients")
@click.argument("hospital_code")
def clients(hospital_code: str) -> None:
    """A hospital's OAuth2 clients of the push API (never their secrets)."""

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await platform.connectors.registry.clients(hospital_code)

    for found in asyncio.run(run()):
        state = f"revoked {found.revoked_at:%Y-%m-%d %H:%M}" if found.revoked_at else "active"
        click.echo(f"{found.client_id:32} {' '.join(found.scopes):30} {state}")


@connectors.command("revoke-client")
@click.argument("client_id")
def revoke_client(client_id: str) -> None:
    """Revoke a hospital's OAuth2 client: its secret no longer signs in and its tokens stop
    working at the next request (issue a new one with ``guahao hospital onboard``)."""

    async def run() -> Any:
        async with open_platform(_settings(), run_jobs=False) as platform:
            return await platform.connectors.registry.revoke_client(client_id)

    try:
        revoked = asyncio.run(run())
    except GuahaoError as exc:
        raise click.UsageError(f"{exc.message_en}: {client_id}") from None
    click.echo(f"{revoked.client_id} of {revoked.hospital_code} revoked at {revoked.revoked_at}")


@connectors.command("health")
def health() -> None:
    """Last sync, lag and error rate of every connector."""

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

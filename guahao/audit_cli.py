"""``guahao audit``: checks on the audit log that an operator runs on the server."""

from __future__ import annotations

import asyncio

import click

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from guahao.platform.persistence.audit_chain import ChainReport

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The audit log (审计日志)."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the audit log's hash chain and report the first broken link (exit status 1).

    Prints the head (last entry and its hash) when the chain holds: keep it somewhere outside
    this database, so that a later run can also show that no newest entries were removed.
    """
    settings = load_settings()

    async def run() -> ChainReport:
        async with open_platform(settings, run_jobs=False) as platform:
            return await platform.audit.verify()

    report = asyncio.run(run())
    if report.first_break is None:
        click.echo(
            f"audit chain intact: {report.entries} entries, head {report.head_seq} "
            f"{report.head_hash}"
        )
        return
    broken = report.first_break
    row = f" (audit row id {broken.audit_id})" if broken.audit_id is not None else ""
    click.echo(f"audit chain BROKEN at entry {broken.seq}{row}: {broken.reason}", err=True)
    raise SystemExit(1)

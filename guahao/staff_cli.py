"""``guahao staff``: staff accounts of the health authority and of hospitals, made on the
server by an operator (there is no way to create the first administrator over HTTP)."""

from __future__ import annotations

import asyncio

import click

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from guahao.platform.errors import GuahaoError
from guahao.platform.services.staff import StaffRole

__all__ = ["staff"]


@click.group()
def staff() -> None:
    """Staff accounts (authority administrators and auditors, hospital staff)."""


@staff.command("add")
@click.option("--username", required=True, help="Sign-in name (3-64 letters, digits, _ or .).")
@click.option(
    "--role", required=True, type=click.Choice([r.value for r in StaffRole]), help="Role."
)
@click.option("--hospital", "hospital_code", default=None, help="Hospital code (hospital_staff).")
@click.option("--display-name", default="", help="Name shown in the audit log.")
@click.password_option(
    "--password",
    envvar="GUAHAO_STAFF_PASSWORD",
    help="At least 10 characters; asked for if not given (or set GUAHAO_STAFF_PASSWORD).",
)
def staff_add(
    username: str, role: str, hospital_code: str | None, display_name: str, password: str
) -> None:
    """Create a staff account."""
    settings = load_settings()

    async def run() -> str:
        async with open_platform(settings, run_jobs=False) as platform:
            view = await platform.staff.create(
                username=username,
                password=password,
                role=role,
                hospital_code=hospital_code,
                display_name=display_name,
            )
            return view.id

    try:
        staff_id = asyncio.run(run())
    except GuahaoError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message_zh} / {exc.message_en}") from exc
    click.echo(f"created {role} {username} ({staff_id})")

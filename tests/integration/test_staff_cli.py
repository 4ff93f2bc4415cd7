"""``guahao staff add``, run as an operator runs it: the installed script in its own process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.persistence.database import create_engine
from guahao.platform.persistence.tables import AuditRow, StaffAccountRow
from guahao.platform.services.accounts import verify_password

GUAHAO = Path(sys.executable).parent / "guahao"


async def run(tmp_path: Path, redis_url: str, *args: str, password: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUAHAO_")}
    env.update(GUAHAO_DATA_DIR=str(tmp_path / "cli-data"), GUAHAO_REDIS_URL=redis_url)
    if password is not None:
        env["GUAHAO_STAFF_PASSWORD"] = password
    return await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), "staff", "add", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def rows(tmp_path: Path) -> tuple[list[StaffAccountRow], list[AuditRow]]:
    engine = create_engine(f"sqlite+aiosqlite:///{(tmp_path / 'cli-data').resolve()}/guahao.db")
    try:
        async with AsyncSession(engine) as session:
            staff = (await session.scalars(select(StaffAccountRow))).all()
            audit = (await session.scalars(select(AuditRow))).all()
            return list(staff), list(audit)
    finally:
        await engine.dispose()


async def test_staff_add_creates_an_audited_account_with_a_hashed_password(
    tmp_path: Path, redis_url: str
) -> None:
    result = await run(
        tmp_path,
        redis_url,
        "--username",
        "Ops.Wang",
        "--role",
        "authority_admin",
        password="a-long-password-1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created authority_admin Ops.Wang")
    staff, audit = await rows(tmp_path)
    assert [(s.username, s.role, s.hospital_id) for s in staff] == [
        ("ops.wang", "authority_admin", None)
    ]
    assert "a-long-password-1" not in staff[0].password_hash
    assert verify_password("a-long-password-1", staff[0].password_hash)
    assert [(a.actor, a.actor_role, a.action) for a in audit] == [
        ("system", "operator", "staff.create")
    ]

    again = await run(
        tmp_path,
        redis_url,
        "--username",
        "ops.wang",
        "--role",
        "authority_auditor",
        password="a-long-password-1",
    )
    assert again.returncode == 1
    assert "STAFF_USERNAME_TAKEN" in again.stderr
    assert len((await rows(tmp_path))[0]) == 1

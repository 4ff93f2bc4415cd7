"""``guahao search``, run as an operator runs it: the installed script in its own process,
with the embedded index kept in its file between commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from guahao.bootstrap import open_platform
from guahao.config import load_settings
from tests.fixtures.platforms import clinic

GUAHAO = Path(sys.executable).parent / "guahao"


async def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), "search", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_reindex_then_query_from_the_command_line(tmp_path: Path, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUAHAO_")}
    env.update(GUAHAO_DATA_DIR=str(tmp_path / "data"), GUAHAO_REDIS_URL=redis_url)
    spec = clinic(units=2)
    async with open_platform(load_settings(env), run_jobs=False) as platform:
        await platform.supply.register_hospital(spec)
        today = datetime.now(UTC).date()
        days = [today + timedelta(days=i) for i in range(1, 8)]
        await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))

    reindexed = await run("reindex", env=env)
    assert reindexed.returncode == 0, reindexed.stderr
    assert "indexed 3 documents (embedded)" in reindexed.stdout
    assert (tmp_path / "data" / "search" / "CURRENT").exists()

    found = await run("query", "ww", "--kind", "doctor", "--json", env=env)
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    assert [h["name"] for h in body["hits"]] == ["王伟"]
    assert body["hits"][0]["freeUnits7d"] > 0

    text = await run("query", "头痛", env=env)
    assert text.returncode == 0, text.stderr
    assert "导诊 头痛" in text.stdout

    refused = await run("query", "x", "--grade", "9Z", env=env)
    assert refused.returncode != 0
    assert "SEARCH_FILTER_INVALID" in refused.stderr

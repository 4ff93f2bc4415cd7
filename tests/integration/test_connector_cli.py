"""Onboarding and the connector commands as operators run them (the installed ``guahao``
script in its own process) against the reference HIS on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.his_simulator import SIM_HOSPITAL

GUAHAO = Path(sys.executable).parent / "guahao"
DATA = Path(__file__).parents[1] / "fixtures" / "data"
SHARED = Path(__file__).parents[1] / "fixtures" / "data" / "reference"


def _env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUAHAO_")}
    env.update(GUAHAO_DATA_DIR=str(tmp_path / "cli-data"), GUAHAO_REDIS_URL=redis_url)
    return env


async def guahao(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_onboard_then_verify_against_the_live_his(tmp_path, redis_url, his_simulator):
    his = await his_simulator(doctors=2)
    env = _env(tmp_path, redis_url)

    onboarded = await guahao(
        "hospital", "onboard", "--code", SIM_HOSPITAL, "--name", "澜江模拟医院",
        "--district", "江北区", "--connector", "fhir", "--base-url", his.fhir, env=env,
    )  # fmt: skip
    assert onboarded.returncode == 0, onboarded.stderr
    assert "OAuth2 client_id:     sim1." in onboarded.stdout
    assert "client_secret" in onboarded.stdout

    verified = await guahao("connectors", "verify", SIM_HOSPITAL, "--write-test", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for name in (
        "metadata",
        "search support",
        "schedule fetch",
        "mapping",
        "test hold and cancellation",
        "IHE $find/$hold/$book",
    ):
        assert f"[PASS] {name}" in verified.stdout
    assert "6/6 checks passed" in verified.stdout
    appointments = await his.admin("appointments")
    assert {a["status"] for a in appointments} == {"cancelled"}  # test bookings taken back
    assert len(appointments) == 2

    synced = await guahao("connectors", "sync", SIM_HOSPITAL, env=env)
    assert synced.returncode == 0, synced.stderr
    assert '"status": "ok"' in synced.stdout
    health = await guahao("connectors", "health", env=env)
    assert "sim1" in health.stdout
    assert "last=ok" in health.stdout

    await his.admin("outage", {"down": True})
    failing = await guahao("connectors", "verify", SIM_HOSPITAL, env=env)
    assert failing.returncode == 1
    assert "[FAIL] metadata" in failing.stdout
    assert "HIS_UNAVAILABLE" in failing.stdout


async def test_import_files_for_a_hospital(tmp_path, redis_url):
    env = _env(tmp_path, redis_url)
    onboarded = await guahao(
        "hospital", "onboard", "--code", "fx1", "--name", "样例医院", "--district", "江南区",
        env=env,
    )  # fmt: skip
    assert onboarded.returncode == 0, onboarded.stderr

    fhir = await guahao(
        "connectors", "import", "--format", "fhir", "--hospital", "fx1",
        str(DATA / "fhir_hospital_bundle.json"), env=env,
    )  # fmt: skip
    assert fhir.returncode == 0, fhir.stdout + fhir.stderr
    assert '"created": 3' in fhir.stdout  # d001 morning and afternoon, d002 morning

    sheet = tmp_path / "bad.csv"
    sheet.write_text(
        "doctor_code,date,period,category,fee_yuan,start,end,capacity,external_id\n"
        "d001,2026-03-05,上午,专家,30,08:00,08:30,2,\n"
        "d001,2026-03-05,上午,专家,30,08:30,08:00,2,\n",
        encoding="utf-8",
    )
    refused = await guahao(
        "connectors", "import", "--format", "csv", "--hospital", "fx1", str(sheet), env=env
    )
    assert refused.returncode == 1
    assert '"row": 3' in refused.stdout
    assert '"column": "end"' in refused.stdout

    samples = SHARED / "hl7v2" / "siu_s12_interfaceware.hl7"
    if samples.exists():
        hl7 = await guahao(
            "connectors", "import", "--format", "hl7v2", "--hospital", "fx1", str(samples), env=env
        )
        assert hl7.returncode == 0, hl7.stdout + hl7.stderr
        assert "not a platform booking" in hl7.stdout

"""The demo's hospitals on different connector kinds, through the reference HIS.

- ``tcm`` (澜江市中医院) publishes its schedule as FHIR R4 from its own simulator process; the
  platform pulls it (instead of expanding its roster) and writes appointments back.
- ``hemei-maternity`` (澜江和美妇产医院) talks HL7 v2 over MLLP: its simulator sends stops and
  arrivals to the platform's listener and receives SIU for every booking.
- ``nanhu-community`` gets an OAuth2 client for the push API (printed at start).
- The other hospitals keep their weekly roster (what a batch schedule file would carry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.hospital_connectors.registry import SCOPES
from guahao.hospital_connectors.simulator.store import store_from_platform
from guahao.platform.child_processes import die_with_parent
from guahao.platform.clock import Clock
from guahao.platform.schedules import RegionSpec
from guahao.platform.services.supply import SupplyService

__all__ = ["DEMO_PULLED", "DemoConnectors", "connect_demo"]

log = logging.getLogger(__name__)

FHIR_HOSPITAL = "tcm"
HL7_HOSPITAL = "hemei-maternity"
PUSH_HOSPITAL = "nanhu-community"
DEMO_PULLED = frozenset({FHIR_HOSPITAL})
"""Hospitals whose sessions come from their HIS, not from the roster."""


@dataclass
class DemoConnectors:
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    async def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()


async def _simulator(
    store: Path, hospital: str, platform_mllp: int
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "guahao.hospital_connectors.simulator",
        "--hospital",
        hospital,
        "--port",
        "0",
        "--mllp-port",
        "0",
        "--store",
        str(store),
        "--platform-mllp",
        f"127.0.0.1:{platform_mllp}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        # a killed demo must not leave its hospitals running (the loop runs in the main thread)
        preexec_fn=die_with_parent,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if not line:
        raise RuntimeError(f"the {hospital} HIS simulator did not start")
    ready: dict[str, Any] = json.loads(line)
    return process, ready


async def connect_demo(
    hub: ConnectorHub,
    supply: SupplyService,
    clock: Clock,
    *,
    host: str,
    region: RegionSpec,
    days: int,
    data_dir: Path,
) -> DemoConnectors:
    """Start the demo's HIS simulators and register the connectors (idempotent on restart);
    the platform's MLLP listener is started on ``host`` if it is not running yet."""
    done = DemoConnectors()
    specs = {h.code: h for h in region.hospitals}
    if hub.mllp is None:
        await hub.start_mllp(host, 0)
    assert hub.mllp is not None
    mllp_port = hub.mllp.port
    folder = data_dir / "his"
    folder.mkdir(parents=True, exist_ok=True)
    today = clock.now().date()
    for code in (FHIR_HOSPITAL, HL7_HOSPITAL):
        spec = specs[code]
        path = folder / f"{code}.json"
        if not path.exists():
            sessions = supply.sessions_from_roster(
                spec, [today + timedelta(days=i) for i in range(days)]
            )
            store_from_platform(spec, sessions, now=clock.now(), path=path)
    (fhir_process, fhir), (hl7_process, hl7) = await asyncio.gather(
        _simulator(folder / f"{FHIR_HOSPITAL}.json", FHIR_HOSPITAL, mllp_port),
        _simulator(folder / f"{HL7_HOSPITAL}.json", HL7_HOSPITAL, mllp_port),
    )
    done.processes += [fhir_process, hl7_process]
    registry = hub.registry
    await registry.register(FHIR_HOSPITAL, "fhir", base_url=fhir["fhir"], notify=True)
    outcome = await hub.sync.pull(FHIR_HOSPITAL)
    created = outcome.report.created if outcome.report else 0
    done.lines.append(
        f"  {FHIR_HOSPITAL}: FHIR R4 from {fhir['fhir']} ({outcome.status}, {created} new sessions)"
    )
    await registry.register(
        HL7_HOSPITAL,
        "hl7v2",
        config={
            "facility": HL7_HOSPITAL,
            "notify_host": "127.0.0.1",
            "notify_port": hl7["mllp_port"],
            # the simulator sends from this machine; a real HIS is bound to its own network
            # or its client certificate (docs/connectors.md)
            "senders": {"addresses": ["127.0.0.1/32", "::1/128"]},
        },
        notify=True,
    )
    done.lines.append(
        f"  {HL7_HOSPITAL}: HL7 v2 over MLLP (platform listens on {mllp_port}; "
        f"its HIS admin API: {hl7['admin']})"
    )
    issued = await registry.issue_client(PUSH_HOSPITAL, list(SCOPES))
    await registry.register(PUSH_HOSPITAL, "push")
    done.lines.append(
        f"  {PUSH_HOSPITAL}: push API, client_id {issued.client_id} "
        f"client_secret {issued.client_secret}"
    )
    return done


def roster_days(today: date, days: int) -> list[date]:
    return [today + timedelta(days=i) for i in range(days)]
